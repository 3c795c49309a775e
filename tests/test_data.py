"""Tests for bert/data.py: feature conversion, TFRecord cache, tf.data input."""

import json
import logging
import os

import numpy as np
import pytest
import tensorflow as tf

from bert import data
from bert.errors import UserError
from bert.processors import InputExample
from bert.tokenization import FullTokenizer

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "dog", "is", "hairy", ".",
         "a", "b", "c", "d", "e", "f", "un", "##aff", "##able", "jack", "##son"]
LABELS = ["neg", "pos"]


def make_tokenizer(directory, vocab=VOCAB, do_lower_case=True,
                   name="vocab.txt"):
  path = os.path.join(str(directory), name)
  with open(path, "w", encoding="utf-8") as f:
    f.write("".join(t + "\n" for t in vocab))
  return FullTokenizer(path, do_lower_case)


@pytest.fixture
def tokenizer(tmp_path):
  return make_tokenizer(tmp_path)


def ids(tokens):
  return [VOCAB.index(t) for t in tokens]


# ---------------------------------------------------------------- conversion


def test_single_sequence(tokenizer):
  f = data.convert_example(InputExample("g", "The dog is unaffable.", None,
                                        "pos"), LABELS, 10, tokenizer)
  tokens = ["[CLS]", "the", "dog", "is", "un", "##aff", "##able", ".", "[SEP]"]
  assert f.input_ids == ids(tokens) + [0]
  assert f.input_mask == [1] * 9 + [0]
  assert f.segment_ids == [0] * 10
  assert (f.label_id, f.has_label) == (1, 1)


def test_single_sequence_truncated(tokenizer):
  f = data.convert_example(InputExample("g", "a b c d e f"), LABELS, 5,
                           tokenizer)
  assert f.input_ids == ids(["[CLS]", "a", "b", "c", "[SEP]"])
  assert f.input_mask == [1] * 5
  # No label: masked out of metrics, label id 0.
  assert (f.label_id, f.has_label) == (0, 0)


def test_pair_segments_and_padding(tokenizer):
  f = data.convert_example(InputExample("g", "Jackson", "the dog", "neg"),
                           LABELS, 10, tokenizer)
  tokens = ["[CLS]", "jack", "##son", "[SEP]", "the", "dog", "[SEP]"]
  assert f.input_ids == ids(tokens) + [0, 0, 0]
  assert f.segment_ids == [0, 0, 0, 0, 1, 1, 1, 0, 0, 0]
  assert f.input_mask == [1] * 7 + [0] * 3
  assert (f.label_id, f.has_label) == (0, 1)


def test_pair_truncates_longer_side(tokenizer):
  # a has 5 tokens, b 2; 8 - 3 = 5 tokens fit: only a loses tokens.
  f = data.convert_example(InputExample("g", "a b c d e", "the dog"), LABELS,
                           8, tokenizer)
  assert f.input_ids == ids(["[CLS]", "a", "b", "c", "[SEP]", "the", "dog",
                             "[SEP]"])
  # b longer: b loses tokens from its end.
  f = data.convert_example(InputExample("g", "the", "a b c d e"), LABELS, 7,
                           tokenizer)
  assert f.input_ids == ids(["[CLS]", "the", "[SEP]", "a", "b", "c", "[SEP]"])
  # Tie: b pops first, then the now longer a; ends with 2 + 2.
  f = data.convert_example(InputExample("g", "a b c", "d e f"), LABELS, 7,
                           tokenizer)
  assert f.input_ids == ids(["[CLS]", "a", "b", "[SEP]", "d", "e", "[SEP]"])
  # Odd budget on a tie: a keeps the extra token (b popped first).
  f = data.convert_example(InputExample("g", "a b c", "d e f"), LABELS, 8,
                           tokenizer)
  assert f.input_ids == ids(["[CLS]", "a", "b", "c", "[SEP]", "d", "e",
                             "[SEP]"])


def test_empty_text_b_is_single(tokenizer):
  f = data.convert_example(InputExample("g", "a", ""), LABELS, 5, tokenizer)
  assert f.input_ids == ids(["[CLS]", "a", "[SEP]"]) + [0, 0]
  assert f.segment_ids == [0] * 5


