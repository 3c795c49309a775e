"""Examples -> features, the TFRecord feature cache and tf.data pipelines.

Features follow Google's `run_classifier.py`: `[CLS] a [SEP]` (segment 0) or
`[CLS] a [SEP] b [SEP]` (b and its [SEP] segment 1), a pair truncated one
token at a time from the longer side, zero padding to `max_seq_length`.
Unlabelled examples get `label_id=0, has_label=0` so that metrics and losses
can mask them.
"""

from __future__ import annotations

import collections
from concurrent import futures
import dataclasses
import hashlib
import itertools
import json
import multiprocessing
import os
from typing import Callable, Iterator, Sequence

from absl import logging
import numpy as np
import tensorflow as tf

from bert import files
from bert.errors import UserError
from bert.processors import InputExample

# Bump when the record layout or the conversion changes: invalidates caches.
_CACHE_FORMAT = 1

SEQ_FEATURES = ("input_ids", "input_mask", "segment_ids")
_SCALAR_FEATURES = ("label_ids", "has_label", "example_index")


@dataclasses.dataclass
class InputFeatures:
  """One example as model inputs; lists have length `max_seq_length`."""
  input_ids: list[int]
  input_mask: list[int]
  segment_ids: list[int]
  label_id: int
  has_label: int


def _truncate_seq_pair(tokens_a: list[str], tokens_b: list[str],
                       max_length: int) -> None:
  # A short sequence loses relatively more information per dropped token, so
  # always shorten the longer one (b on ties, as Google).
  while len(tokens_a) + len(tokens_b) > max_length:
    if len(tokens_a) > len(tokens_b):
      tokens_a.pop()
    else:
      tokens_b.pop()


def build_tokens(tokenizer, text_a: str, text_b: str | None,
                 max_seq_length: int) -> tuple[list[str], list[int]]:
  """`[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]`, truncated as Google's, and
  its segment ids (0 for a, 1 for b); not padded."""
  if max_seq_length < 3:
    raise UserError(f"max_seq_length must be at least 3, got {max_seq_length}")
  tokens_a = tokenizer.tokenize(text_a)
  # Like Google: an empty text_b, or one with no tokens, means a single text.
  tokens_b = tokenizer.tokenize(text_b) if text_b else None
  if tokens_b:
    _truncate_seq_pair(tokens_a, tokens_b, max_seq_length - 3)
  else:
    tokens_a = tokens_a[:max_seq_length - 2]
  tokens = ["[CLS]"] + tokens_a + ["[SEP]"]
  segment_ids = [0] * len(tokens)
  if tokens_b:
    tokens += tokens_b + ["[SEP]"]
    segment_ids += [1] * (len(tokens_b) + 1)
  return tokens, segment_ids


def convert_example(example: InputExample, label_list: Sequence[str],
                    max_seq_length: int, tokenizer) -> InputFeatures:
  """Tokenizes, truncates and pads one example (Google's layout)."""
  tokens, segment_ids = build_tokens(tokenizer, example.text_a,
                                     example.text_b, max_seq_length)
  input_ids = list(tokenizer.convert_tokens_to_ids(tokens))
  input_mask = [1] * len(input_ids)
  pad = max_seq_length - len(input_ids)
  input_ids += [0] * pad
  input_mask += [0] * pad
  segment_ids += [0] * pad

  if example.label is None:
    label_id, has_label = 0, 0
  else:
    if example.label not in label_list:
      raise UserError(f"example {example.guid}: label {example.label!r} is "
                      f"not one of {', '.join(label_list)}")
    label_id, has_label = list(label_list).index(example.label), 1
  return InputFeatures(input_ids, input_mask, segment_ids, label_id, has_label)


def convert_examples(examples: Sequence[InputExample],
                     label_list: Sequence[str], max_seq_length: int,
                     tokenizer) -> list[InputFeatures]:
  """`convert_example` over a list, in order."""
  return [convert_example(e, label_list, max_seq_length, tokenizer)
          for e in examples]


