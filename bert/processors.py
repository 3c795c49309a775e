"""Task data readers: files on disk -> `InputExample`s (no TensorFlow).

Google's processors (`cola`, `mnli`, `mrpc`, `xnli`) read the same files,
columns and label lists as Google's `run_classifier.py`; `sst-2` reads GLUE's
SST-2, `emotion` the seed's `text&label` lines, and `csv`/`tsv`/`jsonl` are
configured by column options.  Every file is decoded as UTF-8 and every
problem is a one-line `UserError` naming `file:line`.

Test files of the GLUE tasks carry no labels: their examples get
`label=None` (Google put a dummy label there; `data.py` marks them with
`has_label=0` instead).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from typing import Iterator, Sequence

from absl import logging

from bert.errors import UserError


@dataclasses.dataclass(frozen=True)
class InputExample:
  """One classification example; `label` is None when the data has none."""
  guid: str
  text_a: str
  text_b: str | None = None
  label: str | None = None


def _read_lines(path: str) -> list[str]:
  """Returns the lines of `path` decoded as UTF-8, each with its '\\n'.

  Lines are split on '\\n' only (a stray '\\r' inside a text stays text), so
  list index + 1 is the line number that error messages report.
  """
  if not os.path.isfile(path):
    raise UserError(f"{path}: file not found")
  with open(path, "rb") as f:
    raw = f.read()
  pieces = raw.split(b"\n")
  chunks = [p + b"\n" for p in pieces[:-1]]
  if pieces[-1]:
    chunks.append(pieces[-1])
  lines = []
  for i, chunk in enumerate(chunks):
    try:
      # utf-8-sig drops the byte-order mark spreadsheet programs write.
      lines.append(chunk.decode("utf-8-sig" if i == 0 else "utf-8"))
    except UnicodeDecodeError as e:
      # The column counts the characters before the bad byte, as an editor
      # shows them.
      column = len(chunk[:e.start].decode("utf-8", errors="replace")) + 1
      raise UserError(
          f"{path}:{i + 1}: not valid UTF-8 (byte 0x{chunk[e.start]:02x} at "
          f"column {column}: {e.reason}); re-save the file as UTF-8, e.g. "
          f"iconv -f <its encoding> -t utf-8") from None
  if not any(line.strip() for line in lines):
    raise UserError(f"{path}: the file is empty")
  return lines


def _read_rows(path: str, delimiter: str,
               quotechar: str | None) -> list[tuple[int, list[str]]]:
  """Parses a delimited file into (line number, fields), empty lines skipped.

  The line number is where the row starts (a quoted CSV field may span lines).
  """
  lines = _read_lines(path)
  reader = csv.reader(lines, delimiter=delimiter, quotechar=quotechar)
  rows = []
  start = 1
  try:
    for row in reader:
      if row:
        rows.append((start, row))
      start = reader.line_num + 1
  except csv.Error as e:
    raise UserError(f"{path}:{start}: cannot parse the line ({e})") from None
  return rows


def _read_tsv(path: str) -> list[tuple[int, list[str]]]:
  """Tab-separated, no quoting: Google's `_read_tsv` reading."""
  return _read_rows(path, "\t", None)


def _split_header(path: str, rows: list[tuple[int, list[str]]],
                  has_header: bool):
  """Returns (header or None, data rows); raises if no data rows remain."""
  header = None
  if has_header and rows:
    header, rows = rows[0][1], rows[1:]
  if not rows:
    raise UserError(f"{path}: no data lines" +
                    (" after the header" if has_header else ""))
  return header, rows


def _column(path: str, line_no: int, row: Sequence[str], index: int,
            what: str) -> str:
  if not -len(row) <= index < len(row):
    need = index + 1 if index >= 0 else -index
    raise UserError(
        f"{path}:{line_no}: expected at least {need} tab-separated columns "
        f"({what} in column {index}), found {len(row)}")
  return row[index]


