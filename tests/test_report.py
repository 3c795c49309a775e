"""bert/report.py on two tiny exported models (2 and 1 layers, hidden 32)."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from bert import export, modeling, report, run_classifier
from bert.errors import UserError
from tests import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def labels_of(path):
  with open(path, encoding="utf-8") as f:
    return np.array([int(line.rstrip("\n").rsplit("&", 1)[1]) for line in f])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
  """{name: dict of its files}: a 2-layer 'teacher' and a 1-layer 'student',
  each trained a few steps, evaluated, predicted and exported."""
  d = str(tmp_path_factory.mktemp("models"))
  data_dir = helpers.write_emotion_data(os.path.join(d, "data"), n_dev=40,
                                        n_test=24)
  vocab = helpers.write_vocab(d)
  out = {}
  for name, layers, epochs in (("teacher", 2, 4), ("student", 1, 1)):
    work = os.path.join(d, name)
    os.makedirs(work)
    files = {"bert_config_file": helpers.write_config(
                 work, num_hidden_layers=layers),
             "vocab_file": vocab, "data_dir": data_dir,
             "output_dir": os.path.join(work, "out"),
             "export_dir": os.path.join(work, "export")}
    helpers.run_main(run_classifier.main, task_name="emotion",
                     max_seq_length=16, train_batch_size=8,
                     learning_rate=2e-3, num_train_epochs=epochs,
                     eval_batch_size=64, do_train=True, do_eval=True,
                     do_predict=True, do_export=True, **files)
    out[name] = files
  return out


def test_evaluate_models_matches_training_outputs(models):
  names = ["teacher", "student"]
  reports = report.evaluate_models(
      [(n, models[n]["export_dir"]) for n in names],
      models["teacher"]["data_dir"], seq_length=16, batch_size=4,
      latency_runs=2, throughput_runs=1, warmup=1)
  assert [r.name for r in reports] == names
  data_dir = models["teacher"]["data_dir"]
  test_labels = labels_of(os.path.join(data_dir, "test.csv"))
  predictions = {}
  for r in reports:
    files = models[r.name]
    assert r.path == os.path.join(files["export_dir"], "1")
    # Parameters: the classifier that the config builds.
    config = modeling.BertConfig.from_json_file(files["bert_config_file"])
    expected = sum(int(np.prod(v.shape)) for v in
                   modeling.BertClassifier(config, 2).variables)
    assert r.parameters == expected
    assert r.size_bytes == sum(p.stat().st_size for p in
                               pathlib.Path(r.path).rglob("*") if p.is_file())
    assert r.latency_ms > 0 and r.throughput > 0
    # Accuracy: what run_classifier wrote for the same checkpoint.
    with open(os.path.join(files["output_dir"], "eval_results.txt")) as f:
      eval_results = dict(line.strip().split(" = ") for line in f)
    assert r.dev_accuracy == pytest.approx(
        float(eval_results["eval_accuracy"]), abs=1e-6)
    probs = np.loadtxt(os.path.join(files["output_dir"], "test_results.tsv"),
                       delimiter="\t")
    predictions[r.name] = probs.argmax(-1)
    assert r.test_accuracy == pytest.approx(
        float((predictions[r.name] == test_labels).mean()), abs=1e-6)
  assert reports[0].test_agreement == 1.0
  assert reports[1].test_agreement == pytest.approx(
      float((predictions["student"] == predictions["teacher"]).mean()))
  assert reports[0].parameters > reports[1].parameters


def test_report_cli_writes_table_json_and_png(models, tmp_path):
  output_dir = tmp_path / "report"
  spec = ",".join(f"{n}:{models[n]['export_dir']}"
                  for n in ("teacher", "student"))
  result = subprocess.run(
      [sys.executable, "-m", "bert.report", f"--models={spec}",
       f"--data_dir={models['teacher']['data_dir']}",
       f"--output_dir={output_dir}", "--seq_length=16", "--batch_size=4",
       "--latency_runs=2", "--throughput_runs=1", "--warmup_runs=1"],
      capture_output=True, env=ENV, cwd=ROOT)
  assert result.returncode == 0, result.stderr.decode()[-2000:]
  md = (output_dir / "report.md").read_text(encoding="utf-8")
  table = [line for line in md.splitlines() if line.startswith("| ")]
  header = [c.strip() for c in table[0].strip("|").split("|")]
  assert header == ["model", "parameters", "size on disk",
                    "latency, batch 1 (ms)", "speed-up at batch 1",
                    "throughput, batch 4 (examples/s)", "dev accuracy",
                    "test accuracy", "test agreement with teacher"]
  rows = {r.split("|")[1].strip(): [c.strip() for c in r.strip("|").split("|")]
          for r in table[2:4]}
  assert set(rows) == {"`teacher`", "`student`"}
  assert rows["`teacher`"][4] == "1.0x"
  assert all(len(r) == len(header) for r in rows.values())
  assert "faster than `teacher`" in md
  # Timed as scripts/serve.sh serves: a process that only serves.
  intra, inter = export.serving_threads()
  assert f"running {intra} intra-op and {inter} inter-op threads" in md
  assert "Latency: median of 2 calls of `serving_default`" in md
  # The printed table is the file's.
  assert table[0] in result.stdout.decode()
  data = json.loads((output_dir / "report.json").read_text())
  assert [m["name"] for m in data["models"]] == ["teacher", "student"]
  png = (output_dir / "accuracy_vs_latency.png").read_bytes()
  assert png.startswith(PNG_SIGNATURE) and len(png) > 1000
  assert not [p for p in os.listdir(output_dir) if ".tmp" in p]


def test_interpretation_mentions_distillation_gain():
  def r(name, latency, params, acc):
    return report.ModelReport(name, name, params, 1, latency, 1.0, acc, acc, 1.0)
  text = report.interpretation([r("teacher", 10.0, 4000, 0.90),
                                r("student_plain", 2.0, 1000, 0.85),
                                r("student", 2.5, 1000, 0.89)])
  assert "`student` is 4.0x faster than `teacher`" in text
  assert "1.00 points lower" in text
  assert "by +4.00 points" in text


def test_bad_arguments(models):
  with pytest.raises(UserError, match="used twice"):
    report.parse_models(["a:x", "a:y"])
  with pytest.raises(UserError, match="expected name:path"):
    report.parse_models([":x"])
  assert report.parse_models(["export/student/"]) == [("student",
                                                      "export/student/")]
  with pytest.raises(UserError, match="max_position_embeddings=40"):
    report.evaluate_models([("t", models["teacher"]["export_dir"])],
                           models["teacher"]["data_dir"], seq_length=64,
                           latency_runs=1, throughput_runs=1, warmup=0)


def test_int8_copies_are_measured_beside_their_float_exports(models):
  from bert import quantize
  data_dir = models["teacher"]["data_dir"]
  with pytest.raises(UserError, match="--tflite: none of the models has a "
                     "model.tflite"):
    report.evaluate_models([("student", models["student"]["export_dir"])],
                           data_dir, tflite=True)
  tflite = quantize.write_tflite(models["teacher"]["export_dir"])
  reports = report.evaluate_models(
      [(n, models[n]["export_dir"]) for n in ("teacher", "student")],
      data_dir, seq_length=16, batch_size=4,
      latency_runs=2, throughput_runs=1, warmup=1, tflite=True)
  # Only the model with a copy gets an int8 row.
  assert [r.name for r in reports] == ["teacher", "teacher_int8", "student"]
  float_report, int8_report = reports[:2]
  assert int8_report.name == "teacher_int8"
  assert int8_report.path == tflite
  assert int8_report.size_bytes == os.path.getsize(tflite)
  # The float export's size leaves the int8 copy out.
  assert float_report.size_bytes == sum(
      p.stat().st_size for p in pathlib.Path(float_report.path).rglob("*")
      if p.is_file() and p.name != quantize.TFLITE_FILE)
  assert int8_report.parameters == float_report.parameters
  # Int8 weights: most predictions are the float model's.
  assert int8_report.test_agreement >= 0.8
  assert abs(int8_report.dev_accuracy - float_report.dev_accuracy) <= 0.1
  assert "The int8 TF Lite copy of `teacher` runs at" in \
      report.interpretation(reports)
  # A float32 copy is its own row, with the SavedModel's predictions.
  quantize.write_tflite(models["teacher"]["export_dir"], "float32")
  reports = report.evaluate_models(
      [("teacher", models["teacher"]["export_dir"])], data_dir,
      seq_length=16, batch_size=4, latency_runs=2, throughput_runs=1,
      warmup=1, tflite=True)
  assert [r.name for r in reports] == ["teacher", "teacher_tflite"]
  assert reports[1].test_agreement == 1.0
  assert reports[1].dev_accuracy == reports[0].dev_accuracy
  assert "The float32 TF Lite copy of `teacher` runs at" in \
      report.interpretation(reports)
