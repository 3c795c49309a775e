"""SavedModel export for TensorFlow Serving.

A classifier is exported to `<export_dir>/<version>/` with the signatures
  serving_default(input_ids, input_mask, segment_ids: int32 [B, S])
      -> logits [B, C], probabilities [B, C]
  intermediate(same inputs) -> logits, embedding_output [B, S, H],
      hidden_states [B, L, S, H], attention_scores [B, L, N, S, S]
      (BERT classifiers only)
  predict_text(text: string [B]) -> logits, probabilities, label
      (when a `TextFeaturizer` is given: tokenisation inside the graph)
With `jit_compile`, serving_default and predict_text run the model as one
XLA computation (TF Serving: `--xla_cpu_compilation_enabled=true`), with
requests padded up to a few shapes so XLA compiles each once.
and `vocab.txt`, `bert_config.json` (`model_config.json` for other models,
e.g. a BiLSTM student) and `export_info.json` (labels, sequence length,
lower-casing) as assets, and `assets.extra/tf_serving_warmup_requests` (TF
Serving's warm-up requests).  The version is written under a temporary
name and renamed, so TF Serving never sees half a model.

`ExportedClassifier` is the one way back in: resolve a version, read its
info, load it, check its signature, tokenise with its own vocab and predict
in batches (teachers, `predict.py` and `report.py` all use it).
`SessionSignature` runs one signature the way TF Serving does (in a
Session; benchmarks and serving tests), with the threads of
`use_serving_threads`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging as std_logging
import os
import re
import shutil
import tempfile
from typing import Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from bert import data, evaluation, files, modeling, processors, tokenization
from bert.errors import UserError

EXPORT_INFO = "export_info.json"


# XLA compiles once per input shape.  A jit-compiled export pads each request
# (outside the compiled part) to a power-of-two batch and a power-of-two
# length of at least data.XLA_MIN_LENGTH (`data.length_bucket`): padding
# with input_mask 0 leaves the real rows' outputs unchanged, and a server
# then sees a handful of shapes.


def xla_length_buckets(max_seq_length: int) -> list[int]:
  """The lengths a jit-compiled export runs up to `max_seq_length` tokens
  (what its warm-up requests compile at load time)."""
  buckets = [data.XLA_MIN_LENGTH]
  while buckets[-1] < max_seq_length:
    buckets.append(buckets[-1] * 2)
  return buckets


def _ids_signature():
  return [tf.TensorSpec([None, None], tf.int32, name=n)
          for n in ("input_ids", "input_mask", "segment_ids")]


def _outputs(logits: tf.Tensor) -> dict:
  """serving_default's outputs from logits [B, C]."""
  return {"logits": logits, "probabilities": tf.nn.softmax(logits)}


