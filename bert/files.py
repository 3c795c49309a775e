"""Atomic file writes: an output appears whole or not at all.

Every writer of user-visible files (feature caches, results, transfer sets,
datasets, extracted features) goes through `write_atomically`, so a crash or
a failed check never leaves a half-written file under the final name.
"""

from __future__ import annotations

import os
import tempfile
from typing import Callable

from bert.errors import UserError


def write_atomically(path: str, write_fn: Callable[[str], None]) -> None:
  """Calls `write_fn(tmp_path)` on a temp file beside `path`, then renames it
  to `path`; the temp file is removed if `write_fn` raises."""
  directory = os.path.dirname(os.path.abspath(path))
  try:
    fd, tmp = tempfile.mkstemp(dir=directory,
                               prefix=f".{os.path.basename(path)}.",
                               suffix=".tmp")
  except OSError as e:
    raise UserError(f"{path}: cannot write in {directory} ({e.strerror})"
                    ) from None
  os.close(fd)
  # mkstemp makes the file private (0600); give it the mode open() would.
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(tmp, 0o666 & ~umask)
  try:
    write_fn(tmp)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_text_atomically(path: str, text: str) -> None:
  """`write_atomically` for a UTF-8 text."""
  def write(tmp: str) -> None:
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(text)
  write_atomically(path, write)
