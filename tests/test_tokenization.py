"""Tests for bert/tokenization.py: Google BERT tokenization rules, vocab and
checkpoint checks, and the SentencePiece tokenizer."""

import os
import random
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bert import tokenization  # pylint: disable=g-import-not-at-top
from bert.errors import UserError  # pylint: disable=g-import-not-at-top

VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    "hello", "world", "bert", "2019", ",", "!", "?", "¿", "que", "Héllo",
    "un", "##aff", "##able",
    "a", "##a", "世", "界", "模", "型", "年", "，", "。",
]


@pytest.fixture
def vocab_file(tmp_path):
  path = tmp_path / "vocab.txt"
  path.write_text("".join(t + "\n" for t in VOCAB), encoding="utf-8")
  return str(path)


@pytest.fixture
def tokenizer(vocab_file):
  return tokenization.FullTokenizer(vocab_file, do_lower_case=True)


def basic(text, lower=True):
  return tokenization.BasicTokenizer(do_lower_case=lower).tokenize(text)


# --- BasicTokenizer -----------------------------------------------------------


def test_cjk_characters_are_separate_words():
  assert basic("世界你好") == ["世", "界", "你", "好"]
  # Extension B, compatibility ideographs and compatibility supplement too.
  assert basic("a\U00020000b\uf900c\U0002f800", lower=False) == [
      "a", "\U00020000", "b", "\uf900", "c", "\U0002f800"]
  # Lower-casing NFD-normalises U+F900 to its canonical ideograph U+8C48.
  assert basic("b\uf900c") == ["b", "\u8c48", "c"]
  # Kana and Hangul are not in Google's CJK ranges: they stay whole words.
  assert basic("ひらがな한국어", lower=False) == ["ひらがな한국어"]
  # Accent stripping also drops the kana voicing mark (NFD, category Mn).
  assert basic("が") == ["か"]


def test_mixed_cjk_latin_digits(tokenizer):
  assert basic("BERT模型2019年") == ["bert", "模", "型", "2019", "年"]
  assert tokenizer.tokenize("BERT模型2019年") == [
      "bert", "模", "型", "2019", "年"]
  # Each unknown CJK character is its own [UNK], not one for the run.
  assert tokenizer.tokenize("世你好界") == ["世", "[UNK]", "[UNK]", "界"]


def test_accents_stripped_only_when_lower_casing(vocab_file):
  assert basic("Héllo") == ["hello"]
  assert basic("Héllo", lower=False) == ["Héllo"]
  assert basic("ÀÉÎÕÜ ñ") == ["aeiou", "n"]
  cased = tokenization.FullTokenizer(vocab_file, do_lower_case=False)
  assert cased.tokenize("Héllo hello") == ["Héllo", "hello"]
  assert cased.tokenize("hello Hello") == ["hello", "[UNK]"]


def test_punctuation_split_ascii_and_unicode():
  assert basic("Hello,world!") == ["hello", ",", "world", "!"]
  assert basic("¿Qué?") == ["¿", "que", "?"]
  assert basic("你好，世界。") == ["你", "好", "，", "世", "界", "。"]
  # ASCII symbols that Unicode calls Sm/Sc/Sk still split; non-ASCII ones
  # (here the euro sign, category Sc) do not.
  assert basic("$5^2`x+y") == ["$", "5", "^", "2", "`", "x", "+", "y"]
  assert basic("5€") == ["5€"]
  assert basic("a--b") == ["a", "-", "-", "b"]


def test_control_chars_nul_and_replacement_char_removed():
  # Removed, not turned into spaces: the pieces around them join up.
  assert basic("hel\x00lo wor\ufffdld") == ["hello", "world"]
  assert basic("a\x07b\x1bc\x7fd\x85e") == ["abcde"]


def test_zero_width_and_format_chars_removed():
  # U+200B, U+200D, U+FEFF and the soft hyphen are category Cf.
  assert basic("zero\u200bwidth") == ["zerowidth"]
  assert basic("\ufeffa\u200db\u00adc") == ["abc"]
  # Private-use characters (Co) are not control characters in Google's code.
  assert basic("a\ue000") == ["a\ue000"]


def test_whitespace_variants_split_words():
  assert basic("a\tb\nc\rd\u00a0e\u3000f\u2003g") == list("abcdefg")
  # U+2028 is neither Zs nor control, but Python's str.split splits on it.
  assert basic("a\u2028b") == ["a", "b"]
  assert basic("  \t\n ") == []
  assert basic("") == []


def test_bytes_are_decoded_ignoring_invalid_utf8():
  text = "Héllo".encode("utf-8") + b"\xff wor\xc3ld"
  assert basic(text) == ["hello", "world"]
  with pytest.raises(UserError):
    tokenization.convert_to_unicode(123)


# --- WordpieceTokenizer -------------------------------------------------------


