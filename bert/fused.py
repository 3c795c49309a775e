"""The training step's element-wise chains, each one XLA kernel per direction.

Written as plain TensorFlow ops, tanh-GELU, LayerNorm, dropout and a
layer's residual connection are chains of 5-15 element-wise kernels each way
(the autodiff gradient of the GELU formula alone is a dozen), every one a
pass over a [B*S, 4H], [B*S, H] or [B, N, S, S] tensor; in bfloat16 these
passes cost more than the matmuls (Eigen widens bfloat16 to float32 element
by element).  Here each forward and each hand-written backward is one
`tf.function(jit_compile=True)`: XLA fuses it into a single loop, while the
matmuls stay with TensorFlow's oneDNN kernels (XLA's own CPU matmuls are no
faster in float32 and 4-5x slower in bfloat16).  Math in float32 inside the
kernel, results in the input's dtype.  Adam's update is fused the same way
(`optimization._adam_step`).  The attention softmax's forward pass stays
with oneDNN's kernel (as an XLA kernel it measured 1.4x slower in float32
and no faster in bfloat16 at [32, 4, 128, 128]); its backward pass is one
kernel here (`attention_softmax`).  `split_heads` turns one [H, 3H]
projection into heads-major q, k, v for batched matmuls, and in 16-bit steps
the dense layers' biases are added inside these kernels
(`bias_in_kernels`).  Inside a kernel its sums (bias gradients,
LayerNorm's means, the softmax gradient's row sums) are matmuls with a
ones or gamma vector, which XLA's CPU compiler runs faster than its
reduces (`_leading_sum`), except in a step compiled whole by XLA.

XLA compiles per input shape (~0.1 s per kernel), so the training step pads
batches to a multiple of `data.FUSED_LENGTH_MULTIPLE` tokens.  The models
use these kernels only while training; eval, predict and exports keep the
plain ops (TF Serving and TF Lite need no XLA, and the inference graph's
MatMul+BiasAdd+GELU already fuses in oneDNN).

Shapes: any; LayerNorm normalises the last axis.
"""

from __future__ import annotations

import math

import tensorflow as tf

try:  # No public API says whether a trace is inside jit_compile=True.
  from tensorflow.python.ops import control_flow_util
except ImportError:  # A later TF moved it: every step takes the same path.
  control_flow_util = None

_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_A = 0.044715


def _captured(*forward_tensors: tf.Tensor) -> list[tf.Tensor]:
  """The forward pass's tensors, for a backward kernel (a tf.function).

  Inside tf.cond (TinyBERT's stage switch) a tf.function called by a
  gradient cannot capture the branch's tensors itself (TF 2.21: "Could not
  find external tensor capture"); an identity in the gradient graph captures
  them as any plain op does.
  """
  return [tf.identity(t) for t in forward_tensors]


def compiled_whole_by_xla() -> bool:
  """Whether the function being traced is one XLA computation
  (`--jit_compile`), into which these kernels are inlined."""
  return control_flow_util is not None and (
      control_flow_util.GraphOrParentsInXlaContext(
          tf.compat.v1.get_default_graph()))


def _leading_sum(t32: tf.Tensor, dot_sums: bool) -> tf.Tensor:
  """[..., N] float32 -> [N], summed over the leading axes: a bias's
  gradient.

  `dot_sums`: as a [1, R] x [R, N] matmul with ones.  In a kernel of its
  own, XLA CPU (TF 2.21) writes a reduce's input out, then splits a reduce
  over R rows into a reduce-window over blocks of 32 rows and a second
  reduce (and a convert's input into a slower loop still), while a dot
  runs as one GEMV (the q, k, v gradient kernel at [32, 128, 768]: 6.5 ->
  3.7 ms in bfloat16, 5.6 -> 3.6 in float32).  Not in a step compiled whole
  by XLA, whose own fusion of the reduce did better (the quickstart
  teacher's step: 88 ms with reduces, 143 with dots).  Sums in float32
  either way.
  """
  if not dot_sums:
    return tf.reduce_sum(t32, list(range(len(t32.shape) - 1)))
  rows = tf.reshape(t32, tf.concat([[-1], tf.shape(t32)[-1:]], 0))
  return tf.reshape(tf.matmul(tf.ones([1, tf.shape(rows)[0]]), rows), [-1])


