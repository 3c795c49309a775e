"""Tests for bert/run_config.py: config objects, their validation and the
run's record (no TensorFlow model here: plain values in, config out)."""

import ast
import dataclasses
import json
import logging
import os
import subprocess
import sys

import pytest

from bert import run_config
from bert.errors import UserError
from bert.run_config import DistillConfig, PretrainConfig, RunConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ("run_classifier", "run_classifier_distill", "run_pretraining")


def base(tmp_path, **values):
  """Values of a run that validates: training with every path given."""
  return {"task_name": "emotion", "data_dir": str(tmp_path / "data"),
          "bert_config_file": str(tmp_path / "bert_config.json"),
          "vocab_file": str(tmp_path / "vocab.txt"),
          "output_dir": str(tmp_path / "out"), "do_train": True, **values}


def test_from_values_defaults_and_conversions():
  config = RunConfig.from_values({"labels": ["a", "b"], "temperature": None,
                                  "not_a_setting": 3, "max_seq_length": 64})
  assert config.labels == ("a", "b")
  assert config.temperature == 1.0  # None: the field's default.
  assert config.max_seq_length == 64
  distill = DistillConfig.from_values({"teacher_model": "a, b,",
                                       "init_from_teacher_layers": ["0", "2"]})
  assert distill.teacher_model == ("a", "b")
  assert distill.init_from_teacher_layers == (0, 2)
  assert distill.temperature == 10.0
  assert distill.distill_objective == "soft_ce"
  assert DistillConfig.from_values(
      {"student_type": "bilstm"}).distill_objective == "logits_mse"
  assert DistillConfig.from_values(
      {"student_type": "bilstm", "distill_objective": "kl"}
  ).distill_objective == "kl"


@pytest.mark.parametrize("values, message", [
    ({"do_train": False}, "at least one of --do_train"),
    ({"task_name": None}, "--task_name is required"),
    ({"data_dir": None}, "--data_dir is required"),
    ({"bert_config_file": None}, "--bert_config_file is required"),
    ({"vocab_file": None}, "--vocab_file (or --spm_model_file) is required"),
    ({"train_batch_size": 0}, "--train_batch_size must be >= 1, got 0"),
    ({"train_batch_size": -4}, "--train_batch_size must be >= 1, got -4"),
    ({"do_eval": True, "eval_batch_size": 0},
     "--eval_batch_size must be >= 1, got 0"),
    ({"do_predict": True, "predict_batch_size": 0},
     "--predict_batch_size must be >= 1"),
    ({"learning_rate": -5e-4}, "--learning_rate must be a finite number >= 0"),
    ({"learning_rate": float("nan")}, "--learning_rate must be a finite"),
    ({"num_train_epochs": 0.0}, "--num_train_epochs must be a finite number"),
    ({"warmup_proportion": 1.5}, "--warmup_proportion must be in [0, 1]"),
    ({"max_seq_length": 1}, "--max_seq_length must be >= 2"),
    ({"save_checkpoints_steps": 0}, "--save_checkpoints_steps must be >= 1"),
    ({"group_by_length": -1}, "--group_by_length must be >= 0"),
    ({"temperature": 0.0}, "--temperature must be a finite number > 0"),
    ({"do_export": True}, "--do_export needs --export_dir"),
    ({"bert_hub_module_handle": "hub", "do_export_encoder": True},
     "--do_export/--do_export_encoder with --bert_hub_module_handle"),
    ({"jit_compile": True, "use_tpu": True},
     "--jit_compile with --use_tpu: a TPU compiles every step with XLA"),
    ({"jit_compile": True, "bert_hub_module_handle": "hub"},
     "--jit_compile with --bert_hub_module_handle is not supported"),
    ({"export_position_blocks": 0}, "--export_position_blocks must be >= 1"),
    ({"kernels": "xla"},
     "--kernels=xla: expected one of auto, reference, fused"),
    ({"precision": "float8"}, "--precision=float8: expected one of float32"),
])
def test_run_config_rejects(tmp_path, values, message):
  with pytest.raises(UserError) as e:
    RunConfig.from_values(base(tmp_path, **values)).validate()
  assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("values, message", [
    ({}, "--teacher_model (or --teacher_probs_file) is required for "
     "--do_train"),
    ({"teacher_model": "t", "do_distill": True}, "--do_distill is "
     "run_classifier.py's"),
    ({"teacher_model": "t", "alpha": 1.5}, "--alpha must be in [0, 1]"),
    ({"teacher_model": "t", "temperature": float("inf")},
     "--temperature must be a finite number > 0"),
    ({"teacher_model": "t", "intermediate_losses": ["hidden"]},
     "--intermediate_losses=hidden needs --stage=intermediate"),
    ({"teacher_model": "t", "stage": "both", "intermediate_losses": ["hidden"],
      "intermediate_fraction": 1.0}, "--intermediate_fraction must be in"),
    ({"teacher_model": "t", "student_type": "bilstm",
      "init_from_teacher_layers": ["0"]},
     "--init_from_teacher_layers needs --student_type=bert"),
    ({"teacher_model": "t", "init_from_teacher_layers": ["-1"]},
     "--init_from_teacher_layers: layer numbers start at 0"),
    ({"teacher_model": "t", "train_on_transfer_only": True},
     "--train_on_transfer_only needs --transfer_file"),
    ({"teacher_model": "t", "teacher_eval_sample": -1},
     "--teacher_eval_sample must be >= 0"),
    ({"teacher_model": "t", "student_type": "bilstm",
      "export_jit_compile": True}, "--export_jit_compile is for BERT students"),
    ({"teacher_model": "t", "student_type": "bilstm", "jit_compile": True},
     "--jit_compile is for BERT students"),
])
def test_distill_config_rejects(tmp_path, values, message):
  with pytest.raises(UserError) as e:
    DistillConfig.from_values(base(tmp_path, **values)).validate()
  assert message in str(e.value) and "\n" not in str(e.value)


