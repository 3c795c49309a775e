"""Tokenizers: Google BERT's WordPiece `FullTokenizer` and a SentencePiece one.

`FullTokenizer` reproduces google-research/bert's tokenization.py token for
token (it is the interface of every released `vocab.txt`):

  1. Clean: drop NUL, U+FFFD and control characters (categories Cc and Cf,
     e.g. U+200B zero-width space; \\t \\n \\r are whitespace instead); every
     whitespace character (\\t \\n \\r, ' ', category Zs such as U+00A0)
     becomes ' '.
  2. Surround every CJK ideograph with spaces, then split on whitespace
     (Python's `str.split`, which also splits on e.g. U+2028).
  3. If `do_lower_case`: `lower()`, NFD, drop category Mn (accents).
  4. Split off every punctuation character (ASCII non-alphanumerics and
     Unicode P*) as its own token.
  5. Greedy longest-match-first WordPiece with `##` continuations; a word with
     an unmatched remainder, or longer than `max_input_chars_per_word`,
     becomes one `[UNK]`.

Google's current code (and ALBERT's copy of it) counts only Cc and Cf as
control characters, so private-use (Co) and unassigned (Cn) code points are
kept, and its word-length limit is 200 characters; both are matched here.

`convert_to_unicode` keeps Google's semantics: bytes are decoded as UTF-8 with
invalid bytes silently dropped ('ignore'), so tokens match Google's for any
input.  Vocabulary files, by contrast, must be valid UTF-8 (`UserError`).

This module imports neither TensorFlow nor (until a SentencePiece model is
loaded) sentencepiece.
"""

from __future__ import annotations

import collections
import os
import re
import unicodedata
from typing import Iterable, Optional, Union

from bert.errors import UserError

UNK_TOKEN = "[UNK]"
# Google's WordpieceTokenizer default (the very first release used 100).
MAX_INPUT_CHARS_PER_WORD = 200
SPIECE_UNDERLINE = "\u2581"

# Google's CJK ranges: the Unified Ideographs blocks plus extensions A-E and
# the compatibility ideographs. Hangul, kana etc. are deliberately not here:
# those scripts separate words with spaces.
_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


def convert_to_unicode(text: Union[str, bytes]) -> str:
  """Returns `text` as str; bytes are UTF-8 with invalid bytes dropped."""
  if isinstance(text, str):
    return text
  if isinstance(text, bytes):
    return text.decode("utf-8", "ignore")
  raise UserError(f"expected str or bytes text, got {type(text).__name__}")


def load_vocab(vocab_file: str) -> "collections.OrderedDict[str, int]":
  """Reads a vocab.txt: token on line i (stripped of whitespace) has id i.

  As in Google's loader, a duplicated token keeps its first position in the
  dict but takes the id of its last line, and a blank line is the token "".
  """
  try:
    with open(vocab_file, "rb") as f:
      data = f.read()
  except FileNotFoundError:
    raise UserError(f"vocab file not found: {vocab_file}") from None
  except OSError as e:
    raise UserError(
        f"cannot read vocab file {vocab_file}: {e.strerror}") from None

  vocab = collections.OrderedDict()
  # Read lines as tf.io.gfile does: split at b"\n" and drop every b"\r",
  # even one inside a line.
  lines = data.replace(b"\r", b"").split(b"\n")
  if not lines[-1]:
    lines.pop()  # Nothing after the final newline.
  for index, line in enumerate(lines):
    try:
      token = line.decode("utf-8")
    except UnicodeDecodeError:
      raise UserError(
          f"{vocab_file}:{index + 1}: line is not valid UTF-8") from None
    vocab[token.strip()] = index
  return vocab


def _is_whitespace(char: str) -> bool:
  return char in " \t\n\r" or unicodedata.category(char) == "Zs"


def _is_control(char: str) -> bool:
  # \t \n \r are categorised Cc but BERT treats them as whitespace.
  if char in "\t\n\r":
    return False
  return unicodedata.category(char) in ("Cc", "Cf")


def _is_punctuation(char: str) -> bool:
  cp = ord(char)
  # All non-alphanumeric ASCII counts, even "$", "^", "`" which Unicode files
  # under symbols rather than punctuation.
  if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
    return True
  return unicodedata.category(char).startswith("P")


def _is_cjk(char: str) -> bool:
  cp = ord(char)
  return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


