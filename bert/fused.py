"""The `fused` kernels: the training step's element-wise chains, each one XLA
kernel per direction (`--kernels=fused`).

`modeling.py` writes tanh-GELU, LayerNorm, dropout, the attention softmax
and a layer's residual connection as plain TensorFlow ops, and autodiff
derives their gradients: chains of 5-15 element-wise kernels each way, each
a pass over a [B*S, 4H], [B*S, H] or [B, N, S, S] tensor.  On a CPU those
passes cost about as much as the matmuls, more in bfloat16 (Eigen widens
bfloat16 to float32 element by element).  Here each forward and each
hand-written backward is one `tf.function(jit_compile=True)`: XLA fuses it
into a single loop, while the matmuls stay with TensorFlow's oneDNN kernels.
Math in float32 inside the kernel, results in the input's dtype; the same
results as `modeling`'s ops to rounding, and the same dropout masks
(`masks.py`).  `tests/test_fused.py` compares both backends' outputs and
every gradient; benchmarks/RESULTS.md has what they measure.

Where XLA already fuses the whole step (`--jit_compile`), or on GPUs and
TPUs, these kernels have not been measured faster and `--kernels=auto`
keeps `modeling`'s ops.  XLA compiles a kernel per input shape, so the
training step pads batches to a multiple of `data.FUSED_LENGTH_MULTIPLE`
tokens.  Every function here has the signature of the op it replaces in
`modeling.py`.
"""

from __future__ import annotations

import math

import tensorflow as tf

from bert import masks

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


def _leading_sum(t32: tf.Tensor) -> tf.Tensor:
  """[..., N] float32 -> [N], summed over the leading axes: a bias's
  gradient, as a [1, R] x [R, N] matmul with ones.

  In a kernel of its own, XLA's CPU compiler (TF 2.21) splits a reduce over
  R rows into a reduce-window and a second reduce, while a dot runs as one
  GEMV.
  """
  rows = tf.reshape(t32, tf.concat([[-1], tf.shape(t32)[-1:]], 0))
  return tf.reshape(tf.matmul(tf.ones([1, tf.shape(rows)[0]]), rows), [-1])


def _row_sums(t32: tf.Tensor, weights: tf.Tensor | None) -> tf.Tensor:
  """[..., H] float32, [H] or None (ones) -> [..., 1]: sum(t32 * weights)
  over H, as an [R, H] x [H, 1] matmul (see `_leading_sum`)."""
  width = tf.shape(t32)[-1:]
  if weights is None:
    weights = tf.ones(width)
  sums = tf.matmul(tf.reshape(t32, tf.concat([[-1], width], 0)),
                   tf.reshape(weights, [-1, 1]))
  return tf.reshape(sums, tf.concat([tf.shape(t32)[:-1], [1]], 0))


def _row_means(t32: tf.Tensor, weights: tf.Tensor | None) -> tf.Tensor:
  """`_row_sums` / H."""
  return _row_sums(t32, weights) / tf.cast(tf.shape(t32)[-1], tf.float32)


def bias_in_kernels(dtype: tf.DType) -> bool:
  """Whether a step computing in `dtype` adds the biases of the dense layers
  before `gelu` and `dropout_add_layer_norm` inside those kernels, instead
  of with oneDNN's fused MatMul+BiasAdd.

  Yes in 16 bits, where oneDNN's MatMul+BiasAdd and BiasAddGrad are slow on
  CPUs (BiasAddGrad is a reduction that Eigen widens element by element);
  no in float32, where oneDNN's bias is nearly free.
  """
  return tf.as_dtype(dtype) != tf.float32


def matmul_and_bias(x: tf.Tensor, kernel: tf.Variable, bias: tf.Variable
                    ) -> tuple[tf.Tensor, tf.Variable | None]:
  """A dense layer for the kernel after it: x [N, in] -> (x W, bias) when
  that kernel adds the bias (`bias_in_kernels`), else (x W + bias, None)."""
  product = tf.matmul(x, tf.cast(kernel, x.dtype))
  if bias_in_kernels(x.dtype):
    return product, bias
  return tf.nn.bias_add(product, tf.cast(bias, x.dtype)), None


