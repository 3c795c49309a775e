"""Exported teachers for distillation: loading, pre-flight checks, calls on
whole batches inside the student's train step, and the logits cache.

Shapes: K = number of teachers, B = batch, S = sequence, C = labels.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from bert import data, evaluation, files
from bert import export_reader
from bert.errors import UserError


def _file_digest(path: str, h) -> None:
  with tf.io.gfile.GFile(path, "rb") as f:
    while chunk := f.read(1 << 20):
      h.update(chunk)


class Teacher:
  """One teacher SavedModel, or an ensemble of them, in inference mode."""

  def __init__(self, paths: Sequence[str]):
    if not paths:
      raise UserError("--teacher_model is required")
    self.exports = [self._load(p) for p in paths]
    self.dirs = [e.dir for e in self.exports]
    self.infos = [e.info for e in self.exports]
    self.loaded = [e.loaded for e in self.exports]

  @staticmethod
  def _load(path: str) -> export_reader.ExportedClassifier:
    """The export at `path`, or an error that says how to make one."""
    try:
      export_reader.resolve_export(path)
    except UserError as e:
      raise UserError(
          f"--teacher_model: {e}; export the trained teacher first with "
          "bash scripts/export_teacher.sh (or train it with --do_export)"
      ) from None
    return export_reader.ExportedClassifier(path, ("logits",), role="teacher")

  @property
  def size(self) -> int:
    return len(self.dirs)

  def logits(self, input_ids: tf.Tensor, input_mask: tf.Tensor,
             segment_ids: tf.Tensor) -> tf.Tensor:
    """int32 [B, S] features -> [K, B, C] logits, no gradient."""
    return tf.stop_gradient(tf.stack(
        [e.logits(input_ids, input_mask, segment_ids) for e in self.exports]))

  def intermediate_signature(self):
    """The single teacher's `intermediate` signature (TinyBERT's targets).

    Raises:
      UserError: for an ensemble, or an export without that signature.
    """
    if self.size != 1:
      raise UserError(f"intermediate-layer distillation takes one "
                      f"--teacher_model, got {self.size}")
    loaded = self.loaded[0]
    signature = loaded.signatures.get("intermediate")
    if signature is None:
      raise UserError(
          f"{self.dirs[0]}: the teacher export has no 'intermediate' "
          f"signature (it has {', '.join(sorted(loaded.signatures))}); "
          "intermediate-layer distillation needs a BERT teacher exported by "
          "this project's --do_export")
    return signature

  def intermediate(self, input_ids: tf.Tensor, input_mask: tf.Tensor,
                   segment_ids: tf.Tensor) -> dict[str, tf.Tensor]:
    """int32 [B, S] features -> the teacher's layers, no gradient: logits
    [B, C], embedding_output [B, S, H], hidden_states [B, L, S, H],
    attention_scores [B, L, N, S, S] (masked, before the softmax)."""
    outputs = self.intermediate_signature()(
        input_ids=input_ids, input_mask=input_mask, segment_ids=segment_ids)
    return {k: tf.stop_gradient(v) for k, v in outputs.items()}

  def identity(self) -> str:
    """A digest of the teachers' graphs and weights (and their order).

    The variables' index holds a CRC32C of every tensor, so it changes with
    the weights without reading the (large) data shards.
    """
    h = hashlib.sha256()
    for d in self.dirs:
      for name in ("saved_model.pb", "variables/variables.index"):
        path = os.path.join(d, name)
        if tf.io.gfile.exists(path):  # A SavedModel may have no variables.
          _file_digest(path, h)
    return h.hexdigest()[:16]

  def check_compatible(self, label_list: list[str], vocab_file: str | None,
                       spm_model_file: str | None, max_seq_length: int,
                       do_lower_case: bool) -> None:
    """Stops before training when a teacher cannot teach this student."""
    for d, info, teacher in zip(self.dirs, self.infos, self.exports):
      teacher_labels = info.get("label_list")
      if teacher_labels is None:
        probe = teacher.logits(tf.constant([[0, 0]]), tf.constant([[1, 1]]),
                               tf.constant([[0, 0]]))
        if probe.shape[-1] != len(label_list):
          raise UserError(f"{d}: the teacher has {probe.shape[-1]} labels, "
                          f"the task has {len(label_list)}")
      elif list(teacher_labels) != list(label_list):
        problem = ("label count" if len(teacher_labels) != len(label_list)
                   else "label order")
        raise UserError(
            f"{d}: teacher {problem} differs from the task's: teacher "
            f"{teacher_labels}, task {list(label_list)}")
      ours = spm_model_file or vocab_file
      theirs = export_reader.asset_path(d, "spm.model" if spm_model_file
                                 else "vocab.txt")
      if theirs is None:
        logging.warning("%s: the teacher carries no vocabulary asset; cannot "
                        "check that it matches %s", d, ours)
      elif _read_bytes(theirs) != _read_bytes(ours):
        raise UserError(
            f"{d}: the teacher's vocabulary ({theirs}) differs from the "
            f"student's {ours}: token ids would not mean the same thing")
      if info.get("max_seq_length", max_seq_length) < max_seq_length:
        raise UserError(
            f"{d}: the teacher was exported with max_seq_length "
            f"{info['max_seq_length']}, shorter than the student's "
            f"--max_seq_length={max_seq_length}")
      if "do_lower_case" in info and info["do_lower_case"] != do_lower_case:
        raise UserError(
            f"{d}: the teacher was trained with do_lower_case="
            f"{info['do_lower_case']} but --do_lower_case={do_lower_case}")

  def predict(self, dataset: tf.data.Dataset) -> tuple[np.ndarray, dict]:
    """Logits [K, N, C] over a finite dataset (file order) and its ints."""
    def forward(features):  # [B, K, C]: predict_logits stacks batches on 0.
      return tf.transpose(self.logits(features["input_ids"],
                                      features["input_mask"],
                                      features["segment_ids"]), [1, 0, 2])
    outputs = evaluation.predict_logits(forward, dataset)
    return outputs.pop("logits").transpose(1, 0, 2), outputs

  def cache_path(self, tfrecord_path: str) -> str:
    """Where `cached_logits` keeps this teacher's logits for a feature file:
    `<file>.teacher-<identity>.npy` beside it."""
    stem = tfrecord_path[:-len(".tf_record")] if tfrecord_path.endswith(
        ".tf_record") else tfrecord_path
    return f"{stem}.teacher-{self.identity()}.npy"

  def cached_logits(self, tfrecord_path: str, max_seq_length: int,
                    batch_size: int = 64, compute: bool = True,
                    wait_s: float = 3600.0) -> np.ndarray:
    """Teacher logits [K, N, C] for every example of a feature file, indexed
    by `example_index`, computed once and stored beside the features under a
    name that includes the teacher's identity.

    `compute=False` (a worker other than the chief): wait up to `wait_s` for
    the chief to write the table instead of computing it again.
    """
    path = self.cache_path(tfrecord_path)
    num_examples = data.read_cache_info(tfrecord_path)["num_examples"]
    if not compute:
      return self._wait_for_table(path, num_examples, wait_s)
    if tf.io.gfile.exists(path):
      table = np.load(path)
      if table.shape[:2] == (self.size, num_examples):
        logging.info("Reusing cached teacher logits %s", path)
        return table
      logging.warning("%s has shape %s, not [%d, %d, C]: recomputing", path,
                      table.shape, self.size, num_examples)
    logging.info("Computing teacher logits for %s",
                 os.path.basename(tfrecord_path))
    # Batches of similar lengths: far less padding to compute.  The rows
    # go back to their places by example_index.
    dataset = data.make_dataset(tfrecord_path, max_seq_length, batch_size,
                                is_training=False, group_by_length=50)
    logits, extras = self.predict(dataset)
    table = np.zeros_like(logits)
    table[:, extras["example_index"]] = logits
    def write(tmp: str) -> None:
      with open(tmp, "wb") as f:  # A file object: np.save adds no ".npy".
        np.save(f, table)
    files.write_atomically(path, write)
    logging.info("Cached teacher logits %s", path)
    return table

  def _wait_for_table(self, path: str, num_examples: int,
                      wait_s: float) -> np.ndarray:
    logging.info("Waiting for the chief's teacher logits %s", path)
    deadline = time.time() + wait_s
    while True:
      if tf.io.gfile.exists(path):  # Written atomically: complete when seen.
        table = np.load(path)
        if table.shape[:2] == (self.size, num_examples):
          logging.info("Reusing cached teacher logits %s", path)
          return table
      if time.time() > deadline:
        raise UserError(f"{path}: the chief did not write the teacher logits "
                        f"within {wait_s:.0f} s; is the chief running on the "
                        "same --output_dir/--cache_dir?")
      time.sleep(1.0)


def _read_bytes(path: str) -> bytes:
  try:
    with tf.io.gfile.GFile(path, "rb") as f:
      return f.read()
  except tf.errors.NotFoundError:
    raise UserError(f"{path}: file not found") from None


def read_probs_file(path: str, num_examples: int,
                    num_labels: int) -> np.ndarray:
  """A teacher given as a file -> its log-probabilities [N, C].

  The file is `test_results.tsv`'s format: one line per training example
  (the train split's order, then the transfer file's), C tab-separated class
  probabilities summing to 1.  Log-probabilities serve as logits: softmax at
  any temperature T gives p^(1/T) normalised, as a model's logits would.
  """
  try:
    with open(path, encoding="utf-8") as f:
      lines = [line.rstrip("\n") for line in f if line.strip()]
  except FileNotFoundError:
    raise UserError(f"--teacher_probs_file={path}: file not found") from None
  except UnicodeDecodeError as e:
    raise UserError(f"{path}: not UTF-8 ({e.reason})") from None
  if len(lines) != num_examples:
    raise UserError(
        f"{path}: {len(lines)} lines, but there are {num_examples} training "
        "examples (one line each: the train split, then the transfer file)")
  probs = np.zeros([num_examples, num_labels], np.float64)
  for i, line in enumerate(lines):
    cells = line.split("\t")
    try:
      row = [float(c) for c in cells]
    except ValueError:
      raise UserError(f"{path}:{i + 1}: expected {num_labels} tab-separated "
                      f"probabilities, got {line[:80]!r}") from None
    if len(row) != num_labels:
      raise UserError(f"{path}:{i + 1}: {len(row)} probabilities, the task "
                      f"has {num_labels} labels")
    if min(row) < 0 or not np.isfinite(row).all() or abs(sum(row) - 1) > 1e-3:
      raise UserError(f"{path}:{i + 1}: probabilities must be >= 0 and sum "
                      f"to 1, got {line[:80]!r}")
    probs[i] = row
  return np.log(np.maximum(probs, 1e-12)).astype(np.float32)