class DataProcessor:
  """Base class: reads a task's train/dev/test files into `InputExample`s."""

  def get_train_examples(self, data_dir: str) -> list[InputExample]:
    raise NotImplementedError()

  def get_dev_examples(self, data_dir: str) -> list[InputExample]:
    raise NotImplementedError()

  def get_test_examples(self, data_dir: str) -> list[InputExample]:
    raise NotImplementedError()

  def get_labels(self) -> list[str]:
    raise NotImplementedError()

  def read_unlabeled(self, path: str) -> list[InputExample]:
    """Reads a transfer-set file in the task's format; labels are dropped."""
    raise NotImplementedError()

  def split_file(self, data_dir: str, split: str) -> str:
    """The file that `get_<split>_examples(data_dir)` reads (train, dev,
    test)."""
    raise NotImplementedError()

  def format_unlabeled(self, examples: Sequence[InputExample]
                       ) -> tuple[str, int]:
    """The file content of `examples` in the task's format, without labels
    (what `read_unlabeled` reads back), and the number of examples left out
    because they are blank or the format cannot hold them."""
    kept = [e for e in examples if e.text_a.strip() and
            (e.text_b is None or e.text_b.strip())]
    content, dropped = self._format_unlabeled(kept)
    return content, len(examples) - len(kept) + dropped

  def _format_unlabeled(self, examples: Sequence[InputExample]
                        ) -> tuple[str, int]:
    raise NotImplementedError()

  def _check_label(self, path: str, line_no: int, label: str) -> str:
    labels = self.get_labels()
    if label not in labels:
      raise UserError(f"{path}:{line_no}: label {label!r} is not one of the "
                      f"allowed labels {', '.join(labels)}")
    return label


@dataclasses.dataclass(frozen=True)
class _TsvLayout:
  """Where things are in one of a GLUE task's TSV files (0-based columns)."""
  file: str
  has_header: bool
  text_a: int
  text_b: int | None = None
  label: int | None = None  # None: the file has no labels.
  language: int | None = None  # XNLI: keep only rows of `self.language`.


class _TsvProcessor(DataProcessor):
  """A task whose splits are TSV files described by `_TsvLayout`s."""

  labels: list[str]
  train: _TsvLayout
  dev: _TsvLayout
  test: _TsvLayout
  language: str | None = None

  def get_labels(self) -> list[str]:
    return list(self.labels)

  def get_train_examples(self, data_dir: str) -> list[InputExample]:
    return self._read(os.path.join(data_dir, self.train.file), self.train,
                      "train")

  def get_dev_examples(self, data_dir: str) -> list[InputExample]:
    return self._read(os.path.join(data_dir, self.dev.file), self.dev, "dev")

  def get_test_examples(self, data_dir: str) -> list[InputExample]:
    return self._read(os.path.join(data_dir, self.test.file), self.test,
                      "test")

  def read_unlabeled(self, path: str) -> list[InputExample]:
    layout = dataclasses.replace(self.train, label=None)
    return self._read(path, layout, "unlabeled")

  def split_file(self, data_dir: str, split: str) -> str:
    return os.path.join(data_dir, getattr(self, split).file)

  def _format_unlabeled(self, examples):
    layout = self.train
    specs = [("text_a", str(layout.text_a))]
    if layout.text_b is not None:
      specs.append(("text_b", str(layout.text_b)))
    return _columns_text(examples, specs, layout.has_header, "tsv")

  def _normalize_label(self, label: str) -> str:
    return label

  def _read(self, path: str, layout: _TsvLayout,
            split: str) -> list[InputExample]:
    _, rows = _split_header(path, _read_tsv(path), layout.has_header)
    examples = []
    for line_no, row in rows:
      if layout.language is not None:
        lang = _column(path, line_no, row, layout.language, "language")
        if lang != self.language:
          continue
      text_a = _column(path, line_no, row, layout.text_a, "text_a")
      text_b = None
      if layout.text_b is not None:
        text_b = _column(path, line_no, row, layout.text_b, "text_b")
      label = None
      if layout.label is not None:
        label = self._normalize_label(
            _column(path, line_no, row, layout.label, "label"))
        self._check_label(path, line_no, label)
      examples.append(InputExample(f"{split}-{line_no}", text_a, text_b, label))
    if not examples:  # Only possible when filtering by language.
      raise UserError(f"{path}: no lines with language {self.language!r}")
    return examples


