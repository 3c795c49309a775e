"""Shared by the experiment scripts: one training run as a subprocess."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_metrics(output_dir: str) -> dict[str, float]:
  """eval_results.txt of a finished run as {name: value}."""
  with open(os.path.join(output_dir, "eval_results.txt")) as f:
    return {k: float(v) for k, v in
            (line.strip().split(" = ") for line in f if " = " in line)}


def run(script: str, output_dir: str, flags: list[str],
        log_file: str | None = None) -> dict[str, float]:
  """Runs bert/<script> with `flags` unless `output_dir` already has
  eval_results.txt (so a rerun resumes an interrupted experiment), and
  returns its dev metrics.  The run's log goes to `log_file` (or nowhere)."""
  if not os.path.exists(os.path.join(output_dir, "eval_results.txt")):
    command = ([sys.executable, os.path.join(ROOT, "bert", script),
                f"--output_dir={output_dir}"] + flags)
    print(" ".join(command), flush=True)
    os.makedirs(output_dir, exist_ok=True)
    with open(log_file or os.devnull, "a") as log:
      subprocess.run(command, check=True, stdout=log, stderr=log,
                     env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
  return read_metrics(output_dir)
