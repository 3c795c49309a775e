"""What TF Serving needs beyond the SavedModel: the warm-up requests in
every export (read with TF Serving's own protos and replayed against the
loaded model) and scripts/serve.sh's model and batching configs."""

import os
import shutil
import subprocess

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.config import model_server_config_pb2

from bert import export, run_classifier
from tests import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEQ = 16


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("serving"))
  helpers.run_main(
      run_classifier.main, task_name="emotion", max_seq_length=SEQ,
      train_batch_size=8, num_train_epochs=1, learning_rate=2e-3,
      bert_config_file=helpers.write_config(d),
      vocab_file=helpers.write_vocab(d),
      data_dir=helpers.write_emotion_data(os.path.join(d, "data")),
      output_dir=os.path.join(d, "out"), do_train=True, do_export=True,
      export_dir=os.path.join(d, "export", "teacher"))
  return os.path.join(d, "export", "teacher")


def test_warmup_requests_replay_against_the_export(exported):
  version = os.path.join(exported, "1")
  path = os.path.join(version, "assets.extra", "tf_serving_warmup_requests")
  logs = []
  for record in tf.data.TFRecordDataset(path):
    log = prediction_log_pb2.PredictionLog()
    log.ParseFromString(record.numpy())
    logs.append(log)
  assert 0 < len(logs) <= 1000  # TF Serving's limit.
  signatures = [log.predict_log.request.model_spec.signature_name
                for log in logs]
  assert signatures.count("serving_default") == 3
  assert signatures.count("predict_text") == 2
  assert {log.predict_log.request.model_spec.name for log in logs} == {
      "teacher"}
  loaded = export.load(version)
  for log in logs:
    request = log.predict_log.request
    inputs = {name: tf.constant(tf.make_ndarray(tensor))
              for name, tensor in request.inputs.items()}
    outputs = loaded.signatures[request.model_spec.signature_name](**inputs)
    batch = next(iter(inputs.values())).shape[0]
    assert outputs["probabilities"].shape == (batch, 2)
    np.testing.assert_allclose(outputs["probabilities"].numpy().sum(-1), 1.0,
                               atol=1e-5)
    if request.model_spec.signature_name == "serving_default":
      assert inputs["input_ids"].shape[1] <= SEQ


def test_serve_sh_writes_configs_for_models_side_by_side(exported, tmp_path):
  student = tmp_path / "export" / "student"
  student.mkdir(parents=True)
  shutil.copytree(os.path.join(exported, "1"), student / "3")
  serving_dir = tmp_path / "serving"
  result = subprocess.run(
      ["bash", os.path.join(ROOT, "scripts", "serve.sh")],
      env={**os.environ, "SERVE_DRY_RUN": "1",
           "SERVING_DIR": str(serving_dir),
           "MODELS": f"teacher:{exported} student:{student / '3'}",
           "MAX_BATCH_SIZE": "16"},
      capture_output=True, text=True)
  assert result.returncode == 0, result.stderr
  config = text_format.Parse((serving_dir / "models.config").read_text(),
                             model_server_config_pb2.ModelServerConfig())
  models = {c.name: c for c in config.model_config_list.config}
  assert set(models) == {"teacher", "student"}
  assert models["teacher"].base_path == os.path.realpath(exported)
  # A version directory is served through its base path.
  assert models["student"].base_path == str(student)
  assert all(c.model_platform == "tensorflow" for c in models.values())
  docker = text_format.Parse(
      (serving_dir / "models.docker.config").read_text(),
      model_server_config_pb2.ModelServerConfig())
  assert {c.base_path for c in docker.model_config_list.config} == {
      "/models/teacher", "/models/student"}
  batching = (serving_dir / "batching_parameters.txt").read_text()
  assert "max_batch_size { value: 16 }" in batching
  assert "pad_variable_length_inputs: true" in batching
  assert "--enable_model_warmup" in result.stdout
  assert f"--model_config_file={serving_dir}/models.config" in result.stdout
  assert "docker run" in result.stdout and "/config/models.docker.config" in (
      result.stdout)


def test_serve_sh_rejects_a_missing_export(tmp_path):
  result = subprocess.run(
      ["bash", os.path.join(ROOT, "scripts", "serve.sh")],
      env={**os.environ, "SERVE_DRY_RUN": "1",
           "SERVING_DIR": str(tmp_path / "serving"),
           "MODELS": f"student:{tmp_path / 'nothing'}"},
      capture_output=True, text=True)
  assert result.returncode == 2
  assert "does not exist" in result.stderr
  assert len(result.stderr.strip().splitlines()) == 1
