"""The training loop shared by run_classifier.py and run_classifier_distill.py.

A `Trainer` owns the optimiser, the checkpoints and the logs; what is trained
comes in as a loss function.  Training runs under a `tf.distribute` strategy
(one device on CPU, every GPU with `MirroredStrategy`), one compiled step per
batch, and resumes from the latest checkpoint in `output_dir`.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import socket
import tempfile
import time
from typing import Callable, Iterable, Iterator, NamedTuple

import numpy as np
import tensorflow as tf
from absl import logging

from bert import checkpoints, data, files, modeling, optimization
from bert.errors import UserError

# loss_fn(features, training, step) -> (scalar loss averaged over the global
# batch, {name: scalar metric} to log); `step` is the global step (an int64
# scalar tensor, 0 at the first step) for schedules.
LossFn = Callable[[dict, bool, tf.Tensor], tuple[tf.Tensor, dict]]
# step -> learning rate (e.g. `optimization.LinearWarmupDecay`).
Schedule = Callable[[tf.Tensor], tf.Tensor]


# How long a collective (a gradient all-reduce) waits for the other workers.
COLLECTIVE_TIMEOUT_S = 300.0
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker_mirrored",
              "tpu")  # TF Model Garden's names.


class ClusterTask(NamedTuple):
  """This process's place in `TF_CONFIG`."""
  workers: int            # Workers in the cluster, chief included; 0: unset.
  task_type: str | None   # "chief", "worker", ... (None without TF_CONFIG).
  task_index: int
  has_chief: bool = False  # Whether the cluster names a "chief" task.

  @property
  def is_chief(self) -> bool:
    """tf.distribute's rule: the "chief" task, else worker 0 of a cluster
    without one, else the only process."""
    return (self.task_type in (None, "chief") or
            (self.task_type == "worker" and self.task_index == 0 and
             not self.has_chief))


def cluster_task(tf_config: str | None = None) -> ClusterTask:
  """`TF_CONFIG` (default: the environment's) parsed; raises UserError for a
  malformed one or a task outside its cluster."""
  if tf_config is None:
    tf_config = os.environ.get("TF_CONFIG")
  if not tf_config:
    return ClusterTask(0, None, 0)
  try:
    spec = json.loads(tf_config)
    cluster = spec.get("cluster", {})
    workers = len(cluster.get("worker", [])) + len(cluster.get("chief", []))
    task = spec.get("task", {})
  except (ValueError, AttributeError, TypeError) as e:
    raise UserError(f"TF_CONFIG is not valid JSON with a \"cluster\" and a "
                    f"\"task\" ({e})") from None
  kind, index = task.get("type"), task.get("index", 0)
  members = cluster.get(kind) if isinstance(kind, str) else None
  if not isinstance(members, list) or not (
      isinstance(index, int) and 0 <= index < len(members)):
    raise UserError(f"TF_CONFIG: task {kind!r} index {index!r} is not in the "
                    f"cluster ({ {k: len(v) for k, v in cluster.items()} })")
  return ClusterTask(workers, kind, index, has_chief=bool(cluster.get("chief")))


@contextlib.contextmanager
def worker_output_dir(output_dir: str) -> Iterator[str]:
  """Where this process writes: `output_dir` for the chief (under its run
  lock), a temporary directory for any other worker of a multi-worker
  cluster, removed at the end (tf.distribute's rule: every worker saves,
  only the chief's files count)."""
  if cluster_task().is_chief:
    with files.run_lock(output_dir):
      yield output_dir
    return
  scratch = tempfile.mkdtemp(prefix="bert-worker-")
  try:
    yield scratch
  finally:
    shutil.rmtree(scratch, ignore_errors=True)