def test_unknown_label_and_tiny_length(tokenizer):
  with pytest.raises(UserError, match="'maybe'"):
    data.convert_example(InputExample("g", "a", None, "maybe"), LABELS, 5,
                         tokenizer)
  with pytest.raises(UserError, match="max_seq_length"):
    data.convert_example(InputExample("g", "a"), LABELS, 2, tokenizer)


def test_features_to_tensors(tokenizer):
  examples = [InputExample("1", "a b", None, "pos"), InputExample("2", "c")]
  features = data.convert_examples(examples, LABELS, 6, tokenizer)
  t = data.features_to_tensors(features)
  assert t["input_ids"].dtype == np.int32 and t["input_ids"].shape == (2, 6)
  np.testing.assert_array_equal(t["input_ids"][1], features[1].input_ids)
  np.testing.assert_array_equal(t["label_ids"], [1, 0])
  np.testing.assert_array_equal(t["has_label"], [1, 0])
  np.testing.assert_array_equal(t["example_index"], [0, 1])


# ---------------------------------------------------------------- cache


def some_examples(n=7):
  words = ["a", "b", "c", "d", "e", "f", "the dog", "is hairy"]
  return [InputExample(f"ex-{i}", " ".join(words[:1 + i % 8]),
                       words[i % 3] if i % 2 else None,
                       None if i == n - 1 else LABELS[i % 2])
          for i in range(n)]


def collect(dataset):
  out = {}
  for batch in dataset:
    for k, v in batch.items():
      assert v.dtype == tf.int32
      out.setdefault(k, []).append(v.numpy())
  return {k: np.concatenate(v) for k, v in out.items()}


def test_cache_round_trip(tmp_path, tokenizer):
  examples = some_examples()
  out = tmp_path / "cache"
  path = data.cache_features(examples, LABELS, 8, tokenizer, str(out), "dev")
  assert os.path.dirname(path) == str(out)
  assert os.path.basename(path).startswith("dev-")
  assert path.endswith(".tf_record")
  with open(path + ".json") as f:
    assert json.load(f) == {"num_examples": 7, "max_seq_length": 8,
                            "label_list": LABELS,
                            "bytes": os.path.getsize(path)}
  # Only the record and its sidecar: no temp files left over.
  assert sorted(os.listdir(out)) == sorted([os.path.basename(path),
                                            os.path.basename(path) + ".json"])

  got = collect(data.make_dataset(path, 8, batch_size=3, is_training=False))
  want = data.features_to_tensors(
      data.convert_examples(examples, LABELS, 8, tokenizer))
  assert set(got) == set(want)
  for k in want:
    np.testing.assert_array_equal(got[k], want[k], err_msg=k)
  assert got["has_label"][-1] == 0

  dropped = collect(data.make_dataset(path, 8, 3, False, drop_remainder=True))
  np.testing.assert_array_equal(dropped["example_index"], range(6))


def test_batch_shapes(tmp_path, tokenizer):
  path = data.cache_features(some_examples(), LABELS, 8, tokenizer,
                             str(tmp_path), "train")
  batch = next(iter(data.make_dataset(path, 8, 4, is_training=True, seed=1)))
  assert batch["input_ids"].shape == (4, 8)
  assert batch["segment_ids"].shape == (4, 8)
  assert batch["label_ids"].shape == (4,)
  assert batch["example_index"].shape == (4,)


