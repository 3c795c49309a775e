"""Tests for bert/distillation.py against an independent numpy reference."""

import numpy as np
import pytest
import tensorflow as tf

from bert import distillation as kd
from bert.errors import UserError

B, C = 8, 5


# ---- numpy reference -------------------------------------------------------

def np_softmax(x):
  e = np.exp(x - x.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


def np_ce(p, logits):
  """Per-example -sum p log softmax(logits), float64."""
  return -(p * np.log(np_softmax(logits))).sum(axis=-1)


def np_entropy(p):
  return -(p * np.log(p)).sum(axis=-1)


def logits(seed, scale=3.0, shape=(B, C)):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=shape) * scale).astype(np.float32)


def int_labels(seed):
  return np.random.default_rng(seed).integers(0, C, size=B).astype(np.int32)


def run(z, v, y, has_label=None, **kwargs):
  out = kd.distillation_loss(tf.constant(z), tf.constant(v), tf.constant(y),
                             None if has_label is None
                             else tf.constant(has_label, tf.float32), **kwargs)
  return {k: float(t.numpy()) for k, t in out.items()}


# ---- losses ---------------------------------------------------------------

def test_soft_cross_entropy_matches_numpy():
  z, v = logits(0), logits(1)
  p = np_softmax(v.astype(np.float64))
  got = kd.soft_cross_entropy(tf.constant(p, tf.float32), tf.constant(z))
  assert got.shape == (B,)
  np.testing.assert_allclose(got.numpy(), np_ce(p, z), rtol=1e-5)


def test_mixed_loss_matches_hinton_formula():
  z, v, y = logits(2), logits(3), int_labels(4)
  alpha, t = 0.3, 2.0
  out = run(z, v, y, temperature=t, alpha=alpha)
  hard = np_ce(np.eye(C)[y], z).mean()
  soft = np_ce(np_softmax(v / t), z / t).mean()
  np.testing.assert_allclose(out["hard_loss"], hard, rtol=1e-5)
  np.testing.assert_allclose(out["soft_loss"], soft, rtol=1e-5)
  np.testing.assert_allclose(out["hard_weight"], 1 - alpha, rtol=1e-6)
  np.testing.assert_allclose(out["soft_weight"], alpha * t * t, rtol=1e-6)
  np.testing.assert_allclose(
      out["loss"], (1 - alpha) * hard + alpha * t * t * soft, rtol=1e-5)


def test_t_squared_scaling_at_t10():
  z, v, y = logits(5), logits(6), int_labels(7)
  out = run(z, v, y, temperature=10.0, alpha=1.0)
  soft = np_ce(np_softmax(v / 10.0), z / 10.0).mean()
  np.testing.assert_allclose(out["soft_weight"], 100.0, rtol=1e-6)
  np.testing.assert_allclose(out["loss"], 100.0 * soft, rtol=1e-5)


def test_alpha_zero_is_plain_cross_entropy():
  z, v, y = logits(8), logits(9), int_labels(10)
  out = run(z, v, y, temperature=4.0, alpha=0.0)
  np.testing.assert_allclose(out["loss"], np_ce(np.eye(C)[y], z).mean(),
                             rtol=1e-5)


def test_alpha_one_ignores_labels():
  z, v, y = logits(11), logits(12), int_labels(13)
  out = run(z, v, y, temperature=3.0, alpha=1.0)
  other = run(z, v, (y + 1) % C, temperature=3.0, alpha=1.0)
  assert out["hard_weight"] == 0.0
  assert out["hard_loss"] != other["hard_loss"]
  assert out["loss"] == pytest.approx(other["loss"], rel=1e-6)
  np.testing.assert_allclose(
      out["loss"], 9.0 * np_ce(np_softmax(v / 3.0), z / 3.0).mean(), rtol=1e-5)


def test_kl_is_soft_ce_minus_teacher_entropy():
  z, v, y = logits(14), logits(15), int_labels(16)
  alpha, t = 0.6, 2.5
  ce = run(z, v, y, temperature=t, alpha=alpha, objective="soft_ce")
  kl = run(z, v, y, temperature=t, alpha=alpha, objective="kl")
  h = np_entropy(np_softmax(v.astype(np.float64) / t)).mean()
  np.testing.assert_allclose(kl["loss"], ce["loss"] - alpha * t * t * h,
                             rtol=1e-5)
  assert kl["soft_weight"] == pytest.approx(alpha * t * t)
  # KL of a distribution with itself is zero.
  same = run(v, v, y, temperature=t, alpha=1.0, objective="kl")
  assert abs(same["soft_loss"]) < 1e-5


