"""The quickstart's chain over seeds: accuracy mean and spread of its report's
models (teacher, plain student, distilled student, n-gram baseline).

  python benchmarks/quickstart_seeds.py --seeds=1,2,3
  python benchmarks/quickstart_seeds.py --seeds=1,2,3 --tag=scratch \
    --env=QUICKSTART_PRETRAINED=

Each seed runs `bash scripts/quickstart.sh` with QUICKSTART_SEED=N into
output/quickstart_<tag>_seedN and export/quickstart_<tag>_seedN (a finished
seed is reused, as the quickstart reuses finished models), then reads its
report.json.  Prints one markdown table: dev and test accuracy (%) per
model, mean ± std over the seeds and each seed's value, and the distilled
student's gain over its plain twin per seed.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ("teacher", "student_plain", "student", "baseline_ngram")

flags.DEFINE_list("seeds", ["1", "2", "3"], "Seeds, one quickstart run each.")
flags.DEFINE_string("tag", "seeds", "Names the runs' output folders.")
flags.DEFINE_list("env", [], "NAME=VALUE settings for scripts/quickstart.sh "
                  "(e.g. QUICKSTART_PRETRAINED= for a teacher from scratch).")
flags.DEFINE_integer("latency_runs", 20, "QUICKSTART_LATENCY_RUNS.")
FLAGS = flags.FLAGS


def run_seed(seed: str) -> dict:
  """One quickstart run -> its report.json."""
  name = f"quickstart_{FLAGS.tag}_seed{seed}"
  env = {**os.environ, "QUICKSTART_SEED": seed,
         "QUICKSTART_OUTPUT_DIR": f"output/{name}",
         "QUICKSTART_EXPORT_DIR": f"export/{name}",
         "QUICKSTART_LATENCY_RUNS": str(FLAGS.latency_runs)}
  for item in FLAGS.env:
    key, sep, value = item.partition("=")
    if not sep:
      raise app.UsageError(f"--env={item}: expected NAME=VALUE")
    env[key] = value
  log = os.path.join(ROOT, "output", f"{name}.log")
  os.makedirs(os.path.dirname(log), exist_ok=True)
  start = time.time()
  with open(log, "w", encoding="utf-8") as f:
    result = subprocess.run(["bash", "scripts/quickstart.sh"], cwd=ROOT,
                            env=env, stdout=f, stderr=subprocess.STDOUT)
  if result.returncode != 0:
    sys.exit(f"seed {seed}: scripts/quickstart.sh failed; see {log}")
  print(f"seed {seed}: {(time.time() - start) / 60:.1f} min ({log})",
        flush=True)
  with open(os.path.join(ROOT, "output", name, "report.json"),
            encoding="utf-8") as f:
    return json.load(f)


def _cell(values: list[float]) -> str:
  spread = statistics.stdev(values) if len(values) > 1 else 0.0
  return f"{statistics.mean(values):.2f} ± {spread:.2f}"


def main(argv):
  del argv
  reports = [run_seed(seed) for seed in FLAGS.seeds]
  accuracy = {}  # (model, split) -> values in seed order, in %.
  for report in reports:
    for model in report["models"]:
      for split in ("dev", "test"):
        value = model.get(f"{split}_accuracy")
        if value is not None:
          accuracy.setdefault((model["name"], split), []).append(100 * value)
  print(f"\nseeds {', '.join(FLAGS.seeds)}"
        f"{'; ' + ' '.join(FLAGS.env) if FLAGS.env else ''}\n")
  print("| model | dev | test | test by seed |")
  print("|---|---|---|---|")
  for name in MODELS:
    dev, test = accuracy.get((name, "dev")), accuracy.get((name, "test"))
    if dev is None:
      continue
    print(f"| {name} | {_cell(dev)} | {_cell(test) if test else ''} | "
          f"{', '.join(f'{v:.2f}' for v in test or [])} |")
  for split in ("dev", "test"):
    gains = [s - p for s, p in zip(accuracy.get(("student", split), []),
                                   accuracy.get(("student_plain", split), []))]
    if gains:
      print(f"\ndistilled - plain student, {split}: {_cell(gains)} "
            f"(by seed {', '.join(f'{g:+.2f}' for g in gains)})")


if __name__ == "__main__":
  app.run(main)
