"""User-facing errors: one line that names the file, the line or the flag.

Library code raises `UserError` for bad input (missing file, malformed line,
inconsistent flags).  The `run_*.py` scripts wrap `main` with `exit_on_error`
so such errors print as a single line instead of a traceback wall.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import sys
import tempfile
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")


class UserError(ValueError):
  """Bad input that the user can fix; the message says where and what."""


def exit_on_error(main: Callable[..., T]) -> Callable[..., T]:
  """Wraps an absl `main` so a `UserError` exits with `error: <message>`.

  Called as `app.run(exit_on_error(main))`, it runs before `app.run`, which
  has TensorFlow list its devices: that listing is done here, quietly.
  """
  _find_devices_quietly()

  @functools.wraps(main)
  def wrapped(*args, **kwargs):
    try:
      return main(*args, **kwargs)
    except UserError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)

  return wrapped


# What TensorFlow's C++ writes on every machine without an NVIDIA driver, the
# first time devices are listed, before its log-level settings apply.
_NO_GPU_LINES = ("failed call to cuInit", "Could not find cuda drivers")


def _find_devices_quietly() -> None:
  """Lists TensorFlow's devices (it would on first use anyway) with the
  no-GPU lines above dropped; every other line still reaches stderr.  Only
  on machines without /dev/nvidia*: where there is a GPU, a failing cuInit is
  news."""
  tf = sys.modules.get("tensorflow")
  if tf is None or glob.glob("/dev/nvidia[0-9]*"):
    return
  with _stderr_without(_NO_GPU_LINES):
    tf.config.list_physical_devices()


@contextlib.contextmanager
def _stderr_without(markers: tuple[str, ...]) -> Iterator[None]:
  """Captures file descriptor 2 (C++ writes there, not to sys.stderr) and
  replays it without the lines holding any of `markers`."""
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      yield
    finally:
      os.dup2(saved, 2)
      os.close(saved)
      captured.seek(0)
      for line in captured.read().decode("utf-8", "replace").splitlines(
          keepends=True):
        if not any(m in line for m in markers):
          sys.stderr.write(line)
      sys.stderr.flush()