def bias_in_kernels(dtype: tf.DType) -> bool:
  """Whether a training step computing in `dtype` adds the biases of the
  dense layers before `gelu` and `dropout_add_layer_norm` inside those
  kernels instead of with oneDNN's fused MatMul+BiasAdd.  (`split_heads`
  adds the q, k, v biases in every dtype: it writes new tensors anyway.)

  Yes in 16 bits: oneDNN's bfloat16 MatMul+BiasAdd took twice its plain
  matmul's time at [4096, 256] x [256, 1024], and BiasAddGrad is a bfloat16
  reduction Eigen widens element by element (the 4 x 256 bfloat16 step:
  338 -> 309 ms with these biases and the q, k, v projection in kernels).
  No in float32, where oneDNN's bias is nearly free and the same change
  made the step 2-8% slower.
  """
  return tf.as_dtype(dtype) != tf.float32


def _narrow(x32: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
  """float32 -> `dtype`, rounded to nearest even as tf.cast rounds, bit for
  bit; bfloat16 by integer ops on the bits.

  In a kernel whose output is a plain element-wise map XLA's CPU convert
  (TF 2.21) is slow: in bfloat16 the GELU kernel at [4096, 1024] took 3.1
  ms with it against 2.1 with this (2.4 in float32), `split_heads`'s
  forward 2.2 against 1.4.  Elsewhere it made no difference, or (after the
  transpose of `split_heads`'s backward) 4.4 ms against 5.2: the kernels
  there keep tf.cast."""
  if dtype != tf.bfloat16:
    return tf.cast(x32, dtype)
  bits = tf.bitcast(x32, tf.uint32)
  sixteen = tf.constant(16, tf.uint32)
  truncated = tf.bitwise.right_shift(bits, sixteen)
  odd = tf.bitwise.bitwise_and(truncated, tf.constant(1, tf.uint32))
  upper = tf.bitwise.right_shift(
      bits + (tf.constant(0x7FFF, tf.uint32) + odd), sixteen)
  # A NaN's carry could reach its exponent and make it 0 or Inf: a quiet
  # NaN of the same sign instead.
  upper = tf.where(tf.math.is_nan(x32),
                   tf.bitwise.bitwise_or(truncated,
                                         tf.constant(0x40, tf.uint32)),
                   upper)
  return tf.bitcast(tf.cast(upper, tf.uint16), tf.bfloat16)


def _plus_bias(x: tf.Tensor, bias: tf.Tensor | None) -> tf.Tensor:
  x32 = tf.cast(x, tf.float32)
  return x32 if bias is None else x32 + bias


@tf.function(jit_compile=True)
def _gelu_forward(x, bias=None):
  x32 = _plus_bias(x, bias)
  inner = _GELU_C * (x32 + _GELU_A * x32 * x32 * x32)
  return _narrow(0.5 * x32 * (1.0 + tf.tanh(inner)), x.dtype)


@tf.function(jit_compile=True)
def _gelu_backward(dy, x, bias=None, dot_sums=True):
  x32 = _plus_bias(x, bias)
  x2 = x32 * x32
  t = tf.tanh(_GELU_C * (x32 + _GELU_A * x2 * x32))
  # d/dx 0.5 x (1 + tanh(u)), u = c (x + a x^3).
  slope = 0.5 * (1.0 + t) + (0.5 * _GELU_C) * x32 * (1.0 - t * t) * (
      1.0 + 3.0 * _GELU_A * x2)
  dx32 = tf.cast(dy, tf.float32) * slope
  if bias is None:
    return tf.cast(dx32, dy.dtype)
  return tf.cast(dx32, dy.dtype), _leading_sum(dx32, dot_sums)


def gelu(x: tf.Tensor, bias: tf.Tensor | None = None) -> tf.Tensor:
  """Google's tanh-approximation GELU of x (+ bias): x [..., N] in any float
  dtype, float32 bias [N] -> x's shape and dtype.

  With `bias`, the bias of the dense layer before the GELU is added here
  rather than by the matmul, and its gradient (otherwise BiasAddGrad) comes
  out of the GELU's backward pass; see `bias_in_kernels`.
  """
  inputs = [x] if bias is None else [x, bias]

  dot_sums = not compiled_whole_by_xla()

  @tf.custom_gradient
  def act(*inputs):
    return (_gelu_forward(*inputs),
            lambda dy: _gelu_backward(dy, *_captured(*inputs),
                                      dot_sums=dot_sums))

  return act(*inputs)


@tf.function(jit_compile=True)
def _split_heads_forward(qkv, bias, num_heads, q_scale):
  batch, seq = tf.unstack(tf.shape(qkv)[:2])
  size = qkv.shape[-1] // (3 * num_heads)
  scale = tf.repeat(tf.constant([q_scale, 1.0, 1.0]), num_heads * size)
  # One transpose of the [B, S, 3N, D] whole, split after: three
  # transposes of its thirds took 3.6 ms against 2.6 at [32, 128, 768] in
  # bfloat16 (and 7.3 against 6.8 backward).
  heads = tf.transpose(
      tf.reshape((tf.cast(qkv, tf.float32) + bias) * scale,
                 [batch, seq, 3 * num_heads, size]), [0, 2, 1, 3])
  return tf.split(_narrow(heads, qkv.dtype), 3, axis=1)


@tf.function(jit_compile=True)
def _split_heads_backward(dq, dk, dv, q_scale, dot_sums=True):
  batch, seq = tf.unstack(tf.shape(dq)[::2])
  d_heads = tf.concat([tf.cast(dq, tf.float32) * q_scale,
                       tf.cast(dk, tf.float32), tf.cast(dv, tf.float32)], 1)
  d_qkv = tf.reshape(tf.transpose(d_heads, [0, 2, 1, 3]),
                     [batch, seq, 3 * dq.shape[1] * dq.shape[3]])
  return tf.cast(d_qkv, dq.dtype), _leading_sum(d_qkv, dot_sums)


def split_heads(qkv: tf.Tensor, bias: tf.Tensor, num_heads: int,
                q_scale: float) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """The query, key and value projections computed as one matmul, `qkv`
  [B, S, 3H] (any float dtype) plus float32 `bias` [3H] -> q * q_scale, k,
  v, each [B, N, S, D] (heads-major, for batched matmuls) in qkv's dtype.

  One [H, 3H] matmul instead of three [H, H] ones (and one matmul for the
  input's gradient instead of three and their sum); the heads-major layout
  costs nothing here, as XLA writes the outputs in it, and lets oneDNN's
  batched matmuls run the attention 2x faster than einsums over
  [B, S, N, D]; the biases are added here in every dtype (their gradient
  comes out of the backward kernel).
  """

  dot_sums = not compiled_whole_by_xla()

  @tf.custom_gradient
  def split(qkv, bias):
    return (_split_heads_forward(qkv, bias, num_heads, q_scale),
            lambda dq, dk, dv: _split_heads_backward(dq, dk, dv, q_scale,
                                                     dot_sums))

  heads = [qkv.shape[0], num_heads, qkv.shape[1],
           qkv.shape[-1] // (3 * num_heads)]
  return tuple(tf.ensure_shape(t, heads) for t in split(qkv, bias))


def _row_sums(t32: tf.Tensor, weights: tf.Tensor | None,
              dot_sums: bool) -> tf.Tensor:
  """[..., H] float32, [H] or None (ones) -> [..., 1]: sum(t32 * weights)
  over H; `dot_sums` (see `_leading_sum`): as an [R, H] x [H, 1] matmul."""
  width = tf.shape(t32)[-1:]
  if weights is None:
    weights = tf.ones(width)
  if not dot_sums:
    return tf.reduce_sum(t32 * weights, -1, keepdims=True)
  sums = tf.matmul(tf.reshape(t32, tf.concat([[-1], width], 0)),
                   tf.reshape(weights, [-1, 1]))
  return tf.reshape(sums, tf.concat([tf.shape(t32)[:-1], [1]], 0))


def _row_means(t32: tf.Tensor, weights: tf.Tensor | None,
               dot_sums: bool) -> tf.Tensor:
  """`_row_sums` / H."""
  return _row_sums(t32, weights, dot_sums) / tf.cast(tf.shape(t32)[-1],
                                                     tf.float32)


def _normalize(x32, epsilon, dot_sums):
  """float32 [..., H] -> (normed, inv_std [..., 1]).

  The means by `_row_means`: with `dot_sums` the residual kernel at [4096,
  256] took 4.4 -> 3.8 ms in bfloat16 and 2.8 -> 2.6 in float32, LayerNorm
  alone 2.4 -> 1.5 and 1.7 -> 1.4.
  """
  centred = x32 - _row_means(x32, None, dot_sums)
  inv_std = tf.math.rsqrt(_row_means(centred * centred, None, dot_sums) +
                          epsilon)
  return centred * inv_std, inv_std


def _normalize_backward(dy, normed, inv_std, gamma, dot_sums):
  """-> (d input, d gamma, d beta), all float32.

  The row means by `_row_means` and the column sums by `_leading_sum`
  (with `dot_sums` the residual kernel's backward at [4096, 256]: 4.2 ->
  3.1 ms in bfloat16, 5.5 -> 4.3 in float32).
  """
  dy32 = tf.cast(dy, tf.float32)
  dy_normed = dy32 * normed
  dx = inv_std * (dy32 * gamma - _row_means(dy32, gamma, dot_sums) -
                  normed * _row_means(dy_normed, gamma, dot_sums))
  return (dx, _leading_sum(dy_normed, dot_sums),
          _leading_sum(dy32, dot_sums))


@tf.function(jit_compile=True)
def _layer_norm_forward(x, gamma, beta, epsilon, dot_sums=True):
  normed, inv_std = _normalize(tf.cast(x, tf.float32), epsilon, dot_sums)
  return tf.cast(normed * gamma + beta, x.dtype), normed, inv_std


@tf.function(jit_compile=True)
def _layer_norm_backward(dy, normed, inv_std, gamma, dot_sums=True):
  dx, d_gamma, d_beta = _normalize_backward(dy, normed, inv_std, gamma,
                                            dot_sums)
  return tf.cast(dx, dy.dtype), d_gamma, d_beta


def layer_norm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor,
               epsilon: float) -> tf.Tensor:
  """x [..., H] in any float dtype, float32 gamma/beta [H] -> [..., H] in
  x's dtype; statistics in float32."""

  dot_sums = not compiled_whole_by_xla()

  @tf.custom_gradient
  def norm(x, gamma, beta):
    y, normed, inv_std = _layer_norm_forward(x, gamma, beta, epsilon,
                                             dot_sums)
    return y, lambda dy: _layer_norm_backward(
        dy, *_captured(normed, inv_std, gamma), dot_sums)

  return norm(x, gamma, beta)


def _mix32(h: tf.Tensor) -> tf.Tensor:
  """uint32 -> uint32: a bijective integer hash in which every input bit
  flips every output bit with probability ~1/2 (Chris Wellons's lowbias32)."""
  h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, 16))
  h *= tf.constant(0x7FEB352D, tf.uint32)
  h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, 15))
  h *= tf.constant(0x846CA68B, tf.uint32)
  return tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, 16))


