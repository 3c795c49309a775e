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
(`optimization._adam_step`).  The attention softmax stays with oneDNN's
kernel: as an XLA kernel each way it measured 1.4x slower in float32 and no
faster in bfloat16 ([32, 4, 128, 128]).

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


@tf.function(jit_compile=True)
def _gelu_forward(x):
  x32 = tf.cast(x, tf.float32)
  inner = _GELU_C * (x32 + _GELU_A * x32 * x32 * x32)
  return tf.cast(0.5 * x32 * (1.0 + tf.tanh(inner)), x.dtype)


@tf.function(jit_compile=True)
def _gelu_backward(x, dy):
  x32 = tf.cast(x, tf.float32)
  x2 = x32 * x32
  t = tf.tanh(_GELU_C * (x32 + _GELU_A * x2 * x32))
  # d/dx 0.5 x (1 + tanh(u)), u = c (x + a x^3).
  slope = 0.5 * (1.0 + t) + (0.5 * _GELU_C) * x32 * (1.0 - t * t) * (
      1.0 + 3.0 * _GELU_A * x2)
  return tf.cast(tf.cast(dy, tf.float32) * slope, dy.dtype)


@tf.custom_gradient
def gelu(x: tf.Tensor):
  """Google's tanh-approximation GELU: x -> x's shape and dtype."""
  return _gelu_forward(x), lambda dy: _gelu_backward(*_captured(x), dy)


def _normalize(x32, epsilon):
  """float32 [..., H] -> (normed, inv_std [..., 1])."""
  centred = x32 - tf.reduce_mean(x32, -1, keepdims=True)
  inv_std = tf.math.rsqrt(
      tf.reduce_mean(centred * centred, -1, keepdims=True) + epsilon)
  return centred * inv_std, inv_std


def _normalize_backward(dy, normed, inv_std, gamma):
  """-> (d input, d gamma, d beta), all float32."""
  dy32 = tf.cast(dy, tf.float32)
  leading = list(range(len(dy.shape) - 1))
  d_normed = dy32 * gamma
  dx = inv_std * (d_normed - tf.reduce_mean(d_normed, -1, keepdims=True) -
                  normed * tf.reduce_mean(d_normed * normed, -1,
                                          keepdims=True))
  return (dx, tf.reduce_sum(dy32 * normed, leading),
          tf.reduce_sum(dy32, leading))


@tf.function(jit_compile=True)
def _layer_norm_forward(x, gamma, beta, epsilon):
  normed, inv_std = _normalize(tf.cast(x, tf.float32), epsilon)
  return tf.cast(normed * gamma + beta, x.dtype), normed, inv_std


@tf.function(jit_compile=True)
def _layer_norm_backward(dy, normed, inv_std, gamma):
  dx, d_gamma, d_beta = _normalize_backward(dy, normed, inv_std, gamma)
  return tf.cast(dx, dy.dtype), d_gamma, d_beta


def layer_norm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor,
               epsilon: float) -> tf.Tensor:
  """x [..., H] in any float dtype, float32 gamma/beta [H] -> [..., H] in
  x's dtype; statistics in float32."""

  @tf.custom_gradient
  def norm(x, gamma, beta):
    y, normed, inv_std = _layer_norm_forward(x, gamma, beta, epsilon)
    return y, lambda dy: _layer_norm_backward(
        dy, *_captured(normed, inv_std, gamma))

  return norm(x, gamma, beta)


def _random_uint16(shape: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """Stateless uniform uint16 of `shape`: half the Philox words a float per
  element costs (float masks took about 7% of a bfloat16 step)."""
  size = tf.reduce_prod(shape)
  words = tf.random.stateless_uniform([(size + 1) // 2], seed, minval=None,
                                      maxval=None, dtype=tf.uint32)
  return tf.reshape(tf.reshape(tf.bitcast(words, tf.uint16), [-1])[:size],
                    shape)


def _threshold(rate: float) -> int:
  return min(round(rate * 65536), 65535)


def _drop(x, bits, rate: float):
  kept = bits >= tf.constant(_threshold(rate), tf.uint16)
  return tf.where(kept, x * tf.cast(1.0 / (1.0 - rate), x.dtype),
                  tf.zeros_like(x))


_dropout_apply = tf.function(_drop, jit_compile=True)


def dropout(x: tf.Tensor, rate: float, seed: tf.Tensor) -> tf.Tensor:
  """Inverted dropout, a pure function of `seed` ([2] int): an element is
  dropped when its 16-bit random number is below rate * 65536 (the rate to
  within 2^-17), the rest are scaled by 1 / (1 - rate)."""
  bits = _random_uint16(tf.shape(x), seed)

  @tf.custom_gradient
  def drop(x):
    # The backward is the same select of the same mask, scaled alike.
    return (_dropout_apply(x, bits, rate),
            lambda dy: _dropout_apply(dy, *_captured(bits), rate))

  return drop(x)


@tf.function(jit_compile=True)
def _residual_norm_forward(y, residual, bits, gamma, beta, epsilon, rate):
  summed = (tf.cast(residual, tf.float32) +
            tf.cast(_drop(y, bits, rate), tf.float32))
  normed, inv_std = _normalize(summed, epsilon)
  return tf.cast(normed * gamma + beta, residual.dtype), normed, inv_std


@tf.function(jit_compile=True)
def _residual_norm_backward(dy, normed, inv_std, gamma, bits, rate):
  d_sum, d_gamma, d_beta = _normalize_backward(dy, normed, inv_std, gamma)
  return (tf.cast(_drop(d_sum, bits, rate), dy.dtype),
          tf.cast(d_sum, dy.dtype), d_gamma, d_beta)


def dropout_add_layer_norm(y: tf.Tensor, residual: tf.Tensor,
                           gamma: tf.Tensor, beta: tf.Tensor, epsilon: float,
                           rate: float, seed: tf.Tensor) -> tf.Tensor:
  """LayerNorm(residual + dropout(y)), a transformer layer's residual
  connection, as one kernel each way: y, residual [..., H] in one float
  dtype, float32 gamma/beta [H] -> [..., H] in residual's dtype.  The same
  mask as `dropout(y, rate, seed)`; the sum is taken in float32."""
  bits = _random_uint16(tf.shape(y), seed)

  @tf.custom_gradient
  def norm(y, residual, gamma, beta):
    out, normed, inv_std = _residual_norm_forward(
        y, residual, bits, gamma, beta, epsilon, rate)

    def grad(d_out):
      return _residual_norm_backward(
          d_out, *_captured(normed, inv_std, gamma, bits), rate)
    return out, grad

  return norm(y, residual, gamma, beta)
