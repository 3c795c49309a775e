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

Reading an export back is `export_reader.py`'s job, the threads to serve it
with `serving_threads.py`'s.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging as std_logging
import os
import re
import shutil
import tempfile

import numpy as np
import tensorflow as tf
from absl import logging

from bert import data, files, modeling
from bert.export_reader import EXPORT_INFO, next_version
from bert.errors import UserError



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


