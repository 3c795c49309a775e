"""Tests for bert/text_graph.py: in-graph features equal FullTokenizer's and
SentencePieceTokenizer's, Google's pair truncation, exported `predict_text`
signatures without the vocab file, WordPiece exports with core ops only (run
by saved_model_cli), and the TF Serving op check."""

import ast
import os
import random
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text as text

from bert import data
from bert import export
from bert import modeling
from bert import text_graph
from bert import tokenization
from bert.errors import UserError
from bert.processors import InputExample
from tests import helpers

VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    "hello", "Hello", "world", "un", "##aff", "##able", "caf", "##e", "##é",
    "cafe", "naive", "a", "##a", "##b", "12", "##3", "3", "##45", "2019",
    "οδος", "istanbul", "ß", "strasse", "straße", "ｈｅｌｌｏ", "ﬁ", "か",
    "我", "喜", "欢", "吃", "好", "的", "很", "模", "型", "年", "中", "国",
    "\u8c48", "\uf900",
    ",", ".", "!", "?", "，", "。", "！", "？", "「", "」", "$", "^", "`", "~",
    "¿", "«", "»", "—", "…", "'", '"', "[", "]", "(", ")",
]

TRICKY = [
    "Hello, World!", "unaffable UNAFFABLE Unaffable",
    "Héllo wörld café naïve ÀÉÎÕÜ", "cafe\u0301 e\u0301",
    "我喜欢吃好吃的，很好吃。", "「中国」！模型2019年？", "BERT模型2019年",
    "12,345.67 3.14 1,2,3 １２３", "$^`~ ¿que? «guillemets» — … ‘q’ “dq”",
    "👍🏻 😀😀 🇨🇳 👨\u200d👩\u200d👧 ❤️ ☺", "😀😀😀",
    "a\tb\nc\r\nd\u00a0e\u3000f\u2028g\u2029h\u200bi\u2003j\u1680k\u202fl",
    "a\x00b\x01c\x7fd\x85e\u200ef\ufeffg\ufffdh\u00adi\x1cj\x0bk\x0cl",
    "zero\u200bwidth\u200cnon\u200djoiner\u2060x\u180ey",
    "a" * 150, "a" * 200, "a" * 201, "ab" * 60 + " a", "x" * 250 + " hello",
    "ΟΔΟΣ ΑΣ.Α ΣΑΣ", "İSTANBUL ıi I", "\uf900 \U00020000 \U0002f800",
    "が ガ 한국어 ひらがな", "ＨＥＬＬＯ ﬁ ß STRASSE Straße", "\ue000 \U000e0001x",
    "مَرْحَبًا नमस्ते", "  leading and trailing  ", "   ", "\n", "",
    "[UNK] [CLS] [SEP]", "don't stop-believing (now)",
    # Final sigma: context skips case-ignorable characters (' . U+0301 ʰ).
    "ΣΑΣ'Σ ΑΣ' Α'Σ ΑΣ\u0301Α ΑΣ\u0301 ΣΣΣ ʰΣ Σ 1Σ ΑΣ1 ΑΣʰ ΑΣʰΑ ΑΣ.",
    "ǅ ῼ ﬀ ŉ Ǆ ẞ K Å Ω ⅷ Ⓐ 𐐀 한국어",
]

PAIRS = [
    ("Hello, World!", "我喜欢吃好吃的"), ("unaffable", ""), ("", "hello"),
    ("", ""), ("a " * 30, "b " * 2), ("a " * 2, "b " * 30),
    ("a " * 30, "b " * 30), ("a " * 9, "b " * 9), ("😀", "   "),
    ("模型" * 20, "ΟΔΟΣ ΑΣ. " * 10),
]


def write_vocab(directory, tokens):
  path = os.path.join(str(directory), "vocab.txt")
  with open(path, "w", encoding="utf-8") as f:
    f.write("".join(t + "\n" for t in tokens))
  return path


