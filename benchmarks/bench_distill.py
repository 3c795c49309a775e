"""Benchmark: what distillation costs per training step, on the waimai reviews.

The same student (2 layers, hidden 128 by default) trains on the same
batches of a waimai train sample in four modes, with the project's own
Trainer step and losses:

  plain    the student alone, run_classifier.py's loss (CE at T = 1);
  online   run_classifier_distill.py's loss, the teacher SavedModel called on
           the whole batch inside the compiled step;
  cached   the same loss from --cache_teacher_logits' table (the one-off
           cost of building the table is reported apart);
  seed     the seed's approach: the teacher called once per example (batch
           of 1, each at its own length) in Python before every step;

plus the teacher's forward pass alone for reference.  All modes live in one
process and are timed in interleaved rounds after a warm-up, so that load
from other work on the machine hits them alike.  Peak RSS is measured apart,
one subprocess per mode (warm-up plus one round).  Prints a markdown table.

  python benchmarks/bench_distill.py [--teacher_model=export/teacher/1]
      [--steps=200] [--work_dir=output/bench_distill]

Without --teacher_model it fine-tunes a quick from-scratch teacher (4 layers,
hidden 256, --teacher_train_steps steps) with run_classifier.py and exports
it into the work dir (reused by later runs).  Reads ../shared/data/waimai
(or --data_dir); exits cleanly when it is absent.
"""

import json
import os
import random
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app, flags

import runs  # benchmarks/runs.py, beside this file.

# The script's flags (--data_dir, --teacher_model, --train_batch_size,
# --learning_rate, --max_seq_length, --seed, --temperature, --alpha, ...) are
# the benchmark's.
from bert import modeling, objective, run_config

FLAGS = flags.FLAGS
run_config.define_flags(run_config.DistillConfig)
FLAGS.set_default("data_dir", os.path.join(ROOT, "..", "shared", "data",
                                           "waimai"))
flags.DEFINE_string("work_dir", os.path.join(ROOT, "output", "bench_distill"),
                    "Vocab, configs, features, the built teacher, logs.")
flags.DEFINE_integer("num_examples", 4096, "Train examples sampled.")
flags.DEFINE_integer("steps", 200, "Timed steps per mode, after warm-up.")
flags.DEFINE_integer("warmup_steps", 20, "Untimed steps first (tracing).")
flags.DEFINE_integer("rounds", 10, "The timed steps run in this many "
                     "interleaved rounds.")
flags.DEFINE_integer("seed_steps", 10, "Timed steps of the per-example mode.")
flags.DEFINE_integer("student_layers", 2, "Student encoder layers.")
flags.DEFINE_integer("student_hidden", 128, "Student hidden size.")
flags.DEFINE_integer("teacher_layers", 4, "Built teacher's layers.")
flags.DEFINE_integer("teacher_hidden", 256, "Built teacher's hidden size.")
flags.DEFINE_integer("teacher_train_steps", 300, "Built teacher's steps.")
flags.DEFINE_string("rss_mode", None, "Internal: run one mode in this "
                    "process and print its peak RSS.")

MODES = [("plain", "(a) student alone, run_classifier loss"),
         ("online", "(b) online distillation, teacher in the step"),
         ("cached", "(c) cached teacher logits"),
         ("seed", "(d) seed: teacher per example in Python"),
         ("teacher", "teacher forward pass alone")]
SETUP = "setup.json"


