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


def test_gradients_inside_tf_cond(bias_in_kernels):
  """TinyBERT switches stages with tf.cond: the backward kernels must find
  their forward tensors inside a branch."""
  model = modeling.BertModel(modeling.BertConfig.from_dict(helpers.TINY_CONFIG))
  ids = tf.constant([[2, 5, 6, 7, 3, 0], [2, 10, 3, 14, 15, 3]])

  def loss():
    with modeling.dropout_seed(tf.constant([1, 2], tf.int64)), \
        modeling.training_kernels("fused"):
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
      with modeling.dropout_seed(tf.constant([1, 2], tf.int64)), \
          modeling.training_kernels("fused"):
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


@pytest.mark.parametrize("dropout", [0.0, 0.2], ids=["no_dropout", "dropout"])
@pytest.mark.parametrize("dtype", [tf.float32, tf.bfloat16])
def test_fused_kernels_train_as_the_reference(dtype, dropout):
  """The two backends of the training step: the same outputs and the same
  gradient for every variable, in float32 and bfloat16, with and without
  dropout (the same seed draws the same masks in both)."""
  config = modeling.BertConfig.from_dict({
      **helpers.TINY_CONFIG, "hidden_dropout_prob": dropout,
      "attention_probs_dropout_prob": dropout})
  model = modeling.BertClassifier(config, num_labels=3)
  for v in model.variables:  # Non-zero biases, LayerNorm not the identity.
    v.assign(tf.random.stateless_normal(v.shape, [4, len(v.name)], 0.05) +
             (1.0 if "gamma" in v.name else 0.0))
  ids = tf.constant([[2, 5, 6, 7, 3, 0], [2, 10, 3, 14, 15, 3]])
  mask = tf.cast(ids > 0, tf.int32)
  labels = tf.constant([0, 2])

  @tf.function
  def run(kernels, seed, dtype):
    with tf.GradientTape() as tape, modeling.dropout_seed(seed), \
        modeling.compute_dtype(dtype), modeling.training_kernels(kernels):
      logits, out = model.forward(ids, mask, tf.zeros_like(ids),
                                  training=True)
      loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
          labels, logits)) + tf.reduce_mean(tf.cast(
              out.sequence_output, tf.float32) ** 2) + tf.reduce_mean(
                  out.attention_scores[0] * tf.cast(out.attention_probs[1],
                                                    tf.float32))
    grads = tape.gradient(loss, model.trainable_variables)
    return [logits, tf.cast(out.sequence_output, tf.float32)] + [
        tf.convert_to_tensor(g) for g in grads]

  seed = tf.constant([7, 3], tf.int64)
  reference, ours = run("reference", seed, dtype), run("fused", seed, dtype)
  exact = run("reference", seed, tf.float32)
  names = ["logits", "sequence_output"] + [
      v.name for v in model.trainable_variables]
  errors = {"fused": [], "reference": []}
  for name, got, expected, truth in zip(names, ours, reference, exact):
    if dtype == tf.float32:
      scale = max(1e-2, float(np.abs(truth.numpy()).max()))
      np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=2e-4,
                                 atol=2e-4 * scale, err_msg=name)
    norm = max(1e-2, float(np.linalg.norm(truth.numpy())))
    errors["fused"].append(np.linalg.norm(got.numpy() - truth.numpy()) / norm)
    errors["reference"].append(
        np.linalg.norm(expected.numpy() - truth.numpy()) / norm)
  if dtype != tf.float32:
    # Each 16-bit backend rounds in its own places: over every output and
    # gradient, the fused one must be about as close to the float32 step as
    # the reference is (each tensor alone is too noisy to compare).
    fused_error, reference_error = (np.mean(errors[k])
                                    for k in ("fused", "reference"))
    assert 0 < fused_error <= 1.5 * reference_error, (fused_error,
                                                      reference_error)
  # The comparison can fail: another seed gives other masks, and so other
  # outputs, in either backend.
  if dropout:
    other = run("fused", tf.constant([8, 3], tf.int64), dtype)
    assert np.abs(other[0].numpy() - ours[0].numpy()).max() > 1e-3
  # Each backend's graph holds its own kernels: the fused step calls the
  # XLA functions, the reference step none.
  def functions(kernels):
    graph = run.get_concrete_function(kernels, seed,
                                      dtype).graph.as_graph_def()
    return " ".join(f.signature.name for f in graph.library.function)
  assert "_gelu_forward" in functions("fused")
  assert "_layer_norm" not in functions("reference")
  assert "_gelu_forward" not in functions("reference")
