"""The fine-tuning workflow shared by run_classifier.py and
run_classifier_distill.py: task data, model set-up, train, eval, predict and
export.  Every function takes the run's config (`run_config.RunConfig`) or
plain arguments; the run scripts only wire these together.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow as tf
from absl import logging

from bert import checkpoints, data, evaluation, export, modeling, optimization
from bert import processors, tokenization
from bert.errors import UserError
from bert.run_config import RunConfig


@dataclasses.dataclass
class Task:
  """Everything derived from the task settings."""
  processor: processors.DataProcessor
  label_list: list[str]
  tokenizer: object
  # The model's config: a BertConfig or a BiLstmConfig (None for a TF Hub
  # encoder, which brings its own).
  bert_config: object


def task_processor(config: RunConfig) -> processors.DataProcessor:
  """The task's processor, its label list known."""
  processor = processors.get_processor(
      config.task_name, text_column=config.text_column,
      text_b_column=config.text_b_column, label_column=config.label_column,
      labels=list(config.labels) if config.labels else None,
      has_header=config.has_header)
  if (config.task_name.lower() in ("csv", "tsv", "jsonl") and
      not config.labels and config.data_dir):
    # Infers the label list from the train file when none is given.
    processor.get_train_examples(config.data_dir)
  return processor


def check_data_files(config: RunConfig, processor: processors.DataProcessor,
                     train: bool) -> None:
  """Stops before any work when a split that the run needs is missing."""
  needed = (("train", train, "--do_train"), ("dev", config.do_eval,
                                              "--do_eval"),
            ("test", config.do_predict, "--do_predict"))
  for split, used, flag in needed:
    path = processor.split_file(config.data_dir, split) if used else None
    if path and not os.path.isfile(path):
      raise UserError(f"{path}: file not found (the {split} split, needed by "
                      f"{flag})")


def load_task(config: RunConfig, model_config=None) -> Task:
  """Reads the model config, tokenizer and processor, and checks they fit.

  Args:
    config: the run's settings.
    model_config: the sizes of a model that brings its own (a TF Hub
      encoder's `HubClassifier` or a `bilstm.BiLstmConfig`: `vocab_size`,
      `max_position_embeddings`, None where unknown); default: the BERT
      config of `config.bert_config_file`.
  """
  bert_config = model_config
  if model_config is None:
    bert_config = modeling.BertConfig.from_json_file(config.bert_config_file)
  max_positions = bert_config.max_position_embeddings
  if max_positions and config.max_seq_length > max_positions:
    raise UserError(
        f"--max_seq_length={config.max_seq_length} is more than the model's "
        f"max_position_embeddings={max_positions}")
  tokenization.validate_case_matches_checkpoint(config.do_lower_case,
                                                config.init_checkpoint)
  tokenizer = tokenization.create_tokenizer(
      config.vocab_file, config.do_lower_case, config.spm_model_file)
  if bert_config.vocab_size:
    tokenization.check_vocab_fits(tokenizer, bert_config.vocab_size,
                                  config.spm_model_file or config.vocab_file)
  processor = task_processor(config)
  return Task(processor, list(processor.get_labels()), tokenizer, bert_config)


def split_dataset(config: RunConfig, task: Task, split: str, batch_size: int,
                  is_training: bool, examples: list | None = None
                  ) -> tuple[tf.data.Dataset, int]:
  """Features of `split` (train/dev/test, or `examples` under that name),
  converted once and cached as a TFRecord in the features directory ->
  (dataset, number of examples)."""
  if examples is None:
    read = {"train": task.processor.get_train_examples,
            "dev": task.processor.get_dev_examples,
            "test": task.processor.get_test_examples}[split]
    examples = read(config.data_dir)
  path = cache_features(config, task, examples, split)
  dataset = data.make_dataset(path, config.max_seq_length, batch_size,
                              is_training=is_training, seed=config.seed,
                              drop_remainder=is_training,
                              group_by_length=config.group_by_length)
  return dataset, len(examples)


def cache_features(config: RunConfig, task: Task, examples: list,
                   split: str) -> str:
  """`data.cache_features` in the run's features directory."""
  tf.io.gfile.makedirs(config.features_dir)
  return data.cache_features(examples, task.label_list, config.max_seq_length,
                             task.tokenizer, config.features_dir, split)


def train_steps(config: RunConfig, num_examples: int) -> tuple[int, int]:
  """(num_train_steps, num_warmup_steps) from the epoch settings."""
  steps = int(num_examples / config.train_batch_size *
              config.num_train_epochs)
  if steps < 1:
    raise UserError(
        f"--num_train_epochs={config.num_train_epochs} with "
        f"--train_batch_size={config.train_batch_size} on {num_examples} "
        "examples gives no training step")
  warmup = int(steps * config.warmup_proportion)
  logging.info("%d training examples, %d steps (%.2f epochs), %d warm-up",
               num_examples, steps,
               steps * config.train_batch_size / max(num_examples, 1), warmup)
  if steps < 10:
    logging.warning("only %d training steps", steps)
  return steps, warmup