def build_teacher(work_dir: str) -> str:
  """Fine-tunes a from-scratch teacher with run_classifier.py and exports it
  (reuses an earlier export in the work dir)."""
  from bert import export_reader
  from bert.errors import UserError
  export_dir = os.path.join(work_dir, "export", "teacher")
  try:
    return export_reader.resolve_export(export_dir)
  except UserError:
    pass
  teacher_dir = os.path.join(work_dir, "teacher")
  vocab_file, config_file, num_lines = runs.char_vocab_and_config(
      FLAGS.data_dir, teacher_dir, FLAGS.teacher_layers, FLAGS.teacher_hidden)
  epochs = FLAGS.teacher_train_steps * FLAGS.train_batch_size / num_lines
  command = [sys.executable, os.path.join(ROOT, "bert", "run_classifier.py"),
             "--task_name=emotion", f"--data_dir={FLAGS.data_dir}",
             f"--vocab_file={vocab_file}", f"--bert_config_file={config_file}",
             f"--output_dir={os.path.join(teacher_dir, 'run')}", "--do_train",
             "--do_export", f"--export_dir={export_dir}",
             f"--num_train_epochs={epochs}", "--learning_rate=2e-4",
             f"--train_batch_size={FLAGS.train_batch_size}",
             f"--max_seq_length={FLAGS.max_seq_length}", f"--seed={FLAGS.seed}",
             "--log_steps=50", "--save_checkpoints_steps=100000"]
  print(f"Building a teacher ({FLAGS.teacher_train_steps} steps): "
        + " ".join(command), flush=True)
  log = os.path.join(teacher_dir, "run.log")
  with open(log, "w") as f:
    if subprocess.call(command, stderr=f, env={**os.environ,
                                                "TF_CPP_MIN_LOG_LEVEL": "2"}):
      sys.exit(f"building the teacher failed, see {log}")
  return export_reader.resolve_export(export_dir)


def prepare() -> dict:
  """Teacher, student config and the sample's feature file -> setup.json."""
  from bert import data, export_reader, processors, tokenization
  work_dir = FLAGS.work_dir
  os.makedirs(work_dir, exist_ok=True)
  teacher = (export_reader.resolve_export(FLAGS.teacher_model[0])
             if FLAGS.teacher_model else build_teacher(work_dir))
  info = export_reader.read_export_info(teacher)
  vocab_file = export_reader.asset_path(teacher, "vocab.txt")
  if vocab_file is None:
    sys.exit(f"{teacher}: no vocab.txt asset to build the student's inputs")
  with open(vocab_file, encoding="utf-8") as f:
    vocab_size = sum(1 for _ in f)
  student_config = os.path.join(work_dir, "student_config.json")
  with open(student_config, "w") as f:
    f.write(modeling.sized_config(vocab_size, FLAGS.student_layers,
                                  FLAGS.student_hidden).to_json_string())
  examples = processors.EmotionProcessor().get_train_examples(FLAGS.data_dir)
  random.Random(FLAGS.seed).shuffle(examples)
  examples = examples[:FLAGS.num_examples]
  label_list = info.get("label_list", ["0", "1"])
  tokenizer = tokenization.FullTokenizer(vocab_file,
                                         info.get("do_lower_case", True))
  features = data.cache_features(examples, label_list, FLAGS.max_seq_length,
                                 tokenizer, work_dir, "train")
  setup = {"teacher": teacher, "student_config": student_config,
           "features": features, "num_examples": len(examples),
           "num_labels": len(label_list),
           "options": {k: v for k, v in run_config.DistillConfig.from_values(
               FLAGS.flag_values_dict()).to_dict().items() if k in (
                   "temperature", "alpha", "distill_objective",
                   "alpha_schedule", "temperature_schedule",
                   "ensemble_mean")},
           "batch_size": FLAGS.train_batch_size,
           "learning_rate": FLAGS.learning_rate,
           **{k: getattr(FLAGS, k) for k in (
               "steps", "warmup_steps", "rounds", "seed_steps",
               "max_seq_length", "seed")}}
  with open(os.path.join(work_dir, SETUP), "w") as f:
    json.dump(setup, f, indent=2)
  return setup