def test_kl_with_underflowing_teacher_probs_is_finite():
  v = np.zeros((2, C), np.float32)
  v[:, 0] = 200.0  # other classes underflow to probability 0 at T=1
  z = logits(17, shape=(2, C))
  out = run(z, v, np.zeros(2, np.int32), temperature=1.0, alpha=1.0,
            objective="kl")
  assert np.isfinite(out["loss"])
  np.testing.assert_allclose(out["soft_loss"], np_ce(np.eye(C)[[0, 0]], z).mean(),
                             rtol=1e-5)


def test_logits_mse():
  z, v, y = logits(18), logits(19), int_labels(20)
  alpha = 0.4
  out = run(z, v, y, temperature=7.0, alpha=alpha, objective="logits_mse")
  mse = ((z.astype(np.float64) - v) ** 2).mean(axis=1).mean()
  np.testing.assert_allclose(out["soft_loss"], mse, rtol=1e-5)
  assert out["soft_weight"] == pytest.approx(alpha)  # no T^2
  hard = np_ce(np.eye(C)[y], z).mean()
  np.testing.assert_allclose(out["loss"], (1 - alpha) * hard + alpha * mse,
                             rtol=1e-5)
  # Temperature plays no role.
  assert run(z, v, y, temperature=1.0, alpha=alpha,
             objective="logits_mse")["loss"] == pytest.approx(out["loss"])


# ---- masking of unlabelled transfer examples -------------------------------

def test_hard_term_only_from_labelled_examples():
  z, v, y = logits(21), logits(22), int_labels(23)
  has = np.array([1, 0, 1, 1, 0, 0, 1, 0], np.float32)
  y_placeholder = np.where(has > 0, y, -1).astype(np.int32)
  out = run(z, v, y_placeholder, has, temperature=2.0, alpha=0.5)
  lab = has > 0
  np.testing.assert_allclose(out["hard_loss"],
                             np_ce(np.eye(C)[y[lab]], z[lab]).mean(), rtol=1e-5)
  # Soft term averages over all examples, labelled or not.
  np.testing.assert_allclose(
      out["soft_loss"], np_ce(np_softmax(v / 2.0), z / 2.0).mean(), rtol=1e-5)
  # Whatever the unlabelled rows' labels, nothing changes.
  other = run(z, v, np.where(has > 0, y, (y + 2) % C).astype(np.int32), has,
              temperature=2.0, alpha=0.5)
  assert other["loss"] == pytest.approx(out["loss"], rel=1e-6)


def test_all_unlabelled_batch_is_finite():
  z, v = logits(24), logits(25)
  zt = tf.Variable(z)
  with tf.GradientTape() as tape:
    out = kd.distillation_loss(zt, tf.constant(v), tf.fill([B], -1),
                               tf.zeros([B]), temperature=2.0, alpha=0.5)
  grad = tape.gradient(out["loss"], zt)
  assert out["hard_loss"].numpy() == 0.0
  assert np.isfinite(out["loss"].numpy())
  assert np.all(np.isfinite(grad.numpy()))
  np.testing.assert_allclose(
      out["loss"].numpy(),
      0.5 * 4.0 * np_ce(np_softmax(v / 2.0), z / 2.0).mean(), rtol=1e-5)


# ---- gradients -------------------------------------------------------------

@pytest.mark.parametrize("objective", kd.OBJECTIVES)
def test_teacher_receives_no_gradient(objective):
  z, v, y = tf.constant(logits(26)), tf.constant(logits(27)), int_labels(28)
  with tf.GradientTape(persistent=True) as tape:
    tape.watch([z, v])
    out = kd.distillation_loss(z, v, y, temperature=3.0, alpha=0.5,
                               objective=objective)
  gv = tape.gradient(out["loss"], v)
  gz = tape.gradient(out["loss"], z)
  assert gv is None or not np.any(gv.numpy())
  assert np.any(gz.numpy())  # the student does learn


def test_ensemble_teachers_receive_no_gradient():
  vs = [tf.constant(logits(s)) for s in (29, 30)]
  z = tf.constant(logits(31))
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(vs + [z])
    probs = kd.ensemble_teacher_probs(vs, 2.0, "geometric")
    out = kd.distillation_loss(z, teacher_probs=probs, temperature=2.0,
                               alpha=1.0)
    mse = kd.distillation_loss(z, kd.ensemble_teacher_logits(vs), alpha=1.0,
                               objective="logits_mse")
  for loss in (out["loss"], mse["loss"]):
    for g in tape.gradient(loss, vs):
      assert g is None or not np.any(g.numpy())


