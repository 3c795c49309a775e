"""Tests for bert/optimization.py against a numpy version of Google's maths."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from bert import optimization
from bert.errors import UserError

KERNEL = "layer_0/dense/kernel"
BIAS = "layer_0/dense/bias"
GAMMA = "layer_0/LayerNorm/gamma"


class Toy(tf.Module):
  """A kernel (decayed), a bias and a LayerNorm gamma (both excluded)."""

  def __init__(self):
    super().__init__()
    rng = np.random.default_rng(0)
    self.kernel = tf.Variable(rng.normal(size=(3, 2)).astype(np.float32),
                              name=KERNEL)
    self.bias = tf.Variable(rng.normal(size=(2,)).astype(np.float32),
                            name=BIAS)
    self.gamma = tf.Variable(1.0 + rng.normal(size=(2,)).astype(np.float32),
                             name=GAMMA)

  @property
  def params(self):
    return [self.kernel, self.bias, self.gamma]


def reference_lr(step, init_lr, num_train_steps, num_warmup_steps):
  if step < num_warmup_steps:
    return init_lr * step / num_warmup_steps
  return init_lr * max(0.0, 1.0 - step / num_train_steps)


class Reference:
  """Google's AdamWeightDecayOptimizer + clip_by_global_norm in numpy."""

  def __init__(self, params, names, wd=0.01, b1=0.9, b2=0.999, eps=1e-6,
               clip=1.0):
    self.p = [np.array(x, np.float32) for x in params]
    self.m = [np.zeros_like(x) for x in self.p]
    self.v = [np.zeros_like(x) for x in self.p]
    self.decay = [not any(s in n for s in ("LayerNorm", "layer_norm", "bias"))
                  for n in names]
    self.wd, self.b1, self.b2, self.eps, self.clip = wd, b1, b2, eps, clip

  def step(self, grads, lr, norm=None):
    """`norm` overrides the global norm (sparse gradients count rows)."""
    grads = [None if g is None else np.asarray(g, np.float32) for g in grads]
    if norm is None:
      norm = np.sqrt(sum(np.sum(g * g) for g in grads if g is not None))
    if self.clip is not None and norm > self.clip:
      grads = [None if g is None else g * (self.clip / norm) for g in grads]
    for i, g in enumerate(grads):
      if g is None:
        continue
      self.m[i] = self.b1 * self.m[i] + (1 - self.b1) * g
      self.v[i] = self.b2 * self.v[i] + (1 - self.b2) * g * g
      update = self.m[i] / (np.sqrt(self.v[i]) + self.eps)
      if self.decay[i]:
        update = update + self.wd * self.p[i]
      self.p[i] = self.p[i] - np.float32(lr) * update
    return norm


def random_grads(model, scale, seed):
  rng = np.random.default_rng(seed)
  grads = [rng.normal(size=v.shape).astype(np.float32) for v in model.params]
  norm = np.sqrt(sum(np.sum(g * g) for g in grads))
  return [g * np.float32(scale / norm) for g in grads]


