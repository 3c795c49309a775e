"""Converts BERT weights between Hugging Face's layout and Google's.

Hugging Face -> Google (a `BertModel`, `BertForSequenceClassification`,
`BertForPreTraining` or `BertForMaskedLM` directory: `config.json`,
`model.safetensors` or `pytorch_model.bin`, `vocab.txt`):

  python -m bert.convert_checkpoint --hf_dir=path/to/hf_model \
    --output_dir=models/minilm

writes Google's files, which every script here takes:
`bert_config.json`, `vocab.txt` and `bert_model.ckpt.{index,data-*}` with
Google's variable names (`bert/...`; `cls/predictions/...` and
`cls/seq_relationship/...` when the source has pre-training heads;
`output_weights`/`output_bias` when it has a classifier head).

Google -> Hugging Face (e.g. a student distilled here):

  python -m bert.convert_checkpoint --init_checkpoint=output/student \
    --bert_config_file=configs/student_2l_config.json \
    --vocab_file=data/snownlp/vocab.txt --output_dir=models/student_hf

writes `config.json`, `model.safetensors` and `vocab.txt` that
`transformers` loads (`BertForSequenceClassification` when the checkpoint
has a classifier head, `BertForPreTraining` with pre-training heads, else
`BertModel`).  Optimiser slots and `global_step` are not model weights and
are left out.

Google -> Google, weights only (a release folder, like Google's own; float16
halves its size, and every script loads it into float32 variables):

  python -m bert.convert_checkpoint --init_checkpoint=output/pretrain \
    --bert_config_file=configs/teacher_3l_config.json \
    --vocab_file=data/snownlp/vocab.txt --to=google --weights_dtype=float16 \
    --output_dir=models/snownlp_3l

Numerics are kept: Hugging Face's "gelu" is the exact (erf) GELU, Google's
"gelu" the tanh approximation, so HF "gelu" becomes "gelu_exact" here and
Google's "gelu" becomes HF's "gelu_new" (and back).  Reading safetensors
needs only the `safetensors` package (numpy); a `.bin` state dict needs
PyTorch.  Every problem is one line naming the file: a config that is not
BERT's, a truncated weights file, a missing or mis-shaped weight, a vocab
whose size differs from the embedding matrix.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from typing import Sequence

if not __package__:  # run as `python bert/convert_checkpoint.py`
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))

import numpy as np
from absl import app, flags, logging

from bert import checkpoints, files, modeling
from bert.errors import UserError, exit_on_error

# hidden_act: Hugging Face name -> this project's (Google's names plus
# "gelu_exact"), and back.
HF_TO_GOOGLE_ACT = {"gelu": "gelu_exact", "gelu_new": "gelu",
                    "gelu_pytorch_tanh": "gelu", "gelu_fast": "gelu",
                    "relu": "relu", "tanh": "tanh", "linear": "linear"}
GOOGLE_TO_HF_ACT = {"gelu": "gelu_new", "gelu_exact": "gelu",
                    "gelu_new": "gelu_new", "relu": "relu", "tanh": "tanh",
                    "linear": "linear"}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# Buffers and tied copies that are not weights of their own.
_NOT_WEIGHTS = re.compile(r"(^|\.)(position_ids|token_type_ids)$")

# Hugging Face module path (after "bert.") -> Google scope, per layer part.
_LAYER_PARTS = {
    "attention.self.query": "attention/self/query",
    "attention.self.key": "attention/self/key",
    "attention.self.value": "attention/self/value",
    "attention.output.dense": "attention/output/dense",
    "attention.output.LayerNorm": "attention/output/LayerNorm",
    "intermediate.dense": "intermediate/dense",
    "output.dense": "output/dense",
    "output.LayerNorm": "output/LayerNorm",
}
_TOP_PARTS = {
    "embeddings.LayerNorm": "bert/embeddings/LayerNorm",
    "pooler.dense": "bert/pooler/dense",
    "cls.predictions.transform.dense": "cls/predictions/transform/dense",
    "cls.predictions.transform.LayerNorm":
        "cls/predictions/transform/LayerNorm",
}
_EMBEDDINGS = {
    "embeddings.word_embeddings.weight": "bert/embeddings/word_embeddings",
    "embeddings.position_embeddings.weight":
        "bert/embeddings/position_embeddings",
    "embeddings.token_type_embeddings.weight":
        "bert/embeddings/token_type_embeddings",
}
# Weights stored [out, in] in both layouts (no transpose).
_AS_IS = {
    "cls.seq_relationship.weight": "cls/seq_relationship/output_weights",
    "cls.seq_relationship.bias": "cls/seq_relationship/output_bias",
    "classifier.weight": "output_weights",
    "classifier.bias": "output_bias",
    "cls.predictions.bias": "cls/predictions/output_bias",
}


# ----------------------------------------------------------------------------
# Configs.


def read_hf_config(path: str) -> dict:
  """A Hugging Face `config.json` of a BERT model, checked."""
  values = modeling.read_json_config(path)
  model_type = values.get("model_type")
  architectures = values.get("architectures") or []
  if model_type != "bert" and not any(str(a).startswith("Bert")
                                      for a in architectures):
    raise UserError(
        f"{path}: model_type {model_type!r} (architectures "
        f"{architectures}) is not a BERT model; this converter takes BERT's "
        "layout only")
  position = values.get("position_embedding_type", "absolute")
  if position != "absolute":
    raise UserError(f"{path}: position_embedding_type {position!r}: only "
                    "absolute position embeddings are BERT's")
  eps = values.get("layer_norm_eps", 1e-12)
  if not np.isclose(eps, 1e-12, rtol=0, atol=1e-15):
    raise UserError(f"{path}: layer_norm_eps {eps} differs from BERT's 1e-12, "
                    "which this project's model uses")
  act = values.get("hidden_act", "gelu")
  if act not in HF_TO_GOOGLE_ACT:
    raise UserError(f"{path}: hidden_act {act!r} has no counterpart here "
                    f"(known: {', '.join(HF_TO_GOOGLE_ACT)})")
  return values


def google_config(hf_config: dict, source: str) -> modeling.BertConfig:
  """The Google `BertConfig` of a Hugging Face config (same numerics)."""
  values = {**hf_config,
            "hidden_act": HF_TO_GOOGLE_ACT[hf_config.get("hidden_act",
                                                         "gelu")]}
  return modeling.BertConfig.from_dict(values, source=source)


def hf_config(config: modeling.BertConfig, architecture: str,
              label_list: Sequence[str] | None = None) -> dict:
  """A Hugging Face `config.json` for a Google `BertConfig`."""
  values = {
      "architectures": [architecture], "model_type": "bert",
      **config.to_dict(),
      "hidden_act": GOOGLE_TO_HF_ACT[config.hidden_act.lower()],
      "layer_norm_eps": 1e-12, "position_embedding_type": "absolute",
      "pad_token_id": 0,
  }
  if label_list:
    values["id2label"] = {str(i): str(l) for i, l in enumerate(label_list)}
    values["label2id"] = {str(l): i for i, l in enumerate(label_list)}
  return values


# ----------------------------------------------------------------------------
# Weights.


def read_hf_weights(path: str) -> dict[str, np.ndarray]:
  """{name: array} from a safetensors file (numpy only) or a PyTorch state
  dict (`.bin`, needs torch)."""
  if path.endswith(".safetensors"):
    from safetensors.numpy import load_file
    try:
      return load_file(path)
    except Exception as e:  # Truncated or not safetensors at all.
      raise UserError(f"{path}: not a readable safetensors file "
                      f"({str(e).splitlines()[0][:200]})") from None
  try:
    import torch
  except ImportError:
    raise UserError(f"{path}: a PyTorch state dict needs torch (pip install "
                    "torch), or convert it to model.safetensors") from None
  try:
    state = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:
    raise UserError(f"{path}: not a readable PyTorch state dict "
                    f"({str(e).splitlines()[0][:200]})") from None
  return {k: v.float().numpy() if v.is_floating_point() else v.numpy()
          for k, v in state.items()}


def expected_shapes(config: modeling.BertConfig,
                    num_labels: int | None = None,
                    heads: bool = False) -> dict[str, tuple[int, ...]]:
  """Google name -> shape of every weight of a BERT with `config` (plus the
  pre-training heads and a `num_labels` classifier when asked)."""
  h, i, v = config.hidden_size, config.intermediate_size, config.vocab_size
  shapes = {
      "bert/embeddings/word_embeddings": (v, h),
      "bert/embeddings/position_embeddings": (
          config.max_position_embeddings, h),
      "bert/embeddings/token_type_embeddings": (config.type_vocab_size, h),
      "bert/embeddings/LayerNorm/gamma": (h,),
      "bert/embeddings/LayerNorm/beta": (h,),
      "bert/pooler/dense/kernel": (h, h), "bert/pooler/dense/bias": (h,),
  }
  sizes = {"attention/self/query": (h, h), "attention/self/key": (h, h),
           "attention/self/value": (h, h), "attention/output/dense": (h, h),
           "intermediate/dense": (h, i), "output/dense": (i, h)}
  for layer in range(config.num_hidden_layers):
    scope = f"bert/encoder/layer_{layer}/"
    for part, (n_in, n_out) in sizes.items():
      shapes[scope + part + "/kernel"] = (n_in, n_out)
      shapes[scope + part + "/bias"] = (n_out,)
    for norm in ("attention/output/LayerNorm", "output/LayerNorm"):
      shapes[scope + norm + "/gamma"] = shapes[scope + norm + "/beta"] = (h,)
  if heads:
    shapes.update({
        "cls/predictions/transform/dense/kernel": (h, h),
        "cls/predictions/transform/dense/bias": (h,),
        "cls/predictions/transform/LayerNorm/gamma": (h,),
        "cls/predictions/transform/LayerNorm/beta": (h,),
        "cls/predictions/output_bias": (v,),
        "cls/seq_relationship/output_weights": (2, h),
        "cls/seq_relationship/output_bias": (2,)})
  if num_labels:
    shapes["output_weights"] = (num_labels, h)
    shapes["output_bias"] = (num_labels,)
  return shapes


def check_weights(google: dict[str, np.ndarray], config: modeling.BertConfig,
                  source: str) -> dict[str, np.ndarray]:
  """The weights a BERT with `config` has (its pre-training heads and
  classifier when present), each of the right shape; others are dropped.

  Raises:
    UserError naming `source`: a missing weight or a wrong shape.
  """
  heads = any(n.startswith("cls/") for n in google)
  num_labels = (google["output_weights"].shape[0]
                if "output_weights" in google else None)
  want = expected_shapes(config, num_labels, heads)
  missing = [n for n in want if n not in google]
  if missing:
    raise UserError(f"{source}: no weight for {len(missing)} of BERT's "
                    f"variables ({', '.join(missing[:4])}"
                    f"{', ...' if len(missing) > 4 else ''})")
  for name, shape in want.items():
    if tuple(google[name].shape) != shape:
      raise UserError(f"{source}: {name} has shape {list(google[name].shape)}"
                      f", the config says {list(shape)}")
  return {n: google[n] for n in want}


def _google_name(hf_name: str) -> tuple[str, bool] | None:
  """Hugging Face name (without "bert.") -> (Google name, transposed)."""
  if hf_name in _EMBEDDINGS:
    return _EMBEDDINGS[hf_name], False
  if hf_name in _AS_IS:
    return _AS_IS[hf_name], False
  match = re.fullmatch(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias|gamma|beta)",
                       hf_name)
  if match:
    layer, part, kind = match.groups()
    scope = _LAYER_PARTS.get(part)
    if scope is None:
      return None
    scope = f"bert/encoder/layer_{layer}/{scope}"
  else:
    match = re.fullmatch(r"(.+)\.(weight|bias|gamma|beta)", hf_name)
    if not match or match.group(1) not in _TOP_PARTS:
      return None
    part, kind = match.groups()
    scope = _TOP_PARTS[part]
  if scope.endswith("LayerNorm"):
    return f"{scope}/{'gamma' if kind in ('weight', 'gamma') else 'beta'}", False
  return f"{scope}/{'kernel' if kind == 'weight' else 'bias'}", kind == "weight"


def hf_to_google(weights: dict[str, np.ndarray], config: modeling.BertConfig,
                 source: str) -> tuple[dict[str, np.ndarray], list[str]]:
  """Hugging Face BERT weights -> ({Google name: array}, unused HF names).

  Accepts `BertModel` names and those of the task models (`bert.` prefix,
  `cls.*`, `classifier.*`).  The MLM decoder's weight is the word embedding
  matrix (tied) and is dropped when equal to it.

  Raises:
    UserError naming `source`: a missing weight, or a shape that does not
    fit `config`.
  """
  google, unused, tied = {}, [], None
  for name, value in weights.items():
    short = name[len("bert."):] if name.startswith("bert.") else name
    if _NOT_WEIGHTS.search(short):
      continue
    if short == "cls.predictions.decoder.weight":
      tied = value
      continue
    if short == "cls.predictions.decoder.bias":
      google.setdefault("cls/predictions/output_bias", value)
      continue
    mapped = _google_name(short)
    if mapped is None:
      unused.append(name)
      continue
    target, transpose = mapped
    google[target] = np.ascontiguousarray(value.T if transpose else value)
  google = check_weights(google, config, source)
  if tied is not None and not np.array_equal(
      tied, google["bert/embeddings/word_embeddings"]):
    unused.append("cls.predictions.decoder.weight (differs from the word "
                  "embeddings it is tied to in Google's layout)")
  return google, unused


def google_to_hf(google: dict[str, np.ndarray]) -> tuple[dict, str]:
  """{Google name: array} -> (Hugging Face state dict, architecture).

  `BertForSequenceClassification` when there is a classifier head,
  `BertForPreTraining` with the pre-training heads, else `BertModel` (whose
  names have no "bert." prefix).
  """
  if "output_weights" in google:
    architecture = "BertForSequenceClassification"
  elif any(n.startswith("cls/") for n in google):
    architecture = "BertForPreTraining"
  else:
    architecture = "BertModel"
  prefix = "" if architecture == "BertModel" else "bert."
  reverse = {}
  for hf_name in _EMBEDDINGS:
    reverse[_EMBEDDINGS[hf_name]] = (hf_name, False)
  for hf_name, target in _AS_IS.items():
    reverse[target] = (hf_name, False)
  hf = {}
  for name, value in google.items():
    if name in reverse:
      hf_name, transpose = reverse[name]
    else:
      hf_name, transpose = _hf_name(name)
    if hf_name is None:
      continue  # Optimiser slots, global_step.
    if not hf_name.startswith(("cls.", "classifier.")):
      hf_name = prefix + hf_name
    hf[hf_name] = np.ascontiguousarray(value.T if transpose else value)
  if architecture == "BertForPreTraining":
    hf["cls.predictions.decoder.weight"] = hf[
        prefix + "embeddings.word_embeddings.weight"]
    hf["cls.predictions.decoder.bias"] = hf["cls.predictions.bias"]
  return hf, architecture


def _hf_name(google_name: str) -> tuple[str | None, bool]:
  match = re.fullmatch(r"bert/encoder/layer_(\d+)/(.+)/(kernel|bias|gamma|beta)",
                       google_name)
  if match:
    layer, scope, kind = match.groups()
    parts = {v: k for k, v in _LAYER_PARTS.items()}
    if scope not in parts:
      return None, False
    base = f"encoder.layer.{layer}.{parts[scope]}"
  else:
    match = re.fullmatch(r"(.+)/(kernel|bias|gamma|beta)", google_name)
    parts = {v: k for k, v in _TOP_PARTS.items()}
    if not match or match.group(1) not in parts:
      return None, False
    scope, kind = match.groups()
    base = parts[scope]
  suffix = {"kernel": "weight", "bias": "bias", "gamma": "weight",
            "beta": "bias"}[kind]
  return f"{base}.{suffix}", kind == "kernel"


# ----------------------------------------------------------------------------
# Directories.


def _count_lines(path: str) -> int:
  with open(path, encoding="utf-8") as f:
    return sum(1 for _ in f)


def check_vocab(vocab_file: str, config: modeling.BertConfig) -> None:
  size = _count_lines(vocab_file)
  if size != config.vocab_size:
    raise UserError(f"{vocab_file}: {size} tokens, but the embedding matrix "
                    f"has {config.vocab_size} rows (vocab_size)")


def convert_hf_to_google(hf_dir: str, output_dir: str) -> dict:
  """Converts a Hugging Face BERT directory; returns a summary."""
  config_path = os.path.join(hf_dir, "config.json")
  if not os.path.isfile(config_path):
    raise UserError(f"{config_path}: file not found (a Hugging Face model "
                    "directory has config.json)")
  hf = read_hf_config(config_path)
  config = google_config(hf, config_path)
  weights_path = next((os.path.join(hf_dir, n) for n in WEIGHT_FILES
                       if os.path.isfile(os.path.join(hf_dir, n))), None)
  if weights_path is None:
    raise UserError(f"{hf_dir}: no {' or '.join(WEIGHT_FILES)}")
  vocab_path = os.path.join(hf_dir, "vocab.txt")
  if not os.path.isfile(vocab_path):
    raise UserError(f"{vocab_path}: file not found (WordPiece models carry "
                    "vocab.txt)")
  check_vocab(vocab_path, config)
  google, unused = hf_to_google(read_hf_weights(weights_path), config,
                                weights_path)
  _check_writable(output_dir, [hf_dir])
  prefix = os.path.join(output_dir, "bert_model.ckpt")
  checkpoints.write_checkpoint(google, prefix)
  files.write_text_atomically(os.path.join(output_dir, "bert_config.json"),
                              config.to_json_string())
  shutil.copyfile(vocab_path, os.path.join(output_dir, "vocab.txt"))
  for name in unused:
    logging.warning("Not converted: %s", name)
  return {"checkpoint": prefix, "variables": len(google), "unused": unused,
          "hidden_act": config.hidden_act}


def read_google(init_checkpoint: str, bert_config_file: str,
                vocab_file: str) -> tuple[modeling.BertConfig, str, dict]:
  """A Google-layout checkpoint's model weights (pre-training heads and
  classifier included, training state left out), checked against its config
  and vocab -> (config, checkpoint prefix, {name: array})."""
  import tensorflow as tf
  config = modeling.BertConfig.from_json_file(bert_config_file)
  check_vocab(vocab_file, config)
  prefix = checkpoints.resolve_checkpoint(init_checkpoint)
  reader = tf.train.load_checkpoint(prefix)
  google = {n: reader.get_tensor(n)
            for n in reader.get_variable_to_shape_map()
            if not checkpoints.is_training_state(n) or n.startswith("cls/")}
  return config, prefix, check_weights(google, config, prefix)


def convert_google_to_hf(init_checkpoint: str, bert_config_file: str,
                         vocab_file: str, output_dir: str,
                         label_list: Sequence[str] | None = None) -> dict:
  """Converts a Google-layout checkpoint; returns a summary."""
  from safetensors.numpy import save_file
  config, prefix, google = read_google(init_checkpoint, bert_config_file,
                                       vocab_file)
  num_labels = (google["output_weights"].shape[0]
                if "output_weights" in google else None)
  hf, architecture = google_to_hf(google)
  if num_labels and label_list and len(label_list) != num_labels:
    raise UserError(f"--label_list has {len(label_list)} labels, the "
                    f"checkpoint's classifier {num_labels}")
  _check_writable(output_dir, [os.path.dirname(prefix)])
  files.write_atomically(
      os.path.join(output_dir, "model.safetensors"),
      lambda tmp: save_file(hf, tmp, metadata={"format": "pt"}))
  values = hf_config(config, architecture, label_list)
  if num_labels and not label_list:
    values["num_labels"] = num_labels
  files.write_text_atomically(os.path.join(output_dir, "config.json"),
                              json.dumps(values, indent=2) + "\n")
  shutil.copyfile(vocab_file, os.path.join(output_dir, "vocab.txt"))
  return {"architecture": architecture, "tensors": len(hf)}


def release_google(init_checkpoint: str, bert_config_file: str,
                   vocab_file: str, output_dir: str,
                   weights_dtype: str = "float32") -> dict:
  """Writes a Google-layout release folder (bert_config.json, vocab.txt,
  bert_model.ckpt) of a checkpoint's weights, pre-training heads included,
  optimiser state left out; returns a summary."""
  config, prefix, google = read_google(init_checkpoint, bert_config_file,
                                       vocab_file)
  google = {n: v.astype(weights_dtype) if v.dtype == np.float32 else v
            for n, v in google.items()}
  _check_writable(output_dir, [os.path.dirname(prefix)])
  out = checkpoints.write_checkpoint(
      google, os.path.join(output_dir, "bert_model.ckpt"))
  files.write_text_atomically(os.path.join(output_dir, "bert_config.json"),
                              config.to_json_string())
  shutil.copyfile(vocab_file, os.path.join(output_dir, "vocab.txt"))
  return {"checkpoint": out, "source": prefix, "variables": len(google),
          "parameters": int(sum(v.size for v in google.values()))}


def _check_writable(output_dir: str, inputs: Sequence[str]) -> None:
  """Creates `output_dir`; never the directory an input is read from."""
  for path in inputs:
    if path and os.path.abspath(path) == os.path.abspath(output_dir):
      raise UserError(f"--output_dir={output_dir} is the input's directory: "
                      "the conversion would overwrite what it reads")
  try:
    os.makedirs(output_dir, exist_ok=True)
  except OSError as e:
    raise UserError(f"--output_dir={output_dir}: cannot create it "
                    f"({e.strerror})") from None


# ----------------------------------------------------------------------------
# The command line.


def define_flags() -> None:
  flags.DEFINE_string("hf_dir", None, "A Hugging Face BERT directory "
                      "(config.json, model.safetensors or pytorch_model.bin, "
                      "vocab.txt): convert it to Google's layout.")
  flags.DEFINE_string("init_checkpoint", None, "A Google-layout checkpoint "
                      "(prefix or directory): convert it to Hugging Face's.")
  flags.DEFINE_string("bert_config_file", None, "With --init_checkpoint: its "
                      "bert_config.json.")
  flags.DEFINE_string("vocab_file", None, "With --init_checkpoint: its "
                      "vocab.txt.")
  flags.DEFINE_list("label_list", None, "With --init_checkpoint of a "
                    "classifier: its labels, in order (id2label).")
  flags.DEFINE_enum("to", "hf", ["hf", "google"], "With --init_checkpoint: "
                    "hf writes Hugging Face's layout; google a release "
                    "folder in Google's, weights only.")
  flags.DEFINE_enum("weights_dtype", "float32", ["float32", "float16"],
                    "With --to=google: how the weights are stored.")
  flags.DEFINE_string("output_dir", None, "Where the converted files go.")


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise UserError(f"unexpected arguments: {' '.join(argv[1:])}")
  f = flags.FLAGS
  if not f.output_dir:
    raise UserError("--output_dir is required")
  if bool(f.hf_dir) == bool(f.init_checkpoint):
    raise UserError("give --hf_dir (Hugging Face -> Google) or "
                    "--init_checkpoint (Google -> Hugging Face)")
  if f.hf_dir:
    summary = convert_hf_to_google(f.hf_dir, f.output_dir)
    print(f"Wrote {summary['checkpoint']} ({summary['variables']} variables, "
          f"hidden_act {summary['hidden_act']}), bert_config.json and "
          f"vocab.txt to {f.output_dir}")
    return
  for name in ("bert_config_file", "vocab_file"):
    if not getattr(f, name):
      raise UserError(f"--{name} is required with --init_checkpoint")
  if f.to == "google":
    summary = release_google(f.init_checkpoint, f.bert_config_file,
                             f.vocab_file, f.output_dir, f.weights_dtype)
    print(f"Wrote {summary['checkpoint']} ({summary['variables']} variables, "
          f"{summary['parameters']:,} parameters in {f.weights_dtype}, from "
          f"{summary['source']}), bert_config.json and vocab.txt")
    return
  summary = convert_google_to_hf(f.init_checkpoint, f.bert_config_file,
                                 f.vocab_file, f.output_dir, f.label_list)
  print(f"Wrote {summary['architecture']} ({summary['tensors']} tensors) to "
        f"{f.output_dir}")


if __name__ == "__main__":
  define_flags()
  app.run(exit_on_error(main))