class ClassifierExport(tf.Module):
  """What is saved: the classifier, its assets and its signatures."""

  def __init__(self, model: tf.Module, assets: dict[str, str],
               label_list: list[str], text_featurizer: tf.Module | None = None,
               jit_compile: bool = False):
    """`model`: a BertClassifier, or any classifier module with its call
    interface (`model(input_ids, input_mask, segment_ids, training)` ->
    logits), such as `bilstm.BiLstmClassifier`.  `jit_compile` (BERT only):
    serve through XLA."""
    super().__init__(name=None)
    self.model = model
    if jit_compile:
      if not isinstance(model, modeling.BertClassifier):
        raise UserError("--export_jit_compile is for BERT classifiers (a "
                        f"{type(model).__name__} is exported as it is)")
      # The input checks (Assert ops) and the padding stay outside XLA.
      self.compiled_logits = tf.function(
          functools.partial(model.__call__, training=False), jit_compile=True)
    # Restored objects lose tf.Module's `.variables`; this list keeps them
    # reachable by name (e.g. to initialise a student from teacher layers).
    self.model_variables = list(model.variables)
    self.assets = {k: tf.saved_model.Asset(v) for k, v in assets.items()}
    self.label_names = tf.constant(label_list)
    self.text_featurizer = text_featurizer
    if isinstance(model, modeling.BertClassifier):
      # Only BERT has layers to distil from (made here for the reason below).
      self.intermediate = tf.function(self._intermediate,
                                      input_signature=_ids_signature())
    if isinstance(model, modeling.BertClassifier) and not jit_compile:
      # What `bert.quantize` converts (not a signature: TF Serving does not
      # list it): serving_default's maths without the request checks, in
      # one block of positions (`modeling.position_blocks`).
      self.tflite_serving = tf.function(self._tflite_serving,
                                        input_signature=_ids_signature())
    if text_featurizer is not None:
      # Created here: a tf.function with an input signature on the class would
      # be traced by tf.saved_model.save even without a featurizer.
      self.predict_text = tf.function(
          self._predict_text,
          input_signature=[tf.TensorSpec([None], tf.string, name="text")])

  @tf.function(input_signature=_ids_signature())
  def serve(self, input_ids, input_mask, segment_ids):
    # Every input waits for the checks: a bad one never reaches the model.
    with tf.control_dependencies(self._input_checks(input_ids, input_mask,
                                                    segment_ids)):
      input_ids, input_mask, segment_ids = (
          tf.identity(input_ids), tf.identity(input_mask),
          tf.identity(segment_ids))
    if hasattr(self, "compiled_logits"):
      logits = self._padded_logits(input_ids, input_mask, segment_ids)
    else:
      logits = self.model(input_ids, input_mask, segment_ids, training=False)
    return _outputs(logits)

  def _tflite_serving(self, input_ids, input_mask, segment_ids):
    with modeling.position_blocks(1):
      return _outputs(self.model(input_ids, input_mask, segment_ids,
                                 training=False))

  def _padded_logits(self, input_ids, input_mask, segment_ids):
    """The XLA model's logits [B, C] for inputs padded to bucket shapes."""
    batch, length = tf.shape(input_ids)[0], tf.shape(input_ids)[1]
    padded_length = data.length_bucket(length)
    padded_length = tf.minimum(padded_length, tf.maximum(
        length, self.model.config.max_position_embeddings))
    paddings = [[0, data.next_power_of_two(tf.maximum(batch, 1)) - batch],
                [0, padded_length - length]]
    logits = self.compiled_logits(*(tf.pad(t, paddings) for t in (
        input_ids, input_mask, segment_ids)))
    return logits[:batch]

  def _input_checks(self, input_ids, input_mask, segment_ids) -> list:
    """In-graph checks of a request, each naming the input and what is
    allowed (TF Serving returns the message to the client as
    INVALID_ARGUMENT)."""
    config = self.model.config
    checks = [
        tf.debugging.assert_equal(
            tf.shape(input_mask), tf.shape(input_ids),
            message="input_mask must have the shape of input_ids [batch, seq]"),
        tf.debugging.assert_equal(
            tf.shape(segment_ids), tf.shape(input_ids),
            message="segment_ids must have the shape of input_ids "
            "[batch, seq]"),
        tf.debugging.assert_non_negative(
            input_ids, message=f"input_ids must be in [0, {config.vocab_size})"),
        tf.debugging.assert_less(
            input_ids, tf.constant(config.vocab_size, tf.int32),
            message=f"input_ids must be in [0, {config.vocab_size}) (the "
            "vocabulary size)"),
        tf.debugging.assert_non_negative(
            input_mask, message="input_mask must be 0 or 1"),
        tf.debugging.assert_less_equal(
            input_mask, 1, message="input_mask must be 0 or 1"),
        tf.debugging.assert_non_negative(
            segment_ids, message="segment_ids must be >= 0")]
    max_positions = getattr(config, "max_position_embeddings", None)
    if max_positions:
      checks.append(tf.debugging.assert_less_equal(
          tf.shape(input_ids)[1], max_positions,
          message=f"input_ids may have at most {max_positions} positions "
          "(max_position_embeddings)"))
    type_vocab = getattr(config, "type_vocab_size", None)
    if type_vocab:
      checks.append(tf.debugging.assert_less(
          segment_ids, tf.constant(type_vocab, tf.int32),
          message=f"segment_ids must be in [0, {type_vocab}) "
          "(type_vocab_size)"))
    return checks

  def _intermediate(self, input_ids, input_mask, segment_ids):
    logits, out = self.model.forward(input_ids, input_mask, segment_ids,
                                     training=False)
    return {"logits": logits,
            "embedding_output": out.embedding_output,
            "hidden_states": tf.stack(out.encoder_outputs, axis=1),
            "attention_scores": tf.stack(out.attention_scores, axis=1)}

  def _predict_text(self, text):
    # Cut to the longest text of the request: short texts cost less.
    features = data.trim_batch(self.text_featurizer(text))
    outputs = self.serve(features["input_ids"], features["input_mask"],
                         features["segment_ids"])
    label = tf.gather(self.label_names,
                      tf.argmax(outputs["logits"], axis=-1, output_type=tf.int32))
    return {**outputs, "label": label}

  def signatures(self) -> dict:
    signatures = {"serving_default": self.serve}
    if hasattr(self, "intermediate"):
      signatures["intermediate"] = self.intermediate
    if self.text_featurizer is not None:
      signatures["predict_text"] = self.predict_text
    return signatures


