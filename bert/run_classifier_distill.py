"""Distils an exported teacher into a small student classifier.

  python bert/run_classifier_distill.py --task_name=emotion \
    --teacher_model=export/teacher --bert_config_file=configs/student.json \
    --vocab_file=... --data_dir=... --output_dir=output/student \
    --do_train --do_eval --do_export --export_dir=export/student

Takes every run_classifier.py flag (data, training, eval, predict, export
and checkpoint/resume work the same way) plus the distillation flags below.
The teacher SavedModel is called on each whole batch inside the student's
compiled train step, in inference mode and outside the gradient; with
--cache_teacher_logits its logits are computed once and reused.

Beyond the logits: --stage with --intermediate_losses distils TinyBERT-style
from the teacher's layers (bert/tinybert.py), --student_type=bilstm trains
a BiLSTM student (bert/bilstm.py).
"""

import dataclasses
import os
import sys
from typing import Callable

if not __package__:  # run as `python bert/run_classifier_distill.py`
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np
import tensorflow as tf
from absl import app, flags, logging

from bert import bilstm, checkpoints, classifier, data, distillation
from bert import modeling
from bert import teacher as teacher_lib
from bert import tinybert, training
from bert.errors import UserError, exit_on_error

FLAGS = flags.FLAGS
classifier.define_flags()
flags.DEFINE_string("teacher_model", None, "Exported teacher SavedModel "
                    "(a version directory or its base path); a comma-"
                    "separated list for an ensemble.")
flags.DEFINE_enum("ensemble_mean", "arithmetic", distillation.ENSEMBLE_MEANS,
                  "How an ensemble's distributions are averaged.")
flags.DEFINE_float("alpha", 0.5, "Weight of the teacher's soft targets; the "
                   "gold labels get 1 - alpha.")
flags.DEFINE_enum("distill_objective", "soft_ce", distillation.OBJECTIVES,
                  "soft_ce: CE(softmax(v/T), softmax(z/T)) * T^2 (Hinton); "
                  "kl: the same as a KL divergence; logits_mse: MSE of the "
                  "logits (Tang et al.).")
flags.DEFINE_enum("alpha_schedule", "constant", distillation.ALPHA_SCHEDULES,
                  "anneal: teacher annealing (BAM!), alpha goes 1 -> 0.")
flags.DEFINE_enum("temperature_schedule", "constant",
                  distillation.TEMPERATURE_SCHEDULES,
                  "linear: the temperature decays from --temperature to 1.")
flags.DEFINE_bool("cache_teacher_logits", False, "Compute the teacher's "
                  "logits once per training example and reuse them.")
flags.DEFINE_string("transfer_file", None, "Extra unlabelled text in the "
                    "task's format; learnt from the teacher's targets only.")
flags.DEFINE_list("init_from_teacher_layers", None, "Initialise the student "
                  "from the teacher: embeddings, pooler, head and these "
                  "teacher layers (e.g. 0,2,4,6,8,10), as DistilBERT.")
flags.DEFINE_integer("teacher_eval_sample", 512, "Dev examples on which the "
                     "teacher's accuracy is checked before training.")
flags.DEFINE_enum("student_type", "bert", bilstm.STUDENT_TYPES,
                  "bert, or bilstm (Tang et al.; --bert_config_file is then "
                  "a bilstm config such as configs/bilstm_config.json, and "
                  "--distill_objective defaults to logits_mse).")
flags.DEFINE_enum("stage", "prediction", tinybert.STAGES,
                  "prediction: learn the teacher's predictions; "
                  "intermediate: only TinyBERT's --intermediate_losses; "
                  "both: intermediate for --intermediate_fraction of the "
                  "steps, then prediction.")
flags.DEFINE_list("intermediate_losses", [], "With --stage=intermediate or "
                  "both: any of embedding, hidden, attention.")
flags.DEFINE_string("layer_map", "uniform", "The teacher layer each student "
                    "layer learns from: uniform, last, or a list (e.g. 1,3).")
flags.DEFINE_float("intermediate_fraction", 0.75, "--stage=both: the "
                   "fraction of the steps in the intermediate stage.")
flags.DEFINE_bool("train_on_transfer_only", False, "Train on --transfer_file "
                  "alone, without the task's train split (e.g. general "
                  "distillation on unlabelled text).")

