"""Per-token BERT activations as JSON lines, like Google's extract_features.py.

Input: one example per line, `text` or `text_a ||| text_b`.  Output: one JSON
object per input line, in Google's schema:

  {"linex_index": 0, "features": [{"token": "[CLS]", "layers": [
      {"index": -1, "values": [0.12345678, ...]}, ...]}, ...]}

with one feature per real token (including [CLS] and [SEP]) and one entry per
`--layers` index (-1 is the last encoder layer).  Unlike Google's, which
rounds to 6 decimals, values keep 8 significant digits of the float32
activations.

  python bert/extract_features.py --input_file=in.txt --output_file=out.jsonl \
    --vocab_file=$BERT/vocab.txt --bert_config_file=$BERT/bert_config.json \
    --init_checkpoint=$BERT/bert_model.ckpt --layers=-1,-2 --max_seq_length=128
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
from typing import Iterator, Optional, Sequence

if not __package__:
  # Run as `python bert/extract_features.py`: make `bert` importable.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf

from bert import checkpoints
from bert import data
from bert import files
from bert import modeling
from bert import tokenization
from bert.errors import UserError, exit_on_error
# pylint: enable=g-import-not-at-top,wrong-import-position

def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines Google's flags of this script; called when run as a script, not
  on import, so that importing it changes no other script's flags."""
  kw = {"flag_values": flag_values}
  flags.DEFINE_string("input_file", None,
                      "Text file: one example per line, `text_a` or "
                      "`text_a ||| text_b`.", **kw)
  flags.DEFINE_string("output_file", None,
                      "JSON-lines output, one object per input line.", **kw)
  flags.DEFINE_string("layers", "-1,-2,-3,-4",
                      "Comma-separated encoder layer indexes; -1 is the last.",
                      **kw)
  flags.DEFINE_string(
      "bert_config_file", None,
      "The config json file corresponding to the pre-trained BERT model.", **kw)
  flags.DEFINE_integer(
      "max_seq_length", 128,
      "Maximum sequence length after tokenization, including [CLS]/[SEP]; "
      "longer inputs are truncated, shorter ones padded.", **kw)
  flags.DEFINE_string("init_checkpoint", None,
                      "Checkpoint to read the BERT weights from.", **kw)
  flags.DEFINE_string("vocab_file", None,
                      "The vocabulary file the BERT model was trained on.",
                      **kw)
  flags.DEFINE_bool("do_lower_case", True,
                    "Lower-case the input: True for uncased models.", **kw)
  flags.DEFINE_integer("batch_size", 32, "Batch size for inference.", **kw)
  flags.DEFINE_string(
      "spm_model_file", None,
      "SentencePiece model; when given it replaces --vocab_file.", **kw)
  # Google's TPU flags, accepted so existing command lines keep working.
  flags.DEFINE_bool("use_tpu", False, "Ignored (no TPU support).", **kw)
  flags.DEFINE_string("master", None, "Ignored (no TPU support).", **kw)
  flags.DEFINE_integer("num_tpu_cores", 8, "Ignored (no TPU support).", **kw)
  flags.DEFINE_bool("use_one_hot_embeddings", False,
                    "Ignored: embedding lookups always use tf.gather.", **kw)


# Google's pattern: the last " ||| " does not split, the first does (greedy).
_PAIR = re.compile(r"^(.*) \|\|\| (.*)$")


@dataclasses.dataclass
class InputExample:
  unique_id: int
  text_a: str
  text_b: Optional[str] = None


@dataclasses.dataclass
class InputFeatures:
  """One example as model inputs; the id lists have length max_seq_length."""
  unique_id: int
  tokens: list[str]        # the real tokens, [CLS] ... [SEP]
  input_ids: list[int]
  input_mask: list[int]
  segment_ids: list[int]


def read_examples(input_file: str) -> list[InputExample]:
  """Reads one example per line; unique_id is the 0-based line index.

  Like Google's, every line is an example (a blank one gives [CLS] [SEP]) and
  `a ||| b` (spaces around the bars) is a pair.
  """
  try:
    with open(input_file, "rb") as f:
      data = f.read()
  except FileNotFoundError:
    raise UserError(f"--input_file={input_file}: file not found") from None
  except OSError as e:
    raise UserError(
        f"--input_file={input_file}: cannot read ({e.strerror})") from None
  lines = data.split(b"\n")
  if not lines[-1]:
    lines.pop()  # Nothing after the final newline.
  examples = []
  for index, raw in enumerate(lines):
    try:
      line = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
      raise UserError(f"{input_file}:{index + 1}: line is not valid UTF-8 "
                      "(--input_file must be UTF-8 text)") from None
    m = _PAIR.match(line)
    if m is None:
      examples.append(InputExample(index, line))
    else:
      examples.append(InputExample(index, m.group(1), m.group(2)))
  return examples


