"""Benchmark: this project against its peers on one BERT shape.

Every system gets the same shape (layers, width, heads, vocab), random
weights, sequences of `--seq_length` real tokens (no padding to trim) and the
same threads.  Three measures:

  train  examples/s of one optimiser step at `--train_batch` (forward,
         backward, Adam); ours through `training.Trainer`'s compiled step;
  b1     batch-1 latency, ms (median call), ours through the exported
         `serving_default` run as TF Serving runs it (the SavedModel in a
         Session, `export_reader.SessionSignature`), in a process of its own with
         the threads scripts/serve.sh gives TF Serving (`ServingProcess`);
  b32    examples/s at batch 32 through the same path.

Systems: ours in float32, --precision=mixed_bfloat16 and float32 with
--jit_compile (training, `ours_xla`) and its float32, XLA
(--export_jit_compile, `ours_xla`), float32 TF Lite and int8 TF Lite
exports (serving), and on request `ours_one_block`, the float32 export
without inference row blocks (the graph before them); Hugging Face
transformers on PyTorch; ONNX Runtime fp32 and int8 (dynamic
quantisation) on the same HF model exported to ONNX.  A
peer whose package is missing is skipped with a note (`pip install -r
requirements-bench.txt`).

The systems take turns: each of `--rounds` rounds times every system once,
so a change in the machine's load hits all of them alike.  The table gives
the median over rounds and, per system, the median of its same-round ratio
to ours in float32, with the min-max over rounds of that ratio (the noise).

  python benchmarks/bench_peers.py                       # 4 layers, 256
  python benchmarks/bench_peers.py --preset=base --rounds=3 --train_steps=3
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
PRESETS = {"small": dict(layers=4, hidden=256, heads=4, vocab=4000),
           "base": dict(layers=12, hidden=768, heads=12, vocab=21128),
           "student": dict(layers=2, hidden=128, heads=2, vocab=1951)}
flags.DEFINE_enum("preset", "small", list(PRESETS), "The model shape: small "
                  "(4 x 256, vocab 4,000), base (BERT-Base, Chinese vocab) "
                  "or student (the 2 x 128 students, vocab 1,951).")
flags.DEFINE_integer("seq_length", 128, "Tokens per example, all real.")
flags.DEFINE_integer("train_batch", 32, "Training batch size.")
flags.DEFINE_integer("rounds", 3, "Interleaved rounds.")
flags.DEFINE_integer("train_steps", 8, "Timed training steps per round.")
flags.DEFINE_integer("b1_calls", 50, "Timed batch-1 calls per round.")
flags.DEFINE_integer("b32_calls", 5, "Timed batch-32 calls per round.")
flags.DEFINE_list("systems", ["ours", "ours_bf16", "ours_xla", "ours_tflite",
                              "ours_int8", "hf_torch", "ort", "ort_int8"],
                  "Which systems to run.")
flags.DEFINE_string("work_dir", None, "Where exports go (default: a "
                    "temporary directory).")


# Each system: name -> {"train": step fn, "b1": call fn, "b32": call fn}
# (any subset), each fn running one unit of work to completion.


def bert_config(shape: dict):
  from bert import modeling
  return modeling.BertConfig(
      vocab_size=shape["vocab"], hidden_size=shape["hidden"],
      num_hidden_layers=shape["layers"], num_attention_heads=shape["heads"],
      intermediate_size=4 * shape["hidden"], max_position_embeddings=512)


def batch_calls(serve, vocab: int, seq_length: int,
                to_input=lambda a: a) -> dict:
  """b1 and b32: `serve(**features)["logits"]` on int32 features of
  `seq_length` random real tokens, made once with `to_input` (outside the
  timed call)."""
  import numpy as np
  ids = np.random.default_rng(0).integers(
      5, vocab, (1, seq_length)).astype(np.int32)
  out = {}
  for b in (1, 32):
    features = {"input_ids": ids.repeat(b, 0),
                "input_mask": np.ones((b, seq_length), np.int32),
                "segment_ids": np.zeros((b, seq_length), np.int32)}
    inputs = {k: to_input(v) for k, v in features.items()}
    out[f"b{b}"] = (lambda inputs: lambda: np.asarray(
        serve(**inputs)["logits"]))(inputs)
  return out


def _serve_in_worker(conn, path: str, vocab: int, seq_length: int) -> None:
  """A `ServingProcess`'s side: serving threads, the export's
  `serving_default`, then (measure, runs) -> wall times until the pipe
  closes."""
  from bert import export_reader
  from bert import threads
  from bert.report import call_times
  if not threads.use_serving_threads([path]):
    raise RuntimeError("TensorFlow started before its threads were set")
  calls = batch_calls(export_reader.SessionSignature(path), vocab, seq_length)
  conn.send("ready")
  while True:
    try:
      request = conn.recv()
    except EOFError:  # The benchmark has ended.
      return
    measure, runs = request
    conn.send(call_times(calls[measure], runs))


class ServingProcess:
  """An export's `serving_default` in a process of its own, with the
  threads TF Serving gets from scripts/serve.sh (`threads.serving_threads`):
  TensorFlow fixes its threads once per process, and this one trains with
  its default threads.  Timed there, call by call, as `call_times` times
  the systems that run here."""

  def __init__(self, path: str, shape: dict):
    import multiprocessing
    context = multiprocessing.get_context("spawn")
    self._conn, child = context.Pipe()
    self._process = context.Process(
        target=_serve_in_worker, daemon=True,
        args=(child, path, shape["vocab"], FLAGS.seq_length))
    self._process.start()
    child.close()
    try:
      ready = self._conn.recv() == "ready"
    except EOFError:  # The worker died: its traceback is above.
      ready = False
    if not ready:
      raise RuntimeError(f"serving {path} did not start")

  def measures(self) -> dict:
    """b1 and b32 as objects with `times(runs)`."""
    return {m: _Remote(self, m) for m in ("b1", "b32")}

  def times(self, measure: str, runs: int) -> list[float]:
    self._conn.send((measure, runs))
    return self._conn.recv()


class _Remote:
  """One measure of a `ServingProcess`: `times(runs)`, as main times."""

  def __init__(self, process: ServingProcess, measure: str):
    self.process, self.measure = process, measure

  def times(self, runs: int) -> list[float]:
    return self.process.times(self.measure, runs)


def serving_calls(path: str, shape: dict) -> dict:
  """b1 and b32 through an export's `serving_default`, run as TF Serving
  runs it, in a process with serve.sh's threads (`ServingProcess`)."""
  return ServingProcess(path, shape).measures()


