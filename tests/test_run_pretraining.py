"""run_pretraining.py and bert/pretraining.py on a tiny corpus: Google's
losses against numpy, head names, eval metrics, resume, bad checkpoints."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from bert import checkpoints, modeling, pretraining, run_classifier
from bert import run_pretraining
from bert.errors import UserError
from tests import helpers
from tests.test_create_pretraining_data import OPTIONS, corpus, vocab

from bert import create_pretraining_data as cpd

SEQ, PREDICTIONS = OPTIONS.max_seq_length, OPTIONS.max_predictions_per_seq


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  d = tmp_path_factory.mktemp("pretrain")
  tokenizer = vocab(d)
  records = [str(d / "pretrain-0.tfrecord"), str(d / "pretrain-1.tfrecord")]
  cpd.create([corpus(d, documents=20, sentences=(4, 9))], records, tokenizer,
             OPTIONS, seed=1)
  config = {**helpers.TINY_CONFIG, "vocab_size": len(tokenizer.vocab)}
  (d / "bert_config.json").write_text(json.dumps(config))
  return {"dir": d, "records": records, "config": str(d / "bert_config.json"),
          "vocab": str(d / "vocab.txt")}


def run(env, output_dir, **flags):
  base = {"input_file": str(env["dir"] / "pretrain-*.tfrecord"),
          "bert_config_file": env["config"], "vocab_file": env["vocab"],
          "max_seq_length": SEQ, "max_predictions_per_seq": PREDICTIONS,
          "train_batch_size": 8, "eval_batch_size": 8, "learning_rate": 1e-3,
          "num_train_steps": 6, "num_warmup_steps": 1,
          "save_checkpoints_steps": 3, "log_steps": 3,
          "output_dir": str(output_dir)}
  return helpers.run_main(run_pretraining.main, **{**base, **flags})


def np_log_softmax(x):
  x = x.astype(np.float64) - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_losses_match_numpy():
  rng = np.random.default_rng(0)
  logits = rng.standard_normal((3, 4, 11)).astype(np.float32)
  ids = rng.integers(0, 11, (3, 4))
  weights = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]], np.float32)
  loss, nll = pretraining.masked_lm_loss(tf.constant(logits), tf.constant(ids),
                                         tf.constant(weights))
  want_nll = -np.take_along_axis(np_log_softmax(logits), ids[..., None],
                                 -1)[..., 0]
  np.testing.assert_allclose(nll, want_nll, rtol=1e-5)
  np.testing.assert_allclose(
      float(loss), (weights * want_nll).sum() / (weights.sum() + 1e-5),
      rtol=1e-5)
  nsp_logits = rng.standard_normal((3, 2)).astype(np.float32)
  labels = np.array([0, 1, 1])
  loss, _ = pretraining.next_sentence_loss(tf.constant(nsp_logits),
                                           tf.constant(labels))
  np.testing.assert_allclose(
      float(loss), -np_log_softmax(nsp_logits)[np.arange(3), labels].mean(),
      rtol=1e-5)


def test_train_eval_resume_and_google_names(env, tmp_path):
  out = tmp_path / "out"
  run(env, out, do_train=True, do_eval=True)
  names = {n for n, _ in tf.train.list_variables(str(out))}
  for name in ("cls/predictions/transform/dense/kernel",
               "cls/predictions/transform/dense/bias",
               "cls/predictions/transform/LayerNorm/gamma",
               "cls/predictions/transform/LayerNorm/beta",
               "cls/predictions/output_bias",
               "cls/seq_relationship/output_weights",
               "cls/seq_relationship/output_bias",
               "bert/embeddings/word_embeddings", "global_step",
               "bert/encoder/layer_1/output/dense/kernel/adam_m"):
    assert name in names, name
  # The decoder is tied: no separate output matrix.
  assert not [n for n in names if n.startswith("cls/predictions/") and
              "output_weights" in n]
  results = dict(line.strip().split(" = ")
                 for line in open(out / "eval_results.txt"))
  assert set(results) == {"masked_lm_accuracy", "masked_lm_loss",
                          "next_sentence_accuracy", "next_sentence_loss",
                          "loss", "global_step"}
  assert results["global_step"] == "6"

  # The metrics are Google's definitions, recomputed here from the model.
  config = modeling.BertConfig.from_json_file(env["config"])
  model = modeling.BertForPreTraining(config)
  checkpoints.load_by_name(modeling.variables_by_name(model), str(out),
                           strict=True)
  dataset = pretraining.make_dataset(env["records"], SEQ, PREDICTIONS, 8,
                                     is_training=False)
  correct = weight = nll_sum = nsp_right = count = 0.0
  batch_losses = []
  for f in dataset:
    mlm, nsp = model(f["input_ids"], f["input_mask"], f["segment_ids"],
                     f["masked_lm_positions"])
    mlm, nsp = mlm.numpy(), nsp.numpy()
    w = f["masked_lm_weights"].numpy()
    ids = f["masked_lm_ids"].numpy()
    nll = -np.take_along_axis(np_log_softmax(mlm), ids[..., None], -1)[..., 0]
    correct += (w * (mlm.argmax(-1) == ids)).sum()
    weight += w.sum()
    nll_sum += (w * nll).sum()
    labels = f["next_sentence_labels"].numpy()
    nsp_nll = -np_log_softmax(nsp)[np.arange(len(labels)), labels]
    nsp_right += (nsp.argmax(-1) == labels).sum()
    count += len(labels)
    batch_losses.append((w * nll).sum() / (w.sum() + 1e-5) + nsp_nll.mean())
  assert float(results["masked_lm_accuracy"]) == pytest.approx(
      correct / weight, abs=1e-6)
  assert float(results["masked_lm_loss"]) == pytest.approx(
      nll_sum / weight, rel=1e-4)
  assert float(results["next_sentence_accuracy"]) == pytest.approx(
      nsp_right / count, abs=1e-6)
  assert float(results["loss"]) == pytest.approx(np.mean(batch_losses),
                                                 rel=1e-4)

  # Longer: resumes at step 6.
  run(env, out, do_train=True, num_train_steps=9)
  assert checkpoints.read_global_step(str(out)) == 9

  # --do_eval alone evaluates --init_checkpoint (a fresh output dir).
  other = tmp_path / "eval_only"
  run(env, other, do_eval=True,
      init_checkpoint=tf.train.latest_checkpoint(str(out)))
  results = dict(line.strip().split(" = ")
                 for line in open(other / "eval_results.txt"))
  assert results["global_step"] == "9"


def test_jit_compiled_pretraining(env, tmp_path, caplog):
  caplog.set_level("INFO", logger="absl")
  out = tmp_path / "out"
  run(env, out, do_train=True, do_eval=True, jit_compile=True)
  assert "the step compiled by XLA" in caplog.text
  results = dict(line.strip().split(" = ")
                 for line in open(out / "eval_results.txt"))
  assert results["global_step"] == "6"
  assert np.isfinite(float(results["masked_lm_loss"]))


def test_eval_of_a_checkpoint_without_heads_is_one_line(env, tmp_path):
  d = str(tmp_path)
  classifier_out = tmp_path / "classifier"
  helpers.run_main(
      run_classifier.main, task_name="emotion", max_seq_length=16,
      train_batch_size=8, num_train_epochs=1, learning_rate=1e-3,
      bert_config_file=env["config"], vocab_file=env["vocab"],
      data_dir=helpers.write_emotion_data(os.path.join(d, "data")),
      output_dir=str(classifier_out), do_train=True)
  with pytest.raises(UserError) as e:
    run(env, tmp_path / "eval", do_eval=True,
        init_checkpoint=tf.train.latest_checkpoint(str(classifier_out)))
  assert "no pre-training heads" in str(e.value) and "\n" not in str(
      e.value)


def test_vocab_that_does_not_fit_is_one_line(env, tmp_path):
  config = {**helpers.TINY_CONFIG, "vocab_size": 10}
  (tmp_path / "small.json").write_text(json.dumps(config))
  with pytest.raises(UserError) as e:
    run(env, tmp_path / "out", do_train=True,
        bert_config_file=str(tmp_path / "small.json"))
  assert "vocab" in str(e.value) and "\n" not in str(e.value)
