import collections
import json
import logging
import os
import re

import jieba.posseg
import numpy as np
import pytest
from absl import flags

from bert import augment, checkpoints, modeling, processors, tokenization
from bert.errors import UserError
from tests import helpers

ENGLISH = " ".join(f"w{i}" for i in range(50))  # 50 distinct words.
CHINESE = [
    "这家店的菜味道很好，送餐也很快。",
    "米饭太硬了，汤也凉了，服务员态度很差。",
    "我们点了三个菜，价格便宜，分量很足。",
    "外卖小哥送得很准时，下次还会再点。",
    "鸡肉很嫩，牛肉有点咸，蔬菜新鲜。",
    "包装很好，饭菜还是热的，老板很贴心。",
]


def options(**overrides):
  return augment.AugmentOptions(**{"seed": 0, **overrides})


def variants(texts, n, opts, mlm_candidates=None, augmenter=None):
  """n augmented token lists per text, with the segmentation of each."""
  segs = [augment.segment(t) for t in texts]
  augmenter = augmenter or augment.Augmenter(
      opts, augment.PosVocab.from_segments(segs),
      with_mlm=mlm_candidates is not None)
  rng = np.random.default_rng(opts.seed)
  out = []
  for _ in range(n):
    for k, seg in enumerate(segs):
      cands = mlm_candidates[k] if mlm_candidates else None
      out.append((seg, augmenter.augment_tokens(seg, rng, cands)))
  return out, augmenter


def test_mask_rate_and_pos_rule_skipped_with_one_warning_on_english(caplog):
  opts = options(p_mask=0.1, p_pos=0.1, p_ng=0.0)
  with caplog.at_level(logging.WARNING):
    out, augmenter = variants([ENGLISH], 400, opts)  # 20,000 words.
  words = sum(len(seg.words) for seg, _ in out)
  masked = sum(t == "[MASK]" for _, tokens in out for t in tokens)
  assert words == 20000
  assert abs(masked / words - 0.1) < 0.01
  # No tagger: the POS rule fired about as often but changed nothing.
  assert abs(augmenter.counts["pos_no_tagger"] / words - 0.1) < 0.01
  assert augmenter.counts["pos_replaced"] == 0
  for seg, tokens in out:
    assert all(t in ("[MASK]", o) for t, o in zip(tokens, seg.tokens))
  warnings = [r for r in caplog.records if "part-of-speech" in r.getMessage()]
  assert len(warnings) == 1


def test_pos_replacement_keeps_the_jieba_tag_at_its_rate():
  # Tags and the words of each tag, from jieba directly.
  tagged = [jieba.posseg.lcut(t) for t in CHINESE]
  words_of = collections.defaultdict(set)
  for pairs in tagged:
    for p in pairs:
      words_of[p.flag].add(p.word)
  opts = options(p_mask=0.0, p_pos=0.3, p_ng=0.0)
  out, _ = variants(CHINESE, 400, opts)
  changed = eligible = 0
  for (seg, tokens) in out:
    pairs = tagged[CHINESE.index(seg.join(seg.tokens))]
    assert len(tokens) == len(pairs)
    for p, new in zip(pairs, tokens):
      if len(words_of[p.flag]) > 1:
        eligible += 1
      if new != p.word:
        changed += 1
        assert new in words_of[p.flag], (p.word, p.flag, new)
  assert eligible > 20000
  assert abs(changed / eligible - 0.3) < 0.01


def test_pos_sampling_follows_frequency_and_never_returns_the_word():
  vocab = augment.PosVocab(collections.Counter(
      {("猫", "n"): 1, ("狗", "n"): 3, ("鱼", "n"): 6, ("的", "uj"): 9}))
  rng = np.random.default_rng(0)
  drawn = collections.Counter(vocab.sample_other("猫", "n", rng)
                              for _ in range(9000))
  assert set(drawn) == {"狗", "鱼"}
  assert abs(drawn["狗"] / 9000 - 1 / 3) < 0.02
  drawn = collections.Counter(vocab.sample_other("鱼", "n", rng)
                              for _ in range(8000))
  assert abs(drawn["猫"] / 8000 - 1 / 4) < 0.02
  assert vocab.sample_other("的", "uj", rng) is None  # The tag's only word.
  assert vocab.sample_other("x", "v", rng) is None


