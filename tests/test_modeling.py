import json

import numpy as np
import pytest
import tensorflow as tf

from bert import checkpoints, modeling
from bert.errors import UserError
from tests import helpers


def tiny_config(**overrides):
  return modeling.BertConfig.from_dict({**helpers.TINY_CONFIG, **overrides})


def batch():
  ids = np.array([[2, 5, 6, 7, 3, 0, 0], [2, 10, 3, 14, 15, 16, 3]], np.int32)
  mask = (ids > 0).astype(np.int32)
  segments = np.array([[0] * 7, [0, 0, 0, 1, 1, 1, 1]], np.int32)
  return ids, mask, segments


def test_config_ignores_unknown_keys_and_reads_json(tmp_path):
  path = helpers.write_config(str(tmp_path))
  config = modeling.BertConfig.from_json_file(path)
  assert config.hidden_size == 32 and config.num_hidden_layers == 2
  assert "directionality" not in config.to_dict()
  assert json.loads(config.to_json_string())["vocab_size"] == 64


def test_config_errors_name_file_and_problem(tmp_path):
  values = dict(helpers.TINY_CONFIG)
  del values["num_attention_heads"]
  path = tmp_path / "bert_config.json"
  path.write_text(json.dumps(values))
  with pytest.raises(UserError, match=r"bert_config.json: missing key\(s\) "
                     "num_attention_heads"):
    modeling.BertConfig.from_json_file(str(path))
  with pytest.raises(UserError, match="not found"):
    modeling.BertConfig.from_json_file(str(tmp_path / "nope.json"))
  path.write_text("{not json")
  with pytest.raises(UserError, match="not a JSON"):
    modeling.BertConfig.from_json_file(str(path))
  with pytest.raises(UserError, match="multiple of num_attention_heads"):
    tiny_config(num_attention_heads=5)
  with pytest.raises(UserError, match="hidden_act 'swish'"):
    tiny_config(hidden_act="swish")


def test_output_shapes():
  config = tiny_config()
  model = modeling.BertModel(config)
  ids, mask, segments = batch()
  out = model(ids, mask, segments)
  assert out.embedding_output.shape == (2, 7, 32)
  assert len(out.encoder_outputs) == 2 and len(out.attention_probs) == 2
  assert out.encoder_outputs[1].shape == (2, 7, 32)
  assert out.attention_probs[0].shape == (2, 4, 7, 7)
  assert out.attention_scores[0].shape == (2, 4, 7, 7)
  assert out.pooled_output.shape == (2, 32)
  np.testing.assert_array_equal(out.sequence_output, out.encoder_outputs[-1])


def test_attention_probs_sum_to_one_over_unmasked_keys():
  model = modeling.BertModel(tiny_config())
  ids, mask, segments = batch()
  for probs in model(ids, mask, segments).attention_probs:
    probs = probs.numpy()
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    # The first example's last two positions are padding: no query attends.
    assert probs[0, :, :, 5:].max() < 1e-6
    assert probs[1].min() > 0.0


def test_padding_does_not_change_real_positions():
  model = modeling.BertModel(tiny_config())
  ids, mask, segments = batch()
  full = model(ids, mask, segments).sequence_output.numpy()
  short = model(ids[:1, :5], mask[:1, :5], segments[:1, :5]).sequence_output
  np.testing.assert_allclose(full[0, :5], short.numpy()[0], atol=1e-5)


def test_variables_have_google_names():
  model = modeling.BertClassifier(tiny_config(), num_labels=3)
  names = modeling.variables_by_name(model)
  expected = set(helpers.google_weights(helpers.TINY_CONFIG, num_labels=3,
                                        with_heads=False))
  assert set(names) == expected
  assert names["output_weights"].shape == (3, 32)


def test_matches_numpy_reference_on_google_checkpoint(tmp_path):
  weights = helpers.google_weights(helpers.TINY_CONFIG, num_labels=2)
  prefix = helpers.write_google_checkpoint(str(tmp_path / "bert_model.ckpt"),
                                           weights)
  model = modeling.BertClassifier(tiny_config(), num_labels=2)
  checkpoints.load_by_name(modeling.variables_by_name(model), prefix,
                           strict=True)
  ids, mask, segments = batch()
  logits, out = model.forward(ids, mask, segments)
  emb, layers, probs, pooled = helpers.numpy_bert(
      weights, helpers.TINY_CONFIG, ids, mask, segments)
  np.testing.assert_allclose(out.embedding_output, emb, atol=1e-5)
  for ours, ref in zip(out.encoder_outputs, layers):
    np.testing.assert_allclose(ours, ref, atol=1e-4)
  for ours, ref in zip(out.attention_probs, probs):
    np.testing.assert_allclose(ours, ref, atol=1e-5)
  np.testing.assert_allclose(out.pooled_output, pooled, atol=1e-5)
  np.testing.assert_allclose(
      logits, pooled @ weights["output_weights"].T + weights["output_bias"],
      atol=1e-5)


