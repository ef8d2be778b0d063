"""Fixed-size random sampler: sizes, labels, uniqueness, uniformity, keying."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lla_jax.assigners import sampler


def check(labels, s, num, frac, bg):
  labels = np.asarray(labels)
  idx, valid, pos = (np.asarray(x) for x in s)
  n_pos_avail = np.sum((labels != -1) & (labels != bg))
  n_neg_avail = np.sum(labels == bg)
  n_pos = min(n_pos_avail, int(num * frac))
  n_neg = min(n_neg_avail, num - n_pos)
  assert idx.shape == (num,)
  np.testing.assert_array_equal(valid, np.arange(num) < n_pos + n_neg)
  np.testing.assert_array_equal(pos, np.arange(num) < n_pos)
  taken = idx[valid]
  assert len(set(taken.tolist())) == len(taken)
  assert np.all((labels[idx[pos]] != -1) & (labels[idx[pos]] != bg))
  assert np.all(labels[idx[valid & ~pos]] == bg)
  return n_pos, n_neg


@pytest.mark.parametrize("n_pos,n_neg,n_ign", [(300, 5000, 100), (10, 5000, 0), (10, 20, 7), (0, 0, 50), (0, 3, 0),
                                               (200, 0, 3)])
def test_sizes_and_labels(n_pos, n_neg, n_ign):
  rng = np.random.default_rng(n_pos + n_neg)
  labels = rng.permutation(np.r_[np.ones(n_pos), np.zeros(n_neg), -np.ones(n_ign)]).astype(np.int32)
  s = jax.jit(functools.partial(sampler.sample, num=256, positive_fraction=0.5))(labels, rng=jax.random.key(3))
  got = check(labels, s, 256, 0.5, 0)
  assert got == (min(n_pos, 128), min(n_neg, 256 - min(n_pos, 128)))


def test_fewer_candidates_than_slots_and_roi_labels():
  classes = jnp.array([0, 1, -1, 1, 0], jnp.int32)   # RoI head: 0 foreground, 1 = C background, -1 ignore
  s = sampler.sample(classes, 8, 0.5, jax.random.key(0), bg_label=1)
  assert check(classes, s, 8, 0.5, 1) == (2, 2)
  m = sampler.sampled_mask(s, 5)
  np.testing.assert_array_equal(m, [True, True, False, True, True])


def test_uniform_inclusion_and_key_determinism():
  labels = jnp.asarray(np.r_[np.ones(40), np.zeros(60)].astype(np.int32))
  f = jax.jit(jax.vmap(lambda k: sampler.sampled_mask(sampler.sample(labels, 20, 0.5, k), 100)))
  masks = np.asarray(f(jax.random.split(jax.random.key(1), 4000)))
  freq = masks.mean(0)
  # inclusion probability 10 / 40 for positives and 10 / 60 for negatives (binomial sd ~0.007)
  np.testing.assert_allclose(freq[:40], 0.25, atol=0.03)
  np.testing.assert_allclose(freq[40:], 10 / 60, atol=0.03)
  a = sampler.sample(labels, 20, 0.5, jax.random.key(7))
  b = sampler.sample(labels, 20, 0.5, jax.random.key(7))
  np.testing.assert_array_equal(a.index, b.index)


def test_same_samples_on_one_and_eight_devices():
  """Per-image keys split from one step key: sharding the batch over 8 devices draws the same samples."""
  devices = jax.devices()
  if len(devices) < 8:
    pytest.skip("needs 8 (virtual) devices")
  b = 8
  labels = np.random.default_rng(0).integers(-1, 2, (b, 5000)).astype(np.int32)
  keys = jax.random.split(jax.random.key(11), b)
  f = jax.jit(jax.vmap(lambda l, k: sampler.sample(l, 256, 0.5, k)))
  one = f(labels, keys)
  mesh = jax.sharding.Mesh(np.array(devices[:8]), ("data",))
  shard = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  eight = f(jax.device_put(labels, shard), jax.device_put(keys, shard))
  for x, y in zip(one, eight):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
