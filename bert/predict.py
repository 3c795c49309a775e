"""Classifies lines of text with an exported model.

  python -m bert.predict --model=export/student < reviews.txt
  python -m bert.predict --model=export/student/3 --input_file=reviews.txt

Prints `label<TAB>probability<TAB>text` per input line, in input order (with
--all_probabilities: the probability of every label, tab-separated, as
Google's test_results.tsv).  Lines are read and answered in batches, so it
works as a filter on a stream.  By default the text goes through the export's
`predict_text` signature (tokenised in the graph, as TF Serving would);
--use_ids tokenises in Python with the export's own vocab.txt and calls
`serving_default` instead, so the two paths can be compared.
"""

from __future__ import annotations

import os
import sys
from typing import BinaryIO, Iterator, Sequence

if not __package__:  # run as `python bert/predict.py`
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np
from absl import app, flags

from bert import export_reader
from bert import threads
from bert.errors import UserError, exit_on_error

FLAGS = flags.FLAGS


def read_batches(stream: BinaryIO, batch_size: int) -> Iterator[list[bytes]]:
  """Lines of `stream` without their line ending, `batch_size` at a time."""
  batch = []
  for i, line in enumerate(stream):
    if i == 0 and line.startswith(b"\xef\xbb\xbf"):  # A UTF-8 byte-order mark.
      line = line[3:]
    batch.append(line.rstrip(b"\n").rstrip(b"\r"))
    if len(batch) == batch_size:
      yield batch
      batch = []
  if batch:
    yield batch


def format_lines(texts: Sequence[bytes], out: dict[str, np.ndarray],
                 all_probabilities: bool) -> str:
  """One output line per text (see the module docstring)."""
  lines = []
  for text, label, probs in zip(texts, out["label"], out["probabilities"]):
    if all_probabilities:
      lines.append("\t".join(repr(float(p)) for p in probs))
    else:
      shown = text.decode("utf-8", "replace")
      lines.append(f"{label}\t{float(probs.max()):.4f}\t{shown}")
  return "".join(line + "\n" for line in lines)


def define_flags() -> None:
  flags.DEFINE_string("model", None, "Exported model: a version directory "
                      "(export/student/3) or its base path (highest version).")
  flags.DEFINE_string("input_file", "-", "UTF-8 text, one input per line; "
                      "'-' reads standard input.")
  flags.DEFINE_integer("batch_size", 64, "Lines per call to the model.")
  flags.DEFINE_bool("use_ids", False, "Tokenise in Python with the export's "
                    "vocab and call serving_default instead of predict_text.")
  flags.DEFINE_bool("all_probabilities", False, "Print every label's "
                    "probability (test_results.tsv format) instead of "
                    "label, probability and text.")


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise UserError(f"unexpected arguments: {' '.join(argv[1:])} (pass the "
                    "input with --input_file or on standard input)")
  if not FLAGS.model:
    raise UserError("--model is required (e.g. --model=export/student)")
  if FLAGS.batch_size < 1:
    raise UserError(f"--batch_size must be >= 1, got {FLAGS.batch_size}")
  threads.use_serving_threads([FLAGS.model])  # A process that only predicts.
  model = export_reader.ExportedClassifier(FLAGS.model)
  predict = model.predict_ids if FLAGS.use_ids else model.predict_text
  if FLAGS.input_file == "-":
    stream = sys.stdin.buffer
  elif not os.path.isfile(FLAGS.input_file):
    raise UserError(f"--input_file={FLAGS.input_file}: file not found")
  else:
    stream = open(FLAGS.input_file, "rb")
  with stream:
    try:
      for batch in read_batches(stream, FLAGS.batch_size):
        sys.stdout.write(format_lines(batch, predict(batch),
                                      FLAGS.all_probabilities))
        sys.stdout.flush()
    except BrokenPipeError:
      # The reader has gone (`| head`): stop quietly, as Unix filters do.
      # Python would report the failed flush of stdout at exit otherwise.
      os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":
  define_flags()
  app.run(exit_on_error(main))