def next_version(export_dir: str) -> int:
  """One more than the highest integer version under `export_dir`."""
  versions = [int(n) for n in (tf.io.gfile.listdir(export_dir)
                               if tf.io.gfile.isdir(export_dir) else [])
              if re.fullmatch(r"\d+/?", n)]
  return max(versions, default=0) + 1


def remove_leftovers(export_dir: str) -> None:
  """Removes `.tmp-<pid>-*` directories of exports whose process died
  (killed mid-save): they may hold a whole model."""
  for name in os.listdir(export_dir):
    match = re.fullmatch(r"\.tmp-(\d+)-.*", name)
    path = os.path.join(export_dir, name)
    if match and os.path.isdir(path) and not files.process_alive(
        int(match.group(1))):
      shutil.rmtree(path, ignore_errors=True)
      logging.warning("Removed %s, left by an export that did not finish",
                      path)


class _SavingNoise(std_logging.Filter):
  """Drops TensorFlow's messages that every export repeats and that ask
  nothing of the user: the input names of each traced function (one line
  of thousands of characters for a real model: every captured variable),
  and retracing warnings (each signature traces the model's compiled
  kernels again at its own shapes, as it must), and the checkpoint
  sharder's timings."""

  NOISE = ("contains input name(s)", "triggered tf.function retracing",
           "Sharding callback duration")

  def filter(self, record: std_logging.LogRecord) -> bool:
    message = str(record.msg)
    return not any(noise in message for noise in self.NOISE)


@contextlib.contextmanager
def _quiet_saving():
  """`_SavingNoise` on TensorFlow's loggers while a SavedModel is written
  (the SavedModel code logs through absl, the tracing code through
  TensorFlow's own logger)."""
  noise = _SavingNoise()
  loggers = (tf.get_logger(), logging.get_absl_logger())
  for logger in loggers:
    logger.addFilter(noise)
  try:
    yield
  finally:
    for logger in loggers:
      logger.removeFilter(noise)


