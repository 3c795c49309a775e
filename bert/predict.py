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
import tensorflow as tf
from absl import app, flags

from bert import data, export, processors, tokenization
from bert.errors import UserError, exit_on_error

FLAGS = flags.FLAGS


class ExportedClassifier:
  """An exported classifier and what its assets say about its inputs."""

  def __init__(self, path: str):
    self.dir = export.resolve_export(path)
    self.info = export.read_export_info(self.dir)
    try:
      self.loaded = export.load(self.dir)
    except Exception as e:  # A broken or foreign directory.
      raise UserError(f"{self.dir}: cannot load the SavedModel "
                      f"({e.__class__.__name__}: {str(e)[:200]})") from None
    self.serving_default = self.loaded.signatures.get("serving_default")
    if self.serving_default is None:
      raise UserError(f"{self.dir}: the SavedModel has no serving_default "
                      "signature")
    self.label_list = [str(l) for l in self.info.get("label_list", [])]
    self.max_seq_length = int(self.info.get("max_seq_length", 128))
    self._tokenizer = None

  @property
  def tokenizer(self):
    """The Python tokenizer the model was trained with, from the assets."""
    if self._tokenizer is None:
      spm = export.asset_path(self.dir, "spm.model")
      vocab = export.asset_path(self.dir, "vocab.txt")
      if not (spm or vocab):
        raise UserError(f"{self.dir}: the export has no vocab.txt or spm.model "
                        "asset to tokenise with")
      self._tokenizer = tokenization.create_tokenizer(
          vocab, bool(self.info.get("do_lower_case", True)), spm)
    return self._tokenizer

  def features(self, texts: Sequence[str | bytes],
               max_seq_length: int | None = None) -> dict[str, np.ndarray]:
    """Google's features for single texts, trimmed to the longest one:
    input_ids, input_mask, segment_ids int32 [B, S]."""
    examples = [processors.InputExample(str(i), tokenization.convert_to_unicode(t))
                for i, t in enumerate(texts)]
    features = data.features_to_tensors(data.convert_examples(
        examples, self.label_list, max_seq_length or self.max_seq_length,
        self.tokenizer))
    length = max(1, int(features["input_mask"].sum(1).max(initial=1)))
    return {k: features[k][:, :length]
            for k in ("input_ids", "input_mask", "segment_ids")}

  def serve_ids(self, features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """serving_default on int32 [B, S] features -> logits, probabilities [B, C]."""
    out = self.serving_default(
        **{k: tf.constant(features[k], tf.int32)
           for k in ("input_ids", "input_mask", "segment_ids")})
    return {k: v.numpy() for k, v in out.items()}

  def predict_ids(self, texts: Sequence[str | bytes]) -> dict[str, np.ndarray]:
    """Python tokenisation + serving_default -> probabilities [B, C], label [B]."""
    out = self.serve_ids(self.features(texts))
    return {**out, "label": self._label_names(out["logits"].argmax(-1))}

  def predict_text(self, texts: Sequence[str | bytes]) -> dict[str, np.ndarray]:
    """The predict_text signature (in-graph tokenisation) -> probabilities
    [B, C], label [B] (str)."""
    signature = self.loaded.signatures.get("predict_text")
    if signature is None:
      raise UserError(f"{self.dir}: the export has no predict_text signature "
                      "(exported without a text featurizer); use --use_ids")
    raw = [t.encode("utf-8") if isinstance(t, str) else t for t in texts]
    out = {k: v.numpy() for k, v in signature(text=tf.constant(raw, tf.string)).items()}
    out["label"] = np.array([l.decode("utf-8") for l in out["label"]])
    return out

  def _label_names(self, indices: np.ndarray) -> np.ndarray:
    names = self.label_list or [str(i) for i in range(int(indices.max(initial=0)) + 1)]
    return np.array([names[i] for i in indices])


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
  model = ExportedClassifier(FLAGS.model)
  predict = model.predict_ids if FLAGS.use_ids else model.predict_text
  if FLAGS.input_file == "-":
    stream = sys.stdin.buffer
  elif not os.path.isfile(FLAGS.input_file):
    raise UserError(f"--input_file={FLAGS.input_file}: file not found")
  else:
    stream = open(FLAGS.input_file, "rb")
  with stream:
    for batch in read_batches(stream, FLAGS.batch_size):
      sys.stdout.write(format_lines(batch, predict(batch),
                                    FLAGS.all_probabilities))
      sys.stdout.flush()


if __name__ == "__main__":
  define_flags()
  app.run(exit_on_error(main))
