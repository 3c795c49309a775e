"""BERT's fine-tuning optimiser: Adam with decoupled weight decay.

Numerically the same as Google's `optimization.py` (`create_optimizer` with
`AdamWeightDecayOptimizer`), rewritten for TF2 (`tf.Module`, `tf.function`,
`tf.distribute`):

  lr      = LinearWarmupDecay(global_step)        # step *before* increment
  g       = clip_by_global_norm(grads, 1.0)
  m       = b1 * m + (1 - b1) * g                 # no bias correction
  v       = b2 * v + (1 - b2) * g^2
  update  = m / (sqrt(v) + eps) + wd * param      # wd = 0 for LayerNorm/bias
  param  -= lr * update
  global_step += 1

Slots are named like Google's (`<var>/adam_m`, `<var>/adam_v`) and the step is
`global_step`, so name-based checkpoints interoperate with `run_classifier.py`.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Sequence

import tensorflow as tf

from bert.errors import UserError


class LinearWarmupDecay:
  """Google's learning-rate schedule: linear warm-up, then linear decay to 0.

  For `step < num_warmup_steps`: `init_lr * step / num_warmup_steps`.
  Otherwise: `init_lr * (1 - min(step, num_train_steps) / num_train_steps)`.
  The decay is measured from step 0, not from the end of warm-up, so the rate
  drops slightly when warm-up ends, exactly as in Google's code.
  """

  def __init__(self, init_lr: float, num_train_steps: int,
               num_warmup_steps: int):
    if num_train_steps <= 0:
      raise UserError(f"num_train_steps: expected > 0, got {num_train_steps}")
    if num_warmup_steps < 0:
      raise UserError(
          f"num_warmup_steps: expected >= 0, got {num_warmup_steps}")
    self.init_lr = float(init_lr)
    self.num_train_steps = int(num_train_steps)
    self.num_warmup_steps = int(num_warmup_steps)

  def __call__(self, step: tf.Tensor) -> tf.Tensor:
    """Returns the float32 scalar learning rate for integer scalar `step`."""
    step = tf.cast(step, tf.float32)
    init_lr = tf.constant(self.init_lr, tf.float32)
    # tf.compat.v1.train.polynomial_decay with power 1, end 0, cycle=False.
    done = tf.minimum(step, float(self.num_train_steps)) / self.num_train_steps
    lr = init_lr * (1.0 - done)
    if self.num_warmup_steps:
      warmup_lr = init_lr * (step / self.num_warmup_steps)
      lr = tf.where(step < self.num_warmup_steps, warmup_lr, lr)
    return lr


@dataclasses.dataclass(frozen=True)
class _Param:
  """A model variable with its Adam slots (a plain object: not tracked)."""
  var: tf.Variable
  m: tf.Variable
  v: tf.Variable
  decay: bool


def _checkpoint_name(var: tf.Variable) -> str:
  """`bert/.../kernel:0` -> `bert/.../kernel` (the name in Google's files)."""
  return re.sub(r":\d+$", "", var.name)


class AdamWeightDecay(tf.Module):
  """Adam without bias correction plus decoupled weight decay (BERT's AdamW).

  Construct it once, eagerly, after the model's variables exist and inside
  `strategy.scope()` when a `tf.distribute` strategy is used: all slots and
  `global_step` are created here, never inside `tf.function`.

  Distribution contract: call `apply_gradients` in replica context (inside
  `strategy.run`, or plainly when there is no strategy) with this replica's
  gradients. They are SUMMED over replicas, so each replica's loss must be its
  share of the global-batch loss, e.g. `sum(per_example_loss) /
  global_batch_size` (`tf.nn.compute_average_loss`). With one replica that is
  simply the batch mean. Called in cross-replica context (under a strategy's
  scope but outside `strategy.run`), the gradients are taken as already
  reduced.
  """

  def __init__(self,
               variables: Sequence[tf.Variable],
               learning_rate: LinearWarmupDecay | float,
               weight_decay_rate: float = 0.01,
               beta_1: float = 0.9,
               beta_2: float = 0.999,
               epsilon: float = 1e-6,
               exclude_from_weight_decay: Sequence[str] = (
                   "LayerNorm", "layer_norm", "bias"),
               clip_norm: float | None = 1.0,
               name: str | None = None):
    super().__init__(name=name)
    self.learning_rate = learning_rate
    self.weight_decay_rate = float(weight_decay_rate)
    self.beta_1 = float(beta_1)
    self.beta_2 = float(beta_2)
    self.epsilon = float(epsilon)
    self.exclude_from_weight_decay = tuple(exclude_from_weight_decay)
    self.clip_norm = clip_norm

    self.global_step = tf.Variable(
        0, dtype=tf.int64, trainable=False, name="global_step")
    params, slots = [], {}
    for var in variables:
      name = _checkpoint_name(var)
      if name + "/adam_m" in slots:
        raise ValueError(f"two variables are named {name!r}; slot names would "
                         "collide")
      if not var.shape.is_fully_defined():
        raise ValueError(f"variable {name!r} has unknown shape {var.shape}")
      m, v = (tf.Variable(tf.zeros(var.shape, var.dtype), trainable=False,
                          name=f"{name}/{slot}")
              for slot in ("adam_m", "adam_v"))
      slots[name + "/adam_m"] = m
      slots[name + "/adam_v"] = v
      params.append(_Param(var, m, v, self._use_weight_decay(name)))
    # A tuple of plain objects keeps the model's own variables out of this
    # module's `variables` and out of object-based checkpoints of it.
    self._params = tuple(params)
    self._slots = slots
    # `_update_all`'s kernel: this optimiser's own function, so its traces
    # capture this optimiser's variables.
    self._step_all = tf.function(self._assign_all, jit_compile=True)

  def _use_weight_decay(self, name: str) -> bool:
    # Like Google: patterns are regular expressions searched in the name.
    if not self.weight_decay_rate:
      return False
    return not any(re.search(p, name) for p in self.exclude_from_weight_decay)

  def _learning_rate(self) -> tf.Tensor:
    if callable(self.learning_rate):
      return self.learning_rate(self.global_step.read_value())
    return tf.constant(self.learning_rate, tf.float32)

  def slot_variables(self) -> dict[str, tf.Variable]:
    """Slots by their names in Google's checkpoints (`<var>/adam_m|adam_v`)."""
    return dict(self._slots)

  def checkpoint_variables(self) -> dict[str, tf.Variable]:
    """`slot_variables()` plus `global_step`, for a name-based Saver."""
    return {**self._slots, "global_step": self.global_step}

  def apply_gradients(
      self, grads: Sequence[tf.Tensor | tf.IndexedSlices | None]
  ) -> dict[str, tf.Tensor]:
    """Applies one step; `grads[i]` is the gradient of `variables[i]`.

    Args:
      grads: one per variable given to the constructor, each of the variable's
        shape, or a `tf.IndexedSlices` (embedding gathers), or None (unused
        variable: it and its slots are left untouched).

    Returns:
      {"learning_rate": float32 scalar used for this step,
       "grad_norm": float32 scalar global norm of the (replica-summed)
       gradients before clipping,
       "skipped": 1.0 when that norm was Inf or NaN, else 0.0}.

    A step whose gradients are not finite (an exploding RNN, a NaN loss)
    leaves every variable and slot as it was, instead of turning them all
    to NaN through the clipping; the global step still advances.
    """
    grads = list(grads)
    if len(grads) != len(self._params):
      raise ValueError(f"expected {len(self._params)} gradients, got "
                       f"{len(grads)}")
    used = [i for i, g in enumerate(grads) if g is not None]
    grads = [grads[i] for i in used]

    ctx = tf.distribute.get_replica_context()
    if ctx is not None and ctx.num_replicas_in_sync > 1:
      # IndexedSlices stay sparse (rows are concatenated), so the norm below
      # sees the same rows as a single replica on the whole batch would.
      grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)

    # Like Google's tf.clip_by_global_norm: for IndexedSlices the norm is over
    # the gathered rows (repeated ids counted separately), not the dense sum.
    grad_norm = tf.linalg.global_norm(grads) if grads else tf.constant(0.0)
    if self.clip_norm is not None and grads:
      grads, _ = tf.clip_by_global_norm(
          grads, self.clip_norm, use_norm=grad_norm)
    finite = tf.math.is_finite(grad_norm)
    # Adam's slots decay every row, so sparse gradients are applied densely.
    grads = [tf.convert_to_tensor(g) for g in grads]
    lr = self._learning_rate()

    def apply(strategy, grads, lr):
      if not tf.distribute.has_strategy():
        self._update_all(used, grads, lr, finite)
      else:
        for i, grad in zip(used, grads):
          p = self._params[i]
          strategy.extended.update(
              p.var, self._update, args=(grad, p.m, p.v, lr, p.decay, finite))
      # After the updates: this step's rate was read from the old value.
      self.global_step.assign_add(1)

    if ctx is None:
      apply(tf.distribute.get_strategy(), grads, lr)
    else:
      ctx.merge_call(apply, args=(grads, lr))
    return {"learning_rate": lr, "grad_norm": grad_norm,
            "skipped": 1.0 - tf.cast(finite, tf.float32)}

  def _update(self, var, grad, m, v, lr, decay: bool, finite: tf.Tensor):
    """One variable on one device; all tensors have the variable's shape.
    Nothing changes unless `finite` (a bool scalar)."""
    # A branch, not tf.where on each tensor: a good step does no extra work.
    return tf.cond(finite,
                   lambda: self._assign_step(var, grad, m, v, lr, decay),
                   tf.no_op)

  def _assign_step(self, var, grad, m, v, lr, decay: bool) -> tf.Operation:
    """Assigns one Adam step to `var` and its slots `m`, `v`."""
    next_var, next_m, next_v = _adam_step(
        var.value(), grad, m.value(), v.value(), lr, self.beta_1,
        self.beta_2, self.epsilon, self.weight_decay_rate if decay else 0.0)
    return tf.group(var.assign(next_var), m.assign(next_m), v.assign(next_v))

  def _update_all(self, used: Sequence[int], grads, lr, finite: tf.Tensor):
    """Every variable `self._params[i]`, i in `used`, at once: plain
    variables on one device (no strategy).  One XLA kernel instead of one
    per variable: each kernel launch costs more than its work on small
    weights.  Nothing changes unless `finite`."""
    def step():
      self._step_all(tuple(used), grads, lr)
      return tf.no_op()
    return tf.cond(finite, step, tf.no_op)

  def _assign_all(self, used: tuple[int, ...], grads, lr):
    for i, grad in zip(used, grads):
      p = self._params[i]
      self._assign_step(p.var, grad, p.m, p.v, lr, p.decay)


@tf.function(jit_compile=True)
def _adam_step(var, grad, m, v, lr, beta_1: float, beta_2: float,
               epsilon: float, weight_decay_rate: float):
  """(var, m, v) after one step, as one XLA kernel instead of a dozen
  element-wise passes over every weight, each a trip through memory.
  XLA compiles it once per variable shape and decay."""
  next_m = beta_1 * m + (1.0 - beta_1) * grad
  next_v = beta_2 * v + (1.0 - beta_2) * tf.square(grad)
  update = next_m / (tf.sqrt(next_v) + epsilon)
  if weight_decay_rate:
    # Decoupled from m and v: plain L2 added to Adam's gradient would be
    # rescaled by sqrt(v) and decay weights unevenly.
    update += weight_decay_rate * var
  return var - lr * update, next_m, next_v
