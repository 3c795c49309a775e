"""TinyBERT-style distillation of intermediate layers (Jiao et al. 2019).

Besides the logits, a BERT student learns the teacher's embedding output,
the hidden states of mapped layers and their attention scores, with MSE:

  embedding: MSE(E_s W_e, E_t)                       E [B, S, H]
  hidden:    sum_m MSE(H_s[m] W_h, H_t[g(m)])        H [B, S, H]
  attention: sum_m MSE(A_s[m], A_t[g(m)])            A [B, N, S, S]

W_e and W_h ([H_student, H_teacher], no bias) are learnt, and exist only when
the widths differ.  As in the paper there is one W_h shared by every mapped
layer and a separate W_e (TinyBERT's released code instead uses one biased
`fit_dense` for both).  They are training-only: named `distill/...`, saved
in the training checkpoints (so a run resumes, and a later run started with
--init_checkpoint picks them up), never in the exported student.

Layer `m` of an M-layer student (0-based) learns from teacher layer g(m):
"uniform" g(m) = (m + 1) * N / M - 1, so the student's last layer learns
from the teacher's last (the paper's g(m) = m * N / M counts from 1, with
layer 0 the embeddings); "last": the last M teacher layers; or an explicit
comma-separated list.

Averaging.  The attention scores are the unnormalised, masked ones (before
the softmax), as in the paper.  TinyBERT's code zeroes the masked entries
(the -10000 at padded keys) in both models and averages over all B*N*S*S
entries, padded query rows included; here the squared errors are averaged
over real (query, key) pairs only, and the embedding and hidden errors over
real token positions only (and the teacher's width).  On a batch without
padding both give the same value; ours does not depend on how much padding
a batch happens to have (the train step trims batches to their longest
example, so that amount varies).  Per-layer terms are summed over layers as
in TinyBERT; the attention term is a mean over heads.

Stages (--stage): "prediction" trains on the teacher's predictions as
before (`distillation.distillation_loss`: soft labels, mixed with the gold
labels by --alpha), "intermediate" on the intermediate losses
only, and "both" does TinyBERT's two steps in one run: the intermediate
losses for the first --intermediate_fraction of the steps, then the
prediction loss.  The switch is by global step inside the compiled train
step, so a resumed run lands in the right stage, and `StagedLearningRate`
restarts the warm-up and decay at the switch as if each stage were its own
run (TinyBERT runs the two steps separately).  The Adam moments carry over.
Under "both" the parameters that the current stage does not use (the pooler
and head in the intermediate stage, the projections afterwards) get a zero
gradient through tf.cond rather than none, so AdamW still moves them a
little (decoupled weight decay, a factor 1 - lr * 0.01 per step, and the
projections' leftover momentum): negligible, and the projections are unused
by then.

General distillation is the intermediate stage on an unlabelled corpus
(`--stage=intermediate --transfer_file=corpus --train_on_transfer_only`);
its checkpoint, in Google's names, is the --init_checkpoint of a task
distillation run.

Shapes: B batch, S sequence, H width, N heads, L/M teacher/student layers.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import tensorflow as tf
from absl import logging

from bert import modeling, optimization
from bert.errors import UserError

STAGES = ("prediction", "intermediate", "both")
LOSSES = ("embedding", "hidden", "attention")
LAYER_MAPS = ("uniform", "last")

FLAG_STAGE = "--stage"
FLAG_LOSSES = "--intermediate_losses"
FLAG_LAYER_MAP = "--layer_map"
FLAG_FRACTION = "--intermediate_fraction"

# features -> the teacher's `intermediate` outputs: logits [B, C],
# embedding_output [B, S, H], hidden_states [B, L, S, H],
# attention_scores [B, L, N, S, S] (no gradient).
TeacherIntermediateFn = Callable[[dict], dict]
# loss_fn(features, training, step) -> (scalar loss, {name: scalar metric}),
# as `training.LossFn`.
LossFn = Callable[[dict, bool, tf.Tensor], tuple[tf.Tensor, dict]]


def layer_map(student_layers: int, teacher_layers: int,
              spec: str = "uniform") -> list[int]:
  """The 0-based teacher layer each student layer m = 0..M-1 learns from.

  Args:
    student_layers: M.
    teacher_layers: N.
    spec: "uniform" ((m + 1) * N // M - 1), "last" (N - M + m), or
      comma-separated teacher layers, one per student layer, each in [0, N).

  Raises:
    UserError naming --layer_map for a bad spec or M > N with uniform/last.
  """
  spec = spec.strip()
  if spec in LAYER_MAPS:
    if student_layers > teacher_layers:
      raise UserError(
          f"{FLAG_LAYER_MAP}={spec}: the student has {student_layers} layers, "
          f"more than the teacher's {teacher_layers}; list a teacher layer "
          "for each student layer (e.g. 0,0,1,1)")
    if spec == "uniform":
      return [(m + 1) * teacher_layers // student_layers - 1
              for m in range(student_layers)]
    return list(range(teacher_layers - student_layers, teacher_layers))
  try:
    layers = [int(v) for v in spec.split(",")] if spec else []
  except ValueError:
    raise UserError(f"{FLAG_LAYER_MAP} must be uniform, last or comma-"
                    f"separated teacher layers, got {spec!r}") from None
  if len(layers) != student_layers:
    raise UserError(f"{FLAG_LAYER_MAP}={spec} lists {len(layers)} teacher "
                    f"layers but the student has {student_layers}")
  bad = [l for l in layers if not 0 <= l < teacher_layers]
  if bad:
    raise UserError(f"{FLAG_LAYER_MAP}={spec}: layer {bad[0]} is out of "
                    f"range, the teacher's layers are 0..{teacher_layers - 1}")
  return layers


def validate_flags(stage: str, losses: Sequence[str],
                   intermediate_fraction: float) -> tuple[str, ...]:
  """Checks the stage flags before anything loads; returns the losses in
  canonical order."""
  if stage not in STAGES:
    raise UserError(f"{FLAG_STAGE} must be one of {', '.join(STAGES)}; got "
                    f"{stage!r}")
  names = [l.strip() for l in losses if l.strip()]
  unknown = [l for l in names if l not in LOSSES]
  if unknown:
    raise UserError(f"{FLAG_LOSSES}: {unknown[0]!r} is not one of "
                    f"{', '.join(LOSSES)}")
  if stage == "prediction" and names:
    raise UserError(f"{FLAG_LOSSES}={','.join(names)} needs {FLAG_STAGE}="
                    f"intermediate or {FLAG_STAGE}=both ({FLAG_STAGE}="
                    "prediction, the default, learns the soft labels only)")
  if stage != "prediction" and not names:
    raise UserError(f"{FLAG_STAGE}={stage} needs {FLAG_LOSSES} (TinyBERT: "
                    "embedding,hidden,attention)")
  if stage == "both" and not 0.0 < intermediate_fraction < 1.0:
    raise UserError(f"{FLAG_FRACTION} must be in (0, 1); got "
                    f"{intermediate_fraction}")
  return tuple(l for l in LOSSES if l in names)


@dataclasses.dataclass(frozen=True)
class TeacherShape:
  num_layers: int
  num_heads: int
  hidden_size: int


def teacher_shape(intermediate_fn: TeacherIntermediateFn) -> TeacherShape:
  """The teacher's depth, heads and width, from one call on a 2-token input."""
  ones = tf.ones([1, 2], tf.int32)
  out = intermediate_fn({"input_ids": tf.zeros([1, 2], tf.int32),
                         "input_mask": ones, "segment_ids": 0 * ones})
  hidden, scores = out["hidden_states"].shape, out["attention_scores"].shape
  return TeacherShape(num_layers=int(hidden[1]), num_heads=int(scores[2]),
                      hidden_size=int(hidden[-1]))


class Projections(tf.Module):
  """W_e and W_h from the student's width to the teacher's (training-only).

  `distill/embedding_projection/kernel` exists for the embedding loss and
  `distill/hidden_projection/kernel` for the hidden loss, each only when the
  widths differ; otherwise the projection is the identity.
  """

  def __init__(self, student_hidden: int, teacher_hidden: int,
               losses: Sequence[str], initializer_range: float = 0.02):
    super().__init__(name=None)
    self.embedding = self.hidden = None
    if student_hidden != teacher_hidden:
      shape = [student_hidden, teacher_hidden]
      if "embedding" in losses:
        self.embedding = tf.Variable(
            tf.random.truncated_normal(shape, stddev=initializer_range),
            name="distill/embedding_projection/kernel")
      if "hidden" in losses:
        self.hidden = tf.Variable(
            tf.random.truncated_normal(shape, stddev=initializer_range),
            name="distill/hidden_projection/kernel")

  @staticmethod
  def _apply(kernel, x):
    return x if kernel is None else tf.einsum("bsh,ht->bst", x, kernel)

  def project_embedding(self, x: tf.Tensor) -> tf.Tensor:
    """[B, S, H_student] -> [B, S, H_teacher]."""
    return self._apply(self.embedding, x)

  def project_hidden(self, x: tf.Tensor) -> tf.Tensor:
    """[B, S, H_student] -> [B, S, H_teacher]."""
    return self._apply(self.hidden, x)

  def variables_by_name(self) -> dict[str, tf.Variable]:
    """Checkpoint name -> variable (empty when widths match)."""
    return modeling.variables_by_name(self)

  def init_from(self, checkpoint: str) -> list[str]:
    """Loads the projections a checkpoint has (e.g. from general
    distillation); returns the names loaded."""
    reader = tf.train.load_checkpoint(checkpoint)
    loaded = []
    for name, variable in self.variables_by_name().items():
      if (reader.has_tensor(name) and
          list(reader.get_variable_to_shape_map()[name]) ==
          variable.shape.as_list()):
        variable.assign(reader.get_tensor(name))
        loaded.append(name)
    if loaded:
      logging.info("Projections from %s: %s", checkpoint, ", ".join(loaded))
    return loaded


def masked_mse(student: tf.Tensor, teacher: tf.Tensor,
               input_mask: tf.Tensor) -> tf.Tensor:
  """Mean squared error over real positions and the last axis.

  student, teacher [B, S, H]; input_mask [B, S] 1/0 -> float32 scalar.
  """
  mask = tf.cast(input_mask, tf.float32)
  per_position = tf.reduce_mean(tf.square(student - teacher), axis=-1)
  return tf.math.divide_no_nan(tf.reduce_sum(per_position * mask),
                               tf.reduce_sum(mask))


def attention_mse(student: tf.Tensor, teacher: tf.Tensor,
                  input_mask: tf.Tensor) -> tf.Tensor:
  """Mean squared error of attention scores over heads and real (query, key)
  pairs.

  student, teacher [B, N, S, S] (pre-softmax; the -10000 of masked keys is
  excluded by the mask); input_mask [B, S] -> float32 scalar.
  """
  mask = tf.cast(input_mask, tf.float32)
  pairs = mask[:, tf.newaxis, :, tf.newaxis] * mask[:, tf.newaxis, tf.newaxis]
  per_pair = tf.reduce_mean(tf.square(student - teacher), axis=1,
                            keepdims=True)  # mean over heads: [B, 1, S, S]
  return tf.math.divide_no_nan(tf.reduce_sum(per_pair * pairs),
                               tf.reduce_sum(pairs))


def intermediate_loss(student_outputs: modeling.BertOutputs, teacher: dict,
                      input_mask: tf.Tensor, losses: Sequence[str],
                      mapping: Sequence[int],
                      projections: Projections) -> dict[str, tf.Tensor]:
  """TinyBERT's intermediate losses, one float32 scalar per name in `losses`.

  Args:
    student_outputs: the student's `BertOutputs` (embedding_output [B, S, H],
      encoder_outputs M x [B, S, H], attention_scores M x [B, N, S, S]).
    teacher: the teacher's `intermediate` outputs: embedding_output
      [B, S, H_t], hidden_states [B, L, S, H_t], attention_scores
      [B, L, N, S, S].
    input_mask: [B, S] 1/0.
    losses: names from LOSSES.
    mapping: the teacher layer for each student layer (`layer_map`).
    projections: W_e, W_h.

  Returns:
    {"embedding": ..., "hidden": ..., "attention": ...} for the requested
    names; "hidden" and "attention" are sums over the mapped layers.
  """
  teacher = {k: tf.stop_gradient(tf.cast(v, tf.float32))
             for k, v in teacher.items()}
  student_outputs = student_outputs.to_float32()
  out = {}
  if "embedding" in losses:
    out["embedding"] = masked_mse(
        projections.project_embedding(student_outputs.embedding_output),
        teacher["embedding_output"], input_mask)
  if "hidden" in losses:
    student_layers = student_outputs.encoder_outputs
    out["hidden"] = tf.add_n([tf.constant(0.0)] + [
        masked_mse(projections.project_hidden(student_layers[m]),
                   teacher["hidden_states"][:, t], input_mask)
        for m, t in enumerate(mapping)])
  if "attention" in losses:
    out["attention"] = tf.add_n([tf.constant(0.0)] + [
        attention_mse(student_outputs.attention_scores[m],
                      teacher["attention_scores"][:, t], input_mask)
        for m, t in enumerate(mapping)])
  return out


@dataclasses.dataclass(frozen=True)
class Plan:
  """What one run distils: the stage, the losses, the layer mapping and the
  step at which "both" switches to the prediction stage."""
  stage: str = "prediction"
  losses: tuple[str, ...] = ()
  mapping: tuple[int, ...] = ()
  split_step: int | None = None

  def prediction_steps(self, num_train_steps: int) -> tuple[int, int]:
    """(length, first step) of the prediction stage, for the soft-label
    loss's schedules: under "both" they run over that stage only."""
    first = self.split_step if self.stage == "both" else 0
    return num_train_steps - first, first


def split_step(num_train_steps: int, intermediate_fraction: float) -> int:
  """The first step of the prediction stage of --stage=both."""
  split = int(round(num_train_steps * intermediate_fraction))
  if not 0 < split < num_train_steps:
    raise UserError(
        f"{FLAG_FRACTION}={intermediate_fraction} of {num_train_steps} "
        f"training steps leaves {'no' if split <= 0 else 'no prediction'} "
        f"{'intermediate ' if split <= 0 else ''}step; train longer or "
        "change the fraction")
  return split


def make_plan(stage: str, losses: Sequence[str], layer_map_spec: str,
              intermediate_fraction: float, student_config,
              teacher: TeacherShape | None, num_teachers: int,
              num_train_steps: int) -> Plan:
  """Pre-flight checks of the student against the teacher -> the Plan.

  Args:
    stage, losses, layer_map_spec, intermediate_fraction: the flags (checked
      by `validate_flags`).
    student_config: the student's config (a `modeling.BertConfig` for the
      intermediate stages).
    teacher: the teacher's shape (`teacher_shape`); unused for "prediction".
    num_teachers: intermediate losses take one teacher.
    num_train_steps: the run's length.
  """
  losses = tuple(l for l in LOSSES if l in [n.strip() for n in losses])
  if stage == "prediction":
    return Plan()
  if not isinstance(student_config, modeling.BertConfig):
    raise UserError(f"{FLAG_STAGE}={stage} needs a BERT student: the "
                    "intermediate losses match transformer layers")
  if num_teachers != 1:
    raise UserError(f"{FLAG_STAGE}={stage} takes one --teacher_model, got "
                    f"{num_teachers}")
  if ("attention" in losses and
      student_config.num_attention_heads != teacher.num_heads):
    raise UserError(
        f"student has {student_config.num_attention_heads} heads, teacher "
        f"{teacher.num_heads}; {FLAG_LOSSES}=attention needs equal heads")
  mapping = layer_map(student_config.num_hidden_layers, teacher.num_layers,
                      layer_map_spec)
  split = (split_step(num_train_steps, intermediate_fraction)
           if stage == "both" else None)
  logging.info("Distilling %s: %s; student layer -> teacher layer %s%s",
               stage, ", ".join(losses),
               ", ".join(f"{m}->{t}" for m, t in enumerate(mapping)),
               f"; prediction stage from step {split + 1}" if split else "")
  return Plan(stage, losses, tuple(mapping), split)


def teacher_intermediate_fn(teacher) -> TeacherIntermediateFn:
  """features -> `teacher.intermediate(...)` (a `teacher.Teacher`)."""
  return lambda features: teacher.intermediate(
      features["input_ids"], features["input_mask"], features["segment_ids"])


def prepare(stage: str, losses: Sequence[str], layer_map_spec: str,
            intermediate_fraction: float, model: tf.Module, teacher,
            num_train_steps: int) -> tuple[Plan, Projections | None]:
  """Pre-flight checks -> the run's Plan and, for the intermediate stages,
  its Projections (call under the training strategy's scope: it creates
  them).

  Args:
    stage, losses, layer_map_spec, intermediate_fraction: the flags (checked
      by `validate_flags`).
    model: the student; its `config` is checked against the teacher.
    teacher: a `teacher.Teacher` (its `size` and `intermediate`).
    num_train_steps: the run's length.
  """
  if stage == "prediction":
    return Plan(), None
  if not isinstance(model.config, modeling.BertConfig):
    raise UserError(f"{FLAG_STAGE}={stage} needs a BERT student: the "
                    "intermediate losses match transformer layers")
  # Also checks that there is one teacher and it has the signature.
  shape = teacher_shape(teacher_intermediate_fn(teacher))
  plan = make_plan(stage, losses, layer_map_spec, intermediate_fraction,
                   model.config, shape, teacher.size, num_train_steps)
  projections = Projections(model.config.hidden_size, shape.hidden_size,
                            plan.losses, model.config.initializer_range)
  return plan, projections


class StagedLearningRate:
  """Google's warm-up and linear decay, restarted when "both" switches
  stage: steps [0, split) and [split, num_train_steps) each get their own
  `optimization.LinearWarmupDecay` over their length."""

  def __init__(self, init_lr: float, num_train_steps: int, split: int,
               warmup_proportion: float):
    second = num_train_steps - split
    self.split = split
    self.first = optimization.LinearWarmupDecay(
        init_lr, split, int(split * warmup_proportion))
    self.second = optimization.LinearWarmupDecay(
        init_lr, second, int(second * warmup_proportion))

  def __call__(self, step: tf.Tensor) -> tf.Tensor:
    step = tf.cast(step, tf.int64)
    return tf.where(step < self.split, self.first(step),
                    self.second(tf.maximum(step - self.split, 0)))


def make_loss_fn(model: modeling.BertClassifier, plan: Plan,
                 projections: Projections | None,
                 prediction_loss_fn: LossFn | None,
                 teacher_intermediate_fn: TeacherIntermediateFn | None
                 ) -> LossFn:
  """The train loss of `plan`'s stage(s) for `training.Trainer`.

  Args:
    model: the student (a BertClassifier when the plan has intermediate
      losses).
    plan: from `make_plan`.
    projections: W_e, W_h (their variables must be among the trainer's).
    prediction_loss_fn: the soft-label loss (features, training) ->
      (loss, metrics); needed by "prediction" and "both".
    teacher_intermediate_fn: features -> the teacher's `intermediate`
      outputs; needed by "intermediate" and "both".

  Returns:
    loss_fn(features, training, step) -> (loss, metrics).  The intermediate stage
    logs `<name>_loss` for each loss; under "both", every metric of either
    stage is logged, 0 in the stage that does not compute it.
  """
  if plan.stage == "prediction":
    return prediction_loss_fn

  def intermediate(features, training, step=None):
    del step
    _, outputs = model.forward(features["input_ids"], features["input_mask"],
                               features["segment_ids"], training=training)
    losses = intermediate_loss(outputs, teacher_intermediate_fn(features),
                               features["input_mask"], plan.losses,
                               plan.mapping, projections)
    return (tf.add_n(list(losses.values())),
            {f"{k}_loss": v for k, v in losses.items()})

  if plan.stage == "intermediate":
    return intermediate

  names = [f"{k}_loss" for k in plan.losses]

  def loss_fn(features, training, step):
    # Both branches must return the same structure.  tf.cond traces its
    # true branch first, so the prediction metrics' names are known when the
    # intermediate branch is traced; only the current stage's branch runs.
    prediction_names = []

    def prediction():
      loss, metrics = prediction_loss_fn(features, training, step)
      prediction_names.extend(sorted(metrics))
      return loss, {**{k: tf.constant(0.0) for k in names}, **metrics}

    def first_stage():
      if not prediction_names:
        raise RuntimeError("tf.cond traced the false branch first")
      loss, metrics = intermediate(features, training)
      return loss, {**metrics,
                    **{k: tf.constant(0.0) for k in prediction_names}}

    in_prediction = tf.cast(step, tf.int64) >= plan.split_step
    if tf.executing_eagerly():  # Outside tf.function (tests): no padding.
      return (prediction_loss_fn(features, training, step) if in_prediction
              else intermediate(features, training))
    return tf.cond(in_prediction, prediction, first_stage)

  return loss_fn
