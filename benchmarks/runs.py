"""Shared by the experiment scripts: one training run as a subprocess."""

import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def export_synthetic(model, config, work_dir: str, max_seq_length: int,
                     jit_compile: bool = False,
                     position_blocks: int = 2) -> str:
  """Exports a BertClassifier of random or benchmark-trained weights to
  `<work_dir>/export` with a made-up vocab of `config.vocab_size` tokens
  (written to `<work_dir>/vocab.txt`); returns the version's path.
  `jit_compile`, `position_blocks`: as --export_jit_compile and
  --export_position_blocks."""
  # Imported here: scripts that only start runs need no TensorFlow.
  from bert import export
  os.makedirs(work_dir, exist_ok=True)
  vocab = os.path.join(work_dir, "vocab.txt")
  with open(vocab, "w") as f:
    f.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] +
                      [f"t{i}" for i in range(config.vocab_size - 5)]) + "\n")
  return export.export_classifier(
      model, os.path.join(work_dir, "export"), vocab_file=vocab,
      bert_config=config, label_list=["0", "1"],
      max_seq_length=max_seq_length, do_lower_case=True,
      jit_compile=jit_compile, position_blocks=position_blocks)


def synthetic_train_step(model, vocab_size: int, batch: int, seq: int,
                         output_dir: str, precision: str = "float32",
                         jit_compile: bool = False,
                         full_last_layer: bool = False,
                         kernels: str = "auto"):
  """`training.Trainer`'s step for a BertClassifier on one fixed batch of
  `seq` random real tokens (cross-entropy on random labels) -> a function
  running one step to completion.  `full_last_layer`: the logits from
  `forward`, whose last layer computes every position, not [CLS] only."""
  import numpy as np
  import tensorflow as tf
  from bert import training

  rng = np.random.default_rng(0)
  features = {"input_ids": rng.integers(5, vocab_size, (batch, seq)),
              "input_mask": np.ones((batch, seq)),
              "segment_ids": np.zeros((batch, seq)),
              "label_ids": rng.integers(0, 2, batch)}
  dataset = tf.data.Dataset.from_tensors(
      {k: tf.constant(v, tf.int32) for k, v in features.items()}).repeat()

  def loss_fn(f, is_training, step):
    del step
    inputs = (f["input_ids"], f["input_mask"], f["segment_ids"])
    logits = (model.forward(*inputs, training=is_training)[0]
              if full_last_layer else model(*inputs, training=is_training))
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        f["label_ids"], logits)), {}

  strategy = tf.distribute.get_strategy()
  trainer = training.Trainer(
      model, loss_fn, strategy=strategy, output_dir=output_dir,
      num_train_steps=10**9, learning_rate=1e-4, precision=precision,
      jit_compile=jit_compile, kernels=kernels)
  step = trainer.make_train_step()
  iterator = iter(strategy.experimental_distribute_dataset(dataset))
  return lambda: float(step(iterator)["loss"])


def read_metrics(output_dir: str) -> dict[str, float]:
  """eval_results.txt of a finished run as {name: value}."""
  with open(os.path.join(output_dir, "eval_results.txt")) as f:
    return {k: float(v) for k, v in
            (line.strip().split(" = ") for line in f if " = " in line)}