def test_bad_layer_list_is_one_line():
  with pytest.raises(UserError, match="--init_from_teacher_layers must be "
                     "comma-separated layer numbers, got '0,x'"):
    DistillConfig.from_values({"init_from_teacher_layers": ["0", "x"]})


def test_transfer_only_runs_need_no_data_dir(tmp_path):
  DistillConfig.from_values(base(
      tmp_path, data_dir=None, teacher_model="t", transfer_file="corpus.txt",
      train_on_transfer_only=True)).validate()


def test_record_fills_what_the_command_line_leaves_out(tmp_path,
                                                       monkeypatch):
  monkeypatch.chdir(tmp_path)
  values = base(tmp_path, vocab_file="vocab.txt", teacher_model="export/t",
                learning_rate=3e-4, max_seq_length=64, labels=["0", "1"])
  trained, record = run_config.settle(DistillConfig, values, values)
  assert record is None
  # Relative paths are recorded as absolute ones.
  assert trained.vocab_file == str(tmp_path / "vocab.txt")
  assert trained.teacher_model == (str(tmp_path / "export" / "t"),)
  path = run_config.write_record(trained, {"teacher": {"dirs": ["x/1"]}})
  with open(path) as f:
    written = json.load(f)
  assert written["script"] == "run_classifier_distill.py"
  assert written["config"]["learning_rate"] == 3e-4
  assert written["teacher"] == {"dirs": ["x/1"]}
  assert {"python", "tensorflow", "numpy"} <= set(written["versions"])
  assert not [n for n in os.listdir(tmp_path / "out") if n != "run_config.json"]

  # Export later from elsewhere: only the output and export dirs given.
  monkeypatch.chdir(tmp_path / "out")
  later = {"output_dir": str(tmp_path / "out"), "do_export": True,
           "export_dir": "exp", "eval_batch_size": 8}
  config, record = run_config.settle(DistillConfig, later,
                                     {"output_dir", "do_export", "export_dir"})
  assert record["config"]["learning_rate"] == 3e-4
  assert not config.do_train and config.do_export
  assert config.export_dir == str(tmp_path / "out" / "exp")
  assert config.teacher_model == trained.teacher_model
  assert (config.vocab_file, config.max_seq_length, config.labels) == (
      trained.vocab_file, 64, ("0", "1"))