def test_dropout_only_in_training():
  model = modeling.BertClassifier(tiny_config(), num_labels=2)
  ids, mask, segments = batch()
  a, b = model(ids, mask, segments), model(ids, mask, segments)
  np.testing.assert_array_equal(a, b)
  c = model(ids, mask, segments, training=True)
  assert np.abs(c.numpy() - a.numpy()).max() > 1e-6


def test_seeded_dropout_is_a_function_of_the_seed():
  model = modeling.BertClassifier(tiny_config(), num_labels=2)
  ids, mask, segments = batch()

  def forward(seed):
    with modeling.dropout_seed(tf.constant(seed, tf.int64)):
      return model(ids, mask, segments, training=True).numpy()

  np.testing.assert_array_equal(forward([1, 7]), forward([1, 7]))
  assert np.abs(forward([1, 7]) - forward([1, 8])).max() > 1e-6
  assert np.abs(forward([1, 7]) - forward([2, 7])).max() > 1e-6
  # Each call inside one step draws its own mask, at the inverted scale.
  x = tf.ones([1000])
  with modeling.dropout_seed(tf.constant([3, 4], tf.int64)):
    first = modeling.dropout(x, 0.5, True).numpy()
    second = modeling.dropout(x, 0.5, True).numpy()
  assert set(np.unique(first)) <= {0.0, 2.0}
  assert 400 < (first == 0).sum() < 600
  assert (first != second).any()


@pytest.mark.parametrize("name,reference", [
    ("gelu", lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) *
                                              (x + 0.044715 * x**3)))),
    ("gelu_exact", lambda x: x * 0.5 * (1 + np.vectorize(__import__(
        "math").erf)(x / np.sqrt(2)))),
    ("relu", lambda x: np.maximum(x, 0)),
])
def test_activations(name, reference):
  x = np.linspace(-4, 4, 41).astype(np.float32)
  np.testing.assert_allclose(modeling.get_activation(name)(x), reference(x),
                             atol=1e-6)


@pytest.mark.parametrize("dtype,tolerance", [(tf.bfloat16, 0.05),
                                             (tf.float16, 0.01)])
def test_compute_dtype_stays_close_to_float32(dtype, tolerance):
  model = modeling.BertClassifier(tiny_config(), num_labels=2)
  ids, mask, segments = batch()
  reference, ref_outputs = model.forward(ids, mask, segments)
  with modeling.compute_dtype(dtype):
    logits, outputs = model.forward(ids, mask, segments)
  assert logits.dtype == tf.float32
  assert outputs.sequence_output.dtype == dtype
  assert all(v.dtype == tf.float32 for v in model.variables)
  np.testing.assert_allclose(logits, reference, atol=tolerance)
  np.testing.assert_allclose(
      outputs.to_float32().sequence_output, ref_outputs.sequence_output,
      atol=10 * tolerance)
  # And back to float32 outside the context.
  np.testing.assert_array_equal(model.forward(ids, mask, segments)[0],
                                reference)


def _op_types(function) -> set:
  return {op.type for op in function.graph.get_operations()}


@pytest.mark.parametrize("shape", [(2, 7), (3, 5), (1, 1), (0, 4)])
def test_position_blocks_change_nothing_but_the_graph(shape):
  # Blocks of positions: queries split, keys whole; masked keys (random
  # mask) and empty blocks ([1, 1], [0, 4]) included.
  model = modeling.BertClassifier(tiny_config(), num_labels=2)
  rng = np.random.default_rng(0)
  ids = tf.constant(rng.integers(1, tiny_config().vocab_size, shape), tf.int32)
  mask = tf.constant((rng.random(shape) > 0.3).astype(np.int32))
  outputs = {}
  for blocks in (1, 2, 3):
    with modeling.position_blocks(blocks):
      function = tf.function(lambda i, m: model.forward(
          i, m, tf.zeros_like(i))).get_concrete_function(ids, mask)
    logits, out = function(ids, mask)
    outputs[blocks] = ([logits] + out.encoder_outputs + out.attention_scores
                       + out.attention_probs)
    # Rows are split (SplitV) only when asked: the test fails without blocks.
    assert ("SplitV" in _op_types(function)) == (blocks > 1)
  for blocks in (2, 3):
    for got, expected in zip(outputs[blocks], outputs[1]):
      assert got.shape == expected.shape
      np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-6)


