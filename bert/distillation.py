"""Knowledge-distillation losses, teacher ensembles and schedules (pure TF).

Notation (Hinton et al. 2015): teacher logits `v`, student logits `z`,
temperature `T`, `p = softmax(v / T)`, `q = softmax(z / T)`.

    loss = (1 - alpha) * CE(y, softmax(z)) + alpha * T^2 * CE(p, q)

Everything here is a plain function of tensors, safe inside `tf.function`
(`temperature`, `alpha` and `step` may be tensors).  Teacher inputs always go
through `tf.stop_gradient`: the teacher never receives gradient.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from bert.errors import UserError

OBJECTIVES = ("soft_ce", "kl", "logits_mse")
ALPHA_SCHEDULES = ("constant", "anneal")
TEMPERATURE_SCHEDULES = ("constant", "linear")
ENSEMBLE_MEANS = ("arithmetic", "geometric")

# Flag names used in error messages; the scripts define flags of these names.
FLAG_ALPHA = "--alpha"
FLAG_TEMPERATURE = "--temperature"
FLAG_OBJECTIVE = "--distill_objective"
FLAG_ALPHA_SCHEDULE = "--alpha_schedule"
FLAG_TEMPERATURE_SCHEDULE = "--temperature_schedule"
FLAG_ENSEMBLE_MEAN = "--ensemble_mean"


def _check_choice(flag: str, value: str, choices: Sequence[str]) -> None:
  if value not in choices:
    raise UserError(
        f"{flag} must be one of {', '.join(choices)}; got {value!r}")


def validate_distill_flags(alpha: float, temperature: float, objective: str,
                           alpha_schedule: str, temperature_schedule: str,
                           ensemble_mean: str) -> None:
  """Raises `UserError` naming the first bad flag; returns None if all good."""
  # `not (a <= x <= b)` also rejects NaN.
  if not 0.0 <= alpha <= 1.0:
    raise UserError(f"{FLAG_ALPHA} must be in [0, 1]; got {alpha}")
  if not temperature > 0.0 or temperature == float("inf"):
    raise UserError(
        f"{FLAG_TEMPERATURE} must be a finite number > 0; got {temperature}")
  _check_choice(FLAG_OBJECTIVE, objective, OBJECTIVES)
  _check_choice(FLAG_ALPHA_SCHEDULE, alpha_schedule, ALPHA_SCHEDULES)
  _check_choice(FLAG_TEMPERATURE_SCHEDULE, temperature_schedule,
                TEMPERATURE_SCHEDULES)
  _check_choice(FLAG_ENSEMBLE_MEAN, ensemble_mean, ENSEMBLE_MEANS)


def soft_cross_entropy(target_probs: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
  """-sum_c p_c * log_softmax(logits)_c.

  Args:
    target_probs: [B, C] float32 distributions (rows sum to 1).
    logits: [B, C] float32.

  Returns:
    [B] float32 per-example cross-entropy.
  """
  return -tf.reduce_sum(target_probs * tf.nn.log_softmax(logits, axis=-1),
                        axis=-1)


def ensemble_teacher_probs(teacher_logits: Sequence[tf.Tensor],
                           temperature: tf.Tensor | float,
                           mean: str = "arithmetic") -> tf.Tensor:
  """Soft targets of a teacher ensemble at temperature T.

  Args:
    teacher_logits: K tensors [B, C] (or one [K, B, C] tensor).
    temperature: scalar T.
    mean: "arithmetic": mean_k softmax(v_k / T); "geometric": the normalised
      geometric mean of the K distributions, softmax(mean_k log_softmax(v_k/T)),
      which equals softmax(mean_k(v_k) / T).

  Returns:
    [B, C] float32 probabilities (no gradient flows to the teachers); pass as
    `distillation_loss(..., teacher_probs=...)` with the same temperature.
  """
  if mean not in ENSEMBLE_MEANS:
    raise ValueError(f"unknown ensemble mean {mean!r}")
  v = tf.stop_gradient(tf.cast(tf.stack(teacher_logits)
                               if isinstance(teacher_logits, (list, tuple))
                               else teacher_logits, tf.float32))  # [K, B, C]
  t = tf.cast(temperature, tf.float32)
  if mean == "arithmetic":
    return tf.reduce_mean(tf.nn.softmax(v / t, axis=-1), axis=0)
  return tf.nn.softmax(
      tf.reduce_mean(tf.nn.log_softmax(v / t, axis=-1), axis=0), axis=-1)


def ensemble_teacher_logits(teacher_logits: Sequence[tf.Tensor]) -> tf.Tensor:
  """Mean of K teachers' logits [B, C] -> [B, C], the target for logits_mse."""
  v = (tf.stack(teacher_logits) if isinstance(teacher_logits, (list, tuple))
       else teacher_logits)
  return tf.stop_gradient(tf.reduce_mean(tf.cast(v, tf.float32), axis=0))


