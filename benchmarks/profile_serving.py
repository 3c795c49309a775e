"""Benchmark: where an export's batch-1 time goes, op by op, as TF Serving
runs it.

TF Serving loads a SavedModel's `serve` MetaGraph into a Session and calls
`Session::Run` on a signature's tensors, with the threads scripts/serve.sh
gives it (`threads.serving_threads`); this script does the same (a
`tf.compat.v1` Session: that is the serving path, not a training API), times
the calls, then traces some with `RunOptions.FULL_TRACE` and prints the ops
by total time (grappler's and oneDNN's rewrites included, so the names are
the kernels that ran: `_MklNativeFusedMatMul` is MatMul+BiasAdd(+GELU)).

  python benchmarks/profile_serving.py --model=export/student --seq_length=64
  python benchmarks/profile_serving.py --model=export/teacher --batch_size=32

Without --model it exports a random 4 x 256 model (vocab 4,000) first, the
shape of `bench_peers.py`.
"""

from __future__ import annotations

import collections
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app, flags  # noqa: E402

import runs  # noqa: E402  benchmarks/runs.py, beside this file.

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "An export (version or base directory); "
                    "default: a random 4 x 256 model exported here.")
flags.DEFINE_string("signature", "serving_default", "The signature to run.")
flags.DEFINE_integer("batch_size", 1, "Rows per request.")
flags.DEFINE_integer("seq_length", 128, "Tokens per row, all real.")
flags.DEFINE_integer("calls", 200, "Timed calls.")
flags.DEFINE_integer("traced_calls", 20, "Calls traced for the op table.")
flags.DEFINE_integer("top", 20, "Op types to list.")


def random_export(work_dir: str) -> str:
  from bert import modeling
  config = modeling.BertConfig(vocab_size=4000, hidden_size=256,
                               num_hidden_layers=4, num_attention_heads=4,
                               intermediate_size=1024)
  return runs.export_synthetic(modeling.BertClassifier(config, 2), config,
                               work_dir, FLAGS.seq_length)


def op_type(node_stats) -> str:
  """The kernel's op type from a trace entry ("name = Op(inputs)")."""
  label = node_stats.timeline_label
  return label.split(" = ", 1)[1].split("(", 1)[0] if " = " in label else (
      node_stats.node_name)


def main(argv):
  del argv
  import numpy as np
  import tensorflow as tf
  from bert import export_reader
  from bert import threads

  # TF Serving's threads as scripts/serve.sh sets them, before TensorFlow
  # starts (exporting starts it).
  threads.use_serving_threads([FLAGS.model] if FLAGS.model else [])
  path = export_reader.resolve_export(FLAGS.model) if FLAGS.model else random_export(
      tempfile.mkdtemp())
  signature = export_reader.SessionSignature(path, FLAGS.signature)
  shape = (FLAGS.batch_size, FLAGS.seq_length)
  values = {"input_ids": np.full(shape, 5, np.int32),
            "input_mask": np.ones(shape, np.int32),
            "segment_ids": np.zeros(shape, np.int32)}
  feed = {name: values[name] for name in signature.inputs}
  for _ in range(10):
    signature(**feed)
  times = []
  for _ in range(FLAGS.calls):
    start = time.perf_counter()
    signature(**feed)
    times.append(time.perf_counter() - start)

  options = tf.compat.v1.RunOptions(
      trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
  op_us, op_count = collections.Counter(), collections.Counter()
  for _ in range(FLAGS.traced_calls):
    metadata = tf.compat.v1.RunMetadata()
    signature(options=options, run_metadata=metadata, **feed)
    for device in metadata.step_stats.dev_stats:
      for node in device.node_stats:
        op_us[op_type(node)] += node.op_end_rel_micros
        op_count[op_type(node)] += 1
  n = FLAGS.traced_calls
  total = sum(op_us.values()) / n
  print(f"{path} {FLAGS.signature}, batch {FLAGS.batch_size} x "
        f"{FLAGS.seq_length} tokens, "
        f"{tf.config.threading.get_intra_op_parallelism_threads()} intra-op "
        f"and {tf.config.threading.get_inter_op_parallelism_threads()} "
        "inter-op threads (0: TensorFlow's choice): median "
        f"{statistics.median(times)*1e3:.2f} ms per call over {FLAGS.calls} "
        f"calls ({len(op_count)} op types, "
        f"{sum(op_count.values()) // n} ops per call, {total/1e3:.2f} ms of "
        "op time per call: ops run in parallel on the inter-op threads)")
  print()
  print("| op | us per call | share | ops per call | us per op |")
  print("|---|---|---|---|---|")
  for name, us in op_us.most_common(FLAGS.top):
    print(f"| {name} | {us / n:.0f} | {us / n / total:.0%} | "
          f"{op_count[name] // n} | {us / op_count[name]:.1f} |")


if __name__ == "__main__":
  app.run(main)
