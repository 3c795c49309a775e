"""Experiment: do distilled students beat the same students trained alone?

For each student config and seed, trains the student on the waimai train
split twice: with run_classifier.py (labels only) and with
run_classifier_distill.py (default distillation settings, the given teacher),
then prints dev accuracy mean and spread per student and method.

  python benchmarks/distill_experiment.py --teacher_model=export/bench_teacher \
    --vocab_file=output/bench_teacher/vocab.txt [--seeds=1,2,3]

The teacher comes from benchmarks/bench_teacher.py --export_dir=...
Skips cleanly when ../shared/data/waimai is absent.
"""

import os
import statistics
import sys
import time

from absl import app, flags

import runs  # benchmarks/runs.py, beside this file.

ROOT = runs.ROOT
sys.path.insert(0, ROOT)
from bert import modeling  # pylint: disable=wrong-import-position

FLAGS = flags.FLAGS
runs.define_experiment_flags("distill_exp")
flags.DEFINE_list("students", ["1x128", "2x128"], "layers x hidden.")
flags.DEFINE_float("epochs", 3.0, "Training epochs.")
flags.DEFINE_float("learning_rate", 3e-4, "Peak learning rate.")
flags.DEFINE_integer("max_seq_length", 128, "Sequence length.")
flags.DEFINE_bool("skip_plain", False, "Only the distill runs.")
flags.DEFINE_string("tag", "", "Suffix of the distill runs' directories, "
                    "to compare settings next to the same plain runs.")
flags.DEFINE_list("distill_flags", [], "Extra flags for the distill runs, "
                  "e.g. --temperature=4 (default: the script's defaults).")


def student_config(work_dir: str, spec: str, vocab_size: int) -> str:
  layers, hidden = (int(x) for x in spec.split("x"))
  path = os.path.join(work_dir, f"student_{spec}.json")
  with open(path, "w") as f:
    f.write(modeling.sized_config(vocab_size, layers,
                                  hidden).to_json_string())
  return path


def run(script: str, output_dir: str, extra: list[str]) -> float:
  return runs.run(script, output_dir, [
      "--task_name=emotion", f"--data_dir={FLAGS.data_dir}",
      f"--vocab_file={FLAGS.vocab_file}", "--do_train", "--do_eval",
      f"--num_train_epochs={FLAGS.epochs}",
      f"--learning_rate={FLAGS.learning_rate}",
      f"--max_seq_length={FLAGS.max_seq_length}", "--eval_batch_size=64",
      "--log_steps=200"] + extra)["eval_accuracy"]


def main(argv):
  del argv
  vocab_size = runs.start_experiment(FLAGS.data_dir, FLAGS.work_dir,
                                     FLAGS.vocab_file)
  if vocab_size is None:
    return
  table = {}
  start = time.time()
  for spec in FLAGS.students:
    config = student_config(FLAGS.work_dir, spec, vocab_size)
    for seed in FLAGS.seeds:
      common = [f"--bert_config_file={config}", f"--seed={seed}"]
      base = os.path.join(FLAGS.work_dir, f"{spec}-seed{seed}")
      plain = (run("run_classifier.py", base + "-plain", common)
               if not FLAGS.skip_plain else float("nan"))
      distilled = run("run_classifier_distill.py", base + "-distill" + FLAGS.tag,
                      common + [f"--teacher_model={FLAGS.teacher_model}"]
                      + FLAGS.distill_flags)
      table.setdefault((spec, "labels only"), []).append(plain)
      table.setdefault((spec, "distilled"), []).append(distilled)
      print(f"{spec} seed {seed}: labels only {plain:.4f}, "
            f"distilled {distilled:.4f}", flush=True)
  print(f"\n{len(FLAGS.seeds)} seeds, {FLAGS.epochs:g} epochs, "
        f"{(time.time() - start) / 60:.0f} min; dev accuracy")
  print("| student | method | mean | std | min | max | runs |")
  print("|---|---|---|---|---|---|---|")
  for (spec, method), values in table.items():
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    print(f"| {spec} | {method} | {statistics.mean(values):.4f} | {std:.4f} |"
          f" {min(values):.4f} | {max(values):.4f} | "
          f"{', '.join(f'{v:.4f}' for v in values)} |")


if __name__ == "__main__":
  app.run(main)
