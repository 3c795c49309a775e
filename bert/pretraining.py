"""BERT pre-training maths and data, as Google's run_pretraining.py.

Shapes: B batch, S sequence, P = max_predictions_per_seq, V vocabulary.

  masked_lm_loss = sum(w * nll) / (sum(w) + 1e-5)   nll, w [B, P]
  next_sentence_loss = mean CE(next_sentence_logits, label)
  loss = masked_lm_loss + next_sentence_loss

Eval metrics are Google's `tf.metrics` over the whole eval set:
masked_lm_accuracy and masked_lm_loss weighted by masked_lm_weights,
next_sentence_accuracy and next_sentence_loss over examples, and loss the
mean of the batches' losses.
"""

from __future__ import annotations

import random

import numpy as np
import tensorflow as tf

from bert import evaluation, files

# Google's feature spec, with max_seq_length S and max_predictions P.
def feature_spec(max_seq_length: int,
                 max_predictions: int) -> dict[str, tf.io.FixedLenFeature]:
  seq = tf.io.FixedLenFeature([max_seq_length], tf.int64)
  predictions = tf.io.FixedLenFeature([max_predictions], tf.int64)
  return {"input_ids": seq, "input_mask": seq, "segment_ids": seq,
          "masked_lm_positions": predictions, "masked_lm_ids": predictions,
          "masked_lm_weights": tf.io.FixedLenFeature([max_predictions],
                                                     tf.float32),
          "next_sentence_labels": tf.io.FixedLenFeature([1], tf.int64)}


def input_files(spec: str) -> list[str]:
  """--input_file: comma-separated files and globs -> the files."""
  return files.expand_patterns(spec, "--input_file")


def make_dataset(files: list[str], max_seq_length: int, max_predictions: int,
                 batch_size: int, is_training: bool,
                 seed: int | None = None) -> tf.data.Dataset:
  """Batches of int32 features (float32 masked_lm_weights; labels [B]).

  Training shuffles the files and the records (reproducibly under `seed`)
  and repeats; eval reads the files once, in order.
  """
  spec = feature_spec(max_seq_length, max_predictions)
  if is_training:
    files = list(files)
    random.Random(seed).shuffle(files)
  d = tf.data.TFRecordDataset(files)
  if is_training:
    d = d.shuffle(10000, seed=seed, reshuffle_each_iteration=True).repeat()

  def parse(serialized):
    parsed = tf.io.parse_example(serialized, spec)
    out = {k: tf.cast(v, tf.int32) if v.dtype == tf.int64 else v
           for k, v in parsed.items()}
    out["next_sentence_labels"] = out["next_sentence_labels"][:, 0]
    return out

  d = d.batch(batch_size, drop_remainder=is_training)
  return d.map(parse, num_parallel_calls=tf.data.AUTOTUNE,
               deterministic=True).prefetch(tf.data.AUTOTUNE)


def masked_lm_loss(logits: tf.Tensor, label_ids: tf.Tensor,
                   label_weights: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """Google's masked-LM loss.

  Args:
    logits: [B, P, V] at the masked positions.
    label_ids: int [B, P] original tokens.
    label_weights: float [B, P], 1 for real predictions, 0 for padding.

  Returns:
    (scalar loss, per-prediction negative log-likelihood [B, P]).
  """
  log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
  nll = -tf.gather(log_probs, label_ids, batch_dims=2)          # [B, P]
  weights = tf.cast(label_weights, tf.float32)
  loss = tf.reduce_sum(weights * nll) / (tf.reduce_sum(weights) + 1e-5)
  return loss, nll


def next_sentence_loss(logits: tf.Tensor,
                       labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """[B, 2] logits, int [B] labels -> (mean loss, per-example loss [B])."""
  per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels, tf.cast(logits, tf.float32))
  return tf.reduce_mean(per_example), per_example


class Metrics:
  """Google's eval metrics, accumulated over batches (numpy)."""

  def __init__(self):
    self.sums = dict.fromkeys(
        ("mlm_correct", "mlm_loss", "mlm_weight", "nsp_correct", "nsp_loss",
         "examples", "loss", "batches"), 0.0)

  def add(self, mlm_logits, label_ids, label_weights, nsp_logits, nsp_labels,
          loss) -> None:
    """One batch's outputs (numpy): mlm_logits [B, P, V], nsp_logits [B, 2],
    loss the batch's total loss."""
    log_probs = evaluation.log_softmax(mlm_logits)
    nll = -np.take_along_axis(log_probs, label_ids[..., None], -1)[..., 0]
    w = label_weights.astype(np.float64)
    s = self.sums
    s["mlm_correct"] += float((w * (mlm_logits.argmax(-1) ==
                                    label_ids)).sum())
    s["mlm_loss"] += float((w * nll).sum())
    s["mlm_weight"] += float(w.sum())
    nsp_log_probs = evaluation.log_softmax(nsp_logits)
    s["nsp_loss"] += float(-nsp_log_probs[np.arange(len(nsp_labels)),
                                          nsp_labels].sum())
    s["nsp_correct"] += float((nsp_logits.argmax(-1) == nsp_labels).sum())
    s["examples"] += len(nsp_labels)
    s["loss"] += float(loss)
    s["batches"] += 1

  def result(self) -> dict[str, float]:
    s = self.sums
    return {
        "masked_lm_accuracy": s["mlm_correct"] / max(s["mlm_weight"], 1e-12),
        "masked_lm_loss": s["mlm_loss"] / max(s["mlm_weight"], 1e-12),
        "next_sentence_accuracy": s["nsp_correct"] / max(s["examples"], 1),
        "next_sentence_loss": s["nsp_loss"] / max(s["examples"], 1),
        "loss": s["loss"] / max(s["batches"], 1),
    }