def test_resume_with_other_settings_names_them(tmp_path, caplog):
  values = base(tmp_path, learning_rate=3e-4)
  config, _ = run_config.settle(RunConfig, values, values)
  run_config.write_record(config)
  # The same command again resumes.
  run_config.settle(RunConfig, values, values)
  # A flag left out comes from the record: no difference.
  fewer = {k: v for k, v in values.items() if k != "learning_rate"}
  assert run_config.settle(RunConfig, fewer, fewer)[0].learning_rate == 3e-4
  changed = {**values, "learning_rate": 1e-4, "seed": 7}
  with pytest.raises(UserError) as e:
    run_config.settle(RunConfig, changed, changed)
  message = str(e.value)
  assert "run_config.json: this --output_dir holds a run with other " in message
  assert "--learning_rate: recorded 0.0003, now 0.0001" in message
  assert "--seed: recorded 12345, now 7" in message
  # Training longer is allowed, with a warning.
  caplog.set_level(logging.WARNING, logger="absl")
  longer = {**values, "num_train_epochs": 6.0}
  config, _ = run_config.settle(RunConfig, longer, longer)
  assert "--num_train_epochs: recorded 3.0, now 6.0" in caplog.text
  run_config.write_record(config)
  assert run_config.read_record(config.output_dir)["config"][
      "num_train_epochs"] == 6.0
  # Another script's run is not resumed.
  with pytest.raises(UserError, match="holds a run of run_classifier.py, not "
                     "run_classifier_distill.py"):
    run_config.settle(DistillConfig, {**values, "teacher_model": "t"},
                      values)


def test_without_record_the_error_says_so(tmp_path):
  later = {"output_dir": str(tmp_path), "do_export": True, "export_dir": "e"}
  with pytest.raises(UserError, match=r"--task_name is required \(no run "
                     r"record .*run_config.json: give the settings"):
    run_config.settle(RunConfig, later, later)


def test_unreadable_record_is_one_line(tmp_path):
  (tmp_path / "run_config.json").write_text("{not json")
  with pytest.raises(UserError, match="run_config.json: not a readable run "
                     "record"):
    run_config.read_record(str(tmp_path))


def test_a_probs_file_teacher_has_no_layers(tmp_path):
  with pytest.raises(UserError, match="need the teacher's layers: a "
                     "--teacher_model SavedModel"):
    DistillConfig.from_values(base(
        tmp_path, teacher_probs_file="p.tsv", stage="intermediate",
        intermediate_losses=["hidden"])).validate()
  DistillConfig.from_values(base(tmp_path,
                                 teacher_probs_file="p.tsv")).validate()


# ----------------------------------------------------------------------------
# The flags, made from the config fields.


def script_config(script):
  import importlib
  return importlib.import_module(f"bert.{script}").CONFIG


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_flag_has_its_fields_default_and_help(script):
  from tests import helpers
  config_class = script_config(script)
  flag_values = helpers.script_flags(config_class)
  fields = dataclasses.fields(config_class)
  assert fields
  for field in fields:
    flag = flag_values[field.name]
    default = (tuple(flag.default) if isinstance(flag.default, list)
               else flag.default)
    assert default == field.default, field.name
    # (An enum's help starts with its choices.)
    assert flag.help.endswith(field.metadata["help"]), field.name
    assert field.metadata["help"], field.name
  # The config of the defaults is the config of no flags.
  assert config_class.from_values(
      flag_values.flag_values_dict()) == config_class.from_values({})


