"""Benchmark: the training step against what it replaced.

Both steps live in one process and take turns (interleaved rounds), so a
change in the machine's load hits both alike.  `--baseline`:

  plain_ops        the same `training.Trainer` step with the plain
                   TensorFlow ops patched back in while it is traced
                   (before `bert/fused.py`'s kernels): oneDNN's
                   MatMul+BiasAdd, tanh GELU, `tf.nn.moments` LayerNorm, the
                   residual's add, `tf.nn.experimental.stateless_dropout`,
                   the attention's einsums over [B, S, N, D] and Adam's
                   per-op update;
  full_last_layer  the classifier's logits from `forward`, whose last layer
                   computes every position (before the step ran it for
                   [CLS] only);
  fused_from       the same step traced with another checkout's
                   `bert/fused.py` (`--baseline_fused`), the rest of the
                   code as now: a change to the kernels alone, before and
                   after.  Its functions must take the arguments this
                   `bert/modeling.py` passes.

Random weights, sequences of `--seq_length` real tokens.

  python benchmarks/bench_fused.py --precision=mixed_bfloat16
  python benchmarks/bench_fused.py --layers=3 --batch=16 --seq_length=64 \
      --jit_compile          # the quickstart teacher's step
  python benchmarks/bench_fused.py --baseline=full_last_layer
  git worktree add /tmp/before a2ba02e   # Philox dropout masks
  python benchmarks/bench_fused.py --baseline=fused_from \
      --baseline_fused=/tmp/before/bert/fused.py --precision=mixed_bfloat16
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app, flags  # noqa: E402

import runs  # noqa: E402  benchmarks/runs.py, beside this file.

FLAGS = flags.FLAGS
flags.DEFINE_enum("precision", "float32",
                  ["float32", "mixed_bfloat16", "mixed_float16"],
                  "The step's precision.")
flags.DEFINE_integer("layers", 4, "Encoder layers.")
flags.DEFINE_integer("hidden", 256, "Hidden size (heads of 64).")
flags.DEFINE_integer("batch", 32, "Training batch size.")
flags.DEFINE_integer("seq_length", 128, "Tokens per example, all real.")
flags.DEFINE_bool("jit_compile", False, "Both steps compiled whole by XLA.")
flags.DEFINE_integer("rounds", 5, "Interleaved rounds.")
flags.DEFINE_integer("steps", 6, "Timed steps per round and step.")
flags.DEFINE_enum("baseline", "plain_ops",
                  ["plain_ops", "full_last_layer", "fused_from"],
                  "What the step is compared with (see the docstring).")
flags.DEFINE_string("baseline_fused", None,
                    "With --baseline=fused_from: the other bert/fused.py.")


@contextlib.contextmanager
def plain_ops():
  """While tracing: the ops the training step ran before `fused.py`."""
  import tensorflow as tf
  from bert import fused, modeling, optimization

  inference_norm = modeling.LayerNorm.__call__

  def layer_norm(self, x, training=False):
    del training  # LayerNorm's own inference maths, as training ran it.
    return inference_norm(self, x)

  def add_and_norm(self, residual, dense, x, dropout_rate, training,
                   first_of=None):
    return self(residual + modeling.dropout(dense(x), dropout_rate,
                                            training, first_of))

  def attention(self, x, mask_adder, batch, seq, training, first_only=False):
    return self._heads_last(x, mask_adder, batch, seq, training, first_only)

  def adam_per_variable(self, used, grads, lr, finite):
    for i, grad in zip(used, grads):
      p = self._params[i]
      self._update(p.var, grad, p.m, p.v, lr, p.decay, finite)

  patches = [
      (fused, "gelu", lambda x, bias=None: modeling.gelu(x)),
      (fused, "bias_in_kernels", lambda dtype: False),
      (fused, "dropout", lambda x, rate, seed, first_of=None:
       tf.nn.experimental.stateless_dropout(x, rate=rate, seed=seed)),
      (modeling.LayerNorm, "__call__", layer_norm),
      (modeling.LayerNorm, "add_and_norm", add_and_norm),
      (modeling.Attention, "__call__", attention),
      (optimization, "_adam_step", optimization._adam_step.python_function),
      (optimization.AdamWeightDecay, "_update_all", adam_per_variable)]
  saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
  for owner, name, value in patches:
    setattr(owner, name, value)
  try:
    yield
  finally:
    for owner, name, value in saved:
      setattr(owner, name, value)


@contextlib.contextmanager
def fused_from(path: str):
  """While tracing: `modeling`'s kernels are those of the file at `path`."""
  from bert import modeling
  spec = importlib.util.spec_from_file_location("baseline_fused", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  saved, modeling.fused = modeling.fused, module
  try:
    yield
  finally:
    modeling.fused = saved


def make_step(work_dir: str, name: str, full_last_layer: bool = False):
  """A Trainer step for a fresh model -> a function running one step."""
  from bert import modeling
  model = modeling.BertClassifier(
      modeling.sized_config(4000, FLAGS.layers, FLAGS.hidden), num_labels=2)
  return runs.synthetic_train_step(
      model, 4000, FLAGS.batch, FLAGS.seq_length,
      os.path.join(work_dir, name), FLAGS.precision, FLAGS.jit_compile,
      full_last_layer)


def main(argv):
  del argv
  from bert.report import call_times  # Each call waits for its work.
  baseline = FLAGS.baseline
  if baseline == "fused_from" and not os.path.isfile(
      FLAGS.baseline_fused or ""):
    raise SystemExit("--baseline=fused_from needs --baseline_fused=PATH, "
                     f"a bert/fused.py; got {FLAGS.baseline_fused!r}")
  work_dir = tempfile.mkdtemp(prefix="bench_fused_")
  steps = {baseline: make_step(work_dir, baseline,
                               baseline == "full_last_layer"),
           "this step": make_step(work_dir, "this")}
  patched = {"plain_ops": plain_ops,
             "fused_from": lambda: fused_from(FLAGS.baseline_fused)}
  if baseline in patched:
    with patched[baseline]():
      steps[baseline]()  # Traced (and compiled) with the baseline's ops.
  for step in steps.values():
    call_times(step, 2)
  ms = {name: [] for name in steps}
  for _ in range(FLAGS.rounds):
    for name, step in steps.items():
      ms[name].append(1e3 * statistics.median(call_times(step, FLAGS.steps)))
  ratios = [b / t for b, t in zip(ms[baseline], ms["this step"])]
  print(f"{FLAGS.layers} x {FLAGS.hidden}, batch {FLAGS.batch}, "
        f"{FLAGS.seq_length} tokens, {FLAGS.precision}, jit_compile "
        f"{FLAGS.jit_compile}, {FLAGS.rounds} rounds of {FLAGS.steps} steps")
  print("| step | ms (median of rounds) | examples/s |")
  print("|---|---|---|")
  for name, values in ms.items():
    median = statistics.median(values)
    print(f"| {name} | {median:.0f} | {FLAGS.batch / median * 1e3:.1f} |")
  print(f"this step is {statistics.median(ratios):.2f}x {baseline} "
        f"({min(ratios):.2f}-{max(ratios):.2f} over the rounds)")


if __name__ == "__main__":
  app.run(main)
