"""Tests for bert/training.py's Trainer: what it does with bad gradients."""

import logging
import os
import socket

import numpy as np
import pytest
import tensorflow as tf

from bert import data, modeling, training
from bert.errors import UserError

from tests import helpers


def tiny_classifier(tmp_path):
  config = modeling.BertConfig.from_json_file(
      helpers.write_config(str(tmp_path)))
  return modeling.BertClassifier(config, 2)


def features(n=8, seq=6):
  rng = np.random.default_rng(0)
  return tf.data.Dataset.from_tensors({
      "input_ids": tf.constant(rng.integers(5, 20, (n, seq)), tf.int32),
      "input_mask": tf.ones((n, seq), tf.int32),
      "segment_ids": tf.zeros((n, seq), tf.int32),
      "label_ids": tf.constant(rng.integers(0, 2, n), tf.int32)}).repeat()


def make_trainer(model, loss_fn, tmp_path, steps):
  return training.Trainer(
      model, loss_fn, strategy=tf.distribute.get_strategy(),
      output_dir=str(tmp_path / "out"), num_train_steps=steps,
      learning_rate=1e-3, log_every=4,
      save_checkpoints_steps=4)


def classifier_loss(model, bad_steps=()):
  """Cross-entropy, NaN at the (1-based) steps in `bad_steps`."""
  def loss_fn(f, is_training, step):
    step = step + 1  # The Trainer passes the global step before the update.
    logits = model(f["input_ids"], f["input_mask"], f["segment_ids"],
                   training=is_training)
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        f["label_ids"], logits))
    bad = tf.reduce_any(tf.equal(step, tf.constant(list(bad_steps) or [-1],
                                                   tf.int64)))
    # A factor, not tf.where: its gradients would be NaN on every step.
    return loss * tf.where(bad, np.nan, 1.0), {}
  return loss_fn


def test_a_few_bad_steps_are_skipped_with_a_warning(tmp_path, caplog):
  caplog.set_level(logging.WARNING, logger="absl")
  model = tiny_classifier(tmp_path)
  trainer = make_trainer(model, classifier_loss(model, bad_steps=(2, 6, 7)),
                         tmp_path, steps=8)
  trainer.train(features(), 8)
  assert trainer.global_step == 8
  for v in model.trainable_variables:
    assert np.all(np.isfinite(v.numpy())), v.name
  assert "1 of the last 4 steps had Inf/NaN gradients" in caplog.text
  assert "2 of the last 4 steps had Inf/NaN gradients" in caplog.text


def test_training_stops_when_every_step_is_bad(tmp_path):
  model = tiny_classifier(tmp_path)
  trainer = make_trainer(model, classifier_loss(model, bad_steps=range(5, 20)),
                         tmp_path, steps=16)
  with pytest.raises(UserError, match=r"step 8: the gradients of all of the "
                     r"last 4 steps were Inf or NaN .*The last good checkpoint "
                     r"is .*model.ckpt-4\. Lower --learning_rate"):
    trainer.train(features(), 8)
  for v in model.trainable_variables:
    assert np.all(np.isfinite(v.numpy())), v.name


def test_loss_gets_the_global_step_and_the_schedule_sets_the_rate(tmp_path):
  model = tiny_classifier(tmp_path)
  seen = tf.Variable(tf.zeros([6], tf.int64))

  def loss_fn(f, is_training, step):
    seen.scatter_nd_update([[step]], [step + 100])
    return classifier_loss(model)(f, is_training, step)

  trainer = training.Trainer(
      model, loss_fn, strategy=tf.distribute.get_strategy(),
      output_dir=str(tmp_path / "out"), num_train_steps=6,
      learning_rate=lambda step: 1e-3 * tf.cast(step + 1, tf.float32),
      log_every=2, save_checkpoints_steps=6)
  metrics = trainer.train(features(), 8)
  np.testing.assert_array_equal(seen.numpy(), np.arange(6) + 100)
  # The last step (global step 5 before its update) ran at 6e-3.
  assert metrics["learning_rate"] == pytest.approx(6e-3)