def _plus_bias(x: tf.Tensor, bias: tf.Tensor | None) -> tf.Tensor:
  x32 = tf.cast(x, tf.float32)
  return x32 if bias is None else x32 + bias


@tf.function(jit_compile=True)
def _gelu_forward(x, bias=None):
  x32 = _plus_bias(x, bias)
  inner = _GELU_C * (x32 + _GELU_A * x32 * x32 * x32)
  return tf.cast(0.5 * x32 * (1.0 + tf.tanh(inner)), x.dtype)


@tf.function(jit_compile=True)
def _gelu_backward(dy, x, bias=None):
  x32 = _plus_bias(x, bias)
  x2 = x32 * x32
  t = tf.tanh(_GELU_C * (x32 + _GELU_A * x2 * x32))
  # d/dx 0.5 x (1 + tanh(u)), u = c (x + a x^3).
  slope = 0.5 * (1.0 + t) + (0.5 * _GELU_C) * x32 * (1.0 - t * t) * (
      1.0 + 3.0 * _GELU_A * x2)
  dx32 = tf.cast(dy, tf.float32) * slope
  if bias is None:
    return tf.cast(dx32, dy.dtype)
  return tf.cast(dx32, dy.dtype), _leading_sum(dx32)


def gelu(x: tf.Tensor, bias: tf.Tensor | None = None) -> tf.Tensor:
  """Google's tanh-approximation GELU of x (+ bias): x [..., N] in any float
  dtype, float32 bias [N] -> x's shape and dtype.  With `bias`, the dense
  layer's bias is added here (see `matmul_and_bias`) and its gradient comes
  out of the GELU's backward kernel."""
  inputs = [x] if bias is None else [x, bias]

  @tf.custom_gradient
  def act(*inputs):
    return (_gelu_forward(*inputs),
            lambda dy: _gelu_backward(dy, *_captured(*inputs)))

  return act(*inputs)


def _normalize(x32, epsilon):
  """float32 [..., H] -> (normed, inv_std [..., 1])."""
  centred = x32 - _row_means(x32, None)
  inv_std = tf.math.rsqrt(_row_means(centred * centred, None) + epsilon)
  return centred * inv_std, inv_std


def _normalize_backward(dy, normed, inv_std, gamma):
  """-> (d input, d gamma, d beta), all float32."""
  dy32 = tf.cast(dy, tf.float32)
  dy_normed = dy32 * normed
  dx = inv_std * (dy32 * gamma - _row_means(dy32, gamma) -
                  normed * _row_means(dy_normed, gamma))
  return dx, _leading_sum(dy_normed), _leading_sum(dy32)


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


_dropout_apply = tf.function(masks.drop, jit_compile=True)


def _mask_inputs(seed: tf.Tensor, first_of: tf.Tensor | None
                 ) -> tuple[tf.Tensor, tf.Tensor | None]:
  """A mask's seed and `first_of`, captured for a backward kernel."""
  if first_of is None:
    return _captured(seed)[0], None
  return tuple(_captured(seed, first_of))


def dropout(x: tf.Tensor, rate: float, seed: tf.Tensor,
            first_of: tf.Tensor | None = None) -> tf.Tensor:
  """`masks.drop` as one kernel each way (the backward pass applies the
  same mask to the gradient)."""

  @tf.custom_gradient
  def drop(x):
    def grad(dy):
      mask_seed, mask_first_of = _mask_inputs(seed, first_of)
      return _dropout_apply(dy, mask_seed, rate, mask_first_of)
    return _dropout_apply(x, seed, rate, first_of), grad

  return drop(x)


