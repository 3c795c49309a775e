"""Tests for bert/char_vocab.py."""

from __future__ import annotations

from bert import char_vocab


def test_build_vocab_counts_and_orders():
  texts = ["好好好，好吃", "吃的 OK ok", "罕"]
  vocab = char_vocab.build_vocab(texts, min_char_count=2,
                                 do_lower_case=True)
  assert vocab[:5] == list(char_vocab.SPECIAL_TOKENS)
  body = [t for t in vocab[5:] if not t.startswith("##")]
  # By frequency (好 x4; then k, o, 吃 x2 by code point), then unseen ASCII.
  assert body[:5] == ["好", "k", "o", "吃", "0"]
  assert "罕" not in vocab and "的" not in vocab and "，" not in vocab
  assert "##好" not in vocab  # CJK never continues a word.
  assert vocab.index("##k") < vocab.index("##a")  # Seen before unseen.
  assert "O" not in vocab
  cased = char_vocab.build_vocab(texts, 2, do_lower_case=False)
  assert "O" in cased and "##K" in cased
