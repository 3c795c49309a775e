import numpy as np
import pytest
import tensorflow as tf

from bert import fused, modeling
from tests import helpers


def value_and_grads(fn, *inputs, dy=None):
  """fn(*inputs), d sum(fn * dy) / d inputs, in float64 numpy."""
  inputs = [tf.constant(x) for x in inputs]
  with tf.GradientTape() as tape:
    tape.watch(inputs)
    y = fn(*inputs)
    weighted = y * (tf.cast(dy, y.dtype) if dy is not None else 1)
  grads = tape.gradient(weighted, inputs)
  return (np.asarray(tf.cast(y, tf.float64)),
          [np.asarray(tf.cast(g, tf.float64)) for g in grads])


def test_gelu_matches_numpy_and_autodiff():
  x = np.linspace(-6, 6, 1200).astype(np.float32).reshape(3, 400)
  dy = np.random.default_rng(0).normal(size=x.shape).astype(np.float32)
  y, (dx,) = value_and_grads(fused.gelu, x, dy=dy)
  np.testing.assert_allclose(y, helpers._gelu_tanh(x.astype(np.float64)),
                             atol=1e-6)
  # The hand-written backward against TF's autodiff of the formula.
  _, (reference_dx,) = value_and_grads(modeling.gelu, x, dy=dy)
  np.testing.assert_allclose(dx, reference_dx, atol=1e-5)
  # bfloat16 in, bfloat16 out, float32 inside.
  y16 = fused.gelu(tf.constant(x, tf.bfloat16))
  assert y16.dtype == tf.bfloat16
  np.testing.assert_allclose(tf.cast(y16, tf.float32), y, atol=0.05)


def test_narrow_rounds_to_bfloat16_as_cast_does():
  """Bit for bit tf.cast's round-to-nearest-even, ties, carries into the
  exponent, subnormals and infinities included; a NaN stays a NaN."""
  rng = np.random.default_rng(3)
  special = [0, 0x80000000, 0x7F800000, 0xFF800000, 0x7F7FFFFF, 0xFF7FFFFF,
             0x00000001, 0x00008000, 0x00018000, 0x3F808000, 0x3F818000,
             0x3F807FFF, 0x3F7FFFFF]
  nans = [0x7FC00000, 0xFFC00000, 0x7FFFFFFF, 0xFFFFFFFF, 0x7F800001,
          0x7FFF8000]
  bits = np.concatenate([rng.integers(0, 2**32, 200_000, dtype=np.uint64),
                         special, nans]).astype(np.uint32)
  x = tf.constant(bits.view(np.float32))
  narrowed = tf.function(lambda x: fused._narrow(x, tf.bfloat16),
                         jit_compile=True)(x)
  got = tf.bitcast(narrowed, tf.uint16).numpy()
  want = tf.bitcast(tf.cast(x, tf.bfloat16), tf.uint16).numpy()
  is_nan = np.isnan(bits.view(np.float32))
  np.testing.assert_array_equal(got[~is_nan], want[~is_nan])
  assert np.isnan(tf.cast(narrowed, tf.float32).numpy()[is_nan]).all()
  assert fused._narrow(tf.constant([1.5]), tf.float16).dtype == tf.float16


def test_gelu_with_bias_is_gelu_of_the_sum():
  rng = np.random.default_rng(5)
  x = rng.normal(size=(2, 3, 8)).astype(np.float32) * 3
  bias = rng.normal(size=8).astype(np.float32)
  dy = rng.normal(size=x.shape).astype(np.float32)
  y, (dx, d_bias) = value_and_grads(fused.gelu, x, bias, dy=dy)
  reference, (reference_dx, reference_d_bias) = value_and_grads(
      lambda x, b: modeling.gelu(x + b), x, bias, dy=dy)
  np.testing.assert_allclose(y, reference, atol=1e-6)
  np.testing.assert_allclose(dx, reference_dx, atol=1e-5)
  np.testing.assert_allclose(d_bias, reference_d_bias, atol=1e-4)
  assert d_bias.shape == (8,)