class BasicTokenizer:
  """Cleans text, spaces out CJK, lower-cases, splits off punctuation."""

  def __init__(self, do_lower_case: bool = True):
    self.do_lower_case = do_lower_case

  def tokenize(self, text: Union[str, bytes]) -> list[str]:
    """Returns the words of `text`, before WordPiece."""
    text = self._clean_and_space_cjk(convert_to_unicode(text))
    tokens = []
    for word in text.split():
      if self.do_lower_case:
        word = self._strip_accents(word.lower())
      tokens.extend(self._split_on_punctuation(word))
    # Re-split in case lower-casing or NFD produced whitespace.
    return " ".join(tokens).split()

  @staticmethod
  def _clean_and_space_cjk(text: str) -> str:
    out = []
    for char in text:
      if char == "\x00" or char == "\ufffd" or _is_control(char):
        continue
      if _is_whitespace(char):
        out.append(" ")
      elif _is_cjk(char):
        out.append(f" {char} ")
      else:
        out.append(char)
    return "".join(out)

  @staticmethod
  def _strip_accents(word: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", word)
                   if unicodedata.category(c) != "Mn")

  @staticmethod
  def _split_on_punctuation(word: str) -> list[str]:
    pieces, current = [], []
    for char in word:
      if _is_punctuation(char):
        if current:
          pieces.append("".join(current))
          current = []
        pieces.append(char)
      else:
        current.append(char)
    if current:
      pieces.append("".join(current))
    return pieces


class WordpieceTokenizer:
  """Greedy longest-match-first WordPiece over an existing vocabulary."""

  def __init__(self, vocab, unk_token: str = UNK_TOKEN,
               max_input_chars_per_word: int = MAX_INPUT_CHARS_PER_WORD):
    self.vocab = vocab
    self.unk_token = unk_token
    self.max_input_chars_per_word = max_input_chars_per_word

  def tokenize(self, text: Union[str, bytes]) -> list[str]:
    """Splits each whitespace-separated word of `text` into word pieces.

    E.g. "unaffable" -> ["un", "##aff", "##able"]. A word that cannot be
    covered entirely by vocabulary pieces becomes a single `unk_token`.
    """
    output = []
    for word in convert_to_unicode(text).split():
      if len(word) > self.max_input_chars_per_word:
        output.append(self.unk_token)
        continue
      pieces, start = [], 0
      while start < len(word):
        for end in range(len(word), start, -1):
          piece = word[start:end] if start == 0 else "##" + word[start:end]
          if piece in self.vocab:
            break
        else:
          pieces = None
          break
        pieces.append(piece)
        start = end
      output.extend(pieces if pieces is not None else [self.unk_token])
    return output


class FullTokenizer:
  """Google BERT's end-to-end tokenizer: BasicTokenizer, then WordPiece."""

  def __init__(self, vocab_file: str, do_lower_case: bool = True):
    self.vocab_file = vocab_file
    self.do_lower_case = do_lower_case
    self.vocab = load_vocab(vocab_file)
    self.inv_vocab = {i: t for t, i in self.vocab.items()}
    self.basic_tokenizer = BasicTokenizer(do_lower_case=do_lower_case)
    self.wordpiece_tokenizer = WordpieceTokenizer(vocab=self.vocab)

  def tokenize(self, text: Union[str, bytes]) -> list[str]:
    return [piece
            for word in self.basic_tokenizer.tokenize(text)
            for piece in self.wordpiece_tokenizer.tokenize(word)]

  def convert_tokens_to_ids(self, tokens: Iterable[str]) -> list[int]:
    """Maps tokens to ids; tokens not in the vocab get the id of [UNK]."""
    ids = []
    for token in tokens:
      token_id = self.vocab.get(token)
      if token_id is None:
        token_id = self.vocab.get(UNK_TOKEN)
        if token_id is None:
          raise UserError(f"{self.vocab_file}: token {token!r} is not in the "
                          f"vocab and the vocab has no {UNK_TOKEN} entry")
      ids.append(token_id)
    return ids

  def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
    return _ids_to_tokens(self.inv_vocab, ids, self.vocab_file, "vocab")


def _ids_to_tokens(inv_vocab: dict[int, str], ids: Iterable[int], source: str,
                   what: str) -> list[str]:
  """ids -> tokens; an unknown id is a UserError naming `source`."""
  tokens = []
  for i in ids:
    token = inv_vocab.get(int(i))
    if token is None:
      raise UserError(f"{source}: id {int(i)} is not in the {what} "
                      f"(ids 0..{len(inv_vocab) - 1})")
    tokens.append(token)
  return tokens


def _preprocess_for_spm(text: str, lower: bool) -> str:
  """ALBERT's SentencePiece preprocessing: collapse whitespace, lower-case.

  Unlike ALBERT (which always strips accents), accents are stripped (NFKD,
  drop combining marks) only when lower-casing, as BERT's BasicTokenizer does.
  """
  text = " ".join(text.split())
  if lower:
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = text.lower()
  return text


