"""Benchmark: a large transfer file through run_classifier_distill.py, with
its peak memory.

Writes a transfer file of --lines unlabelled texts (each two waimai train
reviews joined, so every line is new), trains a tiny teacher once, then for
each size in --lines runs the distillation script on train split + transfer
file (features converted and cached, a few hundred steps with the teacher
online) and samples the memory of the whole process tree (proportional set
size, so pages the conversion workers share with their parent count once)
every 0.1 s.  Prints a table: lines, wall time, peak memory, cached bytes.

  python benchmarks/bench_transfer_memory.py --lines=100000,1000000

--root runs another checkout's scripts (e.g. a worktree of an older commit)
for a before/after comparison on the same machine.  Skips cleanly when
../shared/data/waimai is absent.
"""

import os
import random
import subprocess
import sys
import threading
import time

from absl import app, flags

import runs  # benchmarks/runs.py, beside this file.

sys.path.insert(0, runs.ROOT)

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", os.path.join(runs.ROOT, "..", "shared",
                                             "data", "waimai"),
                    "text&label data (its train split is sampled).")
flags.DEFINE_string("work_dir", os.path.join(runs.ROOT, "output",
                                             "bench_transfer_memory"),
                    "Where the files and runs go.")
flags.DEFINE_list("lines", ["100000", "1000000"], "Transfer-file sizes.")
flags.DEFINE_integer("max_seq_length", 128, "Sequence length.")
flags.DEFINE_integer("train_steps", 200, "Training steps per run.")
flags.DEFINE_string("root", runs.ROOT, "Checkout whose bert/ scripts run.")


def process_tree_pss_kb(root_pid: int) -> int:
  """Sum of the proportional set size of `root_pid` and its descendants."""
  parents = {}
  for name in os.listdir("/proc"):
    if name.isdigit():
      try:
        with open(f"/proc/{name}/stat") as f:
          parents[int(name)] = int(f.read().rsplit(")", 1)[1].split()[1])
      except OSError:
        pass
  tree, grew = {root_pid}, True
  while grew:
    more = {p for p, parent in parents.items() if parent in tree} - tree
    tree |= more
    grew = bool(more)
  total = 0
  for pid in tree:
    try:
      with open(f"/proc/{pid}/smaps_rollup") as f:
        total += next(int(line.split()[1]) for line in f
                      if line.startswith("Pss:"))
    except (OSError, StopIteration):
      pass
  return total


def run_sampled(command: list[str], log_file: str) -> tuple[float, int]:
  """Runs `command`; -> (seconds, peak memory of its process tree in kB)."""
  start = time.time()
  with open(log_file, "w") as log:
    process = subprocess.Popen(command, stdout=log, stderr=log, env={
        **os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    peak = 0
    done = threading.Event()

    def sample():
      nonlocal peak
      while not done.is_set():
        peak = max(peak, process_tree_pss_kb(process.pid))
        time.sleep(0.1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    process.wait()
    done.set()
    sampler.join()
  if process.returncode:
    raise SystemExit(f"failed ({process.returncode}), see {log_file}")
  return time.time() - start, peak


def write_transfer_file(path: str, texts: list[str], lines: int) -> None:
  if os.path.exists(path):
    return
  rng = random.Random(lines)
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    for _ in range(lines):
      f.write(f"{rng.choice(texts)}，{rng.choice(texts)}\n")
  os.replace(path + ".tmp", path)


def main(argv):
  del argv
  train = os.path.join(FLAGS.data_dir, "train.csv")
  if not os.path.exists(train):
    print(f"skipped: no {train}")
    return
  work = FLAGS.work_dir
  os.makedirs(work, exist_ok=True)
  with open(train, encoding="utf-8") as f:
    texts = [line.rstrip("\n").rsplit("&", 1)[0] for line in f if line.strip()]
  vocab, config, _ = runs.char_vocab_and_config(FLAGS.data_dir, work, 1, 64)
  common = ["--task_name=emotion", f"--data_dir={FLAGS.data_dir}",
            f"--vocab_file={vocab}", f"--bert_config_file={config}",
            f"--max_seq_length={FLAGS.max_seq_length}", "--do_train"]
  teacher_dir = os.path.join(work, "teacher")
  teacher_export = os.path.join(teacher_dir, "export")
  if not os.path.isdir(teacher_export):
    runs.call_script("run_classifier.py", teacher_dir, common + [
        "--num_train_epochs=0.5", "--do_export",
        f"--export_dir={teacher_export}"], teacher_dir + ".log")
  script = os.path.join(FLAGS.root, "bert", "run_classifier_distill.py")
  rows = []
  for lines in (int(n) for n in FLAGS.lines):
    transfer = os.path.join(work, f"transfer_{lines}.txt")
    write_transfer_file(transfer, texts, lines)
    output_dir = os.path.join(work, f"student_{lines}_{time.time():.0f}")
    epochs = FLAGS.train_steps * 32 / (lines + len(texts))
    seconds, peak_kb = run_sampled(
        [sys.executable, script, f"--output_dir={output_dir}"] + common + [
            f"--teacher_model={teacher_export}",
            f"--transfer_file={transfer}", f"--num_train_epochs={epochs}",
            "--train_batch_size=32", "--log_steps=100"], output_dir + ".log")
    cached = sum(os.path.getsize(os.path.join(output_dir, name))
                 for name in os.listdir(output_dir)
                 if name.startswith("train-") and ".tf_record" in name
                 and not name.endswith(".json"))
    rows.append((lines, seconds, peak_kb, cached))
    print(f"{lines} lines: {seconds:.0f} s, peak {peak_kb / 2**20:.2f} GiB",
          flush=True)
  print(f"\nrun_classifier_distill.py from {FLAGS.root}, sequence "
        f"{FLAGS.max_seq_length}, {FLAGS.train_steps} steps, 1x64 models")
  print("| transfer lines | wall time | peak memory (PSS, process tree) | "
        "cached features |")
  print("|---|---|---|---|")
  for lines, seconds, peak_kb, cached in rows:
    print(f"| {lines:,} | {seconds:.0f} s | {peak_kb / 2**20:.2f} GiB | "
          f"{cached / 2**20:.0f} MiB |")


if __name__ == "__main__":
  app.run(main)
