"""The distillation objective of one run, built from its config, the teacher
and the student: what `run_classifier_distill.py` hands to the `Trainer`.

`build` puts together
  - the prediction loss (`distillation.distillation_loss`: soft labels from
    one teacher or an ensemble, mixed with the gold labels by alpha, with
    the alpha and temperature schedules),
  - where the teacher's logits come from (the SavedModels called on each
    batch inside the compiled step, or a table computed once,
    --cache_teacher_logits),
  - TinyBERT's stage plan and its projections (`tinybert`), which train and
    resume with the student but are not exported,
  - the learning-rate schedule (restarted at the stage switch of
    --stage=both),
  - how a fresh student is initialised (--init_checkpoint, or teacher
    layers as DistilBERT).

Shapes: K teachers, B batch, S sequence, C labels.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import tensorflow as tf
from absl import logging

from bert import checkpoints, classifier, distillation, files
from bert import export_reader
from bert import modeling, teacher as teacher_lib, tinybert, training
from bert.errors import UserError
from bert.run_config import DistillConfig

# features -> teacher logits [K, B, C] (K teachers, no gradient).
TeacherLogitsFn = Callable[[dict], tf.Tensor]


@dataclasses.dataclass
class Objective:
  """What the Trainer needs for one distillation run."""
  loss_fn: training.LossFn
  learning_rate: training.Schedule
  # Training-only variables (TinyBERT's projections) by checkpoint name:
  # trained and checkpointed with the student, never exported.
  extra_variables: dict[str, tf.Variable]
  # Initialises a fresh (not resumed) student.
  init_student: Callable[[], None]

  def trainable_variables(self, model: tf.Module) -> list[tf.Variable]:
    return list(model.trainable_variables) + list(
        self.extra_variables.values())


def online_teacher_logits(teacher: teacher_lib.Teacher) -> TeacherLogitsFn:
  """The teacher SavedModels called on the (trimmed) batch in the step."""
  return lambda features: teacher.logits(
      features["input_ids"], features["input_mask"], features["segment_ids"])


def cached_teacher_logits(table: np.ndarray) -> TeacherLogitsFn:
  """Rows of a [K, N, C] logits table picked by `example_index`."""
  table = tf.constant(table, tf.float32)
  return lambda features: tf.gather(table, features["example_index"], axis=1)


def make_loss_fn(model: tf.Module, teacher_logits_fn: TeacherLogitsFn,
                 config: DistillConfig, num_train_steps: int,
                 first_step: int = 0) -> training.LossFn:
  """The student's prediction loss for `training.Trainer`.

  Args:
    model: the student.
    teacher_logits_fn: features -> teacher logits [K, B, C].
    config: temperature, alpha, distill_objective, schedules, ensemble_mean.
    num_train_steps: the length of the schedules.
    first_step: the global step at which the schedules start (the
      prediction stage of TinyBERT's --stage=both).

  Returns:
    loss_fn(features, is_training, step) -> (scalar loss, {hard_loss,
    soft_loss, agreement}); features are dicts of int32 [B, S] / [B]
    tensors with label_ids, has_label (0 for transfer examples) and
    example_index.
  """
  def loss_fn(features, is_training, step):
    step = step - first_step
    temperature = distillation.temperature_at(
        step, num_train_steps, config.temperature,
        config.temperature_schedule)
    alpha = distillation.alpha_at(step, num_train_steps, config.alpha,
                                  config.alpha_schedule)
    teacher_logits = tf.stop_gradient(teacher_logits_fn(features))
    student_logits = model(features["input_ids"], features["input_mask"],
                           features["segment_ids"], training=is_training)
    if teacher_logits.shape[0] == 1:
      targets = {"teacher_logits": teacher_logits[0]}
    elif config.distill_objective == "logits_mse":
      targets = {"teacher_logits":
                 distillation.ensemble_teacher_logits(teacher_logits)}
    else:
      targets = {"teacher_probs": distillation.ensemble_teacher_probs(
          teacher_logits, temperature, config.ensemble_mean)}
    losses = distillation.distillation_loss(
        student_logits, labels=features["label_ids"],
        has_label=tf.cast(features["has_label"], tf.float32),
        temperature=temperature, alpha=alpha,
        objective=config.distill_objective, **targets)
    metrics = {"hard_loss": losses["hard_loss"],
               "soft_loss": losses["soft_loss"],
               "agreement": distillation.agreement(
                   student_logits, tf.reduce_mean(teacher_logits, 0))}
    return losses["loss"], metrics

  return loss_fn


def load_teacher(config: DistillConfig,
                 task: classifier.Task) -> teacher_lib.Teacher | None:
  """The teacher SavedModel(s), checked against the student's task (None
  when the only teacher is --teacher_probs_file)."""
  if not config.teacher_model:
    return None
  teacher = teacher_lib.Teacher(config.teacher_model)
  teacher.check_compatible(task.label_list, config.vocab_file,
                           config.spm_model_file, config.max_seq_length,
                           config.do_lower_case)
  return teacher


def training_examples(config: DistillConfig, task: classifier.Task) -> list:
  """The train split (unless --train_on_transfer_only) plus the transfer
  set."""
  examples = ([] if config.train_on_transfer_only else
              task.processor.get_train_examples(config.data_dir))
  if config.transfer_file:
    # Comma-separated files and globs: a transfer set often comes in shards.
    paths = files.expand_patterns(config.transfer_file, "--transfer_file")
    transfer = [e for path in paths
                for e in task.processor.read_unlabeled(path)]
    logging.info("Transfer set: %d unlabelled examples from %d file(s) (%s)",
                 len(transfer), len(paths), config.transfer_file)
    examples = examples + transfer
  return examples


def build(config: DistillConfig, task: classifier.Task,
          teacher: teacher_lib.Teacher, model: tf.Module, examples: list,
          num_train_steps: int, num_warmup_steps: int,
          strategy: tf.distribute.Strategy) -> Objective:
  """The run's objective (see the module docstring); checks the student
  against the teacher and reports the teacher's dev accuracy first."""
  with strategy.scope():  # The projections are created under it.
    plan, projections = tinybert.prepare(
        config.stage, config.intermediate_losses, config.layer_map,
        config.intermediate_fraction, model, teacher, num_train_steps)
  if teacher is not None:
    teacher_summary(config, teacher, task)
  teacher_logits_fn = logits_source(config, task, teacher, examples,
                                    num_train_steps)
  prediction_steps, first = plan.prediction_steps(num_train_steps)
  loss_fn = tinybert.make_loss_fn(
      model, plan, projections,
      make_loss_fn(model, teacher_logits_fn, config, prediction_steps, first),
      tinybert.teacher_intermediate_fn(teacher))
  if plan.stage == "both":
    schedule = tinybert.StagedLearningRate(
        config.learning_rate, num_train_steps, plan.split_step,
        config.warmup_proportion)
  else:
    schedule = classifier.learning_rate(config, num_train_steps,
                                        num_warmup_steps)

  def init_student():
    if config.init_from_teacher_layers:
      init_from_teacher(model, teacher, list(config.init_from_teacher_layers))
      return
    classifier.init_model(model, config.init_checkpoint)
    if projections and config.init_checkpoint:
      projections.init_from(
          checkpoints.resolve_checkpoint(config.init_checkpoint))

  extra = projections.variables_by_name() if projections else {}
  return Objective(loss_fn, schedule, extra, init_student)


