"""Faults and bad input through the real entry points (tiny model): nothing
lost, nothing half-done, one line per problem."""

import json
import logging
import os
import re
import stat
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from bert import checkpoints, files, run_classifier
from bert import export_reader
from bert.errors import UserError
from tests import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def paths(tmp_path):
  return helpers.tiny_task_files(str(tmp_path))


def run(paths, **flags):
  base = {"task_name": "emotion", "max_seq_length": 16, "train_batch_size": 8,
          "learning_rate": 2e-3, "num_train_epochs": 2, "log_steps": 20,
          "save_checkpoints_steps": 10}
  return helpers.run_main(run_classifier.main, **{**base, **paths, **flags})


def test_export_is_readable_as_the_umask_allows(paths, tmp_path):
  old = os.umask(0o022)
  try:
    run(paths, do_train=True, do_export=True,
        export_dir=str(tmp_path / "export"))
  finally:
    os.umask(old)
  version = tmp_path / "export" / "1"
  assert stat.S_IMODE(version.stat().st_mode) == 0o755
  assert stat.S_IMODE((version / "saved_model.pb").stat().st_mode) == 0o644


def test_damaged_latest_checkpoint_falls_back(paths, caplog):
  caplog.set_level(logging.WARNING, logger="absl")
  run(paths, do_train=True)  # 24 steps: checkpoints 10, 20, 24.
  out = paths["output_dir"]
  latest = tf.train.latest_checkpoint(out)
  assert latest.endswith("model.ckpt-24")
  shard = latest + ".data-00000-of-00001"
  with open(shard, "r+b") as f:
    f.truncate(os.path.getsize(shard) // 2)
  run(paths, do_eval=True)
  assert f"{latest} is damaged" in caplog.text
  assert "falling back to" in caplog.text and "model.ckpt-20" in caplog.text
  results = dict(line.strip().split(" = ")
                 for line in open(os.path.join(out, "eval_results.txt")))
  assert results["global_step"] == "20"
  # Training resumes from the intact one too, and reaches the planned step.
  caplog.clear()
  run(paths, do_train=True)
  assert checkpoints.read_global_step(out) == 24
  # A lone damaged prefix is one line, not a traceback.
  with open(shard, "r+b") as f:
    f.truncate(10)
  with pytest.raises(UserError, match="model.ckpt-24: unreadable checkpoint"):
    checkpoints.read_global_step(latest)


@pytest.mark.slow
def test_second_run_on_the_same_output_dir_stops(paths):
  out = paths["output_dir"]
  os.makedirs(out)
  sleeper = subprocess.Popen([sys.executable, "-c",
                              "import time; time.sleep(60)"])
  try:
    lock = os.path.join(out, files.LOCK_FILE)
    with open(lock, "w") as f:
      json.dump({"pid": sleeper.pid, "host": os.uname().nodename,
                 "user": "someone", "started": "2026-01-01T00:00:00"}, f)
    with pytest.raises(UserError) as e:
      run(paths, do_train=True)
    assert f"is in use by another run (pid {sleeper.pid} on" in str(e.value)
    assert "\n" not in str(e.value)
    assert tf.train.latest_checkpoint(out) is None
  finally:
    sleeper.kill()
    sleeper.wait()


@pytest.mark.slow
def test_stale_lock_is_taken_over(paths, caplog):
  caplog.set_level(logging.WARNING, logger="absl")
  out = paths["output_dir"]
  os.makedirs(out)
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  with open(os.path.join(out, files.LOCK_FILE), "w") as f:
    json.dump({"pid": dead.pid, "host": os.uname().nodename}, f)
  run(paths, do_train=True, num_train_epochs=1)
  assert "Taking over the stale lock" in caplog.text
  assert not os.path.exists(os.path.join(out, files.LOCK_FILE))
  assert checkpoints.read_global_step(out) == 12


@pytest.mark.parametrize("config, message", [
    ({"num_attention_heads": 0}, "num_attention_heads must be >= 1, got 0"),
    ({"hidden_dropout_prob": 1.5}, "hidden_dropout_prob must be in [0, 1)"),
    ({"type_vocab_size": 0}, "type_vocab_size must be >= 1, got 0"),
    ({"num_hidden_layers": -1}, "num_hidden_layers must be >= 1, got -1"),
    ({"hidden_size": 32.9}, "hidden_size should be int, got 32.9"),
])
def test_bad_config_values_are_one_line(paths, tmp_path, config, message):
  values = {**helpers.TINY_CONFIG, **config}
  path = tmp_path / "bad_config.json"
  path.write_text(json.dumps(values))
  with pytest.raises(UserError) as e:
    run(paths, do_train=True, bert_config_file=str(path))
  assert message in str(e.value) and str(path) in str(e.value)
  assert "\n" not in str(e.value)


@pytest.mark.parametrize("where, message", [
    ("config_is_dir", "cannot read the config"),
    ("output_is_file", "cannot create the directory"),
])
def test_bad_paths_are_one_line(paths, tmp_path, where, message):
  flags = {}
  if where == "config_is_dir":
    flags["bert_config_file"] = str(tmp_path)
  else:
    (tmp_path / "file").write_text("x")
    flags["output_dir"] = str(tmp_path / "file")
  with pytest.raises(UserError) as e:
    run(paths, do_train=True, **flags)
  assert message in str(e.value) and "\n" not in str(e.value)


def test_truncated_feature_cache_is_converted_again(paths, caplog):
  caplog.set_level(logging.WARNING, logger="absl")
  run(paths, do_eval=True, do_train=True, num_train_epochs=1)
  (dev,) = [os.path.join(paths["output_dir"], n)
            for n in os.listdir(paths["output_dir"])
            if n.startswith("dev-") and n.endswith(".tf_record")]
  whole = os.path.getsize(dev)
  with open(dev, "r+b") as f:
    f.truncate(whole - 7)
  run(paths, do_eval=True)
  assert f"{dev}: damaged or incomplete" in caplog.text
  assert os.path.getsize(dev) == whole


@pytest.mark.slow
def test_leftovers_of_a_killed_export_are_removed(paths, tmp_path, caplog):
  caplog.set_level(logging.WARNING, logger="absl")
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  export_dir = tmp_path / "export"
  leftover = export_dir / f".tmp-{dead.pid}-abc"
  (leftover / "variables").mkdir(parents=True)
  mine = export_dir / f".tmp-{os.getpid()}-live"  # A live process's: kept.
  mine.mkdir()
  run(paths, do_train=True, num_train_epochs=1, do_export=True,
      export_dir=str(export_dir))
  assert not leftover.exists() and mine.exists()
  assert sorted(os.listdir(export_dir)) == [".tmp-%d-live" % os.getpid(), "1"]


def test_orphan_checkpoint_files_are_removed(paths, caplog):
  caplog.set_level(logging.WARNING, logger="absl")
  run(paths, do_train=True, num_train_epochs=1)  # model.ckpt-10, -12.
  out = paths["output_dir"]
  # What a save killed half-way leaves: a newer checkpoint the index does not
  # list, and a temporary file.
  orphans = [os.path.join(out, "model.ckpt-30.index"),
             os.path.join(out, "model.ckpt-30.data-00000-of-00001"),
             os.path.join(out, "model.ckpt-30.index.tempstate123")]
  for path in orphans:
    with open(path, "w") as f:
      f.write("partial")
  run(paths, do_train=True, num_train_epochs=2)
  assert not any(os.path.exists(p) for p in orphans)
  assert checkpoints.read_global_step(out) == 24


def test_serving_default_checks_its_inputs(paths, tmp_path):
  run(paths, do_train=True, num_train_epochs=1, do_export=True,
      export_dir=str(tmp_path / "export"))
  model = export_reader.ExportedClassifier(str(tmp_path / "export"))
  vocab = helpers.TINY_CONFIG["vocab_size"]
  positions = helpers.TINY_CONFIG["max_position_embeddings"]
  ones = np.ones([2, 5], np.int32)

  def call(ids, mask=None, segments=None):
    ids = np.asarray(ids, np.int32)
    return model.serving_default(
        input_ids=tf.constant(ids),
        input_mask=tf.constant(np.ones_like(ids) if mask is None else mask),
        segment_ids=tf.constant(np.zeros_like(ids) if segments is None
                                else segments))

  assert call(ones)["logits"].shape == (2, 2)
  cases = [
      (lambda: call(ones * vocab), f"input_ids must be in [0, {vocab})"),
      (lambda: call(-ones), f"input_ids must be in [0, {vocab})"),
      (lambda: call(np.ones([1, positions + 1])),
       f"input_ids may have at most {positions} positions"),
      (lambda: call(ones, mask=np.ones([1, 5], np.int32)),
       "input_mask must have the shape of input_ids"),
      (lambda: call(ones, segments=ones * 2), "segment_ids must be in [0, 2)"),
      (lambda: call(ones, mask=ones * 3), "input_mask must be 0 or 1"),
  ]
  for fn, message in cases:
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(message)):
      fn()