def test_resumed_training_continues_the_input_stream(tmp_path):
  """Killed after step 4's checkpoint and resumed, training reads the
  batches that the uninterrupted run read at steps 5..8."""
  rng = np.random.default_rng(0)
  examples = tf.data.Dataset.from_tensor_slices({
      "input_ids": rng.integers(5, 20, (40, 6)).astype(np.int32),
      "input_mask": np.ones((40, 6), np.int32),
      "segment_ids": np.zeros((40, 6), np.int32),
      "label_ids": rng.integers(0, 2, 40).astype(np.int32),
      "example_index": np.arange(40, dtype=np.int32)})

  def run():
    tf.random.set_seed(1)
    model = tiny_classifier(tmp_path)
    dataset = examples.shuffle(40, seed=3).repeat().batch(4)
    seen = []

    def record(index):
      seen.append(index.numpy().tolist())
      return 0

    def loss_fn(f, is_training, step):
      with tf.control_dependencies([tf.py_function(
          record, [f["example_index"]], tf.int32)]):
        return classifier_loss(model)(f, is_training, step)

    trainer = make_trainer(model, loss_fn, tmp_path, steps=8)
    trainer.restore()
    trainer.train(dataset, 4)
    return seen

  whole = run()
  out = str(tmp_path / "out")
  ckpt4 = os.path.join(out, "model.ckpt-4")
  tf.compat.v1.train.update_checkpoint_state(out, ckpt4, [ckpt4])
  resumed = run()
  assert len(whole) == 8 and len(resumed) == 4
  assert resumed == whole[4:]


def test_cluster_task_reads_tf_config():
  import json as json_lib
  assert training.cluster_task("").workers == 0
  two = {"cluster": {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]},
         "task": {"type": "worker", "index": 1}}
  assert training.cluster_task(json_lib.dumps(two)).workers == 2
  with pytest.raises(UserError, match="TF_CONFIG is not valid JSON"):
    training.cluster_task("{cluster: ")
  outside = {**two, "task": {"type": "worker", "index": 2}}
  with pytest.raises(UserError, match=r"TF_CONFIG: task 'worker' index 2 is "
                     r"not in the cluster \({'worker': 2}\)"):
    training.cluster_task(json_lib.dumps(outside))


def test_strategy_selection_and_its_errors(monkeypatch):
  import json as json_lib
  import types
  monkeypatch.delenv("TF_CONFIG", raising=False)
  assert training.get_strategy("auto").num_replicas_in_sync == 1
  with pytest.raises(UserError, match="--use_tpu/--distribution_strategy=tpu "
                     "needs --tpu_name .* never falls back to the CPU"):
    training.get_strategy("auto", use_tpu=True)
  # An address where nothing listens: one line at once, not a gRPC wait.
  with socket.socket() as free:
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
  with pytest.raises(UserError, match=rf"^--tpu_name=grpc://127.0.0.1:{port}: "
                     rf"no TPU answers at 127.0.0.1:{port} \(Connection "
                     "refused\\)"):
    training.get_strategy("tpu", tpu_name=f"grpc://127.0.0.1:{port}")
  with pytest.raises(UserError, match="--distribution_strategy must be one of"):
    training.get_strategy("horovod")
  monkeypatch.setenv("TF_CONFIG", json_lib.dumps(
      {"cluster": {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]},
       "task": {"type": "worker", "index": 0}}))
  task = training.cluster_task()
  assert (task.workers, task.task_type, task.task_index) == (2, "worker", 0)
  assert task.is_chief
  assert not training.cluster_task(json_lib.dumps(
      {"cluster": {"worker": ["a:1", "b:2"]},
       "task": {"type": "worker", "index": 1}})).is_chief
  # With a "chief" task, worker 0 is not the chief.
  with_chief = {"cluster": {"chief": ["a:1"], "worker": ["b:2"]}}
  assert training.cluster_task(json_lib.dumps(
      {**with_chief, "task": {"type": "chief", "index": 0}})).is_chief
  assert not training.cluster_task(json_lib.dumps(
      {**with_chief, "task": {"type": "worker", "index": 0}})).is_chief
  assert training.cluster_task("").is_chief
  two = types.SimpleNamespace(num_replicas_in_sync=2)
  training.check_batch_size(8, two)
  with pytest.raises(UserError, match="--train_batch_size=7 is the global "
                     "batch; it must be a multiple of the 2 replicas"):
    training.check_batch_size(7, two)


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_trains_float32_variables(tmp_path, precision):
  # A fixed initialisation: about 1 in 12 random ones leaves this tiny model
  # unable to fit its 8 examples in 30 steps, in either precision.
  tf.random.set_seed(0)
  model = tiny_classifier(tmp_path)
  reference = tiny_classifier(tmp_path)
  for v, r in zip(model.variables, reference.variables):
    r.assign(v)
  batch = next(iter(features()))
  trainer = training.Trainer(
      model, classifier_loss(model), strategy=tf.distribute.get_strategy(),
      output_dir=str(tmp_path / "out"), num_train_steps=30,
      learning_rate=1e-3, log_every=10, save_checkpoints_steps=30,
      precision=precision)
  first = trainer.train(features(), 8)
  ref_trainer = training.Trainer(
      reference, classifier_loss(reference),
      strategy=tf.distribute.get_strategy(),
      output_dir=str(tmp_path / "ref_out"), num_train_steps=30,
      learning_rate=1e-3, log_every=10, save_checkpoints_steps=30)
  ref_metrics = ref_trainer.train(features(), 8)
  # Same data, same seeds: the losses agree to the lower precision.
  assert first["loss"] == pytest.approx(ref_metrics["loss"], abs=0.05)
  reader = tf.train.load_checkpoint(str(tmp_path / "out" / "model.ckpt-30"))
  dtypes = reader.get_variable_to_dtype_map()
  assert dtypes["bert/encoder/layer_0/attention/self/query/kernel"] == \
      tf.float32
  assert dtypes["bert/encoder/layer_0/attention/self/query/kernel/adam_m"] == \
      tf.float32
  assert ("loss_scale" in dtypes) == (precision == "mixed_float16")
  # Outside training the model computes in float32 again.
  logits = model(batch["input_ids"], batch["input_mask"],
                 batch["segment_ids"])
  assert logits.dtype == tf.float32


