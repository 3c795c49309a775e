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
"""

import os
import sys

if not __package__:  # run as `python bert/run_classifier_distill.py`
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np
import tensorflow as tf
from absl import app, flags, logging

from bert import classifier, distillation, modeling, teacher as teacher_lib
from bert import training
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
FLAGS.set_default("temperature", 2.0)


def init_from_teacher(student: modeling.BertClassifier,
                      teacher: teacher_lib.Teacher, layers: list[str]) -> None:
  """Copies embeddings, the chosen encoder layers, pooler and head."""
  if len(layers) != student.config.num_hidden_layers:
    raise UserError(
        f"--init_from_teacher_layers lists {len(layers)} layers but the "
        f"student has num_hidden_layers={student.config.num_hidden_layers}")
  source = {v.name.split(":")[0]: v
            for v in teacher.loaded[0].model_variables}
  for name, variable in modeling.variables_by_name(student).items():
    origin = name
    if name.startswith("bert/encoder/layer_"):
      index, rest = name[len("bert/encoder/layer_"):].split("/", 1)
      origin = f"bert/encoder/layer_{int(layers[int(index)])}/{rest}"
    if origin not in source:
      raise UserError(f"--init_from_teacher_layers: the teacher has no "
                      f"variable {origin}")
    if source[origin].shape != variable.shape:
      raise UserError(
          f"--init_from_teacher_layers: teacher {origin} has shape "
          f"{source[origin].shape.as_list()}, the student's {name} "
          f"{variable.shape.as_list()} (the student must have the teacher's "
          "hidden size)")
    variable.assign(source[origin])
  logging.info("Initialised the student from teacher layers %s",
               ",".join(layers))


def teacher_summary(teacher, task, alpha, temperature) -> None:
  """Teacher accuracy on a dev sample and the loss terms' real weights."""
  weights = distillation.distillation_loss(
      tf.zeros([1, len(task.label_list)]), tf.zeros([1, len(task.label_list)]),
      tf.zeros([1], tf.int32), None, temperature, alpha,
      FLAGS.distill_objective)
  logging.info("Loss weights: hard %.3g, soft %.3g (alpha %s, T %s, %s%s)",
               float(weights["hard_weight"]), float(weights["soft_weight"]),
               alpha, temperature, FLAGS.distill_objective,
               ", alpha annealed 1 -> 0" if FLAGS.alpha_schedule == "anneal"
               else "")
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
  chance = 1.0 / len(task.label_list)
  for d, teacher_logits in zip(teacher.dirs, logits):
    accuracy = float((teacher_logits.argmax(-1) == extras["label_ids"]).mean())
    logging.info("Teacher %s: accuracy %.4f on %d dev examples", d, accuracy,
                 len(dev))
    if accuracy < chance + 0.05:
      logging.warning("Teacher %s is near chance (%.3f vs %.3f): was it "
                      "fine-tuned?", d, accuracy, chance)


def main(argv):
  del argv
  distillation.validate_distill_flags(
      FLAGS.alpha, FLAGS.temperature, FLAGS.distill_objective,
      FLAGS.alpha_schedule, FLAGS.temperature_schedule, FLAGS.ensemble_mean)
  if not any([FLAGS.do_train, FLAGS.do_eval, FLAGS.do_predict,
              FLAGS.do_export]):
    raise UserError("at least one of --do_train, --do_eval, --do_predict, "
                    "--do_export must be set")
  output_dir = classifier.check_output_dir()
  training.set_seed(FLAGS.seed)
  task = classifier.load_task()
  teacher = teacher_lib.Teacher(
      [p for p in (FLAGS.teacher_model or "").split(",") if p])
  teacher.check_compatible(task.label_list, FLAGS.vocab_file,
                           FLAGS.spm_model_file, FLAGS.max_seq_length,
                           FLAGS.do_lower_case)
  strategy = training.get_strategy()
  with strategy.scope():
    model = modeling.BertClassifier(task.bert_config, len(task.label_list))

  if FLAGS.do_train:
    teacher_summary(teacher, task, FLAGS.alpha, FLAGS.temperature)
    examples = task.processor.get_train_examples(
        classifier.require("data_dir"))
    if FLAGS.transfer_file:
      transfer = task.processor.read_unlabeled(FLAGS.transfer_file)
      logging.info("Transfer set: %d unlabelled examples from %s",
                   len(transfer), FLAGS.transfer_file)
      examples = examples + transfer
    dataset, n = classifier.split_dataset(task, "train", FLAGS.train_batch_size,
                                          True, examples)
    steps, warmup = classifier.train_steps(n)
    classifier.steps_per_epoch_summary(n, steps, warmup)
    cached = None
    if FLAGS.cache_teacher_logits:
      from bert import data
      path = data.cache_features(examples, task.label_list,
                                 FLAGS.max_seq_length, task.tokenizer,
                                 output_dir, "train")
      cached = tf.constant(teacher.cached_logits(path, FLAGS.max_seq_length))
    trainer = None  # Bound below; the loss reads its step for schedules.

    def loss_fn(features, is_training):
      step = trainer.optimizer.global_step
      temperature = distillation.temperature_at(
          step, steps, FLAGS.temperature, FLAGS.temperature_schedule)
      alpha = distillation.alpha_at(step, steps, FLAGS.alpha,
                                    FLAGS.alpha_schedule)
      if cached is not None:
        teacher_logits = tf.gather(cached, features["example_index"], axis=1)
      else:
        teacher_logits = teacher.logits(features["input_ids"],
                                        features["input_mask"],
                                        features["segment_ids"])
      student_logits = model(features["input_ids"], features["input_mask"],
                             features["segment_ids"], training=is_training)
      targets = {"teacher_logits": teacher_logits[0]}
      if teacher.size > 1:
        if FLAGS.distill_objective == "logits_mse":
          targets = {"teacher_logits":
                     distillation.ensemble_teacher_logits(teacher_logits)}
        else:
          targets = {"teacher_probs": distillation.ensemble_teacher_probs(
              tf.unstack(teacher_logits), temperature, FLAGS.ensemble_mean)}
      losses = distillation.distillation_loss(
          student_logits, labels=features["label_ids"],
          has_label=tf.cast(features["has_label"], tf.float32),
          temperature=temperature, alpha=alpha,
          objective=FLAGS.distill_objective, **targets)
      metrics = {"hard_loss": losses["hard_loss"],
                 "soft_loss": losses["soft_loss"],
                 "agreement": distillation.agreement(
                     student_logits, tf.reduce_mean(teacher_logits, 0))}
      return losses["loss"], metrics

    trainer = training.Trainer(
        model, loss_fn, strategy=strategy, output_dir=output_dir,
        num_train_steps=steps, learning_rate=FLAGS.learning_rate,
        num_warmup_steps=warmup,
        save_checkpoints_steps=FLAGS.save_checkpoints_steps,
        log_every=FLAGS.log_steps, keep_checkpoints=FLAGS.keep_checkpoint_max)
    if not trainer.restore():
      if FLAGS.init_from_teacher_layers:
        init_from_teacher(model, teacher, FLAGS.init_from_teacher_layers)
      else:
        classifier.init_model(model, FLAGS.init_checkpoint)
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
        "distill_objective": FLAGS.distill_objective})


if __name__ == "__main__":
  flags.mark_flags_as_required(["output_dir", "teacher_model"])
  app.run(exit_on_error(main))