def test_ngrams_are_contiguous_with_n_from_1_to_5():
  text = " ".join(f"w{i}" for i in range(12))
  out, augmenter = variants([text], 8000, options(p_mask=0.0, p_pos=0.0,
                                                  p_ng=0.25))
  original = text.split()
  lengths = collections.Counter()
  for _, tokens in out:
    if len(tokens) < len(original):
      start = original.index(tokens[0])
      assert tokens == original[start:start + len(tokens)]
      lengths[len(tokens)] += 1
    else:
      assert tokens == original
  assert sorted(lengths) == [1, 2, 3, 4, 5]
  assert abs(sum(lengths.values()) / 8000 - 0.25) < 0.02
  for n in range(1, 6):
    assert abs(lengths[n] / sum(lengths.values()) - 0.2) < 0.04
  assert augmenter.counts["ngrams"] == sum(lengths.values())
  # Chinese: an n-gram of jieba words is a substring of the text.
  out, _ = variants(CHINESE, 50, options(p_mask=0.0, p_pos=0.0, p_ng=1.0))
  for seg, tokens in out:
    text = seg.join(seg.tokens)
    assert "".join(tokens) in text
    assert 1 <= len([t for t in tokens if t.strip()]) <= 5


def emotion_dir(tmp_path, n_train=40):
  return helpers.write_emotion_data(str(tmp_path / "data"), n_train=n_train)


def test_same_seed_same_file_other_seed_other_file(tmp_path):
  data = emotion_dir(tmp_path)
  processor = processors.get_processor("emotion")
  paths = []
  for name, seed in (("a", 1), ("b", 1), ("c", 2)):
    paths.append(str(tmp_path / f"{name}.csv"))
    augment.augment_file(processor, data, paths[-1], options(seed=seed,
                                                             n_iter=5))
  content = [open(p, "rb").read() for p in paths]
  assert content[0] == content[1]
  assert content[0] != content[2]


def test_output_has_no_duplicates_no_originals_and_reads_back_unlabelled(
    tmp_path):
  data = emotion_dir(tmp_path)
  processor = processors.get_processor("emotion")
  out = str(tmp_path / "transfer.csv")
  summary = augment.augment_file(processor, data, out, options(n_iter=30))
  lines = open(out, encoding="utf-8").read().splitlines()
  originals = {e.text_a for e in processor.get_train_examples(data)}
  assert len(lines) == len(set(lines)) == summary.examples_out > 100
  assert not originals & set(lines)
  assert summary.counts["duplicates"] > 0  # Tiny texts repeat often.
  back = processor.read_unlabeled(out)
  assert [e.text_a for e in back] == lines
  assert all(e.label is None for e in back)
  assert not any(line.endswith(("&0", "&1")) for line in lines)


def test_texts_ending_like_a_label_are_not_written(tmp_path):
  # Every training text ends in '&1': written as is, the reader would take
  # the transfer file as labelled and cut '&1' off every line.
  data = tmp_path / "data"
  data.mkdir()
  (data / "train.csv").write_text(
      "".join(f"good food {w} w{i}&1&{i % 2}\n"
              for i, w in enumerate(["cat", "dog", "mat", "sat"] * 5)))
  processor = processors.get_processor("emotion")
  out = str(tmp_path / "transfer.csv")
  summary = augment.augment_file(processor, str(data), out,
                                 options(n_iter=10, p_ng=0.0))
  assert summary.counts["unwritable"] > 0
  lines = open(out, encoding="utf-8").read().splitlines()
  assert lines and all(line.endswith("[MASK]") for line in lines)
  assert [e.text_a for e in processor.read_unlabeled(out)] == lines


def write_pair_task(directory, fmt):
  """A small sentence-pair train file; returns get_processor options."""
  rows = [(str(i % 2), f"the cat sat on mat {i}", f"a dog was good {i}")
          for i in range(20)]
  os.makedirs(directory)
  if fmt == "mrpc":
    with open(os.path.join(directory, "train.tsv"), "w") as f:
      f.write("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n")
      f.writelines(f"{y}\t1\t2\t{a}\t{b}\n" for y, a, b in rows)
    return {}
  if fmt == "csv":
    with open(os.path.join(directory, "train.csv"), "w") as f:
      f.write("label,first,second\n")
      f.writelines(f'{y},"{a}, really","{b}"\n' for y, a, b in rows)
    return {"text_column": "first", "text_b_column": "second"}
  if fmt == "tsv":
    with open(os.path.join(directory, "train.tsv"), "w") as f:
      f.writelines(f"{y}\t{a}\t{b}\n" for y, a, b in rows)
    return {"text_column": "1", "text_b_column": "2", "label_column": "0",
            "has_header": False}
  with open(os.path.join(directory, "train.jsonl"), "w") as f:
    f.writelines(json.dumps({"s1": a, "s2": b, "label": y}) + "\n"
                 for y, a, b in rows)
  return {"text_column": "s1", "text_b_column": "s2"}