def get_strategy(name: str = "auto", use_tpu: bool = False,
                 tpu_name: str | None = None, tpu_zone: str | None = None,
                 gcp_project: str | None = None) -> tf.distribute.Strategy:
  """The `tf.distribute` strategy for --distribution_strategy.

  "auto": a TPU with --use_tpu, several workers when TF_CONFIG lists them,
  MirroredStrategy over several GPUs, else one device (`CUDA_VISIBLE_DEVICES`
  decides which GPUs are visible, as in Google's code).  A TPU that cannot
  be reached is an error, never a silent run on the host's CPU.
  """
  if name not in STRATEGIES:
    raise UserError(f"--distribution_strategy must be one of "
                    f"{', '.join(STRATEGIES)}; got {name!r}")
  workers = cluster_task().workers
  if name == "auto" and (use_tpu or workers > 1):
    name = "tpu" if use_tpu else "multi_worker_mirrored"
  if name == "tpu":
    return _tpu_strategy(tpu_name, tpu_zone, gcp_project)
  if name == "multi_worker_mirrored":
    # Before anything lists logical devices: collectives are set up when
    # TensorFlow's runtime starts.
    return _multi_worker_strategy()
  gpus = tf.config.list_logical_devices("GPU")
  if name == "auto":
    name = "mirrored" if len(gpus) > 1 else "one_device"
  if name == "mirrored":
    # Without GPUs, the logical CPU devices (one unless configured).
    return tf.distribute.MirroredStrategy(
        None if gpus else [d.name for d in tf.config.list_logical_devices(
            "CPU")])
  if gpus:
    return tf.distribute.OneDeviceStrategy("/gpu:0")
  return tf.distribute.get_strategy()


def _multi_worker_strategy() -> tf.distribute.Strategy:
  """MultiWorkerMirroredStrategy over TF_CONFIG's workers; a collective that
  waits longer than COLLECTIVE_TIMEOUT_S for a peer fails (a dead worker
  stops the others instead of hanging them)."""
  options = tf.distribute.experimental.CommunicationOptions(
      timeout_seconds=COLLECTIVE_TIMEOUT_S)
  try:
    return tf.distribute.MultiWorkerMirroredStrategy(
        communication_options=options)
  except RuntimeError as e:
    raise UserError(f"--distribution_strategy=multi_worker_mirrored: "
                    f"{str(e).splitlines()[0][:200]}") from None


def _tpu_strategy(tpu_name, tpu_zone, gcp_project) -> tf.distribute.Strategy:
  if not tpu_name:
    # Without a name the resolver would ask the GCE metadata server: off a
    # Cloud TPU VM that means a long wait for nothing.
    raise UserError("--use_tpu/--distribution_strategy=tpu needs --tpu_name "
                    "(the TPU's name, or 'local' on a Cloud TPU VM); this "
                    "project never falls back to the CPU silently")
  try:
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
        tpu=tpu_name, zone=tpu_zone, project=gcp_project)
    _check_tpu_answers(resolver.master(), tpu_name)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
  except UserError:
    raise
  except Exception as e:  # The resolver raises many kinds.
    reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
    raise UserError(f"--tpu_name={tpu_name}: no TPU reachable ({reason}); "
                    "this project never falls back to the CPU "
                    "silently") from None
  return tf.distribute.TPUStrategy(resolver)


# How long a TPU's gRPC address may take to accept a connection.
TPU_CONNECT_TIMEOUT_S = 30


def _check_tpu_answers(master: str, tpu_name: str) -> None:
  """Stops with one line when nothing listens at the TPU's gRPC address:
  TensorFlow's own connection would wait for it forever."""
  match = re.fullmatch(r"grpc://\[?([^\]/]+?)\]?:(\d+)/?", master or "")
  if not match:
    return  # 'local' (a Cloud TPU VM) has no address to try.
  host, port = match.group(1), int(match.group(2))
  try:
    socket.create_connection((host, port),
                             timeout=TPU_CONNECT_TIMEOUT_S).close()
  except OSError as e:
    reason = e.strerror or type(e).__name__
    raise UserError(f"--tpu_name={tpu_name}: no TPU answers at {host}:{port} "
                    f"({reason}); this project never falls back to the CPU "
                    "silently") from None


def check_batch_size(batch_size: int, strategy: tf.distribute.Strategy,
                     flag: str = "--train_batch_size") -> None:
  """The global batch must split evenly over the replicas."""
  replicas = strategy.num_replicas_in_sync
  if batch_size % replicas:
    raise UserError(f"{flag}={batch_size} is the global batch; it must be a "
                    f"multiple of the {replicas} replicas")


# --precision: the dtype models compute in while training (variables, slots
# and checkpoints stay float32; see modeling.compute_dtype).
PRECISIONS = {"float32": tf.float32, "mixed_bfloat16": tf.bfloat16,
              "mixed_float16": tf.float16}