def test_split_heads_matches_the_plain_projection():
  rng = np.random.default_rng(6)
  batch, seq, heads, size = 2, 5, 2, 4
  width = heads * size
  qkv = rng.normal(size=(batch, seq, 3 * width)).astype(np.float32)
  bias = rng.normal(size=3 * width).astype(np.float32)
  dys = [rng.normal(size=(batch, heads, seq, size)).astype(np.float32)
         for _ in range(3)]

  def weighted(split):
    def fn(qkv, bias):
      return sum(tf.reduce_sum(t * d) for t, d in zip(split(qkv, bias), dys))
    return fn

  def plain(qkv, bias):
    q, k, v = tf.split(qkv + bias, 3, axis=-1)
    return [tf.transpose(tf.reshape(t, [batch, seq, heads, size]),
                         [0, 2, 1, 3]) for t in (q * 0.5, k, v)]

  def ours(qkv, bias):
    return fused.split_heads(qkv, bias, heads, 0.5)

  for a, b in zip(ours(qkv, bias), plain(qkv, bias)):
    assert a.shape == (batch, heads, seq, size)
    np.testing.assert_allclose(a, b, atol=1e-6)
  _, grads = value_and_grads(weighted(ours), qkv, bias)
  _, reference = value_and_grads(weighted(plain), qkv, bias)
  for g, r in zip(grads, reference):
    np.testing.assert_allclose(g, r, atol=1e-5)


@pytest.mark.parametrize("shape", [(5, 8), (2, 3, 8)])
def test_layer_norm_matches_numpy_and_autodiff(shape):
  rng = np.random.default_rng(1)
  x = (rng.normal(size=shape) * 3 + 1).astype(np.float32)
  gamma = rng.normal(size=shape[-1:]).astype(np.float32)
  beta = rng.normal(size=shape[-1:]).astype(np.float32)
  dy = rng.normal(size=shape).astype(np.float32)
  y, grads = value_and_grads(
      lambda x, g, b: fused.layer_norm(x, g, b, 1e-12), x, gamma, beta, dy=dy)
  np.testing.assert_allclose(y, helpers._layer_norm(x, gamma, beta),
                             atol=1e-5)

  def plain(x, g, b):  # modeling.LayerNorm's inference maths.
    mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
    return (x - mean) * tf.math.rsqrt(variance + 1e-12) * g + b

  _, reference = value_and_grads(plain, x, gamma, beta, dy=dy)
  for ours, ref in zip(grads, reference):
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_dropout_is_a_seeded_scaled_mask_with_the_same_gradient():
  x = tf.ones([20000])
  seed = tf.constant([3, 4], tf.int64)
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = fused.dropout(x, 0.1, seed)
  dx = tape.gradient(y, x).numpy()
  y = y.numpy()
  assert set(np.unique(y)) == {0.0, np.float32(1 / 0.9)}
  assert 0.08 < (y == 0).mean() < 0.12
  np.testing.assert_array_equal(dx, y)  # d(x * mask / 0.9) / dx.
  np.testing.assert_array_equal(fused.dropout(x, 0.1, seed), y)
  other = fused.dropout(x, 0.1, tf.constant([3, 5], tf.int64)).numpy()
  assert (other != y).any()
  # An odd size, several axes, bfloat16: the mask covers every element.
  z = fused.dropout(tf.ones([3, 5, 7], tf.bfloat16), 0.5, seed)
  assert z.shape == (3, 5, 7) and z.dtype == tf.bfloat16
  assert 0 < int(tf.reduce_sum(tf.cast(z == 0, tf.int32))) < 105