def build_mode(mode: str, s: dict, teacher, info: dict):
  """One compiled step of `mode` -> a callable that runs it to completion.
  Fills `info` with one-off costs (the cache build)."""
  import numpy as np
  import tensorflow as tf
  from bert import classifier, data, modeling, training

  batch, seq = s["batch_size"], s["max_seq_length"]
  # The same global and shuffle seeds: every mode sees the same batches in
  # the same order (their lengths set the cost of a step).
  training.set_seed(s["seed"])
  dataset = data.make_dataset(s["features"], seq, batch, is_training=True,
                              seed=s["seed"], drop_remainder=True)
  if mode == "teacher":
    forward = tf.function(lambda f: teacher.logits(
        *(data.trim_batch(f)[k]
          for k in ("input_ids", "input_mask", "segment_ids"))))
    iterator = iter(dataset)
    return lambda: forward(next(iterator)).numpy()

  strategy = training.get_strategy()
  with strategy.scope():
    model = modeling.BertClassifier(
        modeling.BertConfig.from_json_file(s["student_config"]),
        s["num_labels"])
  options = run_config.DistillConfig.from_values(s["options"])
  total = s["warmup_steps"] + s["steps"]
  if mode == "plain":
    def loss_fn(features, is_training, step):
      del step
      logits = model(features["input_ids"], features["input_mask"],
                     features["segment_ids"], training=is_training)
      return tf.reduce_mean(classifier.cross_entropy(
          logits, features["label_ids"])), {}
  elif mode == "online":
    loss_fn = objective.make_loss_fn(model, objective.online_teacher_logits(
        teacher), options, total)
  elif mode == "cached":
    info["cache_reused"] = os.path.exists(teacher.cache_path(s["features"]))
    start = time.perf_counter()
    table = teacher.cached_logits(s["features"], seq)
    info["cache_seconds"] = time.perf_counter() - start
    loss_fn = objective.make_loss_fn(model, objective.cached_teacher_logits(
        table), options, total)
  elif mode == "seed":
    loss_fn = objective.make_loss_fn(
        model, lambda f: f["teacher_logits"], options, total)
  else:
    raise ValueError(mode)
  trainer = training.Trainer(
      model, loss_fn, strategy=strategy,
      output_dir=os.path.join(FLAGS.work_dir, "runs", mode),
      num_train_steps=total, learning_rate=s["learning_rate"],
      save_checkpoints_steps=10**9, log_every=10**9)
  # The Trainer's own compiled step, driven here rather than by
  # Trainer.train so that the timed window excludes tracing, logging and
  # checkpoints, and the modes can take turns.
  train_step = trainer.make_train_step()
  if mode == "seed":
    batches = dataset.as_numpy_iterator()
    # The teacher's work happens here, in the timed call, never ahead of it
    # in a tf.data thread; the step then reads a one-batch dataset.
    next_batch = lambda: iter(tf.data.Dataset.from_tensors(
        per_example_teacher_logits(next(batches), teacher)))
  else:
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    next_batch = lambda: iterator

  def step():
    loss = float(train_step(next_batch())["loss"])  # Waits for the step.
    if not np.isfinite(loss):
      raise FloatingPointError(f"{mode}: loss {loss}")
  return step


def per_example_teacher_logits(features: dict, teacher) -> dict:
  """The seed's way: one eager teacher call per example (a batch of 1, at
  its own length) in Python -> features plus teacher_logits [K, B, C]."""
  import numpy as np
  rows = []
  for i in range(len(features["input_ids"])):
    n = max(int(features["input_mask"][i].sum()), 1)
    rows.append(teacher.logits(features["input_ids"][i:i + 1, :n],
                               features["input_mask"][i:i + 1, :n],
                               features["segment_ids"][i:i + 1, :n])[:, 0])
  return {**features, "teacher_logits": np.stack(rows, axis=1)}