@pytest.mark.parametrize("blocks", [1, 2, 3])
@pytest.mark.parametrize("shape", [(2, 7), (3, 5), (1, 1), (0, 4)])
def test_first_position_only_gives_the_same_logits(shape, blocks):
  # A classifier's inference runs the last layer for [CLS] only; the
  # logits and that position's outputs must be the full model's.
  model = modeling.BertClassifier(tiny_config(), num_labels=2)
  for v in model.variables:  # Non-zero biases, LayerNorm not the identity.
    v.assign(tf.random.stateless_normal(v.shape, [1, len(v.name)], 0.02) +
             (1.0 if "gamma" in v.name else 0.0))
  rng = np.random.default_rng(1)
  ids = tf.constant(rng.integers(1, tiny_config().vocab_size, shape), tf.int32)
  mask = tf.constant((rng.random(shape) > 0.3).astype(np.int32))
  segments = tf.constant(rng.integers(0, 2, shape), tf.int32)
  with modeling.position_blocks(blocks):
    logits = tf.function(model).get_concrete_function(ids, mask, segments)
    full = model.bert(ids, mask, segments)
    first = model.bert(ids, mask, segments, first_position_only=True)
  # The last layer's attention scores are one query long in the graph that
  # serves logits (the test fails if the classifier computes every row).
  score_shapes = [op.outputs[0].shape for op in logits.graph.get_operations()
                  if op.type in ("Einsum", "BatchMatMulV2")]
  assert [1, shape[1]] in [s.as_list()[-2:] for s in score_shapes]
  np.testing.assert_allclose(logits(ids, mask, segments).numpy(),
                             model.forward(ids, mask, segments)[0].numpy(),
                             rtol=1e-5, atol=1e-6)
  assert first.sequence_output.shape == [shape[0], 1, 32]
  np.testing.assert_allclose(first.sequence_output.numpy(),
                             full.sequence_output[:, :1].numpy(),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(first.attention_probs[-1].numpy(),
                             full.attention_probs[-1][:, :, :1].numpy(),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(first.pooled_output.numpy(),
                             full.pooled_output.numpy(), rtol=1e-5, atol=1e-6)
  for got, expected in zip(first.encoder_outputs[:-1],
                           full.encoder_outputs[:-1]):
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("kernels", modeling.KERNELS)
@pytest.mark.parametrize("dtype,jit_compile,tolerance", [
    (tf.float32, False, 1e-5), (tf.float32, True, 1e-4),
    (tf.bfloat16, False, 0.02)])
def test_first_position_only_trains_as_the_full_layer(dtype, jit_compile,
                                                      tolerance, kernels):
  # The classifier's training step runs the last layer for [CLS] only too:
  # with the same dropout masks, its loss and every gradient must be those
  # of the full layer (`forward`).
  model = modeling.BertClassifier(
      tiny_config(hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3),
      num_labels=2)
  for v in model.variables:
    v.assign(tf.random.stateless_normal(v.shape, [2, len(v.name)], 0.05) +
             (1.0 if "gamma" in v.name else 0.0))
  rng = np.random.default_rng(2)
  ids = tf.constant(rng.integers(1, 64, (3, 9)), tf.int32)
  mask = tf.constant((rng.random((3, 9)) > 0.2).astype(np.int32))
  segments = tf.constant(rng.integers(0, 2, (3, 9)), tf.int32)
  labels = tf.constant([0, 1, 1])

  def loss_and_grads(first_only: bool, seed):
    with modeling.compute_dtype(dtype), modeling.dropout_seed(seed), \
        modeling.training_kernels(kernels):
      with tf.GradientTape() as tape:
        logits = (model(ids, mask, segments, training=True) if first_only
                  else model.forward(ids, mask, segments, training=True)[0])
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels, logits))
    grads = tape.gradient(loss, model.trainable_variables)
    return [loss] + [tf.convert_to_tensor(g) for g in grads]

  step = tf.function(loss_and_grads, jit_compile=jit_compile)
  seed = tf.constant([7, 3], tf.int64)
  full, first = step(False, seed), step(True, seed)
  for got, expected in zip(first, full):
    np.testing.assert_allclose(got.numpy(), expected.numpy(),
                               rtol=tolerance, atol=tolerance)
  # The masks matter (another seed, another loss), and the step graph's
  # last attention is one query long.
  assert abs(float(step(True, tf.constant([8, 3], tf.int64))[0]) -
             float(first[0])) > 1e-3
  graph = step.get_concrete_function(True, seed).graph
  score_shapes = [op.outputs[0].shape.as_list()[-2:]
                  for op in graph.get_operations()
                  if op.type in ("Einsum", "BatchMatMulV2")]
  assert [1, 9] in score_shapes


def test_training_steps_have_no_position_blocks():
  model = modeling.BertClassifier(tiny_config(), num_labels=2)
  ids, mask, segments = batch()
  with modeling.position_blocks(2):
    function = tf.function(lambda: model(ids, mask, segments, training=True))
    assert "SplitV" not in _op_types(function.get_concrete_function())
    assert "SplitV" in _op_types(tf.function(
        lambda: model(ids, mask, segments)).get_concrete_function())
  # One block unless asked.
  assert "SplitV" not in _op_types(tf.function(
      lambda: model(ids, mask, segments)).get_concrete_function())