def _tokenizer_fingerprint(tokenizer, h) -> None:
  """Feeds into `h` everything about `tokenizer` that changes its output."""
  h.update(type(tokenizer).__name__.encode())
  h.update(repr(bool(tokenizer.do_lower_case)).encode())
  h.update(json.dumps(list(tokenizer.vocab.items()),
                      ensure_ascii=False).encode())
  # A SentencePiece model's segmentation depends on its scores, not just on
  # its pieces: hash the model file itself.
  spm_file = getattr(tokenizer, "spm_model_file", None)
  if spm_file:
    with open(spm_file, "rb") as f:
      h.update(f.read())


def features_key(examples: Sequence[InputExample], label_list: Sequence[str],
                 max_seq_length: int, tokenizer) -> str:
  """A short hash of everything that determines the features of `examples`."""
  h = hashlib.sha256()
  h.update(json.dumps([_CACHE_FORMAT, list(label_list),
                      max_seq_length]).encode())
  _tokenizer_fingerprint(tokenizer, h)
  for e in examples:
    h.update(json.dumps([e.text_a, e.text_b, e.label],
                        ensure_ascii=False).encode())
    h.update(b"\n")
  return h.hexdigest()[:16]


def _int_feature(values) -> tf.train.Feature:
  return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


# Conversion runs in chunks; inputs this large use several processes.
_CHUNK_EXAMPLES = 4096
_PARALLEL_MIN_EXAMPLES = 50_000
# A cache of more examples is written in shards of this many, which
# training reads a few at a time, in a new order each epoch.
_SHARD_EXAMPLES = 100_000
# What the conversion workers need, set before they are forked (a tokenizer
# need not pickle).
_conversion_args: tuple = ()


def _serialize(features: InputFeatures, example_index: int) -> bytes:
  return tf.train.Example(features=tf.train.Features(feature={
      "input_ids": _int_feature(features.input_ids),
      "input_mask": _int_feature(features.input_mask),
      "segment_ids": _int_feature(features.segment_ids),
      "label_ids": _int_feature([features.label_id]),
      "has_label": _int_feature([features.has_label]),
      "example_index": _int_feature([example_index]),
  })).SerializeToString()


def _convert_chunk(start: int, examples: Sequence[InputExample]
                   ) -> list[bytes]:
  label_list, max_seq_length, tokenizer = _conversion_args
  return [_serialize(convert_example(e, label_list, max_seq_length,
                                     tokenizer), start + i)
          for i, e in enumerate(examples)]


def conversion_processes(num_examples: int) -> int:
  """Processes `serialized_features` uses for `num_examples` examples: one
  for small inputs, else one per available CPU (at most 8)."""
  if (num_examples < _PARALLEL_MIN_EXAMPLES or
      "fork" not in multiprocessing.get_all_start_methods()):
    return 1
  cpus = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
          else os.cpu_count() or 1)
  return max(1, min(8, cpus))


def serialized_features(examples: Sequence[InputExample],
                        label_list: Sequence[str], max_seq_length: int,
                        tokenizer) -> Iterator[bytes]:
  """Yields each example's features as a serialized tf.train.Example, in
  order, with its index as `example_index`.

  Only a few chunks of features exist at a time, so memory stays bounded by
  the examples themselves; large inputs are converted by forked worker
  processes (`conversion_processes`), a few chunks ahead of the writer.
  """
  global _conversion_args
  _conversion_args = (list(label_list), max_seq_length, tokenizer)
  starts = range(0, len(examples), _CHUNK_EXAMPLES)
  processes = conversion_processes(len(examples))
  if processes == 1:
    for start in starts:
      yield from _convert_chunk(start,
                                examples[start:start + _CHUNK_EXAMPLES])
    return
  logging.info("Converting %d examples in %d processes", len(examples),
               processes)
  # fork: the workers inherit the tokenizer and run Python only (no
  # TensorFlow ops), which is what makes forking a TensorFlow process safe.
  # A worker that dies raises BrokenProcessPool here rather than hanging.
  with futures.ProcessPoolExecutor(
      processes, mp_context=multiprocessing.get_context("fork")) as pool:
    pending = collections.deque()
    for start in starts:
      pending.append(pool.submit(
          _convert_chunk, start, examples[start:start + _CHUNK_EXAMPLES]))
      if len(pending) >= 2 * processes:
        yield from pending.popleft().result()
    while pending:
      yield from pending.popleft().result()


