"""The settings of one run as config objects, and the run's record.

`RunConfig` holds everything `run_classifier.py` takes; `DistillConfig` adds
the distillation settings of `run_classifier_distill.py`; `PretrainConfig`
is `run_pretraining.py`'s.  Each setting is declared once, as a field with
its default, its help and what it is (`setting`): `define_flags` makes a
script's absl flags from its config's fields, and `training_keys` and
`path_keys` come from the same declarations.  Each script's `main` builds
its config from its flags, validates it before any file is read or model
built, and hands it to the library, which never reads absl flags.

The run's record, `<output_dir>/run_config.json`, is written when training
starts: the settings, resolved absolute paths, library versions and the
teacher's identity.  Eval, predict and export read it, so

  run_classifier_distill.py --do_export --output_dir=X --export_dir=Y

needs neither the teacher nor the training flags: every setting not given on
the command line comes from the record.  Resuming training with a setting
that changes what is trained (`training_keys`) stops with the list of
differences.

This module does not import TensorFlow (the record code relies on that):
choices that TensorFlow modules declare are named here as "module:NAME" and
read only when flags are defined or a config validated.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import json
import math
import os
import platform
import types
import typing
from typing import Any, Iterable, Mapping, TypeVar

from absl import flags, logging

from bert import files
from bert.errors import UserError

RECORD_FILE = "run_config.json"


C = TypeVar("C", bound="Config")

ACTIONS = ("do_train", "do_eval", "do_predict", "do_export",
           "do_export_encoder")

# Google's flags that mean nothing here, accepted so that its command lines
# keep working: (name, type, default, help).  They are not settings.
IGNORED_FLAGS = (
    ("master", str, None, "Ignored (TF1 TPU master address)."),
    ("num_tpu_cores", int, 8, "Ignored."),
    ("iterations_per_loop", int, 1000, "Ignored (TPU estimator)."),
)


def setting(default: Any, help: str, *, trains: bool = False,
            path: bool = False, choices: tuple[str, ...] | None = None
            ) -> Any:
  """A config field: its default and its flag's help, declared once.

  Args:
    default: the setting's default (and its flag's).
    help: the flag's --help text.
    trains: it changes what training produces (`training_keys`: a resumed
      run must keep it).
    path: it holds file paths (`path_keys`: recorded as absolute paths).
    choices: the allowed values (an enum flag), a tuple; an entry
      "module:NAME" stands for the names in that module's tuple (or dict),
      for those that a TensorFlow-importing module declares.
  """
  return dataclasses.field(default=default, metadata={
      "help": help, "trains": trains, "path": path, "choices": choices})


def choices_of(field: dataclasses.Field) -> tuple[str, ...] | None:
  """The field's allowed values ("module:NAME" entries imported)."""
  choices = field.metadata.get("choices")
  if choices is None:
    return None
  names = []
  for entry in choices:
    if ":" in entry:
      module, name = entry.split(":")
      names.extend(getattr(importlib.import_module(module), name))
    else:
      names.append(entry)
  return tuple(names)


def _flag_type(annotation) -> type:
  """str, int, float, bool or list: the flag type of a field's annotation
  (Optional[X] is X's; a tuple is a comma-separated list)."""
  if typing.get_origin(annotation) in (typing.Union, types.UnionType):
    (annotation,) = [a for a in typing.get_args(annotation)
                     if a is not type(None)]
  if typing.get_origin(annotation) is tuple:
    return list
  if annotation not in (str, int, float, bool):
    raise TypeError(f"no flag type for {annotation!r}")
  return annotation