def python_features(tokenizer, pairs, max_seq_length):
  """Features as bert.data builds them in Python, stacked: 3 x [B, S]."""
  features = [data.convert_example(InputExample(str(i), a, b), ["x"],
                                   max_seq_length, tokenizer)
              for i, (a, b) in enumerate(pairs)]
  return {name: np.array([getattr(f, name) for f in features], np.int32)
          for name in ("input_ids", "input_mask", "segment_ids")}


def graph_features(featurizer, pairs, with_b=True):
  text_a = tf.constant([a for a, _ in pairs])
  text_b = tf.constant([b or "" for _, b in pairs]) if with_b else None
  return {k: v.numpy() for k, v in featurizer(text_a, text_b).items()}


def assert_features_equal(got, want):
  assert set(got) == set(want)
  for name in want:
    assert got[name].dtype == np.int32
    np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def assert_ids_equal(featurizer, tokenizer, texts):
  got = featurizer.tokenize_ids(tf.constant(texts)).to_list()
  for t, ids in zip(texts, got):
    want = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(t))
    assert ids == want, (t, tokenizer.tokenize(t))


@pytest.fixture(params=[True, False], ids=["lower", "cased"])
def do_lower_case(request):
  return request.param


@pytest.fixture
def vocab_file(tmp_path):
  return write_vocab(tmp_path, VOCAB)


def test_truncated_pair_lengths_is_googles_loop():
  def google(len_a, len_b, max_length):
    while len_a + len_b > max_length:
      if len_a > len_b:
        len_a -= 1
      else:
        len_b -= 1
    return len_a, len_b

  for m in range(0, 9):
    grid = [(a, b) for a in range(13) for b in range(13)]
    a, b = text_graph.truncated_pair_lengths(
        tf.constant([g[0] for g in grid], tf.int64),
        tf.constant([g[1] for g in grid], tf.int64), m)
    got = list(zip(a.numpy().tolist(), b.numpy().tolist()))
    assert got == [google(la, lb, m) for la, lb in grid], m


def test_ids_match_full_tokenizer_on_tricky_text(vocab_file, do_lower_case):
  tokenizer = tokenization.FullTokenizer(vocab_file, do_lower_case)
  featurizer = text_graph.TextFeaturizer(vocab_file, do_lower_case, 16)
  assert_ids_equal(featurizer, tokenizer, TRICKY)
  # The vocab does cover many words, so the comparison is not all [UNK].
  unk = tokenizer.vocab["[UNK]"]
  ids = featurizer.tokenize_ids(tf.constant(TRICKY)).flat_values.numpy()
  assert (ids != unk).sum() > 80


def test_normalisation_matches_basic_tokenizer_word_for_word(tmp_path,
                                                             do_lower_case):
  # A vocab of exactly the words Google's BasicTokenizer produces makes every
  # normalisation difference (case, accents, splits) a different id.
  basic = tokenization.BasicTokenizer(do_lower_case)
  words = sorted({w for t in TRICKY for w in basic.tokenize(t)})
  vocab_file = write_vocab(tmp_path, ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] +
                           [w for w in words if w not in ("[UNK]",)])
  tokenizer = tokenization.FullTokenizer(vocab_file, do_lower_case)
  featurizer = text_graph.TextFeaturizer(vocab_file, do_lower_case, 16)
  assert_ids_equal(featurizer, tokenizer, TRICKY)
  got = featurizer.tokenize_ids(tf.constant(TRICKY)).flat_values.numpy()
  assert (got == tokenizer.vocab["[UNK]"]).sum() == sum(
      1 for t in TRICKY for w in basic.tokenize(t)
      if len(w) > tokenization.MAX_INPUT_CHARS_PER_WORD or w == "[UNK]")


