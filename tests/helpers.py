"""Shared test fixtures: tiny configs, vocab files, Google-layout checkpoints
written with TF1 graph-mode APIs, and a numpy BERT used as the reference."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import tensorflow as tf

TINY_CONFIG = {
    "vocab_size": 64, "hidden_size": 32, "num_hidden_layers": 2,
    "num_attention_heads": 4, "intermediate_size": 37, "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 40, "type_vocab_size": 2,
    "initializer_range": 0.02,
    # Keys Google's files carry that the model ignores.
    "directionality": "bidi", "pooler_fc_size": 32,
}

TINY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat",
              "sat", "on", "mat", "dog", "un", "##aff", "##able", "good",
              "bad", "food", "好", "吃", "不", "贵", "很", "差", ",", ".", "!",
              "a", "##s", "hello", "world"]


def write_config(directory: str, **overrides) -> str:
  path = os.path.join(directory, "bert_config.json")
  with open(path, "w") as f:
    json.dump({**TINY_CONFIG, **overrides}, f)
  return path


def write_vocab(directory: str, tokens=TINY_VOCAB) -> str:
  path = os.path.join(directory, "vocab.txt")
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(tokens) + "\n")
  return path


def google_weights(config: dict, num_labels: int | None = None,
                   seed: int = 0, with_heads: bool = True) -> dict:
  """Random weights under Google's checkpoint names, scaled so that every
  layer's activations are far from trivial."""
  rng = np.random.default_rng(seed)
  h, inter = config["hidden_size"], config["intermediate_size"]

  def r(*shape, scale=0.2):
    return (rng.standard_normal(shape) * scale).astype(np.float32)

  w = {
      "bert/embeddings/word_embeddings": r(config["vocab_size"], h),
      "bert/embeddings/token_type_embeddings": r(config["type_vocab_size"], h),
      "bert/embeddings/position_embeddings":
          r(config["max_position_embeddings"], h),
      "bert/embeddings/LayerNorm/gamma": 1 + r(h, scale=0.1),
      "bert/embeddings/LayerNorm/beta": r(h, scale=0.1),
      "bert/pooler/dense/kernel": r(h, h), "bert/pooler/dense/bias": r(h),
  }
  for i in range(config["num_hidden_layers"]):
    p = f"bert/encoder/layer_{i}/"
    for name in ("query", "key", "value"):
      w[p + f"attention/self/{name}/kernel"] = r(h, h)
      w[p + f"attention/self/{name}/bias"] = r(h)
    w[p + "attention/output/dense/kernel"] = r(h, h)
    w[p + "attention/output/dense/bias"] = r(h)
    w[p + "attention/output/LayerNorm/gamma"] = 1 + r(h, scale=0.1)
    w[p + "attention/output/LayerNorm/beta"] = r(h, scale=0.1)
    w[p + "intermediate/dense/kernel"] = r(h, inter)
    w[p + "intermediate/dense/bias"] = r(inter)
    w[p + "output/dense/kernel"] = r(inter, h)
    w[p + "output/dense/bias"] = r(h)
    w[p + "output/LayerNorm/gamma"] = 1 + r(h, scale=0.1)
    w[p + "output/LayerNorm/beta"] = r(h, scale=0.1)
  if with_heads:
    w["cls/predictions/transform/dense/kernel"] = r(h, h)
    w["cls/predictions/transform/dense/bias"] = r(h)
    w["cls/predictions/transform/LayerNorm/gamma"] = 1 + r(h, scale=0.1)
    w["cls/predictions/transform/LayerNorm/beta"] = r(h, scale=0.1)
    w["cls/predictions/output_bias"] = r(config["vocab_size"])
    w["cls/seq_relationship/output_weights"] = r(2, h)
    w["cls/seq_relationship/output_bias"] = r(2)
  if num_labels:
    w["output_weights"] = r(num_labels, h)
    w["output_bias"] = r(num_labels)
  return w


def write_google_checkpoint(prefix: str, weights: dict, global_step=None,
                            adam_slots: bool = False) -> str:
  """Saves `weights` the way Google's TF1 code does: graph-mode variables
  created by name and a `tf.compat.v1.train.Saver`."""
  graph = tf.Graph()
  with graph.as_default():
    tf1 = tf.compat.v1
    variables = []
    for name, value in weights.items():
      variables.append(tf1.get_variable(
          name, initializer=tf.constant(value)))
      if adam_slots:
        for slot in ("adam_m", "adam_v"):
          variables.append(tf1.get_variable(
              f"{name}/{slot}", initializer=tf.zeros(value.shape)))
    if global_step is not None:
      variables.append(tf1.get_variable(
          "global_step", initializer=tf.constant(global_step, tf.int64)))
    saver = tf1.train.Saver(variables)
    with tf1.Session(graph=graph) as session:
      session.run(tf1.global_variables_initializer())
      return saver.save(session, prefix, global_step=global_step)


# ----------------------------------------------------------------------------
# A numpy BERT written straight from the paper and Google's conventions, used
# as the independent reference for the TF model.


def _layer_norm(x, gamma, beta):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + 1e-12) * gamma + beta


