"""The settings of one run as config objects, and the run's record.

`RunConfig` holds everything `run_classifier.py` takes; `DistillConfig` adds
the distillation settings of `run_classifier_distill.py`.  Each script's
`main` builds one from its flags, validates it before any file is read or
model built, and hands it to the library, which never reads absl flags.

The run's record, `<output_dir>/run_config.json`, is written when training
starts: the settings, resolved absolute paths, library versions and the
teacher's identity.  Eval, predict and export read it, so

  run_classifier_distill.py --do_export --output_dir=X --export_dir=Y

needs neither the teacher nor the training flags: every setting not given on
the command line comes from the record.  Resuming training with a setting
that changes what is trained (`TRAINING_KEYS`) stops with the list of
differences.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import platform
from typing import Any, Iterable, Mapping, TypeVar

from absl import logging

from bert import files
from bert.errors import UserError

RECORD_FILE = "run_config.json"


C = TypeVar("C", bound="Config")

ACTIONS = ("do_train", "do_eval", "do_predict", "do_export",
           "do_export_encoder")


@dataclasses.dataclass(frozen=True)
class Config:
  """What every run's config does: built from flag values, recorded as a
  dict (the fields come from the subclasses)."""

  @classmethod
  def from_values(cls: type[C], values: Mapping[str, Any]) -> C:
    """A config from {name: value} (e.g. every flag's value): unknown names
    are ignored, None takes the field's default, lists become tuples."""
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: tuple(v) if isinstance(v, list) else v
              for k, v in values.items() if k in names and v is not None}
    return cls(**kwargs)

  def replace(self: C, **changes) -> C:
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(self).items()}


