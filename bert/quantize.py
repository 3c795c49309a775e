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

import tensorflow as tf
from absl import app, flags, logging

from bert import files
from bert.errors import UserError, exit_on_error
from bert.export_reader import TFLITE_FILE, resolve_export

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
