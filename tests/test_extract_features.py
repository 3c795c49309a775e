import collections
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from bert import extract_features, modeling, tokenization
from bert.errors import UserError
from tests import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Each line with the tokens Google's rules give at max_seq_length=10 (a pair
# keeps 7 tokens, a single text 8), worked out by hand from the vocab.
LINES = [
    ("The cat sat on the mat.",
     "[CLS] the cat sat on the mat . [SEP]"),
    ("好吃不贵 ||| 很差!",
     "[CLS] 好 吃 不 贵 [SEP] 很 差 ! [SEP]"),
    # b is longer: it loses its last token.
    ("hello world ||| the cat sat on the mat",
     "[CLS] hello world [SEP] the cat sat on the [SEP]"),
    # a is longer: it loses six.
    ("the cat sat on the mat the cat sat on the mat ||| dog",
     "[CLS] the cat sat on the mat [SEP] dog [SEP]"),
    # A tie pops from b.
    ("the cat sat on ||| the dog sat on",
     "[CLS] the cat sat on [SEP] the dog sat [SEP]"),
    ("unaffable dogs sat on the mat and the cat",
     "[CLS] un ##aff ##able dog ##s sat on the [SEP]"),
    ("", "[CLS] [SEP]"),
    # The regex is greedy: the last " ||| " splits.
    ("a ||| b ||| c",
     "[CLS] a [UNK] [UNK] [UNK] [UNK] [SEP] [UNK] [SEP]"),
]


@pytest.fixture
def files(tmp_path):
  weights = helpers.google_weights(helpers.TINY_CONFIG)
  paths = {
      "bert_config_file": helpers.write_config(str(tmp_path)),
      "vocab_file": helpers.write_vocab(str(tmp_path)),
      "init_checkpoint": helpers.write_google_checkpoint(
          str(tmp_path / "bert_model.ckpt"), weights),
      "input_file": str(tmp_path / "input.txt"),
      "output_file": str(tmp_path / "features.jsonl"),
  }
  with open(paths["input_file"], "w", encoding="utf-8") as f:
    f.write("".join(text + "\n" for text, _ in LINES))
  return paths, weights


def run(**flag_values):
  """Runs main with a fresh command line of the script's own flags."""
  helpers.run_script_main(extract_features, **flag_values)


def read_jsonl(path):
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f]


def reference_layers(weights, config, token_ids, segment_ids):
  """numpy BERT on the unpadded ids -> [num_layers] x [T, H]."""
  ids = np.array([token_ids])
  _, layers, _, _ = helpers.numpy_bert(weights, config, ids, np.ones_like(ids),
                                       np.array([segment_ids]))
  return [layer[0] for layer in layers]


def segments(tokens):
  first_sep = tokens.index("[SEP]")
  return [0] * (first_sep + 1) + [1] * (len(tokens) - first_sep - 1)


def test_features_match_numpy_bert(files):
  paths, weights = files
  run(**paths, max_seq_length=10, batch_size=3, layers="-1,0,-2")
  records = read_jsonl(paths["output_file"])
  tokenizer = tokenization.FullTokenizer(paths["vocab_file"], True)
  assert len(records) == len(LINES)
  relative_errors = []
  for i, (record, (_, expected)) in enumerate(zip(records, LINES)):
    assert list(record) == ["linex_index", "features"]
    assert record["linex_index"] == i
    tokens = expected.split()
    assert [f["token"] for f in record["features"]] == tokens
    ref = reference_layers(weights, helpers.TINY_CONFIG,
                           tokenizer.convert_tokens_to_ids(tokens),
                           segments(tokens))
    for t, feature in enumerate(record["features"]):
      assert list(feature) == ["token", "layers"]
      assert [l["index"] for l in feature["layers"]] == [-1, 0, -2]
      for layer in feature["layers"]:
        got = np.array(layer["values"])
        want = ref[layer["index"]][t]
        assert got.shape == (helpers.TINY_CONFIG["hidden_size"],)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
        big = np.abs(want) > 0.1
        relative_errors.extend(np.abs(got - want)[big] / np.abs(want[big]))
  # float32 model error is ~1e-7..1e-6 absolute, so a tight relative bound
  # holds only away from 0; test_small_values_keep_significant_digits covers
  # small values.
  assert np.max(relative_errors) < 5e-5
  assert not [n for n in os.listdir(os.path.dirname(paths["output_file"]))
              if ".tmp" in n]