@dataclasses.dataclass(frozen=True)
class RunConfig(Config):
  """What run_classifier.py does (the flags of the same names)."""
  task_name: str | None = None
  data_dir: str | None = None
  bert_config_file: str | None = None
  vocab_file: str | None = None
  spm_model_file: str | None = None
  output_dir: str | None = None
  init_checkpoint: str | None = None
  do_lower_case: bool = True
  max_seq_length: int = 128
  do_train: bool = False
  do_eval: bool = False
  do_predict: bool = False
  do_export: bool = False
  export_dir: str | None = None
  export_jit_compile: bool = False
  train_batch_size: int = 32
  eval_batch_size: int = 8
  predict_batch_size: int = 8
  learning_rate: float = 5e-5
  num_train_epochs: float = 3.0
  warmup_proportion: float = 0.1
  save_checkpoints_steps: int = 1000
  keep_checkpoint_max: int = 3
  log_steps: int = 50
  group_by_length: int = 0
  cache_dir: str | None = None
  seed: int = 12345
  do_distill: bool = False
  # run_classifier.py's default: a plain softmax unless --do_distill.
  temperature: float = 1.0
  text_column: str | None = None
  text_b_column: str | None = None
  label_column: str | None = None
  labels: tuple[str, ...] | None = None
  has_header: bool | None = None
  use_tpu: bool = False
  tpu_name: str | None = None
  tpu_zone: str | None = None
  gcp_project: str | None = None
  distribution_strategy: str = "auto"
  precision: str = "float32"
  jit_compile: bool = False
  bert_hub_module_handle: str | None = None
  do_export_encoder: bool = False

  SCRIPT = "run_classifier.py"

  @property
  def features_dir(self) -> str:
    """Where feature (and teacher-logits) caches go."""
    return self.cache_dir or self.output_dir

  def validate(self) -> None:
    """Raises UserError naming the first bad flag, before any work."""
    if not any(getattr(self, a) for a in self.actions()):
      raise UserError("at least one of " + ", ".join(
          f"--{a}" for a in self.actions()) + " must be set")
    for name in ("output_dir", "task_name"):
      if not getattr(self, name):
        raise UserError(f"--{name} is required")
    if self.needs_data and not self.data_dir:
      raise UserError("--data_dir is required")
    if not self.bert_hub_module_handle:
      if not self.bert_config_file:
        raise UserError("--bert_config_file is required")
      if not (self.vocab_file or self.spm_model_file):
        raise UserError("--vocab_file (or --spm_model_file) is required")
    if self.bert_hub_module_handle and (self.do_export or
                                        self.do_export_encoder):
      raise UserError("--do_export/--do_export_encoder with "
                      "--bert_hub_module_handle are not supported: they "
                      "export this project's BertModel")
    if self.do_export and not self.export_dir:
      raise UserError("--do_export needs --export_dir (the base directory "
                      "of the exported versions, e.g. export/teacher)")
    _check_precision(self.precision)
    if self.bert_hub_module_handle and self.precision != "float32":
      raise UserError(f"--precision={self.precision} with "
                      "--bert_hub_module_handle is not supported: a TF Hub "
                      "encoder computes in its own dtype")
    _check_jit_compile(self.jit_compile, self.use_tpu)
    if self.jit_compile and self.bert_hub_module_handle:
      raise UserError("--jit_compile with --bert_hub_module_handle is not "
                      "supported: a TF Hub encoder is a Keras layer of its "
                      "own; train it without XLA")
    _at_least("max_seq_length", self.max_seq_length, 2)
    batch_sizes = (("train_batch_size", self.do_train),
                   ("eval_batch_size", self.do_eval),
                   ("predict_batch_size", self.do_predict))
    for name, used in batch_sizes:
      if used:
        _at_least(name, getattr(self, name), 1)
    for name in ("save_checkpoints_steps", "keep_checkpoint_max",
                 "log_steps"):
      _at_least(name, getattr(self, name), 1)
    _at_least("group_by_length", self.group_by_length, 0)
    if self.do_train:
      # 0 is allowed: the weights stay as loaded (a check of a pipeline).
      if not self.learning_rate >= 0 or math.isinf(self.learning_rate):
        raise UserError(f"--learning_rate must be a finite number >= 0, got "
                        f"{self.learning_rate}")
      _positive("num_train_epochs", self.num_train_epochs)
      if not 0.0 <= self.warmup_proportion <= 1.0:
        raise UserError(f"--warmup_proportion must be in [0, 1], got "
                        f"{self.warmup_proportion}")
    _positive("temperature", self.temperature)

  def actions(self) -> tuple[str, ...]:
    return ACTIONS

  @property
  def needs_data(self) -> bool:
    return self.do_train or self.do_eval or self.do_predict

  def training_keys(self) -> tuple[str, ...]:
    """Settings that change what training produces: a resumed run must
    keep them."""
    return ("task_name", "data_dir", "bert_config_file", "vocab_file",
            "spm_model_file", "init_checkpoint", "do_lower_case",
            "max_seq_length", "train_batch_size", "learning_rate",
            "num_train_epochs", "warmup_proportion", "group_by_length",
            "seed", "do_distill", "temperature", "text_column",
            "text_b_column", "label_column", "labels", "has_header",
            "bert_hub_module_handle", "precision")

  def path_keys(self) -> tuple[str, ...]:
    """Fields holding file paths (recorded as absolute paths)."""
    return ("data_dir", "bert_config_file", "vocab_file", "spm_model_file",
            "output_dir", "init_checkpoint", "export_dir", "cache_dir")