def define_flags(config_class: type[Config],
                 flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines one absl flag per field of `config_class` (its type from the
  annotation, its default and help from the field), plus Google's ignored
  flags (`IGNORED_FLAGS`)."""
  hints = typing.get_type_hints(config_class)
  for field in dataclasses.fields(config_class):
    _define(field.name, _flag_type(hints[field.name]), field.default,
            field.metadata["help"], choices_of(field), flag_values)
  for name, kind, default, help_text in IGNORED_FLAGS:
    _define(name, kind, default, help_text, None, flag_values)


def _define(name, kind, default, help_text, choices, flag_values) -> None:
  fv = {"flag_values": flag_values}
  if choices:
    flags.DEFINE_enum(name, default, list(choices), help_text, **fv)
  elif kind is list:
    flags.DEFINE_list(name, None if default is None else list(default),
                      help_text, **fv)
  else:
    define = {str: flags.DEFINE_string, int: flags.DEFINE_integer,
              float: flags.DEFINE_float, bool: flags.DEFINE_bool}[kind]
    define(name, default, help_text, **fv)


def settle_flags(config_class: type[C],
                 flag_values: flags.FlagValues = flags.FLAGS
                 ) -> tuple[C, dict | None]:
  """The run's validated config (and record) from parsed flags (`settle`;
  the flags given on the command line are the explicit ones)."""
  explicit = {name for name in flag_values if flag_values[name].present}
  return settle(config_class, flag_values.flag_values_dict(), explicit)


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

  @classmethod
  def training_keys(cls) -> tuple[str, ...]:
    """Settings that change what training produces: a resumed run must
    keep them."""
    return tuple(f.name for f in dataclasses.fields(cls)
                 if f.metadata["trains"])

  @classmethod
  def path_keys(cls) -> tuple[str, ...]:
    """Fields holding file paths (recorded as absolute paths)."""
    return tuple(f.name for f in dataclasses.fields(cls)
                 if f.metadata["path"])

  def _check_choices(self, *names: str) -> None:
    """Each of these settings is one of its field's choices."""
    fields = {f.name: f for f in dataclasses.fields(self)}
    for name in names:
      value, allowed = getattr(self, name), choices_of(fields[name])
      if value is not None and value not in allowed:
        raise UserError(f"--{name}={value}: expected one of "
                        f"{', '.join(allowed)}")


_JIT_HELP = ("Compile the training step with XLA (fused kernels instead of "
             "many small ops; batches are cut to power-of-two lengths, each "
             "compiled once).")
_KERNELS_HELP = (
    "Which implementation runs the training step's layer kernels: reference "
    "(plain TensorFlow ops), fused (bert/fused.py's XLA kernels with their "
    "own gradients, for CPUs) or auto (fused on CPU without --jit_compile, "
    "reference on GPU, TPU and with --jit_compile).")
_STRATEGY_HELP = ("auto: a TPU with --use_tpu, MirroredStrategy over several "
                  "GPUs, else one device.")


@dataclasses.dataclass(frozen=True)
class DeviceConfig(Config):
  """Where and how a training step runs: the settings every script shares."""
  # Where training runs (tf.distribute).  Google's TPU flags mean what they
  # meant there; an unreachable TPU is an error.
  use_tpu: bool = setting(False, "Train on the Cloud TPU --tpu_name.")
  tpu_name: str | None = setting(
      None, "The Cloud TPU (its name, a grpc:// address, or 'local' on a TPU "
      "VM).")
  tpu_zone: str | None = setting(None, "GCE zone of --tpu_name.")
  gcp_project: str | None = setting(None, "GCP project of --tpu_name.")
  distribution_strategy: str = setting(
      "auto", _STRATEGY_HELP, choices=("bert.training:STRATEGIES",))
  precision: str = setting(
      "float32", "What training computes in. mixed_bfloat16 (CPUs with AMX "
      "or AVX512-BF16, TPUs, Ampere+ GPUs) and mixed_float16 (GPUs; dynamic "
      "loss scaling) keep variables, optimiser state and checkpoints in "
      "float32; eval, predict and exports compute in float32.", trains=True,
      choices=("bert.training:PRECISIONS",))
  jit_compile: bool = setting(False, _JIT_HELP)
  kernels: str = setting("auto", _KERNELS_HELP,
                         choices=("auto", "bert.modeling:KERNELS"))