def distillation_loss(student_logits: tf.Tensor,
                      teacher_logits: tf.Tensor | None = None,
                      labels: tf.Tensor | None = None,
                      has_label: tf.Tensor | None = None,
                      temperature: tf.Tensor | float = 1.0,
                      alpha: tf.Tensor | float = 0.5,
                      objective: str = "soft_ce",
                      *,
                      teacher_probs: tf.Tensor | None = None
                      ) -> dict[str, tf.Tensor]:
  """Hinton-style distillation loss mixed with the gold-label loss.

  loss = hard_weight * hard_loss + soft_weight * soft_loss, where
    hard_loss = CE(y, softmax(z)) at T = 1, averaged over labelled examples
      only (0 when the batch has none);
    soft_loss, averaged over all examples, is per `objective`:
      "soft_ce":    CE(p, q);            soft_weight = alpha * T^2
      "kl":         KL(p || q) = CE(p, q) - H(p): same gradient as soft_ce;
                    soft_weight = alpha * T^2
      "logits_mse": mean over classes of (z - v)^2 (Tang et al. 2019);
                    soft_weight = alpha, T unused.  We average over classes
                    rather than sum (Tang et al.'s squared L2 norm) so the
                    scale does not grow with the number of labels; the sum is
                    C times this value.
    hard_weight = 1 - alpha.
  The T^2 factor keeps the soft gradients, which scale as 1/T^2, balanced
  with the hard ones: d(T^2 CE(p, q))/dz = T * (q - p).

  Args:
    student_logits: [B, C] student logits z.
    teacher_logits: [B, C] teacher logits v (single teacher, or the output
      of `ensemble_teacher_logits`).  Exactly one of this and teacher_probs.
    labels: [B] int gold labels; values of unlabelled examples are ignored
      (any int, e.g. -1).  None means no labelled examples.
    has_label: [B] float, 1 for labelled examples, 0 for unlabelled transfer
      examples.  None means all labelled when labels are given.
    temperature: scalar T > 0.
    alpha: scalar in [0, 1], the weight of the teacher's targets.
    objective: one of OBJECTIVES.
    teacher_probs: [B, C] teacher distribution already at temperature T
      (e.g. from `ensemble_teacher_probs`); not valid for "logits_mse".

  Returns:
    Dict of float32 scalars: loss, hard_loss, soft_loss, hard_weight,
    soft_weight.
  """
  if objective not in OBJECTIVES:
    raise ValueError(f"unknown objective {objective!r}")
  if (teacher_logits is None) == (teacher_probs is None):
    raise ValueError("pass exactly one of teacher_logits and teacher_probs")
  if objective == "logits_mse" and teacher_logits is None:
    raise UserError(f"{FLAG_OBJECTIVE}=logits_mse needs teacher logits, not "
                    "probabilities (ensembles: use ensemble_teacher_logits)")

  z = tf.cast(student_logits, tf.float32)
  t = tf.cast(temperature, tf.float32)
  alpha = tf.cast(alpha, tf.float32)
  num_classes = tf.shape(z)[-1]

  # Hard term: masked mean over labelled examples.
  if labels is None:
    hard_loss = tf.constant(0.0)
  else:
    labels = tf.cast(labels, tf.int32)
    if has_label is None:
      mask = tf.ones_like(labels, tf.float32)
    else:
      mask = tf.cast(has_label, tf.float32)
    # Unlabelled rows may carry placeholder labels such as -1; clamp them so
    # the one-hot is valid, their loss is masked out anyway.
    safe_labels = tf.where(mask > 0, labels, tf.zeros_like(labels))
    hard_ce = soft_cross_entropy(tf.one_hot(safe_labels, num_classes), z)
    hard_loss = tf.math.divide_no_nan(tf.reduce_sum(mask * hard_ce),
                                      tf.reduce_sum(mask))

  # Soft term.
  if objective == "logits_mse":
    v = tf.stop_gradient(tf.cast(teacher_logits, tf.float32))
    soft_loss = tf.reduce_mean(tf.square(z - v))
    soft_weight = alpha
  else:
    if teacher_probs is not None:
      p = tf.stop_gradient(tf.cast(teacher_probs, tf.float32))
    else:
      v = tf.stop_gradient(tf.cast(teacher_logits, tf.float32))
      p = tf.nn.softmax(v / t, axis=-1)
    per_example = soft_cross_entropy(p, z / t)
    if objective == "kl":
      # xlogy: 0 * log 0 = 0 for teacher probabilities that underflow.
      per_example += tf.reduce_sum(tf.math.xlogy(p, p), axis=-1)
    soft_loss = tf.reduce_mean(per_example)
    soft_weight = alpha * tf.square(t)

  hard_weight = 1.0 - alpha
  return {
      "loss": hard_weight * hard_loss + soft_weight * soft_loss,
      "hard_loss": hard_loss,
      "soft_loss": soft_loss,
      "hard_weight": hard_weight,
      "soft_weight": soft_weight,
  }


