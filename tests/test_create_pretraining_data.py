"""bert/create_pretraining_data.py on tiny corpora: Google's feature spec,
masking rates, whole-word groups, next-sentence balance, determinism."""

import collections
import logging
import os

import numpy as np
import pytest
import tensorflow as tf

from bert import create_pretraining_data as cpd
from bert import pretraining
from bert import tokenization
from bert.errors import UserError

WORDS = ["the", "cat", "sat", "on", "mat", "food", "dog", "good", "bad",
         "runs", "##s", "play", "##ing", "很", "好", "吃", "外", "卖", "快"]
GOOGLE_SPEC = {  # What Google's run_pretraining.py parses.
    "input_ids": tf.io.FixedLenFeature([32], tf.int64),
    "input_mask": tf.io.FixedLenFeature([32], tf.int64),
    "segment_ids": tf.io.FixedLenFeature([32], tf.int64),
    "masked_lm_positions": tf.io.FixedLenFeature([6], tf.int64),
    "masked_lm_ids": tf.io.FixedLenFeature([6], tf.int64),
    "masked_lm_weights": tf.io.FixedLenFeature([6], tf.float32),
    "next_sentence_labels": tf.io.FixedLenFeature([1], tf.int64),
}


def vocab(tmp_path):
  path = tmp_path / "vocab.txt"
  path.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] +
                            WORDS) + "\n", encoding="utf-8")
  return tokenization.FullTokenizer(str(path), do_lower_case=True)


def corpus(tmp_path, documents=30, seed=0, sentences=(2, 6)):
  rng = np.random.default_rng(seed)
  plain = [w for w in WORDS if not w.startswith("##") and w.isascii()]
  lines = []
  for _ in range(documents):
    for _ in range(int(rng.integers(*sentences))):
      words = list(rng.choice(plain, size=int(rng.integers(3, 9))))
      words.append(rng.choice(["playing", "runs", "很好吃", "外卖快"]))
      lines.append(" ".join(words))
    lines.append("")
  path = tmp_path / "corpus.txt"
  path.write_text("\n".join(lines) + "\n", encoding="utf-8")
  return str(path)


def records(paths):
  out = []
  for record in tf.data.TFRecordDataset(paths):
    out.append({k: v.numpy() for k, v in
                tf.io.parse_single_example(record, GOOGLE_SPEC).items()})
  return out


OPTIONS = cpd.Options(max_seq_length=32, max_predictions_per_seq=6,
                      masked_lm_prob=0.15, short_seq_prob=0.1, dupe_factor=4)


def test_google_features_rates_and_determinism(tmp_path):
  tokenizer = vocab(tmp_path)
  # Long documents: a chunk of one sentence always gets a random next one
  # (Google's algorithm), so short documents would tilt the balance.
  source = corpus(tmp_path, sentences=(12, 20))
  outputs = [str(tmp_path / "a.tfrecord"), str(tmp_path / "b.tfrecord")]
  counts = cpd.create([source], outputs, tokenizer, OPTIONS, seed=7)
  examples = records(outputs)
  assert len(examples) == counts["instances"] > 100
  # Round robin over the output files.
  assert abs(len(records(outputs[:1])) - len(records(outputs[1:]))) <= 1
  ids = tokenizer.vocab
  labels, kinds = [], collections.Counter()
  for e in examples:
    n = int(e["input_mask"].sum())
    tokens = e["input_ids"][:n]
    assert tokens[0] == ids["[CLS]"] and tokens[-1] == ids["[SEP]"]
    assert (e["input_mask"][n:] == 0).all() and (e["input_ids"][n:] == 0).all()
    # [CLS] A [SEP] is segment 0, B [SEP] segment 1 (both non-empty).
    a_end = int((e["segment_ids"][:n] == 0).sum())
    assert 3 <= a_end <= n - 2 and tokens[a_end - 1] == ids["[SEP]"]
    assert (e["segment_ids"][a_end:n] == 1).all()
    k = int(e["masked_lm_weights"].sum())
    assert k == min(6, max(1, round(n * 0.15)))
    assert (e["masked_lm_weights"][k:] == 0).all()
    positions = e["masked_lm_positions"][:k]
    assert list(positions) == sorted(positions) and 0 < positions.min()
    for position, original in zip(positions, e["masked_lm_ids"][:k]):
      now = tokens[position]
      kinds["mask" if now == ids["[MASK]"] else
            "same" if now == original else "random"] += 1
    labels.append(int(e["next_sentence_labels"][0]))
  total = sum(kinds.values())
  assert abs(kinds["mask"] / total - 0.8) < 0.05
  assert abs(kinds["same"] / total - 0.1) < 0.05
  assert abs(kinds["random"] / total - 0.1) < 0.05
  assert abs(np.mean(labels) - 0.5) < 0.1
  assert counts["masked"] == total
  # The same input and seed give the same bytes; another seed does not.
  again = [str(tmp_path / "c.tfrecord"), str(tmp_path / "d.tfrecord")]
  cpd.create([source], again, tokenizer, OPTIONS, seed=7)
  for a, b in zip(outputs, again):
    assert open(a, "rb").read() == open(b, "rb").read()
  other = str(tmp_path / "e.tfrecord")
  cpd.create([source], [other], tokenizer, OPTIONS, seed=8)
  assert open(other, "rb").read() != open(outputs[0], "rb").read()