@pytest.mark.parametrize("fmt", ["mrpc", "csv", "tsv", "jsonl"])
def test_pairs_in_every_format_read_back_with_both_sides(tmp_path, fmt):
  data = str(tmp_path / "data")
  task_options = write_pair_task(data, fmt)
  processor = processors.get_processor(fmt, **task_options)
  out = str(tmp_path / f"transfer.{fmt}")
  summary = augment.augment_file(processor, data, out, options(n_iter=5))
  originals = processor.get_train_examples(data)
  back = processors.get_processor(fmt, **task_options).read_unlabeled(out)
  assert len(back) == summary.examples_out > 50
  assert all(e.label is None and e.text_b is not None for e in back)
  original_a = {e.text_a for e in originals}
  original_b = {e.text_b for e in originals}
  pairs = {(e.text_a, e.text_b) for e in originals}
  assert not pairs & {(e.text_a, e.text_b) for e in back}
  # The two sides are augmented independently.
  assert any(e.text_a in original_a and e.text_b not in original_b
             for e in back)
  assert any(e.text_a not in original_a and e.text_b in original_b
             for e in back)
  if fmt == "csv":
    assert any(", really" in e.text_a for e in back)  # Quoted commas.


def test_refuses_to_overwrite_and_the_training_file(tmp_path):
  data = emotion_dir(tmp_path)
  processor = processors.get_processor("emotion")
  out = tmp_path / "transfer.csv"
  out.write_text("keep me\n")
  with pytest.raises(UserError, match=r"transfer.csv: already exists; pass "
                     "--overwrite"):
    augment.augment_file(processor, data, str(out), options(n_iter=2))
  assert out.read_text() == "keep me\n"
  train = os.path.join(data, "train.csv")
  before = open(train).read()
  with pytest.raises(UserError, match="training file itself"):
    augment.augment_file(processor, data, train, options(n_iter=2),
                         overwrite=True)
  assert open(train).read() == before
  augment.augment_file(processor, data, str(out), options(n_iter=2),
                       overwrite=True)
  assert out.read_text() != "keep me\n"
  assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []


def test_command_line_flags_and_summary(tmp_path, capsys):
  data = emotion_dir(tmp_path)
  out = str(tmp_path / "transfer.csv")
  fv = flags.FlagValues()
  augment.define_flags(fv)
  argv = ["augment", "--task_name=emotion", f"--data_dir={data}",
          f"--output_file={out}", "--n_iter=4", "--p_mask=0.2"]
  fv(argv)
  summary = augment.run(fv)
  printed = capsys.readouterr().out
  assert re.search(rf"transfer examples out: +{summary.examples_out} ",
                   printed)
  assert re.search(r"examples in: +40\n", printed)
  assert summary.examples_out == len(open(out).read().splitlines())
  with pytest.raises(UserError, match="already exists"):
    augment.run(fv)
  fv(argv + ["--overwrite", "--p_pos=0.95"])
  with pytest.raises(UserError, match="p_mask \\+ --p_pos = 1.15"):
    augment.run(fv)


# ----------------------------------------------------------------------------
# TinyBERT's masked-LM rule.


def numpy_mlm_logits(w, config, input_ids):
  """[1, S] ids -> [S, V] logits: numpy BERT plus Google's cls/predictions."""
  ids = np.asarray(input_ids)
  _, layers, _, _ = helpers.numpy_bert(w, config, ids, np.ones_like(ids),
                                       np.zeros_like(ids))
  p = "cls/predictions/"
  x = helpers._gelu_tanh(layers[-1][0] @ w[p + "transform/dense/kernel"] +
                         w[p + "transform/dense/bias"])
  x = helpers._layer_norm(x, w[p + "transform/LayerNorm/gamma"],
                          w[p + "transform/LayerNorm/beta"])
  return x @ w["bert/embeddings/word_embeddings"].T + w[p + "output_bias"]


@pytest.fixture(name="mlm_files")
def fixture_mlm_files(tmp_path):
  config = {**helpers.TINY_CONFIG, "vocab_size": len(helpers.TINY_VOCAB)}
  weights = helpers.google_weights(config, with_heads=True, seed=3)
  directory = str(tmp_path)
  return {"config": config, "weights": weights,
          "bert_config_file": helpers.write_config(
              directory, vocab_size=len(helpers.TINY_VOCAB)),
          "vocab_file": helpers.write_vocab(directory),
          "checkpoint": helpers.write_google_checkpoint(
              os.path.join(directory, "bert_model.ckpt"), weights)}