def test_wordpiece_greedy_longest_match_first(tokenizer):
  assert tokenizer.tokenize("unaffable") == ["un", "##aff", "##able"]
  # Longest prefix wins even though "un ##able" would also cover the word.
  vocab = {"un": 0, "una": 1, "##ble": 2, "##able": 3}
  wp = tokenization.WordpieceTokenizer(vocab)
  assert wp.tokenize("unable") == ["una", "##ble"]
  # No backtracking: after "una", "##ffable" has no piece, so the word is
  # [UNK] although "un ##aff ##able" exists.
  vocab = {"un": 0, "una": 1, "##aff": 2, "##able": 3}
  wp = tokenization.WordpieceTokenizer(vocab)
  assert wp.tokenize("unaffable") == ["[UNK]"]


def test_word_with_unmatched_piece_is_single_unk(tokenizer):
  assert tokenizer.tokenize("unaffablez") == ["[UNK]"]
  assert tokenizer.tokenize("hello xyz world") == ["hello", "[UNK]", "world"]


def test_overlong_word_is_unk(tokenizer):
  limit = tokenization.MAX_INPUT_CHARS_PER_WORD
  assert limit == 200  # Google's WordpieceTokenizer default.
  assert tokenizer.tokenize("a" * limit) == ["a"] + ["##a"] * (limit - 1)
  assert tokenizer.tokenize("a" * (limit + 1)) == ["[UNK]"]
  wp = tokenization.WordpieceTokenizer(tokenizer.vocab,
                                       max_input_chars_per_word=100)
  assert wp.tokenize("a" * 101 + " a") == ["[UNK]", "a"]
  assert len(wp.tokenize("a" * 100)) == 100


def test_custom_unk_token():
  wp = tokenization.WordpieceTokenizer({"a": 0}, unk_token="<unk>")
  assert wp.tokenize("a b") == ["a", "<unk>"]


# --- FullTokenizer ids --------------------------------------------------------


def test_convert_ids_both_ways(tokenizer):
  tokens = tokenizer.tokenize("Hello, WORLD!")
  assert tokens == ["hello", ",", "world", "!"]
  ids = tokenizer.convert_tokens_to_ids(tokens)
  assert ids == [VOCAB.index(t) for t in tokens]
  assert tokenizer.convert_ids_to_tokens(ids) == tokens
  # Unknown tokens map to the id of [UNK]; unknown ids are an error.
  assert tokenizer.convert_tokens_to_ids(["nope"]) == [VOCAB.index("[UNK]")]
  with pytest.raises(UserError, match="999"):
    tokenizer.convert_ids_to_tokens([999])
  assert tokenizer.vocab_file.endswith("vocab.txt")
  assert tokenizer.do_lower_case is True
  assert list(tokenizer.vocab) == VOCAB
  assert tokenizer.inv_vocab[5] == "hello"


# --- load_vocab ---------------------------------------------------------------


def test_load_vocab_strips_lines_like_google(tmp_path):
  path = tmp_path / "v.txt"
  # CRLF endings, padding, a blank line and a last line without newline.
  path.write_bytes(b"[PAD]\r\n  hello \n\nworld\tx\n\xc3\xa9")
  vocab = tokenization.load_vocab(str(path))
  assert list(vocab.items()) == [
      ("[PAD]", 0), ("hello", 1), ("", 2), ("world\tx", 3), ("é", 4)]


def test_missing_vocab_file_names_path(tmp_path):
  missing = str(tmp_path / "no_such_vocab.txt")
  with pytest.raises(UserError, match="no_such_vocab.txt"):
    tokenization.load_vocab(missing)
  with pytest.raises(UserError, match="no_such_vocab.txt"):
    tokenization.FullTokenizer(missing)


def test_non_utf8_vocab_line_names_file_and_line(tmp_path):
  path = tmp_path / "bad.txt"
  path.write_bytes(b"ok\nbad\xff\n")
  with pytest.raises(UserError, match=r"bad\.txt:2"):
    tokenization.load_vocab(str(path))


# --- checkpoint / config checks -----------------------------------------------


@pytest.mark.parametrize("name,do_lower_case,wanted", [
    ("uncased_L-12_H-768_A-12", False, "--do_lower_case=True"),
    ("uncased_L-24_H-1024_A-16", False, "--do_lower_case=True"),
    ("chinese_L-12_H-768_A-12", False, "--do_lower_case=True"),
    ("cased_L-12_H-768_A-12", True, "--do_lower_case=False"),
    ("multi_cased_L-12_H-768_A-12", True, "--do_lower_case=False"),
])
def test_validate_case_mismatch_raises(name, do_lower_case, wanted):
  ckpt = f"/models/{name}/bert_model.ckpt"
  with pytest.raises(UserError) as e:
    tokenization.validate_case_matches_checkpoint(do_lower_case, ckpt)
  assert wanted in str(e.value) and name in str(e.value)


