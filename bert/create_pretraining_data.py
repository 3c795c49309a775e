"""Pre-training data for run_pretraining.py, as Google's script makes it.

  python bert/create_pretraining_data.py --input_file=corpus/*.txt \
    --output_file=data/pretrain-0.tfrecord,data/pretrain-1.tfrecord \
    --vocab_file=vocab.txt --max_seq_length=128 --max_predictions_per_seq=20 \
    --masked_lm_prob=0.15 --dupe_factor=5 --random_seed=12345

Input: one sentence per line, a blank line between documents (comma lists
and globs).  Each instance is `[CLS] A [SEP] B [SEP]`: B follows A in the
document half of the time (`next_sentence_labels` 0) and comes from another
document otherwise (1); `--short_seq_prob` of the instances aim at a random
shorter length; every document is used `--dupe_factor` times with other
masks.  Masking as Google's: `--masked_lm_prob` of the tokens (at most
`--max_predictions_per_seq`), of which 80% become [MASK], 10% a random
token, 10% stay.  `--do_whole_word_mask` masks every piece of a word
together; Chinese words come from jieba (Chinese-BERT-wwm's idea), other
words from WordPiece's `##` continuations.

Documents are read through a buffer of `--documents_buffer` documents:
within a buffer the order, the random next sentences and the masks are
those of Google's algorithm; memory is bounded by the buffer, not the
corpus.  The output is a function of the input and `--random_seed` alone.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import random
import sys
from typing import Iterator, Sequence

if not __package__:  # run as `python bert/create_pretraining_data.py`
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))

import tensorflow as tf
from absl import app, flags, logging

from bert import pretraining, tokenization
from bert.errors import UserError, exit_on_error

CLS, SEP, MASK = "[CLS]", "[SEP]", "[MASK]"


@dataclasses.dataclass(frozen=True)
class Sentence:
  """One line: its tokens and, per token, whether it starts a word."""
  tokens: tuple[str, ...]
  starts: tuple[bool, ...]


@dataclasses.dataclass
class Instance:
  tokens: list[str]
  segment_ids: list[int]
  masked_positions: list[int]
  masked_labels: list[str]
  is_random_next: bool


@dataclasses.dataclass(frozen=True)
class Options:
  max_seq_length: int = 128
  max_predictions_per_seq: int = 20
  masked_lm_prob: float = 0.15
  short_seq_prob: float = 0.1
  dupe_factor: int = 10
  do_whole_word_mask: bool = False


class SentenceTokenizer:
  """Tokens of a line and where its words start (jieba words for Chinese
  when whole words are masked)."""

  def __init__(self, tokenizer, whole_words: bool):
    self.tokenizer = tokenizer
    self.whole_words = whole_words

  def __call__(self, line: str) -> Sentence:
    if not self.whole_words:
      tokens = self.tokenizer.tokenize(line)
      return Sentence(tuple(tokens), tuple(not t.startswith("##")
                                           for t in tokens))
    import jieba  # Only for whole-word masking.
    tokens, starts = [], []
    for word in jieba.cut(line):
      pieces = self.tokenizer.tokenize(word)
      for i, piece in enumerate(pieces):
        tokens.append(piece)
        # A CJK word's characters are separate tokens of one word; other
        # words split into WordPiece pieces, "##" for continuations.
        starts.append(i == 0)
    return Sentence(tuple(tokens), tuple(starts))


def read_documents(paths: Sequence[str],
                   tokenize: SentenceTokenizer) -> Iterator[list[Sentence]]:
  """Documents (lists of non-empty sentences) from one-sentence-per-line
  files; a blank line (or a new file) ends a document."""
  for path in paths:
    document = []
    with open(path, "rb") as f:
      for line_no, raw in enumerate(f, 1):
        try:
          line = raw.decode("utf-8").strip()
        except UnicodeDecodeError as e:
          raise UserError(f"{path}:{line_no}: not UTF-8 ({e.reason} at byte "
                          f"{e.start})") from None
        if not line:
          if document:
            yield document
          document = []
          continue
        sentence = tokenize(line)
        if sentence.tokens:
          document.append(sentence)
    if document:
      yield document


def _truncate_pair(tokens_a: list, tokens_b: list, max_tokens: int,
                   rng: random.Random) -> None:
  """Google's: drop tokens from the longer side, at its front or back at
  random, until the pair fits."""
  while len(tokens_a) + len(tokens_b) > max_tokens:
    longer = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
    if rng.random() < 0.5:
      del longer[0]
    else:
      longer.pop()


def mask_tokens(tokens: list[str], starts: list[bool], options: Options,
                vocab_words: list[str], rng: random.Random
                ) -> tuple[list[str], list[int], list[str]]:
  """Google's masking -> (masked tokens, positions, original tokens).

  `starts[i]` says whether token i begins a word; with whole-word masking
  the tokens of a word are masked together.
  """
  groups = []
  for i, token in enumerate(tokens):
    if token in (CLS, SEP):
      continue
    if options.do_whole_word_mask and groups and not starts[i]:
      groups[-1].append(i)
    else:
      groups.append([i])
  rng.shuffle(groups)
  output = list(tokens)
  budget = min(options.max_predictions_per_seq,
               max(1, int(round(len(tokens) * options.masked_lm_prob))))
  masked = []
  for group in groups:
    if len(masked) >= budget:
      break
    if len(masked) + len(group) > budget:
      continue
    for index in group:
      if rng.random() < 0.8:
        replacement = MASK
      elif rng.random() < 0.5:
        replacement = tokens[index]
      else:
        replacement = vocab_words[rng.randint(0, len(vocab_words) - 1)]
      output[index] = replacement
      masked.append((index, tokens[index]))
  masked.sort()
  return output, [i for i, _ in masked], [t for _, t in masked]


def document_instances(documents: list[list[Sentence]], index: int,
                       options: Options, vocab_words: list[str],
                       rng: random.Random) -> list[Instance]:
  """Google's instances from documents[index] (random next sentences from
  the other documents)."""
  document = documents[index]
  max_tokens = options.max_seq_length - 3
  target = max_tokens
  if rng.random() < options.short_seq_prob:
    target = rng.randint(2, max_tokens)
  instances, chunk, length, i = [], [], 0, 0
  while i < len(document):
    chunk.append(document[i])
    length += len(document[i].tokens)
    if i == len(document) - 1 or length >= target:
      if chunk:
        a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
        a = [s for s in chunk[:a_end]]
        b = []
        is_random_next = len(chunk) == 1 or rng.random() < 0.5
        if is_random_next:
          b_target = target - sum(len(s.tokens) for s in a)
          for _ in range(10):
            other = rng.randint(0, len(documents) - 1)
            if other != index:
              break
          random_document = documents[other]
          for j in range(rng.randint(0, len(random_document) - 1),
                         len(random_document)):
            b.append(random_document[j])
            if sum(len(s.tokens) for s in b) >= b_target:
              break
          i -= len(chunk) - a_end  # The unused sentences come back.
        else:
          b = chunk[a_end:]
        tokens_a = [(t, s) for x in a for t, s in zip(x.tokens, x.starts)]
        tokens_b = [(t, s) for x in b for t, s in zip(x.tokens, x.starts)]
        _truncate_pair(tokens_a, tokens_b, max_tokens, rng)
        if tokens_a and tokens_b:
          tokens = [CLS] + [t for t, _ in tokens_a] + [SEP] + [
              t for t, _ in tokens_b] + [SEP]
          starts = [True] + [s for _, s in tokens_a] + [True] + [
              s for _, s in tokens_b] + [True]
          segment_ids = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
          masked, positions, labels = mask_tokens(tokens, starts, options,
                                                  vocab_words, rng)
          instances.append(Instance(masked, segment_ids, positions, labels,
                                    is_random_next))
      chunk, length = [], 0
    i += 1
  return instances


def _int64(values) -> tf.train.Feature:
  return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def serialize(instance: Instance, tokenizer, options: Options) -> bytes:
  """The tf.train.Example Google's run_pretraining.py reads."""
  pad = options.max_seq_length - len(instance.tokens)
  input_ids = tokenizer.convert_tokens_to_ids(instance.tokens) + [0] * pad
  predictions = options.max_predictions_per_seq - len(
      instance.masked_positions)
  features = {
      "input_ids": _int64(input_ids),
      "input_mask": _int64([1] * len(instance.tokens) + [0] * pad),
      "segment_ids": _int64(instance.segment_ids + [0] * pad),
      "masked_lm_positions": _int64(instance.masked_positions +
                                    [0] * predictions),
      "masked_lm_ids": _int64(tokenizer.convert_tokens_to_ids(
          instance.masked_labels) + [0] * predictions),
      "masked_lm_weights": tf.train.Feature(float_list=tf.train.FloatList(
          value=[1.0] * len(instance.masked_positions) +
          [0.0] * predictions)),
      "next_sentence_labels": _int64([int(instance.is_random_next)]),
  }
  return tf.train.Example(features=tf.train.Features(
      feature=features)).SerializeToString()