def test_lower_casing_matches_python_on_random_text(tmp_path):
  # Random strings of characters that lower-casing changes (every 5th one of
  # the table: capitals, Hangul, marks, ligatures, ...) mixed with sigma and
  # its context classes, digits, spaces, punctuation and CJK.
  keys, _ = text_graph._lower_table()  # pylint: disable=protected-access
  pool = [chr(c) for c in keys[::5]] + list(
      "ΣΣΣΣAaα' .\u0301ʰ1,\u3000\u4e2d\u00ad")
  rng = random.Random(0)
  texts = ["".join(rng.choice(pool) for _ in range(rng.randint(0, 40)))
           for _ in range(400)]
  basic = tokenization.BasicTokenizer(True)
  words = sorted({w for t in texts for w in basic.tokenize(t)} - {"[UNK]"})
  vocab_file = write_vocab(tmp_path, ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] +
                           words)
  tokenizer = tokenization.FullTokenizer(vocab_file, True)
  featurizer = text_graph.TextFeaturizer(vocab_file, True, 16)
  assert_ids_equal(featurizer, tokenizer, texts)
  assert len(words) > 500 and any("\u03c2" in w for w in words)


def test_features_match_python_for_singles_and_pairs(vocab_file,
                                                     do_lower_case):
  tokenizer = tokenization.FullTokenizer(vocab_file, do_lower_case)
  featurizer = text_graph.TextFeaturizer(vocab_file, do_lower_case, 12)
  singles = [(t, None) for t in TRICKY]
  assert_features_equal(graph_features(featurizer, singles, with_b=False),
                        python_features(tokenizer, singles, 12))
  assert_features_equal(graph_features(featurizer, PAIRS),
                        python_features(tokenizer, PAIRS, 12))


def test_long_pairs_are_truncated_from_the_longer_side(vocab_file):
  tokenizer = tokenization.FullTokenizer(vocab_file, True)
  pairs = [("a " * la, "3 " * lb) for la in (0, 1, 3, 4, 7, 20)
           for lb in (1, 2, 4, 5, 9, 20)]
  for max_seq_length in (3, 4, 10, 11):
    featurizer = text_graph.TextFeaturizer(vocab_file, True, max_seq_length)
    got = graph_features(featurizer, pairs)
    assert_features_equal(got, python_features(tokenizer, pairs,
                                               max_seq_length))
  # 20 + 20 tokens into 11 - 3 = 8: four each, b's [SEP] last.
  ids = got["input_ids"][-1].tolist()
  vocab = tokenizer.vocab
  assert ids.count(vocab["a"]) == ids.count(vocab["3"]) == 4
  assert ids[-1] == vocab["[SEP]"] and ids.count(vocab["[SEP]"]) == 2
  assert got["segment_ids"][-1].tolist() == [0] * 6 + [1] * 5


def test_robust_inputs_give_answers(vocab_file):
  tokenizer = tokenization.FullTokenizer(vocab_file, True)
  featurizer = text_graph.TextFeaturizer(vocab_file, True, 16)
  texts = [b"", b"a" * 10_000, "好吃".encode() * 5_000,
           ("hello world, " * 800).encode(), "😀👍🏻❤️".encode() * 50,
           b"caf\xc3\xa9 \xff\xfe hel\x80lo \xe4\xb8 \xed\xa0\x80 \xc0\xaf"
           b"\xf4\x90\x80\x80 \xe6\x88\x91", b"\xff" * 100]
  got = graph_features(featurizer, [(t, None) for t in texts], with_b=False)
  want = python_features(tokenizer, [(t, None) for t in texts], 16)
  assert_features_equal(got, want)
  cls, sep, unk = (tokenizer.vocab[t] for t in ("[CLS]", "[SEP]", "[UNK]"))
  assert got["input_ids"][0].tolist()[:3] == [cls, sep, 0]
  assert got["input_ids"][1].tolist()[:3] == [cls, unk, sep]
  # Invalid bytes are dropped: "hel\x80lo" reads as "hello", as in Python.
  assert tokenizer.vocab["hello"] in got["input_ids"][5].tolist()
  assert got["input_ids"][6].tolist()[:3] == [cls, sep, 0]