def test_whole_word_masking_masks_every_piece(tmp_path):
  tokenizer = vocab(tmp_path)
  source = corpus(tmp_path, documents=40)
  output = str(tmp_path / "wwm.tfrecord")
  options = cpd.Options(**{**OPTIONS.__dict__, "do_whole_word_mask": True})
  cpd.create([source], [output], tokenizer, options, seed=3)
  inv = {i: t for t, i in tokenizer.vocab.items()}
  chinese_words = {("很", "好", "吃"), ("外", "卖", "快")}
  checked = 0
  for e in records([output]):
    k = int(e["masked_lm_weights"].sum())
    masked = set(e["masked_lm_positions"][:k].tolist())
    n = int(e["input_mask"].sum())
    # The original tokens: masked positions get their labels back.
    original = [inv[i] for i in e["input_ids"][:n]]
    for p, label in zip(e["masked_lm_positions"][:k], e["masked_lm_ids"][:k]):
      original[p] = inv[label]
    for i, token in enumerate(original):
      if token.startswith("##"):  # play ##ing: both or neither.
        assert (i in masked) == (i - 1 in masked), original
        checked += 1
      if token in ("很", "外") and i + 2 < n and tuple(
          original[i:i + 3]) in chinese_words:
        # jieba keeps 很好吃 / 外卖快 as words (or splits them the same way
        # every time); their characters are masked together or not at all
        # when jieba makes them one word.
        group = {i, i + 1, i + 2}
        if masked & group and jieba_one_word("".join(original[i:i + 3])):
          assert group <= masked, original
          checked += 1
  assert checked > 20


def jieba_one_word(text):
  import jieba
  return list(jieba.cut(text)) == [text]


def test_bad_corpora_are_one_line(tmp_path, caplog):
  tokenizer = vocab(tmp_path)
  bad = tmp_path / "bad.txt"
  bad.write_bytes(b"the cat\nsat \xff\xfe on\n")
  with pytest.raises(UserError, match=r"bad.txt:2: not UTF-8"):
    cpd.create([str(bad)], [str(tmp_path / "o")], tokenizer, OPTIONS, 1)
  single = tmp_path / "single.txt"
  single.write_text("the cat sat\n\nthe dog ran\n\n", encoding="utf-8")
  with pytest.raises(UserError, match="no document has two sentences"):
    cpd.create([str(single)], [str(tmp_path / "o")], tokenizer, OPTIONS, 1)
  assert not os.listdir(tmp_path / ".") or not (tmp_path / "o").exists()
  caplog.set_level(logging.WARNING, logger="absl")
  cpd.check_options(cpd.Options(max_seq_length=128,
                                max_predictions_per_seq=5))
  assert "--max_predictions_per_seq=5 is below" in caplog.text
  with pytest.raises(UserError, match="--input_file: nothing-here-\\*: no "
                     "such file"):
    pretraining.input_files("nothing-here-*")