def _dropped(shape, rate, seed, first_of=None) -> np.ndarray:
  x = tf.ones(shape)
  return fused.dropout(x, rate, tf.constant(seed, tf.int64),
                       first_of).numpy() == 0


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_dropout_masks_are_uniform_and_independent(rate):
  # The hashed masks against what independent Bernoulli(rate) draws give:
  # the rate, pairs of neighbours along every axis, and the masks of
  # neighbouring seeds (fold_in of consecutive calls, as training draws
  # them).  Bounds are 6 standard deviations of the binomial counts.
  n = 64 * 128 * 128
  base = tf.constant([11, 12], tf.int64)
  seeds = [tf.random.experimental.stateless_fold_in(base, i).numpy()
           for i in range(2)]
  mask = _dropped([64, 128, 128], rate, seeds[0])

  def close(observed, p, count):
    assert abs(observed - p) < 6 * np.sqrt(p * (1 - p) / count), (observed,
                                                                  p)

  close(mask.mean(), rate, n)
  for axis in range(3):
    first = np.take(mask, np.arange(mask.shape[axis] - 1), axis=axis)
    second = np.take(mask, np.arange(1, mask.shape[axis]), axis=axis)
    close((first & second).mean(), rate * rate, first.size)
  other = _dropped([64, 128, 128], rate, seeds[1])
  close((mask & other).mean(), rate * rate, n)
  # Each 32-element row's count of drops is binomial, so rows are not
  # balanced or striped: its variance across rows is 32 rate (1 - rate).
  counts = mask.reshape(-1, 32).sum(-1)
  assert abs(counts.var() / (32 * rate * (1 - rate)) - 1) < 0.05


def test_dropout_first_of_is_the_full_masks_first_rows():
  # [B, W] rows with first_of S get the full [B, S, W] mask's row 0 (the
  # last layer run for [CLS] only), and nothing like another row's.
  seed = [5, 9]
  full = _dropped([6, 10, 40], 0.5, seed)
  first = _dropped([6, 40], 0.5, seed, first_of=tf.constant(10))
  np.testing.assert_array_equal(first, full[:, 0])
  assert (first != full[:, 1]).any()
  # The attention's [B, N, 1, S] against [B, N, S, S].
  full = _dropped([2, 3, 12, 12], 0.5, seed)
  np.testing.assert_array_equal(
      _dropped([2, 3, 1, 12], 0.5, seed, first_of=tf.constant(12)),
      full[:, :, :1])


@pytest.mark.parametrize("rate", [0.0, 0.3])
def test_attention_softmax_is_softmax_then_dropout(rate):
  rng = np.random.default_rng(7)
  scores = rng.normal(size=(2, 3, 5, 5)).astype(np.float32) * 4
  mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.float32)
  mask_adder = modeling.attention_mask_adder(tf.constant(mask))
  dy = rng.normal(size=scores.shape).astype(np.float32)
  seed = tf.constant([7, 8], tf.int64) if rate else None

  def plain(s):
    probs = tf.nn.softmax(s + mask_adder)
    return fused.dropout(probs, rate, seed) if rate else probs

  out, (grad,) = value_and_grads(
      lambda s: fused.attention_softmax(s, mask_adder, rate, seed), scores,
      dy=dy)
  reference, (reference_grad,) = value_and_grads(plain, scores, dy=dy)
  np.testing.assert_allclose(out, reference, atol=1e-6)
  np.testing.assert_allclose(grad, reference_grad, atol=1e-5)
  assert (out[0, :, :, 3:] == 0).all()  # Masked keys get nothing.
  if rate:
    assert 0.1 < (out[1] == 0).mean() < 0.5
  # bfloat16 in, bfloat16 out; rows still sum to ~1 without dropout.
  probs16 = fused.attention_softmax(tf.constant(scores, tf.bfloat16),
                                    mask_adder)
  assert probs16.dtype == tf.bfloat16
  np.testing.assert_allclose(tf.reduce_sum(tf.cast(probs16, tf.float32), -1),
                             1.0, atol=0.02)


@pytest.mark.parametrize("with_bias", [False, True])
def test_dropout_add_layer_norm_is_the_composition(with_bias):
  rng = np.random.default_rng(3)
  y, residual, dy = (rng.normal(size=(2, 5, 8)).astype(np.float32)
                     for _ in range(3))
  gamma, beta, bias = (rng.normal(size=8).astype(np.float32)
                       for _ in range(3))
  seed = tf.constant([5, 6], tf.int64)

  def composed(y, residual, g, b, *bias):
    y = y + bias[0] if bias else y
    return fused.layer_norm(residual + fused.dropout(y, 0.3, seed), g, b,
                            1e-12)

  def ours(y, residual, g, b, *bias):
    return fused.dropout_add_layer_norm(y, residual, g, b, 1e-12, 0.3, seed,
                                        *bias)

  inputs = [y, residual, gamma, beta] + ([bias] if with_bias else [])
  out, grads = value_and_grads(ours, *inputs, dy=dy)
  reference, reference_grads = value_and_grads(composed, *inputs, dy=dy)
  np.testing.assert_allclose(out, reference, atol=1e-5)
  assert len(grads) == len(inputs)
  for g, r in zip(grads, reference_grads):
    np.testing.assert_allclose(g, r, atol=1e-4)
  assert (grads[0] == 0).mean() > 0.1  # The mask reached y's gradient.