def test_small_values_keep_significant_digits(tmp_path, files):
  paths, weights = files
  # Scale the last LayerNorm so layer -1 is ~1e-4: rounding to 6 decimals
  # would keep 1-2 significant digits.
  last = f"bert/encoder/layer_{helpers.TINY_CONFIG['num_hidden_layers'] - 1}"
  weights = dict(weights)
  for name in ("gamma", "beta"):
    weights[f"{last}/output/LayerNorm/{name}"] = (
        weights[f"{last}/output/LayerNorm/{name}"] * 1e-4)
  paths["init_checkpoint"] = helpers.write_google_checkpoint(
      str(tmp_path / "small" / "bert_model.ckpt"), weights)
  run(**paths, max_seq_length=10, batch_size=4, layers="-1")
  tokenizer = tokenization.FullTokenizer(paths["vocab_file"], True)
  for record, (_, expected) in zip(read_jsonl(paths["output_file"]), LINES):
    tokens = expected.split()
    want = reference_layers(weights, helpers.TINY_CONFIG,
                            tokenizer.convert_tokens_to_ids(tokens),
                            segments(tokens))[-1]
    got = np.array([f["layers"][0]["values"] for f in record["features"]])
    assert np.abs(want).max() < 1e-3
    # 1e-5 of the layer's scale: 6 significant digits pass (5 do not), while
    # Google's round(x, 6) errs by ~2.5e-7, i.e. ~1e-3 of the scale.
    atol = 1e-5 * np.abs(want).max()
    assert not np.allclose(np.round(want, 6), want, rtol=0, atol=atol)
    np.testing.assert_allclose(got, want, rtol=0, atol=atol)


def test_sentencepiece_tokenizer(tmp_path, files):
  spm = pytest.importorskip("sentencepiece")
  paths, weights = files
  corpus = tmp_path / "corpus.txt"
  corpus.write_text("the cat sat on the mat\nhello world the dog\n" * 50)
  prefix = str(tmp_path / "spm")
  spm.SentencePieceTrainer.train(
      input=str(corpus), model_prefix=prefix, vocab_size=30,
      model_type="unigram", hard_vocab_limit=False,
      user_defined_symbols=["[CLS]", "[SEP]"], minloglevel=2)
  del paths["vocab_file"]
  with open(paths["input_file"], "w", encoding="utf-8") as f:
    f.write("The cat sat ||| hello dog\n")
  run(**paths, spm_model_file=prefix + ".model", layers="-1",
      max_seq_length=40)
  tokenizer = tokenization.SentencePieceTokenizer(prefix + ".model")
  tokens = (["[CLS]"] + tokenizer.tokenize("The cat sat") + ["[SEP]"] +
            tokenizer.tokenize("hello dog") + ["[SEP]"])
  [record] = read_jsonl(paths["output_file"])
  assert [f["token"] for f in record["features"]] == tokens
  want = reference_layers(weights, helpers.TINY_CONFIG,
                          tokenizer.convert_tokens_to_ids(tokens),
                          segments(tokens))[-1]
  got = np.array([f["layers"][0]["values"] for f in record["features"]])
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_format_example_is_googles_json_schema():
  values = np.array([[[0.5, -1.25, 1e-05], [0.1, 123.5, -3e-7]],
                     [[2.5, 0.25, -0.75], [1.5, 0.125, 1e-20]]], np.float32)
  line = extract_features.format_example(7, ["[CLS]", "好"], [-1, 0], values)
  expected = collections.OrderedDict(linex_index=7, features=[
      collections.OrderedDict(token=token, layers=[
          collections.OrderedDict(index=index,
                                  values=[float(f"{v:.8g}")
                                          for v in values[l, t]])
          for l, index in enumerate([-1, 0])])
      for t, token in enumerate(["[CLS]", "好"])])
  # Byte for byte what Google's json.dumps writes for these values.
  assert line == json.dumps(expected)
  nonfinite = extract_features.format_example(
      0, ["x"], [-1], np.array([[[np.nan, np.inf, -np.inf]]], np.float32))
  values = json.loads(nonfinite)["features"][0]["layers"][0]["values"]
  assert np.isnan(values[0]) and values[1:] == [np.inf, -np.inf]


def test_extractor_traces_once_over_batches(files):
  paths, weights = files
  config = modeling.BertConfig.from_json_file(paths["bert_config_file"])
  model = extract_features.load_model(config, paths["init_checkpoint"])
  tokenizer = tokenization.FullTokenizer(paths["vocab_file"], True)
  features = [extract_features.convert_example(
      extract_features.InputExample(i, text), 8, tokenizer)
              for i, text in enumerate(["the cat", "good food !", "hello"] * 2)]
  extractor = extract_features.LayerExtractor(model, [-1, 0], batch_size=4,
                                              seq_length=8)
  outputs = list(extractor(features))
  assert extractor.batch_layers.experimental_get_tracing_count() == 1
  assert [o.shape for o in outputs] == [(2, len(f.tokens), 32)
                                        for f in features]
  # The padded rows of the last batch do not change the real ones.
  np.testing.assert_allclose(outputs[4], outputs[1], atol=1e-6)