# float16's dynamic loss scale: Keras's LossScaleOptimizer defaults.
INITIAL_LOSS_SCALE = 2.0**15
LOSS_SCALE_GROWTH_STEPS = 2000


def set_seed(seed: int | None) -> None:
  if seed is not None:
    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)


def _collective_failure(error: tf.errors.OpError) -> str:
  """The informative part of a failed collective's message: gRPC's reason
  (e.g. "Connection reset by peer") rather than "Graph execution error:"."""
  found = re.search(r'grpc_message:"([^"]+)"', str(error))
  if found:
    return found.group(1)
  lines = [l.strip() for l in str(error).splitlines() if l.strip()]
  return (lines[-1] if lines else type(error).__name__)[:160]


def resolve_kernels(kernels: str, jit_compile: bool,
                    strategy: tf.distribute.Strategy) -> str:
  """--kernels=auto|reference|fused -> "reference" or "fused".

  auto: `fused.py`'s kernels on CPUs, where they were measured faster
  (benchmarks/RESULTS.md); the plain ops on GPUs and TPUs, and where XLA
  compiles the whole step (`--jit_compile`) and fuses them itself.
  """
  if kernels != "auto":
    if kernels not in modeling.KERNELS:
      raise UserError(f"--kernels={kernels}: expected auto or one of "
                      f"{', '.join(modeling.KERNELS)}")
    return kernels
  on_cpu = not (isinstance(strategy, tf.distribute.TPUStrategy) or
                tf.config.list_logical_devices("GPU") or
                tf.config.list_logical_devices("TPU"))
  return "fused" if on_cpu and not jit_compile else "reference"