@dataclasses.dataclass(frozen=True)
class RunConfig(DeviceConfig):
  """What run_classifier.py does (the flags of the same names)."""
  task_name: str | None = setting(
      None, "Task: cola, mnli, mrpc, xnli, sst-2, emotion, csv, tsv or "
      "jsonl.", trains=True)
  data_dir: str | None = setting(
      None, "Directory with the task's data files.", trains=True, path=True)
  bert_config_file: str | None = setting(
      None, "The model's bert_config.json.", trains=True, path=True)
  vocab_file: str | None = setting(
      None, "WordPiece vocab.txt of the model.", trains=True, path=True)
  spm_model_file: str | None = setting(
      None, "SentencePiece model; replaces --vocab_file when given.",
      trains=True, path=True)
  output_dir: str | None = setting(
      None, "Checkpoints, cached features, results and the run's record "
      "(run_config.json) go here.", path=True)
  init_checkpoint: str | None = setting(
      None, "Checkpoint to start from (e.g. Google's bert_model.ckpt or a "
      "fine-tuned model.ckpt-N).", trains=True, path=True)
  do_lower_case: bool = setting(
      True, "Lower-case the input (uncased models).", trains=True)
  max_seq_length: int = setting(
      128, "Tokens per example after WordPiece, longer ones are truncated, "
      "shorter padded.", trains=True)
  do_train: bool = setting(False, "Fine-tune on the train split.")
  do_eval: bool = setting(False, "Evaluate on the dev split.")
  do_predict: bool = setting(
      False, "Write test_results.tsv for the test split.")
  do_export: bool = setting(False, "Export a SavedModel to --export_dir.")
  export_dir: str | None = setting(
      None, "Base directory of exported versions (export/<name>).",
      path=True)
  export_jit_compile: bool = setting(
      False, "Export a model that serves through XLA (serving_default and "
      "predict_text): faster at small batches on CPU; TF Serving then needs "
      "--xla_cpu_compilation_enabled=true (scripts/serve.sh adds it). BERT "
      "classifiers only.")
  train_batch_size: int = setting(32, "Training batch size.", trains=True)
  eval_batch_size: int = setting(8, "Eval batch size.")
  predict_batch_size: int = setting(8, "Predict batch size.")
  learning_rate: float = setting(5e-5, "Peak learning rate of Adam.",
                                 trains=True)
  num_train_epochs: float = setting(3.0, "Epochs of training.", trains=True)
  warmup_proportion: float = setting(
      0.1, "Fraction of the steps with linear learning-rate warm-up.",
      trains=True)
  save_checkpoints_steps: int = setting(1000, "Checkpoint every N steps.")
  keep_checkpoint_max: int = setting(3, "Checkpoints kept.")
  log_steps: int = setting(50, "Log progress every N steps.")
  group_by_length: int = setting(
      0, "Training batches hold texts of similar length: each run of N "
      "batches' worth of shuffled examples is sorted by length before "
      "batching (0: off). Padding is cut per batch, so this trains faster "
      "when text lengths vary; 50 is a good value.", trains=True)
  cache_dir: str | None = setting(
      None, "Where the feature caches (and the distill script's "
      "teacher-logits caches) go; default --output_dir.  Runs that share it "
      "reuse them.", path=True)
  seed: int = setting(12345, "Random seed (shuffling, init, dropout).",
                      trains=True)
  do_distill: bool = setting(
      False, "Train with softmax(logits / T) and the loss times T^2 (a "
      "teacher for distillation).", trains=True)
  temperature: float = setting(
      1.0, "Temperature T of --do_distill (a plain softmax without it).",
      trains=True)
  # The generic csv/tsv/jsonl task.
  text_column: str | None = setting(None, "csv/tsv/jsonl: text column.",
                                    trains=True)
  text_b_column: str | None = setting(
      None, "csv/tsv/jsonl: second text column.", trains=True)
  label_column: str | None = setting(None, "csv/tsv/jsonl: label column.",
                                     trains=True)
  labels: tuple[str, ...] | None = setting(
      None, "csv/tsv/jsonl: the label list.", trains=True)
  has_header: bool | None = setting(
      None, "csv/tsv: the first line is a header.", trains=True)
  # TF Hub encoders.
  bert_hub_module_handle: str | None = setting(
      None, "A TF2 SavedModel in TF Hub's BERT encoder format (a local path "
      "or hub handle); replaces --bert_config_file/--init_checkpoint",
      trains=True)
  do_export_encoder: bool = setting(
      False, "Export this project's encoder in TF Hub's BERT encoder format "
      "to --export_dir")
  export_position_blocks: int = setting(
      2, "Exports split each example's positions into this many blocks that "
      "TensorFlow's executor runs concurrently, so batch-1 requests keep "
      "several CPU cores busy; 1 turns it off.")

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
    self._check_choices("precision", "kernels")
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
    _at_least("export_position_blocks", self.export_position_blocks, 1)
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