def logits_source(config: DistillConfig, task: classifier.Task,
                  teacher: teacher_lib.Teacher | None, examples: list,
                  num_train_steps: int) -> TeacherLogitsFn:
  """Where each batch's teacher logits [K, B, C] come from: the SavedModels
  (online, or computed once with --cache_teacher_logits) and, after them,
  the --teacher_probs_file teacher (log-probabilities by example_index)."""
  from_file = None
  if config.teacher_probs_file:
    table = teacher_lib.read_probs_file(
        config.teacher_probs_file, len(examples), len(task.label_list))
    labelled = [(i, task.label_list.index(e.label))
                for i, e in enumerate(examples) if e.label is not None]
    if labelled:
      rows, labels = zip(*labelled)
      logging.info("Teacher %s: accuracy %.4f on the %d labelled training "
                   "examples", config.teacher_probs_file,
                   float(np.mean(table[list(rows)].argmax(-1) == labels)),
                   len(labelled))
    from_file = table[np.newaxis]                               # [1, N, C]
  if teacher is None:
    return cached_teacher_logits(from_file)
  output_dir = config.output_dir
  finished = (tf.train.latest_checkpoint(output_dir) is not None and
              checkpoints.read_global_step(output_dir) >= num_train_steps)
  if config.cache_teacher_logits and not finished:
    # The same examples give the same feature file as split_dataset's, so
    # its example_index addresses the table.
    path = classifier.cache_features(config, task, examples, "train")
    table = teacher.cached_logits(
        path, config.max_seq_length,
        compute=training.cluster_task().is_chief)
    if from_file is not None:
      table = np.concatenate([table, from_file])
    return cached_teacher_logits(table)
  online = online_teacher_logits(teacher)
  if from_file is None:
    return online
  file_logits = cached_teacher_logits(from_file)
  return lambda features: tf.concat([online(features),
                                     file_logits(features)], axis=0)


