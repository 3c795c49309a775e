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

if not __package__:  # run as `python bert/run_pretraining.py`
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf
from absl import app, flags, logging

from bert import checkpoints, evaluation, modeling, optimization
from bert import pretraining, run_classifier, run_config, tokenization
from bert import training
from bert.errors import UserError, exit_on_error

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Google's run_pretraining.py flags.  Names that another script of this
  process already defined (run_classifier.py's, in the tests) are shared."""
  def define(kind, name, default, help_text, *args):
    getattr(run_classifier.DEFINE_IF_MISSING, f"DEFINE_{kind}")(
        name, default, *args, help_text)

  define("string", "input_file", None, "Input TFRecord files (comma list "
         "and globs) from create_pretraining_data.py.")
  define("string", "output_dir", None, "Checkpoints, eval_results.txt and "
         "the run's record go here.")
  define("bool", "do_train", False, "Pre-train.")
  define("bool", "do_eval", False, "Evaluate (masked-LM and next-sentence "
         "accuracy and loss).")
  define("string", "bert_config_file", None, "The model's bert_config.json.")
  define("string", "vocab_file", None, "Optional: checked against the "
         "config's vocab_size.")
  define("string", "init_checkpoint", None, "Start from this checkpoint "
         "(e.g. Google's bert_model.ckpt: continued pre-training).")
  define("integer", "max_seq_length", 128, "As create_pretraining_data.py's.")
  define("integer", "max_predictions_per_seq", 20, "As "
         "create_pretraining_data.py's.")
  define("integer", "train_batch_size", 32, "Global training batch size.")
  define("integer", "eval_batch_size", 8, "Eval batch size.")
  define("float", "learning_rate", 5e-5, "Peak learning rate of Adam.")
  define("integer", "num_train_steps", 100000, "Training steps.")
  define("integer", "num_warmup_steps", 10000, "Warm-up steps.")
  define("integer", "save_checkpoints_steps", 1000, "Checkpoint every N "
         "steps.")
  define("integer", "keep_checkpoint_max", 3, "Checkpoints kept.")
  define("integer", "iterations_per_loop", 1000, "Ignored (TPU estimator).")
  define("integer", "max_eval_steps", 100, "Eval batches at most.")
  define("integer", "log_steps", 100, "Log progress every N steps.")
  define("integer", "seed", 12345, "Random seed.")
  define("enum", "distribution_strategy", "auto", "auto: a TPU with "
         "--use_tpu, MirroredStrategy over several GPUs, else one device.",
         training.STRATEGIES)
  define("enum", "precision", "float32", "What training computes in "
         "(mixed_bfloat16, mixed_float16: float32 variables and checkpoints).",
         list(training.PRECISIONS))
  define("bool", "jit_compile", False, "Compile the training step with XLA "
         "(fused kernels instead of many small ops).")
  define("bool", "use_tpu", False, "Train on the Cloud TPU --tpu_name.")
  define("string", "tpu_name", None, "The Cloud TPU.")
  define("string", "tpu_zone", None, "GCE zone of --tpu_name.")
  define("string", "gcp_project", None, "GCP project of --tpu_name.")
  define("string", "master", None, "Ignored (TF1 TPU master address).")
  define("integer", "num_tpu_cores", 8, "Ignored.")


define_flags()


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


def main(argv):
  del argv
  explicit = {name for name in FLAGS if FLAGS[name].present}
  config, _ = run_config.settle(run_config.PretrainConfig,
                                FLAGS.flag_values_dict(), explicit)
  with training.worker_output_dir(config.output_dir) as write_dir:
    run(config, write_dir)


def run(config: run_config.PretrainConfig, write_dir: str | None = None) -> None:
  """Pre-train and/or evaluate (`write_dir`: as in `run_classifier.run`)."""
  chief = training.cluster_task().is_chief
  if not config.do_train and not chief:
    return
  input_files = pretraining.input_files(config.input_file)
  bert_config = modeling.BertConfig.from_json_file(config.bert_config_file)
  if config.max_seq_length > bert_config.max_position_embeddings:
    raise UserError(f"--max_seq_length={config.max_seq_length} is more than "
                    f"max_position_embeddings="
                    f"{bert_config.max_position_embeddings}")
  if config.vocab_file:
    tokenization.check_vocab_fits(
        tokenization.FullTokenizer(config.vocab_file), bert_config.vocab_size,
        config.vocab_file)
  training.set_seed(config.seed)
  strategy = training.get_strategy(
      config.distribution_strategy, config.use_tpu, config.tpu_name,
      config.tpu_zone, config.gcp_project)
  with strategy.scope():
    model = modeling.BertForPreTraining(bert_config)
  global_step = 0
  if config.do_train:
    training.check_batch_size(config.train_batch_size, strategy)
    dataset = pretraining.make_dataset(
        input_files, config.max_seq_length, config.max_predictions_per_seq,
        config.train_batch_size, is_training=True, seed=config.seed)
    trainer = training.Trainer(
        model, make_loss_fn(model), strategy=strategy,
        output_dir=config.output_dir, num_train_steps=config.num_train_steps,
        learning_rate=optimization.LinearWarmupDecay(
            config.learning_rate, config.num_train_steps,
            config.num_warmup_steps),
        save_checkpoints_steps=config.save_checkpoints_steps,
        log_every=config.log_steps, keep_checkpoints=config.keep_checkpoint_max,
        seed=config.seed, precision=config.precision, write_dir=write_dir,
        jit_compile=config.jit_compile)
    if chief:
      run_config.write_record(config)
    if not trainer.restore():
      if config.init_checkpoint:
        checkpoints.load_by_name(modeling.variables_by_name(model),
                                 config.init_checkpoint)
      else:
        logging.warning("No --init_checkpoint: pre-training from random "
                        "weights")
    trainer.train(dataset, config.train_batch_size)
    global_step = trainer.global_step
    if not chief:
      return  # Eval is the chief's.
  if config.do_eval:
    if not config.do_train:
      global_step = load_for_eval(config, model)
    evaluate(config, model, input_files, global_step)


if __name__ == "__main__":
  flags.mark_flags_as_required(["output_dir"])
  app.run(exit_on_error(main))