def schedule(mode: str, s: dict) -> tuple[int, int]:
  """(warm-up steps, timed steps per round) of a mode."""
  if mode == "seed":  # Slow: a few steps show the per-example cost.
    return 1, max(1, s["seed_steps"] // s["rounds"])
  return s["warmup_steps"], max(1, s["steps"] // s["rounds"])


def load_setup() -> dict:
  with open(os.path.join(FLAGS.work_dir, SETUP)) as f:
    return json.load(f)


def load_teacher(s: dict):
  from bert import teacher as teacher_lib
  return teacher_lib.Teacher([s["teacher"]])


def peak_rss_mb() -> float:
  """This process's peak resident set size.

  VmHWM rather than getrusage's ru_maxrss: on Linux the latter survives
  fork + exec, so a child would report its parent's size at the fork.
  """
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) / 1024  # kB
  except OSError:
    pass
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_child(mode: str) -> None:
  """Warm-up plus one round of `mode` alone; prints the process's peak RSS."""
  s = load_setup()
  # The student alone does not load a teacher.
  teacher = None if mode == "plain" else load_teacher(s)
  step = build_mode(mode, s, teacher, {})
  warmup, per_round = schedule(mode, s)
  for _ in range(warmup + per_round):
    step()
  print(f"RSS {json.dumps({'mode': mode, 'max_rss_mb': peak_rss_mb()})}",
        flush=True)


def time_modes(s: dict, teacher) -> dict:
  """Examples/second of every mode, timed in interleaved rounds."""
  info, steps, timed = {}, {}, {}
  for mode, _ in MODES:
    print(f"building and warming up {mode}", flush=True)
    steps[mode] = build_mode(mode, s, teacher, info)
    for _ in range(schedule(mode, s)[0]):
      steps[mode]()
    timed[mode] = [0, 0.0]
  for r in range(s["rounds"]):
    for mode, _ in MODES:
      n = schedule(mode, s)[1]
      start = time.perf_counter()
      for _ in range(n):
        steps[mode]()
      timed[mode][0] += n
      timed[mode][1] += time.perf_counter() - start
    print(f"round {r + 1}/{s['rounds']}", flush=True)
  return {"rates": {m: n * s["batch_size"] / t for m, (n, t) in timed.items()},
          "steps": {m: n for m, (n, _) in timed.items()}, **info}


def main(argv):
  del argv
  if FLAGS.rss_mode:
    rss_child(FLAGS.rss_mode)
    return
  if not os.path.exists(os.path.join(FLAGS.data_dir, "train.csv")):
    print(f"skipped: no {FLAGS.data_dir}/train.csv")
    return
  load_before = os.getloadavg()[0]
  s = prepare()
  print(f"teacher {s['teacher']}; {s['num_examples']} examples; batch "
        f"{s['batch_size']}; {s['steps']} timed steps per mode after "
        f"{s['warmup_steps']}, in {s['rounds']} rounds (seed mode: "
        f"{s['seed_steps']} after 1)", flush=True)
  result = time_modes(s, load_teacher(s))
  rss = {}
  for mode in ("plain", "online", "cached"):
    log = os.path.join(FLAGS.work_dir, f"rss_{mode}.log")
    with open(log, "w") as f:
      out = subprocess.run(
          [sys.executable, os.path.abspath(__file__), f"--rss_mode={mode}",
           f"--work_dir={FLAGS.work_dir}"], stdout=subprocess.PIPE, stderr=f,
          text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    lines = [l for l in out.stdout.splitlines() if l.startswith("RSS ")]
    if out.returncode or not lines:
      sys.exit(f"RSS run of {mode} failed ({out.returncode}), see {log}")
    rss[mode] = json.loads(lines[-1][4:])["max_rss_mb"]
    print(f"{mode}: peak RSS {rss[mode]:.0f} MB", flush=True)
  rates = result["rates"]
  a, b, c = rates["plain"], rates["online"], rates["cached"]
  bound = 1.0 / (1.0 / a + 1.0 / rates["teacher"])
  print(f"\n{os.cpu_count()} CPU cores shared with other work (load average "
        f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after); student "
        f"{FLAGS.student_layers}x{FLAGS.student_hidden}, batch "
        f"{s['batch_size']}, max_seq_length {s['max_seq_length']} (batches "
        "trimmed to their longest example).\n")
  print("| mode | timed steps | train examples/s | vs (a) | peak RSS |")
  print("|---|---|---|---|---|")
  for mode, title in MODES:
    ratio = "-" if mode == "teacher" else f"{rates[mode] / a:.2f}"
    memory = f"{rss[mode]:.0f} MB" if mode in rss else "-"
    print(f"| {title} | {result['steps'][mode]} | {rates[mode]:.1f} | "
          f"{ratio} | {memory} |")
  print(f"\n(b) target, no more than a teacher forward pass on top of (a), "
        f"i.e. >= {bound:.1f} examples/s: "
        f"{'met' if b >= bound else 'NOT met'} ({b:.1f}).")
  print(f"(c) target, within 10% of (a): "
        f"{'met' if c >= 0.9 * a else 'NOT met'} ({c / a:.2f}); the logits "
        + (f"table was reused ({result['cache_seconds']:.1f} s to load)"
           if result["cache_reused"] else
           f"table took {result['cache_seconds']:.1f} s to build, once")
        + f" for {s['num_examples']} examples.")


if __name__ == "__main__":
  app.run(main)
