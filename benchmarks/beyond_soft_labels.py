"""Experiment: do TinyBERT losses, augmentation and a BiLSTM student pay?

Four arms on the waimai train split, each over several seeds, all distilled
from the same exported teacher and evaluated on dev:

  bert_soft        2-layer BERT student, soft labels only (train split)
  bert_tinybert    the same student, TinyBERT losses (embeddings, hidden
                   states, attention; --stage=both) on train + augmented set
  bilstm_labels    BiLSTM student on the gold labels only (--alpha=0)
  bilstm_aug       the same BiLSTM, logits_mse on train + augmented set

then the batch-1 CPU latency of the teacher and of a BiLSTM export through
`serving_default` (bert/report.py's timing), at 128 and 32 real tokens.

  python benchmarks/beyond_soft_labels.py --teacher_model=export/bench_teacher6 \
    --vocab_file=output/bench_teacher6/vocab.txt

The teacher comes from benchmarks/bench_teacher.py.  The augmented set is
written by bert/augment.py (n_iter 20) unless --transfer_file names one.
Finished runs are reused, so an interrupted experiment resumes.  Skips
cleanly when ../shared/data/waimai is absent.
"""

import json
import os
import subprocess
import sys

from absl import app, flags

import runs  # benchmarks/runs.py, beside this file.

ROOT = runs.ROOT
sys.path.insert(0, ROOT)
# pylint: disable=wrong-import-position
from bert import bilstm, modeling, report
from bert import export_reader

FLAGS = flags.FLAGS
runs.define_experiment_flags("beyond")
flags.DEFINE_string("transfer_file", None, "Augmented set (default: made "
                    "with bert/augment.py in --work_dir).")
flags.DEFINE_integer("n_iter", 20, "Augmentation: variants per example.")
flags.DEFINE_list("arms", ["bert_soft", "bert_tinybert", "bilstm_labels",
                           "bilstm_aug"], "Which arms to run (also: "
                  "bert_soft_aug, soft labels on train + augmented set).")
flags.DEFINE_integer("bert_layers", 2, "Student layers.")
flags.DEFINE_integer("bert_hidden", 128, "Student width.")
flags.DEFINE_integer("bert_heads", 4, "Student heads (the attention loss "
                     "needs the teacher's count).")
flags.DEFINE_float("bert_epochs", 3.0, "Epochs of bert_soft (train split).")
flags.DEFINE_float("tinybert_epochs", 2.0, "Epochs of bert_tinybert over "
                   "train + augmented set.")
flags.DEFINE_float("intermediate_fraction", 0.5, "bert_tinybert: share of "
                   "the steps on the intermediate losses.")
flags.DEFINE_float("bert_learning_rate", 3e-4, "BERT students' peak LR.")
flags.DEFINE_list("bilstm_sizes", ["64", "32", "64"],
                  "BiLSTM embedding, LSTM (per direction) and MLP sizes "
                  "(small enough to be 10x faster than the 4x256 teacher).")
flags.DEFINE_float("bilstm_epochs", 12.0, "Epochs of bilstm_labels (best "
                   "of 3, 6, 12, 20 on seed 1).")
flags.DEFINE_float("bilstm_aug_epochs", 8.0, "Epochs of bilstm_aug over "
                   "train + augmented set (best of 2, 4, 8, 12 on seed 1).")
flags.DEFINE_float("bilstm_learning_rate", 2e-3, "bilstm_labels' peak LR.")
flags.DEFINE_float("bilstm_aug_learning_rate", 1e-3, "bilstm_aug's peak LR "
                   "(at 2e-3, one seed in three diverged over the long run).")
flags.DEFINE_integer("group_by_length", 50, "Passed to every run.")
flags.DEFINE_integer("latency_runs", 300, "Batch-1 calls timed per model.")


def write_json(path: str, values: dict) -> str:
  with open(path, "w") as f:
    json.dump(values, f, indent=2)
  return path


def make_transfer_file() -> str:
  if FLAGS.transfer_file:
    return FLAGS.transfer_file
  path = os.path.join(FLAGS.work_dir, f"waimai_transfer_n{FLAGS.n_iter}.csv")
  if not os.path.exists(path):
    subprocess.run([sys.executable, os.path.join(ROOT, "bert", "augment.py"),
                    "--task_name=emotion", f"--data_dir={FLAGS.data_dir}",
                    f"--output_file={path}", f"--n_iter={FLAGS.n_iter}",
                    "--seed=12345"], check=True)
  return path


