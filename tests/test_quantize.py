"""bert/quantize.py: an export's TF Lite copy, int8 or float32 (tiny 2-layer
model)."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from bert import export_reader
from bert import quantize
from bert.errors import UserError
from tests import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  return helpers.train_and_export(str(tmp_path_factory.mktemp("quantize")))


def test_int8_copy_follows_the_float_export(exported):
  path = quantize.write_tflite(exported["export_dir"])
  version = os.path.join(exported["export_dir"], "1")
  assert path == os.path.join(version, export_reader.TFLITE_FILE)
  float_model = export_reader.ExportedClassifier(version)
  int8_model = export_reader.TfliteClassifier(exported["export_dir"])
  assert int8_model.precision == "int8"
  texts = [line.rsplit("&", 1)[0] for line in open(
      os.path.join(exported["data_dir"], "dev.csv"), encoding="utf-8")]
  features = float_model.features(texts)
  expected = float_model.predict_logits(features, batch_size=8)
  got = int8_model.predict_logits(features, batch_size=8)
  assert got.shape == expected.shape
  # int8 weights: close, not equal.
  scale = np.abs(expected).max()
  assert np.abs(got - expected).max() <= 0.1 * scale
  assert not np.array_equal(got, expected)
  assert (got.argmax(-1) == expected.argmax(-1)).mean() >= 0.9
  # The flatbuffer keeps serving_default's outputs at batch 1 too.
  one = {k: features[k][:1] for k in ("input_ids", "input_mask",
                                      "segment_ids")}
  out = int8_model.serving_default(**one)
  np.testing.assert_allclose(out["probabilities"].sum(-1), 1.0, rtol=1e-5)
  # Much smaller than float32 weights.
  weights = os.path.join(version, "variables", "variables.data-00000-of-00001")
  assert os.path.getsize(path) < os.path.getsize(weights)


def test_float32_copy_gives_the_savedmodel_logits(exported):
  path = quantize.write_tflite(exported["export_dir"], "float32")
  version = os.path.join(exported["export_dir"], "1")
  float_model = export_reader.ExportedClassifier(version)
  copy = export_reader.TfliteClassifier(version)
  assert copy.precision == "float32"
  texts = [line.rsplit("&", 1)[0] for line in open(
      os.path.join(exported["data_dir"], "dev.csv"), encoding="utf-8")]
  features = float_model.features(texts)
  np.testing.assert_allclose(copy.predict_logits(features, batch_size=8),
                             float_model.predict_logits(features, 8),
                             atol=1e-5)
  # float32 weights: about the size of the SavedModel's variables.
  weights = os.path.join(version, "variables", "variables.data-00000-of-00001")
  assert os.path.getsize(path) > 0.8 * os.path.getsize(weights)
  # Converted from `tflite_serving`: no row blocks (serving_default's graph
  # has them, for TensorFlow's executor).
  interpreter = export_reader._interpreter(path, 1)
  assert "SPLIT_V" not in {op["op_name"]
                           for op in interpreter._get_ops_details()}
  loaded = export_reader.load(version)
  one = {k: tf.constant(features[k][:3]) for k in ("input_ids", "input_mask",
                                                    "segment_ids")}
  np.testing.assert_allclose(
      loaded.tflite_serving(**one)["logits"].numpy(),
      loaded.signatures["serving_default"](**one)["logits"].numpy(),
      atol=1e-6)
  with pytest.raises(UserError, match="--precision must be one of int8, "
                     "float32, got 'int4'"):
    quantize.write_tflite(exported["export_dir"], "int4")


def test_missing_copy_and_missing_export_are_one_line(exported, tmp_path):
  version = os.path.join(exported["export_dir"], "1")
  tflite = os.path.join(version, export_reader.TFLITE_FILE)
  if os.path.exists(tflite):
    os.remove(tflite)
  with pytest.raises(UserError, match="no model.tflite; make it with "
                     "python -m bert.quantize"):
    export_reader.TfliteClassifier(version)
  with pytest.raises(UserError):
    quantize.write_tflite(str(tmp_path / "nothing"))


@pytest.mark.slow
def test_cli_writes_the_copy(exported):
  result = subprocess.run(
      [sys.executable, "-m", "bert.quantize",
       f"--export_dir={exported['export_dir']}"],
      capture_output=True, text=True, cwd=ROOT,
      env={**os.environ, "PYTHONPATH": ROOT})
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip().endswith(export_reader.TFLITE_FILE)
  assert os.path.exists(result.stdout.strip())
