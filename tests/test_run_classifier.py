"""run_classifier.py end to end on tiny data (2 layers, hidden 32)."""

import os

import numpy as np
import pytest
import tensorflow as tf

from bert import run_classifier
from bert import export_reader
from bert.errors import UserError
from tests import helpers



@pytest.fixture
def files(tmp_path):
  return {**helpers.tiny_task_files(str(tmp_path)),
          "export_dir": str(tmp_path / "export")}


def run(files, **flags):
  base = {"task_name": "emotion", "max_seq_length": 16, "train_batch_size": 8,
          "learning_rate": 2e-3, "num_train_epochs": 6, "log_steps": 20}
  return helpers.run_main(run_classifier.main, **{**base, **files, **flags})


def read_results(path):
  with open(path) as f:
    return dict(line.strip().split(" = ") for line in f)


def test_train_eval_predict_export(files):
  run(files, do_train=True, do_eval=True, do_predict=True, do_export=True,
      save_checkpoints_steps=30)
  out = files["output_dir"]
  results = read_results(os.path.join(out, "eval_results.txt"))
  assert int(results["global_step"]) == 72  # 96 / 8 * 6
  assert float(results["eval_accuracy"]) >= 0.8
  assert {"eval_loss", "eval_f1", "loss"} <= set(results)
  probs = np.loadtxt(os.path.join(out, "test_results.tsv"), delimiter="\t")
  assert probs.shape == (16, 2)
  np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)
  # The exported model gives the checkpoint's probabilities.
  version = os.path.join(files["export_dir"], "1")
  assert sorted(os.listdir(files["export_dir"])) == ["1"]
  assert {"vocab.txt", "bert_config.json", "export_info.json"} <= set(
      os.listdir(os.path.join(version, "assets")))
  assert export_reader.read_export_info(version)["label_list"] == ["0", "1"]
  loaded = tf.saved_model.load(version)
  texts = [line.rsplit("&", 1)[0] for line in open(
      os.path.join(files["data_dir"], "test.csv"), encoding="utf-8")]
  from bert import data, processors, tokenization
  tokenizer = tokenization.FullTokenizer(files["vocab_file"])
  features = data.features_to_tensors(data.convert_examples(
      [processors.InputExample(str(i), t) for i, t in enumerate(texts)],
      ["0", "1"], 16, tokenizer))
  served = loaded.signatures["serving_default"](
      input_ids=tf.constant(features["input_ids"]),
      input_mask=tf.constant(features["input_mask"]),
      segment_ids=tf.constant(features["segment_ids"]))
  np.testing.assert_allclose(served["probabilities"].numpy(), probs, atol=1e-5)
  # Re-running eval alone reads the latest checkpoint; a second export is
  # version 2 and leaves version 1 alone.
  run(files, do_export=True)
  assert sorted(os.listdir(files["export_dir"])) == ["1", "2"]


def test_jit_compiled_training_learns_as_well(files, caplog):
  caplog.set_level("INFO", logger="absl")
  run(files, do_train=True, do_eval=True, jit_compile=True)
  assert "the step compiled by XLA" in caplog.text
  results = read_results(os.path.join(files["output_dir"], "eval_results.txt"))
  assert int(results["global_step"]) == 72
  assert float(results["eval_accuracy"]) >= 0.8


@pytest.mark.parametrize("task", ["emotion", "mrpc"])
def test_predict_with_google_finetuned_checkpoint(files, tmp_path, task):
  """A `model.ckpt-N` as Google's run_classifier.py writes it predicts the
  probabilities of a numpy BERT with the same weights."""
  weights = helpers.google_weights(helpers.TINY_CONFIG, num_labels=2, seed=3)
  prefix = helpers.write_google_checkpoint(
      str(tmp_path / "google" / "model.ckpt"), weights, global_step=11,
      adam_slots=True)
  data_dir = tmp_path / task
  data_dir.mkdir()
  pairs = [("the cat sat", "on the mat"), ("好 吃 不 贵", "很 差"),
           ("hello world", "the dog sat on the mat the cat sat on a mat")]
  if task == "mrpc":
    lines = ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"] + [
        f"1\t{i}\t{i}\t{a}\t{b}" for i, (a, b) in enumerate(pairs)]
    (data_dir / "test.tsv").write_text("\n".join(lines) + "\n")
  else:
    (data_dir / "test.csv").write_text(
        "\n".join(a + " " + b for a, b in pairs) + "\n")
  run({**files, "data_dir": str(data_dir)}, task_name=task, do_predict=True,
      init_checkpoint=prefix, max_seq_length=12)
  probs = np.loadtxt(os.path.join(files["output_dir"], "test_results.tsv"),
                     delimiter="\t")
  from bert import tokenization
  tokenizer = tokenization.FullTokenizer(files["vocab_file"])
  for row, (a, b) in zip(probs, pairs):
    ta = tokenizer.tokenize(a if task == "mrpc" else a + " " + b)
    tb = tokenizer.tokenize(b) if task == "mrpc" else []
    while len(ta) + len(tb) > (12 - 3 if tb else 12 - 2):
      (ta if len(ta) > len(tb) else tb).pop()
    tokens = ["[CLS]"] + ta + ["[SEP]"] + (tb + ["[SEP]"] if tb else [])
    ids = [tokenizer.convert_tokens_to_ids(tokens)]
    segments = [[0] * (len(ta) + 2) + [1] * (len(tb) + 1 if tb else 0)]
    _, _, _, pooled = helpers.numpy_bert(weights, helpers.TINY_CONFIG, ids,
                                         [[1] * len(tokens)], segments)
    logits = pooled @ weights["output_weights"].T + weights["output_bias"]
    expected = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(row, expected[0], atol=1e-5)


def test_bad_input_errors_and_output_dir_kept(files, tmp_path):
  os.makedirs(files["output_dir"])
  keep = os.path.join(files["output_dir"], "notes.txt")
  with open(keep, "w") as f:
    f.write("mine")
  with pytest.raises(UserError, match="unknown task 'nope'"):
    run(files, task_name="nope", do_train=True)
  with pytest.raises(UserError, match="no checkpoint in --output_dir"):
    run(files, do_export=True)
  with open(os.path.join(files["data_dir"], "train.csv"), "a") as f:
    f.write("a line without separator\n")
  with pytest.raises(UserError, match=r"train.csv:97"):
    run(files, do_train=True)
  with pytest.raises(UserError, match="--max_seq_length=64 is more than"):
    run(files, do_train=True, max_seq_length=64)
  assert open(keep).read() == "mine"