def test_cache_reuse_and_invalidation(tmp_path, tokenizer, caplog):
  caplog.set_level(logging.INFO, logger="absl")
  examples = some_examples()
  out = str(tmp_path / "cache")
  path = data.cache_features(examples, LABELS, 8, tokenizer, out, "train")
  old = 1_000_000_000
  os.utime(path, (old, old))
  again = data.cache_features(list(examples), LABELS, 8, tokenizer, out,
                              "train")
  assert again == path
  assert os.path.getmtime(path) == old  # Not rewritten.
  assert "reusing cached features" in caplog.text

  others = {
      "max_seq_length": data.cache_features(examples, LABELS, 9, tokenizer,
                                            out, "train"),
      "vocab": data.cache_features(
          examples, LABELS, 8,
          make_tokenizer(tmp_path, VOCAB + ["extra"], name="v2.txt"), out,
          "train"),
      "do_lower_case": data.cache_features(
          examples, LABELS, 8,
          make_tokenizer(tmp_path, do_lower_case=False, name="v3.txt"), out,
          "train"),
      "labels": data.cache_features(examples, ["pos", "neg"], 8, tokenizer,
                                    out, "train"),
      "examples": data.cache_features(examples[:-1], LABELS, 8, tokenizer,
                                      out, "train"),
  }
  for what, other in others.items():
    assert other != path, what
    assert os.path.exists(other), what
  assert len(set(others.values())) == len(others)
  # The same vocab contents under another file name give the same key.
  same = data.cache_features(examples, LABELS, 8,
                             make_tokenizer(tmp_path, name="copy.txt"), out,
                             "train")
  assert same == path
  with open(others["max_seq_length"] + ".json") as f:
    assert json.load(f)["max_seq_length"] == 9


def test_make_dataset_checks(tmp_path, tokenizer):
  with pytest.raises(UserError, match="missing.tf_record: file not found"):
    data.make_dataset(str(tmp_path / "missing.tf_record"), 8, 2, False)
  path = data.cache_features(some_examples(), LABELS, 8, tokenizer,
                             str(tmp_path), "dev")
  with pytest.raises(UserError, match="max_seq_length 8, not 16"):
    data.make_dataset(path, 16, 2, False)


def test_training_dataset_shuffles_deterministically(tmp_path, tokenizer):
  n = 24
  path = data.cache_features(some_examples(n), LABELS, 8, tokenizer,
                             str(tmp_path), "train")

  def order(seed, batches):
    d = data.make_dataset(path, 8, batch_size=4, is_training=True, seed=seed)
    return np.concatenate([b["example_index"].numpy()
                           for b in d.take(batches)])

  first = order(7, 12)  # Two epochs.
  np.testing.assert_array_equal(first, order(7, 12))
  assert not np.array_equal(first, order(8, 12))
  assert not np.array_equal(first[:n], np.arange(n))  # Shuffled.
  # Repeats, each epoch a whole permutation, reshuffled between epochs.
  assert sorted(first[:n]) == list(range(n))
  assert sorted(first[n:]) == list(range(n))
  assert not np.array_equal(first[:n], first[n:])


