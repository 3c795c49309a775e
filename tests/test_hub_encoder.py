"""bert/hub_encoder.py: our encoder in TF Hub's BERT format, and fine-tuning
TF Hub encoders with run_classifier.py (tiny config, local paths only)."""

import os
import subprocess

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub

from bert import hub_encoder, modeling, run_classifier
from bert.errors import UserError
from tests import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUERY = "bert/encoder/layer_0/attention/self/query/kernel"


def google_bert(seed=0):
  """A BertModel holding `helpers.google_weights`, and those weights."""
  weights = helpers.google_weights(helpers.TINY_CONFIG, seed=seed,
                                   with_heads=False)
  bert = modeling.BertModel(modeling.BertConfig.from_dict(helpers.TINY_CONFIG))
  for name, variable in modeling.variables_by_name(bert).items():
    variable.assign(weights[name])
  return bert, weights


def encoder_inputs():
  ids = np.array([[2, 5, 6, 7, 3, 0, 0], [2, 14, 16, 3, 10, 9, 3]], np.int32)
  mask = (ids > 0).astype(np.int32)
  types = np.array([[0] * 7, [0, 0, 0, 0, 1, 1, 1]], np.int32)
  return {"input_word_ids": ids, "input_mask": mask, "input_type_ids": types}


@pytest.fixture
def exported(tmp_path):
  bert, weights = google_bert()
  vocab = helpers.write_vocab(str(tmp_path))
  path = hub_encoder.export_encoder(bert, str(tmp_path / "encoder"),
                                    vocab_file=vocab, do_lower_case=False)
  return path, bert, weights


def test_export_loads_with_hub_and_matches_the_model(exported):
  path, bert, weights = exported
  inputs = encoder_inputs()
  encoder = hub.load(path)
  out = encoder(inputs, training=False)
  ref = bert(inputs["input_word_ids"], inputs["input_mask"],
             inputs["input_type_ids"])
  # Independent reference: the numpy BERT of the same weights.
  _, np_layers, _, np_pooled = helpers.numpy_bert(
      weights, helpers.TINY_CONFIG, inputs["input_word_ids"],
      inputs["input_mask"], inputs["input_type_ids"])
  np.testing.assert_allclose(out["pooled_output"], ref.pooled_output,
                             atol=1e-5)
  np.testing.assert_allclose(out["pooled_output"], np_pooled, atol=1e-4)
  np.testing.assert_allclose(out["default"], out["pooled_output"])
  np.testing.assert_allclose(out["sequence_output"], ref.sequence_output,
                             atol=1e-5)
  assert len(out["encoder_outputs"]) == 2
  for got, want in zip(out["encoder_outputs"], np_layers):
    np.testing.assert_allclose(got, want, atol=1e-4)

  # Without `training` it is inference; with training=True dropout is on.
  np.testing.assert_allclose(encoder(inputs)["sequence_output"],
                             out["sequence_output"], atol=1e-6)
  trained = encoder(inputs, training=True)["sequence_output"]
  assert np.abs(trained - out["sequence_output"]).max() > 1e-2

  serve = encoder.signatures["serving_default"]
  flat = serve(**{k: tf.constant(v) for k, v in inputs.items()})
  assert set(flat) == {"pooled_output", "default", "sequence_output",
                       "encoder_outputs_0", "encoder_outputs_1"}
  np.testing.assert_allclose(flat["encoder_outputs_1"],
                             out["encoder_outputs"][1], atol=1e-6)

  # TF Hub's reusable SavedModel API and tokenization info.
  assert len(encoder.trainable_variables) == len(bert.trainable_variables)
  assert ({v.name for v in encoder.variables} ==
          {v.name for v in bert.variables})
  vocab_file, do_lower_case = hub_encoder.tokenization_info(encoder)
  with open(vocab_file, encoding="utf-8") as f:
    assert f.read().split() == helpers.TINY_VOCAB
  assert do_lower_case is False


def test_keras_layer_fine_tunes_the_export(exported):
  # hub.KerasLayer is how most TF Hub users consume these encoders.
  path, bert, _ = exported
  layer = hub.KerasLayer(path, trainable=True)
  inputs = {k: tf.constant(v) for k, v in encoder_inputs().items()}
  out = layer(inputs, training=False)
  ref = bert(inputs["input_word_ids"], inputs["input_mask"],
             inputs["input_type_ids"])
  np.testing.assert_allclose(out["pooled_output"], ref.pooled_output,
                             atol=1e-5)
  assert len(layer.trainable_weights) == len(bert.trainable_variables)


def test_exports_are_versioned(exported, tmp_path):
  path, bert, _ = exported
  assert path == str(tmp_path / "encoder" / "1")
  second = hub_encoder.export_encoder(bert, str(tmp_path / "encoder"))
  assert second == str(tmp_path / "encoder" / "2")
  assert sorted(os.listdir(tmp_path / "encoder")) == ["1", "2"]
  # Without vocab_file/do_lower_case there is nothing to report.
  assert hub_encoder.tokenization_info(hub.load(second)) == (None, None)
  # A base directory resolves to its latest version.
  assert hub_encoder.resolve_handle(str(tmp_path / "encoder")) == second


