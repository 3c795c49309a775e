"""The BERT model in TensorFlow 2, numerically identical to Google's modeling.py.

Every variable is created with its name in Google's checkpoints
(`bert/encoder/layer_0/attention/self/query/kernel`, `output_weights`, ...), so
loading a Google checkpoint is a name lookup (see `checkpoints.py`).

Shapes: B = batch size, S = sequence length, H = hidden size,
N = attention heads, D = H / N, C = number of labels.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import threading
from typing import Any, NamedTuple

import tensorflow as tf

from bert import fused, masks
from bert.errors import UserError


@dataclasses.dataclass
class BertConfig:
  """The fields of Google's `bert_config.json`."""
  vocab_size: int
  hidden_size: int = 768
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  hidden_act: str = "gelu"
  hidden_dropout_prob: float = 0.1
  attention_probs_dropout_prob: float = 0.1
  max_position_embeddings: int = 512
  type_vocab_size: int = 16
  initializer_range: float = 0.02

  def __post_init__(self):
    for name in ("vocab_size", "hidden_size", "num_hidden_layers",
                 "num_attention_heads", "intermediate_size",
                 "max_position_embeddings", "type_vocab_size"):
      if getattr(self, name) < 1:
        raise UserError(f"{name} must be >= 1, got {getattr(self, name)}")
    for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
      if not 0.0 <= getattr(self, name) < 1.0:
        raise UserError(f"{name} must be in [0, 1), got {getattr(self, name)}")
    if not self.initializer_range > 0:
      raise UserError(f"initializer_range must be > 0, got "
                      f"{self.initializer_range}")
    if self.hidden_size % self.num_attention_heads:
      raise UserError(
          f"hidden_size {self.hidden_size} is not a multiple of "
          f"num_attention_heads {self.num_attention_heads}")
    get_activation(self.hidden_act)

  @classmethod
  def from_dict(cls, values: dict[str, Any],
                source: str = "config") -> "BertConfig":
    """Builds a config from a dict; keys Google's files add (e.g.
    `directionality`, `pooler_*`) are ignored, every field must be present."""
    names = [f.name for f in dataclasses.fields(cls)]
    missing = [n for n in names if n not in values]
    if missing:
      raise UserError(f"{source}: missing key(s) {', '.join(missing)}")
    casts = {"int": _whole_number, "float": float, "str": str}
    kwargs = {}
    for f in dataclasses.fields(cls):
      try:
        kwargs[f.name] = casts[f.type](values[f.name])
      except (TypeError, ValueError):
        raise UserError(f"{source}: {f.name} should be {f.type}, got "
                        f"{values[f.name]!r}") from None
    try:
      return cls(**kwargs)
    except UserError as e:
      raise UserError(f"{source}: {e}") from None

  @classmethod
  def from_json_file(cls, path: str) -> "BertConfig":
    return cls.from_dict(read_json_config(path), source=path)

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  def to_json_string(self) -> str:
    return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"


def _whole_number(value) -> int:
  """int(value) for whole numbers only: 32.9 or "x" or true is an error, not
  32."""
  if isinstance(value, bool) or (isinstance(value, float) and
                                 not value.is_integer()):
    raise ValueError(value)
  return int(value)