def check_options(options: Options) -> None:
  if options.max_seq_length < 5:
    raise UserError(f"--max_seq_length must be >= 5, got "
                    f"{options.max_seq_length}")
  if not 0.0 < options.masked_lm_prob < 1.0:
    raise UserError(f"--masked_lm_prob must be in (0, 1), got "
                    f"{options.masked_lm_prob}")
  if not 0.0 <= options.short_seq_prob <= 1.0:
    raise UserError(f"--short_seq_prob must be in [0, 1], got "
                    f"{options.short_seq_prob}")
  for name in ("max_predictions_per_seq", "dupe_factor"):
    if getattr(options, name) < 1:
      raise UserError(f"--{name} must be >= 1, got {getattr(options, name)}")
  expected = options.masked_lm_prob * options.max_seq_length
  if options.max_predictions_per_seq < round(expected):
    logging.warning(
        "--max_predictions_per_seq=%d is below --masked_lm_prob * "
        "--max_seq_length = %.1f: full-length instances get fewer masks than "
        "the rate asks", options.max_predictions_per_seq, expected)


def create(paths: Sequence[str], output_files: Sequence[str], tokenizer,
           options: Options, seed: int,
           documents_buffer: int = 100000) -> collections.Counter:
  """Writes the instances of `paths` over `output_files` (round robin);
  returns counts (documents, instances, tokens, masked, random_next)."""
  check_options(options)
  for path in output_files:
    if os.path.exists(path) and any(os.path.samefile(p, path) for p in paths):
      raise UserError(f"--output_file={path} is an --input_file")
  vocab_words = list(tokenizer.vocab.keys())
  for token in (CLS, SEP, MASK):
    if token not in tokenizer.vocab:
      raise UserError(f"the vocabulary has no {token} token")
  rng = random.Random(seed)
  counts = collections.Counter()
  tokenize = SentenceTokenizer(tokenizer, options.do_whole_word_mask)
  documents = read_documents(paths, tokenize)
  tmp_paths = []
  writers = []
  try:
    for path in output_files:
      directory = os.path.dirname(os.path.abspath(path))
      os.makedirs(directory, exist_ok=True)
      tmp_paths.append(f"{path}.tmp-{os.getpid()}")
      writers.append(tf.io.TFRecordWriter(tmp_paths[-1]))
    next_writer = 0
    while True:
      buffer = [d for _, d in zip(range(documents_buffer), documents)]
      if not buffer:
        break
      counts["documents"] += len(buffer)
      counts["multi_sentence"] += sum(len(d) > 1 for d in buffer)
      rng.shuffle(buffer)
      instances = []
      for _ in range(options.dupe_factor):
        for index in range(len(buffer)):
          instances += document_instances(buffer, index, options,
                                           vocab_words, rng)
      rng.shuffle(instances)
      for instance in instances:
        writers[next_writer].write(serialize(instance, tokenizer, options))
        next_writer = (next_writer + 1) % len(writers)
        counts["instances"] += 1
        counts["tokens"] += len(instance.tokens)
        counts["masked"] += len(instance.masked_positions)
        counts["random_next"] += instance.is_random_next
    if counts["documents"] == 0:
      raise UserError(f"{', '.join(paths)}: no text")
    if counts["multi_sentence"] == 0:
      raise UserError(
          f"{', '.join(paths)}: no document has two sentences, so no "
          "next-sentence pair can be made (one sentence per line, a blank "
          "line between documents)")
    for writer in writers:
      writer.close()
    writers = []
    for tmp, path in zip(tmp_paths, output_files):
      os.replace(tmp, path)
  finally:
    for writer in writers:
      writer.close()
    for tmp in tmp_paths:
      if os.path.exists(tmp):
        os.remove(tmp)
  return counts