@pytest.mark.parametrize("jit_compile", [False, True])
def test_float16_loss_scale_halves_on_overflow_and_skips_the_step(
    tmp_path, jit_compile):
  model = tiny_classifier(tmp_path)

  def loss_fn(f, is_training, step):
    loss, _ = classifier_loss(model)(f, is_training, step)
    # Gradients of 2^15 * 1e4 * loss overflow float16 (65504) until the
    # scale has come down far enough.
    return loss * 1e4, {}

  trainer = training.Trainer(
      model, loss_fn, strategy=tf.distribute.get_strategy(),
      output_dir=str(tmp_path / "out"), num_train_steps=1,
      learning_rate=1e-3, log_every=1, save_checkpoints_steps=100,
      precision="mixed_float16", jit_compile=jit_compile)
  before = [v.numpy() for v in model.trainable_variables]
  trainer.train(features(), 8)
  assert trainer.loss_scale.numpy() == training.INITIAL_LOSS_SCALE / 2
  for b, v in zip(before, model.trainable_variables):
    np.testing.assert_array_equal(b, v.numpy())
  trainer.num_train_steps = 40
  trainer.train(features(), 8)
  scale = float(trainer.loss_scale.numpy())
  assert 1.0 <= scale < training.INITIAL_LOSS_SCALE / 2
  changed = [not np.array_equal(b, v.numpy())
             for b, v in zip(before, model.trainable_variables)]
  assert any(changed)


def test_unknown_precision_is_one_line(tmp_path):
  model = tiny_classifier(tmp_path)
  with pytest.raises(UserError, match="--precision=float8: expected one of"):
    training.Trainer(model, classifier_loss(model),
                     strategy=tf.distribute.get_strategy(),
                     output_dir=str(tmp_path / "out"), num_train_steps=1,
                     learning_rate=1e-3, precision="float8")


def varied_lengths(n=8, seq=24):
  """Batches whose longest text is 5, 13 or 24 tokens (buckets 16, 16, 32),
  each batch the same every time it comes round."""
  rng = np.random.default_rng(1)
  batches = []
  for longest in (5, 13, 24):
    lengths = rng.integers(1, longest + 1, n)
    lengths[0] = longest
    mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int32)
    batches.append({
        "input_ids": tf.constant(rng.integers(5, 20, (n, seq)) * mask,
                                 tf.int32),
        "input_mask": tf.constant(mask),
        "segment_ids": tf.zeros((n, seq), tf.int32),
        "label_ids": tf.constant(rng.integers(0, 2, n), tf.int32)})
  return tf.data.Dataset.from_tensor_slices(
      {k: tf.stack([b[k] for b in batches]) for k in batches[0]}).repeat()