class ColaProcessor(_TsvProcessor):
  """CoLA (GLUE): train/dev have no header; the test file has one."""
  labels = ["0", "1"]
  train = _TsvLayout("train.tsv", has_header=False, text_a=3, label=1)
  dev = _TsvLayout("dev.tsv", has_header=False, text_a=3, label=1)
  test = _TsvLayout("test.tsv", has_header=True, text_a=1)


class MnliProcessor(_TsvProcessor):
  """MultiNLI (GLUE), matched dev/test sets."""
  labels = ["contradiction", "entailment", "neutral"]
  train = _TsvLayout("train.tsv", True, text_a=8, text_b=9, label=-1)
  dev = _TsvLayout("dev_matched.tsv", True, text_a=8, text_b=9, label=-1)
  test = _TsvLayout("test_matched.tsv", True, text_a=8, text_b=9)


class MrpcProcessor(_TsvProcessor):
  """MRPC (GLUE)."""
  labels = ["0", "1"]
  train = _TsvLayout("train.tsv", True, text_a=3, text_b=4, label=0)
  dev = _TsvLayout("dev.tsv", True, text_a=3, text_b=4, label=0)
  test = _TsvLayout("test.tsv", True, text_a=3, text_b=4)


class Sst2Processor(_TsvProcessor):
  """SST-2 (GLUE): 'sentence\\tlabel'; the test file is 'index\\tsentence'."""
  labels = ["0", "1"]
  train = _TsvLayout("train.tsv", True, text_a=0, label=1)
  dev = _TsvLayout("dev.tsv", True, text_a=0, label=1)
  test = _TsvLayout("test.tsv", True, text_a=1)


class XnliProcessor(_TsvProcessor):
  """XNLI as Google reads it: MultiNLI machine-translated train, XNLI dev.

  Train is `multinli/multinli.train.<lang>.tsv` (premise, hypo, label);
  dev/test are `xnli.{dev,test}.tsv`, filtered to rows of `language`.
  Google has no test reader; `xnli.test.tsv` has the dev file's layout.
  """
  labels = ["contradiction", "entailment", "neutral"]
  dev = _TsvLayout("xnli.dev.tsv", True, text_a=6, text_b=7, label=1,
                   language=0)
  test = _TsvLayout("xnli.test.tsv", True, text_a=6, text_b=7, label=1,
                    language=0)

  def __init__(self, language: str = "zh"):
    self.language = language
    self.train = _TsvLayout(
        os.path.join("multinli", f"multinli.train.{language}.tsv"), True,
        text_a=0, text_b=1, label=2)

  def _normalize_label(self, label: str) -> str:
    # The translated MultiNLI files spell one label differently.
    return "contradiction" if label == "contradictory" else label


