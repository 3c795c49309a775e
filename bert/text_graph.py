"""In-graph BERT features from raw UTF-8 text, for TensorFlow Serving.

`TextFeaturizer` turns a batch of strings into the `input_ids`, `input_mask`
and `segment_ids` that `bert.data.convert_example` builds in Python with
`bert.tokenization.FullTokenizer` (or `SentencePieceTokenizer`), so an export
can offer a `predict_text` signature.

Why core ops only (WordPiece): `saved_model_cli` and plain
`tf.saved_model.load` only know core TensorFlow ops, and a SavedModel with a
single unregistered op (e.g. TF-Text's `NormalizeUTF8`) cannot be loaded at
all, so every signature of the export, serving_default included, would be
unusable from them.  The WordPiece graph therefore uses only core ops
(`tf.strings.*`, `StaticHashTable`, `tf.while_loop`, ragged ops); the
SentencePiece graph still needs TF-Text's `Sentencepiece*Op`s and
`NormalizeUTF8` (TF Serving 2.17+ has them; other tools must
`import tensorflow_text` before loading such an export).  TF Serving
registers core ops plus the 35 TF-Text ops of tensorflow-text 2.12.1
(`SERVING_TEXT_OPS`); `disallowed_ops` checks an export against that rule.

WordPiece pipeline (the order is Google's; every step is batched):
  1. Drop invalid UTF-8 bytes (`UnicodeTranscode`, errors='ignore', as
     `convert_to_unicode`), then NUL, U+FFFD and control characters (Cc, Cf
     but \\t \\n \\r).
  2. Whitespace (\\t \\n \\r, Zs, and U+2028/U+2029 on which Python's
     `str.split` also splits) -> ' '; spaces around CJK ideographs.
  3. If lower-casing: every code point is replaced by `lower()`, NFD and
     drop-Mn of it, computed in Python with `unicodedata` when the featurizer
     is built (a table of the ~16k code points this changes, most of them
     Hangul syllables and combining marks); Python's one context-dependent
     lower-casing rule, final sigma ('Σ' -> 'ς' at the end of a word), is
     applied in the graph with the Cased / Case_Ignorable classes read off
     Python's own `lower()`.  Doing this on the whole text rather than per
     word is the same: ' ' is neither cased nor case-ignorable.
  4. Spaces around punctuation (ASCII non-alphanumerics, Unicode P*); split.
  5. Words longer than `tokenization.MAX_INPUT_CHARS_PER_WORD` characters ->
     [UNK]; WordPiece: greedy longest match first with '##' continuations, a
     word with an unmatched rest -> one [UNK].  All words advance together in
     a `tf.while_loop`: per step, every unfinished word looks up its
     candidates of 1..L characters from its current position (L: the longest
     vocab token) and takes the longest hit.
The character classes of steps 1, 2, 4 are generated from `bert.tokenization`'s
own predicates over Python's `unicodedata` (not RE2's tables), so they follow
exactly the Unicode version Python uses.

Why not text.BertTokenizer: on the same vocab it differs from Google's in
ways users hit.  Its lower-casing is NFKC case folding, so full-width letters
and punctuation become ASCII ('，' -> ',', 'ＡＢＣ' -> 'abc'), 'ß' -> 'ss',
'ﬁ' -> 'fi', '①' -> '1', final 'ς' -> 'σ'; control and zero-width characters
(U+200B, U+00AD, ZWJ in emoji) split words or become [UNK] instead of being
removed, U+0085 splits a word, U+2028/U+2029 do not; and its word limit is
100 bytes, not 200 characters.  (And it is not core.)

The vocabulary is read with `tokenization.load_vocab` (Google's rules:
stripped lines, a duplicated token has the id of its last line) and stored in
the graph as the constants of a `StaticHashTable`, so the SavedModel works
without the original file.  (A `TextFileInitializer` on an asset would keep
trailing spaces and fails on a duplicated token; `bert.export` ships the
vocab.txt itself as an asset.)  A SentencePiece model is stored in the graph
too (`SentencepieceOp` holds the serialized model).

SentencePiece pipeline: as `SentencePieceTokenizer`: invalid bytes dropped,
whitespace runs -> ' ' and stripped; if lower-casing NFKD, drop combining
marks, lower-case; encode; ALBERT's split of a digit-comma piece ("▁1990," ->
"▁1990" ","); piece -> id.

Residual differences from the Python tokenizers:
  * WordPiece: the tables are those of the Python that built the export, so
    an export follows that Python's Unicode version (3.11: Unicode 14).
    Per-character NFD skips canonical reordering across characters; after
    dropping Mn this matters only for spacing marks with a nonzero combining
    class (Mc: some viramas, U+302E/U+302F, musical symbols U+1D165-U+1D172)
    written out of canonical order, which Python reorders and the graph keeps.
  * SentencePiece: lower-casing is ICU's (`tf.strings.lower`) and NFKD is
    TF-Text's ICU, so characters newer than one Unicode version may differ,
    and ICU lower-cases under the process's default locale (a Turkish, Azeri
    or Lithuanian locale changes 'I'; Python's never does).
  * What is invalid UTF-8 is ICU's rule; it dropped the same bytes as
    Python's 'ignore' decoding in every case tested (truncated, overlong,
    surrogate, > U+10FFFF, stray continuation bytes).
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import unicodedata
from typing import Callable, Optional

import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from bert import tokenization
from bert.errors import UserError

# The TF-Text ops that tensorflow_model_server 2.17-2.19 registers (it embeds
# tensorflow-text 2.12.1). Source: tensorflow/serving workspace.bzl and
# model_servers/BUILD; tensorflow/text core/ops. Serving 2.20 adds
# TFText>RoundRobinGenerateMasks, TFText>RoundRobinTrim, TFText>Utf8Binarize.
SERVING_TEXT_OPS = frozenset({
    "CaseFoldUTF8", "ConstrainedSequence", "FastBertNormalize",
    "FastWordpieceTokenizeWithOffsets", "FindSourceOffsets", "MaxSpanningTree",
    "NormalizeUTF8", "NormalizeUTF8WithOffsetsMap", "PhraseTokenize",
    "RegexSplitWithOffsets", "RougeL", "SentenceFragments",
    "SentenceFragmentsV2", "SentencepieceDetokenizeOp",
    "SentencepieceIdToStringOp", "SentencepieceOp",
    "SentencepieceStringToIdOp", "SentencepieceTokenizeOp",
    "SentencepieceTokenizeWithOffsetsOp", "SentencepieceVocabSizeOp",
    "SplitMergeTokenizeWithOffsets", "TFText>BoiseTagsToOffsets",
    "TFText>ByteSplitByOffsets", "TFText>ByteSplitWithOffsets",
    "TFText>FastSentencepieceDetokenize", "TFText>FastSentencepieceTokenize",
    "TFText>FastWordpieceDetokenize", "TFText>NgramsStringJoin",
    "TFText>OffsetsToBoiseTags", "TFText>PhraseDetokenize",
    "TFText>WhitespaceTokenizeWithOffsetsV2", "TokenizerFromLogits",
    "UnicodeScriptTokenizeWithOffsets", "WhitespaceTokenizeWithOffsets",
    "WordpieceTokenizeWithOffsets",
})

_UNDERLINE = tokenization.SPIECE_UNDERLINE  # '▁', 3 bytes in UTF-8.


# --- Character classes from Python's unicodedata ------------------------------


@functools.lru_cache(maxsize=None)
def _char_class(predicate: Callable[[str], bool]) -> str:
  """An RE2 class `[...]` of every code point where `predicate` holds."""
  ranges, start = [], None
  for cp in range(0x110001):
    hit = cp <= 0x10FFFF and not 0xD800 <= cp <= 0xDFFF and predicate(chr(cp))
    if hit and start is None:
      start = cp
    elif not hit and start is not None:
      ranges.append((start, cp - 1))
      start = None
  parts = [f"\\x{{{lo:X}}}" if lo == hi else f"\\x{{{lo:X}}}-\\x{{{hi:X}}}"
           for lo, hi in ranges]
  return "[" + "".join(parts) + "]"


# Predicates of Google's rules (bert.tokenization's, so the graph and the
# Python tokenizer cannot drift apart); _char_class caches one pattern each.
# pylint: disable=protected-access
_is_cjk = tokenization._is_cjk
_is_punctuation = tokenization._is_punctuation


def _is_removed(char: str) -> bool:
  # Google's _clean_text drops these.
  return char in "\x00\ufffd" or tokenization._is_control(char)


def _is_space(char: str) -> bool:
  # Google maps _is_whitespace to ' ' and then splits with str.split, which
  # also splits on the few remaining str.isspace characters (U+2028, U+2029).
  return not _is_removed(char) and (
      tokenization._is_whitespace(char) or char.isspace())
# pylint: enable=protected-access


def _is_combining(char: str) -> bool:
  return unicodedata.combining(char) != 0


def _lowered(char: str) -> str:
  """Google's lower-casing of one character: lower(), NFD, drop Mn.

  Whitespace in the result becomes ' ' (Google splits on it afterwards).
  """
  out = unicodedata.normalize("NFD", char.lower())
  return "".join(" " if c.isspace() else c for c in out
                 if unicodedata.category(c) != "Mn")


@functools.lru_cache(maxsize=None)
def _lower_table() -> tuple[tuple[int, ...], tuple[str, ...]]:
  """The code points that `_lowered` changes, and what they become."""
  keys, values = [], []
  for cp in range(0x110000):
    if 0xD800 <= cp <= 0xDFFF:
      continue
    out = _lowered(chr(cp))
    if out != chr(cp):
      keys.append(cp)
      values.append(out)
  return tuple(keys), tuple(values)


_CAPITAL_SIGMA, _FINAL_SIGMA = 0x3A3, "\u03c2"
_IGNORABLE, _CASED = 1, 2  # The values of `_sigma_context_table`.


@functools.lru_cache(maxsize=None)
def _sigma_context_table() -> tuple[tuple[int, ...], tuple[int, ...]]:
  """Case_Ignorable and Cased code points as Python's final-sigma rule sees
  them, read off `str.lower` itself: 'Σ' is final iff a cased letter precedes
  it and none follows it, skipping case-ignorable ones either way."""
  keys, values = [], []
  for cp in range(0x110000):
    if 0xD800 <= cp <= 0xDFFF:
      continue
    c = chr(cp)
    # After 'AΣ', a cased c makes the sigma non-final; an ignorable c does
    # not, but lets the 'A' after it do so; any other c makes it final.
    final_before_end = ("A\u03a3" + c).lower()[1] == _FINAL_SIGMA
    final_before_a = ("A\u03a3" + c + "A").lower()[1] == _FINAL_SIGMA
    if final_before_end and not final_before_a:
      keys.append(cp)
      values.append(_IGNORABLE)
    elif not final_before_end:
      keys.append(cp)
      values.append(_CASED)
  return tuple(keys), tuple(values)


# --- Ragged helpers -----------------------------------------------------------


def _static_table(keys, values, key_dtype: tf.DType, value_dtype: tf.DType,
                  default) -> tf.lookup.StaticHashTable:
  """A lookup table held as constants in the graph (no file needed)."""
  return tf.lookup.StaticHashTable(
      tf.lookup.KeyValueTensorInitializer(
          tf.constant(list(keys), key_dtype),
          tf.constant(list(values), value_dtype)), default_value=default)


def _head(rt: tf.RaggedTensor, lengths: tf.Tensor) -> tf.RaggedTensor:
  """The first `lengths[i]` items of each row i of `rt` (ragged [B, None])."""
  starts = rt.row_starts()
  return tf.gather(rt.values, tf.ragged.range(starts, starts + lengths))


def _column(value: int, lengths: tf.Tensor) -> tf.RaggedTensor:
  """Row i holds `lengths[i]` copies of `value` (int32 ragged [B, None])."""
  return tf.RaggedTensor.from_row_lengths(
      tf.fill([tf.reduce_sum(lengths)], tf.constant(value, tf.int32)), lengths,
      validate=False)


def _lower_keeping_nul(texts: tf.Tensor) -> tf.Tensor:
  """ICU lower-casing of string [B] that may contain NUL.

  StringLower reads a C string and so stops at the first NUL: lower-case the
  parts between NULs and join them again (a NUL in an op attribute, such as
  reduce_join's separator, is lost too, so the NULs are appended as data).
  """
  parts = tf.strings.lower(tf.strings.split(texts, sep="\x00"),
                           encoding="utf-8")  # ragged [B, K]
  last = tf.ragged.range(parts.row_lengths()) + 1 == tf.expand_dims(
      parts.row_lengths(), 1)
  nul = tf.where(last.flat_values, "", "\x00")
  parts = parts.with_flat_values(tf.strings.join([parts.flat_values, nul]))
  return tf.strings.reduce_join(parts, axis=1)


def truncated_pair_lengths(len_a: tf.Tensor, len_b: tf.Tensor,
                           max_length: int) -> tuple[tf.Tensor, tf.Tensor]:
  """Lengths after Google's _truncate_seq_pair, in closed form.

  Google pops from a while len(a) > len(b), else from b, until the total fits
  in `max_length` (m). The longer side shrinks to meet the shorter one, then
  both shrink in turn, a keeping the odd token: a keeps ceil(m/2) and b
  floor(m/2) unless one side is shorter than that, in which case the other
  takes the rest of m.  len_a, len_b: int [B] -> (int [B], int [B]).
  """
  half_up = tf.cast((max_length + 1) // 2, len_a.dtype)
  half_down = tf.cast(max_length // 2, len_a.dtype)
  keep_a = tf.minimum(len_a, tf.maximum(half_up, max_length - len_b))
  keep_b = tf.minimum(len_b, tf.maximum(half_down, max_length - len_a))
  return keep_a, keep_b


# --- The featurizer -----------------------------------------------------------


class TextFeaturizer(tf.Module):
  """Raw strings -> Google BERT features, in the graph, batched.

  Call with `text_a` string [B] (and optionally `text_b` string [B]); returns
  {"input_ids", "input_mask", "segment_ids"}: int32 [B, max_seq_length].
  """

  def __init__(self, vocab_file: Optional[str], do_lower_case: bool,
               max_seq_length: int, spm_model_file: Optional[str] = None):
    super().__init__(name="text_featurizer")
    if max_seq_length < 3:
      raise UserError(
          f"--max_seq_length must be at least 3, got {max_seq_length}")
    self.do_lower_case = bool(do_lower_case)
    self.max_seq_length = int(max_seq_length)
    # The Python tokenizer reads and checks the files with Google's rules.
    py_tokenizer = tokenization.create_tokenizer(
        vocab_file, do_lower_case, spm_model_file)
    self._cls_id, self._sep_id = py_tokenizer.convert_tokens_to_ids(
        ["[CLS]", "[SEP]"])
    if spm_model_file:
      # Only SentencePiece needs TF-Text (its ops register on import).
      import tensorflow_text as text  # pylint: disable=import-outside-toplevel
      self._spm = True
      with open(spm_model_file, "rb") as f:
        self._sp = text.SentencepieceTokenizer(model=f.read(),
                                               out_type=tf.string)
      return
    self._spm = False
    vocab = py_tokenizer.vocab
    if tokenization.UNK_TOKEN not in vocab:
      # Python fails only on the first unknown word; a graph cannot.
      raise UserError(
          f"{vocab_file}: the vocab has no {tokenization.UNK_TOKEN} entry")
    self._unk_id = vocab[tokenization.UNK_TOKEN]
    self._table = _static_table(list(vocab.keys()), list(vocab.values()),
                                tf.string, tf.int64, -1)
    # No piece longer than the longest token can match.
    self._max_piece_chars = min(
        max(len(t) for t in vocab), tokenization.MAX_INPUT_CHARS_PER_WORD + 2)
    self._removed_re = _char_class(_is_removed)
    self._space_re = _char_class(_is_space)
    self._cjk_re = _char_class(_is_cjk)
    self._punct_re = _char_class(_is_punctuation)
    if self.do_lower_case:
      keys, values = _lower_table()
      # Code point -> index into `_lower_values`, -1 when unchanged.
      self._lower_index = _static_table(keys, range(len(keys)), tf.int64,
                                        tf.int64, -1)
      self._lower_values = tf.constant(values, tf.string)
      keys, values = _sigma_context_table()
      self._sigma_context = _static_table(keys, values, tf.int64, tf.int64, 0)

  def __call__(self, text_a: tf.Tensor, text_b: Optional[tf.Tensor] = None
               ) -> dict[str, tf.Tensor]:
    """text_a, text_b: string [B] -> dict of int32 [B, max_seq_length]."""
    if text_b is None:
      return self._pack(self.tokenize_ids(text_a), None)
    text_a = tf.convert_to_tensor(text_a, tf.string)
    text_b = tf.convert_to_tensor(text_b, tf.string)
    batch_size = tf.shape(text_a)[0]
    with tf.control_dependencies([tf.debugging.assert_equal(
        batch_size, tf.shape(text_b)[0],
        message="text_a and text_b must have the same batch size")]):
      # One tokenizer pass over a and b together: half the ops in the graph.
      ids = self.tokenize_ids(tf.concat([text_a, text_b], axis=0))
    return self._pack(ids[:batch_size], ids[batch_size:])

  def tokenize_ids(self, texts: tf.Tensor) -> tf.RaggedTensor:
    """string [B] -> int32 ragged [B, None]: the token ids of each text."""
    texts = tf.convert_to_tensor(texts, tf.string)
    texts.shape.assert_has_rank(1)
    # Invalid bytes are dropped, as convert_to_unicode's 'ignore' does.
    texts = tf.strings.unicode_transcode(texts, "UTF-8", "UTF-8",
                                         errors="ignore")
    if self._spm:
      return self._sentencepiece_ids(texts)
    return self._wordpiece_ids(texts)

  def _wordpiece_ids(self, texts: tf.Tensor) -> tf.RaggedTensor:
    texts = tf.strings.regex_replace(texts, self._removed_re, "")
    texts = tf.strings.regex_replace(texts, self._space_re, " ")
    texts = tf.strings.regex_replace(texts, self._cjk_re, r" \0 ")
    if self.do_lower_case:
      texts = self._lower(texts)
    texts = tf.strings.regex_replace(texts, self._punct_re, r" \0 ")
    words = tf.strings.split(texts)  # ragged [B, W]
    ids = words.with_flat_values(self._wordpiece(words.flat_values))
    return tf.cast(ids.merge_dims(1, 2), tf.int32)

  def _lower(self, texts: tf.Tensor) -> tf.Tensor:
    """lower(), NFD, drop Mn, as Python does per word. string [B] -> [B]."""
    chars = tf.strings.unicode_decode(texts, "UTF-8")  # int32 ragged [B, C]
    cps = tf.cast(chars.flat_values, tf.int64)  # [N]
    index = self._lower_index.lookup(cps)
    new = tf.where(index >= 0,
                   tf.gather(self._lower_values, tf.maximum(index, 0)),
                   tf.strings.unicode_encode(
                       tf.expand_dims(chars.flat_values, 1), "UTF-8"))
    # Final sigma: the nearest non-ignorable characters before and after
    # each position, found through the running count of such characters; a
    # sentinel at index N stands for "none in this text".
    n = tf.shape(cps, out_type=tf.int64)[0]
    context = self._sigma_context.lookup(cps)
    rows = tf.concat([chars.value_rowids(), tf.constant([-1], tf.int64)], 0)
    context = tf.concat([context, tf.zeros([1], tf.int64)], 0)
    solid = tf.not_equal(context[:-1], _IGNORABLE)
    solid_at = tf.concat([tf.where(solid)[:, 0], tf.reshape(n, [1])], 0)
    count = tf.cumsum(tf.cast(solid, tf.int64), exclusive=True)
    before = tf.where(count > 0, tf.gather(solid_at, tf.maximum(count - 1, 0)),
                      n)
    after = tf.gather(solid_at, count + tf.cast(solid, tf.int64))

    def cased(i):
      return ((tf.gather(rows, i) == rows[:-1]) &
              (tf.gather(context, i) == _CASED))

    final = tf.equal(cps, _CAPITAL_SIGMA) & cased(before) & ~cased(after)
    new = tf.where(final, _FINAL_SIGMA, new)
    return tf.strings.reduce_join(chars.with_flat_values(new), axis=1)

  def _wordpiece(self, words: tf.Tensor) -> tf.RaggedTensor:
    """Greedy longest-match-first WordPiece. string [N] -> int64 [N, None].

    Step s gives every unfinished word its s-th piece; a word without a
    match at its position fails and becomes one [UNK], as do words longer
    than MAX_INPUT_CHARS_PER_WORD.
    """
    n = tf.shape(words, out_type=tf.int64)[0]
    length = tf.strings.length(words, unit="UTF8_CHAR")
    failed = length > tokenization.MAX_INPUT_CHARS_PER_WORD
    empty = tf.zeros([0], tf.int64)

    def unfinished(pos, failed):
      return (pos < length) & ~failed

    def cond(step, pos, failed, *_):
      del step
      return tf.reduce_any(unfinished(pos, failed))

    def body(step, pos, failed, word_of, step_of, id_of):
      active = tf.where(unfinished(pos, failed))[:, 0]  # [A]
      start = tf.gather(pos, active)
      rest = tf.gather(length, active) - start
      width = tf.minimum(self._max_piece_chars, tf.reduce_max(rest))
      sizes = tf.range(1, width + 1)  # [K]
      shape = tf.stack([tf.size(active), width])
      candidates = tf.strings.substr(
          tf.expand_dims(tf.gather(words, active), 1),
          tf.broadcast_to(tf.expand_dims(start, 1), shape),
          tf.broadcast_to(sizes, shape), unit="UTF8_CHAR")  # [A, K]
      prefix = tf.broadcast_to(
          tf.expand_dims(tf.where(start > 0, "##", ""), 1), shape)
      ids = self._table.lookup(tf.strings.join([prefix, candidates]))
      hit = (ids >= 0) & (sizes <= tf.expand_dims(rest, 1))
      best = tf.reduce_max(tf.where(hit, sizes, 0), axis=1)  # 0: no match
      best_id = tf.gather(ids, tf.maximum(best - 1, 0), batch_dims=1)
      matched = best > 0
      index = tf.expand_dims(active, 1)
      pos = tf.tensor_scatter_nd_add(pos, index, best)
      failed = tf.tensor_scatter_nd_update(failed, index, ~matched)
      word_of = tf.concat([word_of, tf.boolean_mask(active, matched)], 0)
      step_of = tf.concat([step_of, tf.fill([tf.reduce_sum(
          tf.cast(matched, tf.int64))], step)], 0)
      id_of = tf.concat([id_of, tf.boolean_mask(best_id, matched)], 0)
      return step + 1, pos, failed, word_of, step_of, id_of

    _, _, failed, word_of, step_of, id_of = tf.while_loop(
        cond, body,
        (tf.constant(0, tf.int64), tf.zeros_like(length), failed, empty,
         empty, empty),
        shape_invariants=(tf.TensorShape([]), length.shape, failed.shape,
                          tf.TensorShape([None]), tf.TensorShape([None]),
                          tf.TensorShape([None])))
    # A failed word keeps none of its pieces and gets one [UNK] instead.
    keep = ~tf.gather(failed, word_of)
    word_of, step_of, id_of = (tf.boolean_mask(t, keep)
                               for t in (word_of, step_of, id_of))
    count = tf.math.unsorted_segment_sum(
        tf.ones_like(word_of), word_of, n) + tf.cast(failed, tf.int64)
    row_start = tf.cumsum(count, exclusive=True)
    unk_of = tf.where(failed)[:, 0]
    at = tf.concat([tf.gather(row_start, word_of) + step_of,
                    tf.gather(row_start, unk_of)], 0)
    values = tf.scatter_nd(
        tf.expand_dims(at, 1),
        tf.concat([id_of, tf.fill(tf.shape(unk_of), tf.constant(
            self._unk_id, tf.int64))], 0),
        tf.reshape(tf.reduce_sum(count), [1]))
    return tf.RaggedTensor.from_row_lengths(values, count, validate=False)

  def _sentencepiece_ids(self, texts: tf.Tensor) -> tf.RaggedTensor:
    # SentencePieceTokenizer: " ".join(text.split()), then if lower-casing
    # NFKD, drop combining marks, lower().
    texts = tf.strings.regex_replace(
        texts, _char_class(str.isspace) + "+", " ")
    texts = tf.strings.regex_replace(texts, "^ | $", "")
    if self.do_lower_case:
      import tensorflow_text as text  # pylint: disable=import-outside-toplevel
      texts = text.normalize_utf8(texts, "NFKD")
      texts = tf.strings.regex_replace(texts, _char_class(_is_combining), "")
      texts = _lower_keeping_nul(texts)
    pieces = self._sp.tokenize(texts)  # ragged [B, P] strings
    pieces = pieces.with_flat_values(self._split_number_commas(
        pieces.flat_values)).merge_dims(1, 2)
    ids = self._sp.string_to_id(pieces)
    return tf.cast(ids, tf.int32)

  def _split_number_commas(self, pieces: tf.Tensor) -> tf.RaggedTensor:
    """ALBERT's rule: "▁1990," -> "▁1990" ",". pieces [N] -> ragged [N, None].

    A piece ending in a digit and ',' is re-encoded without '▁' and the comma;
    if the piece did not start with '▁' but the re-encoding does, that '▁' is
    removed (the piece "▁" dropped).  Other pieces stay as they are.
    """
    split = tf.strings.regex_full_match(
        pieces, "(?s).*" + _char_class(str.isdigit) + ",")
    core = tf.strings.regex_replace(
        tf.strings.regex_replace(pieces, ",$", ""), _UNDERLINE, "")
    sub = self._sp.tokenize(tf.where(split, core, ""))  # "" -> no pieces
    values = sub.values
    starts_with_underline = f"(?s){_UNDERLINE}.*"
    first = tf.equal(tf.ragged.range(sub.row_lengths()).flat_values, 0)
    fix = (first & tf.strings.regex_full_match(values, starts_with_underline)
           & tf.gather(split & ~tf.strings.regex_full_match(
               pieces, starts_with_underline), sub.value_rowids()))
    drop = fix & tf.equal(values, _UNDERLINE)
    values = tf.where(fix, tf.strings.regex_replace(values, "^" + _UNDERLINE,
                                                    ""), values)
    sub = tf.ragged.boolean_mask(sub.with_values(values),
                                 sub.with_values(~drop))
    last = tf.expand_dims(tf.where(split, ",", pieces), 1)
    return tf.concat([sub, tf.RaggedTensor.from_tensor(last)], axis=1)

  def _pack(self, ids_a: tf.RaggedTensor, ids_b: Optional[tf.RaggedTensor]
            ) -> dict[str, tf.Tensor]:
    """[CLS] a [SEP] (b [SEP]) with Google's truncation, padded with 0."""
    len_a = ids_a.row_lengths()
    if ids_b is None:
      ids_b = tf.RaggedTensor.from_row_lengths(
          tf.zeros([0], tf.int32), tf.zeros_like(len_a))
    len_b = ids_b.row_lengths()
    # As Google: a text_b with no tokens means a single sequence.
    has_b = len_b > 0
    pair_a, pair_b = truncated_pair_lengths(len_a, len_b,
                                            self.max_seq_length - 3)
    keep_a = tf.where(has_b, pair_a,
                      tf.minimum(len_a, self.max_seq_length - 2))
    keep_b = tf.where(has_b, pair_b, tf.zeros_like(pair_b))
    ones = tf.ones_like(len_a)
    # Google adds b and its [SEP] only if b still has tokens after truncation
    # (with max_seq_length 3 or 4 it may not).
    second_sep = tf.cast(keep_b > 0, len_a.dtype)
    ids = tf.concat([_column(self._cls_id, ones), _head(ids_a, keep_a),
                     _column(self._sep_id, ones), _head(ids_b, keep_b),
                     _column(self._sep_id, second_sep)], axis=1)
    segment_ids = tf.concat([_column(0, keep_a + 2),
                             _column(1, keep_b + second_sep)], axis=1)
    shape = [None, self.max_seq_length]
    return {
        "input_ids": ids.to_tensor(0, shape=shape),
        "input_mask": tf.ones_like(ids).to_tensor(0, shape=shape),
        "segment_ids": segment_ids.to_tensor(0, shape=shape),
    }


# --- Serving op checks --------------------------------------------------------


def graph_ops(saved_model_dir: str) -> set[str]:
  """Op types in a SavedModel's graphs and all functions of their libraries.

  Calls of library functions by name are not op types and are left out.
  """
  path = os.path.join(saved_model_dir, "saved_model.pb")
  if not tf.io.gfile.exists(path):
    raise UserError(f"{path}: no such file (expected a SavedModel directory)")
  saved_model = saved_model_pb2.SavedModel()
  with tf.io.gfile.GFile(path, "rb") as f:
    saved_model.ParseFromString(f.read())
  ops, functions = set(), set()
  for meta_graph in saved_model.meta_graphs:
    graph = meta_graph.graph_def
    ops.update(node.op for node in graph.node)
    for function in graph.library.function:
      functions.add(function.signature.name)
      ops.update(node.op for node in function.node_def)
  return ops - functions


def serving_allowed_ops() -> set[str]:
  """The TF-Text ops that TF Serving 2.17+ can run (beside core TF ops)."""
  return set(SERVING_TEXT_OPS)


# Lists the ops core TensorFlow registers, in a process that has not imported
# tensorflow_text (whose ops register on import).
_LIST_CORE_OPS = """
from tensorflow.core.framework import op_def_pb2
from tensorflow.python.client import pywrap_tf_session as c
ops = op_def_pb2.OpList()
ops.ParseFromString(c.TF_GetBuffer(c.TF_GetAllOpList()))
print("\\n".join(sorted(op.name for op in ops.op)))
"""


@functools.lru_cache(maxsize=None)
def core_ops() -> frozenset[str]:
  """Names of all ops registered by core TensorFlow (this installed version)."""
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
  result = subprocess.run([sys.executable, "-c", _LIST_CORE_OPS], env=env,
                          capture_output=True, text=True, check=True)
  names = frozenset(result.stdout.split())
  if "MatMul" not in names or "WordpieceTokenizeWithOffsets" in names:
    raise RuntimeError("listing core TensorFlow ops failed: " +
                       result.stderr[-500:])
  return names


def disallowed_ops(saved_model_dir: str) -> set[str]:
  """Ops of the SavedModel that TF Serving 2.17+ lacks: neither core TF ops
  nor in `SERVING_TEXT_OPS`. Empty when the export is servable."""
  return graph_ops(saved_model_dir) - serving_allowed_ops() - core_ops()
