"""TF Hub BERT encoders: export ours in their format, fine-tune any of them.

The format is that of TF Hub's TF2 BERT encoders (e.g.
`bert_en_uncased_L-12_H-768_A-12/4`): a SavedModel whose root object is
callable as

  outputs = encoder(inputs, training=False)
  inputs:  {"input_word_ids", "input_mask", "input_type_ids"}: int32 [B, S]
  outputs: {"pooled_output": [B, H], "sequence_output": [B, S, H],
            "encoder_outputs": L x [B, S, H], "default": pooled_output}

with `variables`/`trainable_variables`/`regularization_losses` for fine-tuning
(TF Hub's reusable SavedModel API), a `serving_default` signature with the
same inputs (the per-layer outputs flattened to `encoder_outputs_<i>`, since
signatures return only flat dicts of tensors), and, as TF Hub's BERT models,
the `vocab_file` asset and the `do_lower_case` variable.

`HubClassifier` is Google's run_classifier_with_tfhub.py in TF2: a loaded
encoder plus the `output_weights`/`output_bias` head of `BertClassifier`.
"""

from __future__ import annotations

import tensorflow as tf

from bert import export, modeling
from bert import export_reader
from bert.errors import UserError


def _inputs_spec() -> dict[str, tf.TensorSpec]:
  return {name: tf.TensorSpec([None, None], tf.int32, name=name)
          for name in ("input_word_ids", "input_mask", "input_type_ids")}


class _EncoderExport(tf.Module):
  """What `export_encoder` saves."""

  # TF Hub's API wants `variables` and `trainable_variables` saved as plain
  # attributes; these class attributes shadow tf.Module's properties of the
  # same names so that the instance can carry them.
  variables = None
  trainable_variables = None

  def __init__(self, bert: modeling.BertModel, vocab_file: str | None,
               do_lower_case: bool | None):
    super().__init__(name=None)
    self.bert = bert
    self.variables = list(bert.variables)
    self.trainable_variables = list(bert.trainable_variables)
    self.regularization_losses = []
    if vocab_file:
      self.vocab_file = tf.saved_model.Asset(vocab_file)
    if do_lower_case is not None:
      self.do_lower_case = tf.Variable(bool(do_lower_case), trainable=False,
                                       name="do_lower_case")

  @tf.function
  def __call__(self, inputs: dict, training: bool = False) -> dict:
    """inputs: int32 [B, S] dict -> pooled [B, H], sequence [B, S, H], ..."""
    out = self.bert(inputs["input_word_ids"], inputs["input_mask"],
                    inputs["input_type_ids"], training=training)
    return {"pooled_output": out.pooled_output,
            "sequence_output": out.sequence_output,
            "encoder_outputs": list(out.encoder_outputs),
            "default": out.pooled_output}

  @tf.function(input_signature=[_inputs_spec()])
  def serve(self, inputs: dict) -> dict[str, tf.Tensor]:
    outputs = self(inputs, training=False)
    flat = {k: v for k, v in outputs.items() if k != "encoder_outputs"}
    for i, layer in enumerate(outputs["encoder_outputs"]):
      flat[f"encoder_outputs_{i}"] = layer
    return flat


def export_encoder(bert: modeling.BertModel, export_dir: str,
                   vocab_file: str | None = None,
                   do_lower_case: bool | None = None) -> str:
  """Saves `bert` in TF Hub's BERT encoder format as the next version under
  `export_dir` (written under a temporary name, then renamed).

  Returns the version directory, loadable with `hub.load` or `HubClassifier`.
  """
  if vocab_file and not tf.io.gfile.exists(vocab_file):
    raise UserError(f"{vocab_file}: vocab file not found")
  module = _EncoderExport(bert, vocab_file, do_lower_case)
  # Restored functions dispatch on Python arguments only among the traces
  # that were saved, so `training` needs one trace per value.
  for training in (False, True):
    module.__call__.get_concrete_function(_inputs_spec(), training=training)
  return export.save_versioned(module, export_dir,
                               {"serving_default": module.serve})


def resolve_handle(handle: str) -> str:
  """A local SavedModel directory, or an export base -> its latest version;
  other handles (URLs) are passed on to `tensorflow_hub` unchanged."""
  if "://" in handle:
    return handle
  if not tf.io.gfile.exists(handle):
    raise UserError(f"--bert_hub_module_handle={handle}: no such directory")
  return export_reader.resolve_export(handle)