class SentencePieceTokenizer:
  """Tokenizer over a SentencePiece model (ALBERT-style `--spm_model_file`)."""

  def __init__(self, spm_model_file: str, do_lower_case: bool = True):
    import sentencepiece as spm  # Lazy: WordPiece users need not have it.

    if not os.path.isfile(spm_model_file):
      raise UserError(f"SentencePiece model file not found: {spm_model_file}")
    self.sp_model = spm.SentencePieceProcessor()
    try:
      self.sp_model.Load(spm_model_file)
    except (OSError, RuntimeError) as e:
      raise UserError(f"cannot load SentencePiece model {spm_model_file}: "
                      f"{e}") from None
    self.spm_model_file = spm_model_file
    # No vocab.txt here; callers that need the model file use spm_model_file.
    self.vocab_file = None
    self.do_lower_case = do_lower_case
    self.vocab = collections.OrderedDict(
        (self.sp_model.IdToPiece(i), i)
        for i in range(self.sp_model.GetPieceSize()))
    self.inv_vocab = {i: t for t, i in self.vocab.items()}

  def tokenize(self, text: Union[str, bytes]) -> list[str]:
    text = _preprocess_for_spm(convert_to_unicode(text), self.do_lower_case)
    pieces = []
    for piece in self.sp_model.EncodeAsPieces(text):
      # As ALBERT (from XLNet): split a comma off a number, "▁1990," ->
      # "▁1990" ",", so numbers tokenize the same with or without one.
      if len(piece) > 1 and piece[-1] == "," and piece[-2].isdigit():
        sub = self.sp_model.EncodeAsPieces(
            piece[:-1].replace(SPIECE_UNDERLINE, ""))
        if (piece[0] != SPIECE_UNDERLINE and sub and
            sub[0][0] == SPIECE_UNDERLINE):
          sub = sub[1:] if len(sub[0]) == 1 else [sub[0][1:]] + sub[1:]
        pieces.extend(sub + [","])
      else:
        pieces.append(piece)
    return pieces

  def convert_tokens_to_ids(self, tokens: Iterable[str]) -> list[int]:
    """Maps pieces to ids; unknown pieces get the model's unk id."""
    return [self.sp_model.PieceToId(t) for t in tokens]

  def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
    return _ids_to_tokens(self.inv_vocab, ids, self.spm_model_file, "model")


def create_tokenizer(
    vocab_file: Optional[str], do_lower_case: bool,
    spm_model_file: Optional[str] = None,
) -> Union[FullTokenizer, SentencePieceTokenizer]:
  """SentencePiece when `spm_model_file` is given, else WordPiece on vocab."""
  if spm_model_file:
    return SentencePieceTokenizer(spm_model_file, do_lower_case=do_lower_case)
  if vocab_file:
    return FullTokenizer(vocab_file, do_lower_case=do_lower_case)
  raise UserError("no tokenizer given: pass --vocab_file (or --spm_model_file)")


# Released Google checkpoints whose casing is known from the directory name.
_LOWER_CASED_MODELS = (
    "uncased_L-24_H-1024_A-16", "uncased_L-12_H-768_A-12",
    "multilingual_L-12_H-768_A-12", "chinese_L-12_H-768_A-12",
)
_CASED_MODELS = (
    "cased_L-12_H-768_A-12", "cased_L-24_H-1024_A-16",
    "multi_cased_L-12_H-768_A-12",
)


def validate_case_matches_checkpoint(do_lower_case: bool,
                                     init_checkpoint: Optional[str]) -> None:
  """Raises UserError if --do_lower_case contradicts a known Google model.

  The casing is not stored in bert_config.json, so, like Google, this guesses
  it from the directory name in `.../<model_name>/bert_model.ckpt`; unknown
  names pass.
  """
  if not init_checkpoint:
    return
  m = re.match(r"^.*?([A-Za-z0-9_-]+)/bert_model.ckpt", init_checkpoint)
  if m is None:
    return
  model_name = m.group(1)
  if model_name in _LOWER_CASED_MODELS and not do_lower_case:
    actual, kind, wanted = "False", "lower-cased (uncased)", "True"
  elif model_name in _CASED_MODELS and do_lower_case:
    actual, kind, wanted = "True", "cased", "False"
  else:
    return
  raise UserError(
      f"--do_lower_case={actual} does not match --init_checkpoint="
      f"{init_checkpoint}: `{model_name}` is a {kind} model, so pass "
      f"--do_lower_case={wanted} to tokenize as it was pre-trained")


def check_vocab_fits(tokenizer, vocab_size: int, vocab_file: str) -> None:
  """Raises UserError if the tokenizer can emit ids >= model vocab_size."""
  num_ids = max(tokenizer.vocab.values(), default=-1) + 1
  if num_ids > vocab_size:
    raise UserError(
        f"{vocab_file} has {num_ids} entries but the model config's "
        f"vocab_size is {vocab_size}: token ids would be out of range; use "
        f"the vocab that belongs to the checkpoint or fix vocab_size")