def test_vocab_lines_follow_googles_load_vocab(tmp_path):
  # Trailing spaces are stripped and a duplicated token takes its last id.
  vocab_file = write_vocab(tmp_path, ["[PAD]", "[UNK]", "[CLS]", "[SEP]",
                                      "hello ", "world", "x", "world"])
  tokenizer = tokenization.FullTokenizer(vocab_file, True)
  featurizer = text_graph.TextFeaturizer(vocab_file, True, 8)
  got = featurizer.tokenize_ids(tf.constant(["hello world"])).to_list()
  want = tokenizer.convert_tokens_to_ids(["hello", "world"])
  assert got == [[4, 7]] == [want]


def test_empty_batch_and_mismatched_pair_batch(vocab_file):
  featurizer = text_graph.TextFeaturizer(vocab_file, True, 8)
  empty = tf.constant([], tf.string)
  for features in (featurizer(empty), featurizer(empty, empty)):
    assert all(v.shape == (0, 8) for v in features.values())
  with pytest.raises(tf.errors.InvalidArgumentError, match="same batch size"):
    featurizer(tf.constant(["a", "b"]), tf.constant(["a"]))


def test_bad_files_and_lengths_are_user_errors(tmp_path, vocab_file):
  with pytest.raises(UserError, match="no \\[UNK\\]"):
    text_graph.TextFeaturizer(write_vocab(tmp_path, ["[CLS]", "[SEP]", "a"]),
                              True, 8)
  with pytest.raises(UserError, match="not found"):
    text_graph.TextFeaturizer(str(tmp_path / "missing.txt"), True, 8)
  with pytest.raises(UserError, match="max_seq_length"):
    text_graph.TextFeaturizer(vocab_file, True, 2)


# --- SentencePiece ------------------------------------------------------------

SPM_CORPUS = [
    "In 1990, the cat sat on the mat.", "The dog, 12,345 of them, ran in 1999,",
    "Héllo wörld café naïve ÀÉÎ", "我喜欢吃好吃的，很好吃。",
    "Numbers like 3,14 and 42, 7, 9, 1990, 1999, then ...",
]


@pytest.fixture(scope="module")
def spm_model_file(tmp_path_factory):
  sentencepiece = pytest.importorskip("sentencepiece")
  directory = tmp_path_factory.mktemp("spm")
  corpus = directory / "corpus.txt"
  corpus.write_text("\n".join(SPM_CORPUS * 20), encoding="utf-8")
  # "9," as a piece exercises ALBERT's digit-comma re-split, both branches.
  sentencepiece.SentencePieceTrainer.train(
      input=str(corpus), model_prefix=str(directory / "m"), vocab_size=90,
      user_defined_symbols=["[CLS]", "[SEP]", "9,"], hard_vocab_limit=False,
      num_threads=1, minloglevel=2)
  return str(directory / "m.model")


def test_sentencepiece_matches_python(spm_model_file, do_lower_case):
  tokenizer = tokenization.SentencePieceTokenizer(spm_model_file,
                                                  do_lower_case)
  featurizer = text_graph.TextFeaturizer(None, do_lower_case, 20,
                                         spm_model_file=spm_model_file)
  texts = TRICKY + ["In 1990, the cat", "12,345 of them, 1999,",
                    "9, 99, ,9, 1990,1999,", "HÉLLO  World\u00a0x\u2028y"]
  texts = [t.encode() for t in texts] + [
      b"caf\xc3\xa9 \xff\xfe hel\x80lo 1990\xff, \xe4\xb8", b"\xff" * 100,
      b"x" * 10_000, "好吃".encode() * 5_000]
  assert_ids_equal(featurizer, tokenizer, texts)
  # The comma rule did fire: a raw piece "…9," became "…9" ",".
  raw = tokenizer.sp_model.EncodeAsPieces("9, 1990,")
  assert "9," in raw and tokenizer.tokenize("9, 1990,").count(",") == 2
  pairs = [(t, SPM_CORPUS[i % 5]) for i, t in enumerate(TRICKY)] + PAIRS
  assert_features_equal(graph_features(featurizer, pairs),
                        python_features(tokenizer, pairs, 20))