class EmotionProcessor(DataProcessor):
  """The seed's format: `train.csv`, `dev.csv`, `test.csv`, `text&label` lines.

  The label follows the LAST '&', so texts may contain '&'.  A test or
  transfer file is labelled when every non-empty line ends with
  '&<known label>'; otherwise each whole line is one unlabelled text.
  """

  def get_labels(self) -> list[str]:
    return ["0", "1"]

  def _check_label(self, path: str, line_no: int, label: str) -> str:
    if label not in self.get_labels():
      raise UserError(
          f"{path}:{line_no}: label {label!r}: the emotion task takes two "
          "labels only (0, 1); for other labels use the csv task "
          "(--task_name=csv, or TASK_NAME=csv in the scripts: "
          "train/dev/test.csv with a text,label header)")
    return label

  def get_train_examples(self, data_dir: str) -> list[InputExample]:
    return self._read_labelled(self.split_file(data_dir, "train"), "train")

  def get_dev_examples(self, data_dir: str) -> list[InputExample]:
    return self._read_labelled(self.split_file(data_dir, "dev"), "dev")

  def get_test_examples(self, data_dir: str) -> list[InputExample]:
    return self._read_maybe_labelled(self.split_file(data_dir, "test"),
                                     "test", keep_labels=True)

  def read_unlabeled(self, path: str) -> list[InputExample]:
    return self._read_maybe_labelled(path, "unlabeled", keep_labels=False)

  def split_file(self, data_dir: str, split: str) -> str:
    return os.path.join(data_dir, f"{split}.csv")

  def _format_unlabeled(self, examples):
    labels = self.get_labels()
    lines, dropped = [], 0
    for e in examples:
      _, sep, tail = e.text_a.rpartition("&")
      # A text ending in '&<label>' could make the reader take the whole file
      # as labelled and cut that suffix off every line.
      if ("\n" in e.text_a or e.text_a.endswith("\r") or
          (sep and tail.strip() in labels)):
        dropped += 1
      else:
        lines.append(e.text_a + "\n")
    return "".join(lines), dropped

  def _lines(self, path: str) -> Iterator[tuple[int, str]]:
    for i, line in enumerate(_read_lines(path)):
      line = line.rstrip("\r\n")
      if line.strip():
        yield i + 1, line

  def _read_labelled(self, path: str, split: str) -> list[InputExample]:
    examples = []
    for line_no, line in self._lines(path):
      text, sep, label = line.rpartition("&")
      if not sep:
        raise UserError(f"{path}:{line_no}: no '&' separator; expected "
                        f"'text&label'")
      label = self._check_label(path, line_no, label.strip())
      examples.append(InputExample(f"{split}-{line_no}", text, None, label))
    return examples

  def _read_maybe_labelled(self, path: str, split: str,
                           keep_labels: bool) -> list[InputExample]:
    lines = list(self._lines(path))
    labels = self.get_labels()

    def has_label(line: str) -> bool:
      _, sep, label = line.rpartition("&")
      return bool(sep) and label.strip() in labels

    marked = [has_label(line) for _, line in lines]
    labelled = bool(lines) and all(marked)
    if any(marked) and not labelled:
      # Mixed: mostly labelled means a label is missing (the whole file would
      # otherwise be read as text, labels and all); mostly not means texts
      # that happen to end in '&<label>'.
      if 2 * sum(marked) > len(marked):
        line_no = lines[marked.index(False)][0]
        raise UserError(
            f"{path}:{line_no}: no '&<label>' ending ({', '.join(labels)}), "
            f"but {sum(marked)} of the {len(marked)} lines have one; label "
            "every line, or none")
      logging.warning(
          "%s:%d: ends with '&<label>' but most lines do not: the file is "
          "read as unlabelled text, that ending included", path,
          lines[marked.index(True)][0])
    examples = []
    for line_no, line in lines:
      text, label = line, None
      if labelled:
        text, _, label = line.rpartition("&")
        label = label.strip() if keep_labels else None
      examples.append(InputExample(f"{split}-{line_no}", text, None, label))
    return examples


