"""An int8 TF Lite copy of an export, for CPUs and devices.

  python -m bert.quantize --export_dir=export/student

Converts the export's `serving_default` with TF Lite's dynamic-range
quantisation (`tf.lite.Optimize.DEFAULT`: weights stored as int8, the
matrix products run in int8 on activations quantised per call, everything
else float32) and writes it as `model.tflite` into the same version
directory, beside the SavedModel it came from, its vocab and export_info.
That is the file TF Serving serves with `--prefer_tflite_model=true`, and
what LiteRT (`ai_edge_litert`) runs on phones and small CPUs.  Inputs and
outputs are those of `serving_default`: int32 [B, S] ids -> logits,
probabilities [B, C]; the in-graph request checks are dropped (TF Lite has
no Assert op), so callers keep ids in range.

`bert.report --int8` measures the copy beside the float export: size,
batch-1 latency, accuracy.
"""

from __future__ import annotations

import os
import sys
from typing import Sequence

if not __package__:  # run as `python bert/quantize.py`
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np
import tensorflow as tf
from absl import app, flags, logging

from bert import data, files
from bert.errors import UserError, exit_on_error
from bert.export import ExportedClassifier, resolve_export

TFLITE_FILE = "model.tflite"


def convert(saved_model_dir: str) -> bytes:
  """`serving_default` of a SavedModel -> an int8 (dynamic-range) TF Lite
  flatbuffer."""
  loaded = tf.saved_model.load(saved_model_dir)
  # From the signature's function, not the whole SavedModel: the
  # predict_text tokenizer's hash tables have no TF Lite kernels.
  converter = tf.lite.TFLiteConverter.from_concrete_functions(
      [loaded.signatures["serving_default"]], loaded.model)
  converter.optimizations = [tf.lite.Optimize.DEFAULT]
  try:
    return converter.convert()
  except Exception as e:  # The converter raises many kinds.
    first = str(e).strip().splitlines()[0][:300] if str(e) else ""
    raise UserError(f"{saved_model_dir}: cannot convert serving_default to "
                    f"TF Lite ({e.__class__.__name__}: {first})") from None


def write_int8(export_path: str) -> str:
  """Converts an export (a version directory or its base path: the highest
  version) and writes `<version>/model.tflite`; returns its path."""
  version_dir = resolve_export(export_path)
  flatbuffer = convert(version_dir)
  path = os.path.join(version_dir, TFLITE_FILE)

  def write(tmp: str) -> None:
    with open(tmp, "wb") as f:
      f.write(flatbuffer)

  files.write_atomically(path, write)
  return path


def _interpreter(path: str, num_threads: int | None):
  """LiteRT's interpreter (the `ai_edge_litert` package), or TensorFlow's
  own copy of it where LiteRT is not installed."""
  try:
    from ai_edge_litert.interpreter import Interpreter
  except ImportError:
    Interpreter = tf.lite.Interpreter
  return Interpreter(model_path=path, num_threads=num_threads)


class TfliteClassifier(ExportedClassifier):
  """An export's `model.tflite`, with the export's tokenizer and labels:
  `serving_default(**features)`, `logits` and `predict_logits` as for the
  SavedModel, run by the TF Lite interpreter."""

  def __init__(self, path: str, num_threads: int | None = None):
    super().__init__(path)
    self.tflite_path = os.path.join(self.dir, TFLITE_FILE)
    if not os.path.exists(self.tflite_path):
      raise UserError(f"{self.dir}: no {TFLITE_FILE}; make it with "
                      f"python -m bert.quantize --export_dir={self.dir}")
    interpreter = _interpreter(self.tflite_path,
                               num_threads or os.cpu_count())
    self._runner = interpreter.get_signature_runner("serving_default")
    self.serving_default = self._serve

  def _serve(self, input_ids, input_mask, segment_ids) -> dict:
    """int32 [B, S] inputs -> numpy logits, probabilities [B, C]."""
    return self._runner(
        input_ids=np.asarray(input_ids, np.int32),
        input_mask=np.asarray(input_mask, np.int32),
        segment_ids=np.asarray(segment_ids, np.int32))

  def logits(self, input_ids, input_mask, segment_ids) -> np.ndarray:
    return self._serve(input_ids, input_mask, segment_ids)["logits"]

  def predict_logits(self, features: dict[str, np.ndarray],
                     batch_size: int = 64) -> np.ndarray:
    """Logits [N, C] in input order, in batches trimmed to their longest
    example (the interpreter cannot run inside a tf.function)."""
    logits = None
    for batch in data.features_dataset(features, batch_size):
      trimmed = data.trim_batch(batch)
      out = self.logits(*(trimmed[k].numpy() for k in data.SEQ_FEATURES))
      if logits is None:
        logits = np.zeros([len(features["input_ids"]), out.shape[-1]],
                          np.float32)
      logits[batch["example_index"].numpy()] = out
    return logits


def define_flags() -> None:
  flags.DEFINE_string("export_dir", None, "An export: a version directory or "
                      "its base path (its highest version).")


def main(argv: Sequence[str]) -> None:
  del argv
  FLAGS = flags.FLAGS
  if not FLAGS.export_dir:
    raise UserError("--export_dir is required")
  path = write_int8(FLAGS.export_dir)
  logging.info("Wrote %s (%.1f MB)", path, os.path.getsize(path) / 1e6)
  print(path)


if __name__ == "__main__":
  define_flags()
  app.run(exit_on_error(main))
