"""Inference over datasets and classification metrics: what evaluation,
prediction, teachers and reports share (no training code here).
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np
import tensorflow as tf

from bert import data, files


def predict_logits(forward: Callable[[dict], tf.Tensor],
                   dataset: tf.data.Dataset) -> dict:
  """Runs `forward(features) -> logits [B, C]` over a finite dataset.

  Returns numpy arrays in the dataset's order: `logits` [N, C] and every
  int feature of the batches (`label_ids`, `has_label`, `example_index`).
  """
  step = tf.function(lambda features: forward(data.trim_batch(features)))
  outputs: dict[str, list] = {}
  for features in dataset:
    outputs.setdefault("logits", []).append(step(features).numpy())
    for key in ("label_ids", "has_label", "example_index"):
      if key in features:
        outputs.setdefault(key, []).append(features[key].numpy())
  return {k: np.concatenate(v) for k, v in outputs.items()}


def log_softmax(logits: np.ndarray) -> np.ndarray:
  """log softmax over the last axis, in float64: [..., C] -> [..., C]."""
  logits = logits.astype(np.float64)
  log_probs = logits - logits.max(-1, keepdims=True)
  return log_probs - np.log(np.exp(log_probs).sum(-1, keepdims=True))


def classification_metrics(logits: np.ndarray, labels: np.ndarray,
                           num_labels: int) -> dict[str, float]:
  """Accuracy and mean cross-entropy; F1 of label 1 and Matthews correlation
  for binary tasks.  logits [N, C], labels [N]."""
  log_probs = log_softmax(logits)
  predictions = logits.argmax(-1)
  metrics = {
      "eval_accuracy": float((predictions == labels).mean()),
      "eval_loss": float(-log_probs[np.arange(len(labels)), labels].mean()),
  }
  if num_labels == 2:
    tp = float(((predictions == 1) & (labels == 1)).sum())
    fp = float(((predictions == 1) & (labels == 0)).sum())
    fn = float(((predictions == 0) & (labels == 1)).sum())
    tn = float(((predictions == 0) & (labels == 0)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    metrics["eval_precision"] = precision
    metrics["eval_recall"] = recall
    metrics["eval_f1"] = (2 * precision * recall / (precision + recall)
                          if precision + recall else 0.0)
    denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    metrics["eval_mcc"] = float((tp * tn - fp * fn) / denominator
                                if denominator else 0.0)
  return metrics


def write_eval_results(output_dir: str, metrics: dict) -> str:
  """`eval_results.txt` as Google's: sorted `key = value` lines; returns
  the text."""
  lines = "".join(f"{k} = {metrics[k]}\n" for k in sorted(metrics))
  files.write_text_atomically(os.path.join(output_dir, "eval_results.txt"),
                              lines)
  return lines


def softmax(logits: np.ndarray) -> np.ndarray:
  """Class probabilities [N, C] (float64 maths, float32 out)."""
  logits = logits.astype(np.float64)
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  return (probs / probs.sum(-1, keepdims=True)).astype(np.float32)


def write_test_results(path: str, probs: np.ndarray) -> None:
  """`test_results.tsv` as Google's: one line of tab-separated class
  probabilities per example."""
  files.write_text_atomically(path, "".join(
      "\t".join(repr(float(p)) for p in row) + "\n" for row in probs))