def ours(shape: dict, work_dir: str, precision: str,
         jit_compile: bool = False) -> dict:
  from bert import modeling

  config = bert_config(shape)
  model = modeling.BertClassifier(config, num_labels=2)
  out = {"train": runs.synthetic_train_step(
      model, shape["vocab"], FLAGS.train_batch, FLAGS.seq_length,
      os.path.join(work_dir, f"train_{precision}_{jit_compile}"), precision,
      jit_compile)}
  if precision != "float32" or jit_compile:
    return out
  return {**out, **serving_calls(
      runs.export_synthetic(model, config, work_dir, FLAGS.seq_length),
      shape)}


def ours_xla(shape: dict, work_dir: str) -> dict:
  from bert import modeling
  config = bert_config(shape)
  path = runs.export_synthetic(
      modeling.BertClassifier(config, num_labels=2), config,
      os.path.join(work_dir, "xla"), FLAGS.seq_length, jit_compile=True)
  return {**ours(shape, work_dir, "float32", jit_compile=True),
          **serving_calls(path, shape)}


def ours_one_block(shape: dict, work_dir: str) -> dict:
  """Serving only: the float32 export without blocks of positions
  (`--export_position_blocks=1`), served with the same threads."""
  from bert import modeling
  config = bert_config(shape)
  path = runs.export_synthetic(
      modeling.BertClassifier(config, num_labels=2), config,
      os.path.join(work_dir, "one_block"), FLAGS.seq_length,
      position_blocks=1)
  return serving_calls(path, shape)