class GenericProcessor(DataProcessor):
  """`csv`, `tsv` or `jsonl` files `train.<ext>`, `dev.<ext>`, `test.<ext>`.

  Columns are header names or 0-based indices (csv/tsv), or keys (jsonl).
  Without `labels`, the label list is the sorted set of the train file's
  labels.  A test file is labelled if its label column exists (in the header,
  in the first data row, or as a key of the first record).
  """

  def __init__(self, fmt: str, text_column: str | int = "text",
               text_b_column: str | int | None = None,
               label_column: str | int = "label",
               labels: Sequence[str] | str | None = None,
               has_header: bool = True):
    if fmt not in ("csv", "tsv", "jsonl"):
      raise UserError(f"unknown generic format {fmt!r}: expected csv, tsv or "
                      f"jsonl")
    self.fmt = fmt
    self.has_header = has_header if fmt != "jsonl" else False
    self.columns = {"text": text_column, "text_b": text_b_column,
                    "label": label_column}
    for what, col in self.columns.items():
      if col is None:
        continue
      if fmt == "jsonl" and isinstance(col, int):
        raise UserError(f"{fmt}: {what} column must be a key name, got {col}")
      if fmt != "jsonl" and not has_header and _as_index(col) is None:
        raise UserError(f"{fmt}: {what} column {col!r} must be a 0-based "
                        f"index when the files have no header")
    if isinstance(labels, str):
      labels = [l.strip() for l in labels.split(",") if l.strip()]
    self._labels = list(labels) if labels else None
    self._data_dir = None

  def _path(self, data_dir: str, split: str) -> str:
    self._data_dir = data_dir
    return self.split_file(data_dir, split)

  def split_file(self, data_dir: str, split: str) -> str:
    return os.path.join(data_dir, f"{split}.{self.fmt}")

  def _format_unlabeled(self, examples):
    specs = [("text_a", str(self.columns["text"]))]
    if self.columns["text_b"] is not None:
      specs.append(("text_b", str(self.columns["text_b"])))
    if self.fmt == "jsonl":
      return "".join(
          json.dumps({col: getattr(e, field) for field, col in specs},
                     ensure_ascii=False) + "\n" for e in examples), 0
    return _columns_text(examples, specs, self.has_header, self.fmt)

  def get_labels(self) -> list[str]:
    if self._labels is None:
      if self._data_dir is None:
        raise UserError(f"task {self.fmt}: no label list given and no train "
                        f"file read yet; pass the labels option")
      path = os.path.join(self._data_dir, f"train.{self.fmt}")
      self._labels = self._infer_labels(path, self._records(path, True))
    return list(self._labels)

  def _infer_labels(self, path: str, records) -> list[str]:
    found = sorted({label for _, _, _, label in records})
    logging.info("No label list given: using the sorted labels of %s: %s",
                 path, ", ".join(found))
    return found

  def get_train_examples(self, data_dir: str) -> list[InputExample]:
    return self._read(self._path(data_dir, "train"), "train", "required")

  def get_dev_examples(self, data_dir: str) -> list[InputExample]:
    return self._read(self._path(data_dir, "dev"), "dev", "required")

  def get_test_examples(self, data_dir: str) -> list[InputExample]:
    return self._read(self._path(data_dir, "test"), "test", "optional")

  def read_unlabeled(self, path: str) -> list[InputExample]:
    return self._read(path, "unlabeled", "ignored")

  def _read(self, path: str, split: str, label_mode: str) -> list[InputExample]:
    records = self._records(path, label_mode == "required")
    if split == "train" and self._labels is None:
      self._labels = self._infer_labels(path, records)
    examples = []
    for line_no, text_a, text_b, label in records:
      if label_mode == "ignored":
        label = None
      elif label is not None:
        self._check_label(path, line_no, label)
      examples.append(InputExample(f"{split}-{line_no}", text_a, text_b, label))
    return examples

  def _records(self, path: str, need_label: bool):
    """Returns (line number, text_a, text_b, label or None) per data line."""
    if self.fmt == "jsonl":
      return self._json_records(path, need_label)
    delimiter = "\t" if self.fmt == "tsv" else ","
    quotechar = None if self.fmt == "tsv" else '"'
    header, rows = _split_header(path, _read_rows(path, delimiter, quotechar),
                                 self.has_header)
    first_line, first_row = rows[0]
    index = {}
    for what, col in self.columns.items():
      if col is None:
        continue
      if header is not None and str(col) in header:
        index[what] = header.index(str(col))
      elif _as_index(col) is not None:
        index[what] = _as_index(col)
      elif what == "label" and not need_label:
        index[what] = None
      else:
        raise UserError(f"{path}:1: no {what} column {col!r} in the header "
                        f"({', '.join(header)})")
    label_idx = index.get("label")
    has_label = label_idx is not None and (need_label or
                                           label_idx < len(first_row))
    sep = "tab-separated" if self.fmt == "tsv" else "comma-separated"
    records = []
    for line_no, row in rows:
      def get(i, what):
        if i >= len(row):
          raise UserError(f"{path}:{line_no}: expected at least {i + 1} "
                          f"{sep} columns ({what} in column {i}), found "
                          f"{len(row)}")
        return row[i]
      text_b = get(index["text_b"], "text_b") if "text_b" in index else None
      label = get(label_idx, "label") if has_label else None
      records.append((line_no, get(index["text"], "text"), text_b, label))
    return records

  def _json_records(self, path: str, need_label: bool):
    records = []
    has_label = None
    for i, line in enumerate(_read_lines(path)):
      if not line.strip():
        continue
      line_no = i + 1
      try:
        obj = json.loads(line)
      except json.JSONDecodeError as e:
        raise UserError(f"{path}:{line_no}: not valid JSON ({e.msg})") from None
      if not isinstance(obj, dict):
        raise UserError(f"{path}:{line_no}: expected a JSON object per line")
      if has_label is None:
        has_label = need_label or self.columns["label"] in obj

      def get(what):
        key = self.columns[what]
        if key not in obj:
          raise UserError(f"{path}:{line_no}: no key {key!r} ({what})")
        value = obj[key]
        if what == "text_b" and value is None:
          return None
        if what == "label":
          return str(value)
        if not isinstance(value, str):
          raise UserError(f"{path}:{line_no}: {what} {key!r} must be a "
                          f"string, got {type(value).__name__}")
        return value

      text_b = get("text_b") if self.columns["text_b"] is not None else None
      label = get("label") if has_label else None
      records.append((line_no, get("text"), text_b, label))
    return records