@pytest.mark.slow
def test_extract_features_never_overwrites_its_input(tmp_path):
  text = tmp_path / "f.txt"
  text.write_text("hello\n")
  d = str(tmp_path)
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, "bert", "extract_features.py"),
       f"--input_file={text}", f"--output_file={text}",
       f"--vocab_file={helpers.write_vocab(d)}",
       f"--bert_config_file={helpers.write_config(d)}",
       f"--init_checkpoint={tmp_path / 'none'}", "--max_seq_length=16"],
      capture_output=True, text=True, cwd=ROOT,
      env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
  assert result.returncode == 2
  assert "is --input_file: the features would replace the input" in (
      result.stderr)
  assert text.read_text() == "hello\n"


@pytest.mark.slow
def test_predict_into_a_closed_pipe_is_quiet(paths, tmp_path):
  run(paths, do_train=True, num_train_epochs=1, do_export=True,
      export_dir=str(tmp_path / "export"))
  lines = "".join(f"review {i} good\n" for i in range(300))
  command = (f"{sys.executable} -m bert.predict --model={tmp_path / 'export'}"
             " --batch_size=16 | head -2")
  result = subprocess.run(["bash", "-c", "set -o pipefail; " + command],
                          input=lines, capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ,
                                         "TF_CPP_MIN_LOG_LEVEL": "3"})
  assert len(result.stdout.splitlines()) == 2
  assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


