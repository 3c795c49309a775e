"""Distils an exported teacher into a small student classifier.

  python bert/run_classifier_distill.py --task_name=emotion \
    --teacher_model=export/teacher --bert_config_file=configs/student.json \
    --vocab_file=... --data_dir=... --output_dir=output/student \
    --do_train --do_eval --do_export --export_dir=export/student

Takes every run_classifier.py flag (data, training, eval, predict, export
and checkpoint/resume work the same way) plus the distillation settings of
`run_config.DistillConfig`.
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
import types

if not __package__:  # run as `python bert/run_classifier_distill.py`
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags

from bert import bilstm, classifier, modeling, objective, run_config
from bert import training
from bert.errors import UserError, exit_on_error

CONFIG = run_config.DistillConfig


def main(argv, flag_values: flags.FlagValues = flags.FLAGS):
  del argv
  config, _ = run_config.settle_flags(CONFIG, flag_values)
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

  def build(strategy):
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
    parts = types.SimpleNamespace(model=model, task=task, teacher=None)
    if config.do_train:
      parts.teacher = objective.load_teacher(config, task)
      examples = objective.training_examples(config, task)
      steps, warmup = classifier.train_steps(config, len(examples))
      parts.dataset, _ = classifier.split_dataset(
          config, task, "train", config.train_batch_size, True, examples)
      plan = objective.build(config, task, parts.teacher, model, examples,
                             steps, warmup, strategy)
      parts.num_train_steps = steps
      parts.loss_fn, parts.learning_rate = plan.loss_fn, plan.learning_rate
      parts.trainable_variables = plan.trainable_variables(model)
      parts.extra_checkpoint_variables = plan.extra_variables
      parts.init = plan.init_student
      parts.record = {"teacher": objective.teacher_record(config,
                                                          parts.teacher)}
    return parts

  ran = training.run_script(config, build, write_dir)
  if ran is None:
    return  # Eval, predict and export are the chief's.
  parts, global_step = ran
  if global_step is None:
    global_step = classifier.load_trained(config, parts.model)
  agreement = (objective.teacher_agreement(config, parts.task, parts.teacher)
               if config.do_eval else None)
  classifier.write_outputs(
      config, parts.model, parts.task, global_step, agreement, {
          "teacher": objective.teacher_record(config, parts.teacher)["dirs"],
          "distill_objective": config.distill_objective,
          "student_type": config.student_type, "stage": config.stage})


if __name__ == "__main__":
  run_config.define_flags(CONFIG)
  flags.adopt_module_key_flags(run_config)  # --help lists them.
  flags.mark_flags_as_required(["output_dir"])
  app.run(exit_on_error(main))