@dataclasses.dataclass(frozen=True)
class DistillConfig(RunConfig):
  """What run_classifier_distill.py does: every RunConfig setting plus the
  distillation flags of the same names."""
  # This script's default: T = 10 with alpha = 0.5 (the seed project's
  # setting) gave the best dev accuracy of the settings tried on waimai
  # (benchmarks/distill_experiment.py; see the README).
  temperature: float = 10.0
  teacher_model: tuple[str, ...] = ()
  teacher_probs_file: str | None = None
  ensemble_mean: str = "arithmetic"
  alpha: float = 0.5
  # None: soft_ce for a BERT student, logits_mse for a BiLSTM (Tang et al.).
  distill_objective: str | None = None
  alpha_schedule: str = "constant"
  temperature_schedule: str = "constant"
  cache_teacher_logits: bool = False
  transfer_file: str | None = None
  init_from_teacher_layers: tuple[int, ...] | None = None
  teacher_eval_sample: int = 512
  student_type: str = "bert"
  stage: str = "prediction"
  intermediate_losses: tuple[str, ...] = ()
  layer_map: str = "uniform"
  intermediate_fraction: float = 0.75
  train_on_transfer_only: bool = False

  SCRIPT = "run_classifier_distill.py"

  @classmethod
  def from_values(cls, values: Mapping[str, Any]) -> "DistillConfig":
    values = dict(values)
    if isinstance(values.get("teacher_model"), str):
      values["teacher_model"] = [p.strip() for p in
                                 values["teacher_model"].split(",")
                                 if p.strip()]
    layers = values.get("init_from_teacher_layers")
    if layers:
      try:
        values["init_from_teacher_layers"] = [int(v) for v in layers]
      except (TypeError, ValueError):
        raise UserError(
            "--init_from_teacher_layers must be comma-separated layer "
            f"numbers, got {','.join(map(str, layers))!r}") from None
    config = super().from_values(values)
    if config.distill_objective is None:
      config = config.replace(distill_objective=(
          "logits_mse" if config.student_type == "bilstm" else "soft_ce"))
    return config

  def actions(self) -> tuple[str, ...]:
    return ("do_train", "do_eval", "do_predict", "do_export")

  @property
  def needs_data(self) -> bool:
    return self.do_eval or self.do_predict or (
        self.do_train and not self.train_on_transfer_only)

  def validate(self) -> None:
    # Imported here: these pull in TensorFlow, the record does not need it.
    from bert import bilstm, distillation, tinybert
    if self.do_distill:
      raise UserError("--do_distill is run_classifier.py's (it trains a "
                      "teacher on softened targets); this script always "
                      "distils from --teacher_model")
    super().validate()
    if self.do_train and not (self.teacher_model or self.teacher_probs_file):
      raise UserError("--teacher_model (or --teacher_probs_file) is required "
                      "for --do_train")
    if not self.teacher_model and (self.stage != "prediction" or
                                   self.init_from_teacher_layers):
      raise UserError(f"--stage={self.stage} and --init_from_teacher_layers "
                      "need the teacher's layers: a --teacher_model "
                      "SavedModel, not only --teacher_probs_file")
    distillation.validate_distill_flags(
        self.alpha, self.temperature, self.distill_objective,
        self.alpha_schedule, self.temperature_schedule, self.ensemble_mean)
    tinybert.validate_flags(self.stage, self.intermediate_losses,
                            self.intermediate_fraction)
    if self.student_type not in bilstm.STUDENT_TYPES:
      raise UserError(f"--student_type must be one of "
                      f"{', '.join(bilstm.STUDENT_TYPES)}; got "
                      f"{self.student_type!r}")
    if self.init_from_teacher_layers:
      if min(self.init_from_teacher_layers) < 0:
        raise UserError("--init_from_teacher_layers: layer numbers start at "
                        f"0, got {min(self.init_from_teacher_layers)}")
      if self.student_type != "bert":
        raise UserError("--init_from_teacher_layers needs --student_type=bert")
    if self.jit_compile and self.student_type != "bert":
      raise UserError("--jit_compile is for BERT students: XLA has no kernel "
                      f"for the --student_type={self.student_type} LSTM op")
    if self.export_jit_compile and self.student_type != "bert":
      raise UserError("--export_jit_compile is for BERT students; a "
                      f"--student_type={self.student_type} export is served "
                      "as it is")
    if self.train_on_transfer_only and not self.transfer_file:
      raise UserError("--train_on_transfer_only needs --transfer_file")
    _at_least("teacher_eval_sample", self.teacher_eval_sample, 0)

  def training_keys(self) -> tuple[str, ...]:
    return super().training_keys() + (
        "teacher_model", "teacher_probs_file", "ensemble_mean", "alpha",
        "distill_objective",
        "alpha_schedule", "temperature_schedule", "transfer_file",
        "init_from_teacher_layers", "student_type", "stage",
        "intermediate_losses", "layer_map", "intermediate_fraction",
        "train_on_transfer_only")

  def path_keys(self) -> tuple[str, ...]:
    return super().path_keys() + ("transfer_file", "teacher_model",
                                  "teacher_probs_file")