def _write(path, data):
  with open(path, "wb") as f:
    f.write(data)
  return path


ERROR_CASES = {
    "missing_input": (lambda p, d: {"input_file": d + "/nope.txt"},
                      [r"--input_file=\S*nope.txt", "not found"]),
    "missing_vocab": (lambda p, d: {"vocab_file": d + "/nope.txt"},
                      [r"\S*nope.txt", "not found"]),
    "missing_config": (lambda p, d: {"bert_config_file": d + "/nope.json"},
                       [r"\S*nope.json", "not found"]),
    "missing_checkpoint": (lambda p, d: {"init_checkpoint": d + "/nope.ckpt"},
                           [r"\S*nope.ckpt"]),
    "config_missing_key": (
        lambda p, d: {"bert_config_file": _write(
            d + "/bad.json", json.dumps({"vocab_size": 64}).encode())},
        [r"\S*bad.json", "hidden_size"]),
    "checkpoint_for_other_config": (
        lambda p, d: {"bert_config_file": helpers.write_config(
            os.path.join(d, "narrow"), hidden_size=16)},
        [r"bert_model.ckpt", r"has shape \[32\]", r"needs \[16\]"]),
    "checkpoint_lacks_layers": (
        lambda p, d: {"bert_config_file": helpers.write_config(
            os.path.join(d, "deep"), num_hidden_layers=3)},
        ["--init_checkpoint", "layer_2"]),
    "vocab_too_big": (
        lambda p, d: {"bert_config_file": helpers.write_config(
            os.path.join(d, "small"), vocab_size=20)},
        [r"vocab.txt has 30 entries", "vocab_size is 20"]),
    "max_seq_length_too_big": (lambda p, d: {"max_seq_length": 41},
                               ["--max_seq_length=41",
                                "max_position_embeddings=40"]),
    "non_utf8_line": (
        lambda p, d: {"input_file": _write(
            d + "/latin1.txt", "the cat\nsat\ncaf\xe9\n".encode("latin-1"))},
        [r"latin1.txt:3:", "UTF-8"]),
    "layer_out_of_range": (lambda p, d: {"layers": "-1,-3"},
                           ["--layers=-1,-3", "num_hidden_layers=2"]),
    "layer_too_high": (lambda p, d: {"layers": "2"},
                       ["--layers=2", "num_hidden_layers=2"]),
    "layers_not_integers": (lambda p, d: {"layers": "last"},
                            ["--layers=last"]),
    "no_output_directory": (
        lambda p, d: {"output_file": d + "/missing/out.jsonl"},
        [r"--output_file=\S*missing/out.jsonl"]),
    "required_flag": (lambda p, d: {"init_checkpoint": ""},
                      ["--init_checkpoint"]),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_bad_input_is_one_line_user_error(files, tmp_path, case):
  paths, _ = files
  for sub in ("narrow", "deep", "small"):
    os.makedirs(tmp_path / sub, exist_ok=True)
  # A previous result must survive a failed run untouched.
  with open(paths["output_file"], "w") as f:
    f.write("previous result\n")
  make_overrides, patterns = ERROR_CASES[case]
  overrides = make_overrides(paths, str(tmp_path))
  with pytest.raises(UserError) as error:
    run(**{**paths, "layers": "-1", "max_seq_length": 10, **overrides})
  message = str(error.value)
  assert "\n" not in message
  for pattern in patterns:
    assert pytest.importorskip("re").search(pattern, message), (pattern,
                                                                 message)
  with open(paths["output_file"]) as f:
    assert f.read() == "previous result\n"
  assert not [n for n in os.listdir(tmp_path) if ".tmp" in n]


@pytest.mark.slow
def test_script_prints_one_error_line(files, tmp_path):
  paths, _ = files
  paths["vocab_file"] = str(tmp_path / "missing_vocab.txt")
  result = subprocess.run(
      [sys.executable, "bert/extract_features.py"] +
      [f"--{k}={v}" for k, v in paths.items()] +
      ["--max_seq_length=16", "--layers=-1"],
      cwd=ROOT, capture_output=True, text=True, timeout=300,
      env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
  assert result.returncode != 0
  last_line = result.stderr.strip().splitlines()[-1]
  assert last_line.startswith("error:") and "missing_vocab.txt" in last_line
  assert "Traceback" not in result.stderr
  assert not os.path.exists(paths["output_file"])
