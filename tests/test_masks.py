import numpy as np
import pytest
import tensorflow as tf

from bert import masks


def _dropped(shape, rate, seed, first_of=None) -> np.ndarray:
  x = tf.ones(shape)
  return masks.drop(x, tf.constant(seed, tf.int64), rate,
                    first_of).numpy() == 0


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_dropout_masks_are_uniform_and_independent(rate):
  # The hashed masks against what independent Bernoulli(rate) draws give:
  # the rate, pairs of neighbours along every axis, and the masks of
  # neighbouring seeds (fold_in of consecutive calls, as training draws
  # them).  Bounds are 6 standard deviations of the binomial counts.
  n = 64 * 128 * 128
  base = tf.constant([11, 12], tf.int64)
  seeds = [tf.random.experimental.stateless_fold_in(base, i).numpy()
           for i in range(2)]
  mask = _dropped([64, 128, 128], rate, seeds[0])

  def close(observed, p, count):
    assert abs(observed - p) < 6 * np.sqrt(p * (1 - p) / count), (observed,
                                                                  p)

  close(mask.mean(), rate, n)
  for axis in range(3):
    first = np.take(mask, np.arange(mask.shape[axis] - 1), axis=axis)
    second = np.take(mask, np.arange(1, mask.shape[axis]), axis=axis)
    close((first & second).mean(), rate * rate, first.size)
  other = _dropped([64, 128, 128], rate, seeds[1])
  close((mask & other).mean(), rate * rate, n)
  # Each 32-element row's count of drops is binomial, so rows are not
  # balanced or striped: its variance across rows is 32 rate (1 - rate).
  counts = mask.reshape(-1, 32).sum(-1)
  assert abs(counts.var() / (32 * rate * (1 - rate)) - 1) < 0.05


def test_dropout_first_of_is_the_full_masks_first_rows():
  # [B, W] rows with first_of S get the full [B, S, W] mask's row 0 (the
  # last layer run for [CLS] only), and nothing like another row's.
  seed = [5, 9]
  full = _dropped([6, 10, 40], 0.5, seed)
  first = _dropped([6, 40], 0.5, seed, first_of=tf.constant(10))
  np.testing.assert_array_equal(first, full[:, 0])
  assert (first != full[:, 1]).any()
  # The attention's [B, N, 1, S] against [B, N, S, S].
  full = _dropped([2, 3, 12, 12], 0.5, seed)
  np.testing.assert_array_equal(
      _dropped([2, 3, 1, 12], 0.5, seed, first_of=tf.constant(12)),
      full[:, :, :1])