# --- Export and TF Serving op check -------------------------------------------


class _Export(tf.Module):

  def __init__(self, featurizer):
    super().__init__()
    self.featurizer = featurizer

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
  def predict_text(self, text_a):
    return self.featurizer(text_a)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="a"),
                                tf.TensorSpec([None], tf.string, name="b")])
  def predict_pair(self, text_a, text_b):
    return self.featurizer(text_a, text_b)


def _export(module, directory):
  tf.saved_model.save(module, directory, signatures={
      "predict_text": module.predict_text,
      "predict_pair": module.predict_pair})
  return directory


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  """A WordPiece export whose vocab file is gone, and its expected features."""
  directory = tmp_path_factory.mktemp("export")
  vocab_file = write_vocab(directory, VOCAB)
  tokenizer = tokenization.FullTokenizer(vocab_file, True)
  want_single = python_features(tokenizer, [(t, None) for t in TRICKY], 24)
  want_pair = python_features(tokenizer, PAIRS, 24)
  featurizer = text_graph.TextFeaturizer(vocab_file, True, 24)
  path = _export(_Export(featurizer), str(directory / "model"))
  os.remove(vocab_file)
  return path, want_single, want_pair


def test_export_runs_without_the_vocab_file(exported):
  path, want_single, want_pair = exported
  loaded = tf.saved_model.load(path)
  got = loaded.signatures["predict_text"](text=tf.constant(TRICKY))
  assert_features_equal({k: v.numpy() for k, v in got.items()}, want_single)
  got = loaded.signatures["predict_pair"](
      a=tf.constant([a for a, _ in PAIRS]),
      b=tf.constant([b for _, b in PAIRS]))
  assert_features_equal({k: v.numpy() for k, v in got.items()}, want_pair)


@pytest.mark.slow
def test_export_loads_in_a_fresh_process_without_this_package(exported,
                                                              tmp_path):
  # Core TensorFlow alone: no bert code, no vocab, no tensorflow_text.
  path, want_single, _ = exported
  script = ("import sys, tensorflow as tf\n"
            "m = tf.saved_model.load(sys.argv[1]).signatures['predict_text']\n"
            "out = m(text=tf.constant(sys.argv[2:]))\n"
            "assert 'tensorflow_text' not in sys.modules\n"
            "print(out['input_ids'].numpy().tolist())\n")
  result = subprocess.run(
      [sys.executable, "-c", script, path] + TRICKY[:3], cwd=str(tmp_path),
      capture_output=True, text=True, timeout=300,
      env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ""})
  assert result.returncode == 0, result.stderr[-2000:]
  got = ast.literal_eval(result.stdout.strip().splitlines()[-1])
  assert got == want_single["input_ids"][:3].tolist()


def test_wordpiece_export_uses_only_core_ops(exported):
  path = exported[0]
  ops = text_graph.graph_ops(path)
  # The tokenizer ops live in the function library (the WordPiece loop's
  # body too); the walk must reach them.
  assert {"UnicodeTranscode", "UnicodeDecode", "LookupTableFindV2", "Substr",
          "StaticRegexReplace"} <= ops
  assert ops - text_graph.core_ops() == set()
  assert text_graph.disallowed_ops(path) == set()