@dataclasses.dataclass(frozen=True)
class PretrainConfig(Config):
  """What run_pretraining.py does (Google's flags of the same names)."""
  input_file: str | None = None
  output_dir: str | None = None
  do_train: bool = False
  do_eval: bool = False
  bert_config_file: str | None = None
  vocab_file: str | None = None
  init_checkpoint: str | None = None
  max_seq_length: int = 128
  max_predictions_per_seq: int = 20
  train_batch_size: int = 32
  eval_batch_size: int = 8
  learning_rate: float = 5e-5
  num_train_steps: int = 100000
  num_warmup_steps: int = 10000
  save_checkpoints_steps: int = 1000
  keep_checkpoint_max: int = 3
  max_eval_steps: int = 100
  log_steps: int = 100
  seed: int = 12345
  use_tpu: bool = False
  tpu_name: str | None = None
  tpu_zone: str | None = None
  gcp_project: str | None = None
  distribution_strategy: str = "auto"
  precision: str = "float32"
  jit_compile: bool = False

  SCRIPT = "run_pretraining.py"

  def actions(self) -> tuple[str, ...]:
    return ("do_train", "do_eval")

  def validate(self) -> None:
    if not (self.do_train or self.do_eval):
      raise UserError("at least one of --do_train, --do_eval must be set")
    _check_precision(self.precision)
    _check_jit_compile(self.jit_compile, self.use_tpu)
    for name in ("input_file", "output_dir", "bert_config_file"):
      if not getattr(self, name):
        raise UserError(f"--{name} is required")
    _at_least("max_seq_length", self.max_seq_length, 5)
    _at_least("max_predictions_per_seq", self.max_predictions_per_seq, 1)
    for name in ("save_checkpoints_steps", "keep_checkpoint_max", "log_steps"):
      _at_least(name, getattr(self, name), 1)
    if self.do_train:
      _at_least("train_batch_size", self.train_batch_size, 1)
      _at_least("num_train_steps", self.num_train_steps, 1)
      _at_least("num_warmup_steps", self.num_warmup_steps, 0)
      if not self.learning_rate >= 0 or math.isinf(self.learning_rate):
        raise UserError(f"--learning_rate must be a finite number >= 0, got "
                        f"{self.learning_rate}")
    if self.do_eval:
      _at_least("eval_batch_size", self.eval_batch_size, 1)
      _at_least("max_eval_steps", self.max_eval_steps, 1)

  def training_keys(self) -> tuple[str, ...]:
    return ("input_file", "bert_config_file", "init_checkpoint",
            "max_seq_length", "max_predictions_per_seq", "train_batch_size",
            "learning_rate", "num_warmup_steps", "seed", "precision")

  def path_keys(self) -> tuple[str, ...]:
    return ("output_dir", "bert_config_file", "vocab_file", "init_checkpoint")


# Path settings that hold comma-separated files and globs.
LIST_PATH_KEYS = ("transfer_file",)
# Training settings that a resumed run may change (with a warning): how long
# it trains.
LENGTH_KEYS = ("num_train_epochs", "num_train_steps")


def _check_precision(precision: str) -> None:
  # Not training.PRECISIONS: this module must not import TensorFlow.
  allowed = ("float32", "mixed_bfloat16", "mixed_float16")
  if precision not in allowed:
    raise UserError(f"--precision={precision}: expected one of "
                    f"{', '.join(allowed)}")


def _check_jit_compile(jit_compile: bool, use_tpu: bool) -> None:
  if jit_compile and use_tpu:
    raise UserError("--jit_compile with --use_tpu: a TPU compiles every step "
                    "with XLA already; leave --jit_compile out")


def _at_least(name: str, value: int, low: int) -> None:
  if value is None or value < low:
    raise UserError(f"--{name} must be >= {low}, got {value}")


def _positive(name: str, value: float) -> None:
  # `not value > 0` also rejects NaN.
  if not value > 0 or math.isinf(value):
    raise UserError(f"--{name} must be a finite number > 0, got {value}")


# ----------------------------------------------------------------------------
# The run's record.


def record_path(output_dir: str) -> str:
  return os.path.join(output_dir, RECORD_FILE)