def _gelu_tanh(x):
  return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def _softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def numpy_bert(w: dict, config: dict, input_ids, input_mask, segment_ids):
  """Returns (embedding_output, [layer outputs], [attention probs], pooled)."""
  ids = np.asarray(input_ids)
  b, s = ids.shape
  h, n = config["hidden_size"], config["num_attention_heads"]
  d = h // n
  x = (w["bert/embeddings/word_embeddings"][ids] +
       w["bert/embeddings/token_type_embeddings"][np.asarray(segment_ids)] +
       w["bert/embeddings/position_embeddings"][:s][None])
  x = _layer_norm(x, w["bert/embeddings/LayerNorm/gamma"],
                  w["bert/embeddings/LayerNorm/beta"])
  emb = x
  adder = (1.0 - np.asarray(input_mask, np.float64))[:, None, None, :] * -10000
  layers, probs_all = [], []
  for i in range(config["num_hidden_layers"]):
    p = f"bert/encoder/layer_{i}/"

    def dense(t, name):
      return t @ w[p + name + "/kernel"] + w[p + name + "/bias"]

    def heads(t):
      return t.reshape(b, s, n, d).transpose(0, 2, 1, 3)

    q, k, v = (heads(dense(x, f"attention/self/{m}"))
               for m in ("query", "key", "value"))
    probs = _softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(d) + adder)
    ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(b, s, h)
    att = _layer_norm(x + dense(ctx, "attention/output/dense"),
                      w[p + "attention/output/LayerNorm/gamma"],
                      w[p + "attention/output/LayerNorm/beta"])
    inter = _gelu_tanh(dense(att, "intermediate/dense"))
    x = _layer_norm(att + dense(inter, "output/dense"),
                    w[p + "output/LayerNorm/gamma"],
                    w[p + "output/LayerNorm/beta"])
    layers.append(x)
    probs_all.append(probs)
  pooled = np.tanh(x[:, 0] @ w["bert/pooler/dense/kernel"] +
                   w["bert/pooler/dense/bias"])
  return emb, layers, probs_all, pooled


def script_flags(config_class, argv=("prog",)):
  """The flags of a run script whose config is `config_class` (e.g.
  `run_config.RunConfig`), defined in a FlagValues of their own and parsed
  from `argv`: the scripts of one process do not share flags."""
  from absl import flags
  from bert import run_config
  flag_values = flags.FlagValues()
  run_config.define_flags(config_class, flag_values)
  flag_values(list(argv))
  return flag_values


def run_main(main, **flag_values):
  """Calls an absl `main` with `--name=value` flags.  A run script's `main`
  (its module names its config as CONFIG) gets flags of its own
  (`script_flags`); any other reads absl's FLAGS, restored after."""
  import sys
  from absl import flags
  from absl.testing import flagsaver
  argv = ["prog"] + [f"--{k}={v}" for k, v in flag_values.items()]
  config_class = getattr(sys.modules[main.__module__], "CONFIG", None)
  if config_class is not None:
    return main([], script_flags(config_class, argv))
  with flagsaver.flagsaver():
    flags.FLAGS(argv)
    return main([])


def run_script_main(module, **flag_values):
  """Calls the `main` of a script that defines its flags in
  `define_flags(flag_values)` (e.g. bert.prepare_data), with those flags in a
  FlagValues of their own parsed from `--name=value`: the defaults are the
  script's, whatever else the process imported."""
  from absl import flags
  own = flags.FlagValues()
  module.define_flags(own)
  own(["prog"] + [f"--{k}={v}" for k, v in flag_values.items()])
  return module.main(["prog"], own)


def write_emotion_data(directory: str, n_train: int = 96, n_dev: int = 32,
                       n_test: int = 16, test_labels: bool = True,
                       seed: int = 0) -> str:
  """A learnable `text&label` task: 'good'/'好' vs 'bad'/'差' reviews."""
  rng = np.random.default_rng(seed)
  filler = ["the", "cat", "sat", "on", "mat", "food", "dog", "吃", "很", "a"]

  def lines(n, labelled=True):
    out = []
    for _ in range(n):
      label = int(rng.integers(2))
      words = list(rng.choice(filler, size=int(rng.integers(2, 7))))
      words.insert(int(rng.integers(len(words) + 1)),
                   rng.choice(["good", "好"] if label else ["bad", "差"]))
      text = " ".join(words)
      out.append(f"{text}&{label}" if labelled else text)
    return "\n".join(out) + "\n"

  os.makedirs(directory, exist_ok=True)
  for name, n, labelled in (("train", n_train, True), ("dev", n_dev, True),
                            ("test", n_test, test_labels)):
    with open(os.path.join(directory, f"{name}.csv"), "w",
              encoding="utf-8") as f:
      f.write(lines(n, labelled))
  return directory


def tiny_task_files(directory: str) -> dict:
  """The tiny config, vocab and emotion data written under `directory`, and
  an output dir there: the file flags of a run_classifier.py run."""
  return {"bert_config_file": write_config(directory),
          "vocab_file": write_vocab(directory),
          "data_dir": write_emotion_data(os.path.join(directory, "data")),
          "output_dir": os.path.join(directory, "out")}


def train_and_export(directory: str, epochs: int = 2) -> dict:
  """A tiny emotion classifier trained with run_classifier.py and exported;
  returns its files (config, vocab, data, output and export dirs)."""
  from bert import run_classifier
  files = {**tiny_task_files(directory),
           "export_dir": os.path.join(directory, "export")}
  run_main(run_classifier.main, task_name="emotion", max_seq_length=16,
           train_batch_size=8, learning_rate=2e-3, num_train_epochs=epochs,
           do_train=True, do_export=True, **files)
  return files