def init_from_teacher(student: modeling.BertClassifier,
                      teacher: teacher_lib.Teacher, layers: list[int]) -> None:
  """Copies the (first) teacher's embeddings, the chosen encoder layers (the
  student's layer i from teacher layer layers[i]), pooler and head."""
  if len(layers) != student.config.num_hidden_layers:
    raise UserError(
        f"--init_from_teacher_layers lists {len(layers)} layers but the "
        f"student has num_hidden_layers={student.config.num_hidden_layers}")
  source = {v.name.split(":")[0]: v
            for v in teacher.loaded[0].model_variables}
  teacher_layers = len({n.split("/")[2] for n in source
                        if n.startswith("bert/encoder/layer_")})
  if max(layers) >= teacher_layers:
    raise UserError(f"--init_from_teacher_layers: layer {max(layers)} is out "
                    f"of range, the teacher has {teacher_layers} layers")
  for name, variable in modeling.variables_by_name(student).items():
    origin = name
    if name.startswith("bert/encoder/layer_"):
      index, rest = name[len("bert/encoder/layer_"):].split("/", 1)
      origin = f"bert/encoder/layer_{layers[int(index)]}/{rest}"
    if origin not in source:
      raise UserError(f"--init_from_teacher_layers: the teacher has no "
                      f"variable {origin}")
    if source[origin].shape != variable.shape:
      raise UserError(
          f"--init_from_teacher_layers: teacher {origin} has shape "
          f"{source[origin].shape.as_list()}, the student's {name} "
          f"{variable.shape.as_list()} (the student must have the teacher's "
          "hidden and intermediate sizes)")
    variable.assign(source[origin])
  logging.info("Initialised the student from %s, layers %s", teacher.dirs[0],
               ",".join(map(str, layers)))


def teacher_summary(config: DistillConfig, teacher: teacher_lib.Teacher,
                    task: classifier.Task) -> None:
  """Teacher accuracy on a dev sample and the loss terms' real weights."""
  num_labels = len(task.label_list)
  # At step 0 of 1: the schedules' starting values.
  alpha = distillation.alpha_at(0, 1, config.alpha, config.alpha_schedule)
  temperature = distillation.temperature_at(0, 1, config.temperature,
                                            config.temperature_schedule)
  weights = distillation.distillation_loss(
      tf.zeros([1, num_labels]), tf.zeros([1, num_labels]),
      tf.zeros([1], tf.int32), None, temperature, alpha,
      config.distill_objective)
  logging.info("Loss weights at the first step: hard %.3g, soft %.3g "
               "(alpha %.3g, T %.3g, %s%s%s)",
               float(weights["hard_weight"]), float(weights["soft_weight"]),
               float(alpha), float(temperature), config.distill_objective,
               ", alpha annealed 1 -> 0" if config.alpha_schedule == "anneal"
               else "",
               ", T decays linearly to 1"
               if config.temperature_schedule == "linear" else "")
  if not config.data_dir:  # --train_on_transfer_only needs none.
    logging.info("No --data_dir: the teacher is not checked on a dev set")
    return
  try:
    dev = task.processor.get_dev_examples(config.data_dir)
  except UserError as e:
    logging.warning("No dev set to check the teacher on (%s)", e)
    return
  dev = [e for e in dev if e.label is not None][:config.teacher_eval_sample]
  if not dev:
    return
  dataset, _ = classifier.split_dataset(config, task, "dev-sample", 64, False,
                                        dev)
  logits, extras = teacher.predict(dataset)
  chance = 1.0 / num_labels
  for d, teacher_logits in zip(teacher.dirs, logits):
    accuracy = float((teacher_logits.argmax(-1) == extras["label_ids"]).mean())
    logging.info("Teacher %s: accuracy %.4f on %d dev examples", d, accuracy,
                 len(dev))
    if accuracy < chance + 0.05:
      logging.warning("Teacher %s is near chance (%.3f vs %.3f): was it "
                      "fine-tuned?", d, accuracy, chance)


def teacher_agreement(config: DistillConfig, task: classifier.Task,
                      teacher: teacher_lib.Teacher | None):
  """extra_metrics for `classifier.evaluate`: eval_teacher_agreement, the
  fraction of dev examples where the student and the (mean) teacher agree.
  None, with a warning, when the teacher is not loaded and cannot be."""
  if teacher is None:
    if not config.teacher_model:
      return None  # A file teacher knows the training examples only.
    try:
      teacher = teacher_lib.Teacher(config.teacher_model)
    except UserError as e:
      logging.warning("No eval_teacher_agreement: %s", e)
      return None
  dataset, _ = classifier.split_dataset(config, task, "dev",
                                        config.eval_batch_size, False)
  teacher_dev, _ = teacher.predict(dataset)

  def agreement(out):
    same = out["logits"].argmax(-1) == teacher_dev.mean(0).argmax(-1)
    return {"eval_teacher_agreement": float(np.mean(same))}

  return agreement


def teacher_record(config: DistillConfig,
                   teacher: teacher_lib.Teacher | None) -> dict:
  """The teacher's identity for the run's record and the export's info:
  resolved version directories (and a digest of their graphs and weights
  when loaded), without loading a teacher that is not."""
  extra = ({"probs_file": config.teacher_probs_file}
           if config.teacher_probs_file else {})
  if teacher is not None:
    return {"dirs": teacher.dirs, "identity": teacher.identity(), **extra}
  dirs = []
  for path in config.teacher_model:
    try:
      dirs.append(export_reader.resolve_export(path))
    except UserError:
      dirs.append(path)
  return {"dirs": dirs, **extra}