# This script's --temperature default.  run_classifier.py's (for --do_distill)
# stays 1.0: the default applies when the flag is not given, rather than via
# FLAGS.set_default at import, which leaks into run_classifier.py's flag in a
# process that imports both (as the test suite does).  T = 10 with alpha = 0.5
# (the seed project's setting) gave the best dev accuracy of the settings
# tried on waimai (benchmarks/distill_experiment.py; see the README).
DEFAULT_TEMPERATURE = 10.0

# features -> teacher logits [K, B, C] (K teachers, no gradient).
TeacherLogitsFn = Callable[[dict], tf.Tensor]


@dataclasses.dataclass(frozen=True)
class DistillOptions:
  """The distillation settings of one run (the flags of the same names)."""
  temperature: float = DEFAULT_TEMPERATURE
  alpha: float = 0.5
  objective: str = "soft_ce"
  alpha_schedule: str = "constant"
  temperature_schedule: str = "constant"
  ensemble_mean: str = "arithmetic"

  @classmethod
  def from_flags(cls) -> "DistillOptions":
    options = cls(
        temperature=(FLAGS.temperature if FLAGS["temperature"].present
                     else DEFAULT_TEMPERATURE),
        alpha=FLAGS.alpha, objective=FLAGS.distill_objective,
        alpha_schedule=FLAGS.alpha_schedule,
        temperature_schedule=FLAGS.temperature_schedule,
        ensemble_mean=FLAGS.ensemble_mean)
    distillation.validate_distill_flags(
        options.alpha, options.temperature, options.objective,
        options.alpha_schedule, options.temperature_schedule,
        options.ensemble_mean)
    return options


def online_teacher_logits(teacher: teacher_lib.Teacher) -> TeacherLogitsFn:
  """The teacher SavedModels called on the (trimmed) batch in the step."""
  return lambda features: teacher.logits(
      features["input_ids"], features["input_mask"], features["segment_ids"])


def cached_teacher_logits(table: np.ndarray) -> TeacherLogitsFn:
  """Rows of a [K, N, C] logits table picked by `example_index`."""
  table = tf.constant(table, tf.float32)
  return lambda features: tf.gather(table, features["example_index"], axis=1)


def make_loss_fn(model: modeling.BertClassifier,
                 teacher_logits_fn: TeacherLogitsFn, options: DistillOptions,
                 num_train_steps: int,
                 global_step: Callable[[], tf.Tensor]) -> training.LossFn:
  """The student's training loss for `training.Trainer`.

  Args:
    model: the student.
    teacher_logits_fn: features -> teacher logits [K, B, C].
    options: temperature, alpha, objective, schedules, ensemble mean.
    num_train_steps: the length of the schedules.
    global_step: returns the current step (read inside the compiled step).

  Returns:
    loss_fn(features, is_training) -> (scalar loss, {hard_loss, soft_loss,
    agreement}); features are dicts of int32 [B, S] / [B] tensors with
    label_ids, has_label (0 for transfer examples) and example_index.
  """
  def loss_fn(features, is_training):
    step = global_step()
    temperature = distillation.temperature_at(
        step, num_train_steps, options.temperature,
        options.temperature_schedule)
    alpha = distillation.alpha_at(step, num_train_steps, options.alpha,
                                  options.alpha_schedule)
    teacher_logits = tf.stop_gradient(teacher_logits_fn(features))
    student_logits = model(features["input_ids"], features["input_mask"],
                           features["segment_ids"], training=is_training)
    if teacher_logits.shape[0] == 1:
      targets = {"teacher_logits": teacher_logits[0]}
    elif options.objective == "logits_mse":
      targets = {"teacher_logits":
                 distillation.ensemble_teacher_logits(teacher_logits)}
    else:
      targets = {"teacher_probs": distillation.ensemble_teacher_probs(
          teacher_logits, temperature, options.ensemble_mean)}
    losses = distillation.distillation_loss(
        student_logits, labels=features["label_ids"],
        has_label=tf.cast(features["has_label"], tf.float32),
        temperature=temperature, alpha=alpha, objective=options.objective,
        **targets)
    metrics = {"hard_loss": losses["hard_loss"],
               "soft_loss": losses["soft_loss"],
               "agreement": distillation.agreement(
                   student_logits, tf.reduce_mean(teacher_logits, 0))}
    return losses["loss"], metrics

  return loss_fn