def learning_rate(config: RunConfig, num_train_steps: int,
                  num_warmup_steps: int) -> optimization.LinearWarmupDecay:
  """Google's warm-up and linear decay at --learning_rate."""
  return optimization.LinearWarmupDecay(config.learning_rate, num_train_steps,
                                        num_warmup_steps)


def init_model(model: tf.Module, init_checkpoint: str | None,
               name_map: dict | None = None) -> None:
  """Loads `init_checkpoint` by name (a fresh run that is not resuming)."""
  if init_checkpoint:
    checkpoints.load_by_name(modeling.variables_by_name(model),
                             init_checkpoint, name_map=name_map)
  else:
    logging.warning("No --init_checkpoint: the model starts from random "
                    "weights (training from scratch)")


def load_trained(config: RunConfig, model: tf.Module) -> int:
  """Loads the latest checkpoint of the output dir, else --init_checkpoint,
  for eval, predict or export.  Returns its global step."""
  source = checkpoints.trained_source(config.output_dir,
                                      config.init_checkpoint)
  variables = modeling.variables_by_name(model)
  report = checkpoints.load_by_name(variables, source, strict=True)
  return checkpoints.read_global_step(report.checkpoint)


def evaluate(config: RunConfig, forward, task: Task, global_step: int,
             extra_metrics=None) -> dict[str, float]:
  """Dev-set metrics, written to eval_results.txt as Google's.

  `extra_metrics(outputs)` may add metrics from the dev outputs (logits
  [N, C] and the features' ints, in dataset order).
  """
  dataset, n = split_dataset(config, task, "dev", config.eval_batch_size,
                             False)
  logging.info("Evaluating on %d dev examples", n)
  out = evaluation.predict_logits(forward, dataset)
  metrics = evaluation.classification_metrics(out["logits"], out["label_ids"],
                                              len(task.label_list))
  if extra_metrics:
    metrics.update(extra_metrics(out))
  metrics["global_step"] = global_step
  metrics["loss"] = metrics["eval_loss"]
  lines = evaluation.write_eval_results(config.output_dir, metrics)
  logging.info("Eval results:\n%s", lines)
  return metrics


def predict(config: RunConfig, forward, task: Task) -> np.ndarray:
  """Writes test_results.tsv (class probabilities at T=1, one line each)."""
  dataset, n = split_dataset(config, task, "test", config.predict_batch_size,
                             False)
  logging.info("Predicting %d test examples", n)
  out = evaluation.predict_logits(forward, dataset)
  order = np.argsort(out["example_index"], kind="stable")
  probs = evaluation.softmax(out["logits"][order])
  path = os.path.join(config.output_dir, "test_results.tsv")
  evaluation.write_test_results(path, probs)
  labelled = out["has_label"][order].astype(bool)
  if labelled.all() and n:
    accuracy = float((probs.argmax(-1) == out["label_ids"][order]).mean())
    logging.info("Test accuracy %.4f on %d labelled examples", accuracy, n)
  logging.info("Wrote %s", path)
  return probs


def export_model(config: RunConfig, model: tf.Module, task: Task,
                 extra_info: dict | None = None) -> str:
  """The next version of --export_dir; returns its path."""
  from bert import text_graph  # Its Unicode tables load only when exporting.
  featurizer = text_graph.TextFeaturizer(
      config.vocab_file, config.do_lower_case, config.max_seq_length,
      spm_model_file=config.spm_model_file)
  return export.export_classifier(
      model, config.export_dir, vocab_file=config.vocab_file,
      bert_config=task.bert_config, label_list=task.label_list,
      max_seq_length=config.max_seq_length,
      do_lower_case=config.do_lower_case,
      spm_model_file=config.spm_model_file, text_featurizer=featurizer,
      extra_info={"task_name": config.task_name, **(extra_info or {})},
      jit_compile=config.export_jit_compile,
      position_blocks=config.export_position_blocks)


def write_outputs(config: RunConfig, model: tf.Module, task: Task,
                  global_step: int, extra_metrics=None,
                  export_info: dict | None = None) -> None:
  """What --do_eval, --do_predict and --do_export ask of a trained model
  (`extra_metrics` and `export_info` as for `evaluate` and
  `export_model`)."""
  forward = make_forward(model)
  if config.do_eval:
    evaluate(config, forward, task, global_step, extra_metrics)
  if config.do_predict:
    predict(config, forward, task)
  if config.do_export:
    export_model(config, model, task,
                 {"global_step": global_step, **(export_info or {})})


def make_forward(model: tf.Module):
  """features -> logits [B, C], inference mode."""
  def forward(features):
    return model(features["input_ids"], features["input_mask"],
                 features["segment_ids"], training=False)
  return forward


def cross_entropy(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
  """Per-example CE; logits [B, C], labels [B] -> [B]."""
  return tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
