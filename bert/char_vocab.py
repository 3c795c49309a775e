"""A character-level WordPiece vocab in the style of Google's Chinese BERT,
built from training text; and how much of a text it leaves [UNK]."""

from __future__ import annotations

import collections
import string
from typing import Iterable

from bert import tokenization

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def build_vocab(texts: Iterable[str], min_char_count: int,
                do_lower_case: bool) -> list[str]:
  """Returns the vocab tokens in id order for character-level WordPiece.

  The units are the characters of `BasicTokenizer`'s words.  A CJK ideograph
  or punctuation mark is always a word of its own; other characters (latin,
  digits, kana, emoji, ...) may follow another within a word, where WordPiece
  needs their `##` form.  So the vocab has: the special tokens; every
  character seen at least `min_char_count` times; the `##` form of those
  seen at least once inside a word; and both forms of every ASCII letter and
  digit, so that latin words and numbers never become [UNK].  Each group is
  sorted by frequency (descending), then code point.
  """
  basic = tokenization.BasicTokenizer(do_lower_case=do_lower_case)
  counts, inner = collections.Counter(), collections.Counter()
  for text in texts:
    for word in basic.tokenize(text):
      counts.update(word)
      inner.update(word[1:])
  ascii_chars = string.ascii_lowercase + string.digits
  if not do_lower_case:
    ascii_chars += string.ascii_uppercase
  chars = {c for c, n in counts.items() if n >= min_char_count}
  chars.update(ascii_chars)
  # load_vocab strips each line, so a character it would strip cannot be an
  # entry (BasicTokenizer splits such characters away anyway).
  chars = {c for c in chars if c.strip() == c}
  continued = {c for c in chars if inner[c]} | set(ascii_chars)

  def by_frequency(cs, counter):
    return sorted(cs, key=lambda c: (-counter[c], ord(c)))

  return (list(SPECIAL_TOKENS) + by_frequency(chars, counts) +
          ["##" + c for c in by_frequency(continued, inner)])


def unk_stats(tokenizer: tokenization.FullTokenizer,
              texts: Iterable[str]) -> dict[str, int]:
  """Counts WordPiece tokens and word characters, and how many are [UNK].

  A word that becomes [UNK] counts all its characters as unknown.
  """
  stats = collections.Counter()
  basic, wordpiece = tokenizer.basic_tokenizer, tokenizer.wordpiece_tokenizer
  for text in texts:
    for word in basic.tokenize(text):
      pieces = wordpiece.tokenize(word)
      stats["tokens"] += len(pieces)
      stats["chars"] += len(word)
      if tokenization.UNK_TOKEN in pieces:
        stats["unk_tokens"] += pieces.count(tokenization.UNK_TOKEN)
        stats["unk_chars"] += len(word)
  return dict(stats)

