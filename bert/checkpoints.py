"""Checkpoints in Google's name-based layout.

Loading is a lookup by name plus a shape check, so Google's pre-trained
checkpoints (`bert_model.ckpt`), checkpoints fine-tuned by Google's
`run_classifier.py` (`model.ckpt-N`) and this project's own checkpoints all load
the same way.  Saving writes the same layout (`bert/...`, `output_weights`,
`.../adam_m`, `.../adam_v`, `global_step`), so Google's tools read ours too.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil

import tensorflow as tf
from absl import logging

from bert.errors import UserError

# Checkpoint variables that are never model weights: optimiser state and the
# pre-training heads. They are reported as a count, not one by one.
_TRAINING_STATE = re.compile(r"(/adam_[mv]$|^global_step$|^cls/)")


def trained_source(output_dir: str | None, init_checkpoint: str | None) -> str:
  """What eval, predict and export load: the output dir when it holds a
  checkpoint, else --init_checkpoint."""
  if output_dir and tf.train.latest_checkpoint(output_dir):
    return output_dir
  if init_checkpoint:
    return init_checkpoint
  raise UserError(f"no checkpoint in --output_dir={output_dir} and no "
                  "--init_checkpoint: train first (--do_train) or pass a "
                  "trained checkpoint")


def is_training_state(name: str) -> bool:
  """Optimiser slots, global_step and the pre-training heads (`cls/...`)."""
  return bool(_TRAINING_STATE.search(name))


def resolve_checkpoint(path: str) -> str:
  """A checkpoint prefix (`.../model.ckpt-100`) or a directory holding a
  `checkpoint` file -> the prefix to read."""
  if tf.io.gfile.isdir(path):
    latest = tf.train.latest_checkpoint(path)
    if latest is None:
      raise UserError(f"{path}: directory holds no checkpoint (no 'checkpoint'"
                      " file pointing at a model.ckpt-N)")
    return latest
  if not tf.io.gfile.exists(path + ".index"):
    raise UserError(f"{path}: no checkpoint here (expected {path}.index and "
                    f"{path}.data-*, or a directory with a 'checkpoint' file)")
  return path


@dataclasses.dataclass
class LoadReport:
  checkpoint: str
  loaded: list[str]
  missing: list[str]   # model variables the checkpoint lacks
  unused: list[str]    # checkpoint variables the model did not take

  def summary(self) -> str:
    ignored = [n for n in self.unused if _TRAINING_STATE.search(n)]
    unused = [n for n in self.unused if not _TRAINING_STATE.search(n)]
    lines = [f"Loaded {len(self.loaded)} variables from {self.checkpoint}"]
    if self.missing:
      lines.append("Not in the checkpoint, left at their initial values: " +
                   ", ".join(self.missing))
    if unused:
      lines.append("Checkpoint variables not used: " + ", ".join(unused))
    if ignored:
      heads = sorted({n.split("/")[0] + "/" + n.split("/")[1]
                      for n in ignored if n.startswith("cls/")})
      lines.append(f"Ignored {len(ignored)} training-state variables "
                   f"(optimizer slots, global_step{', ' if heads else ''}"
                   f"{', '.join(heads)})")
    return "\n".join(lines)


# What reading a damaged checkpoint raises (a truncated data shard gives an
# IndexError "Read less bytes than requested").
_DAMAGE = (tf.errors.OpError, ValueError, IndexError, OSError, RuntimeError)


def candidates(path: str) -> list[str]:
  """The checkpoints to try for `path`: a prefix -> [it]; a directory -> its
  checkpoints, newest first (a damaged newest one falls back to the next)."""
  if not tf.io.gfile.isdir(path):
    return [resolve_checkpoint(path)]
  newest = resolve_checkpoint(path)
  state = tf.train.get_checkpoint_state(path)
  older = [p if os.path.isabs(p) else os.path.join(path, p)
           for p in reversed(state.all_model_checkpoint_paths)] if state else []
  return [newest] + [p for p in older if p != newest and
                     tf.io.gfile.exists(p + ".index")]


def _fallback(damaged: str, error: Exception, others: list[str]) -> None:
  """Warns that `damaged` is unreadable, or raises when nothing is left."""
  reason = str(error).splitlines()[0][:200] if str(error) else (
      error.__class__.__name__)
  if not others:
    raise UserError(f"{damaged}: unreadable checkpoint ({reason})") from None
  logging.warning("%s is damaged (%s); falling back to %s", damaged, reason,
                  others[0])


def load_by_name(variables: dict[str, tf.Variable], checkpoint: str, *,
                 name_map: dict[str, str] | None = None,
                 strict: bool = False) -> LoadReport:
  """Assigns each variable the checkpoint tensor of the same name.

  Args:
    variables: Google name -> variable (see `modeling.variables_by_name`).
    checkpoint: a checkpoint prefix or a directory (its newest intact
      checkpoint: a damaged one is skipped with a warning).
    name_map: optional model name -> checkpoint name overrides (e.g. student
      layer_1 <- teacher layer_2).
    strict: every model variable must be found (prediction, export).

  Returns:
    A LoadReport; its `checkpoint` is the prefix actually read.

  Raises:
    UserError: on a shape mismatch (naming the variable and both shapes), a
      missing variable when `strict`, or when no checkpoint is readable.
  """
  paths = candidates(checkpoint)
  name_map = name_map or {}
  for i, path in enumerate(paths):
    try:
      reader = tf.train.load_checkpoint(path)
      shapes = reader.get_variable_to_shape_map()
    except _DAMAGE as e:
      _fallback(path, e, paths[i + 1:])
      continue
    loaded, missing, used = [], [], set()
    for name, variable in sorted(variables.items()):
      source = name_map.get(name, name)
      if source not in shapes:
        missing.append(name)
        continue
      want = variable.shape.as_list()
      if list(shapes[source]) != want:
        raise UserError(
            f"{path}: variable {source} has shape {list(shapes[source])} in "
            f"the checkpoint but the model needs {want} for {name} (does "
            "bert_config.json / the label list match this checkpoint?)")
      loaded.append(name)
      used.add(source)
    if strict and missing:
      raise UserError(f"{path}: checkpoint lacks {len(missing)} variable(s) "
                      f"the model needs: {', '.join(missing[:5])}"
                      f"{' ...' if len(missing) > 5 else ''}")
    try:  # Every tensor is read before any variable changes.
      values = {name: reader.get_tensor(name_map.get(name, name))
                for name in loaded}
    except _DAMAGE as e:
      _fallback(path, e, paths[i + 1:])
      continue
    for name, value in values.items():
      # A release may store its weights in float16 (half the download).
      dtype = variables[name].dtype.as_numpy_dtype
      variables[name].assign(value.astype(dtype, copy=False))
    unused = sorted(n for n in shapes if n not in used)
    report = LoadReport(path, loaded, missing, unused)
    logging.info("%s", report.summary())
    return report
  raise AssertionError("unreachable")  # _fallback raises on the last one.


def read_global_step(checkpoint: str) -> int:
  """The `global_step` stored in a checkpoint (a directory: its newest
  readable one), 0 when it has none."""
  paths = candidates(checkpoint)
  for i, path in enumerate(paths):
    try:
      reader = tf.train.load_checkpoint(path)
      if reader.has_tensor("global_step"):
        return int(reader.get_tensor("global_step"))
      return 0
    except _DAMAGE as e:
      _fallback(path, e, paths[i + 1:])
  raise AssertionError("unreachable")


def _name_based_saver(var_list: dict[str, tf.Variable],
                      max_to_keep: int = 1) -> tf.compat.v1.train.Saver:
  """The TF1 Saver, used on purpose: it writes Google's name-based layout.
  Its eager-mode deprecation warning would only confuse users."""
  logger = tf.get_logger()
  level = logger.level
  logger.setLevel("ERROR")
  try:
    return tf.compat.v1.train.Saver(var_list=var_list, max_to_keep=max_to_keep,
                                    save_relative_paths=True)
  finally:
    logger.setLevel(level)


def write_checkpoint(arrays: dict, prefix: str) -> str:
  """Writes {Google name: numpy array} as the checkpoint `prefix` (e.g.
  `dir/bert_model.ckpt`: `.index` and `.data-*` files) in Google's layout,
  values unchanged; returns the prefix."""
  with tf.device("/cpu:0"):
    var_list = {name: tf.Variable(value, name=name.replace("/", "_"))
                for name, value in arrays.items()}
  _name_based_saver(var_list).save(None, prefix, write_meta_graph=False,
                                   write_state=False)
  return prefix


def remove_orphans(output_dir: str) -> list[str]:
  """Removes what a checkpoint save killed half-way leaves in `output_dir`:
  temporary files (`*.tempstate*`, `*_temp`) and the files of checkpoints
  newer than the last one the `checkpoint` index lists.  Call only while no
  other run writes there (the run lock).  Returns the removed paths."""
  state = tf.train.get_checkpoint_state(output_dir)
  listed = ({os.path.basename(p) for p in state.all_model_checkpoint_paths}
            if state else set())
  steps = [int(m.group(1)) for m in map(re.compile(r"model\.ckpt-(\d+)$")
                                        .match, listed) if m]
  newest = max(steps, default=-1)
  removed = []
  for name in os.listdir(output_dir):
    path = os.path.join(output_dir, name)
    match = re.match(r"model\.ckpt-(\d+)[._]", name)
    orphan = (".tempstate" in name or name.endswith("_temp") or
              (match and newest >= 0 and int(match.group(1)) > newest and
               name.split(".data-")[0].split(".index")[0] not in listed))
    if orphan:
      if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
      else:
        os.remove(path)
      removed.append(path)
  if removed:
    logging.warning("Removed %d file(s) of checkpoints that were never "
                    "completed: %s", len(removed), ", ".join(sorted(removed)))
  return removed


class CheckpointWriter:
  """Writes `<dir>/model.ckpt-<step>` in Google's layout, keeping the last few.

  TensorFlow writes each checkpoint's files under temporary names and updates
  the `checkpoint` index file by an atomic rename, so a crash at any moment
  leaves the previous checkpoint readable.
  """

  def __init__(self, variables: dict[str, tf.Variable], output_dir: str,
               max_to_keep: int = 3):
    self.output_dir = output_dir
    tf.io.gfile.makedirs(output_dir)
    # A MirroredVariable's copies are equal; the Saver takes the first.
    var_list = {n: getattr(v, "values", (v,))[0] for n, v in variables.items()}
    self._saver = _name_based_saver(var_list, max_to_keep)
    remove_orphans(output_dir)
    state = tf.train.get_checkpoint_state(output_dir)
    if state is not None:
      # Continue rotating the checkpoints of an interrupted run.
      self._saver.recover_last_checkpoints(
          [p for p in state.all_model_checkpoint_paths
           if tf.io.gfile.exists(p + ".index")])

  def save(self, step: int) -> str:
    return self._saver.save(None, os.path.join(self.output_dir, "model.ckpt"),
                            global_step=step, write_meta_graph=False)