def _progress(step: tf.Tensor | int, num_train_steps: tf.Tensor | int
              ) -> tf.Tensor:
  """step / num_train_steps clipped to [0, 1], as float32."""
  if isinstance(num_train_steps, (int, float)) and num_train_steps <= 0:
    raise ValueError(f"num_train_steps must be > 0; got {num_train_steps}")
  frac = (tf.cast(step, tf.float32) /
          tf.maximum(tf.cast(num_train_steps, tf.float32), 1.0))
  return tf.clip_by_value(frac, 0.0, 1.0)


def alpha_at(step: tf.Tensor | int, num_train_steps: tf.Tensor | int,
             alpha: float, schedule: str = "constant") -> tf.Tensor:
  """Teacher weight alpha at `step`, a float32 scalar.

  "constant": `alpha`.  "anneal": teacher annealing (BAM!, Clark et al. 2019)
  as in its code, gold weight = step / num_train_steps, so alpha(step) =
  1 - step / num_train_steps: 1 at step 0, 0.5 half-way and 0 at step ==
  num_train_steps (the global step once training ends); `alpha` is ignored.
  """
  if schedule == "constant":
    return tf.cast(alpha, tf.float32)
  if schedule == "anneal":
    return 1.0 - _progress(step, num_train_steps)
  raise ValueError(f"unknown alpha schedule {schedule!r}")


def temperature_at(step: tf.Tensor | int, num_train_steps: tf.Tensor | int,
                   temperature: float, schedule: str = "constant"
                   ) -> tf.Tensor:
  """Temperature at `step`, a float32 scalar.

  "constant": `temperature`.  "linear": T + (1 - T) * step / num_train_steps,
  from T at step 0 down to 1 at step == num_train_steps.
  """
  t = tf.cast(temperature, tf.float32)
  if schedule == "constant":
    return t
  if schedule == "linear":
    return t + (1.0 - t) * _progress(step, num_train_steps)
  raise ValueError(f"unknown temperature schedule {schedule!r}")


def agreement(student_logits: tf.Tensor, teacher_logits: tf.Tensor
              ) -> tf.Tensor:
  """Fraction of examples whose argmax class agrees: [B, C] x 2 -> scalar."""
  same = tf.equal(tf.argmax(student_logits, axis=-1),
                  tf.argmax(teacher_logits, axis=-1))
  return tf.reduce_mean(tf.cast(same, tf.float32))