class Trainer:
  """Optimiser, checkpoints and the train loop for one model.

  Checkpoints are `output_dir/model.ckpt-<step>` in Google's layout and hold
  the model, the optimiser slots and `global_step`.
  """

  def __init__(self, model: tf.Module, loss_fn: LossFn, *,
               strategy: tf.distribute.Strategy, output_dir: str,
               num_train_steps: int, learning_rate: Schedule | float,
               save_checkpoints_steps: int = 1000,
               log_every: int = 50, keep_checkpoints: int = 3,
               trainable_variables: Iterable[tf.Variable] | None = None,
               extra_checkpoint_variables: dict | None = None,
               seed: int | None = None, precision: str = "float32",
               write_dir: str | None = None, jit_compile: bool = False,
               kernels: str = "auto"):
    if precision not in PRECISIONS:
      raise UserError(f"--precision={precision}: expected one of "
                      f"{', '.join(PRECISIONS)}")
    self.model = model
    self.compute_dtype = PRECISIONS[precision]
    self.jit_compile = jit_compile
    self.kernels = resolve_kernels(kernels, jit_compile, strategy)
    logging.info("Training step kernels: %s", self.kernels)
    # Dropout masks come from (seed, step, replica): with the seeded input
    # order this makes a resumed run equal an uninterrupted one.
    self.seed = 0 if seed is None else seed
    self.loss_fn = loss_fn
    self.strategy = strategy
    self.output_dir = output_dir
    self.num_train_steps = num_train_steps
    self.save_checkpoints_steps = max(1, save_checkpoints_steps)
    self.log_every = max(1, log_every)
    variables = list(trainable_variables or model.trainable_variables)
    self.variables = variables
    with strategy.scope():
      self.optimizer = optimization.AdamWeightDecay(variables, learning_rate)
      self.loss_scale = self.good_steps = None
      if precision == "mixed_float16":
        # float16 gradients underflow below 6e-8: the loss is scaled up
        # before the backward pass and the gradients down after it.
        first_replica = tf.VariableAggregation.ONLY_FIRST_REPLICA
        self.loss_scale = tf.Variable(INITIAL_LOSS_SCALE, trainable=False,
                                      name="loss_scale",
                                      aggregation=first_replica)
        self.good_steps = tf.Variable(0, dtype=tf.int64, trainable=False,
                                      name="loss_scale_good_steps",
                                      aggregation=first_replica)
    self.checkpoint_variables = {
        **modeling.variables_by_name(model),
        **(extra_checkpoint_variables or {}),
        **self.optimizer.checkpoint_variables()}
    if self.loss_scale is not None:
      self.checkpoint_variables.update(loss_scale=self.loss_scale,
                                       loss_scale_good_steps=self.good_steps)
    # Checkpoints are read from `output_dir` and written to `write_dir`: the
    # same directory, except on a worker that is not the chief.
    self.write_dir = write_dir or output_dir
    self.writer = checkpoints.CheckpointWriter(
        self.checkpoint_variables, self.write_dir,
        max_to_keep=keep_checkpoints)
    self.summary_writer = tf.summary.create_file_writer(
        os.path.join(self.write_dir, "train"))

  def _last_checkpoint_note(self) -> str:
    last = tf.train.latest_checkpoint(self.output_dir)
    return f"The last good checkpoint is {last}. " if last else ""

  @property
  def global_step(self) -> int:
    return int(self.optimizer.global_step.numpy())

  def restore(self) -> bool:
    """Resumes from the latest checkpoint in `output_dir`, if there is one."""
    if tf.train.latest_checkpoint(self.output_dir) is None:
      return False
    report = checkpoints.load_by_name(self.checkpoint_variables,
                                      self.output_dir, strict=True)
    logging.info("Resuming from %s at step %d", report.checkpoint,
                 self.global_step)
    return True

  def _save(self, step: int) -> None:
    """Writes model.ckpt-<step>; a full disk stops the run with one line
    (TensorFlow writes under temporary names: the last good checkpoint
    stays)."""
    try:
      path = self.writer.save(step)
    except (OSError, tf.errors.OpError) as e:
      reason = getattr(e, "strerror", None) or str(e).splitlines()[0][:200]
      raise UserError(f"{self.write_dir}: cannot write the checkpoint of "
                      f"step {step} ({reason}). "
                      f"{self._last_checkpoint_note()}Free space and run the "
                      "same command again to resume.") from None
    logging.info("Saved %s", path)

  def make_train_step(self):
    """The compiled step: train_step(distributed iterator) -> metrics.

    With `jit_compile`, XLA compiles the step into a few fused kernels
    instead of running its many small ops one by one: batches are cut to a
    power-of-two length (`data.length_bucket`), so it compiles once per
    length bucket.  With one replica the optimiser's update is compiled
    too; with several, the forward and backward passes only (the gradients'
    all-reduce runs outside XLA).  Without it, batches are cut to a
    multiple of 16 tokens (`data.fused_length_bucket`), which `fused.py`'s
    kernels compile per shape; the plain ops get the same cut, so both
    draw the same dropout masks (`masks.py` hashes each element's index).
    """
    def gradients(features, seed):
      """Loss, metrics and gradients of one replica (float16's loss scale
      divided out again)."""
      step = self.optimizer.global_step.value()
      with tf.GradientTape() as tape, modeling.dropout_seed(seed), \
          modeling.compute_dtype(self.compute_dtype), \
          modeling.training_kernels(self.kernels):
        loss, metrics = self.loss_fn(features, True, step)
        # The optimiser sums gradients over replicas.
        scaled = loss / self.strategy.num_replicas_in_sync
        if self.loss_scale is not None:
          scaled *= self.loss_scale
      grads = tape.gradient(scaled, self.variables)
      if self.loss_scale is not None:
        grads = [_divide(g, self.loss_scale) for g in grads]
      return loss, metrics, grads

    several = self.strategy.num_replicas_in_sync > 1
    if self.jit_compile and several:
      gradients = tf.function(gradients, jit_compile=True)

    def update(features, seed):
      loss, metrics, grads = gradients(features, seed)
      metrics = {**metrics, "loss": loss,
                 **self.optimizer.apply_gradients(grads)}
      if self.loss_scale is not None:
        metrics["loss_scale"] = self._update_loss_scale(metrics["skipped"])
      return metrics

    if self.jit_compile and not several:
      update = tf.function(update, jit_compile=True)

    def replica_step(features):
      features = data.trim_batch(
          features, bucket=(data.length_bucket if self.jit_compile
                            else data.fused_length_bucket))
      step = self.optimizer.global_step.value()
      replica = tf.distribute.get_replica_context().replica_id_in_sync_group
      stream = (tf.cast(step, tf.int64) * self.strategy.num_replicas_in_sync
                + tf.cast(replica, tf.int64))
      return update(features,
                    tf.stack([tf.constant(self.seed, tf.int64), stream]))

    @tf.function
    def train_step(iterator):
      metrics = self.strategy.run(replica_step, args=(next(iterator),))
      return {k: self.strategy.reduce("MEAN", v, axis=None)
              for k, v in metrics.items()}

    return train_step

  def _update_loss_scale(self, skipped: tf.Tensor) -> tf.Tensor:
    """Halves the scale after a step with Inf/NaN gradients (the optimiser
    skipped it), doubles it after LOSS_SCALE_GROWTH_STEPS finite steps in a
    row; returns the scale this step used."""
    used = self.loss_scale.read_value()
    overflow = skipped > 0
    good = tf.where(overflow, tf.constant(0, tf.int64), self.good_steps + 1)
    grow = good >= LOSS_SCALE_GROWTH_STEPS
    self.loss_scale.assign(tf.where(
        overflow, tf.maximum(used / 2, 1.0), tf.where(grow, used * 2, used)))
    self.good_steps.assign(tf.where(grow, tf.constant(0, tf.int64), good))
    return used

  def _still_scaling(self) -> bool:
    """float16 skips steps while its loss scale comes down from 2^15."""
    return self.loss_scale is not None and float(self.loss_scale.numpy()) > 1

  def train(self, dataset: tf.data.Dataset, batch_size: int) -> dict:
    """Runs until `num_train_steps`, logging and checkpointing on the way."""
    start_step = self.global_step
    if start_step >= self.num_train_steps:
      logging.info("Training already complete at step %d", start_step)
      return {}
    if start_step:
      # The input continues where the interrupted run stopped: the shuffle
      # order is seeded, so the same stream minus the batches already used.
      dataset = dataset.skip(start_step)
    # Every worker reads the same seeded stream and keeps its share of each
    # global batch (the features cache is one file: nothing to shard by file).
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    # With tf.data's autotuning on, deleting this endless iterator after the
    # last step waited for its tuning thread: 19-44 s between the last
    # checkpoint and the eval (seen with py-spy in ~IteratorResource).  The
    # input pipeline is a parse per batch; the step is the bottleneck.
    options.autotune.enabled = False
    iterator = iter(self.strategy.experimental_distribute_dataset(
        dataset.with_options(options)))
    train_step = self.make_train_step()
    logging.info("Training steps %d..%d, batch size %d over %d replicas%s",
                 start_step + 1, self.num_train_steps, batch_size,
                 self.strategy.num_replicas_in_sync,
                 ", the step compiled by XLA (once per length bucket)"
                 if self.jit_compile else "")
    window_start, window_steps = time.time(), 0
    run_start = time.time()
    sums: dict[str, float] = {}
    metrics = {}
    for step in range(start_step + 1, self.num_train_steps + 1):
      try:
        metrics = train_step(iterator)
      except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
              tf.errors.CancelledError) as e:
        # A collective gave up on another worker (dead or unreachable).
        raise UserError(
            f"step {step}: another worker stopped answering "
            f"({type(e).__name__}: {_collective_failure(e)}). "
            f"{self._last_checkpoint_note()}Start every worker again with the "
            "same command to resume.") from None
      window_steps += 1
      for k, v in metrics.items():
        sums[k] = sums.get(k, 0.0) + float(v)
      if step % self.log_every == 0 or step == self.num_train_steps:
        elapsed = time.time() - window_start
        rate = window_steps * batch_size / max(elapsed, 1e-9)
        done = step - start_step
        eta = (time.time() - run_start) / done * (self.num_train_steps - step)
        means = {k: v / window_steps for k, v in sums.items()}
        logging.info(
            "step %d/%d loss %.4f lr %.3g %.1f examples/s ETA %s%s", step,
            self.num_train_steps, means["loss"], float(
                metrics["learning_rate"]), rate, _format_seconds(eta),
            "".join(f" {k} {v:.4f}" for k, v in sorted(means.items())
                    if k not in ("loss", "learning_rate", "grad_norm",
                                 "skipped", "loss_scale")))
        skipped = round(sums.get("skipped", 0.0))
        if skipped == window_steps and not self._still_scaling():
          raise UserError(
              f"step {step}: the gradients of all of the last {skipped} steps "
              f"were Inf or NaN (loss {means['loss']:.4g}); stopping. "
              f"{self._last_checkpoint_note()}Lower --learning_rate, or look "
              "for bad values in the inputs or the teacher's outputs.")
        if skipped and self.loss_scale is not None:
          logging.info("%d of the last %d steps overflowed in float16 and "
                       "were skipped; loss scale now %g", skipped,
                       window_steps, float(self.loss_scale.numpy()))
        elif skipped:
          logging.warning("%d of the last %d steps had Inf/NaN gradients and "
                          "were skipped (exploding gradients: a lower "
                          "--learning_rate may help)", skipped, window_steps)
        with self.summary_writer.as_default(step=step):
          for k, v in means.items():
            tf.summary.scalar(k, v)
          tf.summary.scalar("examples_per_second", rate)
        window_start, window_steps, sums = time.time(), 0, {}
      if step % self.save_checkpoints_steps == 0 or step == self.num_train_steps:
        self._save(step)
    self.summary_writer.flush()
    return {k: float(v) for k, v in metrics.items()}


