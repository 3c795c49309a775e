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
a BiLSTM student (bert/bilstm.py).  The objective is put together by
bert/objective.py from the run's `DistillConfig` (bert/run_config.py).

Training records the settings in <output_dir>/run_config.json, so

  python bert/run_classifier_distill.py --do_export --output_dir=output/student \
    --export_dir=export/student

exports the student without --teacher_model or the training flags (and
without loading the teacher).
"""

import os
import sys

if not __package__:  # run as `python bert/run_classifier_distill.py`
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging

from bert import bilstm, classifier, distillation, modeling
from bert import objective
from bert import run_classifier, run_config, tinybert, training
from bert.errors import UserError, exit_on_error

FLAGS = flags.FLAGS
run_classifier.define_flags()
flags.DEFINE_string("teacher_model", None, "Exported teacher SavedModel "
                    "(a version directory or its base path); a comma-"
                    "separated list for an ensemble.")
flags.DEFINE_string("teacher_probs_file", None, "A teacher given as a file "
                    "(any framework, an external model, hand-made soft "
                    "labels): class probabilities per training example in "
                    "test_results.tsv's format, one line each for the train "
                    "split, then the transfer file; alone or with "
                    "--teacher_model, as one more ensemble member.")
flags.DEFINE_enum("ensemble_mean", "arithmetic", distillation.ENSEMBLE_MEANS,
                  "How an ensemble's distributions are averaged.")
flags.DEFINE_float("alpha", 0.5, "Weight of the teacher's soft targets; the "
                   "gold labels get 1 - alpha.")
flags.DEFINE_enum("distill_objective", None, distillation.OBJECTIVES,
                  "soft_ce: CE(softmax(v/T), softmax(z/T)) * T^2 (Hinton; "
                  "the default); kl: the same as a KL divergence; "
                  "logits_mse: MSE of the logits (Tang et al.; the default "
                  "for --student_type=bilstm).")
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
                  "a bilstm config such as configs/bilstm_config.json).")
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


def main(argv):
  del argv
  config, _ = run_classifier.settle_flags(run_config.DistillConfig)
  with training.worker_output_dir(config.output_dir) as write_dir:
    run(config, write_dir)


def check_jit_replicas(config: run_config.DistillConfig,
                       replicas: int) -> None:
  """--jit_compile over several replicas keeps the teacher out of the step:
  XLA cannot read its variables (on one device) from another replica's."""
  if not (config.jit_compile and replicas > 1 and config.do_train
          and config.teacher_model):
    return
  if config.stage != "prediction":
    raise UserError(f"--jit_compile over {replicas} replicas with "
                    f"--stage={config.stage}: TinyBERT's intermediate stage "
                    "runs the teacher in every step, and XLA cannot read its "
                    "variables from the other replicas' devices; leave "
                    "--jit_compile out")
  if not config.cache_teacher_logits:
    raise UserError(f"--jit_compile over {replicas} replicas needs "
                    "--cache_teacher_logits: XLA cannot read the teacher's "
                    "variables (on one device) from the other replicas' "
                    "devices")


def run(config: run_config.DistillConfig, write_dir: str | None = None) -> None:
  """Distil, evaluate, predict and export as `config` says (`write_dir`: as
  in `run_classifier.run`)."""
  output_dir = config.output_dir
  chief = training.cluster_task().is_chief
  if not config.do_train and not chief:
    logging.info("Not the chief worker: nothing to do without --do_train")
    return
  training.set_seed(config.seed)
  strategy = classifier.strategy(config)
  check_jit_replicas(config, strategy.num_replicas_in_sync)
  # A BiLSTM brings its own sizes, as a Hub encoder does.
  bilstm_config = bilstm.student_config(config.bert_config_file,
                                       config.student_type)
  task = classifier.load_task(config, model_config=bilstm_config)
  classifier.check_data_files(
      config, task.processor,
      config.do_train and not config.train_on_transfer_only)
  student_class = (bilstm.BiLstmClassifier if bilstm_config
                   else modeling.BertClassifier)
  with strategy.scope():
    model = student_class(task.bert_config, len(task.label_list))

  teacher = None
  if config.do_train:
    teacher = objective.load_teacher(config, task)
    examples = objective.training_examples(config, task)
    steps, warmup = classifier.train_steps(config, len(examples))
    dataset, _ = classifier.split_dataset(
        config, task, "train", config.train_batch_size, True, examples)
    plan = objective.build(config, task, teacher, model, examples, steps,
                           warmup, strategy)
    trainer = training.Trainer(
        model, plan.loss_fn, strategy=strategy, output_dir=output_dir,
        num_train_steps=steps, learning_rate=plan.learning_rate,
        save_checkpoints_steps=config.save_checkpoints_steps,
        log_every=config.log_steps, keep_checkpoints=config.keep_checkpoint_max,
        trainable_variables=plan.trainable_variables(model),
        extra_checkpoint_variables=plan.extra_variables, seed=config.seed,
        precision=config.precision, write_dir=write_dir,
        jit_compile=config.jit_compile)
    if chief:
      run_config.write_record(
          config, {"teacher": objective.teacher_record(config, teacher)})
    if not trainer.restore():
      plan.init_student()
    trainer.train(dataset, config.train_batch_size)
    global_step = trainer.global_step
    if not chief:
      return  # Eval, predict and export are the chief's.
  else:
    global_step = classifier.load_trained(config, model)

  agreement = (objective.teacher_agreement(config, task, teacher)
               if config.do_eval else None)
  classifier.write_outputs(config, model, task, global_step, agreement, {
      "teacher": objective.teacher_record(config, teacher)["dirs"],
      "distill_objective": config.distill_objective,
      "student_type": config.student_type, "stage": config.stage})

if __name__ == "__main__":
  flags.mark_flags_as_required(["output_dir"])
  app.run(exit_on_error(main))