@tf.function(jit_compile=True)
def _softmax_backward(d_out, probs, seed=None, rate=0.0, first_of=None):
  d_probs = tf.cast(d_out, tf.float32)
  if seed is not None:
    d_probs = masks.drop(d_probs, seed, rate, first_of)
  p32 = tf.cast(probs, tf.float32)
  return tf.cast(p32 * (d_probs - _row_sums(d_probs * p32, None)),
                 d_out.dtype)


def attention_softmax(scores: tf.Tensor, mask_adder: tf.Tensor,
                      rate: float = 0.0, seed: tf.Tensor | None = None,
                      first_of: tf.Tensor | None = None) -> tf.Tensor:
  """dropout(softmax(scores + mask_adder)): scores [B, N, F, T] in any float
  dtype, float32 mask_adder [B, 1, 1, T] (0 or -10000) -> [B, N, F, T] in
  scores' dtype; no dropout without `seed`.

  The forward pass is oneDNN's softmax in scores' dtype (the mask's add is
  exact there for kept positions, and a masked one's exp is 0 either way),
  then the dropout kernel; the backward pass (dropout's mask, the softmax's
  gradient, float32 inside) is one XLA kernel.
  """

  @tf.custom_gradient
  def softmax(scores):
    probs = tf.nn.softmax(scores + tf.cast(mask_adder, scores.dtype))
    if seed is None:
      return probs, lambda d_out: _softmax_backward(d_out, *_captured(probs))

    def grad(d_out):
      mask_seed, mask_first_of = _mask_inputs(seed, first_of)
      return _softmax_backward(d_out, *_captured(probs), mask_seed, rate,
                               mask_first_of)
    return _dropout_apply(probs, seed, rate, first_of), grad

  return softmax(scores)


@tf.function(jit_compile=True)
def _residual_norm_forward(y, residual, seed, gamma, beta, epsilon, rate,
                           first_of=None, bias=None):
  summed = tf.cast(residual, tf.float32) + masks.drop(
      _plus_bias(y, bias), seed, rate, first_of)
  normed, inv_std = _normalize(summed, epsilon)
  return tf.cast(normed * gamma + beta, residual.dtype), normed, inv_std


@tf.function(jit_compile=True)
def _residual_norm_backward(dy, normed, inv_std, gamma, seed, rate, first_of,
                            with_bias: bool):
  d_sum, d_gamma, d_beta = _normalize_backward(dy, normed, inv_std, gamma)
  d_y = masks.drop(d_sum, seed, rate, first_of)
  grads = [tf.cast(d_y, dy.dtype), tf.cast(d_sum, dy.dtype), d_gamma, d_beta]
  return grads + [_leading_sum(d_y)] if with_bias else grads


def dropout_add_layer_norm(y: tf.Tensor, residual: tf.Tensor,
                           gamma: tf.Tensor, beta: tf.Tensor, epsilon: float,
                           rate: float, seed: tf.Tensor,
                           bias: tf.Tensor | None = None,
                           first_of: tf.Tensor | None = None) -> tf.Tensor:
  """LayerNorm(residual + dropout(y (+ bias))), a transformer layer's
  residual connection after its dense layer, as one kernel each way:
  y, residual [..., H] in one float dtype, float32 gamma/beta/bias [H] ->
  [..., H] in residual's dtype, with the mask of `masks.drop(y, seed,
  rate, first_of)`.  `bias`: see `matmul_and_bias`."""
  inputs = [y, residual, gamma, beta] + ([] if bias is None else [bias])

  @tf.custom_gradient
  def norm(*inputs):
    out, normed, inv_std = _residual_norm_forward(
        *inputs[:2], seed, *inputs[2:4], epsilon, rate, first_of,
        *inputs[4:])

    def grad(d_out):
      mask_seed, mask_first_of = _mask_inputs(seed, first_of)
      return _residual_norm_backward(
          d_out, *_captured(normed, inv_std, inputs[2]), mask_seed, rate,
          mask_first_of, bias is not None)
    return out, grad

  return norm(*inputs)
