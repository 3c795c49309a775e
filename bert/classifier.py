"""The fine-tuning workflow shared by run_classifier.py and
run_classifier_distill.py: flags, task data, model set-up, train, eval,
predict and export.  The run scripts only wire these together.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow as tf
from absl import flags, logging

from bert import checkpoints, data, export, modeling, processors, tokenization
from bert import files, training
from bert.errors import UserError

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Google's run_classifier.py flags plus this project's."""
  if "task_name" in FLAGS:
    return
  f = flags
  f.DEFINE_string("data_dir", None, "Directory with the task's data files.")
  f.DEFINE_string("bert_config_file", None, "The model's bert_config.json.")
  f.DEFINE_string("task_name", None, "Task: cola, mnli, mrpc, xnli, sst-2, "
                  "emotion, csv, tsv or jsonl.")
  f.DEFINE_string("vocab_file", None, "WordPiece vocab.txt of the model.")
  f.DEFINE_string("spm_model_file", None,
                  "SentencePiece model; replaces --vocab_file when given.")
  f.DEFINE_string("output_dir", None,
                  "Checkpoints, cached features and results go here.")
  f.DEFINE_string("init_checkpoint", None, "Checkpoint to start from (e.g. "
                  "Google's bert_model.ckpt or a fine-tuned model.ckpt-N).")
  f.DEFINE_bool("do_lower_case", True, "Lower-case the input (uncased models).")
  f.DEFINE_integer("max_seq_length", 128, "Tokens per example after "
                   "WordPiece, longer ones are truncated, shorter padded.")
  f.DEFINE_bool("do_train", False, "Fine-tune on the train split.")
  f.DEFINE_bool("do_eval", False, "Evaluate on the dev split.")
  f.DEFINE_bool("do_predict", False, "Write test_results.tsv for the test split.")
  f.DEFINE_bool("do_export", False, "Export a SavedModel to --export_dir.")
  f.DEFINE_string("export_dir", None,
                  "Base directory of exported versions (export/<name>).")
  f.DEFINE_integer("train_batch_size", 32, "Training batch size.")
  f.DEFINE_integer("eval_batch_size", 8, "Eval batch size.")
  f.DEFINE_integer("predict_batch_size", 8, "Predict batch size.")
  f.DEFINE_float("learning_rate", 5e-5, "Peak learning rate of Adam.")
  f.DEFINE_float("num_train_epochs", 3.0, "Epochs of training.")
  f.DEFINE_float("warmup_proportion", 0.1,
                 "Fraction of the steps with linear learning-rate warm-up.")
  f.DEFINE_integer("save_checkpoints_steps", 1000, "Checkpoint every N steps.")
  f.DEFINE_integer("keep_checkpoint_max", 3, "Checkpoints kept.")
  f.DEFINE_integer("log_steps", 50, "Log progress every N steps.")
  f.DEFINE_integer("group_by_length", 0, "Training batches hold texts of "
                   "similar length: each run of N batches' worth of shuffled "
                   "examples is sorted by length before batching (0: off). "
                   "Padding is cut per batch, so this trains several times "
                   "faster when text lengths vary; 50 is a good value.")
  f.DEFINE_string("cache_dir", None, "Where the feature caches (and the "
                  "distill script's teacher-logits caches) go; default "
                  "--output_dir.  Runs that share it reuse them.")
  f.DEFINE_integer("seed", 12345, "Random seed (shuffling, init, dropout).")
  f.DEFINE_bool("do_distill", False, "Train with softmax(logits / T) and the "
                "loss times T^2 (a teacher for distillation).")
  f.DEFINE_float("temperature", 1.0, "Temperature T of --do_distill.")
  # The generic csv/tsv/jsonl task.
  f.DEFINE_string("text_column", None, "csv/tsv/jsonl: text column.")
  f.DEFINE_string("text_b_column", None, "csv/tsv/jsonl: second text column.")
  f.DEFINE_string("label_column", None, "csv/tsv/jsonl: label column.")
  f.DEFINE_list("labels", None, "csv/tsv/jsonl: the label list.")
  f.DEFINE_bool("has_header", None, "csv/tsv: the first line is a header.")
  # Accepted for compatibility with Google's scripts; TPUs are not used.
  f.DEFINE_bool("use_tpu", False, "Ignored (TPU estimator flag).")
  f.DEFINE_string("tpu_name", None, "Ignored.")
  f.DEFINE_string("tpu_zone", None, "Ignored.")
  f.DEFINE_string("gcp_project", None, "Ignored.")
  f.DEFINE_string("master", None, "Ignored.")
  f.DEFINE_integer("num_tpu_cores", 8, "Ignored.")
  f.DEFINE_integer("iterations_per_loop", 1000, "Ignored.")