def hf_model(shape: dict):
  import torch
  import transformers
  torch.manual_seed(0)
  config = transformers.BertConfig(
      vocab_size=shape["vocab"], hidden_size=shape["hidden"],
      num_hidden_layers=shape["layers"], num_attention_heads=shape["heads"],
      intermediate_size=4 * shape["hidden"], hidden_act="gelu_new",
      num_labels=2, attn_implementation="sdpa")
  return transformers.BertForSequenceClassification(config)


def hf_torch(shape: dict, work_dir: str) -> dict:
  del work_dir
  import torch
  torch.set_num_threads(os.cpu_count())
  model = hf_model(shape)
  batch, seq = FLAGS.train_batch, FLAGS.seq_length
  ids = torch.randint(5, shape["vocab"], (batch, seq))
  mask = torch.ones_like(ids)
  labels = torch.randint(0, 2, (batch,))
  optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

  def train():
    model.train()
    optimizer.zero_grad()
    loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    loss.backward()
    optimizer.step()
    return float(loss.detach())

  def infer(b):
    def call():
      model.eval()
      with torch.inference_mode():
        return model(input_ids=ids[:1].repeat(b, 1),
                     attention_mask=mask[:1].repeat(b, 1)).logits.numpy()
    return call

  return {"train": train, "b1": infer(1), "b32": infer(32)}


def onnx_file(shape: dict, work_dir: str) -> str:
  """The HF model exported to ONNX (dynamic batch and length)."""
  import torch
  path = os.path.join(work_dir, "hf.onnx")
  if os.path.exists(path):
    return path
  model = hf_model(shape).eval()
  ids = torch.randint(5, shape["vocab"], (2, FLAGS.seq_length))
  batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
  torch.onnx.export(
      model, (ids, torch.ones_like(ids)), path, dynamo=True,
      input_names=["input_ids", "attention_mask"], output_names=["logits"],
      dynamic_shapes=({0: batch, 1: seq}, {0: batch, 1: seq}))
  return path


def ort(shape: dict, work_dir: str, int8: bool) -> dict:
  import numpy as np
  import onnxruntime
  path = onnx_file(shape, work_dir)
  if int8:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    quantized = os.path.join(work_dir, "hf_int8.onnx")
    if not os.path.exists(quantized):
      import onnx
      # The dynamo exporter's value_info disagrees with ONNX's own shape
      # inference, which quantize_dynamic runs: drop it, shapes are re-inferred.
      model = onnx.load(path)
      del model.graph.value_info[:]
      cleaned = os.path.join(work_dir, "hf_clean.onnx")
      onnx.save(model, cleaned)
      quantize_dynamic(cleaned, quantized, weight_type=QuantType.QInt8)
    path = quantized
  options = onnxruntime.SessionOptions()
  options.intra_op_num_threads = os.cpu_count()
  session = onnxruntime.InferenceSession(path, options,
                                         providers=["CPUExecutionProvider"])
  rng = np.random.default_rng(0)
  ids = rng.integers(5, shape["vocab"], (1, FLAGS.seq_length)).astype(np.int64)

  def infer(b):
    feed = {"input_ids": ids.repeat(b, 0),
            "attention_mask": np.ones((b, FLAGS.seq_length), np.int64)}
    return lambda: session.run(None, feed)

  return {"b1": infer(1), "b32": infer(32)}


