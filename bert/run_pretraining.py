"""Pre-trains BERT (masked LM + next sentence) with Google's flags.

  python bert/run_pretraining.py --input_file=data/pretrain-*.tfrecord \
    --output_dir=output/pretrain --do_train --do_eval \
    --bert_config_file=configs/teacher_config.json \
    --train_batch_size=32 --max_seq_length=128 --max_predictions_per_seq=20 \
    --num_train_steps=10000 --num_warmup_steps=1000 --learning_rate=1e-4

The input comes from bert/create_pretraining_data.py (or Google's script).
The heads carry Google's names (`cls/predictions/...` with the output tied
to the word embeddings, `cls/seq_relationship/...`), so Google's released
checkpoints load with their heads and ours load in Google's code; the
checkpoint feeds `run_classifier.py --init_checkpoint` and
`bert/augment.py --mlm_checkpoint`.  `--do_eval` alone evaluates
`--init_checkpoint` (or the output dir's latest checkpoint);
`eval_results.txt` has Google's keys and definitions (bert/pretraining.py).
Re-running the same command after a crash resumes from the last checkpoint.
"""

import os
import sys
import types

if not __package__:  # run as `python bert/run_pretraining.py`
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf
from absl import app, flags, logging

from bert import checkpoints, evaluation, modeling, optimization
from bert import pretraining, run_config, tokenization
from bert import training
from bert.errors import UserError, exit_on_error

CONFIG = run_config.PretrainConfig


def losses(mlm_logits, nsp_logits, features) -> dict[str, tf.Tensor]:
  """Google's masked-LM and next-sentence losses and their sum."""
  mlm_loss, _ = pretraining.masked_lm_loss(
      mlm_logits, features["masked_lm_ids"], features["masked_lm_weights"])
  nsp_loss, _ = pretraining.next_sentence_loss(
      nsp_logits, features["next_sentence_labels"])
  return {"loss": mlm_loss + nsp_loss, "masked_lm_loss": mlm_loss,
          "next_sentence_loss": nsp_loss}


def make_loss_fn(model: modeling.BertForPreTraining):
  """The Trainer's loss: masked-LM + next-sentence (Google's)."""
  def loss_fn(features, is_training, step):
    del step
    mlm_logits, nsp_logits = model(
        features["input_ids"], features["input_mask"],
        features["segment_ids"], features["masked_lm_positions"],
        training=is_training)
    parts = losses(mlm_logits, nsp_logits, features)
    return parts.pop("loss"), parts
  return loss_fn


def evaluate(config: run_config.PretrainConfig,
             model: modeling.BertForPreTraining, input_files: list[str],
             global_step: int) -> dict[str, float]:
  """Google's eval metrics over at most --max_eval_steps batches, written
  to eval_results.txt."""
  dataset = pretraining.make_dataset(
      input_files, config.max_seq_length, config.max_predictions_per_seq,
      config.eval_batch_size, is_training=False).take(config.max_eval_steps)
  @tf.function
  def step(features):
    mlm_logits, nsp_logits = model(
        features["input_ids"], features["input_mask"],
        features["segment_ids"], features["masked_lm_positions"])
    return mlm_logits, nsp_logits, losses(mlm_logits, nsp_logits,
                                          features)["loss"]

  metrics = pretraining.Metrics()
  for features in dataset:
    mlm_logits, nsp_logits, loss = step(features)
    metrics.add(mlm_logits.numpy(), features["masked_lm_ids"].numpy(),
                features["masked_lm_weights"].numpy(), nsp_logits.numpy(),
                features["next_sentence_labels"].numpy(), loss.numpy())
  results = {**metrics.result(), "global_step": global_step}
  lines = evaluation.write_eval_results(config.output_dir, results)
  logging.info("Eval results:\n%s", lines)
  return results


def load_for_eval(config: run_config.PretrainConfig,
                  model: modeling.BertForPreTraining) -> int:
  """The output dir's latest checkpoint, else --init_checkpoint, heads
  included; returns its global step."""
  source = checkpoints.trained_source(config.output_dir,
                                      config.init_checkpoint)
  report = checkpoints.load_by_name(modeling.variables_by_name(model), source)
  heads = [n for n in report.missing if n.startswith("cls/")]
  if heads:
    raise UserError(f"{report.checkpoint}: no pre-training heads ({heads[0]} "
                    "and others): --do_eval needs a checkpoint with cls/ "
                    "heads, e.g. Google's bert_model.ckpt (fine-tuned "
                    "classifiers drop them)")
  if report.missing:
    raise UserError(f"{report.checkpoint}: lacks {report.missing[0]} and "
                    f"{len(report.missing) - 1} more BERT variable(s)")
  return checkpoints.read_global_step(report.checkpoint)


def main(argv, flag_values: flags.FlagValues = flags.FLAGS):
  del argv
  config, _ = run_config.settle_flags(CONFIG, flag_values)
  with training.worker_output_dir(config.output_dir) as write_dir:
    run(config, write_dir)


def init_model(config: run_config.PretrainConfig,
               model: modeling.BertForPreTraining) -> None:
  """The weights of a new run: --init_checkpoint's, else random."""
  if config.init_checkpoint:
    checkpoints.load_by_name(modeling.variables_by_name(model),
                             config.init_checkpoint)
  else:
    logging.warning("No --init_checkpoint: pre-training from random weights")


def run(config: run_config.PretrainConfig, write_dir: str | None = None) -> None:
  """Pre-train and/or evaluate (`write_dir`: as in `run_classifier.run`)."""

  def build(strategy):
    input_files = pretraining.input_files(config.input_file)
    bert_config = modeling.BertConfig.from_json_file(config.bert_config_file)
    if config.max_seq_length > bert_config.max_position_embeddings:
      raise UserError(f"--max_seq_length={config.max_seq_length} is more "
                      f"than max_position_embeddings="
                      f"{bert_config.max_position_embeddings}")
    if config.vocab_file:
      tokenization.check_vocab_fits(
          tokenization.FullTokenizer(config.vocab_file),
          bert_config.vocab_size, config.vocab_file)
    with strategy.scope():
      model = modeling.BertForPreTraining(bert_config)
    parts = types.SimpleNamespace(model=model, input_files=input_files)
    if config.do_train:
      parts.dataset = pretraining.make_dataset(
          input_files, config.max_seq_length, config.max_predictions_per_seq,
          config.train_batch_size, is_training=True, seed=config.seed)
      parts.loss_fn = make_loss_fn(model)
      parts.num_train_steps = config.num_train_steps
      parts.learning_rate = optimization.LinearWarmupDecay(
          config.learning_rate, config.num_train_steps,
          config.num_warmup_steps)
      parts.init = lambda: init_model(config, model)
    return parts

  ran = training.run_script(config, build, write_dir)
  if ran is None:
    return  # Eval is the chief's.
  parts, global_step = ran
  if config.do_eval:
    if global_step is None:
      global_step = load_for_eval(config, parts.model)
    evaluate(config, parts.model, parts.input_files, global_step)


if __name__ == "__main__":
  run_config.define_flags(CONFIG)
  flags.adopt_module_key_flags(run_config)  # --help lists them.
  flags.mark_flags_as_required(["output_dir"])
  app.run(exit_on_error(main))