def save_versioned(module: tf.Module, export_dir: str, signatures: dict,
                   write_extra=None) -> str:
  """Saves to `<export_dir>/.tmp-<pid>-*` and renames it to the next
  version, readable as the umask allows (TF Serving may run as another
  user).  `write_extra(tmp_dir)` adds files (e.g. assets.extra/) before the
  rename."""
  try:
    os.makedirs(export_dir, exist_ok=True)
  except OSError as e:
    raise UserError(f"--export_dir={export_dir}: cannot create it "
                    f"({e.strerror})") from None
  if not os.access(export_dir, os.W_OK):
    raise UserError(f"--export_dir={export_dir}: not writable")
  remove_leftovers(export_dir)
  tmp = tempfile.mkdtemp(prefix=f".tmp-{os.getpid()}-", dir=export_dir)
  try:
    os.chmod(tmp, 0o777 & ~files.umask())  # mkdtemp makes it 0700.
    try:
      with _quiet_saving():
        tf.saved_model.save(module, tmp, signatures=signatures)
    except (OSError, tf.errors.OpError) as e:  # A full disk, a quota.
      reason = getattr(e, "strerror", None) or str(e).splitlines()[0][:200]
      raise UserError(f"--export_dir={export_dir}: cannot write the export "
                      f"({reason}); nothing was exported") from None
    if write_extra is not None:
      write_extra(tmp)
    while True:
      final = os.path.join(export_dir, str(next_version(export_dir)))
      try:
        os.rename(tmp, final)  # fails if another export took this version
        break
      except OSError:
        if not os.path.exists(final):
          raise
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  logging.info("Exported %s", final)
  return final


def export_classifier(model: tf.Module, export_dir: str, *,
                      vocab_file: str, bert_config,
                      label_list: list[str], max_seq_length: int,
                      do_lower_case: bool, spm_model_file: str | None = None,
                      text_featurizer: tf.Module | None = None,
                      extra_info: dict | None = None,
                      jit_compile: bool = False,
                      position_blocks: int = 2) -> str:
  """Exports `model` as the next version under `export_dir`; returns its path.

  `position_blocks`: serving_default and predict_text split each example's
  positions into this many concurrent blocks (`modeling.position_blocks`).

  `bert_config` is the model's config (anything with `to_json_string`); it
  is written as `bert_config.json` for a `modeling.BertConfig`, else as
  `model_config.json`, so readers of `bert_config.json` only find BERT's.
  """
  is_bert = isinstance(bert_config, modeling.BertConfig)
  with tempfile.TemporaryDirectory() as tmp:
    config_path = os.path.join(
        tmp, "bert_config.json" if is_bert else "model_config.json")
    with open(config_path, "w") as f:
      f.write(bert_config.to_json_string())
    info_path = os.path.join(tmp, EXPORT_INFO)
    with open(info_path, "w") as f:
      json.dump({"label_list": list(label_list),
                 "max_seq_length": max_seq_length,
                 "do_lower_case": bool(do_lower_case),
                 "num_labels": len(label_list),
                 "jit_compile": bool(jit_compile),
                 "position_blocks": position_blocks,
                 **(extra_info or {})}, f, indent=2, ensure_ascii=False)
    assets = {"bert_config" if is_bert else "model_config": config_path,
              "export_info": info_path}
    # Fixed asset names, whatever the user's files are called.
    for key, source, name in (("vocab", vocab_file, "vocab.txt"),
                              ("spm_model", spm_model_file, "spm.model")):
      if source:
        assets[key] = os.path.join(tmp, name)
        shutil.copyfile(source, assets[key])
    module = ClassifierExport(model, assets, list(label_list), text_featurizer,
                              jit_compile=jit_compile)
    warmup = functools.partial(
        write_warmup_requests, model_name=os.path.basename(
            os.path.normpath(export_dir)),
        max_seq_length=max_seq_length, with_text=text_featurizer is not None,
        jit_compile=jit_compile)
    # The signatures are traced when saved, and take their blocks then.
    with modeling.position_blocks(position_blocks):
      return save_versioned(module, export_dir, module.signatures(), warmup)


WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
# Warm-up texts for predict_text: one short, one long, Chinese and English.
_WARMUP_TEXTS = ("好吃", "The food arrived quickly and was still hot. " * 8)


