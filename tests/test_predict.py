"""bert/predict.py on a tiny exported model (2 layers, hidden 32)."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from bert import export_reader
from bert import predict
from bert.errors import UserError
from tests import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}

# Cased and accented latin, CJK, punctuation, unknown words, blank lines, and
# one text longer than max_seq_length (truncated by both tokenisers).
TEXTS = ["the cat sat good", "好 吃 , 很 好 !", "bad food 差", "",
         "Hello WORLD unaffable", "zzz qqq", "dog dog 不 贵 . a cats",
         " ".join(["the mat"] * 20) + " bad", "Héllo  wörld\tgood"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  return helpers.train_and_export(str(tmp_path_factory.mktemp("tiny")),
                                  epochs=3)["export_dir"]


def run_cli(args, stdin=None):
  result = subprocess.run([sys.executable, "-m", "bert.predict", *args],
                          input=stdin, capture_output=True, env=ENV, cwd=ROOT)
  assert result.returncode == 0, result.stderr.decode()[-2000:]
  return result.stdout.decode("utf-8")


def test_text_and_ids_paths_agree(exported):
  model = export_reader.ExportedClassifier(exported)
  assert model.dir == os.path.join(exported, "1")
  by_text = model.predict_text(TEXTS)
  by_ids = model.predict_ids(TEXTS)
  assert by_text["probabilities"].shape == (len(TEXTS), 2)
  np.testing.assert_allclose(by_ids["probabilities"],
                             by_text["probabilities"], atol=1e-5)
  assert list(by_ids["label"]) == list(by_text["label"])
  assert list(by_text["label"]) == [
      model.label_list[i] for i in by_text["probabilities"].argmax(-1)]
  # Not a constant model: the texts get different probabilities.
  assert np.ptp(by_text["probabilities"][:, 1]) > 1e-3


@pytest.mark.slow
def test_cli_file_and_stdin(exported, tmp_path):
  path = tmp_path / "in.txt"
  path.write_bytes(("\n".join(TEXTS) + "\n").encode("utf-8"))
  from_file = run_cli([f"--model={exported}", f"--input_file={path}"])
  # Batches of 2 over stdin give the same lines in the same order.
  from_stdin = run_cli([f"--model={exported}", "--batch_size=2"],
                       stdin=path.read_bytes())
  assert from_file == from_stdin
  lines = from_file.split("\n")[:-1]
  assert len(lines) == len(TEXTS)
  expected = export_reader.ExportedClassifier(exported).predict_text(TEXTS)
  for line, text, label, probs in zip(lines, TEXTS, expected["label"],
                                      expected["probabilities"]):
    got_label, got_prob, got_text = line.split("\t", 2)
    assert got_text == text
    assert got_label == label
    assert float(got_prob) == pytest.approx(probs.max(), abs=1e-4)
    assert 0.5 <= float(got_prob) <= 1.0


@pytest.mark.slow
def test_cli_use_ids_matches_text_and_saved_model_cli(exported, tmp_path):
  path = tmp_path / "in.txt"
  path.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
  text_probs = np.array([[float(p) for p in line.split("\t")] for line in
                         run_cli([f"--model={exported}", f"--input_file={path}",
                                  "--all_probabilities"]).splitlines()])
  ids_probs = np.array([[float(p) for p in line.split("\t")] for line in
                        run_cli([f"--model={exported}", f"--input_file={path}",
                                 "--all_probabilities", "--use_ids"]
                                ).splitlines()])
  assert text_probs.shape == (len(TEXTS), 2)
  np.testing.assert_allclose(ids_probs, text_probs, atol=1e-5)
  # saved_model_cli (with TF-Text's ops registered, as scripts/serve.sh
  # prints) on raw text gives the CLI's probabilities.
  texts = [t for t in TEXTS[:3]]
  code = ("import sys, tensorflow_text; from tensorflow.python.tools."
          "saved_model_cli import main; sys.argv[0] = 'saved_model_cli'; "
          "sys.exit(main())")
  quoted = ",".join(repr(t) for t in texts)
  result = subprocess.run(
      [sys.executable, "-c", code, "run", "--dir",
       os.path.join(exported, "1"), "--tag_set", "serve", "--signature_def",
       "predict_text", "--input_exprs", f"text=[{quoted}]"],
      capture_output=True, env=ENV, cwd=ROOT)
  assert result.returncode == 0, result.stderr.decode()[-2000:]
  out = result.stdout.decode()
  block = out.split("Result for output key probabilities:")[1]
  numbers = [float(x) for x in re.findall(r"-?\d+\.\d*(?:e-?\d+)?", block)]
  cli_probs = np.array(numbers[:2 * len(texts)]).reshape(len(texts), 2)
  np.testing.assert_allclose(cli_probs, text_probs[:len(texts)], atol=1e-5)


def test_read_batches_strips_line_ends_and_bom():
  import io
  stream = io.BytesIO(b"\xef\xbb\xbfone\r\ntwo\n\nthree")
  assert list(predict.read_batches(stream, 2)) == [[b"one", b"two"],
                                                   [b"", b"three"]]


@pytest.mark.slow
def test_bad_model_path(tmp_path):
  with pytest.raises(UserError, match="not a SavedModel"):
    export_reader.ExportedClassifier(str(tmp_path))
  result = subprocess.run(
      [sys.executable, "-m", "bert.predict", f"--model={tmp_path}"],
      input=b"x\n", capture_output=True, env=ENV, cwd=ROOT)
  assert result.returncode == 2
  assert result.stderr.decode().strip().splitlines()[-1].startswith(
      f"error: {tmp_path}: not a SavedModel")
