"""Two worker processes on 127.0.0.1 (MultiWorkerMirroredStrategy through
TF_CONFIG) train the tiny classifier: chief-only outputs, the planned step,
metrics near a single-process run on the same global batch, one line from
the chief when the other worker dies, and resuming after that."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from bert import checkpoints, run_classifier
from bert.errors import UserError
from tests import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_ports(n):
  sockets = [socket.socket() for _ in range(n)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def start_workers(flags, tmp_path, attempt, module="bert.run_classifier"):
  ports = free_ports(2)
  cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
  procs = []
  for i in range(2):
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2",
           "TF_CONFIG": json.dumps({"cluster": cluster,
                                    "task": {"type": "worker", "index": i}})}
    log = open(tmp_path / f"worker{i}_{attempt}.log", "w")
    procs.append(subprocess.Popen(
        [sys.executable, "-m", module] +
        [f"--{k}={v}" for k, v in flags.items()],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
  return procs


def stop(procs):
  for p in procs:
    if p.poll() is None:
      p.kill()
    p.wait()


def run_workers(flags, tmp_path, attempt, module="bert.run_classifier"):
  """Starts both workers, waits for them to succeed; returns their logs."""
  procs = start_workers(flags, tmp_path, attempt, module)
  try:
    for p in procs:
      p.wait(timeout=300)
  finally:
    stop(procs)
  logs = [(tmp_path / f"worker{i}_{attempt}.log").read_text()
          for i in range(2)]
  assert [p.returncode for p in procs] == [0, 0], (
      logs[0][-2000:] + logs[1][-2000:])
  return logs


def results(output_dir):
  with open(os.path.join(output_dir, "eval_results.txt")) as f:
    return {k: float(v) for k, v in (l.strip().split(" = ") for l in f)}


@pytest.mark.slow
def test_two_workers_train_like_one_process_and_resume(tmp_path):
  d = str(tmp_path)
  files = helpers.tiny_task_files(d)
  out = files.pop("output_dir")
  flags = {"task_name": "emotion", **files, "max_seq_length": 16, "train_batch_size": 8, "learning_rate": 2e-3,
           "num_train_epochs": 10, "save_checkpoints_steps": 10,
           "log_steps": 10, "do_train": True, "do_eval": True}
  planned = 120  # 96 examples / 8 * 10 epochs.
  procs = start_workers({**flags, "output_dir": out}, tmp_path, 1)
  try:
    # Worker 1 killed (SIGKILL) once the chief has a checkpoint at step 30 or
    # later: the chief must stop by itself, in bounded time, with one line.
    deadline = time.time() + 240
    while time.time() < deadline and all(p.poll() is None for p in procs):
      if (tf.train.latest_checkpoint(out) and
          checkpoints.read_global_step(out) >= 30):
        break
      time.sleep(0.05)
    procs[1].send_signal(signal.SIGKILL)
    procs[0].wait(timeout=120)
  finally:
    stop(procs)
  chief_log = (tmp_path / "worker0_1.log").read_text()
  assert [p.returncode for p in procs] == [2, -9], chief_log[-2000:]
  killed_at = checkpoints.read_global_step(out)
  assert 30 <= killed_at < planned
  errors = [l for l in chief_log.splitlines() if l.startswith("error: ")]
  assert len(errors) == 1 and "another worker stopped answering" in errors[0]
  assert f"model.ckpt-{killed_at}" in errors[0]
  assert "Traceback" not in chief_log

  logs = run_workers({**flags, "output_dir": out}, tmp_path, 2)
  for log in logs:
    assert f"Resuming from {os.path.join(out, f'model.ckpt-{killed_at}')}" in log
  # The chief alone wrote the outputs; the other worker's scratch is gone.
  assert checkpoints.read_global_step(out) == planned
  assert results(out)["global_step"] == planned
  assert os.path.exists(os.path.join(out, "run_config.json"))
  scratch = [line.split("Saved ")[1].rsplit("/", 1)[0]
             for line in logs[1].splitlines() if "Saved " in line]
  assert scratch and all(s != out and not os.path.exists(s) for s in scratch)

  # One process on the same global batch: the same data and schedule, other
  # dropout masks (they follow the replica), so near, not equal.
  single = os.path.join(d, "single")
  helpers.run_main(run_classifier.main, output_dir=single, **flags)
  expected, got = results(single), results(out)
  assert abs(got["eval_loss"] - expected["eval_loss"]) < 0.15
  assert abs(got["eval_accuracy"] - expected["eval_accuracy"]) <= 0.125


def test_bad_tf_config_is_one_line_before_any_work(tmp_path, monkeypatch):
  flags = {"task_name": "emotion", "do_train": True,
           **helpers.tiny_task_files(str(tmp_path))}
  for tf_config, message in (
      ("{not json", "TF_CONFIG is not valid JSON"),
      (json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                   "task": {"type": "worker", "index": 2}}),
       "TF_CONFIG: task 'worker' index 2 is not in the cluster")):
    monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(UserError, match=message) as e:
      helpers.run_main(run_classifier.main, **flags)
    assert "\n" not in str(e.value)
    assert not os.path.exists(flags["output_dir"])


# Logical CPU devices must be configured before TensorFlow starts, so each
# run gets a fresh interpreter (one training per process, as with the
# scripts: two MirroredStrategy trainings in one process reuse collective
# instance keys and fail).
_MIRRORED_SCRIPT = """
import json, sys
import tensorflow as tf
from absl import logging
logging.set_verbosity(logging.INFO)
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from bert import run_classifier, run_classifier_distill
from tests import helpers
script, flags = json.loads(sys.argv[1])
helpers.run_main({"teacher": run_classifier.main,
                  "student": run_classifier_distill.main}[script], **flags)
