"""Dropout masks that are a pure function of a seed and each element's index.

Both kernel backends (`modeling`'s plain ops and `fused`'s XLA kernels)
draw their dropout masks here, so a step computes the same masks whichever
runs it, and a resumed run (whose seeds come from the step number) draws
exactly the masks of an uninterrupted one.  No mask tensor need be stored:
the backward pass computes the mask again from the seed.
"""

from __future__ import annotations

import tensorflow as tf


def _mix32(h: tf.Tensor) -> tf.Tensor:
  """uint32 -> uint32: a bijective integer hash in which every input bit
  flips every output bit with probability ~1/2 (Chris Wellons's lowbias32)."""
  h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, 16))
  h *= tf.constant(0x7FEB352D, tf.uint32)
  h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, 15))
  h *= tf.constant(0x846CA68B, tf.uint32)
  return tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, 16))


def _mask_keys(seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """[2] int seed -> two uint32 keys: the first from the seed's first
  int64, the second from all 128 bits."""
  w = tf.unstack(tf.reshape(tf.bitcast(tf.cast(seed, tf.int64), tf.uint32),
                            [4]))
  first = _mix32(tf.bitwise.bitwise_xor(
      w[0], _mix32(w[1] + tf.constant(0x9E3779B9, tf.uint32))))
  second = _mix32(tf.bitwise.bitwise_xor(
      w[2], _mix32(tf.bitwise.bitwise_xor(w[3], first))))
  return first, second


def kept(shape: tf.Tensor, seed: tf.Tensor, rate: float,
         first_of: tf.Tensor | None = None) -> tf.Tensor:
  """bool of `shape` [..., W]: which elements dropout keeps.

  Element i is kept when hash(i) >= rate * 2^32 (the rate to within
  2^-33), hash(i) = mix(mix(i + key1) xor key2), `_mix32` keyed by the
  seed: a counter-based generator, as Philox is, with 2 rounds of a strong
  32-bit mixer instead of Philox's 10 (dropout needs masks that are uniform
  and unrelated across elements and seeds, not a cryptographic stream), in
  a few integer ops per element that XLA vectorises.  The index is taken
  modulo 2^32: masks would repeat within one tensor of more than 4.3e9
  elements.

  `first_of` S: a tensor of `shape` [..., W] is, row by row, the first of
  every S rows of a full [..., S, W] one (a classifier's last layer run for
  [CLS] only): its elements take their indices in that full tensor, so its
  mask is the one the full layer draws.
  """
  width = shape[-1]
  rows = tf.reduce_prod(shape[:-1])
  row_stride = width if first_of is None else width * first_of
  key1, key2 = _mask_keys(seed)
  # The key joins the [1, W] term before the broadcast: a [rows, W] index
  # without it is a constant XLA would fold into its executable (4 bytes an
  # element, 400 MB for BERT-Base's [32, 12, 512, 512] attention).
  keyed_index = (tf.cast(tf.range(rows), tf.uint32)[:, None] *
                 tf.cast(row_stride, tf.uint32) +
                 (tf.cast(tf.range(width), tf.uint32) + key1)[None, :])
  hashed = _mix32(tf.bitwise.bitwise_xor(_mix32(keyed_index), key2))
  threshold = min(round(rate * 2.0**32), 2**32 - 1)
  return tf.reshape(hashed >= tf.constant(threshold, tf.uint32), shape)


def drop(x: tf.Tensor, seed: tf.Tensor, rate: float,
         first_of: tf.Tensor | None = None) -> tf.Tensor:
  """Inverted dropout of x: the elements `kept` keeps scaled by
  1 / (1 - rate), the others 0 (x's shape and dtype)."""
  return tf.where(kept(tf.shape(x), seed, rate, first_of),
                  x * tf.cast(1.0 / (1.0 - rate), x.dtype), tf.zeros_like(x))