def test_each_script_has_its_own_config():
  assert [script_config(s) for s in SCRIPTS] == [RunConfig, DistillConfig,
                                                 PretrainConfig]


def test_flag_types_and_choices():
  from tests import helpers
  values = helpers.script_flags(DistillConfig, [
      "prog", "--labels=a,b", "--intermediate_losses=hidden,attention",
      "--teacher_model=t1, t2", "--init_from_teacher_layers=0,2",
      "--has_header", "--max_seq_length=64", "--alpha=0.25",
      "--distill_objective=kl", "--kernels=fused",
      "--export_position_blocks=4"]).flag_values_dict()
  config = DistillConfig.from_values(values)
  assert config.labels == ("a", "b")
  assert config.intermediate_losses == ("hidden", "attention")
  assert config.teacher_model == ("t1", "t2")
  assert config.init_from_teacher_layers == (0, 2)
  assert config.has_header is True and config.max_seq_length == 64
  assert (config.alpha, config.distill_objective) == (0.25, "kl")
  assert (config.kernels, config.export_position_blocks) == ("fused", 4)
  from absl import flags
  for bad in ("--kernels=xla", "--precision=float8", "--stage=three",
              "--distribution_strategy=any", "--student_type=cnn"):
    with pytest.raises(flags.IllegalFlagValueError):
      helpers.script_flags(DistillConfig, ["prog", bad])


def test_pretraining_flags_are_its_own():
  from tests import helpers
  flag_values = helpers.script_flags(PretrainConfig)
  assert flag_values["log_steps"].default == 100
  assert helpers.script_flags(RunConfig)["log_steps"].default == 50
  for name in ("task_name", "do_predict", "temperature", "data_dir"):
    assert name not in flag_values, name
  assert "export_position_blocks" not in flag_values
  assert flag_values["kernels"].default == "auto"


@pytest.mark.slow
def test_pretraining_help_lists_only_its_flags():
  """`run_pretraining.py --helpfull` as a script: none of the classifier's
  flags, its own --log_steps default."""
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, "bert", "run_pretraining.py"),
       "--helpfull"], capture_output=True, text=True, timeout=120,
      env={**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"})
  help_text = result.stdout  # (absl exits with 1 after the help.)
  assert "--log_steps" in help_text, result.stderr[-2000:]
  assert "--input_file" in help_text
  assert "--max_predictions_per_seq" in help_text
  for name in ("--task_name", "--do_predict", "--teacher_model", "--alpha:"):
    assert name not in help_text, name
  log_steps = help_text[help_text.index("--log_steps"):]
  assert log_steps.splitlines()[1].strip() == "(default: '100')"


def _all_scripts() -> list[str]:
  """The bert/ modules that run as scripts (`if __name__ == "__main__"`)."""
  names = []
  for name in sorted(os.listdir(os.path.join(ROOT, "bert"))):
    if name.endswith(".py"):
      with open(os.path.join(ROOT, "bert", name), encoding="utf-8") as f:
        if 'if __name__ == "__main__":' in f.read():
          names.append(name[:-3])
  return names


@pytest.mark.parametrize("script", _all_scripts())
def test_no_script_imports_another(script):
  with open(os.path.join(ROOT, "bert", f"{script}.py"), encoding="utf-8") as f:
    tree = ast.parse(f.read())
  imported = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom):
      imported |= {a.name for a in node.names}
      imported.add(node.module)
    elif isinstance(node, ast.Import):
      imported |= {a.name for a in node.names}
  others = {s for s in _all_scripts() if s != script}
  assert not {name.split(".")[-1] for name in imported if name} & others