def warmup_logs(model_name: str, max_seq_length: int,
                with_text: bool, jit_compile: bool = False) -> list:
  """PredictionLog records that TF Serving replays at load time
  (--enable_model_warmup): serving_default at batch 1 (short and full
  length; with `jit_compile`, every length bucket, so XLA compiles them
  before the first client) and batch 8, and predict_text when the export
  has it."""
  from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

  def log(signature: str, inputs: dict):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    for name, value in inputs.items():
      request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request))

  logs = []
  lengths = [min(8, max_seq_length), max_seq_length]
  if jit_compile:
    lengths = sorted({min(n, max_seq_length)
                      for n in xla_length_buckets(max_seq_length)})
  for batch, length in [(1, n) for n in lengths] + [(8, max_seq_length)]:
    # Id 1 exists in every vocabulary; the mask is all ones.
    ids = np.ones([batch, length], np.int32)
    logs.append(log("serving_default", {
        "input_ids": ids, "input_mask": ids,
        "segment_ids": np.zeros_like(ids)}))
  if with_text:
    for text in _WARMUP_TEXTS:
      logs.append(log("predict_text",
                      {"text": np.array([text.encode("utf-8")], object)}))
  return logs


def write_warmup_requests(saved_model_dir: str, model_name: str,
                          max_seq_length: int, with_text: bool,
                          jit_compile: bool = False) -> str:
  """Writes `assets.extra/tf_serving_warmup_requests` (a TFRecord of
  PredictionLog records) into a SavedModel directory; returns its path."""
  path = os.path.join(saved_model_dir, WARMUP_FILE)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tf.io.TFRecordWriter(path) as writer:
    for log in warmup_logs(model_name, max_seq_length, with_text,
                           jit_compile):
      writer.write(log.SerializeToString())
  return path


def serving_threads(jit_compile: bool = False) -> tuple[int, int]:
  """(intra-op, inter-op) threads to serve an export with: one thread per
  op and one inter-op thread per core.  The export's blocks of positions
  (`modeling.position_blocks`) are what run concurrently; a second
  thread inside an op costs oneDNN's small batch-1 kernels more than it
  gains (softmax 38 vs 114 us, attention einsum 124 vs 220 us at [1, 4,
  128, 64]).  An XLA export (`jit_compile`) is one op that parallelises
  inside: (0, 0), TensorFlow's own choice (8.4 vs 9.2-9.5 ms at batch 1,
  4 x 256).  scripts/serve.sh passes the same to TF Serving
  (--tensorflow_intra_op_parallelism, --tensorflow_inter_op_parallelism)."""
  if jit_compile:
    return 0, 0
  cores = len(os.sched_getaffinity(0)) if hasattr(
      os, "sched_getaffinity") else os.cpu_count()
  return 1, cores or 1


def use_serving_threads(paths: Sequence[str] = ()) -> bool:
  """Sets this process's TensorFlow threads to `serving_threads()` for the
  exports at `paths` (versions or base paths; none: plain exports), in a
  process that serves or predicts and trains nothing; TensorFlow's own
  choice if one of them is an XLA export.  TensorFlow fixes its threads
  when its runtime starts: after that this leaves them as they are, says
  so in the log and returns False."""
  intra, inter = serving_threads(any(
      read_export_info(resolve_export(path)).get("jit_compile")
      for path in paths))
  try:
    tf.config.threading.set_intra_op_parallelism_threads(intra)
    tf.config.threading.set_inter_op_parallelism_threads(inter)
  except RuntimeError:
    logging.info("TensorFlow is running already: its threads stay (%d "
                 "intra-op, %d inter-op), not serving's %d and %d",
                 tf.config.threading.get_intra_op_parallelism_threads(),
                 tf.config.threading.get_inter_op_parallelism_threads(),
                 intra, inter)
    return False
  return True


def resolve_export(path: str) -> str:
  """A SavedModel directory, or a base path -> its highest version."""
  if tf.saved_model.contains_saved_model(path):
    return path
  if tf.io.gfile.isdir(path):
    version = next_version(path) - 1
    if version > 0:
      return os.path.join(path, str(version))
  raise UserError(f"{path}: not a SavedModel (no saved_model.pb here or in an "
                  "integer version directory below it)")