def test_masked_lm_head_matches_numpy_and_google_names(mlm_files):
  config = modeling.BertConfig.from_dict(mlm_files["config"])
  bert = modeling.BertModel(config)
  head = modeling.MaskedLMHead(config, bert.word_embeddings)
  assert sorted(modeling.variables_by_name(head)) == [
      "bert/embeddings/word_embeddings", "cls/predictions/output_bias",
      "cls/predictions/transform/LayerNorm/beta",
      "cls/predictions/transform/LayerNorm/gamma",
      "cls/predictions/transform/dense/bias",
      "cls/predictions/transform/dense/kernel"]
  variables = {**modeling.variables_by_name(bert),
               **modeling.variables_by_name(head)}
  report = checkpoints.load_by_name(variables, mlm_files["checkpoint"],
                                    strict=True)
  assert "cls/predictions/output_bias" in report.loaded
  ids = np.array([[2, 5, 6, 4, 8, 9, 3]], np.int32)
  logits = head(bert(ids).sequence_output).numpy()
  assert logits.shape == (1, 7, len(helpers.TINY_VOCAB))
  expected = numpy_mlm_logits(mlm_files["weights"], mlm_files["config"], ids)
  np.testing.assert_allclose(logits[0], expected, atol=1e-4, rtol=1e-4)


def test_mlm_replacements_come_from_the_top_k_at_the_masked_word(mlm_files):
  k = 5
  mlm = augment.MaskedLM(mlm_files["bert_config_file"],
                         mlm_files["checkpoint"], mlm_files["vocab_file"],
                         top_k=k, batch_size=3)
  texts = ["the cat sat on the mat", "good food hello world",
           "unaffable dog sat", "好 吃 不 贵"]
  segs = [augment.segment(t) for t in texts]
  found = mlm.word_candidates(segs)
  # Batching and padding do not change the predictions.
  assert augment.MaskedLM(mlm_files["bert_config_file"],
                          mlm_files["checkpoint"], mlm_files["vocab_file"],
                          top_k=k, batch_size=64).word_candidates(segs) == found
  tokenizer = tokenization.FullTokenizer(mlm_files["vocab_file"])
  out, augmenter = variants(texts, 20, options(p_mask=0.0, p_pos=0.0,
                                               p_ng=0.0, p_mlm=1.0),
                            mlm_candidates=found)
  replaced = 0
  for seg, tokens in out:
    pieces = [tokenizer.tokenize(t) for t in seg.tokens]
    flat = [p for ps in pieces for p in ps]
    offset = 0
    for i, (old, new) in enumerate(zip(seg.tokens, tokens)):
      if len(pieces[i]) != 1:
        assert new == old  # Multi-piece words ("unaffable") are kept.
      elif new != old:
        replaced += 1
        masked = ["[CLS]"] + flat[:offset] + ["[MASK]"] + flat[offset + 1:]
        ids = tokenizer.convert_tokens_to_ids(masked + ["[SEP]"])
        logits = numpy_mlm_logits(mlm_files["weights"], mlm_files["config"],
                                  [ids])[offset + 1]
        top = tokenizer.convert_ids_to_tokens(np.argsort(-logits)[:k])
        assert new in top and not new.startswith(("##", "["))
      else:  # p_mlm = 1: kept only when no top-K token is usable.
        assert i not in found[[s.tokens for s in segs].index(seg.tokens)]
      offset += len(pieces[i])
  assert replaced > 100
  assert augmenter.counts["mlm_replaced"] == replaced


def test_mlm_end_to_end_and_a_checkpoint_without_the_head(mlm_files,
                                                          tmp_path):
  data = emotion_dir(tmp_path)
  fv = flags.FlagValues()
  augment.define_flags(fv)
  out = str(tmp_path / "transfer.csv")
  fv(["augment", "--task_name=emotion", f"--data_dir={data}",
      f"--output_file={out}", "--n_iter=3", "--p_mask=0", "--p_pos=0",
      f"--mlm_checkpoint={mlm_files['checkpoint']}", "--mlm_top_k=4",
      f"--bert_config_file={mlm_files['bert_config_file']}",
      f"--vocab_file={mlm_files['vocab_file']}", "--mlm_max_seq_length=6"])
  summary = augment.run(fv)
  assert summary.counts["mlm_replaced"] > 0
  assert len(processors.get_processor("emotion").read_unlabeled(out)) == (
      summary.examples_out)
  weights = helpers.google_weights(mlm_files["config"], with_heads=False)
  headless = helpers.write_google_checkpoint(
      str(tmp_path / "model.ckpt"), weights)
  with pytest.raises(UserError, match="model.ckpt: no masked-LM head"):
    augment.MaskedLM(mlm_files["bert_config_file"], headless,
                     mlm_files["vocab_file"])
