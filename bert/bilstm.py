"""A BiLSTM student for distillation (Tang et al. 2019, "Distilling
Task-Specific Knowledge from BERT into Simple Neural Networks").

    embeddings [V, E] -> one bidirectional LSTM layer (H per direction)
    -> max pooling over the real (unmasked) positions -> [B, 2H]
    -> dense + ReLU [M] -> dense -> logits [B, C]

It reads the teacher's WordPiece ids (same vocab.txt) and has BertClassifier's
call interface, so the distillation script, the exporter and the serving
contract treat both students alike.  Differences from the paper: the words
are the teacher's WordPiece tokens, not word2vec words, and the embeddings
start random; the sentence is max-pooled over time (the paper concatenates
the two directions' last states for single sentences); a sentence pair is
read as the one packed sequence `[CLS] a [SEP] b [SEP]` (segment ids are
ignored), not by a siamese encoder.

The LSTM runs as TensorFlow's fused `BlockLSTMV2` op (core TensorFlow, so
TF Serving has it; no cuDNN), one call per direction; its weights are plain
variables.  The backward direction reads each example reversed within its
own length, so in both directions the padding comes after the real tokens
and never changes the logits (the mask must be ones then zeros, as Google's
features are).

Shapes: B batch, S sequence, E embedding size, H LSTM size per direction,
M MLP size, C labels.  Variables are `bilstm/embeddings`,
`bilstm/{forward,backward}/{kernel,recurrent_kernel,bias}`,
`bilstm/mlp/{kernel,bias}` and `bilstm/output/{kernel,bias}`, so the
name-based checkpoints of `checkpoints.py` hold them like BERT's.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import tensorflow as tf

from bert import data, modeling
from bert.errors import UserError

MODEL_TYPE = "bilstm"
STUDENT_TYPES = ("bert", MODEL_TYPE)  # --student_type


@dataclasses.dataclass
class BiLstmConfig:
  """A `bilstm_config.json`: {"model_type": "bilstm", "vocab_size": ...,
  "embedding_size", "lstm_size", "mlp_size", "dropout"} (all required;
  "initializer_range" optional)."""
  vocab_size: int
  embedding_size: int = 300
  lstm_size: int = 300
  mlp_size: int = 400
  dropout: float = 0.1
  initializer_range: float = 0.1

  # `classifier.load_task` takes these from models that bring their own
  # sizes and vocabulary (its `hub_model` argument): an LSTM has no position
  # limit, and the vocabulary is --vocab_file's.
  max_position_embeddings = None
  vocab_file = None

  _REQUIRED = ("vocab_size", "embedding_size", "lstm_size", "mlp_size",
               "dropout")

  def check(self, source: str = "bilstm config") -> None:
    """Raises UserError, naming `source`, for sizes < 1 or a bad dropout."""
    for name in ("vocab_size", "embedding_size", "lstm_size", "mlp_size"):
      if getattr(self, name) < 1:
        raise UserError(f"{source}: {name} must be >= 1, got "
                        f"{getattr(self, name)}")
    if not 0.0 <= self.dropout < 1.0:
      raise UserError(f"{source}: dropout must be in [0, 1), got "
                      f"{self.dropout}")

  @classmethod
  def from_dict(cls, values: dict[str, Any],
                source: str = "bilstm config") -> "BiLstmConfig":
    if values.get("model_type") != MODEL_TYPE:
      raise UserError(f"{source}: expected \"model_type\": \"{MODEL_TYPE}\", "
                      f"got {values.get('model_type')!r}")
    missing = [n for n in cls._REQUIRED if n not in values]
    if missing:
      raise UserError(f"{source}: missing key(s) {', '.join(missing)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
      if f.name not in values:
        continue
      cast = {"int": int, "float": float}[f.type]
      try:
        kwargs[f.name] = cast(values[f.name])
      except (TypeError, ValueError):
        raise UserError(f"{source}: {f.name} should be {f.type}, got "
                        f"{values[f.name]!r}") from None
    config = cls(**kwargs)
    config.check(source)
    return config

  @classmethod
  def from_json_file(cls, path: str) -> "BiLstmConfig":
    return cls.from_dict(modeling.read_json_config(path), source=path)

  def to_dict(self) -> dict[str, Any]:
    return {"model_type": MODEL_TYPE, **dataclasses.asdict(self)}

  def to_json_string(self) -> str:
    return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"


def is_bilstm_config(path: str) -> bool:
  """True when the JSON file at `path` says "model_type": "bilstm"."""
  return modeling.read_json_config(path).get("model_type") == MODEL_TYPE


def student_config(config_file: str | None,
                   student_type: str) -> BiLstmConfig | None:
  """--bert_config_file read for --student_type: a BiLstmConfig for
  "bilstm"; None for "bert" (`classifier.load_task` reads BERT's), after
  checking that the file is not a BiLSTM's."""
  if student_type not in STUDENT_TYPES:
    raise UserError(f"--student_type must be one of "
                    f"{', '.join(STUDENT_TYPES)}; got {student_type!r}")
  if student_type == "bilstm":
    if not config_file:
      raise UserError("--bert_config_file is required (with --student_type="
                      "bilstm, a bilstm config such as "
                      "configs/bilstm_config.json)")
    return BiLstmConfig.from_json_file(config_file)
  try:
    bilstm_file = bool(config_file) and is_bilstm_config(config_file)
  except UserError:  # load_task reports a missing or broken BERT config.
    bilstm_file = False
  if bilstm_file:
    raise UserError(f"{config_file}: a BiLSTM config (\"model_type\": "
                    "\"bilstm\"); pass --student_type=bilstm")
  return None


class _LstmWeights(tf.Module):
  """`<scope>/kernel` [E, 4H], `<scope>/recurrent_kernel` [H, 4H],
  `<scope>/bias` [4H]; gates in the order input, forget, cell, output."""

  def __init__(self, scope: str, in_dim: int, units: int, stddev: float):
    super().__init__(name=None)
    self.kernel = tf.Variable(
        tf.random.truncated_normal([in_dim, 4 * units], stddev=stddev),
        name=f"{scope}/kernel")
    # Orthogonal recurrent weights keep the state's scale over long
    # sequences at the start of training.
    self.recurrent_kernel = tf.Variable(
        tf.concat([tf.linalg.qr(tf.random.normal([units, units]))[0]
                   for _ in range(4)], axis=1),
        name=f"{scope}/recurrent_kernel")
    # Forget-gate bias 1 (Jozefowicz et al. 2015): remember by default.
    self.bias = tf.Variable(
        tf.concat([tf.zeros([units]), tf.ones([units]),
                   tf.zeros([2 * units])], axis=0), name=f"{scope}/bias")


class BiLstmClassifier(tf.Module):
  """Embeddings, a BiLSTM, masked max pooling, an MLP and the output layer.

  Call interface as `modeling.BertClassifier`: `model(input_ids, input_mask,
  segment_ids, training)` -> logits, `model.forward(...)` -> (logits, None).
  """

  def __init__(self, config: BiLstmConfig, num_labels: int):
    super().__init__(name=None)
    config.check()
    self.config = config
    self.num_labels = num_labels
    std = config.initializer_range
    e, h = config.embedding_size, config.lstm_size
    self.embeddings = tf.Variable(
        tf.random.truncated_normal([config.vocab_size, e], stddev=std),
        name="bilstm/embeddings")
    self.lstm_forward = _LstmWeights("bilstm/forward", e, h, std)
    self.lstm_backward = _LstmWeights("bilstm/backward", e, h, std)
    self.mlp = modeling.Dense("bilstm/mlp", 2 * h, config.mlp_size, std)
    self.output_layer = modeling.Dense("bilstm/output", config.mlp_size,
                                       num_labels, std)

  def _run(self, weights: _LstmWeights, x: tf.Tensor) -> tf.Tensor:
    """x [S, B, E] time-major -> hidden states [S, B, H], from zero state."""
    h = self.config.lstm_size
    zero_state = tf.zeros([tf.shape(x)[1], h])
    no_peephole = tf.zeros([h])
    # One fused kernel loops over time in C++ (core TF, also on GPU without
    # cuDNN): 4x faster than a tf.scan at batch 1 on CPU.  Gate layout
    # input, forget, cell, output (V2: no added forget bias, no clipping).
    return tf.raw_ops.BlockLSTMV2(
        seq_len_max=tf.cast(tf.shape(x)[0], tf.int64), x=x,
        cs_prev=zero_state, h_prev=zero_state,
        w=tf.concat([weights.kernel, weights.recurrent_kernel], axis=0),
        wci=no_peephole, wcf=no_peephole, wco=no_peephole, b=weights.bias,
        cell_clip=0.0, use_peephole=False)[6]

  def encode(self, input_ids: tf.Tensor, input_mask: tf.Tensor,
             training: bool = False) -> tf.Tensor:
    """int [B, S] ids and 1/0 mask -> BiLSTM outputs [B, S, 2H], forward
    then backward direction.

    The mask must be ones then zeros (right padding, as every feature of
    this project): each direction reads its example's real tokens first, so
    the padded steps come after them and never reach a real position's
    output.  Outputs at padded positions are meaningless.
    """
    lengths = tf.reduce_sum(tf.cast(input_mask, tf.int32), axis=1)  # [B]
    x = modeling.dropout(tf.gather(self.embeddings, input_ids),
                         self.config.dropout, training)         # [B, S, E]
    x = tf.transpose(x, [1, 0, 2])                              # [S, B, E]
    forward = self._run(self.lstm_forward, x)
    # Each example reversed within its own length: its last real token first.
    backward = tf.reverse_sequence(
        self._run(self.lstm_backward,
                  tf.reverse_sequence(x, lengths, seq_axis=0, batch_axis=1)),
        lengths, seq_axis=0, batch_axis=1)
    return tf.transpose(tf.concat([forward, backward], axis=-1), [1, 0, 2])

  def forward(self, input_ids, input_mask, segment_ids,
              training: bool = False) -> tuple[tf.Tensor, None]:
    """int [B, S] inputs -> (logits [B, C], None); segment ids are unused."""
    del segment_ids
    # Steps past the batch's longest example change nothing: skip them
    # (serving clients often pad to max_seq_length).
    trimmed = data.trim_batch({"input_ids": input_ids,
                               "input_mask": tf.cast(input_mask, tf.int32)})
    input_ids, input_mask = trimmed["input_ids"], trimmed["input_mask"]
    outputs = self.encode(input_ids, input_mask, training)      # [B, S, 2H]
    real = tf.cast(input_mask, tf.bool)[..., tf.newaxis]
    pooled = tf.reduce_max(
        tf.where(real, outputs, tf.fill(tf.shape(outputs), -1e9)), axis=1)
    # An all-padding row (never produced by the data pipeline) pools to 0.
    pooled = tf.where(tf.reduce_any(real, axis=1), pooled, 0.0)  # [B, 2H]
    x = modeling.dropout(pooled, self.config.dropout, training)
    x = modeling.dropout(tf.nn.relu(self.mlp(x)), self.config.dropout,
                         training)
    return self.output_layer(x), None

  def __call__(self, input_ids, input_mask, segment_ids,
               training: bool = False) -> tf.Tensor:
    """int [B, S] inputs -> logits [B, C]."""
    return self.forward(input_ids, input_mask, segment_ids, training)[0]