def ours_tflite(shape: dict, work_dir: str, precision: str) -> dict:
  import shutil
  from bert import export_reader, quantize
  # A copy of the float export `ours` wrote (run it first), converted as
  # users do; each precision in its own directory (one model.tflite each).
  copy_dir = os.path.join(work_dir, f"tflite_{precision}")
  shutil.copytree(os.path.join(work_dir, "export"), copy_dir,
                  dirs_exist_ok=True)
  quantize.write_tflite(copy_dir, precision)
  return batch_calls(export_reader.TfliteClassifier(copy_dir).serving_default,
                     shape["vocab"], FLAGS.seq_length)


BUILDERS = {
    "ours": lambda s, d: ours(s, d, "float32"),
    "ours_bf16": lambda s, d: ours(s, d, "mixed_bfloat16"),
    "ours_xla": ours_xla,
    "ours_one_block": ours_one_block,
    "ours_tflite": lambda s, d: ours_tflite(s, d, "float32"),
    "ours_int8": lambda s, d: ours_tflite(s, d, "int8"),
    "hf_torch": hf_torch,
    "ort": lambda s, d: ort(s, d, int8=False),
    "ort_int8": lambda s, d: ort(s, d, int8=True),
}


def rate(measure: str, seconds: float) -> float:
  """train/b32: examples/s; b1: milliseconds."""
  if measure == "b1":
    return seconds * 1e3
  batch = FLAGS.train_batch if measure == "train" else 32
  return batch / seconds


def main(argv):
  del argv
  from bert.report import call_times  # Each call waits for its work.
  shape = PRESETS[FLAGS.preset]
  work_dir = FLAGS.work_dir or tempfile.mkdtemp(prefix="bench_peers_")
  os.makedirs(work_dir, exist_ok=True)
  print(f"shape {shape}, seq {FLAGS.seq_length}, train batch "
        f"{FLAGS.train_batch}, {os.cpu_count()} threads, {FLAGS.rounds} "
        f"rounds; work dir {work_dir}", flush=True)
  systems = {}
  for name in FLAGS.systems:
    try:
      systems[name] = BUILDERS[name](shape, work_dir)
    except ImportError as e:
      print(f"{name}: skipped ({e}; pip install -r requirements-bench.txt)")
  calls = {"train": FLAGS.train_steps, "b1": FLAGS.b1_calls,
           "b32": FLAGS.b32_calls}

  def times(fn, runs: int) -> list[float]:
    """Wall times of `runs` calls, timed where the system runs."""
    return fn.times(runs) if hasattr(fn, "times") else call_times(fn, runs)

  # Warm-up: tracing, graph optimisation, allocator growth.
  for fns in systems.values():
    for measure, fn in fns.items():
      times(fn, 2 if measure != "b1" else 10)
  # results[measure][system] = one value per round (median call).
  results: dict[str, dict[str, list[float]]] = {m: {} for m in calls}
  for r in range(FLAGS.rounds):
    for name, fns in systems.items():
      for measure, fn in fns.items():
        value = rate(measure,
                     statistics.median(times(fn, calls[measure])))
        results[measure].setdefault(name, []).append(value)
    print(f"round {r + 1}/{FLAGS.rounds} done", flush=True)
  print()
  print(table(results))


def table(results: dict) -> str:
  heads = {"train": "train examples/s", "b1": "batch-1 ms",
           "b32": "batch-32 examples/s"}
  lines = ["| system | measure | median | ratio to ours fp32 (min-max) |",
           "|---|---|---|---|"]
  for measure, by_system in results.items():
    base = by_system.get("ours")
    for name, values in by_system.items():
      ratio = ""
      if base and name != "ours":
        # Speed-up: > 1 is faster than ours for every measure.
        ratios = [(b / v) if measure == "b1" else (v / b)
                  for v, b in zip(values, base)]
        ratio = (f"{statistics.median(ratios):.2f}x "
                 f"({min(ratios):.2f}-{max(ratios):.2f})")
      lines.append(f"| {name} | {heads[measure]} | "
                   f"{statistics.median(values):.1f} | {ratio} |")
  return "\n".join(lines)


if __name__ == "__main__":
  app.run(main)