def read_export_info(saved_model_dir: str) -> dict:
  """The export's `export_info.json` asset ({} for foreign SavedModels)."""
  path = os.path.join(saved_model_dir, "assets", EXPORT_INFO)
  if not tf.io.gfile.exists(path):
    return {}
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def load(saved_model_dir: str):
  """`tf.saved_model.load`, registering TF-Text's ops first if needed.

  WordPiece exports use core ops only; SentencePiece exports (and WordPiece
  exports made before text_graph went core-only) need TF-Text's ops, which
  register when `tensorflow_text` is imported.
  """
  # pylint: disable=import-outside-toplevel,unused-import,reimported
  if asset_path(saved_model_dir, "spm.model"):
    import tensorflow_text
  try:
    return tf.saved_model.load(saved_model_dir)
  except Exception as e:  # pylint: disable=broad-except
    if "Op type not registered" not in str(e):
      raise
  import tensorflow_text
  return tf.saved_model.load(saved_model_dir)


class SessionSignature:
  """One signature of an export run as TF Serving runs it: the `serve`
  MetaGraph loaded into a `tf.compat.v1.Session` (the serving path, not a
  training API) and `Session.run` on the signature's tensors, with the
  threads TensorFlow has in this process (`use_serving_threads`)."""

  def __init__(self, path: str, signature: str = "serving_default"):
    path = resolve_export(path)
    graph = tf.Graph()
    threads = tf.config.threading
    self.session = tf.compat.v1.Session(
        graph=graph, config=tf.compat.v1.ConfigProto(
            intra_op_parallelism_threads=(
                threads.get_intra_op_parallelism_threads()),
            inter_op_parallelism_threads=(
                threads.get_inter_op_parallelism_threads())))
    with graph.as_default():
      meta_graph = tf.compat.v1.saved_model.load(self.session, ["serve"],
                                                 path)
    if signature not in meta_graph.signature_def:
      raise UserError(f"{path} has no signature {signature!r} (it has "
                      f"{', '.join(sorted(meta_graph.signature_def))})")
    spec = meta_graph.signature_def[signature]
    self.path = path
    self.inputs = {name: t.name for name, t in spec.inputs.items()}
    self.outputs = {name: t.name for name, t in spec.outputs.items()}

  def __call__(self, options=None, run_metadata=None,
               **features) -> dict[str, np.ndarray]:
    """features: the signature's inputs by name -> its outputs by name.
    `options` / `run_metadata`: `Session.run`'s (tracing)."""
    missing = set(self.inputs) - set(features)
    if missing:
      raise ValueError(f"missing inputs {sorted(missing)}")
    return self.session.run(
        self.outputs, {self.inputs[name]: value
                       for name, value in features.items()},
        options=options, run_metadata=run_metadata)


def asset_path(saved_model_dir: str, name: str) -> str | None:
  path = os.path.join(saved_model_dir, "assets", name)
  return path if tf.io.gfile.exists(path) else None