@pytest.fixture(params=[False, True], ids=["float32_bias", "bias_in_kernels"])
def bias_in_kernels(request, monkeypatch):
  """Both ways of adding the dense layers' biases in training (the second is
  what 16-bit steps do), compared in float32 where they must agree."""
  monkeypatch.setattr(fused, "bias_in_kernels", lambda dtype: request.param)
  return request.param


def test_bias_in_kernels_only_for_16_bits():
  assert not fused.bias_in_kernels(tf.float32)
  assert fused.bias_in_kernels(tf.bfloat16)
  assert fused.bias_in_kernels(tf.float16)


def test_training_model_matches_inference_model_without_dropout(
    bias_in_kernels):
  """The fused kernels (training) against the plain ops (inference): same
  outputs and the same gradients for every variable."""
  config = modeling.BertConfig.from_dict({
      **helpers.TINY_CONFIG, "hidden_dropout_prob": 0.0,
      "attention_probs_dropout_prob": 0.0})
  model = modeling.BertModel(config)
  ids = tf.constant([[2, 5, 6, 7, 3, 0], [2, 10, 3, 14, 15, 3]])
  mask = tf.cast(ids > 0, tf.int32)

  def run(training):
    with tf.GradientTape() as tape:
      out = model(ids, mask, training=training)
      loss = tf.reduce_sum(out.sequence_output * tf.range(
          config.hidden_size, dtype=tf.float32)) + tf.reduce_sum(
              out.pooled_output) + tf.reduce_sum(
                  out.attention_scores[0] * out.attention_probs[1])
    grads = tape.gradient(loss, model.trainable_variables)
    return out.sequence_output, [tf.convert_to_tensor(g) for g in grads]

  fused_output, fused_grads = run(True)
  plain_output, plain_grads = run(False)
  np.testing.assert_allclose(fused_output, plain_output, atol=1e-5)
  for v, f, p in zip(model.trainable_variables, fused_grads, plain_grads):
    np.testing.assert_allclose(f, p, rtol=1e-5, atol=1e-4, err_msg=v.name)


def test_gradients_inside_tf_cond(bias_in_kernels):
  """TinyBERT switches stages with tf.cond: the backward kernels must find
  their forward tensors inside a branch."""
  model = modeling.BertModel(modeling.BertConfig.from_dict(helpers.TINY_CONFIG))
  ids = tf.constant([[2, 5, 6, 7, 3, 0], [2, 10, 3, 14, 15, 3]])

  def loss():
    with modeling.dropout_seed(tf.constant([1, 2], tf.int64)):
      out = model(ids, tf.cast(ids > 0, tf.int32), training=True)
    return (tf.reduce_sum(out.sequence_output ** 2) +
            tf.reduce_sum(out.pooled_output) +
            tf.reduce_sum(out.attention_scores[0] * out.attention_probs[1]))

  @tf.function
  def grads(use_cond):
    with tf.GradientTape() as tape:
      value = (tf.cond(tf.constant(True), loss, lambda: 0.0) if use_cond
               else loss())
    return [tf.convert_to_tensor(g)
            for g in tape.gradient(value, model.trainable_variables)]

  for in_cond, plain in zip(grads(True), grads(False)):
    np.testing.assert_allclose(in_cond, plain, rtol=1e-5, atol=1e-5)