def test_jit_compiled_step_trains_like_the_plain_one(tmp_path):
  tf.random.set_seed(0)
  model = tiny_classifier(tmp_path)
  reference = tiny_classifier(tmp_path)
  for v, r in zip(model.variables, reference.variables):
    r.assign(v)

  def without_dropout(m):
    # Dropout masks depend on each element's index, so on the padded
    # length, and the two steps pad batches to different lengths.
    return lambda f, is_training, step: classifier_loss(m)(f, False, step)

  trainers = [training.Trainer(
      m, without_dropout(m), strategy=tf.distribute.get_strategy(),
      output_dir=str(tmp_path / name), num_train_steps=9, learning_rate=1e-3,
      log_every=3, save_checkpoints_steps=9, jit_compile=jit)
      for m, name, jit in ((model, "jit", True), (reference, "plain", False))]
  # The step really goes through XLA: its update is a function marked for
  # compilation.
  step = trainers[0].make_train_step()
  graph = step.get_concrete_function(iter(varied_lengths())).graph
  library = graph.as_graph_def().library.function
  assert [f for f in library if f.attr["_XlaMustCompile"].b]
  initial = [v.numpy() for v in model.trainable_variables]
  jit_metrics, plain_metrics = (t.train(varied_lengths(), 8) for t in trainers)
  # Three lengths, two buckets, padded with input_mask 0: the same training.
  assert jit_metrics["loss"] == pytest.approx(plain_metrics["loss"], abs=1e-4)
  for v, r in zip(model.trainable_variables, reference.trainable_variables):
    np.testing.assert_allclose(v.numpy(), r.numpy(), atol=1e-4)
  assert any(not np.allclose(v.numpy(), i, atol=1e-3)
             for v, i in zip(model.trainable_variables, initial))


@pytest.mark.parametrize("bucket,lengths", [
    (data.length_bucket, (16, 32, 50, 50)),
    (data.fused_length_bucket, (16, 32, 48, 50))])
def test_trim_batch_buckets_lengths_for_xla(bucket, lengths):
  mask = np.zeros((2, 50), np.int32)
  mask[0, :5] = 1
  batch = {"input_ids": tf.constant(mask), "input_mask": tf.constant(mask),
           "label_ids": tf.constant([0, 1])}
  assert data.trim_batch(batch)["input_ids"].shape == (2, 5)
  assert data.trim_batch(batch, bucket)["input_ids"].shape == (2, lengths[0])
  for row_length, expected in zip((17, 33, 49), lengths[1:]):
    # 33: 64 (past the batch's width: the width) or 48; 49: the width.
    mask[1, :row_length] = 1
    batch["input_mask"] = tf.constant(mask)
    assert data.trim_batch(batch, bucket)["input_mask"].shape == (2, expected)
  assert data.trim_batch(batch, bucket)["label_ids"].shape == (2,)


def test_fused_length_bucket_is_the_next_multiple_of_16():
  assert [int(data.fused_length_bucket(tf.constant(n)))
          for n in (1, 16, 17, 33, 64, 65, 128)] == [16, 16, 32, 48, 64, 80,
                                                    128]


def test_kernels_auto_is_fused_on_cpu_and_reference_under_xla():
  strategy = tf.distribute.get_strategy()
  assert training.resolve_kernels("auto", False, strategy) == "fused"
  assert training.resolve_kernels("auto", True, strategy) == "reference"
  for name in modeling.KERNELS:
    assert training.resolve_kernels(name, True, strategy) == name
  with pytest.raises(UserError, match="--kernels=fast: expected auto"):
    training.resolve_kernels("fast", False, strategy)


def test_both_kernels_train_the_same_weights_with_dropout(tmp_path):
  # The Trainer's two backends: the same batches, the same dropout masks
  # (the test fails if the masks depended on the backend) and so, to
  # rounding, the same weights after a few steps.
  tf.random.set_seed(0)
  models = {name: tiny_classifier(tmp_path) for name in modeling.KERNELS}
  assert models["fused"].config.hidden_dropout_prob > 0
  for v, r in zip(models["fused"].variables, models["reference"].variables):
    r.assign(v)
  initial = [v.numpy() for v in models["fused"].trainable_variables]
  losses = {}
  for name, model in models.items():
    trainer = training.Trainer(
        model, classifier_loss(model), strategy=tf.distribute.get_strategy(),
        output_dir=str(tmp_path / name), num_train_steps=6,
        learning_rate=1e-3, log_every=3, save_checkpoints_steps=6,
        kernels=name)
    assert trainer.kernels == name
    losses[name] = trainer.train(varied_lengths(), 8)["loss"]
  assert losses["fused"] == pytest.approx(losses["reference"], abs=1e-4)
  for v, r, i in zip(models["fused"].trainable_variables,
                     models["reference"].trainable_variables, initial):
    np.testing.assert_allclose(v.numpy(), r.numpy(), atol=1e-4,
                               err_msg=v.name)
  assert any(not np.allclose(v.numpy(), i, atol=1e-3)
             for v, i in zip(models["fused"].trainable_variables, initial))