def test_full_disk_is_one_line(tmp_path):
  with pytest.raises(UserError, match=r"out.txt: cannot write it \(No space "
                     r"left on device\); nothing was changed"):
    def fill(tmp):
      raise OSError(28, "No space left on device")
    files.write_atomically(str(tmp_path / "out.txt"), fill)
  assert os.listdir(tmp_path) == []


def test_use_tpu_without_a_tpu_stops_before_training(paths):
  with pytest.raises(UserError) as e:
    run(paths, do_train=True, use_tpu=True)
  assert "never falls back to the CPU" in str(e.value)
  assert "\n" not in str(e.value)
  assert not os.path.exists(os.path.join(paths["output_dir"],
                                         "run_config.json"))


def _final_weights(output_dir):
  reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(output_dir))
  return {name: reader.get_tensor(name)
          for name in reader.get_variable_to_shape_map()}


@pytest.mark.slow
def test_run_killed_and_resumed_equals_an_uninterrupted_run(paths, tmp_path):
  """kill -9 between two checkpoints, resume: the same weights as a run never
  interrupted (seeded input order skipped to the step, dropout masks drawn
  from (seed, step), optimiser state in the checkpoint)."""
  flags = {"num_train_epochs": 20, "save_checkpoints_steps": 10,
           "keep_checkpoint_max": 2}                     # 240 steps
  run(paths, do_train=True, **flags)
  uninterrupted = _final_weights(paths["output_dir"])
  killed = {**paths, "output_dir": str(tmp_path / "killed")}
  base = {"task_name": "emotion", "max_seq_length": 16, "train_batch_size": 8,
          "learning_rate": 2e-3, "log_steps": 20, "do_train": True,
          **killed, **flags}
  argv = [sys.executable, "-m", "bert.run_classifier"] + [
      f"--{k}={v}" for k, v in base.items()]
  env = {**os.environ, "PYTHONPATH": ROOT}
  proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  try:
    while proc.poll() is None:
      step = checkpoints.read_global_step(killed["output_dir"]) if (
          tf.train.latest_checkpoint(killed["output_dir"])) else 0
      if step >= 30:
        proc.kill()  # SIGKILL: nothing runs after it.
        break
    proc.wait()
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
  assert proc.returncode == -9, "training ended before it could be killed"
  killed_at = checkpoints.read_global_step(killed["output_dir"])
  assert 30 <= killed_at < 240
  resumed = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True,
                           text=True)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert "Resuming from" in resumed.stderr
  weights = _final_weights(killed["output_dir"])
  assert weights.keys() == uninterrupted.keys()
  assert weights["global_step"] == 240
  for name, value in uninterrupted.items():
    np.testing.assert_allclose(weights[name], value, rtol=1e-5, atol=1e-6,
                               err_msg=name)


@pytest.mark.slow
@pytest.mark.skipif(bool(__import__("glob").glob("/dev/nvidia[0-9]*")),
                    reason="a machine with a GPU driver prints no cuInit error")
def test_no_cuinit_error_line_on_a_cpu_only_machine():
  result = subprocess.run(
      [sys.executable, "-m", "bert.run_classifier", "--output_dir=/nowhere"],
      capture_output=True, text=True, cwd=ROOT,
      env={**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"})
  assert result.returncode == 2
  assert "cuInit" not in result.stderr
  assert result.stderr.strip().splitlines()[-1].startswith("error: ")
