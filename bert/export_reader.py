"""Reading an export back: the one way in for teachers, `predict.py`,
`report.py`, `quantize.py` and the serving tests.

`ExportedClassifier` resolves a version, reads its info, loads it, checks
its signature, tokenises with its own vocab and predicts in batches.
`SessionSignature` runs one signature the way TF Serving does (the `serve`
MetaGraph in a Session), for latency measured as a server sees it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re

import numpy as np
import tensorflow as tf

from bert import data, evaluation, processors, tokenization
from bert.errors import UserError

EXPORT_INFO = "export_info.json"
TFLITE_FILE = "model.tflite"  # The TF Lite copy bert.quantize writes.


def next_version(export_dir: str) -> int:
  """One more than the highest integer version under `export_dir`."""
  versions = [int(n) for n in (tf.io.gfile.listdir(export_dir)
                               if tf.io.gfile.isdir(export_dir) else [])
              if re.fullmatch(r"\d+/?", n)]
  return max(versions, default=0) + 1



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


def _interpreter(path: str, num_threads: int | None):
  """LiteRT's interpreter (the `ai_edge_litert` package), or TensorFlow's
  own copy of it where LiteRT is not installed."""
  try:
    from ai_edge_litert.interpreter import Interpreter
  except ImportError:
    Interpreter = tf.lite.Interpreter
  return Interpreter(model_path=path, num_threads=num_threads)


class TfliteClassifier(ExportedClassifier):
  """An export's `model.tflite`, with the export's tokenizer and labels:
  `serving_default(**features)`, `logits` and `predict_logits` as for the
  SavedModel, run by the TF Lite interpreter."""

  def __init__(self, path: str, num_threads: int | None = None):
    super().__init__(path)
    self.tflite_path = os.path.join(self.dir, TFLITE_FILE)
    if not os.path.exists(self.tflite_path):
      raise UserError(f"{self.dir}: no {TFLITE_FILE}; make it with "
                      f"python -m bert.quantize --export_dir={self.dir}")
    interpreter = _interpreter(self.tflite_path,
                               num_threads or os.cpu_count())
    self._runner = interpreter.get_signature_runner("serving_default")
    self.serving_default = self._serve
    # Dynamic-range quantisation stores the weights as int8 tensors.
    self.precision = "int8" if any(
        t["dtype"] == np.int8 for t in interpreter.get_tensor_details()
    ) else "float32"

  def _serve(self, input_ids, input_mask, segment_ids) -> dict:
    """int32 [B, S] inputs -> numpy logits, probabilities [B, C]."""
    return self._runner(
        input_ids=np.asarray(input_ids, np.int32),
        input_mask=np.asarray(input_mask, np.int32),
        segment_ids=np.asarray(segment_ids, np.int32))

  def logits(self, input_ids, input_mask, segment_ids) -> np.ndarray:
    return self._serve(input_ids, input_mask, segment_ids)["logits"]

  def predict_logits(self, features: dict[str, np.ndarray],
                     batch_size: int = 64) -> np.ndarray:
    """Logits [N, C] in input order, in batches trimmed to their longest
    example (the interpreter cannot run inside a tf.function)."""
    logits = None
    for batch in data.features_dataset(features, batch_size):
      trimmed = data.trim_batch(batch)
      out = self.logits(*(trimmed[k].numpy() for k in data.SEQ_FEATURES))
      if logits is None:
        logits = np.zeros([len(features["input_ids"]), out.shape[-1]],
                          np.float32)
      logits[batch["example_index"].numpy()] = out
    return logits