"""


def run_mirrored(script: str, flags: dict) -> subprocess.CompletedProcess:
  """One run of `script` ("teacher" or "student") over 2 logical CPUs."""
  return subprocess.run(
      [sys.executable, "-c", _MIRRORED_SCRIPT, json.dumps([script, flags])],
      capture_output=True, text=True, cwd=ROOT, timeout=300,
      env={**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"})


@pytest.mark.slow
def test_mirrored_over_two_cpus_trains_a_teacher_and_students(tmp_path):
  d = str(tmp_path)
  common = {"task_name": "emotion", "vocab_file": helpers.write_vocab(d),
            "data_dir": helpers.write_emotion_data(os.path.join(d, "data")),
            "max_seq_length": 16, "train_batch_size": 8,
            "learning_rate": 2e-3, "do_train": True, "do_eval": True,
            "distribution_strategy": "mirrored", "log_steps": 4}
  teacher_export = os.path.join(d, "export")
  student_config = os.path.join(d, "student")
  os.makedirs(student_config)
  student = {**common, "teacher_model": teacher_export, "num_train_epochs": 1,
             "bert_config_file": helpers.write_config(student_config,
                                                      num_hidden_layers=1)}
  runs = {"teacher": {**common, "bert_config_file": helpers.write_config(d),
                      "num_train_epochs": 2, "output_dir": f"{d}/teacher",
                      "do_export": True, "export_dir": teacher_export},
          # TinyBERT's intermediate stage runs the teacher inside the step;
          # the cached student's step is compiled by XLA in each replica
          # (the all-reduce outside).
          "students": [
              {**student, "output_dir": f"{d}/cached",
               "cache_teacher_logits": True, "jit_compile": True},
              {**student, "output_dir": f"{d}/tinybert",
               "stage": "intermediate",
               "intermediate_losses": "embedding,hidden,attention"}]}
  for script, flags in ([("teacher", runs["teacher"])] +
                        [("student", f) for f in runs["students"]]):
    result = run_mirrored(script, flags)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "batch size 8 over 2 replicas" in result.stderr
    assert ("compiled by XLA" in result.stderr) == ("jit_compile" in flags)
  for name, steps in (("teacher", 24), ("cached", 12), ("tinybert", 12)):
    assert results(os.path.join(d, name))["global_step"] == steps, name
  # XLA with the teacher in the step over two replicas: one line at once.
  refused = run_mirrored("student", {**student, "jit_compile": True,
                                     "output_dir": f"{d}/online_jit"})
  assert refused.returncode != 0
  assert ("--jit_compile over 2 replicas needs --cache_teacher_logits"
          in refused.stderr), refused.stderr[-3000:]
  assert not os.path.exists(f"{d}/online_jit/checkpoint")


@pytest.mark.slow
def test_two_workers_distil_with_teacher_logits_cached_once(tmp_path):
  d = str(tmp_path)
  files = helpers.train_and_export(d, epochs=1)
  student_config = os.path.join(d, "student")
  os.makedirs(student_config)
  out = os.path.join(d, "distilled")
  flags = {"task_name": "emotion", "data_dir": files["data_dir"],
           "vocab_file": files["vocab_file"], "output_dir": out,
           "bert_config_file": helpers.write_config(student_config,
                                                    num_hidden_layers=1),
           "teacher_model": files["export_dir"], "cache_teacher_logits": True,
           "max_seq_length": 16, "train_batch_size": 8, "learning_rate": 2e-3,
           "num_train_epochs": 1, "do_train": True, "do_eval": True}
  logs = run_workers(flags, tmp_path, 1, "bert.run_classifier_distill")
  assert "Computing teacher logits" in logs[0]
  assert "Computing teacher logits" not in logs[1]
  assert "Waiting for the chief's teacher logits" in logs[1]
  assert "Reusing cached teacher logits" in logs[1]
  assert results(out)["global_step"] == 12
