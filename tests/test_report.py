"""bert/report.py on two tiny exported models (2 and 1 layers, hidden 32),
the n-gram baseline beside them, and the bootstrap intervals."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from bert import modeling, report, run_classifier
from bert import export_reader
from bert import threads
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
  # The baseline comes last, timed with the models.
  assert [r.name for r in reports] == names + ["baseline_ngram"]
  assert reports[-1].latency_ms > 0 and reports[-1].throughput > 0
  reports = reports[:2]
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


@pytest.mark.slow
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
  baseline_row = [c.strip() for c in table[4].strip("|").split("|")]
  assert baseline_row[0] == "`baseline_ngram`"
  assert len(baseline_row) == len(header)
  assert "beats the baseline" in md and "interval" in md
  # Timed as scripts/serve.sh serves: a process that only serves.
  intra, inter = threads.serving_threads()
  assert f"running {intra} intra-op and {inter} inter-op threads" in md
  assert "Latency: median of 2 calls of `serving_default`" in md
  # The printed table is the file's.
  assert table[0] in result.stdout.decode()
  data = json.loads((output_dir / "report.json").read_text())
  assert [m["name"] for m in data["models"]] == ["teacher", "student",
                                                 "baseline_ngram"]
  # Today's shape: per-example results stay out of the file.
  assert set(data["models"][2]) == set(data["models"][0])
  assert "test_correct" not in data["models"][0]
  assert {(c["model"], c["against"]) for c in data["comparisons"]} == {
      ("student", "teacher"), ("teacher", "baseline_ngram"),
      ("student", "baseline_ngram")}
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
      latency_runs=2, throughput_runs=1, warmup=1, tflite=True,
      baseline="none")
  # Only the model with a copy gets an int8 row.
  assert [r.name for r in reports] == ["teacher", "teacher_int8", "student"]
  float_report, int8_report = reports[:2]
  assert int8_report.name == "teacher_int8"
  assert int8_report.path == tflite
  assert int8_report.size_bytes == os.path.getsize(tflite)
  # The float export's size leaves the int8 copy out.
  assert float_report.size_bytes == sum(
      p.stat().st_size for p in pathlib.Path(float_report.path).rglob("*")
      if p.is_file() and p.name != export_reader.TFLITE_FILE)
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
      warmup=1, tflite=True, baseline="none")
  assert [r.name for r in reports] == ["teacher", "teacher_tflite"]
  assert reports[1].test_agreement == 1.0
  assert reports[1].dev_accuracy == reports[0].dev_accuracy
  assert "The float32 TF Lite copy of `teacher` runs at" in \
      report.interpretation(reports)


@pytest.mark.slow
def test_baseline_none_leaves_it_out(models, tmp_path):
  output_dir = tmp_path / "report"
  result = subprocess.run(
      [sys.executable, "-m", "bert.report",
       f"--models=student:{models['student']['export_dir']}",
       f"--data_dir={models['teacher']['data_dir']}",
       f"--output_dir={output_dir}", "--seq_length=16", "--batch_size=2",
       "--latency_runs=1", "--throughput_runs=1", "--warmup_runs=0",
       "--baseline=none"], capture_output=True, env=ENV, cwd=ROOT)
  assert result.returncode == 0, result.stderr.decode()[-2000:]
  data = json.loads((output_dir / "report.json").read_text())
  assert [m["name"] for m in data["models"]] == ["student"]
  assert "baseline" not in (output_dir / "report.md").read_text(
      encoding="utf-8")


def noisy_copy(data_dir, out_dir, flip_every=4):
  """The emotion data with every `flip_every`-th label flipped: a task the
  baseline cannot get all right."""
  os.makedirs(out_dir)
  for split in ("train", "dev", "test"):
    with open(os.path.join(data_dir, f"{split}.csv"), encoding="utf-8") as f:
      lines = f.read().splitlines()
    noisy = [f"{t}&{1 - int(l) if i % flip_every == 0 else int(l)}"
             for i, (t, l) in enumerate(line.rsplit("&", 1)
                                        for line in lines)]
    with open(os.path.join(out_dir, f"{split}.csv"), "w",
              encoding="utf-8") as f:
      f.write("\n".join(noisy) + "\n")
  return out_dir


def test_baseline_row_is_scikit_learns_model(models, tmp_path):
  data_dir = noisy_copy(models["teacher"]["data_dir"], str(tmp_path / "d"))
  reports = report.evaluate_models(
      [("teacher", models["teacher"]["export_dir"])], data_dir,
      seq_length=16, batch_size=4, latency_runs=2, throughput_runs=1,
      warmup=0)
  assert [r.name for r in reports] == ["teacher", "baseline_ngram"]
  base = reports[1]

  def read(split):
    with open(os.path.join(data_dir, f"{split}.csv"), encoding="utf-8") as f:
      return [line.rstrip("\n").rsplit("&", 1) for line in f]
  train = read("train")
  vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 3),
                               sublinear_tf=True, min_df=2)
  classifier = LogisticRegression(C=10, max_iter=2000).fit(
      vectorizer.fit_transform([t for t, _ in train]),
      [l for _, l in train])
  for split, got in (("dev", base.dev_accuracy), ("test", base.test_accuracy)):
    rows = read(split)
    predicted = classifier.predict(vectorizer.transform([t for t, _ in rows]))
    expected = float(np.mean(predicted == np.array([l for _, l in rows])))
    assert got == pytest.approx(expected, abs=1e-9), split
  # The flipped labels keep it from a perfect score.
  assert 0 < base.test_accuracy < 1
  assert base.parameters == classifier.coef_.size + classifier.intercept_.size
  assert base.test_correct.shape == (len(read("test")),)
  # Agreement with the reference is over label strings.
  assert 0 <= base.test_agreement <= 1
  assert "The character n-gram baseline (`baseline_ngram`" in \
      report.interpretation(reports)


def test_baseline_needs_a_train_split(models, tmp_path):
  data_dir = tmp_path / "no_train"
  data_dir.mkdir()
  for split in ("dev", "test"):
    (data_dir / f"{split}.csv").write_text("good food&1\nbad food&0\n",
                                          encoding="utf-8")
  with pytest.raises(UserError, match=r"--baseline=ngram needs the train "
                     r"split \(.*train.csv: file not found\); pass "
                     "--baseline=none"):
    report.evaluate_models([("student", models["student"]["export_dir"])],
                           str(data_dir), seq_length=16, latency_runs=1,
                           throughput_runs=1, warmup=0)


def test_paired_bootstrap_interval():
  rng = np.random.default_rng(3)
  a = rng.random(500) < 0.8
  b = np.where(rng.random(500) < 0.1, ~a, a)  # b differs on about 50.
  diff, low, high = report.paired_bootstrap(a, b)
  assert diff == pytest.approx(100 * (a.mean() - b.mean()))
  assert low <= diff <= high and low < high
  # Reproducible with the seed; another seed gives other resamples.
  assert report.paired_bootstrap(a, b) == (diff, low, high)
  assert report.paired_bootstrap(a, b, seed=1) != (diff, low, high)
  # More confidence, a wider interval.
  _, low99, high99 = report.paired_bootstrap(a, b, level=0.99)
  assert low99 <= low and high99 >= high
  assert report.paired_bootstrap(a, a) == (0.0, 0.0, 0.0)


def bootstrap_case(diff_points, swaps=10, n=500, seed=0):
  """(a, b): per-example results of two models on n examples that differ on
  `swaps` examples each way, plus `diff_points` points where only a is
  right."""
  rng = np.random.default_rng(seed)
  b = rng.random(n) < 0.7
  a = b.copy()
  wrong, right = np.flatnonzero(~b), np.flatnonzero(b)
  a[wrong[:swaps + int(round(diff_points * n / 100))]] = True
  a[right[:swaps]] = False
  return a, b


def test_difference_says_within_or_outside_the_noise():
  def r(name, correct):
    return report.ModelReport(name, name, 1000, 1, 1.0, 1.0, None,
                              float(correct.mean()), None, correct)
  # One seed, 500 examples, 0.4 points apart: no gain.
  a, b = bootstrap_case(0.4)
  _, low, high = report.paired_bootstrap(a, b)
  assert low <= 0 <= high and report.within_noise(low, high)
  text = report.describe_difference(r("student", a), r("student_plain", b))
  assert text.startswith("+0.40 points (95% interval ")
  assert text.endswith(": within the noise)")
  # 10 points apart on 500 examples: outside it.
  a, b = bootstrap_case(10)
  _, low, high = report.paired_bootstrap(a, b)
  assert low > 0 and not report.within_noise(low, high)
  text = report.describe_difference(r("student", a), r("student_plain", b))
  assert text.startswith("+10.00 points (95% interval +")
  assert text.endswith(": outside the noise)")
  assert "within" not in text


def test_interpretation_says_whether_bert_beats_the_baseline():
  def r(name, correct, latency=1.0):
    return report.ModelReport(name, name, 1000, 1, latency, 1.0, None,
                              float(correct.mean()), None, correct)
  a_close, base = bootstrap_case(0.4)
  a_far, _ = bootstrap_case(10)
  text = report.interpretation([r("teacher", a_far, 10.0),
                                r("student", a_close),
                                r("baseline_ngram", base, 0.1)])
  assert "`teacher` +10.00 points (95% interval +" in text
  assert "`student` +0.40 points (95% interval -" in text
  assert ("`teacher` beats the baseline outside the noise. `student` does "
          "not: the difference is within the noise.") in text
  # The baseline is not a model to compare with the reference.
  assert "`baseline_ngram` is" not in text
  text = report.interpretation([r("student", a_close),
                                r("baseline_ngram", base)])
  assert "No BERT model beats the baseline outside the noise." in text
  text = report.interpretation([r("teacher", a_far),
                                r("baseline_ngram", base)])
  assert "Every BERT model beats the baseline, outside the noise." in text
  # Worse than the baseline is said too.
  text = report.interpretation([r("teacher", base),
                                r("baseline_ngram", a_far)])
  assert "`teacher` is worse than the baseline, outside the noise." in text