def test_importing_a_module_defines_no_flags():
  """Flags are defined only when a script runs: a definition at import would
  change the defaults of whichever script shares the name (a `--seed`
  redefined this way once changed the dataset another script built)."""
  code = ("import importlib, pkgutil\n"
          "from absl import app, flags, logging\n"
          "import tensorflow\n"
          "import bert\n"
          "before = set(flags.FLAGS)\n"
          "for m in pkgutil.iter_modules(bert.__path__):\n"
          "  importlib.import_module('bert.' + m.name)\n"
          "print(sorted(set(flags.FLAGS) - before))\n")
  result = subprocess.run(
      [sys.executable, "-c", code], capture_output=True, text=True,
      timeout=300, cwd=ROOT,
      env={**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"})
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("config_class", [RunConfig, DistillConfig,
                                          PretrainConfig])
def test_googles_ignored_flags_are_accepted(config_class):
  from tests import helpers
  flag_values = helpers.script_flags(config_class, [
      "prog", "--master=grpc://10.0.0.2:8470", "--num_tpu_cores=8",
      "--iterations_per_loop=500", "--output_dir=out"])
  assert flag_values.iterations_per_loop == 500
  config = config_class.from_values(flag_values.flag_values_dict())
  assert config.output_dir == "out"
  for name in ("master", "num_tpu_cores", "iterations_per_loop"):
    assert name not in config.to_dict()


# What training_keys and path_keys were when each config listed them.
OLD_RUN_TRAINING_KEYS = (
    "task_name", "data_dir", "bert_config_file", "vocab_file",
    "spm_model_file", "init_checkpoint", "do_lower_case", "max_seq_length",
    "train_batch_size", "learning_rate", "num_train_epochs",
    "warmup_proportion", "group_by_length", "seed", "do_distill",
    "temperature", "text_column", "text_b_column", "label_column", "labels",
    "has_header", "bert_hub_module_handle", "precision")
OLD_RUN_PATH_KEYS = ("data_dir", "bert_config_file", "vocab_file",
                     "spm_model_file", "output_dir", "init_checkpoint",
                     "export_dir", "cache_dir")
OLD_DISTILL_TRAINING_KEYS = OLD_RUN_TRAINING_KEYS + (
    "teacher_model", "teacher_probs_file", "ensemble_mean", "alpha",
    "distill_objective", "alpha_schedule", "temperature_schedule",
    "transfer_file", "init_from_teacher_layers", "student_type", "stage",
    "intermediate_losses", "layer_map", "intermediate_fraction",
    "train_on_transfer_only")
OLD_DISTILL_PATH_KEYS = OLD_RUN_PATH_KEYS + ("transfer_file", "teacher_model",
                                             "teacher_probs_file")
OLD_PRETRAIN_TRAINING_KEYS = (
    "input_file", "bert_config_file", "init_checkpoint", "max_seq_length",
    "max_predictions_per_seq", "train_batch_size", "learning_rate",
    "num_warmup_steps", "seed", "precision")
OLD_PRETRAIN_PATH_KEYS = ("output_dir", "bert_config_file", "vocab_file",
                          "init_checkpoint")


@pytest.mark.parametrize("config_class, training_keys, path_keys", [
    (RunConfig, OLD_RUN_TRAINING_KEYS, OLD_RUN_PATH_KEYS),
    (DistillConfig, OLD_DISTILL_TRAINING_KEYS, OLD_DISTILL_PATH_KEYS),
    (PretrainConfig, OLD_PRETRAIN_TRAINING_KEYS, OLD_PRETRAIN_PATH_KEYS)])
def test_key_lists_come_from_the_fields(config_class, training_keys,
                                        path_keys):
  for keys, old in ((config_class.training_keys(), training_keys),
                    (config_class.path_keys(), path_keys)):
    assert len(keys) == len(set(keys))
    assert set(keys) == set(old)
  assert config_class().training_keys() == config_class.training_keys()
  # The new settings change how training runs, not what it produces.
  assert "kernels" not in config_class.training_keys()
  assert "export_position_blocks" not in config_class.training_keys()