@dataclasses.dataclass
class Task:
  """Everything derived from the task flags."""
  processor: processors.DataProcessor
  label_list: list[str]
  tokenizer: object
  bert_config: modeling.BertConfig


def require(flag: str) -> str:
  value = getattr(FLAGS, flag)
  if value in (None, ""):
    raise UserError(f"--{flag} is required")
  return value


def load_task(hub_model: tf.Module | None = None) -> Task:
  """Checks the flags and reads the config, tokenizer and processor.

  With a TF Hub encoder (`hub_model`, a `hub_encoder.HubClassifier`) there is
  no bert_config.json: sizes, vocab and casing come from the encoder.
  """
  if FLAGS.use_tpu:
    logging.warning("--use_tpu is ignored: this project trains with "
                    "tf.distribute on CPUs and GPUs")
  if hub_model is None:
    config = modeling.BertConfig.from_json_file(require("bert_config_file"))
    vocab_size, max_positions = (config.vocab_size,
                                 config.max_position_embeddings)
  else:
    config = None
    vocab_size, max_positions = (hub_model.vocab_size,
                                 hub_model.max_position_embeddings)
    if not FLAGS.vocab_file and not FLAGS.spm_model_file:
      FLAGS.vocab_file = hub_model.vocab_file
  if max_positions and FLAGS.max_seq_length > max_positions:
    raise UserError(
        f"--max_seq_length={FLAGS.max_seq_length} is more than the model's "
        f"max_position_embeddings={max_positions}")
  if not FLAGS.spm_model_file:
    require("vocab_file")
  tokenization.validate_case_matches_checkpoint(FLAGS.do_lower_case,
                                                FLAGS.init_checkpoint)
  tokenizer = tokenization.create_tokenizer(
      FLAGS.vocab_file, FLAGS.do_lower_case, FLAGS.spm_model_file)
  if vocab_size:
    tokenization.check_vocab_fits(tokenizer, vocab_size,
                                  FLAGS.spm_model_file or FLAGS.vocab_file)
  processor = task_processor()
  return Task(processor, list(processor.get_labels()), tokenizer, config)


def task_processor() -> processors.DataProcessor:
  """The --task_name processor, its label list known."""
  processor = processors.get_processor(
      require("task_name"), text_column=FLAGS.text_column,
      text_b_column=FLAGS.text_b_column, label_column=FLAGS.label_column,
      labels=FLAGS.labels, has_header=FLAGS.has_header)
  if (FLAGS.task_name.lower() in ("csv", "tsv", "jsonl") and not FLAGS.labels
      and FLAGS.data_dir):
    # Infers the label list from the train file when none is given.
    processor.get_train_examples(FLAGS.data_dir)
  return processor


def split_dataset(task: Task, split: str, batch_size: int, is_training: bool,
                  examples: list | None = None) -> tuple[tf.data.Dataset, int]:
  """Features of `split` (train/dev/test), converted once and cached as a
  TFRecord in --cache_dir (default --output_dir) -> (dataset, number of
  examples)."""
  if examples is None:
    data_dir = require("data_dir")
    read = {"train": task.processor.get_train_examples,
            "dev": task.processor.get_dev_examples,
            "test": task.processor.get_test_examples}[split]
    examples = read(data_dir)
  path = data.cache_features(examples, task.label_list, FLAGS.max_seq_length,
                             task.tokenizer, cache_dir(), split)
  dataset = data.make_dataset(path, FLAGS.max_seq_length, batch_size,
                              is_training=is_training, seed=FLAGS.seed,
                              drop_remainder=is_training,
                              group_by_length=FLAGS.group_by_length)
  return dataset, len(examples)


def cache_dir() -> str:
  """--cache_dir, else --output_dir (created)."""
  path = FLAGS.cache_dir or require("output_dir")
  tf.io.gfile.makedirs(path)
  return path


def train_steps(num_examples: int) -> tuple[int, int]:
  """(num_train_steps, num_warmup_steps) from the epoch flags."""
  steps = int(num_examples / FLAGS.train_batch_size * FLAGS.num_train_epochs)
  if steps < 1:
    raise UserError(
        f"--num_train_epochs={FLAGS.num_train_epochs} with "
        f"--train_batch_size={FLAGS.train_batch_size} on {num_examples} "
        "examples gives no training step")
  return steps, int(steps * FLAGS.warmup_proportion)


