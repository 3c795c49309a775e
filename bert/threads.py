"""The threads to serve an export with, on this machine."""

from __future__ import annotations

import os
from typing import Sequence

import tensorflow as tf
from absl import logging

from bert.export_reader import read_export_info, resolve_export


def serving_threads(jit_compile: bool = False) -> tuple[int, int]:
  """(intra-op, inter-op) threads to serve an export with: one thread per
  op and one inter-op thread per core.  The export's blocks of positions
  (`modeling.position_blocks`) are what run concurrently; a second
  thread inside an op costs oneDNN's small batch-1 kernels more than it
  gains (on CPUs; benchmarks/RESULTS.md, bench_peers).  An XLA export
  (`jit_compile`) is one op that parallelises inside: (0, 0), TensorFlow's
  own choice.  scripts/serve.sh passes the same to TF Serving
  (--tensorflow_intra_op_parallelism, --tensorflow_inter_op_parallelism)."""
  if jit_compile:
    return 0, 0
  cores = len(os.sched_getaffinity(0)) if hasattr(
      os, "sched_getaffinity") else os.cpu_count()
  return 1, cores or 1


def use_serving_threads(paths: Sequence[str] = ()) -> bool:
  """Sets this process's TensorFlow threads to `serving_threads()` for the
  exports at `paths` (versions or base paths; none: plain exports), in a
  process that serves or predicts and trains nothing; TensorFlow's own
  choice if one of them is an XLA export.  TensorFlow fixes its threads
  when its runtime starts: after that this leaves them as they are, says
  so in the log and returns False."""
  intra, inter = serving_threads(any(
      read_export_info(resolve_export(path)).get("jit_compile")
      for path in paths))
  try:
    tf.config.threading.set_intra_op_parallelism_threads(intra)
    tf.config.threading.set_inter_op_parallelism_threads(inter)
  except RuntimeError:
    logging.info("TensorFlow is running already: its threads stay (%d "
                 "intra-op, %d inter-op), not serving's %d and %d",
                 tf.config.threading.get_intra_op_parallelism_threads(),
                 tf.config.threading.get_inter_op_parallelism_threads(),
                 intra, inter)
    return False
  return True