def _mask_keys(seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """[2] int seed -> two uint32 keys: the first from the seed's first
  int64, the second from all 128 bits."""
  w = tf.unstack(tf.reshape(tf.bitcast(tf.cast(seed, tf.int64), tf.uint32),
                            [4]))
  first = _mix32(tf.bitwise.bitwise_xor(
      w[0], _mix32(w[1] + tf.constant(0x9E3779B9, tf.uint32))))
  second = _mix32(tf.bitwise.bitwise_xor(
      w[2], _mix32(tf.bitwise.bitwise_xor(w[3], first))))
  return first, second


def _kept(shape: tf.Tensor, seed: tf.Tensor, rate: float,
          first_of: tf.Tensor | None = None) -> tf.Tensor:
  """bool of `shape` [..., W]: which elements dropout keeps, a pure function
  of `seed` and each element's flat index.  Computed inside the XLA kernels
  that apply the mask, forward and again backward: no mask tensor is
  stored, and no random-number op runs.

  Element i is kept when hash(i) >= rate * 2^32 (the rate to within
  2^-33), hash(i) = mix(mix(i + key1) xor key2), `_mix32` keyed by the
  seed: a counter-based generator, as Philox is, with 2 rounds of a strong
  32-bit mixer instead of 10 of Philox's (dropout needs masks that are
  uniform and unrelated across elements and seeds, not a cryptographic
  stream).  TensorFlow's Philox kernel took 8% of a bfloat16 training step
  (27 of 348 ms at 4 x 256) and its bits a pass over memory each way;
  this costs a few integer ops per element in loops XLA vectorises.  The
  index is taken modulo 2^32: masks would repeat within one tensor of more
  than 4.3e9 elements.

  `first_of` S: a tensor of `shape` [..., W] is, row by row, the first of
  every S rows of a full [..., S, W] one (a classifier's last layer run for
  [CLS] only): its elements take their indices in that full tensor, so its
  mask is the one the full layer draws.
  """
  width = shape[-1]
  rows = tf.reduce_prod(shape[:-1])
  row_stride = width if first_of is None else width * first_of
  key1, key2 = _mask_keys(seed)
  # The key joins the [1, W] term before the broadcast: a [rows, W] index
  # without it is a constant XLA would fold into the executable (4 bytes an
  # element, 400 MB for BERT-Base's [32, 12, 512, 512] attention).
  keyed_index = (tf.cast(tf.range(rows), tf.uint32)[:, None] *
                 tf.cast(row_stride, tf.uint32) +
                 (tf.cast(tf.range(width), tf.uint32) + key1)[None, :])
  hashed = _mix32(tf.bitwise.bitwise_xor(_mix32(keyed_index), key2))
  threshold = min(round(rate * 2.0**32), 2**32 - 1)
  return tf.reshape(hashed >= tf.constant(threshold, tf.uint32), shape)


def _drop(x, seed, rate: float, first_of=None):
  """x's dropout: the kept elements scaled by 1 / (1 - rate), the others 0."""
  return tf.where(_kept(tf.shape(x), seed, rate, first_of),
                  x * tf.cast(1.0 / (1.0 - rate), x.dtype), tf.zeros_like(x))


_dropout_apply = tf.function(_drop, jit_compile=True)


def _mask_inputs(seed: tf.Tensor, first_of: tf.Tensor | None
                 ) -> tuple[tf.Tensor, tf.Tensor | None]:
  """A mask's seed and `first_of`, captured for a backward kernel."""
  if first_of is None:
    return _captured(seed)[0], None
  return tuple(_captured(seed, first_of))


def dropout(x: tf.Tensor, rate: float, seed: tf.Tensor,
            first_of: tf.Tensor | None = None) -> tf.Tensor:
  """Inverted dropout, a pure function of `seed` ([2] int) and each
  element's index: the elements `_kept` keeps are scaled by 1 / (1 - rate),
  the rest are 0.  `first_of`: see `_kept`."""

  @tf.custom_gradient
  def drop(x):
    def grad(dy):
      # The same select of the same mask, scaled alike.
      mask_seed, mask_first_of = _mask_inputs(seed, first_of)
      return _dropout_apply(dy, mask_seed, rate, mask_first_of)
    return _dropout_apply(x, seed, rate, first_of), grad

  return drop(x)


@tf.function(jit_compile=True)
def _softmax_backward(d_out, probs, seed=None, rate=0.0, first_of=None,
                      dot_sums=True):
  d_probs = tf.cast(d_out, tf.float32)
  if seed is not None:
    d_probs = _drop(d_probs, seed, rate, first_of)
  p32 = tf.cast(probs, tf.float32)
  # With `dot_sums` (`_row_sums`): 2.9 -> 1.9 ms at [32, 4, 128, 128] in
  # bfloat16, 3.4 -> 2.3 in float32.
  return tf.cast(p32 * (d_probs - _row_sums(d_probs * p32, None, dot_sums)),
                 d_out.dtype)


def attention_softmax(scores: tf.Tensor, mask_adder: tf.Tensor,
                      rate: float = 0.0,
                      seed: tf.Tensor | None = None,
                      first_of: tf.Tensor | None = None) -> tf.Tensor:
  """dropout(softmax(scores + mask_adder)): scores [B, N, Q, S] in any float
  dtype, float32 mask_adder [B, 1, 1, S] (0 or -10000) -> [B, N, Q, S] in
  scores' dtype; no dropout without `seed`.  `first_of` S (Q = 1, each
  example's first query only): the mask the full [B, N, S, S] draws for
  that query (`_kept`).

  The forward pass is oneDNN's softmax in scores' dtype (the mask's add is
  exact there for kept positions, and a masked one's exp is 0 either way),
  then the dropout kernel; the backward pass (dropout's mask, the softmax's
  gradient, float32 inside) is one XLA kernel instead of seven ops, four of
  them casts in bfloat16.
  """

  dot_sums = not compiled_whole_by_xla()

  @tf.custom_gradient
  def softmax(scores):
    probs = tf.nn.softmax(scores + tf.cast(mask_adder, scores.dtype))
    if seed is None:
      return probs, lambda d_out: _softmax_backward(
          d_out, *_captured(probs), dot_sums=dot_sums)

    def grad(d_out):
      mask_seed, mask_first_of = _mask_inputs(seed, first_of)
      return _softmax_backward(d_out, *_captured(probs), mask_seed, rate,
                               mask_first_of, dot_sums)
    return _dropout_apply(probs, seed, rate, first_of), grad

  return softmax(scores)


@tf.function(jit_compile=True)
def _residual_norm_forward(y, residual, seed, gamma, beta, epsilon, rate,
                           first_of=None, bias=None, dot_sums=True):
  summed = tf.cast(residual, tf.float32) + _drop(_plus_bias(y, bias), seed,
                                                 rate, first_of)
  normed, inv_std = _normalize(summed, epsilon, dot_sums)
  return tf.cast(normed * gamma + beta, residual.dtype), normed, inv_std


@tf.function(jit_compile=True)
def _residual_norm_backward(dy, normed, inv_std, gamma, seed, rate, first_of,
                            with_bias: bool, dot_sums=True):
  d_sum, d_gamma, d_beta = _normalize_backward(dy, normed, inv_std, gamma,
                                               dot_sums)
  d_y = _drop(d_sum, seed, rate, first_of)
  grads = [tf.cast(d_y, dy.dtype), tf.cast(d_sum, dy.dtype), d_gamma, d_beta]
  return grads + [_leading_sum(d_y, dot_sums)] if with_bias else grads


def dropout_add_layer_norm(y: tf.Tensor, residual: tf.Tensor,
                           gamma: tf.Tensor, beta: tf.Tensor, epsilon: float,
                           rate: float, seed: tf.Tensor,
                           bias: tf.Tensor | None = None,
                           first_of: tf.Tensor | None = None) -> tf.Tensor:
  """LayerNorm(residual + dropout(y (+ bias))), a transformer layer's
  residual connection after its dense layer, as one kernel each way:
  y, residual [..., H] in one float dtype, float32 gamma/beta/bias [H] ->
  [..., H] in residual's dtype.  The same mask as `dropout(y, rate, seed,
  first_of)`; the sums are taken in float32.  `bias`: see
  `bias_in_kernels`."""
  inputs = [y, residual, gamma, beta] + ([] if bias is None else [bias])

  dot_sums = not compiled_whole_by_xla()

  @tf.custom_gradient
  def norm(*inputs):
    out, normed, inv_std = _residual_norm_forward(
        *inputs[:2], seed, *inputs[2:4], epsilon, rate, first_of,
        *inputs[4:], dot_sums=dot_sums)

    def grad(d_out):
      mask_seed, mask_first_of = _mask_inputs(seed, first_of)
      return _residual_norm_backward(
          d_out, *_captured(normed, inv_std, inputs[2]), mask_seed, rate,
          mask_first_of, bias is not None, dot_sums)
    return out, grad

  return norm(*inputs)