def _columns_text(examples: Sequence[InputExample],
                  specs: list[tuple[str, str]], has_header: bool,
                  fmt: str) -> tuple[str, int]:
  """csv/tsv rows with the texts where the readers look for them, and the
  number of rows left out.

  specs: (field, column) for text_a and text_b; a column is a 0-based index
  (the text goes there, other cells stay empty) or a header name (a column
  appended after the indexed ones).
  """
  positions, width = {}, 0
  for field, col in specs:
    if col.isdigit():
      positions[field] = int(col)
      width = max(width, int(col) + 1)
  for field, col in specs:
    if field not in positions:
      positions[field], width = width, width + 1
  header = [f"column{i}" for i in range(width)]
  for field, col in specs:
    if not col.isdigit():
      header[positions[field]] = col
  rows = [header] if has_header else []
  for e in examples:
    row = [""] * width
    for field, _ in specs:
      row[positions[field]] = getattr(e, field)
    rows.append(row)
  if fmt == "csv":
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue(), 0
  # TSV is read without quoting: a tab or line break inside a text would
  # shift or split its row.
  ok = [r for r in rows if not any(c in f for f in r for c in "\t\n\r")]
  return "".join("\t".join(r) + "\n" for r in ok), len(rows) - len(ok)


def _as_index(col) -> int | None:
  if isinstance(col, int):
    return col if col >= 0 else None
  if isinstance(col, str) and col.isdigit():
    return int(col)
  return None


_TASKS = {
    "cola": ColaProcessor,
    "mnli": MnliProcessor,
    "mrpc": MrpcProcessor,
    "xnli": XnliProcessor,
    "sst-2": Sst2Processor,
    "emotion": EmotionProcessor,
}
_GENERIC = ("csv", "tsv", "jsonl")
_GENERIC_OPTIONS = ("text_column", "text_b_column", "label_column", "labels",
                    "has_header")


def get_processor(task_name: str, **generic_options) -> DataProcessor:
  """Returns the processor of `task_name` (case-insensitive).

  `generic_options` configure the csv/tsv/jsonl tasks (see
  `GenericProcessor`); options set to None are ignored.  `xnli` takes
  `language` (default 'zh', as Google).
  """
  name = task_name.lower()
  options = {k: v for k, v in generic_options.items() if v is not None}
  if name in _GENERIC:
    allowed = _GENERIC_OPTIONS
  elif name == "xnli":
    allowed = ("language",)
  elif name in _TASKS:
    allowed = ()
  else:
    raise UserError(f"unknown task {task_name!r}: known tasks are "
                    f"{', '.join(list(_TASKS) + list(_GENERIC))}")
  extra = sorted(set(options) - set(allowed))
  if extra:
    raise UserError(f"task {name} does not take option(s) {', '.join(extra)}"
                    + (f"; it takes {', '.join(allowed)}" if allowed else ""))
  if name in _GENERIC:
    return GenericProcessor(name, **options)
  return _TASKS[name](**options)