def define_flags() -> None:
  f = flags
  f.DEFINE_string("input_file", None, "Input text (comma list and globs): "
                  "one sentence per line, a blank line between documents.")
  f.DEFINE_string("output_file", None, "Output TFRecord(s), comma list: "
                  "instances are spread over them.")
  f.DEFINE_string("vocab_file", None, "The WordPiece vocab.txt.")
  f.DEFINE_string("spm_model_file", None, "A SentencePiece model instead.")
  f.DEFINE_bool("do_lower_case", True, "Lower-case the input.")
  f.DEFINE_bool("do_whole_word_mask", False, "Mask whole words (jieba words "
                "for Chinese, WordPiece words otherwise).")
  f.DEFINE_integer("max_seq_length", 128, "Tokens per instance.")
  f.DEFINE_integer("max_predictions_per_seq", 20, "Masked tokens at most.")
  f.DEFINE_integer("random_seed", 12345, "Seed of everything random.")
  f.DEFINE_integer("dupe_factor", 10, "Passes over the data, other masks.")
  f.DEFINE_float("masked_lm_prob", 0.15, "Fraction of tokens masked.")
  f.DEFINE_float("short_seq_prob", 0.1, "Fraction of shorter instances.")
  f.DEFINE_integer("documents_buffer", 100000, "Documents held in memory "
                   "at a time (random next sentences come from the buffer).")