class ExportedClassifier:
  """An exported classifier and what its assets say about its inputs."""

  def __init__(self, path: str, required_outputs: tuple[str, ...] = (),
               role: str = "SavedModel"):
    """Resolves `path` (a version or its base path), loads it and checks
    that `serving_default` exists and has `required_outputs`; `role` names
    it in errors (e.g. "teacher")."""
    self.dir = resolve_export(path)
    self.info = read_export_info(self.dir)
    try:
      self.loaded = load(self.dir)
    except Exception as e:  # A broken or foreign directory.
      raise UserError(f"{self.dir}: cannot load the {role} "
                      f"({e.__class__.__name__}: {str(e)[:200]})") from None
    self.serving_default = self.loaded.signatures.get("serving_default")
    if self.serving_default is None:
      raise UserError(f"{self.dir}: the {role} has no serving_default "
                      "signature")
    outputs = self.serving_default.structured_outputs
    for name in required_outputs:
      if name not in outputs:
        raise UserError(
            f"{self.dir}: the {role}'s serving_default signature has no "
            f"{name!r} output (outputs: {sorted(outputs)})")
    self.label_list = [str(l) for l in self.info.get("label_list", [])]
    self.max_seq_length = int(self.info.get("max_seq_length", 128))
    self._tokenizer = None

  @property
  def tokenizer(self):
    """The Python tokenizer the model was trained with, from the assets."""
    if self._tokenizer is None:
      spm = asset_path(self.dir, "spm.model")
      vocab = asset_path(self.dir, "vocab.txt")
      if not (spm or vocab):
        raise UserError(f"{self.dir}: the export has no vocab.txt or spm.model "
                        "asset to tokenise with")
      self._tokenizer = tokenization.create_tokenizer(
          vocab, bool(self.info.get("do_lower_case", True)), spm)
    return self._tokenizer

  def features(self, texts, max_seq_length: int | None = None
               ) -> dict[str, np.ndarray]:
    """Google's features for single texts (str or bytes) with this export's
    tokenizer and labels: int32 arrays input_ids, input_mask, segment_ids
    [N, S], label_ids, has_label, example_index [N]."""
    examples = [processors.InputExample(str(i),
                                        tokenization.convert_to_unicode(t))
                for i, t in enumerate(texts)]
    return self.example_features(examples, max_seq_length)

  def example_features(self, examples, max_seq_length: int | None = None
                       ) -> dict[str, np.ndarray]:
    """`features` of `InputExample`s (their labels are not used)."""
    return data.features_to_tensors(data.convert_examples(
        [dataclasses.replace(e, label=None) for e in examples],
        self.label_list, max_seq_length or self.max_seq_length,
        self.tokenizer))

  def logits(self, input_ids, input_mask, segment_ids) -> tf.Tensor:
    """serving_default's logits [B, C] for int32 [B, S] inputs (a tensor,
    usable inside tf.function)."""
    return self.serving_default(input_ids=input_ids, input_mask=input_mask,
                                segment_ids=segment_ids)["logits"]

  def serve_ids(self, features: dict) -> dict[str, np.ndarray]:
    """serving_default on one batch of [B, S] features, trimmed to its
    longest example -> logits, probabilities [B, C]."""
    batch = data.trim_batch({k: tf.constant(features[k], tf.int32)
                             for k in data.SEQ_FEATURES})
    return {k: v.numpy() for k, v in self.serving_default(**batch).items()}

  def predict_logits(self, features: dict[str, np.ndarray],
                     batch_size: int = 64) -> np.ndarray:
    """Logits [N, C] in input order for [N, S] features, in batches of
    similar lengths each trimmed to its longest example."""
    dataset = data.features_dataset(features, batch_size)
    out = evaluation.predict_logits(
        lambda f: self.logits(f["input_ids"], f["input_mask"],
                              f["segment_ids"]), dataset)
    logits = np.zeros_like(out["logits"])
    logits[out["example_index"]] = out["logits"]
    return logits

  def predict_ids(self, texts) -> dict[str, np.ndarray]:
    """Python tokenisation + serving_default -> probabilities [B, C], label [B]."""
    out = self.serve_ids(self.features(texts))
    return {**out, "label": self._label_names(out["logits"].argmax(-1))}

  def predict_text(self, texts) -> dict[str, np.ndarray]:
    """The predict_text signature (in-graph tokenisation) -> probabilities
    [B, C], label [B] (str)."""
    signature = self.loaded.signatures.get("predict_text")
    if signature is None:
      raise UserError(f"{self.dir}: the export has no predict_text signature "
                      "(exported without a text featurizer); use --use_ids")
    raw = [t.encode("utf-8") if isinstance(t, str) else t for t in texts]
    out = {k: v.numpy()
           for k, v in signature(text=tf.constant(raw, tf.string)).items()}
    out["label"] = np.array([l.decode("utf-8") for l in out["label"]])
    return out

  def _label_names(self, indices: np.ndarray) -> np.ndarray:
    names = self.label_list or [str(i) for i in
                                range(int(indices.max(initial=0)) + 1)]
    return np.array([names[i] for i in indices])