def test_soft_gradient_closed_form():
  z, v = logits(32), logits(33)
  alpha, t = 0.7, 3.0
  zt = tf.constant(z)
  with tf.GradientTape() as tape:
    tape.watch(zt)
    # No labelled example, so the loss is the soft term alone.
    out = kd.distillation_loss(zt, tf.constant(v), int_labels(34), tf.zeros([B]),
                               temperature=t, alpha=alpha)
  grad = tape.gradient(out["loss"], zt).numpy()
  q, p = np_softmax(z / t), np_softmax(v / t)
  # alpha * T * (q - p) per example; the batch mean contributes 1/B.
  np.testing.assert_allclose(grad, alpha * t * (q - p) / B, atol=1e-6)


def test_full_gradient_with_masked_hard_term():
  z, v, y = logits(35), logits(36), int_labels(37)
  has = np.array([1, 1, 0, 1, 0, 1, 1, 0], np.float32)
  alpha, t = 0.25, 4.0
  zt = tf.constant(z)
  with tf.GradientTape() as tape:
    tape.watch(zt)
    out = kd.distillation_loss(zt, tf.constant(v), y, tf.constant(has),
                               temperature=t, alpha=alpha)
  grad = tape.gradient(out["loss"], zt).numpy()
  hard = (np_softmax(z) - np.eye(C)[y]) * has[:, None] / has.sum()
  soft = t * (np_softmax(z / t) - np_softmax(v / t)) / B
  np.testing.assert_allclose(grad, (1 - alpha) * hard + alpha * soft,
                             atol=1e-6)


# ---- ensembles -------------------------------------------------------------

def test_ensemble_arithmetic_mean():
  vs = [logits(s) for s in (38, 39, 40)]
  t = 2.0
  got = kd.ensemble_teacher_probs([tf.constant(v) for v in vs], t).numpy()
  want = np.mean([np_softmax(v / t) for v in vs], axis=0)
  np.testing.assert_allclose(got, want, atol=1e-6)
  np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-6)


def test_ensemble_geometric_mean():
  vs = [logits(s) for s in (41, 42, 43)]
  t = 1.5
  got = kd.ensemble_teacher_probs([tf.constant(v) for v in vs], t,
                                  mean="geometric").numpy()
  # Normalised geometric mean, computed directly from the distributions.
  geo = np.prod([np_softmax(v.astype(np.float64) / t) for v in vs],
                axis=0) ** (1 / 3)
  np.testing.assert_allclose(got, geo / geo.sum(axis=1, keepdims=True),
                             atol=1e-6)
  np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-6)
  np.testing.assert_allclose(got, np_softmax(np.mean(vs, axis=0) / t),
                             atol=1e-6)
  # It differs from the arithmetic mean for disagreeing teachers.
  arith = kd.ensemble_teacher_probs([tf.constant(v) for v in vs], t).numpy()
  assert np.abs(got - arith).max() > 1e-3


def test_ensemble_teacher_logits_is_mean():
  vs = [logits(s) for s in (44, 45)]
  got = kd.ensemble_teacher_logits([tf.constant(v) for v in vs]).numpy()
  np.testing.assert_allclose(got, (vs[0] + vs[1]) / 2, atol=1e-6)


def test_teacher_probs_plug_in():
  z, v, y = logits(46), logits(47), int_labels(48)
  t = 3.0
  probs = kd.ensemble_teacher_probs([tf.constant(v)], t)
  for objective in ("soft_ce", "kl"):
    by_probs = kd.distillation_loss(tf.constant(z), labels=y, temperature=t,
                                    alpha=0.5, objective=objective,
                                    teacher_probs=probs)
    by_logits = run(z, v, y, temperature=t, alpha=0.5, objective=objective)
    assert float(by_probs["loss"]) == pytest.approx(by_logits["loss"],
                                                    rel=1e-5)


def test_ensemble_of_two_teachers_in_loss():
  z, y = logits(49), int_labels(50)
  vs = [logits(s) for s in (51, 52)]
  t = 2.0
  probs = kd.ensemble_teacher_probs([tf.constant(v) for v in vs], t)
  out = kd.distillation_loss(tf.constant(z), labels=y, temperature=t,
                             alpha=1.0, teacher_probs=probs)
  p = np.mean([np_softmax(v / t) for v in vs], axis=0)
  np.testing.assert_allclose(float(out["loss"]), 4.0 * np_ce(p, z / t).mean(),
                             rtol=1e-5)