def parse_teacher_layers(values: list[str] | None) -> list[int] | None:
  """--init_from_teacher_layers as ints (None when not given)."""
  if not values:
    return None
  try:
    layers = [int(v) for v in values]
  except ValueError:
    raise UserError(f"--init_from_teacher_layers must be comma-separated "
                    f"layer numbers, got {','.join(values)!r}") from None
  if min(layers) < 0:
    raise UserError(f"--init_from_teacher_layers: layer numbers start at 0, "
                    f"got {min(layers)}")
  return layers


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


def teacher_summary(teacher: teacher_lib.Teacher, task: classifier.Task,
                    options: DistillOptions) -> None:
  """Teacher accuracy on a dev sample and the loss terms' real weights."""
  num_labels = len(task.label_list)
  # At step 0 of 1: the schedules' starting values.
  alpha = distillation.alpha_at(0, 1, options.alpha, options.alpha_schedule)
  temperature = distillation.temperature_at(0, 1, options.temperature,
                                            options.temperature_schedule)
  weights = distillation.distillation_loss(
      tf.zeros([1, num_labels]), tf.zeros([1, num_labels]),
      tf.zeros([1], tf.int32), None, temperature, alpha, options.objective)
  logging.info("Loss weights at the first step: hard %.3g, soft %.3g "
               "(alpha %.3g, T %.3g, %s%s%s)",
               float(weights["hard_weight"]), float(weights["soft_weight"]),
               float(alpha), float(temperature), options.objective,
               ", alpha annealed 1 -> 0" if options.alpha_schedule == "anneal"
               else "",
               ", T decays linearly to 1"
               if options.temperature_schedule == "linear" else "")
  try:
    dev = task.processor.get_dev_examples(classifier.require("data_dir"))
  except UserError as e:
    logging.warning("No dev set to check the teacher on (%s)", e)
    return
  dev = [e for e in dev if e.label is not None][:FLAGS.teacher_eval_sample]
  if not dev:
    return
  dataset, _ = classifier.split_dataset(task, "dev-sample", 64, False, dev)
  logits, extras = teacher.predict(dataset)
  chance = 1.0 / num_labels
  for d, teacher_logits in zip(teacher.dirs, logits):
    accuracy = float((teacher_logits.argmax(-1) == extras["label_ids"]).mean())
    logging.info("Teacher %s: accuracy %.4f on %d dev examples", d, accuracy,
                 len(dev))
    if accuracy < chance + 0.05:
      logging.warning("Teacher %s is near chance (%.3f vs %.3f): was it "
                      "fine-tuned?", d, accuracy, chance)


