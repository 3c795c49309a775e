"""Tests for bert/files.py's dataset writer (atomic writes and the run lock
are exercised in tests/test_faults.py)."""

from __future__ import annotations

import os

import pytest

from bert import files
from bert.errors import UserError


def test_write_outputs_is_atomic_and_guarded(tmp_path):
  contents = {"a.txt": b"one\n", "b.txt": b"two\n"}
  assert files.write_outputs(str(tmp_path / "d"), contents,
                             False) == ["a.txt", "b.txt"]
  assert files.write_outputs(str(tmp_path / "d"), contents, False) == []
  changed = {"a.txt": b"one\n", "b.txt": b"TWO\n"}
  with pytest.raises(UserError, match="b.txt"):
    files.write_outputs(str(tmp_path / "d"), changed, False)
  assert (tmp_path / "d" / "b.txt").read_bytes() == b"two\n"
  assert files.write_outputs(str(tmp_path / "d"), changed,
                             True) == ["b.txt"]
  assert (tmp_path / "d" / "b.txt").read_bytes() == b"TWO\n"
  # No temp files are left behind.
  assert sorted(os.listdir(tmp_path / "d")) == ["a.txt", "b.txt"]
  (tmp_path / "f").write_text("x")
  with pytest.raises(UserError, match="not a directory"):
    files.write_outputs(str(tmp_path / "f"), contents, False)