def init_model(model: tf.Module, init_checkpoint: str | None,
               name_map: dict | None = None) -> None:
  """Loads --init_checkpoint by name (a fresh run that is not resuming)."""
  if init_checkpoint:
    checkpoints.load_by_name(modeling.variables_by_name(model),
                             init_checkpoint, name_map=name_map)
  else:
    logging.warning("No --init_checkpoint: the model starts from random "
                    "weights (training from scratch)")


def load_trained(model: tf.Module) -> int:
  """Loads the latest checkpoint of --output_dir, else --init_checkpoint, for
  eval, predict or export.  Returns its global step."""
  output_dir = FLAGS.output_dir
  if output_dir and tf.train.latest_checkpoint(output_dir):
    source = output_dir
  elif FLAGS.init_checkpoint:
    source = FLAGS.init_checkpoint
  else:
    raise UserError(f"no checkpoint in --output_dir={output_dir} and no "
                    "--init_checkpoint: train first (--do_train) or pass a "
                    "fine-tuned checkpoint")
  variables = modeling.variables_by_name(model)
  checkpoints.load_by_name(variables, source, strict=True)
  return checkpoints.read_global_step(source)


def evaluate(forward, task: Task, global_step: int,
             extra_metrics=None) -> dict[str, float]:
  """Dev-set metrics, written to eval_results.txt as Google's."""
  dataset, n = split_dataset(task, "dev", FLAGS.eval_batch_size, False)
  logging.info("Evaluating on %d dev examples", n)
  out = training.predict_logits(forward, dataset)
  metrics = training.classification_metrics(out["logits"], out["label_ids"],
                                             len(task.label_list))
  if extra_metrics:
    metrics.update(extra_metrics(out))
  metrics["global_step"] = global_step
  metrics["loss"] = metrics["eval_loss"]
  lines = "".join(f"{k} = {metrics[k]}\n" for k in sorted(metrics))
  files.write_text_atomically(
      os.path.join(FLAGS.output_dir, "eval_results.txt"), lines)
  logging.info("Eval results:\n%s", lines)
  return metrics


def predict(forward, task: Task) -> np.ndarray:
  """Writes test_results.tsv (class probabilities at T=1, one line each)."""
  dataset, n = split_dataset(task, "test", FLAGS.predict_batch_size, False)
  logging.info("Predicting %d test examples", n)
  out = training.predict_logits(forward, dataset)
  order = np.argsort(out["example_index"], kind="stable")
  logits = out["logits"][order].astype(np.float64)
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  text = "".join("\t".join(repr(float(p)) for p in row) + "\n"
                 for row in probs.astype(np.float32))
  path = os.path.join(FLAGS.output_dir, "test_results.tsv")
  files.write_text_atomically(path, text)
  labelled = out["has_label"][order].astype(bool)
  if labelled.all() and n:
    accuracy = float((probs.argmax(-1) == out["label_ids"][order]).mean())
    logging.info("Test accuracy %.4f on %d labelled examples", accuracy, n)
  logging.info("Wrote %s", path)
  return probs


def export_model(model: modeling.BertClassifier, task: Task,
                 extra_info: dict | None = None) -> str:
  from bert import text_graph  # Its Unicode tables load only when exporting.
  export_dir = require("export_dir")
  featurizer = text_graph.TextFeaturizer(
      FLAGS.vocab_file, FLAGS.do_lower_case, FLAGS.max_seq_length,
      spm_model_file=FLAGS.spm_model_file)
  return export.export_classifier(
      model, export_dir, vocab_file=FLAGS.vocab_file,
      bert_config=task.bert_config, label_list=task.label_list,
      max_seq_length=FLAGS.max_seq_length, do_lower_case=FLAGS.do_lower_case,
      spm_model_file=FLAGS.spm_model_file, text_featurizer=featurizer,
      extra_info={"task_name": FLAGS.task_name, **(extra_info or {})})


def check_output_dir() -> str:
  output_dir = require("output_dir")
  tf.io.gfile.makedirs(output_dir)
  return output_dir


def make_forward(model: modeling.BertClassifier):
  """features -> logits [B, C], inference mode."""
  def forward(features):
    return model(features["input_ids"], features["input_mask"],
                 features["segment_ids"], training=False)
  return forward


def cross_entropy(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
  """Per-example CE; logits [B, C], labels [B] -> [B]."""
  return tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)


def steps_per_epoch_summary(n: int, steps: int, warmup: int) -> None:
  logging.info("%d training examples, %d steps (%.2f epochs), %d warm-up",
               n, steps, steps * FLAGS.train_batch_size / max(n, 1), warmup)
  if steps < 10:
    logging.warning("only %d training steps", steps)