def call_script(script: str, output_dir: str, flags: list[str],
                log_file: str | None = None) -> None:
  """Runs bert/<script> --output_dir=`output_dir` `flags`, its log appended
  to `log_file` (or nowhere); raises if it fails."""
  command = ([sys.executable, os.path.join(ROOT, "bert", script),
              f"--output_dir={output_dir}"] + flags)
  print(" ".join(command), flush=True)
  os.makedirs(output_dir, exist_ok=True)
  with open(log_file or os.devnull, "a") as log:
    subprocess.run(command, check=True, stdout=log, stderr=log,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def run(script: str, output_dir: str, flags: list[str],
        log_file: str | None = None) -> dict[str, float]:
  """Runs bert/<script> with `flags` unless `output_dir` already has
  eval_results.txt (so a rerun resumes an interrupted experiment), and
  returns its dev metrics.  The run's log goes to `log_file` (or nowhere)."""
  if not os.path.exists(os.path.join(output_dir, "eval_results.txt")):
    call_script(script, output_dir, flags, log_file)
  return read_metrics(output_dir)


def define_experiment_flags(work_dir: str) -> None:
  """The flags every distillation experiment has: data, work directory
  (under output/), teacher, its vocab and the seeds."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  flags.DEFINE_string("data_dir", os.path.join(ROOT, "..", "shared", "data",
                                               "waimai"), "text&label data.")
  flags.DEFINE_string("work_dir", os.path.join(ROOT, "output", work_dir),
                      "Where runs go.")
  flags.DEFINE_string("teacher_model", None, "Exported teacher.")
  flags.DEFINE_string("vocab_file", None, "The teacher's vocab.txt.")
  flags.DEFINE_list("seeds", ["1", "2", "3"], "Seeds.")
  flags.mark_flags_as_required(["teacher_model", "vocab_file"])


def start_experiment(data_dir: str, work_dir: str,
                     vocab_file: str) -> int | None:
  """Creates `work_dir` and returns the vocab's size, or None (after saying
  so) when the waimai data is not there."""
  if not os.path.exists(os.path.join(data_dir, "train.csv")):
    print(f"skipped: no {data_dir}/train.csv")
    return None
  os.makedirs(work_dir, exist_ok=True)
  with open(vocab_file, encoding="utf-8") as f:
    return sum(1 for _ in f)


def export(output_dir: str, flags: list[str],
           log_file: str | None = None,
           script: str = "run_classifier_distill.py") -> str:
  """Exports the run `script` trained in `output_dir` (same flags as its
  training, without --do_train/--do_eval; none are needed beside the run
  record) to `output_dir`/export; returns that path."""
  export_dir = os.path.join(output_dir, "export")
  call_script(script, output_dir,
              ["--do_export", f"--export_dir={export_dir}"] +
              [f for f in flags if f not in ("--do_train", "--do_eval")],
              log_file)
  return export_dir


def char_vocab_and_config(data_dir: str, out_dir: str, layers: int,
                          hidden: int) -> tuple[str, str, int]:
  """Writes to `out_dir` a character vocab.txt built from
  `data_dir`/train.csv (text&label lines) and a bert_config.json of
  `layers` x `hidden` that fits it -> (vocab file, config file, number of
  training lines)."""
  # pylint: disable=import-outside-toplevel
  from bert import char_vocab, modeling
  with open(os.path.join(data_dir, "train.csv"), encoding="utf-8") as f:
    texts = [line.rstrip("\n").rsplit("&", 1)[0] for line in f if line.strip()]
  vocab = char_vocab.build_vocab(texts, min_char_count=2, do_lower_case=True)
  os.makedirs(out_dir, exist_ok=True)
  vocab_file = os.path.join(out_dir, "vocab.txt")
  with open(vocab_file, "w", encoding="utf-8") as f:
    f.write("\n".join(vocab) + "\n")
  config_file = os.path.join(out_dir, "bert_config.json")
  with open(config_file, "w") as f:
    f.write(modeling.sized_config(len(vocab), layers, hidden).to_json_string())
  return vocab_file, config_file, len(texts)


def print_seed_table(table: dict[str, list[float]]) -> None:
  """A markdown table of each arm's dev accuracy over seeds: mean, sample
  standard deviation and every run."""
  print("| arm | mean | std | runs |")
  print("|---|---|---|---|")
  for name, values in table.items():
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    print(f"| {name} | {statistics.mean(values):.4f} | {std:.4f} | "
          f"{', '.join(f'{v:.4f}' for v in values)} |")