def main(argv: Sequence[str]) -> None:
  del argv
  f = flags.FLAGS
  for name in ("input_file", "output_file"):
    if not getattr(f, name):
      raise UserError(f"--{name} is required")
  if not (f.vocab_file or f.spm_model_file):
    raise UserError("--vocab_file (or --spm_model_file) is required")
  if f.documents_buffer < 2:
    raise UserError(f"--documents_buffer must be >= 2, got "
                    f"{f.documents_buffer}")
  options = Options(f.max_seq_length, f.max_predictions_per_seq,
                    f.masked_lm_prob, f.short_seq_prob, f.dupe_factor,
                    f.do_whole_word_mask)
  check_options(options)
  paths = pretraining.input_files(f.input_file)
  outputs = [p.strip() for p in f.output_file.split(",") if p.strip()]
  tokenizer = tokenization.create_tokenizer(f.vocab_file, f.do_lower_case,
                                            f.spm_model_file)
  counts = create(paths, outputs, tokenizer, options, f.random_seed,
                  f.documents_buffer)
  print(f"{counts['documents']} documents, {counts['instances']} instances, "
        f"{counts['tokens']} tokens, masked "
        f"{counts['masked'] / max(counts['tokens'], 1):.2%} of the tokens, "
        f"random next sentence in "
        f"{counts['random_next'] / max(counts['instances'], 1):.1%}; wrote "
        f"{', '.join(outputs)}")


if __name__ == "__main__":
  define_flags()
  app.run(exit_on_error(main))