def load_encoder(handle: str):
  """`hub.load` of a TF Hub BERT encoder; checks it is one."""
  import tensorflow_hub as hub  # Only hub users pay for the import.
  path = resolve_handle(handle)
  encoder = hub.load(path)
  if not callable(encoder) or not hasattr(encoder, "trainable_variables"):
    raise UserError(f"--bert_hub_module_handle={handle}: not a TF2 BERT "
                    "encoder (needs __call__ and trainable_variables)")
  return encoder


def tokenization_info(encoder) -> tuple[str | None, bool | None]:
  """(vocab file path, do_lower_case) of a loaded encoder, None if absent."""
  vocab = getattr(encoder, "vocab_file", None)
  lower = getattr(encoder, "do_lower_case", None)
  return (vocab.asset_path.numpy().decode() if vocab is not None else None,
          bool(lower.numpy()) if lower is not None else None)


class HubClassifier(tf.Module):
  """A TF Hub BERT encoder plus Google's run_classifier head.

  Fine-tunes the whole encoder, as `hub.Module(trainable=True)` did in
  Google's run_classifier_with_tfhub.py.  Variables keep the names they were
  saved with (`bert/encoder/layer_0/...` for `export_encoder`'s encoders,
  e.g. `transformer/layer_0/...` for Keras-based ones), so the name-based
  checkpoints of `training.Trainer` work for either.
  """

  def __init__(self, handle: str, num_labels: int):
    super().__init__(name=None)
    self.handle = handle
    self.num_labels = num_labels
    self.encoder = load_encoder(handle)
    # tf.Module does not look inside the loaded object: these lists make the
    # encoder's weights part of this module's (trainable_)variables.  The
    # `do_lower_case` flag is metadata, not a weight to checkpoint.
    flag = getattr(self.encoder, "do_lower_case", None)
    self.encoder_variables = [v for v in self.encoder.variables
                              if v is not flag]
    self.encoder_trainable_variables = list(self.encoder.trainable_variables)
    self.vocab_file, self.do_lower_case = tokenization_info(self.encoder)
    one = tf.ones([1, 1], tf.int32)
    pooled = self._encode(one, one, tf.zeros_like(one), False)["pooled_output"]
    self.hidden_size = int(pooled.shape[-1])
    # For input checks; None when the encoder's names do not tell.
    self.vocab_size = self._embedding_rows("word_embeddings")
    self.max_position_embeddings = self._embedding_rows("position_embedding")
    self.output_weights = tf.Variable(
        tf.random.truncated_normal([num_labels, self.hidden_size],
                                   stddev=0.02), name="output_weights")
    self.output_bias = tf.Variable(tf.zeros([num_labels]), name="output_bias")
    names = [v.name for v in self.variables]
    if len(set(names)) != len(names):
      raise UserError(f"--bert_hub_module_handle={handle}: the encoder's "
                      "variable names are not unique, so name-based "
                      "checkpoints cannot hold them")

  def _embedding_rows(self, name_part: str) -> int | None:
    """Rows of the 2-D variable whose name contains `name_part`, e.g.
    `bert/embeddings/word_embeddings` or `word_embeddings/embeddings`."""
    rows = {int(v.shape[0]) for v in self.encoder_variables
            if name_part in v.name and v.shape.rank == 2}
    return rows.pop() if len(rows) == 1 else None

  def _encode(self, input_ids, input_mask, segment_ids, training: bool):
    return self.encoder({"input_word_ids": tf.cast(input_ids, tf.int32),
                         "input_mask": tf.cast(input_mask, tf.int32),
                         "input_type_ids": tf.cast(segment_ids, tf.int32)},
                        training=training)

  def forward(self, input_ids, input_mask, segment_ids,
              training: bool = False) -> tuple[tf.Tensor, dict]:
    """int [B, S] inputs -> (logits [B, C], the encoder's output dict)."""
    outputs = self._encode(input_ids, input_mask, segment_ids, training)
    pooled = modeling.dropout(outputs["pooled_output"], 0.1, training)
    logits = tf.matmul(pooled, self.output_weights, transpose_b=True)
    return logits + self.output_bias, outputs

  def __call__(self, input_ids, input_mask, segment_ids,
               training: bool = False) -> tf.Tensor:
    """int [B, S] inputs -> logits [B, C]."""
    return self.forward(input_ids, input_mask, segment_ids, training)[0]