@dataclasses.dataclass(frozen=True)
class DistillConfig(RunConfig):
  """What run_classifier_distill.py does: every RunConfig setting plus the
  distillation flags of the same names."""
  # This script's default: T = 10 with alpha = 0.5 (the seed project's
  # setting) gave the best dev accuracy of the settings tried on waimai
  # (benchmarks/distill_experiment.py; see the README).
  temperature: float = setting(
      10.0, "Temperature T of the soft targets (the teacher's and the "
      "student's softmax(logits / T)).", trains=True)
  teacher_model: tuple[str, ...] = setting(
      (), "Exported teacher SavedModel (a version directory or its base "
      "path); a comma-separated list for an ensemble.", trains=True,
      path=True)
  teacher_probs_file: str | None = setting(
      None, "A teacher given as a file (any framework, an external model, "
      "hand-made soft labels): class probabilities per training example in "
      "test_results.tsv's format, one line each for the train split, then "
      "the transfer file; alone or with --teacher_model, as one more "
      "ensemble member.", trains=True, path=True)
  ensemble_mean: str = setting(
      "arithmetic", "How an ensemble's distributions are averaged.",
      trains=True, choices=("bert.distillation:ENSEMBLE_MEANS",))
  alpha: float = setting(
      0.5, "Weight of the teacher's soft targets; the gold labels get "
      "1 - alpha.", trains=True)
  # None: soft_ce for a BERT student, logits_mse for a BiLSTM (Tang et al.).
  distill_objective: str | None = setting(
      None, "soft_ce: CE(softmax(v/T), softmax(z/T)) * T^2 (Hinton; the "
      "default); kl: the same as a KL divergence; logits_mse: MSE of the "
      "logits (Tang et al.; the default for --student_type=bilstm).",
      trains=True, choices=("bert.distillation:OBJECTIVES",))
  alpha_schedule: str = setting(
      "constant", "anneal: teacher annealing (BAM!), alpha goes 1 -> 0.",
      trains=True, choices=("bert.distillation:ALPHA_SCHEDULES",))
  temperature_schedule: str = setting(
      "constant", "linear: the temperature decays from --temperature to 1.",
      trains=True, choices=("bert.distillation:TEMPERATURE_SCHEDULES",))
  cache_teacher_logits: bool = setting(
      False, "Compute the teacher's logits once per training example and "
      "reuse them.")
  transfer_file: str | None = setting(
      None, "Extra unlabelled text in the task's format; learnt from the "
      "teacher's targets only.", trains=True, path=True)
  init_from_teacher_layers: tuple[int, ...] | None = setting(
      None, "Initialise the student from the teacher: embeddings, pooler, "
      "head and these teacher layers (e.g. 0,2,4,6,8,10), as DistilBERT.",
      trains=True)
  teacher_eval_sample: int = setting(
      512, "Dev examples on which the teacher's accuracy is checked before "
      "training.")
  student_type: str = setting(
      "bert", "bert, or bilstm (Tang et al.; --bert_config_file is then a "
      "bilstm config such as configs/bilstm_config.json).", trains=True,
      choices=("bert.bilstm:STUDENT_TYPES",))
  stage: str = setting(
      "prediction", "prediction: learn the teacher's predictions; "
      "intermediate: only TinyBERT's --intermediate_losses; both: "
      "intermediate for --intermediate_fraction of the steps, then "
      "prediction.", trains=True, choices=("bert.tinybert:STAGES",))
  intermediate_losses: tuple[str, ...] = setting(
      (), "With --stage=intermediate or both: any of embedding, hidden, "
      "attention.", trains=True)
  layer_map: str = setting(
      "uniform", "The teacher layer each student layer learns from: "
      "uniform, last, or a list (e.g. 1,3).", trains=True)
  intermediate_fraction: float = setting(
      0.75, "--stage=both: the fraction of the steps in the intermediate "
      "stage.", trains=True)
  train_on_transfer_only: bool = setting(
      False, "Train on --transfer_file alone, without the task's train "
      "split (e.g. general distillation on unlabelled text).", trains=True)

  SCRIPT = "run_classifier_distill.py"

  @classmethod
  def from_values(cls, values: Mapping[str, Any]) -> "DistillConfig":
    values = dict(values)
    teachers = values.get("teacher_model")
    if isinstance(teachers, str):
      teachers = teachers.split(",")
    if teachers is not None:
      values["teacher_model"] = [p.strip() for p in teachers if p.strip()]
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