def main(argv):
  del argv
  options = DistillOptions.from_flags()
  if FLAGS.student_type == "bilstm" and not FLAGS["distill_objective"].present:
    options = dataclasses.replace(options, objective="logits_mse")
  tinybert.validate_flags(FLAGS.stage, FLAGS.intermediate_losses,
                          FLAGS.intermediate_fraction)
  teacher_layers = parse_teacher_layers(FLAGS.init_from_teacher_layers)
  if teacher_layers and FLAGS.student_type != "bert":
    raise UserError("--init_from_teacher_layers needs --student_type=bert")
  if FLAGS.train_on_transfer_only and not FLAGS.transfer_file:
    raise UserError("--train_on_transfer_only needs --transfer_file")
  if not any([FLAGS.do_train, FLAGS.do_eval, FLAGS.do_predict,
              FLAGS.do_export]):
    raise UserError("at least one of --do_train, --do_eval, --do_predict, "
                    "--do_export must be set")
  output_dir = classifier.check_output_dir()
  training.set_seed(FLAGS.seed)
  bilstm_config = bilstm.student_config(FLAGS.bert_config_file,
                                       FLAGS.student_type)
  # A BiLSTM brings its own sizes, as a Hub encoder does.
  task = classifier.load_task(hub_model=bilstm_config)
  if bilstm_config:
    task = dataclasses.replace(task, bert_config=bilstm_config)
  teacher = teacher_lib.Teacher(
      [p.strip() for p in (FLAGS.teacher_model or "").split(",") if p.strip()])
  teacher.check_compatible(task.label_list, FLAGS.vocab_file,
                           FLAGS.spm_model_file, FLAGS.max_seq_length,
                           FLAGS.do_lower_case)
  strategy = training.get_strategy()
  student_class = (bilstm.BiLstmClassifier if bilstm_config
                   else modeling.BertClassifier)
  with strategy.scope():
    model = student_class(task.bert_config, len(task.label_list))

  if FLAGS.do_train:
    examples = ([] if FLAGS.train_on_transfer_only else
                task.processor.get_train_examples(
                    classifier.require("data_dir")))
    if FLAGS.transfer_file:
      transfer = task.processor.read_unlabeled(FLAGS.transfer_file)
      logging.info("Transfer set: %d unlabelled examples from %s",
                   len(transfer), FLAGS.transfer_file)
      examples = examples + transfer
    steps, warmup = classifier.train_steps(len(examples))
    with strategy.scope():
      plan, projections = tinybert.prepare(
          FLAGS.stage, FLAGS.intermediate_losses, FLAGS.layer_map,
          FLAGS.intermediate_fraction, model, teacher, steps)
    teacher_summary(teacher, task, options)
    dataset, n = classifier.split_dataset(task, "train", FLAGS.train_batch_size,
                                          True, examples)
    classifier.steps_per_epoch_summary(n, steps, warmup)
    finished = (tf.train.latest_checkpoint(output_dir) is not None and
                checkpoints.read_global_step(output_dir) >= steps)
    if FLAGS.cache_teacher_logits and not finished:
      # The same examples give the same feature file as split_dataset's, so
      # its example_index addresses the table.
      path = data.cache_features(examples, task.label_list,
                                 FLAGS.max_seq_length, task.tokenizer,
                                 classifier.cache_dir(), "train")
      teacher_logits_fn = cached_teacher_logits(
          teacher.cached_logits(path, FLAGS.max_seq_length))
    else:
      teacher_logits_fn = online_teacher_logits(teacher)
    trainer = None  # Bound below; the loss reads its step for schedules.
    prediction_steps, first = plan.prediction_steps(steps)
    loss_fn = tinybert.make_loss_fn(
        model, plan, projections,
        make_loss_fn(model, teacher_logits_fn, options, prediction_steps,
                     lambda: trainer.optimizer.global_step - first),
        tinybert.teacher_intermediate_fn(teacher),
        lambda: trainer.optimizer.global_step)
    # The projections train with the student and resume with it, but are
    # not part of the model (nor of its export).
    extra = projections.variables_by_name() if projections else {}
    trainer = training.Trainer(
        model, loss_fn, strategy=strategy, output_dir=output_dir,
        num_train_steps=steps, learning_rate=FLAGS.learning_rate,
        num_warmup_steps=warmup,
        save_checkpoints_steps=FLAGS.save_checkpoints_steps,
        log_every=FLAGS.log_steps, keep_checkpoints=FLAGS.keep_checkpoint_max,
        trainable_variables=(list(model.trainable_variables) +
                             list(extra.values())),
        extra_checkpoint_variables=extra)
    if plan.stage == "both":
      trainer.optimizer.learning_rate = tinybert.StagedLearningRate(
          FLAGS.learning_rate, steps, plan.split_step, FLAGS.warmup_proportion)
    if not trainer.restore():
      if teacher_layers:
        init_from_teacher(model, teacher, teacher_layers)
      else:
        classifier.init_model(model, FLAGS.init_checkpoint)
        if projections and FLAGS.init_checkpoint:
          projections.init_from(
              checkpoints.resolve_checkpoint(FLAGS.init_checkpoint))
    trainer.train(dataset, FLAGS.train_batch_size)
    global_step = trainer.global_step
  else:
    global_step = classifier.load_trained(model)

  forward = classifier.make_forward(model)
  if FLAGS.do_eval:
    dev_dataset, _ = classifier.split_dataset(task, "dev",
                                              FLAGS.eval_batch_size, False)
    teacher_dev, _ = teacher.predict(dev_dataset)

    def agreement(out):
      same = out["logits"].argmax(-1) == teacher_dev.mean(0).argmax(-1)
      return {"eval_teacher_agreement": float(np.mean(same))}

    classifier.evaluate(forward, task, global_step, extra_metrics=agreement)
  if FLAGS.do_predict:
    classifier.predict(forward, task)
  if FLAGS.do_export:
    classifier.export_model(model, task, {
        "global_step": global_step, "teacher": teacher.dirs,
        "distill_objective": options.objective,
        "student_type": FLAGS.student_type, "stage": FLAGS.stage})


if __name__ == "__main__":
  FLAGS.set_default("temperature", DEFAULT_TEMPERATURE)  # For --help.
  flags.mark_flags_as_required(["output_dir", "teacher_model"])
  app.run(exit_on_error(main))