def convert_example(example: InputExample, seq_length: int,
                    tokenizer) -> InputFeatures:
  """Tokenizes, truncates and pads to `[CLS] a [SEP] (b [SEP])`."""
  tokens, segment_ids = data.build_tokens(tokenizer, example.text_a,
                                          example.text_b, seq_length)
  input_ids = list(tokenizer.convert_tokens_to_ids(tokens))
  pad = seq_length - len(input_ids)
  return InputFeatures(example.unique_id, tokens,
                       input_ids=input_ids + [0] * pad,
                       input_mask=[1] * len(input_ids) + [0] * pad,
                       segment_ids=segment_ids + [0] * pad)


def parse_layers(layers: str, num_hidden_layers: int) -> list[int]:
  """"-1,-2" -> [-1, -2], each checked to index the encoder's layer list."""
  try:
    indexes = [int(x) for x in layers.split(",")]
  except ValueError:
    raise UserError(f"--layers={layers}: expected comma-separated integers, "
                    "e.g. -1,-2,-3,-4") from None
  bad = [i for i in indexes if not -num_hidden_layers <= i < num_hidden_layers]
  if bad:
    raise UserError(
        f"--layers={layers}: index {bad[0]} is out of range for a model with "
        f"num_hidden_layers={num_hidden_layers} (valid: "
        f"{-num_hidden_layers}..{num_hidden_layers - 1})")
  return indexes


class LayerExtractor(tf.Module):
  """Runs BERT on fixed [batch_size, seq_length] batches, so the graph is
  traced once, and returns the requested encoder layers."""

  def __init__(self, model: modeling.BertModel, layer_indexes: Sequence[int],
               batch_size: int, seq_length: int):
    super().__init__(name=None)
    self.model = model
    self.layer_indexes = list(layer_indexes)
    self.batch_size = batch_size
    self.seq_length = seq_length
    spec = tf.TensorSpec([batch_size, seq_length], tf.int32)
    self.batch_layers = tf.function(self._batch_layers,
                                    input_signature=[spec, spec, spec])

  def _batch_layers(self, input_ids, input_mask, segment_ids):
    """int32 [B, S] x 3 -> float32 [B, L, S, H] for the L requested layers."""
    outputs = self.model(input_ids, input_mask, segment_ids, training=False)
    return tf.stack([outputs.encoder_outputs[i] for i in self.layer_indexes],
                    axis=1)

  def __call__(self, features: Sequence[InputFeatures],
               log_every: int = 10) -> Iterator[np.ndarray]:
    """Yields, per feature in order, its [L, T, H] values (T real tokens)."""
    total = len(features)
    for batch_number, start in enumerate(range(0, total, self.batch_size)):
      batch = features[start:start + self.batch_size]
      arrays = []
      for name in ("input_ids", "input_mask", "segment_ids"):
        array = np.zeros([self.batch_size, self.seq_length], np.int32)
        array[:len(batch)] = [getattr(f, name) for f in batch]
        arrays.append(array)  # The last batch is padded with empty rows.
      values = self.batch_layers(*arrays).numpy()
      done = start + len(batch)
      # Before yielding: a consumer may stop right after the last example.
      if (batch_number + 1) % log_every == 0 or done == total:
        logging.info("Extracted %d/%d examples", done, total)
      for row, feature in enumerate(batch):
        yield values[row, :, :len(feature.tokens)]


def format_example(unique_id: int, tokens: Sequence[str],
                   layer_indexes: Sequence[int], values: np.ndarray) -> str:
  """One JSON line (no newline) in Google's schema; values [L, T, H]."""
  num_layers, num_tokens, hidden = values.shape
  # One %-format per vector is several times faster than json.dumps of floats.
  row_format = ", ".join(["%.8g"] * hidden)
  rows = [row_format % tuple(r) for r in
          values.transpose(1, 0, 2).reshape(-1, hidden).tolist()]
  if not np.isfinite(values).all():
    # json.dumps' spelling ("nan" and "inf" are not JSON).
    rows = [r.replace("nan", "NaN").replace("inf", "Infinity") for r in rows]
  features = []
  for t, token in enumerate(tokens):
    layers = ", ".join(
        f'{{"index": {index}, "values": [{rows[t * num_layers + l]}]}}'
        for l, index in enumerate(layer_indexes))
    features.append(f'{{"token": {json.dumps(token)}, "layers": [{layers}]}}')
  return (f'{{"linex_index": {unique_id}, '
          f'"features": [{", ".join(features)}]}}')