@pytest.mark.slow
def test_saved_model_cli_runs_a_classifier_export(tmp_path):
  # The command users run, in a process that never imports tensorflow_text.
  vocab_file = write_vocab(tmp_path, helpers.TINY_VOCAB)
  tf.random.set_seed(3)
  config = modeling.BertConfig.from_dict(helpers.TINY_CONFIG)
  model = modeling.BertClassifier(config, 2)
  path = export.export_classifier(
      model, str(tmp_path / "export"),
      vocab_file=vocab_file, bert_config=config, label_list=["0", "1"],
      max_seq_length=16, do_lower_case=True,
      text_featurizer=text_graph.TextFeaturizer(vocab_file, True, 16))
  texts = ["好吃", "太难吃了"]
  want = tf.saved_model.load(path).signatures["predict_text"](
      text=tf.constant(texts))
  cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
  result = subprocess.run(
      [cli, "run", "--dir", path, "--tag_set", "serve", "--signature_def",
       "predict_text", "--input_exprs", 'text=["好吃", "太难吃了"]'],
      cwd=str(tmp_path), capture_output=True, text=True, timeout=300,
      env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ""})
  assert result.returncode == 0, result.stderr[-2000:]

  def printed(key):
    block = result.stdout.split(f"Result for output key {key}:")[1]
    block = block.split("Result for")[0]
    numbers = re.findall(r"-?\d+\.\d*(?:e[-+]?\d+)?", block)
    return np.reshape([float(x) for x in numbers], (2, 2))

  np.testing.assert_allclose(printed("probabilities"),
                             want["probabilities"].numpy(), atol=1e-6)
  logits = want["logits"].numpy()
  np.testing.assert_allclose(printed("logits"), logits, rtol=1e-5)
  # An untrained model: logits differ little, but far beyond the tolerance.
  assert np.abs(logits[0] - logits[1]).max() > 20 * 1e-5 * np.abs(
      logits).max()


def test_sentencepiece_export_is_servable(tmp_path, spm_model_file):
  featurizer = text_graph.TextFeaturizer(None, True, 16,
                                         spm_model_file=spm_model_file)
  want = graph_features(featurizer, [(t, None) for t in SPM_CORPUS], False)
  path = _export(_Export(featurizer), str(tmp_path / "model"))
  assert "SentencepieceTokenizeOp" in text_graph.graph_ops(path)
  assert text_graph.disallowed_ops(path) == set()
  got = tf.saved_model.load(path).signatures["predict_text"](
      text=tf.constant(SPM_CORPUS))
  assert_features_equal({k: v.numpy() for k, v in got.items()}, want)


def test_round_robin_trimmer_export_is_flagged(tmp_path):

  class Trimmed(tf.Module):

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def trim(self, texts):
      words = tf.strings.split(texts)
      return text.RoundRobinTrimmer(max_seq_length=4).trim([words, words])

  module = Trimmed()
  tf.saved_model.save(module, str(tmp_path), signatures={"trim": module.trim})
  bad = text_graph.disallowed_ops(str(tmp_path))
  assert "TFText>RoundRobinTrim" in bad
  assert bad <= {"TFText>RoundRobinTrim", "TFText>RoundRobinGenerateMasks"}


def test_core_ops_exclude_tf_text_ops():
  core = text_graph.core_ops()  # tensorflow_text is imported in this process
  assert {"StringLower", "StaticRegexReplace", "RaggedTensorToTensor"} <= core
  assert not core & text_graph.serving_allowed_ops()
  assert "TFText>RoundRobinTrim" not in core


def test_allowed_ops_are_the_shared_list():
  path = os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                      "tf_serving_text_ops.txt")
  if not os.path.exists(path):
    pytest.skip("shared/tf_serving_text_ops.txt is not beside the repo")
  with open(path, encoding="utf-8") as f:
    names = {line.strip() for line in f
             if line.strip() and not line.startswith("#")}
  assert text_graph.serving_allowed_ops() == names
  assert len(names) == 35


def test_missing_saved_model_is_a_user_error(tmp_path):
  with pytest.raises(UserError, match="saved_model.pb"):
    text_graph.graph_ops(str(tmp_path))