@dataclasses.dataclass(frozen=True)
class PretrainConfig(DeviceConfig):
  """What run_pretraining.py does (Google's flags of the same names)."""
  input_file: str | None = setting(
      None, "Input TFRecord files (comma list and globs) from "
      "create_pretraining_data.py.", trains=True)
  output_dir: str | None = setting(
      None, "Checkpoints, eval_results.txt and the run's record go here.",
      path=True)
  do_train: bool = setting(False, "Pre-train.")
  do_eval: bool = setting(
      False, "Evaluate (masked-LM and next-sentence accuracy and loss).")
  bert_config_file: str | None = setting(
      None, "The model's bert_config.json.", trains=True, path=True)
  vocab_file: str | None = setting(
      None, "Optional: checked against the config's vocab_size.", path=True)
  init_checkpoint: str | None = setting(
      None, "Start from this checkpoint (e.g. Google's bert_model.ckpt: "
      "continued pre-training).", trains=True, path=True)
  max_seq_length: int = setting(128, "As create_pretraining_data.py's.",
                                trains=True)
  max_predictions_per_seq: int = setting(
      20, "As create_pretraining_data.py's.", trains=True)
  train_batch_size: int = setting(32, "Global training batch size.",
                                  trains=True)
  eval_batch_size: int = setting(8, "Eval batch size.")
  learning_rate: float = setting(5e-5, "Peak learning rate of Adam.",
                                 trains=True)
  num_train_steps: int = setting(100000, "Training steps.")
  num_warmup_steps: int = setting(10000, "Warm-up steps.", trains=True)
  save_checkpoints_steps: int = setting(1000, "Checkpoint every N steps.")
  keep_checkpoint_max: int = setting(3, "Checkpoints kept.")
  max_eval_steps: int = setting(100, "Eval batches at most.")
  log_steps: int = setting(100, "Log progress every N steps.")
  seed: int = setting(12345, "Random seed.", trains=True)

  SCRIPT = "run_pretraining.py"

  def actions(self) -> tuple[str, ...]:
    return ("do_train", "do_eval")

  def validate(self) -> None:
    if not (self.do_train or self.do_eval):
      raise UserError("at least one of --do_train, --do_eval must be set")
    self._check_choices("precision", "kernels")
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


# Path settings that hold comma-separated files and globs.
LIST_PATH_KEYS = ("transfer_file",)
# Training settings that a resumed run may change (with a warning): how long
# it trains.
LENGTH_KEYS = ("num_train_epochs", "num_train_steps")


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
