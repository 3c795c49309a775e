"""A TF Lite copy of an export (int8 or float32), for CPUs and devices.

  python -m bert.quantize --export_dir=export/student
  python -m bert.quantize --export_dir=export/student --precision=float32

Converts the export's `serving_default` with TF Lite's dynamic-range
quantisation (`tf.lite.Optimize.DEFAULT`: weights stored as int8, the
matrix products run in int8 on activations quantised per call, everything
else float32), or with `--precision=float32` as it is (the same numbers as
the SavedModel, run by TF Lite's XNNPACK kernels with far less per-op cost
than TensorFlow's executor), and writes it as `model.tflite` into the same
version directory, beside the SavedModel it came from, its vocab and
export_info.  That is the file TF Serving serves with
`--prefer_tflite_model=true`, and what LiteRT (`ai_edge_litert`) runs on
phones and small CPUs.  Inputs and outputs are those of `serving_default`:
int32 [B, S] ids -> logits, probabilities [B, C]; the in-graph request
checks are dropped (TF Lite has no Assert op), so callers keep ids in range.

`bert.report --tflite` measures the copy beside the SavedModel: size,
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
from bert.export_reader import ExportedClassifier, resolve_export

TFLITE_FILE = "model.tflite"
PRECISIONS = ("int8", "float32")


def convert(saved_model_dir: str, precision: str = "int8") -> bytes:
  """`serving_default` of a SavedModel -> a TF Lite flatbuffer, int8
  (dynamic-range) or float32."""
  if precision not in PRECISIONS:
    raise UserError(f"--precision must be one of {', '.join(PRECISIONS)}, "
                    f"got {precision!r}")
  loaded = tf.saved_model.load(saved_model_dir)
  # From the signature's function, not the whole SavedModel: the
  # predict_text tokenizer's hash tables have no TF Lite kernels.  BERT
  # exports also carry serving_default's maths in one block of rows, as
  # `tflite_serving` (exports older than it do not).
  function = loaded.signatures["serving_default"]
  if hasattr(loaded, "tflite_serving"):
    function = loaded.tflite_serving.get_concrete_function()
  converter = tf.lite.TFLiteConverter.from_concrete_functions(
      [function], loaded.model)
  if precision == "int8":
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
  try:
    return converter.convert()
  except Exception as e:  # The converter raises many kinds.
    first = str(e).strip().splitlines()[0][:300] if str(e) else ""
    raise UserError(f"{saved_model_dir}: cannot convert serving_default to "
                    f"TF Lite ({e.__class__.__name__}: {first})") from None


def write_tflite(export_path: str, precision: str = "int8") -> str:
  """Converts an export (a version directory or its base path: the highest
  version) and writes `<version>/model.tflite`; returns its path."""
  version_dir = resolve_export(export_path)
  flatbuffer = convert(version_dir, precision)
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
    # Dynamic-range quantisation stores the weights as int8 tensors.
    self.precision = "int8" if any(
        t["dtype"] == np.int8 for t in interpreter.get_tensor_details()
    ) else "float32"

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
  flags.DEFINE_enum("precision", "int8", list(PRECISIONS), "int8: dynamic-"
                    "range quantisation (4x smaller, int8 matrix products); "
                    "float32: the SavedModel's numbers, for TF Lite's lower "
                    "per-op cost.")


def main(argv: Sequence[str]) -> None:
  del argv
  FLAGS = flags.FLAGS
  if not FLAGS.export_dir:
    raise UserError("--export_dir is required")
  path = write_tflite(FLAGS.export_dir, FLAGS.precision)
  logging.info("Wrote %s (%.1f MB)", path, os.path.getsize(path) / 1e6)
  print(path)


if __name__ == "__main__":
  define_flags()
  app.run(exit_on_error(main))