def sized_config(vocab_size: int, num_layers: int,
                 hidden_size: int) -> BertConfig:
  """A config in BERT's proportions: 64-wide heads, a 4x feed-forward layer,
  Google's defaults otherwise (used for the from-scratch models here)."""
  return BertConfig(vocab_size=vocab_size, hidden_size=hidden_size,
                    num_hidden_layers=num_layers,
                    num_attention_heads=max(1, hidden_size // 64),
                    intermediate_size=4 * hidden_size, type_vocab_size=2)


def read_json_config(path: str) -> dict[str, Any]:
  """A JSON object from a config file, with UserErrors naming the file."""
  try:
    with tf.io.gfile.GFile(path, "r") as f:
      values = json.loads(f.read())
  except tf.errors.NotFoundError:
    raise UserError(f"{path}: config file not found") from None
  except (tf.errors.OpError, IsADirectoryError, PermissionError) as e:
    reason = getattr(e, "message", None) or e.__class__.__name__
    raise UserError(f"{path}: cannot read the config ({reason})") from None
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise UserError(f"{path}: not a JSON config ({e})") from None
  if not isinstance(values, dict):
    raise UserError(f"{path}: expected a JSON object of config keys")
  return values


def gelu(x: tf.Tensor) -> tf.Tensor:
  """Google's "gelu": the tanh approximation of GELU."""
  return tf.nn.gelu(x, approximate=True)


def gelu_exact(x: tf.Tensor) -> tf.Tensor:
  """GELU with the Gaussian CDF (HuggingFace's "gelu")."""
  return 0.5 * x * (1.0 + tf.math.erf(x / math.sqrt(2.0)))


_ACTIVATIONS = {"gelu": gelu, "gelu_new": gelu, "gelu_exact": gelu_exact,
                "relu": tf.nn.relu, "tanh": tf.tanh, "linear": tf.identity}


def get_activation(name: str):
  """Maps a `hidden_act` name to a function (as Google's, "gelu" is tanh)."""
  try:
    return _ACTIVATIONS[name.lower()]
  except (KeyError, AttributeError):
    raise UserError(f"hidden_act {name!r} is not one of "
                    f"{', '.join(_ACTIVATIONS)}") from None


def _weight(name: str, shape: list[int], stddev: float) -> tf.Variable:
  return tf.Variable(tf.random.truncated_normal(shape, stddev=stddev),
                     name=name)


def _zeros(name: str, shape: list[int]) -> tf.Variable:
  return tf.Variable(tf.zeros(shape), name=name)


class Dense(tf.Module):
  """`<scope>/kernel` [in, out] and `<scope>/bias` [out]."""

  def __init__(self, scope: str, in_dim: int, out_dim: int, stddev: float):
    super().__init__(name=None)
    self.kernel = _weight(f"{scope}/kernel", [in_dim, out_dim], stddev)
    self.bias = _zeros(f"{scope}/bias", [out_dim])

  def __call__(self, x: tf.Tensor) -> tf.Tensor:
    """[..., in] -> [..., out], in x's dtype."""
    return tf.nn.bias_add(tf.matmul(x, tf.cast(self.kernel, x.dtype)),
                          tf.cast(self.bias, x.dtype))


# ----------------------------------------------------------------------------
# What graphs traced in this thread take from the contexts below.


class _TraceSettings(threading.local):
  """Per thread: MirroredStrategy traces each replica in a thread of its
  own."""
  compute_dtype: tf.DType = tf.float32
  # "reference" (this file's ops) or "fused" (`fused.py`), for training.
  kernels: str = "reference"
  position_blocks: int = 1
  # The seed of the training step being traced (`dropout_seed`) and the
  # number of dropout calls traced in it so far.
  dropout_seed: tf.Tensor | None = None
  dropout_calls: int = 0


_settings = _TraceSettings()


@contextlib.contextmanager
def _trace_settings(**values):
  saved = {name: getattr(_settings, name) for name in values}
  for name, value in values.items():
    setattr(_settings, name, value)
  try:
    yield
  finally:
    for name, value in saved.items():
      setattr(_settings, name, value)


def compute_dtype(dtype: tf.DType):
  """Within, models compute in `dtype` (bfloat16 or float16: mixed precision).

  Variables stay float32 and are cast where they are used, so gradients,
  optimiser slots and checkpoints are float32; LayerNorm statistics, the
  attention softmax and every model's logits are float32.  Outside (eval,
  predict, export), models compute in float32.
  """
  return _trace_settings(compute_dtype=tf.as_dtype(dtype))


KERNELS = ("reference", "fused")


def training_kernels(name: str):
  """Within, training graphs (`training=True`) run their LayerNorms,
  dropouts, GELUs and attention softmaxes with `name`'s kernels:
  "reference", the plain ops of this file, or "fused", `fused.py`'s XLA
  kernels with hand-written gradients (same maths, same dropout masks).
  Inference always runs the plain ops."""
  if name not in KERNELS:
    raise UserError(f"--kernels={name}: expected one of {', '.join(KERNELS)}")
  return _trace_settings(kernels=name)


def _fused(training: bool):
  """`fused` when a training graph is traced with its kernels, else None."""
  return fused if training and _settings.kernels == "fused" else None


def position_blocks(blocks: int):
  """Within, inference graphs split each example's positions into `blocks`
  blocks (1: none) that stay apart from the first layer to the last.

  Each block is a branch of its own, which TensorFlow's executor runs
  concurrently on its inter-op threads; the blocks meet once a layer, for
  the keys and values.  At batch 1 on a CPU, oneDNN runs each of a small
  model's matmuls on one thread, so without blocks one core of two sits
  idle; exports use this (`--export_position_blocks`), served with one
  thread per op (`export.use_serving_threads`).  Same maths as one block.
  """
  if blocks < 1:
    raise UserError(f"position blocks must be >= 1, got {blocks}")
  return _trace_settings(position_blocks=blocks)


@contextlib.contextmanager
def dropout_seed(seed: tf.Tensor):
  """Within, `dropout` masks are a pure function of `seed` ([2] int64, e.g.
  (run seed, step)) and the call's position in the traced step
  (`masks.py`).

  A stateful RNG restarts with the process, so a resumed run would draw other
  masks than an uninterrupted one; a seed derived from the step makes the
  resumed run draw exactly the same ones.
  """
  with _trace_settings(dropout_seed=seed, dropout_calls=0):
    yield


def _next_dropout_seed() -> tf.Tensor | None:
  """The next dropout call's seed inside `dropout_seed`, else None."""
  if _settings.dropout_seed is None:
    return None
  call_seed = tf.random.experimental.stateless_fold_in(
      _settings.dropout_seed, _settings.dropout_calls)
  _settings.dropout_calls += 1
  return call_seed


# ----------------------------------------------------------------------------
# The layer's element-wise ops.  Each has a twin of the same signature in
# `fused.py`, which a training step traced with `training_kernels("fused")`
# runs instead.


def _drop(x: tf.Tensor, rate: float, seed: tf.Tensor | None,
          first_of: tf.Tensor | None = None) -> tf.Tensor:
  """Inverted dropout with this call's `seed`: the hashed masks of
  `masks.py`, or TensorFlow's stateful ones outside `dropout_seed`."""
  if seed is None:
    return tf.nn.dropout(x, rate=rate)
  return masks.drop(x, seed, rate, first_of)


def dropout(x: tf.Tensor, rate: float, training: bool,
            first_of: tf.Tensor | None = None) -> tf.Tensor:
  """Inverted dropout in training, the identity otherwise.  `first_of` S:
  x [..., W] holds the first of every S rows of the tensor the full layer
  would drop out, and gets their mask (the last layer run for [CLS] only)."""
  if not training or rate == 0.0:
    return x
  seed = _next_dropout_seed()
  if _fused(training) and seed is not None:
    return fused.dropout(x, rate, seed, first_of)
  return _drop(x, rate, seed, first_of)


class LayerNorm(tf.Module):
  """`<scope>/gamma`, `<scope>/beta`; epsilon 1e-12 as Google's."""

  def __init__(self, scope: str, dim: int):
    super().__init__(name=None)
    self.gamma = tf.Variable(tf.ones([dim]), name=f"{scope}/gamma")
    self.beta = _zeros(f"{scope}/beta", [dim])

  def __call__(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
    """[..., H] -> [..., H] in x's dtype; statistics in float32 (an epsilon
    of 1e-12 and a variance are beyond bfloat16/float16)."""
    if _fused(training):
      return fused.layer_norm(x, self.gamma, self.beta, 1e-12)
    x32 = tf.cast(x, tf.float32)
    mean, variance = tf.nn.moments(x32, axes=[-1], keepdims=True)
    y = (x32 - mean) * tf.math.rsqrt(variance + 1e-12) * self.gamma + self.beta
    return tf.cast(y, x.dtype)

  def add_and_norm(self, residual: tf.Tensor, dense: Dense, x: tf.Tensor,
                   dropout_rate: float, training: bool,
                   first_of: tf.Tensor | None = None) -> tf.Tensor:
    """LayerNorm(residual + dropout(dense(x))), residual [N, H], x [N, in]:
    a residual connection.  `first_of`: see `dropout`."""
    seed = _next_dropout_seed() if training and dropout_rate else None
    if _fused(training) and seed is not None:
      y, bias = fused.matmul_and_bias(x, dense.kernel, dense.bias)
      return fused.dropout_add_layer_norm(y, residual, self.gamma, self.beta,
                                          1e-12, dropout_rate, seed, bias,
                                          first_of)
    y = dense(x)
    if training and dropout_rate:
      y = _drop(y, dropout_rate, seed, first_of)
    return self(residual + y, training)


def dense_activation(dense: Dense, activation, x: tf.Tensor,
                     training: bool) -> tf.Tensor:
  """activation(dense(x)): the feed-forward layer's first half."""
  if _fused(training) and activation is gelu:
    return fused.gelu(*fused.matmul_and_bias(x, dense.kernel, dense.bias))
  return activation(dense(x))


def attention_probs(scores: tf.Tensor, mask_adder: tf.Tensor, rate: float,
                    training: bool, first_of: tf.Tensor | None = None
                    ) -> tuple[tf.Tensor, tf.Tensor]:
  """scores [B, N, F, T], float32 mask_adder [B, 1, 1, T] ->
  (dropout(softmax(scores + mask_adder)) in scores' dtype, the masked
  scores in float32).  `first_of`: see `dropout`."""
  # float32: -10000 + a score, and the softmax's sums, need its precision.
  masked = tf.cast(scores, tf.float32) + mask_adder
  seed = _next_dropout_seed() if training and rate else None
  if _fused(training):
    probs = fused.attention_softmax(scores, mask_adder, rate, seed, first_of)
    if training and rate and seed is None:
      probs = tf.nn.dropout(probs, rate=rate)
    return probs, masked
  probs = tf.cast(tf.nn.softmax(masked), scores.dtype)
  if training and rate:
    probs = _drop(probs, rate, seed, first_of)
  return probs, masked


# ----------------------------------------------------------------------------
# The encoder.


def attention_mask_adder(input_mask: tf.Tensor) -> tf.Tensor:
  """[B, S] 1/0 mask -> [B, 1, 1, S] additive mask: 0 kept, -10000 masked."""
  # expand_dims, not [:, tf.newaxis, ...]: TF Lite has no strided slice
  # that adds axes.
  mask = tf.cast(tf.expand_dims(tf.expand_dims(input_mask, 1), 1), tf.float32)
  return (1.0 - mask) * -10000.0


def block_lengths(length: tf.Tensor, blocks: int) -> list[tf.Tensor]:
  """`blocks` int32 lengths that sum to `length` and differ by at most one,
  larger first: the first block holds position 0 whenever there is one
  (later blocks may be empty)."""
  def start(i):
    return (length * i + blocks - 1) // blocks
  return [start(i + 1) - start(i) for i in range(blocks)]


def split_positions(x: tf.Tensor, batch: tf.Tensor, seq: tf.Tensor,
                    lengths: list[tf.Tensor]) -> list[tf.Tensor]:
  """x [B*S, H] -> each example's positions in blocks [B*Q_i, H] of
  `lengths` Q_i."""
  width = x.shape[-1]
  split = tf.split(tf.reshape(x, [batch, seq, width]), tf.stack(lengths),
                   axis=1, num=len(lengths))
  return [tf.reshape(block, [-1, width]) for block in split]


def join_positions(x_blocks: list[tf.Tensor], lengths: list[tf.Tensor],
                   batch: tf.Tensor) -> tf.Tensor:
  """Undoes `split_positions`: x_blocks [B*Q_i, H] -> [B, S, H] (reshaped
  by the lengths, not -1: a batch of 0 has no length to infer)."""
  if len(x_blocks) == 1:
    return tf.reshape(x_blocks[0], [batch, lengths[0], x_blocks[0].shape[-1]])
  width = x_blocks[0].shape[-1]
  return tf.concat([tf.reshape(x, [batch, length, width])
                    for x, length in zip(x_blocks, lengths)], axis=1)


def first_rows(x: tf.Tensor, batch: tf.Tensor) -> tf.Tensor:
  """x [B*Q, H], each example's Q rows in turn -> [B, H], each example's
  first row (position 0: [CLS])."""
  return tf.reshape(x, [batch, -1, x.shape[-1]])[:, 0]


class Attention(tf.Module):
  """Multi-head attention, `attention/self/{query,key,value}`: Google's
  `attention_layer`."""

  def __init__(self, scope: str, config: BertConfig):
    super().__init__(name=None)
    h, std = config.hidden_size, config.initializer_range
    self.num_heads = config.num_attention_heads
    self.head_size = h // self.num_heads
    self.dropout_rate = config.attention_probs_dropout_prob
    self.query = Dense(f"{scope}/query", h, h, std)
    self.key = Dense(f"{scope}/key", h, h, std)
    self.value = Dense(f"{scope}/value", h, h, std)

  def _heads(self, x: tf.Tensor, batch: tf.Tensor,
             length: tf.Tensor) -> tf.Tensor:
    """[B*L, H] -> [B, N, L, D]."""
    return tf.transpose(
        tf.reshape(x, [batch, length, self.num_heads, self.head_size]),
        [0, 2, 1, 3])

  def __call__(self, from_x: tf.Tensor, to_x: tf.Tensor,
               mask_adder: tf.Tensor, batch: tf.Tensor, from_length,
               to_length, training: bool,
               first_of: tf.Tensor | None = None):
    """from_x [B*F, H] attends to to_x [B*T, H], mask_adder [B, 1, 1, T] ->
    (context [B*F, H], scores [B, N, F, T] (masked, pre-softmax, float32),
    probs [B, N, F, T]).

    The query rows may be any of the key rows: all of them (a full layer),
    a block of them, or each example's first (`first_of` T: the [CLS]-only
    last layer, with the dropout masks the full layer draws for that row).
    """
    # Google scales the [B, N, F, T] scores by 1 / sqrt(D); scaling q is
    # the same product with T / D times fewer multiplies (bit-equal when D
    # is a power of four, as BERT's 64: the scale is then a power of two).
    q = self._heads(self.query(from_x) * tf.cast(
        1.0 / math.sqrt(self.head_size), from_x.dtype), batch, from_length)
    k = self._heads(self.key(to_x), batch, to_length)
    v = self._heads(self.value(to_x), batch, to_length)
    scores = tf.matmul(q, k, transpose_b=True)
    dropped, masked = attention_probs(scores, mask_adder, self.dropout_rate,
                                      training, first_of)
    context = tf.transpose(tf.matmul(dropped, v), [0, 2, 1, 3])
    context = tf.reshape(context, [-1, self.num_heads * self.head_size])
    # For distillation losses and tests; pruned from graphs that skip it.
    probs = tf.cast(tf.nn.softmax(masked), from_x.dtype)
    return context, masked, probs


class TransformerLayer(tf.Module):
  """One encoder layer, `bert/encoder/layer_<i>/...`: Google's
  `transformer_model`, one layer of it."""

  def __init__(self, scope: str, config: BertConfig):
    super().__init__(name=None)
    h, std = config.hidden_size, config.initializer_range
    self.dropout_rate = config.hidden_dropout_prob
    self.activation = get_activation(config.hidden_act)
    self.attention = Attention(f"{scope}/attention/self", config)
    self.attention_output = Dense(f"{scope}/attention/output/dense", h, h, std)
    self.attention_norm = LayerNorm(f"{scope}/attention/output/LayerNorm", h)
    self.intermediate = Dense(f"{scope}/intermediate/dense", h,
                              config.intermediate_size, std)
    self.output = Dense(f"{scope}/output/dense", config.intermediate_size, h,
                        std)
    self.output_norm = LayerNorm(f"{scope}/output/LayerNorm", h)

  def __call__(self, x_blocks: list[tf.Tensor], lengths: list[tf.Tensor],
               mask_adder: tf.Tensor, batch: tf.Tensor, training: bool,
               first_only: bool = False
               ) -> tuple[list[tf.Tensor], tf.Tensor, tf.Tensor]:
    """x_blocks: each example's positions in blocks [B*Q_i, H] of `lengths`
    Q_i (one block: all S of them) -> (y blocks, scores and probs
    [B, N, S, S]).  `first_only`: each example's first position only
    (-> one block [B, H], scores and probs [B, N, 1, S]).

    Every block's queries attend to the keys and values of all positions;
    the rest of the layer (output dense, residual, LayerNorm, feed-forward)
    works on each row alone, so each block stays on a branch of its own.
    """
    seq = tf.add_n(lengths) if len(lengths) > 1 else lengths[0]
    x = tf.reshape(join_positions(x_blocks, lengths, batch),
                   [-1, x_blocks[0].shape[-1]])
    if first_only:
      x_blocks, lengths, first_of = [first_rows(x_blocks[0], batch)], [1], seq
    else:
      first_of = None
    ys, scores, probs = [], [], []
    for rows, length in zip(x_blocks, lengths):
      context, block_scores, block_probs = self.attention(
          rows, x, mask_adder, batch, length, seq, training, first_of)
      attended = self.attention_norm.add_and_norm(
          rows, self.attention_output, context, self.dropout_rate, training,
          first_of)
      hidden = dense_activation(self.intermediate, self.activation, attended,
                                training)
      ys.append(self.output_norm.add_and_norm(
          attended, self.output, hidden, self.dropout_rate, training,
          first_of))
      scores.append(block_scores)
      probs.append(block_probs)
    if len(ys) == 1:
      return ys, scores[0], probs[0]
    return ys, tf.concat(scores, axis=2), tf.concat(probs, axis=2)


class BertOutputs(NamedTuple):
  embedding_output: tf.Tensor   # [B, S, H], after LayerNorm
  encoder_outputs: list          # num_layers x [B, S, H]
  attention_scores: list         # num_layers x [B, N, S, S], masked logits
  attention_probs: list          # num_layers x [B, N, S, S]
  sequence_output: tf.Tensor     # [B, S, H], the last layer
  pooled_output: tf.Tensor       # [B, H], tanh(dense([CLS]))

  def to_float32(self) -> "BertOutputs":
    """The same outputs in float32 (under `compute_dtype` they are not)."""
    return tf.nest.map_structure(
        lambda t: None if t is None else tf.cast(t, tf.float32), self)


class BertModel(tf.Module):
  """Embeddings, encoder and pooler, with Google's variable names."""

  def __init__(self, config: BertConfig):
    super().__init__(name=None)
    self.config = config
    h, std = config.hidden_size, config.initializer_range
    self.word_embeddings = _weight("bert/embeddings/word_embeddings",
                                   [config.vocab_size, h], std)
    self.token_type_embeddings = _weight(
        "bert/embeddings/token_type_embeddings", [config.type_vocab_size, h],
        std)
    self.position_embeddings = _weight(
        "bert/embeddings/position_embeddings",
        [config.max_position_embeddings, h], std)
    self.embedding_norm = LayerNorm("bert/embeddings/LayerNorm", h)
    self.layers = [TransformerLayer(f"bert/encoder/layer_{i}", config)
                   for i in range(config.num_hidden_layers)]
    self.pooler = Dense("bert/pooler/dense", h, h, std)

  def embed(self, input_ids: tf.Tensor, segment_ids: tf.Tensor,
            training: bool) -> tf.Tensor:
    """input_ids, segment_ids [B, S] -> [B, S, H]."""
    seq = tf.shape(input_ids)[1]
    x = (tf.gather(self.word_embeddings, input_ids) +
         tf.gather(self.token_type_embeddings, segment_ids) +
         self.position_embeddings[:seq])  # [S, H], broadcast over B
    # The one place the compute dtype enters: every layer follows x's dtype.
    x = tf.cast(self.embedding_norm(x, training), _settings.compute_dtype)
    return dropout(x, self.config.hidden_dropout_prob, training)

  def __call__(self, input_ids: tf.Tensor, input_mask: tf.Tensor | None = None,
               segment_ids: tf.Tensor | None = None,
               training: bool = False,
               first_position_only: bool = False) -> BertOutputs:
    """input_ids, input_mask, segment_ids: int [B, S] -> BertOutputs.

    `first_position_only`: the last layer computes only each example's
    first position ([CLS]), all the pooler reads, so `sequence_output` and
    the last layer's entries are [B, 1, H] and [B, N, 1, S];
    `pooled_output` is unchanged, in training too (the same dropout masks
    for those rows).  The last layer's other rows are most of its work,
    wasted on a classifier."""
    if input_mask is None:
      input_mask = tf.ones_like(input_ids)
    if segment_ids is None:
      segment_ids = tf.zeros_like(input_ids)
    batch, seq = tf.shape(input_ids)[0], tf.shape(input_ids)[1]
    embedding_output = self.embed(input_ids, segment_ids, training)
    mask_adder = attention_mask_adder(input_mask)
    # The encoder works on [B*S, H] matrices, as Google's does, so every
    # dense layer is a single 2-D matmul; inference may split each
    # example's positions in blocks (`position_blocks`).
    x = tf.reshape(embedding_output, [batch * seq, self.config.hidden_size])
    blocks = 1 if training else _settings.position_blocks
    lengths = block_lengths(seq, blocks) if blocks > 1 else [seq]
    x_blocks = split_positions(x, batch, seq, lengths) if blocks > 1 else [x]
    encoder_outputs, all_scores, all_probs = [], [], []
    for i, layer in enumerate(self.layers):
      first_only = first_position_only and i == len(self.layers) - 1
      x_blocks, scores, probs = layer(x_blocks, lengths, mask_adder, batch,
                                      training, first_only)
      if first_only:
        lengths = [1]
      # Joined only for whoever reads it (a classifier's logits do not).
      encoder_outputs.append(join_positions(x_blocks, lengths, batch))
      all_scores.append(scores)
      all_probs.append(probs)
    sequence_output = encoder_outputs[-1] if encoder_outputs else embedding_output
    pooled_output = tf.tanh(self.pooler(sequence_output[:, 0]))
    return BertOutputs(embedding_output, encoder_outputs, all_scores,
                       all_probs, sequence_output, pooled_output)


class BertClassifier(tf.Module):
  """BERT plus Google's run_classifier head: `output_weights` [C, H],
  `output_bias` [C], dropout on the pooled output while training."""

  def __init__(self, config: BertConfig, num_labels: int):
    super().__init__(name=None)
    self.config = config
    self.num_labels = num_labels
    self.bert = BertModel(config)
    self.output_weights = _weight("output_weights",
                                  [num_labels, config.hidden_size], 0.02)
    self.output_bias = _zeros("output_bias", [num_labels])

  def forward(self, input_ids, input_mask, segment_ids,
              training: bool = False) -> tuple[tf.Tensor, BertOutputs]:
    """int [B, S] inputs -> (logits [B, C], BertOutputs)."""
    outputs = self.bert(input_ids, input_mask, segment_ids, training)
    return self._logits(outputs.pooled_output, training), outputs

  def __call__(self, input_ids, input_mask, segment_ids,
               training: bool = False) -> tf.Tensor:
    """int [B, S] inputs -> logits [B, C], the last layer run for [CLS]
    only (`BertModel`'s `first_position_only`): the same logits as
    `forward`'s, and in training the same dropout masks and so the same
    loss and gradients, for most of a layer's work less."""
    outputs = self.bert(input_ids, input_mask, segment_ids, training,
                        first_position_only=True)
    return self._logits(outputs.pooled_output, training)

  def _logits(self, pooled_output: tf.Tensor, training: bool) -> tf.Tensor:
    """[B, H] -> logits [B, C], float32."""
    pooled = dropout(pooled_output, 0.1, training)
    logits = tf.matmul(pooled, tf.cast(self.output_weights, pooled.dtype),
                       transpose_b=True)
    return tf.cast(logits, tf.float32) + self.output_bias


class MaskedLMHead(tf.Module):
  """Google's pre-training masked-LM head, `cls/predictions/...`.

  The output projection is tied to the input embedding: logits are
  LayerNorm(act(dense(x))) @ word_embeddings^T + output_bias.
  """

  def __init__(self, config: BertConfig, word_embeddings: tf.Variable):
    super().__init__(name=None)
    h, std = config.hidden_size, config.initializer_range
    self.activation = get_activation(config.hidden_act)
    self.transform = Dense("cls/predictions/transform/dense", h, h, std)
    self.transform_norm = LayerNorm("cls/predictions/transform/LayerNorm", h)
    self.word_embeddings = word_embeddings  # [V, H], shared with BertModel.
    self.output_bias = _zeros("cls/predictions/output_bias",
                              [config.vocab_size])

  def __call__(self, sequence_output: tf.Tensor) -> tf.Tensor:
    """sequence_output [B, S, H] (any leading dims) -> logits [B, S, V]."""
    x = self.transform_norm(self.activation(self.transform(sequence_output)))
    logits = tf.matmul(x, tf.cast(self.word_embeddings, x.dtype),
                       transpose_b=True)
    return tf.cast(logits, tf.float32) + self.output_bias


class NextSentenceHead(tf.Module):
  """Google's next-sentence head, `cls/seq_relationship/...`: logits =
  pooled @ output_weights^T + output_bias (label 0: B follows A)."""

  def __init__(self, config: BertConfig):
    super().__init__(name=None)
    self.output_weights = _weight("cls/seq_relationship/output_weights",
                                  [2, config.hidden_size],
                                  config.initializer_range)
    self.output_bias = _zeros("cls/seq_relationship/output_bias", [2])

  def __call__(self, pooled_output: tf.Tensor) -> tf.Tensor:
    """[B, H] -> float32 [B, 2]."""
    return tf.matmul(tf.cast(pooled_output, tf.float32), self.output_weights,
                     transpose_b=True) + self.output_bias


class BertForPreTraining(tf.Module):
  """BERT with Google's two pre-training heads (masked LM, next sentence)."""

  def __init__(self, config: BertConfig):
    super().__init__(name=None)
    self.config = config
    self.bert = BertModel(config)
    self.masked_lm = MaskedLMHead(config, self.bert.word_embeddings)
    self.next_sentence = NextSentenceHead(config)

  def __call__(self, input_ids, input_mask, segment_ids, masked_lm_positions,
               training: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
    """int [B, S] inputs, int [B, P] positions -> (masked-LM logits
    [B, P, V] at those positions, next-sentence logits [B, 2])."""
    outputs = self.bert(input_ids, input_mask, segment_ids, training=training)
    picked = tf.gather(outputs.sequence_output, masked_lm_positions,
                       batch_dims=1)                          # [B, P, H]
    return (self.masked_lm(picked),
            self.next_sentence(outputs.pooled_output))


def variables_by_name(module: tf.Module) -> dict[str, tf.Variable]:
  """Google checkpoint name -> variable, for every variable of `module`."""
  named = {}
  for v in module.variables:
    name = v.name.split(":")[0]
    if name in named:
      raise ValueError(f"two variables named {name}")
    named[name] = v
  return named