def cache_features(examples: Sequence[InputExample], label_list: Sequence[str],
                   max_seq_length: int, tokenizer, output_dir: str,
                   split_name: str) -> str:
  """Writes (or reuses) `<output_dir>/<split_name>-<key>.tf_record`.

  The key hashes the examples, label list, max_seq_length and tokenizer, so a
  change to any of them writes a new file and an unchanged input reuses the
  old one.  A `<file>.json` sidecar records num_examples, max_seq_length and
  label_list.  The features are streamed to the file (`serialized_features`),
  never held all at once.  Returns the TFRecord path.
  """
  key = features_key(examples, label_list, max_seq_length, tokenizer)
  path = os.path.join(output_dir, f"{split_name}-{key}.tf_record")
  if os.path.exists(path) or os.path.exists(path + ".json"):
    if _cache_is_whole(path):
      logging.info("%s: reusing cached features", path)
      return path
    logging.warning("%s: damaged or incomplete (its size is not the one "
                    "recorded in %s.json); converting again", path, path)
  os.makedirs(output_dir, exist_ok=True)
  records = serialized_features(examples, label_list, max_seq_length,
                                tokenizer)
  num_shards = max(1, -(-len(examples) // _SHARD_EXAMPLES))
  shards = ([path] if num_shards == 1 else
            [f"{path}-{k:05d}-of-{num_shards:05d}" for k in range(num_shards)])
  for shard in shards:
    def write_records(tmp):
      with tf.io.TFRecordWriter(tmp) as writer:
        for record in itertools.islice(records, _SHARD_EXAMPLES):
          writer.write(record)
    files.write_atomically(shard, write_records)

  def write_sidecar(tmp):
    info = {"num_examples": len(examples), "max_seq_length": max_seq_length,
            "label_list": list(label_list),
            "bytes": sum(os.path.getsize(f) for f in shards)}
    if num_shards > 1:
      info["shards"] = [os.path.basename(f) for f in shards]
    with open(tmp, "w", encoding="utf-8") as f:
      json.dump(info, f, ensure_ascii=False, indent=2)

  # The records first: the sidecar records their size, which a later run
  # checks before reusing them (a record file without a sidecar, from a
  # crash in between, is converted again).
  files.write_atomically(path + ".json", write_sidecar)
  logging.info("%s: wrote %d examples%s", path, len(examples),
               f" in {num_shards} shards" if num_shards > 1 else "")
  return path


def cache_files(tfrecord_path: str) -> list[str]:
  """The record files of a `cache_features` cache: the file itself, or the
  shards its sidecar lists (caches of more than 100,000 examples)."""
  try:
    shards = read_cache_info(tfrecord_path).get("shards")
  except UserError:
    shards = None
  if not shards:
    return [tfrecord_path]
  directory = os.path.dirname(tfrecord_path)
  return [os.path.join(directory, name) for name in shards]


def _cache_is_whole(tfrecord_path: str) -> bool:
  try:
    info = read_cache_info(tfrecord_path)
    sizes = [os.path.getsize(f) for f in cache_files(tfrecord_path)]
  except (UserError, ValueError, OSError):
    return False
  # Caches written before sizes were recorded are taken as they are.
  return info.get("bytes", sum(sizes)) == sum(sizes)


def read_cache_info(tfrecord_path: str) -> dict:
  """Reads `<tfrecord_path>.json`: num_examples, max_seq_length, label_list."""
  try:
    with open(tfrecord_path + ".json", encoding="utf-8") as f:
      return json.load(f)
  except FileNotFoundError:
    raise UserError(f"{tfrecord_path}.json: file not found (written by "
                    f"cache_features next to the TFRecord)") from None


def make_dataset(tfrecord_path: str, max_seq_length: int, batch_size: int,
                 is_training: bool, seed: int | None = None,
                 drop_remainder: bool = False,
                 shuffle_buffer_size: int = 10000,
                 group_by_length: int = 0) -> tf.data.Dataset:
  """Batches of features read from a `cache_features` file.

  Yields dicts of int32 tensors: input_ids, input_mask, segment_ids
  [batch_size, max_seq_length]; label_ids, has_label, example_index
  [batch_size].  Training shuffles (reproducibly under `seed`) and repeats
  forever; otherwise the file order is kept and the data is read once.

  With `group_by_length` = K > 1, each run of K * batch_size examples
  (shuffled, when training) is sorted by length and cut into K batches, which
  training then shuffles: a batch holds texts of similar length, so
  `trim_batch` cuts it much shorter when lengths vary a lot.  Outside
  training the order then changes within each run: `example_index` tells
  where a row came from.
  """
  paths = cache_files(tfrecord_path)
  for path in paths:
    if not os.path.exists(path):
      raise UserError(f"{path}: file not found")
  if os.path.exists(tfrecord_path + ".json"):
    cached_len = read_cache_info(tfrecord_path)["max_seq_length"]
    if cached_len != max_seq_length:
      raise UserError(f"{tfrecord_path}: features have max_seq_length "
                      f"{cached_len}, not {max_seq_length}")
  spec = {name: tf.io.FixedLenFeature([max_seq_length], tf.int64)
          for name in SEQ_FEATURES}
  spec.update({name: tf.io.FixedLenFeature([], tf.int64)
               for name in _SCALAR_FEATURES})

  def parse(serialized):  # [B] strings -> dict of [B, ...] int32
    parsed = tf.io.parse_example(serialized, spec)
    return {k: tf.cast(v, tf.int32) for k, v in parsed.items()}

  if is_training and len(paths) > 1:
    # A file far larger than the shuffle buffer would be read nearly in
    # order (the train split, then the transfer set): its shards come in a
    # new order each epoch, several read at once.
    d = tf.data.Dataset.from_tensor_slices(paths).shuffle(
        len(paths), seed=seed, reshuffle_each_iteration=True)
    d = d.interleave(tf.data.TFRecordDataset, cycle_length=min(len(paths), 8),
                     block_length=1)
  else:
    d = tf.data.TFRecordDataset(paths)  # In file order.
  if is_training:
    # Shuffling before repeating keeps epochs whole; reshuffles each epoch.
    d = d.shuffle(shuffle_buffer_size, seed=seed, reshuffle_each_iteration=True)
    d = d.repeat()
  group = max(group_by_length, 1)
  # Parsing whole batches is much faster than one record at a time.
  d = d.batch(batch_size * group,
              drop_remainder=drop_remainder or (is_training and group > 1))
  d = d.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if group > 1:
    d = d.map(_sort_by_length).unbatch().batch(batch_size, drop_remainder)
    if is_training:  # Otherwise each run's batches come shortest first.
      d = d.shuffle(group, seed=seed, reshuffle_each_iteration=True)
  return d.prefetch(tf.data.AUTOTUNE)


def _sort_by_length(features: dict) -> dict:
  """Features [N, ...] reordered by the number of real tokens, shortest
  first (stable)."""
  order = tf.argsort(tf.reduce_sum(features["input_mask"], 1), stable=True)
  return {k: tf.gather(v, order) for k, v in features.items()}


def features_to_tensors(
    features: Sequence[InputFeatures]) -> dict[str, np.ndarray]:
  """In-memory counterpart of `make_dataset`'s batches, as int32 arrays.

  Returns input_ids, input_mask, segment_ids [N, max_seq_length] and
  label_ids, has_label, example_index [N].
  """
  def stack(values, shape_tail):
    return np.asarray(values, dtype=np.int32).reshape((len(features),) +
                                                       shape_tail)
  seq_len = len(features[0].input_ids) if features else 0
  return {
      "input_ids": stack([f.input_ids for f in features], (seq_len,)),
      "input_mask": stack([f.input_mask for f in features], (seq_len,)),
      "segment_ids": stack([f.segment_ids for f in features], (seq_len,)),
      "label_ids": stack([f.label_id for f in features], ()),
      "has_label": stack([f.has_label for f in features], ()),
      "example_index": np.arange(len(features), dtype=np.int32),
  }


def features_dataset(features: dict[str, np.ndarray],
                     batch_size: int) -> tf.data.Dataset:
  """In-memory features ([N, S] and [N] arrays, from `features_to_tensors`)
  as a finite dataset of batches of similar lengths, shortest first:
  `trim_batch` then cuts most padding; `example_index` says where each row
  came from."""
  order = np.argsort(features["input_mask"].sum(1), kind="stable")
  return tf.data.Dataset.from_tensor_slices(
      {k: v[order] for k, v in features.items()}).batch(batch_size)


# The shortest length bucket an XLA-compiled model runs (`length_bucket`).
XLA_MIN_LENGTH = 16
# Training batches are padded to a multiple of this many tokens: the step's
# XLA kernels (`fused.py`) compile once per shape, and 16 keeps that to 8
# shapes at 128 tokens for at most 15 padded positions a batch.
FUSED_LENGTH_MULTIPLE = 16


def next_power_of_two(n: tf.Tensor) -> tf.Tensor:
  """The smallest power of two >= n (int32 scalar, n >= 1), exactly."""
  # Compare-and-min rather than tf.searchsorted: TF Lite has these ops.
  powers = tf.constant([2 ** i for i in range(31)], tf.int32)
  return tf.reduce_min(tf.where(powers >= n, powers, powers[-1]))


def length_bucket(length: tf.Tensor) -> tf.Tensor:
  """int32 scalar length -> the power of two >= it, at least XLA_MIN_LENGTH.

  XLA compiles once per input shape: lengths rounded up to these buckets
  give a handful of shapes instead of one per length."""
  return tf.maximum(next_power_of_two(tf.maximum(length, 1)), XLA_MIN_LENGTH)


def fused_length_bucket(length: tf.Tensor) -> tf.Tensor:
  """int32 scalar length -> the multiple of FUSED_LENGTH_MULTIPLE >= it."""
  m = FUSED_LENGTH_MULTIPLE
  return (tf.maximum(length, 1) + m - 1) // m * m


def trim_batch(features: dict,
               bucket: Callable[[tf.Tensor], tf.Tensor] | None = None) -> dict:
  """Cuts [B, max_seq_length] features to the batch's longest example.

  Padding never changes the real positions' outputs, and most texts are far
  shorter than max_seq_length, so this saves most of the compute.  Works on
  graph tensors: the compiled step keeps one trace.  With `bucket`
  (`length_bucket`, `fused_length_bucket`), the length is rounded up to its
  bucket (never past max_seq_length), for code XLA compiles per shape.
  """
  length = tf.maximum(tf.reduce_max(tf.reduce_sum(features["input_mask"], 1)),
                      1)
  if bucket is not None:
    width = tf.shape(features["input_mask"])[1]
    length = tf.minimum(bucket(tf.cast(length, tf.int32)), width)
  return {k: v[:, :length] if k in SEQ_FEATURES else v
          for k, v in features.items()}