def _divide(grad, scale: tf.Tensor):
  """grad / scale for a dense gradient, an IndexedSlices or None."""
  if grad is None:
    return None
  if isinstance(grad, tf.IndexedSlices):
    return tf.IndexedSlices(grad.values / scale, grad.indices,
                            grad.dense_shape)
  return grad / scale


def _format_seconds(seconds: float) -> str:
  seconds = int(seconds)
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def run_script(config, build: Callable, write_dir: str | None = None):
  """The run of run_classifier.py, run_classifier_distill.py and
  run_pretraining.py, less what is each script's own.

  A worker other than the chief does nothing without --do_train.  Otherwise:
  the seed is set, the strategy chosen (its global batch checked for
  --do_train) and `build(strategy)` called; with --do_train a `Trainer`
  runs over what it returns: the chief writes the run record, training
  resumes from the latest checkpoint (or starts from `parts.init()`) and
  runs to the end.

  Args:
    config: the run's config (`run_config.RunConfig`, `DistillConfig` or
      `PretrainConfig`).
    build: build(strategy) -> parts, the script's own set-up: it builds the
      model under `strategy.scope()` and returns an object with `model`;
      with --do_train also `loss_fn`, `dataset`, `num_train_steps`,
      `learning_rate` and `init()` (the weights of a run with no checkpoint
      to resume), and optionally `trainable_variables` and
      `extra_checkpoint_variables` (the Trainer's), `record` (more fields of
      the run record) and `config` (the config to record, when the build
      completed it).  Anything else on it is the script's.
    write_dir: where this process writes checkpoints (`worker_output_dir`;
      default `config.output_dir`).

  Returns:
    (parts, global step) when the rest of the run (eval, predict, export) is
    this process's: the step trained to, or None without --do_train (the
    script loads its trained model).  None when it is not: a worker other
    than the chief.
  """
  chief = cluster_task().is_chief
  if not config.do_train and not chief:
    logging.info("Not the chief worker: nothing to do without --do_train")
    return None
  set_seed(config.seed)
  strategy = get_strategy(config.distribution_strategy, config.use_tpu,
                          config.tpu_name, config.tpu_zone, config.gcp_project)
  if config.do_train:
    check_batch_size(config.train_batch_size, strategy)
  parts = build(strategy)
  if not config.do_train:
    return parts, None
  trainer = Trainer(
      parts.model, parts.loss_fn, strategy=strategy,
      output_dir=config.output_dir, num_train_steps=parts.num_train_steps,
      learning_rate=parts.learning_rate,
      save_checkpoints_steps=config.save_checkpoints_steps,
      log_every=config.log_steps, keep_checkpoints=config.keep_checkpoint_max,
      trainable_variables=getattr(parts, "trainable_variables", None),
      extra_checkpoint_variables=getattr(parts, "extra_checkpoint_variables",
                                         None),
      seed=config.seed, precision=config.precision, write_dir=write_dir,
      jit_compile=config.jit_compile, kernels=config.kernels)
  if chief:
    from bert import run_config
    run_config.write_record(getattr(parts, "config", config),
                            getattr(parts, "record", None))
  if not trainer.restore():
    parts.init()
  trainer.train(parts.dataset, config.train_batch_size)
  if not chief:
    return None  # The rest of the run is the chief's.
  return parts, trainer.global_step
