import os

import numpy as np
import pytest
import tensorflow as tf

from bert import checkpoints, modeling
from bert.errors import UserError
from tests import helpers


def classifier(num_labels=2, **overrides):
  config = modeling.BertConfig.from_dict({**helpers.TINY_CONFIG, **overrides})
  return modeling.BertClassifier(config, num_labels)


def test_pretrained_checkpoint_reports_missing_head_and_unused(tmp_path):
  weights = helpers.google_weights(helpers.TINY_CONFIG, with_heads=True)
  prefix = helpers.write_google_checkpoint(str(tmp_path / "bert_model.ckpt"),
                                           weights)
  model = classifier()
  report = checkpoints.load_by_name(modeling.variables_by_name(model), prefix)
  assert report.missing == ["output_bias", "output_weights"]
  assert "cls/predictions/output_bias" in report.unused
  assert len(report.loaded) == len(weights) - 7  # 7 cls/ head variables
  np.testing.assert_array_equal(
      model.bert.word_embeddings.numpy(),
      weights["bert/embeddings/word_embeddings"])
  summary = report.summary()
  assert "output_bias, output_weights" in summary and "cls/predictions" in summary


def test_finetuned_checkpoint_with_optimizer_slots(tmp_path):
  weights = helpers.google_weights(helpers.TINY_CONFIG, num_labels=3,
                                   with_heads=False)
  prefix = helpers.write_google_checkpoint(
      str(tmp_path / "model.ckpt"), weights, global_step=7, adam_slots=True)
  assert prefix.endswith("model.ckpt-7")
  model = classifier(num_labels=3)
  # A directory resolves to its latest checkpoint.
  report = checkpoints.load_by_name(modeling.variables_by_name(model),
                                    str(tmp_path), strict=True)
  assert report.missing == []
  assert all(n.endswith(("adam_m", "adam_v")) or n == "global_step"
             for n in report.unused)
  assert "Ignored" in report.summary()
  np.testing.assert_array_equal(model.output_weights.numpy(),
                                weights["output_weights"])
  assert checkpoints.read_global_step(str(tmp_path)) == 7


def test_shape_mismatch_names_variable_and_shapes(tmp_path):
  weights = helpers.google_weights(helpers.TINY_CONFIG, num_labels=3)
  prefix = helpers.write_google_checkpoint(str(tmp_path / "m.ckpt"), weights)
  with pytest.raises(UserError, match=r"output_bias has shape \[3\].*"
                     r"needs \[2\]"):
    checkpoints.load_by_name(modeling.variables_by_name(classifier(2)), prefix)
  with pytest.raises(UserError, match=r"word_embeddings has shape \[64, 32\]"):
    checkpoints.load_by_name(
        modeling.variables_by_name(classifier(3, vocab_size=70)), prefix)


def test_strict_and_missing_checkpoint_errors(tmp_path):
  weights = helpers.google_weights(helpers.TINY_CONFIG)
  prefix = helpers.write_google_checkpoint(str(tmp_path / "m.ckpt"), weights)
  with pytest.raises(UserError, match="lacks 2 variable"):
    checkpoints.load_by_name(modeling.variables_by_name(classifier()), prefix,
                             strict=True)
  with pytest.raises(UserError, match="no checkpoint here"):
    checkpoints.load_by_name({}, str(tmp_path / "absent.ckpt"))
  os.makedirs(tmp_path / "empty")
  with pytest.raises(UserError, match="holds no checkpoint"):
    checkpoints.resolve_checkpoint(str(tmp_path / "empty"))


def test_name_map_copies_chosen_layers(tmp_path):
  weights = helpers.google_weights(helpers.TINY_CONFIG)
  prefix = helpers.write_google_checkpoint(str(tmp_path / "m.ckpt"), weights)
  student = classifier(num_hidden_layers=1)
  variables = modeling.variables_by_name(student)
  name_map = {n: n.replace("layer_0/", "layer_1/") for n in variables}
  checkpoints.load_by_name(variables, prefix, name_map=name_map)
  np.testing.assert_array_equal(
      student.bert.layers[0].attention.query.kernel.numpy(),
      weights["bert/encoder/layer_1/attention/self/query/kernel"])


def test_writer_round_trip_rotation_and_resume(tmp_path):
  model = classifier()
  step = tf.Variable(0, dtype=tf.int64, name="global_step")
  variables = {**modeling.variables_by_name(model), "global_step": step}
  out = str(tmp_path / "run")
  writer = checkpoints.CheckpointWriter(variables, out, max_to_keep=2)
  for s in (1, 2, 3):
    step.assign(s)
    writer.save(s)
  assert not os.path.exists(os.path.join(out, "model.ckpt-1.index"))
  assert tf.train.latest_checkpoint(out).endswith("model.ckpt-3")
  # A new writer (a restarted run) keeps rotating the old checkpoints.
  writer = checkpoints.CheckpointWriter(variables, out, max_to_keep=2)
  step.assign(4)
  writer.save(4)
  assert not os.path.exists(os.path.join(out, "model.ckpt-2.index"))
  assert checkpoints.read_global_step(out) == 4
  # Our checkpoints are in Google's layout: a fresh model loads them by name.
  other = classifier()
  checkpoints.load_by_name(modeling.variables_by_name(other), out, strict=True)
  np.testing.assert_array_equal(other.output_weights.numpy(),
                                model.output_weights.numpy())
  names = {n for n, _ in tf.train.list_variables(out)}
  assert "bert/encoder/layer_1/output/LayerNorm/gamma" in names
