"""Benchmark: fine-tune a from-scratch teacher on the waimai reviews.

No pre-trained Chinese BERT can be downloaded here, so the teacher (4 layers,
hidden 256 by default) starts from random weights with a character vocabulary
built from the train split.  Prints dev accuracy, training examples/second
and wall time.

  python benchmarks/bench_teacher.py [--epochs=3] [--output_dir=output/bench_teacher]

Reads ../shared/data/waimai (or --data_dir); exits cleanly when it is absent.
"""

import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app, flags

import runs  # benchmarks/runs.py, beside this file.

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", os.path.join(ROOT, "..", "shared", "data",
                                             "waimai"), "text&label data.")
flags.DEFINE_string("output_dir", os.path.join(ROOT, "output", "bench_teacher"),
                    "Work directory (vocab, config, checkpoints, results).")
flags.DEFINE_string("export_dir", None, "Also export the teacher here.")
flags.DEFINE_float("epochs", 3.0, "Training epochs.")
flags.DEFINE_float("learning_rate", 2e-4, "Peak learning rate.")
flags.DEFINE_integer("batch_size", 32, "Training batch size.")
flags.DEFINE_integer("max_seq_length", 128, "Sequence length.")
flags.DEFINE_integer("layers", 4, "Encoder layers.")
flags.DEFINE_integer("hidden", 256, "Hidden size (heads of 64).")
flags.DEFINE_integer("seed", 12345, "Random seed.")


def main(argv):
  del argv
  if not os.path.exists(os.path.join(FLAGS.data_dir, "train.csv")):
    print(f"skipped: no {FLAGS.data_dir}/train.csv")
    return
  vocab_file, config_file, _ = runs.char_vocab_and_config(
      FLAGS.data_dir, FLAGS.output_dir, FLAGS.layers, FLAGS.hidden)
  run_dir = os.path.join(FLAGS.output_dir, "run")
  command = [sys.executable, os.path.join(ROOT, "bert", "run_classifier.py"),
             "--task_name=emotion", f"--data_dir={FLAGS.data_dir}",
             f"--vocab_file={vocab_file}", f"--bert_config_file={config_file}",
             f"--output_dir={run_dir}", "--do_train", "--do_eval",
             f"--num_train_epochs={FLAGS.epochs}",
             f"--learning_rate={FLAGS.learning_rate}",
             f"--train_batch_size={FLAGS.batch_size}", "--eval_batch_size=64",
             f"--max_seq_length={FLAGS.max_seq_length}", f"--seed={FLAGS.seed}",
             "--log_steps=50", "--save_checkpoints_steps=500"]
  if FLAGS.export_dir:
    command += ["--do_export", f"--export_dir={FLAGS.export_dir}"]
  print(" ".join(command), flush=True)
  start = time.time()
  process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
  rates = []
  for line in process.stderr:
    if "] step " in line or "rror" in line or "Eval" in line:
      print(line.rstrip().split("] ", 1)[-1], flush=True)
    match = re.search(r"([\d.]+) examples/s", line)
    if match:
      rates.append(float(match.group(1)))
  if process.wait():
    sys.exit(f"run_classifier failed ({process.returncode})")
  wall = time.time() - start
  with open(os.path.join(run_dir, "eval_results.txt")) as f:
    results = dict(line.strip().split(" = ") for line in f)
  # The first window includes tracing; the steady rate is the median.
  steady = sorted(rates[1:] or rates)[len(rates[1:] or rates) // 2]
  print("\n| model | epochs | dev accuracy | dev F1 | train examples/s | "
        "wall time |")
  print("|---|---|---|---|---|---|")
  print(f"| {FLAGS.layers} layers, hidden {FLAGS.hidden}, from scratch | "
        f"{FLAGS.epochs:g} | {float(results['eval_accuracy']):.4f} | "
        f"{float(results['eval_f1']):.4f} | {steady:.1f} | {wall / 60:.1f} min |")


if __name__ == "__main__":
  app.run(main)