@pytest.mark.slow
def test_saved_model_cli_shows_the_signature(exported):
  path, _, _ = exported
  result = subprocess.run(
      [os.path.join(ROOT, ".venv", "bin", "saved_model_cli"), "show",
       "--dir", path, "--all"], capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  signature = result.stdout.split("signature_def['serving_default']")[1]
  for name in ("input_word_ids", "input_mask", "input_type_ids",
               "pooled_output", "sequence_output", "encoder_outputs_1"):
    assert f"['{name}']" in signature, name


def test_hub_classifier_head_names_and_gradients(exported):
  path, bert, _ = exported
  model = hub_encoder.HubClassifier(path, num_labels=3)
  assert model.hidden_size == 32
  assert model.do_lower_case is False
  assert model.vocab_file.endswith("vocab.txt")
  assert model.vocab_size == 64 and model.max_position_embeddings == 40
  names = modeling.variables_by_name(model)
  assert set(names) == (set(modeling.variables_by_name(bert)) |
                        {"output_weights", "output_bias"})
  assert names["output_weights"].shape == [3, 32]
  assert len(model.trainable_variables) == len(bert.trainable_variables) + 2

  inputs = encoder_inputs()
  args = (inputs["input_word_ids"], inputs["input_mask"],
          inputs["input_type_ids"])
  logits, _ = model.forward(*args, training=False)
  pooled = bert(*args).pooled_output.numpy()
  want = pooled @ model.output_weights.numpy().T + model.output_bias.numpy()
  np.testing.assert_allclose(logits, want, atol=1e-5)
  assert model(*args).shape == [2, 3]

  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(model(*args, training=True) ** 2)
  grads = tape.gradient(loss, model.trainable_variables)
  assert all(g is not None for g in grads)
  query_grad = [g for v, g in zip(model.trainable_variables, grads)
                if v is names[QUERY]]
  assert float(tf.norm(query_grad[0])) > 0


def test_bad_handle_is_a_user_error(tmp_path):
  with pytest.raises(UserError, match="bert_hub_module_handle"):
    hub_encoder.HubClassifier(str(tmp_path / "missing"), 2)
  (tmp_path / "empty").mkdir()
  with pytest.raises(UserError, match="not a SavedModel"):
    hub_encoder.HubClassifier(str(tmp_path / "empty"), 2)


def run(tmp_path, **flags):
  d = str(tmp_path)
  base = {"task_name": "emotion", "vocab_file": helpers.write_vocab(d),
          "data_dir": helpers.write_emotion_data(os.path.join(d, "data")),
          "output_dir": os.path.join(d, "out"), "max_seq_length": 16,
          "train_batch_size": 8, "learning_rate": 2e-3, "log_steps": 20}
  return helpers.run_main(run_classifier.main, **{**base, **flags})


def test_run_classifier_fine_tunes_a_hub_encoder(exported, tmp_path):
  path, _, weights = exported
  run(tmp_path, bert_hub_module_handle=os.path.dirname(path), do_train=True,
      do_eval=True, num_train_epochs=1)
  out = tmp_path / "out"
  results = dict(line.strip().split(" = ")
                 for line in open(out / "eval_results.txt"))
  assert int(results["global_step"]) == 96 // 8
  # The encoder was fine-tuned, not frozen, and saved under Google's names.
  reader = tf.train.load_checkpoint(str(out))
  assert reader.get_tensor("output_weights").shape == (2, 32)
  assert np.abs(reader.get_tensor(QUERY) - weights[QUERY]).max() > 1e-4
  # The exported SavedModel itself is untouched.
  reloaded = modeling.variables_by_name(hub_encoder.HubClassifier(path, 2))
  np.testing.assert_array_equal(reloaded[QUERY].numpy(), weights[QUERY])


def test_run_classifier_exports_an_encoder(tmp_path):
  weights = helpers.google_weights(helpers.TINY_CONFIG, num_labels=2,
                                   with_heads=False)
  checkpoint = helpers.write_google_checkpoint(
      str(tmp_path / "model.ckpt"), weights, global_step=3)
  export_dir = str(tmp_path / "export")
  run(tmp_path, bert_config_file=helpers.write_config(str(tmp_path)),
      init_checkpoint=checkpoint, do_export_encoder=True,
      export_dir=export_dir)
  encoder = hub.load(os.path.join(export_dir, "1"))
  vocab_file, do_lower_case = hub_encoder.tokenization_info(encoder)
  assert do_lower_case is True and os.path.exists(vocab_file)
  inputs = encoder_inputs()
  _, _, _, np_pooled = helpers.numpy_bert(
      weights, helpers.TINY_CONFIG, inputs["input_word_ids"],
      inputs["input_mask"], inputs["input_type_ids"])
  np.testing.assert_allclose(encoder(inputs)["pooled_output"], np_pooled,
                             atol=1e-4)