def test_group_by_length_batches_similar_lengths(tmp_path, tokenizer):
  n, batch_size, group = 48, 4, 6
  path = data.cache_features(some_examples(n), LABELS, 16, tokenizer,
                             str(tmp_path), "train")

  def batches(group_by_length, seed=3):
    d = data.make_dataset(path, 16, batch_size, is_training=True, seed=seed,
                          group_by_length=group_by_length)
    return list(d.take(2 * n // batch_size))  # Two epochs.

  def spread(bs):  # Mean over batches of (longest - shortest) real length.
    return np.mean([np.ptp(b["input_mask"].numpy().sum(1)) for b in bs])

  grouped = batches(group)
  assert all(b["input_ids"].shape == (batch_size, 16) for b in grouped)
  assert spread(grouped) < 0.5 * spread(batches(0))
  # Each feature row kept together; every example as often as the others
  # (the last shuffle lets up to `group` batches cross an epoch boundary).
  order = np.concatenate([b["example_index"].numpy() for b in grouped])
  ten_epochs = data.make_dataset(path, 16, batch_size, is_training=True,
                                 seed=3, group_by_length=group)
  counts = np.bincount(np.concatenate(
      [b["example_index"].numpy() for b in ten_epochs.take(10 * n //
                                                           batch_size)]),
                       minlength=n)
  assert counts.min() >= 9 and counts.max() <= 11, counts
  want = data.features_to_tensors(data.convert_examples(
      some_examples(n), LABELS, 16, tokenizer))
  for b in grouped:
    np.testing.assert_array_equal(
        b["input_ids"], want["input_ids"][b["example_index"].numpy()])
  # Batches are not served shortest first; the order follows the seed.
  lengths = [int(b["input_mask"].numpy().sum(1).max()) for b in grouped[:group]]
  assert lengths != sorted(lengths)
  again = np.concatenate([b["example_index"].numpy() for b in batches(group)])
  np.testing.assert_array_equal(order, again)
  other = np.concatenate([b["example_index"].numpy()
                          for b in batches(group, seed=4)])
  assert not np.array_equal(order, other)
  # Read once (not training): each run sorted shortest first, none lost.
  once = collect(data.make_dataset(path, 16, batch_size, False,
                                   group_by_length=group))
  assert sorted(once["example_index"]) == list(range(n))
  run = batch_size * group
  for start in range(0, n, run):
    lengths = once["input_mask"][start:start + run].sum(1)
    assert list(lengths) == sorted(lengths)
  np.testing.assert_array_equal(once["input_ids"],
                                want["input_ids"][once["example_index"]])


def test_conversion_in_processes_equals_one_process(tokenizer, monkeypatch):
  examples = some_examples() * 5  # 35 examples over 12 chunks of 3.
  monkeypatch.setattr(data, "_CHUNK_EXAMPLES", 3)
  one = list(data.serialized_features(examples, LABELS, 8, tokenizer))
  monkeypatch.setattr(data, "conversion_processes", lambda n: 2)
  forked = list(data.serialized_features(examples, LABELS, 8, tokenizer))
  assert forked == one
  indices = [tf.train.Example.FromString(r).features.feature["example_index"]
             .int64_list.value[0] for r in forked]
  assert indices == list(range(35))
  # A worker's error reaches the caller as itself.
  bad = examples + [InputExample("bad-1", "a b", None, "maybe")]
  with pytest.raises(UserError, match="bad-1: label 'maybe'"):
    list(data.serialized_features(bad, LABELS, 8, tokenizer))


def test_large_inputs_convert_in_several_processes(monkeypatch):
  assert data.conversion_processes(10) == 1
  monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2},
                      raising=False)
  assert data.conversion_processes(1_000_000) == 3


def test_large_caches_are_sharded_and_training_mixes_the_shards(
    tmp_path, tokenizer, monkeypatch):
  monkeypatch.setattr(data, "_SHARD_EXAMPLES", 4)
  examples = some_examples(10)
  out = str(tmp_path / "cache")
  path = data.cache_features(examples, LABELS, 8, tokenizer, out, "train")
  shards = data.cache_files(path)
  assert [os.path.basename(s) for s in shards] == [
      os.path.basename(path) + f"-0000{k}-of-00003" for k in range(3)]
  assert sorted(os.listdir(out)) == sorted(
      [os.path.basename(s) for s in shards] + [os.path.basename(path) + ".json"])
  # Outside training: the file order, the same features as one file.
  got = collect(data.make_dataset(path, 8, 3, is_training=False))
  want = data.features_to_tensors(
      data.convert_examples(examples, LABELS, 8, tokenizer))
  for k in want:
    np.testing.assert_array_equal(got[k], want[k], err_msg=k)
  # Training: every example once per epoch, the shards interleaved (with a
  # shuffle buffer of 1, only the shard order and interleaving can move the
  # last shard's examples ahead of the first's).
  epochs = []
  for seed in (1, 2, 3):
    d = data.make_dataset(path, 8, 1, is_training=True, seed=seed,
                          shuffle_buffer_size=1)
    epochs.append([int(b["example_index"][0]) for b in d.take(10)])
  assert all(sorted(e) == list(range(10)) for e in epochs)
  assert any(e[:3] != [0, 1, 2] for e in epochs)
  assert any(e.index(8) < e.index(0) for e in epochs)
  # Reused as it is; a missing shard means converting again.
  assert data.cache_features(examples, LABELS, 8, tokenizer, out,
                             "train") == path
  os.remove(shards[1])
  data.cache_features(examples, LABELS, 8, tokenizer, out, "train")
  assert all(os.path.exists(s) for s in shards)