def test_bias_in_kernels_changes_nothing_with_dropout(monkeypatch):
  """With dropout, the biases added in the kernels or by the matmuls give
  the same training outputs and gradients (same seeds, same masks)."""
  model = modeling.BertModel(modeling.BertConfig.from_dict(helpers.TINY_CONFIG))
  ids = tf.constant([[2, 5, 6, 7, 3, 0], [2, 10, 3, 14, 15, 3]])
  assert model.config.hidden_dropout_prob > 0

  def run(in_kernels):
    monkeypatch.setattr(fused, "bias_in_kernels", lambda dtype: in_kernels)
    with tf.GradientTape() as tape:
      with modeling.dropout_seed(tf.constant([1, 2], tf.int64)):
        out = model(ids, tf.cast(ids > 0, tf.int32), training=True)
      loss = tf.reduce_sum(out.sequence_output ** 2)
    return out.sequence_output, tape.gradient(loss, model.trainable_variables)

  output, grads = run(True)
  reference, reference_grads = run(False)
  np.testing.assert_allclose(output, reference, atol=1e-5)
  for v, g, r in zip(model.trainable_variables, grads, reference_grads):
    assert (g is None) == (r is None), v.name  # The unused pooler: None.
    if g is not None:
      np.testing.assert_allclose(tf.convert_to_tensor(g),
                                 tf.convert_to_tensor(r), rtol=1e-5,
                                 atol=1e-5, err_msg=v.name)


def test_whole_step_xla_is_detected():
  """`--jit_compile` steps keep the einsum attention: the check must see
  XLA in a jit-compiled function and in functions it calls, not elsewhere."""
  seen = []

  def probe(x):
    seen.append(bool(fused.compiled_whole_by_xla()))
    return x + 1

  tf.function(probe, jit_compile=True)(tf.constant(1.0))
  tf.function(lambda x: tf.function(probe)(x), jit_compile=True)(
      tf.constant(2.0))
  tf.function(probe)(tf.constant(3.0))
  assert seen == [True, True, False]


@pytest.mark.parametrize("dtype", [tf.float32, tf.bfloat16])
def test_sums_as_matmuls_equal_reduces(dtype):
  """Each kernel's sums as matmuls (kernels of their own) and as reduces
  (inlined into a step compiled whole by XLA) give the same results."""
  rng = np.random.default_rng(0)

  def tensor(*shape, dt=dtype):
    return tf.cast(rng.normal(size=shape), dt)

  seed = tf.constant([3, 4], tf.int64)
  x, bias, gamma = tensor(6, 5, 16), tensor(16, dt=tf.float32), tensor(
      16, dt=tf.float32)
  normed, inv_std = fused._layer_norm_forward(x, gamma, gamma, 1e-12)[1:]
  q = tensor(2, 3, 5, 4)
  probs = tf.nn.softmax(tensor(2, 3, 5, 5))
  kernels = {
      "gelu": lambda dot: fused._gelu_backward(x, x, bias, dot_sums=dot),
      "split_heads": lambda dot: fused._split_heads_backward(
          q, 2 * q, 3 * q, 0.5, dot),
      "layer_norm": lambda dot: (
          fused._layer_norm_forward(x, gamma, bias, 1e-12, dot),
          fused._layer_norm_backward(x, normed, inv_std, gamma, dot)),
      "softmax": lambda dot: fused._softmax_backward(
          probs, probs, seed, 0.2, None, dot),
      "residual": lambda dot: (
          fused._residual_norm_forward(x, 2 * x, seed, gamma, bias, 1e-12,
                                       0.1, None, bias, dot_sums=dot),
          fused._residual_norm_backward(x, normed, inv_std, gamma, seed, 0.1,
                                        None, True, dot))}
  for name, kernel in kernels.items():
    by_dot, by_reduce = (tf.nest.flatten(kernel(dot)) for dot in (True, False))
    assert len(by_dot) == len(by_reduce), name
    for a, b in zip(by_dot, by_reduce):
      assert a.dtype == b.dtype, name
      # A 16-bit result may round either way of its float32 sum.
      tol = 1e-5 if a.dtype == tf.float32 else 1e-2
      np.testing.assert_allclose(tf.cast(a, tf.float32),
                                 tf.cast(b, tf.float32),
                                 rtol=tol, atol=tol, err_msg=name)