def test_bad_teacher_arguments():
  z = tf.constant(logits(53))
  with pytest.raises(ValueError):
    kd.distillation_loss(z, labels=int_labels(54))  # no teacher at all
  with pytest.raises(UserError, match="logits_mse"):
    kd.distillation_loss(z, teacher_probs=tf.nn.softmax(z),
                         objective="logits_mse")
  # Unknown choices are programming errors here: the flags are checked once,
  # by the run's config (tests/test_run_config.py).
  with pytest.raises(ValueError, match="objective 'mse'"):
    kd.distillation_loss(z, z, objective="mse")
  with pytest.raises(ValueError, match="ensemble mean 'harmonic'"):
    kd.ensemble_teacher_probs([z], 1.0, mean="harmonic")


# ---- schedules -------------------------------------------------------------

def test_alpha_schedules():
  n = 1000
  assert float(kd.alpha_at(0, n, 0.3)) == pytest.approx(0.3)
  assert float(kd.alpha_at(n, n, 0.3)) == pytest.approx(0.3)
  anneal = [float(kd.alpha_at(s, n, 0.3, "anneal")) for s in (0, n // 2, n)]
  assert anneal == pytest.approx([1.0, 0.5, 0.0])
  assert float(kd.alpha_at(n - 1, n, 0.3, "anneal")) == pytest.approx(1 / n, rel=1e-4)
  assert float(kd.alpha_at(2 * n, n, 0.3, "anneal")) == 0.0  # clipped


def test_temperature_schedules():
  n = 100
  assert float(kd.temperature_at(50, n, 5.0)) == 5.0
  linear = [float(kd.temperature_at(s, n, 5.0, "linear")) for s in (0, 50, n)]
  assert linear == pytest.approx([5.0, 3.0, 1.0])


def test_schedules_and_loss_in_tf_function():
  z, v, y = logits(55), logits(56), int_labels(57)

  @tf.function
  def loss_at(step):
    t = kd.temperature_at(step, 10, 4.0, "linear")
    a = kd.alpha_at(step, 10, 0.5, "anneal")
    return kd.distillation_loss(z, v, y, temperature=t, alpha=a)["loss"]

  for step, t, a in ((0, 4.0, 1.0), (5, 2.5, 0.5), (10, 1.0, 0.0)):
    want = ((1 - a) * np_ce(np.eye(C)[y], z).mean()
            + a * t * t * np_ce(np_softmax(v / t), z / t).mean())
    got = float(loss_at(tf.constant(step, tf.int64)))
    assert got == pytest.approx(want, rel=1e-5)


def test_schedule_errors():
  with pytest.raises(ValueError, match="alpha schedule 'cosine'"):
    kd.alpha_at(0, 10, 0.5, "cosine")
  with pytest.raises(ValueError, match="temperature schedule 'exp'"):
    kd.temperature_at(0, 10, 2.0, "exp")
  with pytest.raises(ValueError, match="num_train_steps must be > 0"):
    kd.alpha_at(0, 0, 0.5, "anneal")


# ---- validation and agreement ----------------------------------------------

GOOD = dict(alpha=0.5, temperature=2.0, objective="soft_ce",
            alpha_schedule="constant", temperature_schedule="constant",
            ensemble_mean="arithmetic")


def test_validate_accepts_good_flags():
  kd.validate_distill_flags(**GOOD)
  kd.validate_distill_flags(**dict(GOOD, alpha=0.0, objective="logits_mse",
                                   alpha_schedule="anneal",
                                   temperature_schedule="linear",
                                   ensemble_mean="geometric"))
  kd.validate_distill_flags(**dict(GOOD, alpha=1.0, objective="kl"))


@pytest.mark.parametrize("key,value,flag", [
    ("alpha", -0.1, "--alpha"),
    ("alpha", 1.5, "--alpha"),
    ("alpha", float("nan"), "--alpha"),
    ("temperature", 0.0, "--temperature"),
    ("temperature", -1.0, "--temperature"),
    ("objective", "mse", "--distill_objective"),
    ("alpha_schedule", "cosine", "--alpha_schedule"),
    ("temperature_schedule", "step", "--temperature_schedule"),
    ("ensemble_mean", "median", "--ensemble_mean"),
])
def test_validate_rejects_bad_flags(key, value, flag):
  with pytest.raises(UserError) as e:
    kd.validate_distill_flags(**dict(GOOD, **{key: value}))
  msg = str(e.value)
  assert flag in msg and "\n" not in msg
  if isinstance(value, str):  # lists the valid names
    assert value in msg and GOOD[key] in msg


def test_agreement():
  z, v = logits(58), logits(59)
  want = np.mean(z.argmax(1) == v.argmax(1))
  assert float(kd.agreement(tf.constant(z), tf.constant(v))) == pytest.approx(
      want)
  assert float(kd.agreement(tf.constant(z), tf.constant(z))) == 1.0