def load_model(config: modeling.BertConfig,
               init_checkpoint: str) -> modeling.BertModel:
  """A BertModel with every `bert/` weight from `init_checkpoint`."""
  model = modeling.BertModel(config)
  # Not strict: Google's checkpoints also hold cls/ heads and optimizer slots.
  report = checkpoints.load_by_name(modeling.variables_by_name(model),
                                    init_checkpoint, strict=False)
  if report.missing:
    raise UserError(
        f"--init_checkpoint={init_checkpoint}: checkpoint lacks "
        f"{len(report.missing)} BERT variable(s): "
        f"{', '.join(report.missing[:3])}"
        f"{' ...' if len(report.missing) > 3 else ''} (does "
        "bert_config.json match this checkpoint?)")
  return model


def _check_output_file(output_file: str, input_file: str) -> None:
  """Fails before any work when the output cannot be written there, or
  would replace the input."""
  if os.path.exists(input_file) and os.path.exists(output_file) and (
      os.path.samefile(input_file, output_file)):
    raise UserError(f"--output_file={output_file} is --input_file: the "
                    "features would replace the input text")
  directory = os.path.dirname(output_file) or "."
  if os.path.isdir(output_file):
    raise UserError(f"--output_file={output_file}: is a directory")
  if not os.path.isdir(directory):
    raise UserError(f"--output_file={output_file}: cannot write in "
                    f"{directory} (no such directory)")


def _check_flags(f: flags.FlagValues) -> None:
  required = ["input_file", "output_file", "bert_config_file",
              "init_checkpoint"]
  if not f.spm_model_file:
    required.append("vocab_file")
  missing = [f"--{name}" for name in required if not f[name].value]
  if missing:
    raise UserError(f"missing required flag(s): {', '.join(missing)}")
  if f.batch_size < 1:
    raise UserError(f"--batch_size={f.batch_size}: must be at least 1")


def main(argv: Sequence[str],
         flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Raises UserError on bad input; run as a script it prints one line."""
  del argv  # Everything comes from flags.
  logging.set_verbosity(logging.INFO)
  f = flag_values
  _check_flags(f)
  _check_output_file(f.output_file, f.input_file)
  tokenization.validate_case_matches_checkpoint(f.do_lower_case,
                                                f.init_checkpoint)
  config = modeling.BertConfig.from_json_file(f.bert_config_file)
  seq_length = f.max_seq_length
  if seq_length > config.max_position_embeddings:
    raise UserError(
        f"--max_seq_length={seq_length} is above max_position_embeddings="
        f"{config.max_position_embeddings} of {f.bert_config_file}")
  if seq_length < 3:
    raise UserError(f"--max_seq_length={seq_length}: must be at least 3 "
                    "([CLS] a [SEP] b [SEP] needs three special tokens)")
  layer_indexes = parse_layers(f.layers, config.num_hidden_layers)
  tokenizer = tokenization.create_tokenizer(
      f.vocab_file, f.do_lower_case, f.spm_model_file)
  tokenization.check_vocab_fits(tokenizer, config.vocab_size,
                                f.spm_model_file or f.vocab_file)
  examples = read_examples(f.input_file)
  features = [convert_example(e, seq_length, tokenizer) for e in examples]

  extractor = LayerExtractor(load_model(config, f.init_checkpoint),
                             layer_indexes, f.batch_size, seq_length)

  def write(tmp: str) -> None:
    with open(tmp, "w", encoding="utf-8") as writer:
      for feature, values in zip(features, extractor(features)):
        writer.write(format_example(feature.unique_id, feature.tokens,
                                    layer_indexes, values) + "\n")

  files.write_atomically(f.output_file, write)
  logging.info("Wrote %d examples to %s", len(features), f.output_file)


if __name__ == "__main__":
  define_flags()
  # Wrapped here, not at the definition, so callers (tests) get the UserError.
  app.run(exit_on_error(main))
