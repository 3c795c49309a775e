"""Atomic file writes: an output appears whole or not at all; and the lock
that keeps two runs out of one output directory.

Every writer of user-visible files (feature caches, results, transfer sets,
datasets, extracted features) goes through `write_atomically`, so a crash or
a failed check never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import datetime
import getpass
import glob
import json
import os
import socket
import tempfile
from typing import Callable, Iterator

from absl import logging

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
  os.chmod(tmp, 0o666 & ~umask())
  try:
    write_fn(tmp)
    os.replace(tmp, path)
  except OSError as e:  # A full disk, a quota, a file that became read-only.
    if os.path.exists(tmp):
      os.remove(tmp)
    raise UserError(f"{path}: cannot write it ({e.strerror or e}); nothing "
                    "was changed") from None
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


def process_alive(pid: int) -> bool:
  """Whether process `pid` runs on this machine (signal 0 probes it)."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # Alive, another user's.
    return True
  return True


def umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


LOCK_FILE = ".run.lock"


@contextlib.contextmanager
def run_lock(directory: str) -> Iterator[str]:
  """Holds `<directory>/.run.lock` (owner, host, pid, start time) while the
  block runs, so a second run on the same directory stops with one line.

  A lock left by a process that no longer runs on this host (killed) is
  taken over with a warning.  Yields the lock's path.
  """
  try:
    os.makedirs(directory, exist_ok=True)
  except OSError as e:
    raise UserError(f"{directory}: cannot create the directory "
                    f"({e.strerror})") from None
  path = os.path.join(directory, LOCK_FILE)
  me = {"pid": os.getpid(), "host": socket.gethostname(),
        "user": _user(), "started": datetime.datetime.now().isoformat(
            timespec="seconds")}
  while True:
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      _take_over_or_stop(directory, path, me["host"])
      continue
    except OSError as e:
      raise UserError(f"{directory}: cannot write there ({e.strerror})"
                      ) from None
    with os.fdopen(fd, "w") as f:
      json.dump(me, f)
    break
  try:
    yield path
  finally:
    try:
      os.remove(path)
    except OSError:
      pass


def _user() -> str:
  try:
    return getpass.getuser()
  except (KeyError, OSError):
    return str(os.getuid())


def _take_over_or_stop(directory: str, path: str, host: str) -> None:
  try:
    with open(path, encoding="utf-8") as f:
      owner = json.load(f)
    pid = int(owner["pid"])
  except (OSError, ValueError, KeyError, TypeError):
    owner, pid = {}, None  # Empty or half-written: its writer died at once.
  if pid is None or (owner.get("host") == host and not process_alive(pid)):
    logging.warning("Taking over the stale lock %s of a run that no longer "
                    "runs (pid %s, started %s)", path, pid,
                    owner.get("started"))
    try:
      os.remove(path)
    except FileNotFoundError:
      pass
    return
  raise UserError(
      f"{directory} is in use by another run (pid {pid} on "
      f"{owner.get('host')}, user {owner.get('user')}, since "
      f"{owner.get('started')}); wait for it, or use another directory "
      f"(remove {path} if that run is gone)")


def expand_patterns(spec: str, flag: str) -> list[str]:
  """Comma-separated files and globs -> the files (sorted per pattern);
  a pattern that matches nothing is one line naming `flag`."""
  found = []
  for pattern in [p.strip() for p in spec.split(",") if p.strip()]:
    matches = sorted(glob.glob(pattern))
    if not matches:
      raise UserError(f"{flag}: {pattern}: no such file")
    found += matches
  return found



def write_outputs(output_dir: str, contents: dict[str, bytes],
                  overwrite: bool) -> list[str]:
  """Writes each file whose content changed, via a temp name and a rename.

  Returns the names written (none when everything is up to date).  Nothing is
  written if some existing file differs and `overwrite` is False.
  """
  if os.path.exists(output_dir) and not os.path.isdir(output_dir):
    raise UserError(f"--output_dir {output_dir} exists and is not a directory")
  changed = []
  for name, data in contents.items():
    path = os.path.join(output_dir, name)
    if not os.path.exists(path):
      changed.append(name)
      continue
    with open(path, "rb") as f:
      if f.read() == data:
        continue
    if not overwrite:
      raise UserError(f"{path} exists with different content; pass "
                      f"--overwrite to replace it")
    changed.append(name)
  os.makedirs(output_dir, exist_ok=True)
  for name in changed:
    def write(tmp: str, data: bytes = contents[name]) -> None:
      with open(tmp, "wb") as f:
        f.write(data)
    write_atomically(os.path.join(output_dir, name), write)
  return changed