def assert_matches(model, opt, ref):
  for i, var in enumerate(model.params):
    np.testing.assert_allclose(var.numpy(), ref.p[i], rtol=1e-5, atol=1e-7)
    name = var.name[:-2]
    slots = opt.slot_variables()
    np.testing.assert_allclose(slots[name + "/adam_m"].numpy(), ref.m[i],
                               rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(slots[name + "/adam_v"].numpy(), ref.v[i],
                               rtol=1e-5, atol=1e-12)


# ---------------------------------------------------------------- schedule


@pytest.mark.parametrize("step", [0, 5, 9, 10, 55, 99, 100, 150])
def test_schedule_warmup_then_linear_decay(step):
  schedule = optimization.LinearWarmupDecay(2e-5, num_train_steps=100,
                                            num_warmup_steps=10)
  expected = {0: 0.0, 5: 1e-5, 9: 1.8e-5, 10: 2e-5 * 0.9, 55: 2e-5 * 0.45,
              99: 2e-5 * 0.01, 100: 0.0, 150: 0.0}[step]
  lr = schedule(tf.constant(step, tf.int64))
  assert lr.dtype == tf.float32
  np.testing.assert_allclose(lr.numpy(), expected, rtol=1e-6, atol=1e-12)


def test_schedule_without_warmup_starts_at_init_lr_and_runs_in_tf_function():
  schedule = optimization.LinearWarmupDecay(1.0, num_train_steps=4,
                                            num_warmup_steps=0)
  step = tf.Variable(0, dtype=tf.int64)
  lr_at = tf.function(lambda: schedule(step))
  got = []
  for _ in range(6):
    got.append(float(lr_at()))
    step.assign_add(1)
  np.testing.assert_allclose(got, [1.0, 0.75, 0.5, 0.25, 0.0, 0.0])


def test_schedule_rejects_bad_step_counts():
  with pytest.raises(UserError, match="num_train_steps"):
    optimization.LinearWarmupDecay(1e-3, num_train_steps=0,
                                   num_warmup_steps=0)
  with pytest.raises(UserError, match="num_warmup_steps"):
    optimization.LinearWarmupDecay(1e-3, num_train_steps=10,
                                   num_warmup_steps=-1)


# ---------------------------------------------------------------- optimiser


def test_one_step_clips_large_gradients():
  model = Toy()
  opt = optimization.AdamWeightDecay(model.params, learning_rate=0.1)
  ref = Reference(model.params, [KERNEL, BIAS, GAMMA])
  grads = random_grads(model, scale=7.0, seed=1)
  out = opt.apply_gradients([tf.constant(g) for g in grads])
  ref.step(grads, 0.1)
  assert_matches(model, opt, ref)
  np.testing.assert_allclose(out["grad_norm"].numpy(), 7.0, rtol=1e-6)
  np.testing.assert_allclose(out["learning_rate"].numpy(), 0.1)
  # m holds (1 - b1) * clipped grad: 7x smaller than without clipping.
  np.testing.assert_allclose(
      opt.slot_variables()[KERNEL + "/adam_m"].numpy(), 0.1 * grads[0] / 7.0,
      rtol=1e-5)
  assert int(opt.global_step.numpy()) == 1


def test_no_clipping_below_norm_one_and_clip_norm_none():
  model = Toy()
  opt = optimization.AdamWeightDecay(model.params, learning_rate=0.1)
  grads = random_grads(model, scale=0.5, seed=2)
  opt.apply_gradients([tf.constant(g) for g in grads])
  np.testing.assert_allclose(
      opt.slot_variables()[KERNEL + "/adam_m"].numpy(), 0.1 * grads[0],
      rtol=1e-5)

  model = Toy()
  opt = optimization.AdamWeightDecay(model.params, learning_rate=0.1,
                                     clip_norm=None)
  grads = random_grads(model, scale=7.0, seed=2)
  opt.apply_gradients([tf.constant(g) for g in grads])
  np.testing.assert_allclose(
      opt.slot_variables()[KERNEL + "/adam_m"].numpy(), 0.1 * grads[0],
      rtol=1e-5)


def test_several_steps_with_schedule_match_reference():
  model = Toy()
  init_lr, total, warmup = 0.05, 8, 3
  opt = optimization.AdamWeightDecay(
      model.params, optimization.LinearWarmupDecay(init_lr, total, warmup))
  ref = Reference(model.params, [KERNEL, BIAS, GAMMA])
  initial_kernel = model.kernel.numpy()
  for step, scale in enumerate([5.0, 0.3, 2.0, 0.8, 12.0, 0.1]):
    grads = random_grads(model, scale, seed=10 + step)
    out = opt.apply_gradients([tf.constant(g) for g in grads])
    lr = reference_lr(step, init_lr, total, warmup)
    ref.step(grads, lr)
    # The rate comes from global_step before its increment, as in Google's.
    np.testing.assert_allclose(out["learning_rate"].numpy(), lr, rtol=1e-6)
    assert_matches(model, opt, ref)
    if step == 0:  # lr 0 at step 0: only the slots move.
      np.testing.assert_array_equal(model.kernel.numpy(), initial_kernel)
  assert int(opt.global_step.numpy()) == 6


def test_weight_decay_only_on_non_excluded_names():
  model = Toy()
  before = [v.numpy() for v in model.params]
  opt = optimization.AdamWeightDecay(model.params, learning_rate=0.5,
                                     weight_decay_rate=0.1)
  # Zero gradients: m = v = 0, so the whole update is the decay term.
  opt.apply_gradients([tf.zeros_like(v) for v in model.params])
  np.testing.assert_allclose(model.kernel.numpy(),
                             before[0] * (1 - 0.5 * 0.1), rtol=1e-6)
  np.testing.assert_array_equal(model.bias.numpy(), before[1])
  np.testing.assert_array_equal(model.gamma.numpy(), before[2])


def test_weight_decay_rate_zero_and_custom_exclusions():
  model = Toy()
  before = [v.numpy() for v in model.params]
  opt = optimization.AdamWeightDecay(model.params, learning_rate=0.5,
                                     weight_decay_rate=0.0)
  opt.apply_gradients([tf.zeros_like(v) for v in model.params])
  for var, b in zip(model.params, before):
    np.testing.assert_array_equal(var.numpy(), b)

  opt = optimization.AdamWeightDecay(model.params, learning_rate=0.5,
                                     exclude_from_weight_decay=("kernel",))
  opt.apply_gradients([tf.zeros_like(v) for v in model.params])
  np.testing.assert_array_equal(model.kernel.numpy(), before[0])
  np.testing.assert_allclose(model.bias.numpy(), before[1] * (1 - 0.5 * 0.01),
                             rtol=1e-6)


def test_slot_names_follow_google_layout():
  model = Toy()
  opt = optimization.AdamWeightDecay(model.params, learning_rate=0.1)
  expected = {f"{n}/{s}" for n in (KERNEL, BIAS, GAMMA)
              for s in ("adam_m", "adam_v")}
  slots = opt.slot_variables()
  assert set(slots) == expected
  for name, var in slots.items():
    assert var.name == name + ":0"
    assert not var.trainable
  assert set(opt.checkpoint_variables()) == expected | {"global_step"}
  assert opt.global_step.name == "global_step:0"
  assert opt.global_step.dtype == tf.int64
  # The model's own variables are not the optimiser's.
  own = {v.name for v in opt.checkpoint_variables().values()}
  assert {v.name for v in opt.variables} == own


def test_rejects_wrong_gradient_count_and_duplicate_names():
  model = Toy()
  opt = optimization.AdamWeightDecay(model.params, learning_rate=0.1)
  with pytest.raises(ValueError, match="expected 3 gradients"):
    opt.apply_gradients([tf.zeros([3, 2])])
  twin = tf.Variable(tf.zeros([2]), name=BIAS)
  with pytest.raises(ValueError, match="collide"):
    optimization.AdamWeightDecay([model.bias, twin], learning_rate=0.1)


def test_none_gradient_leaves_variable_and_slots_alone():
  model = Toy()
  opt = optimization.AdamWeightDecay(model.params, learning_rate=0.1)
  ref = Reference(model.params, [KERNEL, BIAS, GAMMA])
  grads = random_grads(model, scale=4.0, seed=3)
  grads[1] = None
  gamma_before = model.gamma.numpy()
  opt.apply_gradients([None if g is None else tf.constant(g) for g in grads])
  ref.step(grads, 0.1)  # The norm is over the present gradients only.
  assert_matches(model, opt, ref)
  np.testing.assert_array_equal(
      opt.slot_variables()[BIAS + "/adam_m"].numpy(), np.zeros(2))
  assert not np.array_equal(model.gamma.numpy(), gamma_before)


@pytest.mark.parametrize("bad", [np.nan, np.inf, 3e19])
def test_non_finite_gradients_skip_the_step(bad):
  model = Toy()
  opt = optimization.AdamWeightDecay(model.params, learning_rate=0.1)
  ref = Reference(model.params, [KERNEL, BIAS, GAMMA])
  grads = random_grads(model, scale=2.0, seed=5)
  opt.apply_gradients([tf.constant(g) for g in grads])
  ref.step(grads, 0.1)
  before = ([p.numpy() for p in model.params] +
            [v.numpy() for v in opt.slot_variables().values()])
  bad_grads = random_grads(model, scale=2.0, seed=6)
  # 3e19 is finite, but its square overflows the float32 norm to Inf.
  bad_grads[0].flat[0] = bad
  out = opt.apply_gradients([tf.constant(g) for g in bad_grads])
  assert float(out["skipped"]) == 1.0
  after = ([p.numpy() for p in model.params] +
           [v.numpy() for v in opt.slot_variables().values()])
  for b, a in zip(before, after):
    np.testing.assert_array_equal(a, b)
  assert int(opt.global_step.numpy()) == 2
  # The next good step continues as if the bad one had not happened.
  grads = random_grads(model, scale=2.0, seed=7)
  out = opt.apply_gradients([tf.constant(g) for g in grads])
  assert float(out["skipped"]) == 0.0
  ref.step(grads, 0.1)
  assert_matches(model, opt, ref)


def test_indexed_slices_norm_counts_rows_like_google():
  table = tf.Variable(np.ones((5, 2), np.float32), name="bert/embeddings/"
                      "word_embeddings")
  opt = optimization.AdamWeightDecay([table], learning_rate=0.1)
  ids = tf.constant([1, 1, 3])  # A repeated id.
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(tf.gather(table, ids) * [[3.0, 4.0]])
  grad = tape.gradient(loss, table)
  assert isinstance(grad, tf.IndexedSlices)
  out = opt.apply_gradients([grad])

  dense = tf.convert_to_tensor(grad).numpy()  # Row 1 is [6, 8].
  rows_norm = np.sqrt(3 * 25.0)  # tf.clip_by_global_norm's view: 3 rows.
  assert not np.isclose(rows_norm, np.linalg.norm(dense))
  np.testing.assert_allclose(out["grad_norm"].numpy(), rows_norm, rtol=1e-6)
  ref = Reference([np.ones((5, 2))], ["bert/embeddings/word_embeddings"])
  ref.step([dense], 0.1, norm=rows_norm)
  np.testing.assert_allclose(table.numpy(), ref.p[0], rtol=1e-5)
  np.testing.assert_allclose(
      opt.slot_variables()["bert/embeddings/word_embeddings/adam_m"].numpy(),
      ref.m[0], rtol=1e-5)
  # Rows without gradient still decay, as with Google's dense update.
  np.testing.assert_allclose(table.numpy()[0], 1 - 0.1 * 0.01, rtol=1e-6)


def test_tf_function_and_default_strategy_run_match_reference():
  model = Toy()
  schedule = optimization.LinearWarmupDecay(0.05, 6, 2)
  opt = optimization.AdamWeightDecay(model.params, schedule)
  ref = Reference(model.params, [KERNEL, BIAS, GAMMA])
  strategy = tf.distribute.get_strategy()
  traces = []

  @tf.function
  def train_step(grads):
    traces.append(1)
    return strategy.run(opt.apply_gradients, args=(grads,))

  for step, scale in enumerate([3.0, 0.4, 9.0, 0.7]):
    grads = random_grads(model, scale, seed=20 + step)
    out = train_step([tf.constant(g) for g in grads])
    ref.step(grads, reference_lr(step, 0.05, 6, 2))
    assert_matches(model, opt, ref)
    np.testing.assert_allclose(out["grad_norm"].numpy(), scale, rtol=1e-5)
  assert len(traces) == 1
  assert int(opt.global_step.numpy()) == 4


def test_saver_round_trip_of_slots_and_global_step(tmp_path):
  model = Toy()
  opt = optimization.AdamWeightDecay(model.params, learning_rate=0.1)
  for seed in (4, 5):
    opt.apply_gradients(
        [tf.constant(g) for g in random_grads(model, 2.0, seed)])
  path = tf.compat.v1.train.Saver(var_list=opt.checkpoint_variables()).save(
      None, str(tmp_path / "model.ckpt"), global_step=2)
  stored = dict(tf.train.list_variables(path))
  assert stored["global_step"] == []
  assert stored[KERNEL + "/adam_m"] == [3, 2]
  assert stored[GAMMA + "/adam_v"] == [2]

  fresh = optimization.AdamWeightDecay(Toy().params, learning_rate=0.1)
  tf.compat.v1.train.Saver(var_list=fresh.checkpoint_variables()).restore(
      None, path)
  assert int(fresh.global_step.numpy()) == 2
  for name, var in opt.slot_variables().items():
    assert np.any(var.numpy() != 0)
    np.testing.assert_array_equal(fresh.slot_variables()[name].numpy(),
                                  var.numpy())


# ------------------------------------------------------- MirroredStrategy

# Runs in a fresh interpreter: logical CPU devices must be configured before
# TensorFlow initialises its devices, which this test process already did.
_MIRRORED_SCRIPT = textwrap.dedent("""
    import json
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from bert import optimization

    GLOBAL_BATCH = 4
    ids = np.array([[1, 1, 2], [3, 1, 0], [2, 2, 2], [4, 0, 1]], np.int32)
    labels = np.array([[1.0], [-1.0], [0.5], [2.0]], np.float32)

    def train(strategy, eager):
      rng = np.random.default_rng(0)
      with strategy.scope():
        table = tf.Variable(rng.normal(size=(5, 4)).astype(np.float32),
                            name="bert/embeddings/word_embeddings")
        kernel = tf.Variable(rng.normal(size=(4, 1)).astype(np.float32),
                             name="output_weights")
        bias = tf.Variable(np.zeros(1, np.float32), name="output_bias")
        gamma = tf.Variable(np.ones(4, np.float32),
                            name="bert/embeddings/LayerNorm/gamma")
        params = [table, kernel, bias, gamma]
        initial = [v.numpy().tolist() for v in params]
        opt = optimization.AdamWeightDecay(
            params, optimization.LinearWarmupDecay(0.1, 5, 1))

      def replica_step(x, y):
        with tf.GradientTape() as tape:
          h = tf.reduce_mean(tf.gather(table, x), axis=1) * gamma
          per_example = tf.square(tf.matmul(h, kernel) + bias - y)[:, 0]
          loss = tf.reduce_sum(per_example) / GLOBAL_BATCH
        return opt.apply_gradients(tape.gradient(loss, params))

      step = lambda x, y: strategy.run(replica_step, args=(x, y))
      if not eager:
        step = tf.function(step)
      data = tf.data.Dataset.from_tensor_slices((ids, labels))
      data = data.repeat(3).batch(GLOBAL_BATCH)
      norms = []
      for x, y in strategy.experimental_distribute_dataset(data):
        out = step(x, y)
        norms.append(float(strategy.experimental_local_results(
            out["grad_norm"])[0]))
      replicas_agree = True
      for v in params + list(opt.checkpoint_variables().values()):
        copies = [c.numpy() for c in getattr(v, "values", (v,))]
        replicas_agree &= all(np.array_equal(c, copies[0]) for c in copies)
      return {
          "initial": initial,
          "params": [v.numpy().tolist() for v in params],
          "slots": {k: v.numpy().tolist()
                    for k, v in opt.slot_variables().items()},
          "global_step": int(opt.global_step.numpy()),
          "norms": norms,
          "replicas": strategy.num_replicas_in_sync,
          "replicas_agree": replicas_agree,
      }

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    print(json.dumps({
        "default": train(tf.distribute.get_strategy(), eager=False),
        "mirrored": train(mirrored, eager=False),
        "mirrored_eager": train(mirrored, eager=True),
    }))
""")


@pytest.mark.slow
def test_mirrored_strategy_matches_default_strategy():
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, PYTHONPATH=root, TF_CPP_MIN_LOG_LEVEL="2")
  proc = subprocess.run([sys.executable, "-c", _MIRRORED_SCRIPT], cwd=root,
                        env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads(proc.stdout.strip().splitlines()[-1])
  default = results["default"]
  assert default["replicas"] == 1
  assert default["global_step"] == 3
  assert len(default["norms"]) == 3 and all(n > 0 for n in default["norms"])
  for key in ("mirrored", "mirrored_eager"):
    got = results[key]
    assert got["replicas"] == 2
    assert got["replicas_agree"]
    assert got["global_step"] == 3
    np.testing.assert_allclose(got["norms"], default["norms"], rtol=1e-5)
    for a, b in zip(got["params"], default["params"]):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    for name, value in default["slots"].items():
      np.testing.assert_allclose(got["slots"][name], value, rtol=1e-5,
                                 atol=1e-9)
  # Training moved every parameter (lr is 0 only at step 0).
  for before, after in zip(default["initial"], default["params"]):
    assert not np.allclose(before, after)