@pytest.mark.parametrize("do_lower_case,ckpt", [
    (True, "/models/uncased_L-12_H-768_A-12/bert_model.ckpt"),
    (False, "gs://b/cased_L-12_H-768_A-12/bert_model.ckpt"),
    (True, "/models/my_own_model/bert_model.ckpt"),
    (False, "/models/uncased_L-12_H-768_A-12/model.ckpt-100"),
    (False, None),
    (False, ""),
])
def test_validate_case_consistent_or_unknown_passes(do_lower_case, ckpt):
  tokenization.validate_case_matches_checkpoint(do_lower_case, ckpt)


def test_check_vocab_fits(tokenizer, vocab_file):
  tokenization.check_vocab_fits(tokenizer, len(VOCAB), vocab_file)
  tokenization.check_vocab_fits(tokenizer, len(VOCAB) + 10, vocab_file)
  with pytest.raises(UserError, match="vocab.txt"):
    tokenization.check_vocab_fits(tokenizer, len(VOCAB) - 1, vocab_file)


@pytest.mark.slow
def test_module_imports_neither_tensorflow_nor_sentencepiece():
  code = ("import sys; import bert.tokenization; "
          "bad = {'tensorflow', 'sentencepiece'} & set(sys.modules); "
          "sys.exit(1 if bad else 0)")
  subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


# --- SentencePiece ------------------------------------------------------------

_SPM_WORDS = ("hello world the quick brown fox jumps over a lazy dog sentence "
              "piece model tokenizer jumping quickly models pieces sentences "
              "Hello World 1999, 2020").split()


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory):
  spm = pytest.importorskip("sentencepiece")
  tmp = tmp_path_factory.mktemp("spm")
  rng = random.Random(0)
  corpus = tmp / "corpus.txt"
  corpus.write_text("".join(
      " ".join(rng.choice(_SPM_WORDS) for _ in range(rng.randint(3, 8))) + "\n"
      for _ in range(200)))
  prefix = str(tmp / "m")
  spm.SentencePieceTrainer.train(
      input=str(corpus), model_prefix=prefix, vocab_size=60,
      model_type="unigram", character_coverage=1.0,
      # "9," forces a digit-comma piece to exercise ALBERT's comma split.
      user_defined_symbols=["[CLS]", "[SEP]", "[MASK]", "9,"],
      # No normalisation inside the model, so the tokenizer's own whitespace
      # collapsing and lower-casing are what the tests see.
      normalization_rule_name="identity", remove_extra_whitespaces=False,
      minloglevel=2)
  return prefix + ".model"


def test_spm_tokenize_and_ids_round_trip(spm_model):
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  tok = tokenization.SentencePieceTokenizer(spm_model, do_lower_case=True)
  sp = spm.SentencePieceProcessor(model_file=spm_model)
  assert len(tok.vocab) == sp.GetPieceSize() == 60
  assert tok.vocab["[CLS]"] == sp.PieceToId("[CLS]")
  pieces = tok.tokenize("the  quick\tbrown fox")
  assert pieces == sp.EncodeAsPieces("the quick brown fox")
  ids = tok.convert_tokens_to_ids(pieces)
  assert ids == [sp.PieceToId(p) for p in pieces]
  assert 0 not in ids  # <unk> is id 0: every piece is known.
  assert tok.convert_ids_to_tokens(ids) == pieces
  assert sp.DecodePieces(pieces) == "the quick brown fox"
  with pytest.raises(UserError):
    tok.convert_ids_to_tokens([60])


def test_spm_lower_casing_and_accents(spm_model):
  lower = tokenization.SentencePieceTokenizer(spm_model, do_lower_case=True)
  cased = tokenization.SentencePieceTokenizer(spm_model, do_lower_case=False)
  assert lower.tokenize("Hello WORLD") == lower.tokenize("hello world")
  assert lower.tokenize("Héllo") == lower.tokenize("hello")
  assert "▁Hello" in cased.tokenize("Hello world")
  assert not any(c.isupper() for p in lower.tokenize("Hello World") for c in p)


def test_spm_splits_comma_after_digit(spm_model):
  tok = tokenization.SentencePieceTokenizer(spm_model, do_lower_case=True)
  pieces = tok.tokenize("in 1999, the")
  assert "," in pieces
  assert not any(len(p) > 1 and p.endswith(",") for p in pieces)
  assert "".join(pieces).replace("▁", "") == "in1999,the"


def test_spm_missing_model(tmp_path):
  with pytest.raises(UserError, match="nope.model"):
    tokenization.SentencePieceTokenizer(str(tmp_path / "nope.model"))


def test_create_tokenizer_selection(vocab_file, spm_model):
  assert isinstance(tokenization.create_tokenizer(vocab_file, True),
                    tokenization.FullTokenizer)
  tok = tokenization.create_tokenizer(vocab_file, False, spm_model)
  assert isinstance(tok, tokenization.SentencePieceTokenizer)
  assert tok.do_lower_case is False
  assert isinstance(tokenization.create_tokenizer(None, True, spm_model),
                    tokenization.SentencePieceTokenizer)
  with pytest.raises(UserError):
    tokenization.create_tokenizer(None, True)
