"""User-facing errors: one line that names the file, the line or the flag.

Library code raises `UserError` for bad input (missing file, malformed line,
inconsistent flags).  The `run_*.py` scripts wrap `main` with `exit_on_error`
so such errors print as a single line instead of a traceback wall.
"""

from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

T = TypeVar("T")


class UserError(ValueError):
  """Bad input that the user can fix; the message says where and what."""


def exit_on_error(main: Callable[..., T]) -> Callable[..., T]:
  """Wraps an absl `main` so a `UserError` exits with `error: <message>`."""

  @functools.wraps(main)
  def wrapped(*args, **kwargs):
    try:
      return main(*args, **kwargs)
    except UserError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)

  return wrapped