def read_record(output_dir: str | None) -> dict | None:
  """`<output_dir>/run_config.json`, or None when there is none."""
  if not output_dir:
    return None
  path = record_path(output_dir)
  if not os.path.exists(path):
    return None
  try:
    with open(path, encoding="utf-8") as f:
      record = json.load(f)
  except (OSError, ValueError) as e:
    raise UserError(f"{path}: not a readable run record ({e})") from None
  if not isinstance(record.get("config"), dict):
    raise UserError(f"{path}: no \"config\" object; not a run record")
  return record


def _absolute(config: C) -> C:
  """Path settings made absolute (a record must not depend on the cwd)."""
  def absolute(key, value):
    if isinstance(value, tuple):
      return tuple(os.path.abspath(v) for v in value)
    if key in LIST_PATH_KEYS:
      return ",".join(os.path.abspath(v.strip()) for v in value.split(",")
                      if v.strip())
    return os.path.abspath(value)
  changes = {k: absolute(k, getattr(config, k))
             for k in config.path_keys() if getattr(config, k)}
  return config.replace(**changes)


def settle(cls: type[C], values: Mapping[str, Any],
           explicit: Iterable[str]) -> tuple[C, dict | None]:
  """The run's config from the command line and the record of its
  --output_dir, validated.

  Args:
    cls: RunConfig or DistillConfig.
    values: {flag name: value} of every flag.
    explicit: names of the flags given on the command line.

  Returns:
    (config, record or None).  Settings not given on the command line come
    from the record, the actions (--do_*) excepted.

  Raises:
    UserError: a bad flag, or --do_train resuming a recorded run with
    settings that change what is trained.
  """
  explicit = set(explicit)
  given = cls.from_values(values)
  record = read_record(given.output_dir)
  if record is None:
    config = given
  else:
    recorded = {k: v for k, v in record["config"].items()
                if k not in given.actions() and k not in explicit and
                k != "output_dir"}
    merged = {**given.to_dict(), **recorded,
              **{k: values[k] for k in explicit if k in values}}
    config = cls.from_values(merged)
  try:
    config.validate()
  except UserError as e:
    if record is None and not config.do_train and config.output_dir:
      raise UserError(
          f"{e} (no run record {record_path(config.output_dir)}: give the "
          "settings the model was trained with)") from None
    raise
  config = _absolute(config)
  if record is not None and config.do_train:
    _check_resume(config, record)
  return config, record


def _check_resume(config: RunConfig, record: dict) -> None:
  if record.get("script") != config.SCRIPT:
    raise UserError(
        f"{record_path(config.output_dir)}: this --output_dir holds a run of "
        f"{record.get('script')}, not {config.SCRIPT}; use another "
        "--output_dir")
  recorded = record["config"]
  ours = config.to_dict()
  differ = [k for k in config.training_keys()
            if k in recorded and recorded[k] != ours[k]]
  listed = "; ".join(f"--{k}: recorded {recorded[k]!r}, now {ours[k]!r}"
                     for k in differ)
  if set(differ) - set(LENGTH_KEYS):
    raise UserError(
        f"{record_path(config.output_dir)}: this --output_dir holds a run "
        f"with other settings ({listed}); use a new --output_dir, or the "
        "recorded settings to resume it")
  if differ:
    logging.warning("Resuming %s with another length (%s): the learning-rate "
                    "schedule follows the new number of steps",
                    config.output_dir, listed)


def write_record(config: RunConfig, extra: dict | None = None) -> str:
  """Writes `<output_dir>/run_config.json` atomically; returns its path.

  A resumed run keeps the record, rewritten only when its length changed
  (see `settle`), with the time of the change as "updated".
  """
  path = record_path(config.output_dir)
  os.makedirs(config.output_dir, exist_ok=True)
  old = read_record(config.output_dir)
  if old is not None and old["config"] == config.to_dict():
    return path
  import numpy as np
  import tensorflow as tf
  now = datetime.datetime.now().isoformat(timespec="seconds")
  record = {
      "script": config.SCRIPT,
      "created": old["created"] if old and "created" in old else now,
      **({"updated": now} if old else {}),
      "config": config.to_dict(),
      "versions": {"python": platform.python_version(),
                   "tensorflow": tf.__version__, "numpy": np.__version__},
      **(extra or {}),
  }
  files.write_text_atomically(
      path, json.dumps(record, indent=2, ensure_ascii=False) + "\n")
  return path