def arm_flags(vocab_size: int, transfer: str) -> dict[str, list[str]]:
  """Each arm's flags on top of the common ones."""
  bert_config = modeling.sized_config(vocab_size, FLAGS.bert_layers,
                                      FLAGS.bert_hidden).to_dict()
  bert_config["num_attention_heads"] = FLAGS.bert_heads
  # Named by their sizes: concurrent experiments never share a file.
  bert = write_json(os.path.join(
      FLAGS.work_dir, f"student_bert_{FLAGS.bert_layers}x{FLAGS.bert_hidden}_"
      f"{FLAGS.bert_heads}h.json"), bert_config)
  e, h, m = (int(x) for x in FLAGS.bilstm_sizes)
  lstm = write_json(os.path.join(FLAGS.work_dir,
                                 f"student_bilstm_{e}_{h}_{m}.json"),
                    bilstm.BiLstmConfig(vocab_size, e, h, m).to_dict())
  bert_common = [f"--bert_config_file={bert}",
                 f"--learning_rate={FLAGS.bert_learning_rate}"]
  lstm_common = [f"--bert_config_file={lstm}", "--student_type=bilstm"]
  return {
      "bert_soft": bert_common + [f"--num_train_epochs={FLAGS.bert_epochs}"],
      "bert_soft_aug": bert_common + [
          f"--transfer_file={transfer}",
          f"--num_train_epochs={FLAGS.tinybert_epochs}"],
      "bert_tinybert": bert_common + [
          f"--transfer_file={transfer}", "--stage=both",
          "--intermediate_losses=embedding,hidden,attention",
          "--layer_map=uniform",
          f"--intermediate_fraction={FLAGS.intermediate_fraction}",
          f"--num_train_epochs={FLAGS.tinybert_epochs}"],
      "bilstm_labels": lstm_common + [
          "--alpha=0", f"--learning_rate={FLAGS.bilstm_learning_rate}",
          f"--num_train_epochs={FLAGS.bilstm_epochs}"],
      "bilstm_aug": lstm_common + [
          f"--transfer_file={transfer}",
          f"--learning_rate={FLAGS.bilstm_aug_learning_rate}",
          f"--num_train_epochs={FLAGS.bilstm_aug_epochs}"],
  }


def latency_table(teacher: str, bilstm_export: str) -> list[str]:
  """Batch-1 latency (median ms) of both through serving_default."""
  models = [export_reader.ExportedClassifier(p) for p in (teacher, bilstm_export)]
  lines = ["| real tokens | teacher (ms) | BiLSTM (ms) | speed-up |",
           "|---|---|---|---|"]
  for seq_length in (128, 32):
    (t, _), (s, _) = report.measure_speeds(
        models, seq_length, batch_size=32, latency_runs=FLAGS.latency_runs,
        throughput_runs=10, warmup=20)
    lines.append(f"| {seq_length} | {t:.2f} | {s:.2f} | {t / s:.1f}x |")
  return lines


def main(argv):
  del argv
  vocab_size = runs.start_experiment(FLAGS.data_dir, FLAGS.work_dir,
                                     FLAGS.vocab_file)
  if vocab_size is None:
    return
  transfer = make_transfer_file()
  arms = arm_flags(vocab_size, transfer)
  unknown = set(FLAGS.arms) - set(arms)
  if unknown:
    raise app.UsageError(f"unknown --arms {sorted(unknown)}; "
                         f"choose from {sorted(arms)}")
  common = ["--task_name=emotion", f"--data_dir={FLAGS.data_dir}",
            f"--vocab_file={FLAGS.vocab_file}",
            f"--teacher_model={FLAGS.teacher_model}", "--max_seq_length=128",
            "--do_train", "--do_eval", "--eval_batch_size=64",
            "--log_steps=500", "--save_checkpoints_steps=2000",
            "--cache_teacher_logits", f"--group_by_length={FLAGS.group_by_length}",
            f"--cache_dir={os.path.join(FLAGS.work_dir, 'cache')}"]
  table = {}
  for arm in FLAGS.arms:
    for seed in FLAGS.seeds:
      out = os.path.join(FLAGS.work_dir, f"{arm}-seed{seed}")
      metrics = runs.run("run_classifier_distill.py", out,
                         common + arms[arm] + [f"--seed={seed}"],
                         log_file=out + ".log")
      if not os.path.exists(os.path.join(out, "export")):
        # For an independent evaluation (e.g. on a held-back test split).
        runs.export(out, common + arms[arm], log_file=out + ".log")
      table.setdefault(arm, []).append(metrics["eval_accuracy"])
      print(f"{arm} seed {seed}: dev accuracy "
            f"{metrics['eval_accuracy']:.4f}", flush=True)
  print(f"\nDev accuracy over seeds {','.join(FLAGS.seeds)}:")
  runs.print_seed_table(table)
  lstm_runs = [a for a in FLAGS.arms if a.startswith("bilstm")]
  if lstm_runs:
    path = os.path.join(FLAGS.work_dir,
                        f"{lstm_runs[-1]}-seed{FLAGS.seeds[0]}", "export")
    print("\nBatch-1 CPU latency through serving_default, teacher vs "
          f"{path}:")
    print("\n".join(latency_table(FLAGS.teacher_model, path)))


if __name__ == "__main__":
  app.run(main)
