"""Benchmark: the training step's kernels, and what else a step can skip.

Both steps live in one process and take turns (interleaved rounds), so a
change in the machine's load hits both alike.  "this step" is
`training.Trainer`'s step with `--kernels`; `--baseline`:

  reference        the same step with `--kernels=reference`: the plain
                   TensorFlow ops of `bert/modeling.py`, autodiff's
                   gradients (what `--kernels=fused` must beat to exist);
  full_last_layer  the classifier's logits from `forward`, whose last layer
                   computes every position (this step runs it for [CLS]
                   only);
  float32          the same step computing in float32 (this step computes
                   in `--precision`): the mixed-precision speed-up.

`--matmul_share` then traces `--steps` steps of each with TensorFlow's
profiler and splits each step's time into its matmuls (oneDNN's MatMul and
BatchMatMul kernels, the union of their intervals, as two can run at once)
and the rest.  Against float32 it also prints the ceiling: the speed-up of
the matmuls alone, which the step nears only as the rest shrinks to nothing,
and how small the rest would have to be for a given speed-up.

Random weights, sequences of `--seq_length` real tokens.

  python benchmarks/bench_fused.py                       # 4 x 256
  python benchmarks/bench_fused.py --layers=12 --hidden=768 --rounds=3 \
      --steps=2                                          # BERT-Base
  python benchmarks/bench_fused.py --precision=mixed_bfloat16
  python benchmarks/bench_fused.py --baseline=full_last_layer
  python benchmarks/bench_fused.py --baseline=float32 \
      --precision=mixed_bfloat16 --matmul_share
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile

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
flags.DEFINE_enum("kernels", "fused", ["reference", "fused"],
                  "This step's kernels (Trainer's --kernels).")
flags.DEFINE_enum("baseline", "reference",
                  ["reference", "full_last_layer", "float32"],
                  "What the step is compared with (see the docstring).")
flags.DEFINE_bool("matmul_share", False,
                  "Also profile both steps: their matmuls against the rest.")
flags.DEFINE_float("target", 1.8, "With --baseline=float32 --matmul_share: "
                   "the speed-up whose rest is printed.")


def make_step(work_dir: str, name: str, full_last_layer: bool = False,
              precision: str | None = None, kernels: str | None = None):
  """A Trainer step for a fresh model -> a function running one step."""
  from bert import modeling
  model = modeling.BertClassifier(
      modeling.sized_config(4000, FLAGS.layers, FLAGS.hidden), num_labels=2)
  return runs.synthetic_train_step(
      model, 4000, FLAGS.batch, FLAGS.seq_length,
      os.path.join(work_dir, name), precision or FLAGS.precision,
      FLAGS.jit_compile, full_last_layer, kernels or FLAGS.kernels)


def matmul_ms(step, steps: int, log_dir: str) -> float:
  """Milliseconds a step spends in matmul kernels: the union of their
  intervals in a TF profiler trace of `steps` steps, over all threads."""
  import glob
  import tensorflow as tf
  from tensorflow.tsl.profiler.protobuf import xplane_pb2

  tf.profiler.experimental.start(log_dir)
  for _ in range(steps):
    step()
  tf.profiler.experimental.stop()
  space = xplane_pb2.XSpace()
  with open(glob.glob(os.path.join(log_dir, "**", "*.xplane.pb"),
                      recursive=True)[0], "rb") as f:
    space.ParseFromString(f.read())
  intervals = []
  for plane in space.planes:
    # TF op events are named "node:OpType"; oneDNN's are _Mkl*MatMul*.
    matmuls = {i for i, m in plane.event_metadata.items()
               if "MatMul" in m.name.rsplit(":", 1)[-1] and ":" in m.name}
    for line in plane.lines:
      start_ps = line.timestamp_ns * 1000
      intervals += [(start_ps + e.offset_ps,
                     start_ps + e.offset_ps + e.duration_ps)
                    for e in line.events if e.metadata_id in matmuls]
  total_ps, end = 0, None
  for start, stop in sorted(intervals):
    if end is None or start > end:
      total_ps, end = total_ps + stop - start, stop
    elif stop > end:
      total_ps, end = total_ps + stop - end, stop
  return total_ps / 1e9 / steps


def main(argv):
  del argv
  from bert.report import call_times  # Each call waits for its work.
  baseline = FLAGS.baseline
  if baseline == "reference" and FLAGS.kernels == "reference":
    raise SystemExit("--baseline=reference compares --kernels=fused with "
                     "the reference; got --kernels=reference")
  if baseline == "float32" and FLAGS.precision == "float32":
    raise SystemExit("--baseline=float32 compares another --precision with "
                     "float32; got --precision=float32")
  work_dir = tempfile.mkdtemp(prefix="bench_fused_")
  steps = {baseline: make_step(work_dir, baseline,
                               baseline == "full_last_layer",
                               "float32" if baseline == "float32" else None,
                               "reference" if baseline == "reference"
                               else None),
           "this step": make_step(work_dir, "this")}
  for step in steps.values():
    call_times(step, 2)
  ms = {name: [] for name in steps}
  for _ in range(FLAGS.rounds):
    for name, step in steps.items():
      ms[name].append(1e3 * statistics.median(call_times(step, FLAGS.steps)))
  ratios = [b / t for b, t in zip(ms[baseline], ms["this step"])]
  print(f"{FLAGS.layers} x {FLAGS.hidden}, batch {FLAGS.batch}, "
        f"{FLAGS.seq_length} tokens, {FLAGS.precision}, kernels "
        f"{FLAGS.kernels}, jit_compile {FLAGS.jit_compile}, {FLAGS.rounds} rounds of {FLAGS.steps} steps")
  print("| step | ms (median of rounds) | examples/s |")
  print("|---|---|---|")
  for name, values in ms.items():
    median = statistics.median(values)
    print(f"| {name} | {median:.0f} | {FLAGS.batch / median * 1e3:.1f} |")
  print(f"this step is {statistics.median(ratios):.2f}x {baseline} "
        f"({min(ratios):.2f}-{max(ratios):.2f} over the rounds)")
  if FLAGS.matmul_share:
    print_matmul_share(steps, work_dir)


def print_matmul_share(steps: dict, work_dir: str) -> None:
  """Each step's matmuls against the rest: its time measured again just
  before a profiler trace of it (tracing slows a step a little, so the
  trace's own step time is not used) and the trace's matmul time."""
  from bert.report import call_times
  split = {}
  for name, step in steps.items():
    step_ms = 1e3 * statistics.median(call_times(step, FLAGS.steps))
    matmuls = matmul_ms(step, FLAGS.steps, os.path.join(work_dir, "trace_"
                                                      + name.split()[0]))
    split[name] = (step_ms, matmuls)
  print("| step | ms | matmuls ms | rest ms |")
  print("|---|---|---|---|")
  for name, (step_ms, matmuls) in split.items():
    print(f"| {name} | {step_ms:.0f} | {matmuls:.0f} | "
          f"{step_ms - matmuls:.0f} |")
  if FLAGS.baseline != "float32":
    return
  (base, base_mm), (this, this_mm) = split[FLAGS.baseline], split["this step"]
  # base / (this_mm + rest) = target, with the float32 step as it is.
  rest_needed = base / FLAGS.target - this_mm
  print(f"the matmuls alone are {base_mm / this_mm:.2f}x float32's: this "
        f"step's ceiling with nothing else; measured here {base / this:.2f}x. "
        f"For {FLAGS.target:.2f}x the rest ({this - this_mm:.0f} ms) would "
        f"have to be {rest_needed:.0f} ms" + (
            " (impossible)" if rest_needed <= 0 else "") + ".")


if __name__ == "__main__":
  app.run(main)
