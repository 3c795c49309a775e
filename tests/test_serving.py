"""What TF Serving needs beyond the SavedModel: the warm-up requests in
every export (read with TF Serving's own protos and replayed against the
loaded model) and scripts/serve.sh's model and batching configs."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.config import model_server_config_pb2

from bert import export, export_reader, run_classifier, threads
from bert.errors import UserError
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
  loaded = export_reader.load(version)
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


@pytest.fixture(scope="module")
def jit_exported(exported, tmp_path_factory):
  """The fixture's model exported again with --export_jit_compile."""
  out = os.path.join(os.path.dirname(os.path.dirname(exported)), "out")
  export_dir = str(tmp_path_factory.mktemp("jit") / "teacher")
  helpers.run_main(run_classifier.main, task_name="emotion",
                   output_dir=out, do_export=True,
                   export_dir=export_dir, export_jit_compile=True)
  return os.path.join(export_dir, "1")


def test_xla_length_buckets():
  assert export.xla_length_buckets(8) == [16]
  assert export.xla_length_buckets(64) == [16, 32, 64]
  assert export.xla_length_buckets(100) == [16, 32, 64, 128]


@pytest.mark.slow
def test_jit_compiled_export_answers_like_the_plain_one(exported,
                                                        jit_exported):
  assert export_reader.read_export_info(jit_exported)["jit_compile"] is True
  assert export_reader.read_export_info(
      os.path.join(exported, "1"))["jit_compile"] is False
  saved = saved_model_pb2.SavedModel()
  with open(os.path.join(jit_exported, "saved_model.pb"), "rb") as f:
    saved.ParseFromString(f.read())
  xla_functions = [fn.signature.name for fn in
                   saved.meta_graphs[0].graph_def.library.function
                   if fn.attr["_XlaMustCompile"].b]
  assert xla_functions, "no function marked for XLA in the jit export"
  rng = np.random.default_rng(0)
  # Batches and lengths that are not buckets: padded inside, cut back.
  for batch, length in ((1, 5), (3, 11), (5, SEQ)):
    ids = rng.integers(1, 20, (batch, length)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[0, length // 2:] = 0
    inputs = {"input_ids": ids * mask, "input_mask": mask,
              "segment_ids": np.zeros_like(ids)}
    # As TF Serving runs them: the SavedModels in Sessions.
    plain = export_reader.SessionSignature(exported)(**inputs)
    jit = export_reader.SessionSignature(jit_exported)(**inputs)
    assert jit["logits"].shape == (batch, 2)
    np.testing.assert_allclose(jit["logits"], plain["logits"], atol=1e-5)
  texts = tf.constant(["the cat sat on the mat", "好 吃", ""])
  plain = export_reader.load(os.path.join(exported, "1")).signatures["predict_text"]
  jit = export_reader.load(jit_exported).signatures["predict_text"]
  np.testing.assert_allclose(jit(text=texts)["logits"].numpy(),
                             plain(text=texts)["logits"].numpy(), atol=1e-5)
  # serve.sh asks TF Serving for XLA when an export needs it.
  result = subprocess.run(
      ["bash", os.path.join(ROOT, "scripts", "serve.sh")],
      env={**os.environ, "SERVE_DRY_RUN": "1",
           "SERVING_DIR": os.path.join(os.path.dirname(jit_exported), "s"),
           "MODELS": f"teacher:{jit_exported}"},
      capture_output=True, text=True)
  assert result.returncode == 0, result.stderr
  assert result.stdout.count("--xla_cpu_compilation_enabled=true") == 2
  # XLA's one op parallelises inside: TF Serving keeps its own threads.
  assert "_op_parallelism" not in result.stdout


@pytest.mark.slow
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
  assert "--xla_cpu_compilation_enabled" not in result.stdout
  # TF Serving gets the threads the exports are measured with, in both
  # commands (tensorflow_model_server and docker).
  intra, inter = threads.serving_threads()
  assert result.stdout.count(
      f"--tensorflow_intra_op_parallelism={intra} "
      f"--tensorflow_inter_op_parallelism={inter}") == 2
  assert f"--model_config_file={serving_dir}/models.config" in result.stdout
  assert "docker run" in result.stdout and "/config/models.docker.config" in (
      result.stdout)


@pytest.mark.slow
def test_serve_sh_prefer_tflite_needs_the_copy(exported, tmp_path):
  from bert import quantize
  version = tmp_path / "export" / "student" / "1"
  shutil.copytree(os.path.join(exported, "1"), version)

  def serve():
    return subprocess.run(
        ["bash", os.path.join(ROOT, "scripts", "serve.sh")],
        env={**os.environ, "SERVE_DRY_RUN": "1", "PREFER_TFLITE": "1",
             "SERVING_DIR": str(tmp_path / "serving"),
             "MODELS": f"student:{version.parent}"},
        capture_output=True, text=True)

  result = serve()
  assert result.returncode == 2
  assert "has no model.tflite" in result.stderr
  assert len(result.stderr.strip().splitlines()) == 1
  quantize.write_tflite(str(version), "float32")
  result = serve()
  assert result.returncode == 0, result.stderr
  assert result.stdout.count("--prefer_tflite_model=true") == 2
  # The warm-up file's predict_text requests need the SavedModel.
  assert "--enable_model_warmup" not in result.stdout


@pytest.mark.slow
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


@pytest.mark.slow
def test_use_serving_threads_before_and_after_tensorflow_starts(
    exported, jit_exported):
  # In a fresh process: set before TensorFlow runs anything (TensorFlow's
  # own choice, 0, when an XLA export is among the models); once it runs,
  # they stay as they were and the call says so (False).
  script = (
      "import sys\n"
      "import tensorflow as tf\n"
      "from bert import threads\n"
      "plain, jit = sys.argv[1:]\n"
      "threading = tf.config.threading\n"
      "def show(ok):\n"
      "  print(ok, threading.get_intra_op_parallelism_threads(),\n"
      "        threading.get_inter_op_parallelism_threads())\n"
      "show(threads.use_serving_threads([plain, jit]))\n"
      "show(threads.use_serving_threads([plain]))\n"
      "tf.constant(1.0) + 1.0\n"
      "show(threads.use_serving_threads([jit]))\n")
  intra, inter = threads.serving_threads()
  assert (intra, inter) == (1, len(os.sched_getaffinity(0)))
  assert threads.serving_threads(jit_compile=True) == (0, 0)
  result = subprocess.run([sys.executable, "-c", script, exported,
                           jit_exported], cwd=ROOT, capture_output=True,
                          text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
  assert result.returncode == 0, result.stderr
  assert result.stdout.split("\n")[:3] == [
      "True 0 0", f"True {intra} {inter}", f"False {intra} {inter}"]


def test_session_signature_runs_an_export_as_tf_serving_does(exported):
  served = export_reader.SessionSignature(exported, "predict_text")
  assert served.path == os.path.join(exported, "1")  # The highest version.
  assert set(served.inputs) == {"text"}
  texts = np.array([b"the cat sat on the mat", b"\xe5\xa5\xbd"])
  expected = export_reader.load(served.path).signatures["predict_text"](
      text=tf.constant(texts))
  got = served(text=texts)
  assert set(got) == set(expected)
  np.testing.assert_allclose(got["logits"], expected["logits"].numpy(),
                             atol=1e-6)
  with pytest.raises(ValueError, match="missing inputs"):
    served()
  with pytest.raises(UserError, match="no signature 'nope'"):
    export_reader.SessionSignature(exported, "nope")
