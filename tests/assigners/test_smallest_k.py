"""common.smallest_k: the two-pass chunked selection gives exactly lax.top_k(-x, k), ties and inf included."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lla_jax.assigners.common import smallest_k


def full_top_k(x, k):
  neg, idx = jax.lax.top_k(-jnp.asarray(x), min(k, x.shape[-1]))
  return np.asarray(-neg), np.asarray(idx)


def numpy_smallest(x, k):
  """Hand re-statement: stable argsort on (value, index), the first k."""
  idx = np.argsort(x, axis=-1, kind="stable")[..., :k]
  return np.take_along_axis(x, idx, axis=-1), idx


@pytest.mark.parametrize("n,k,chunk", [(1000, 10, None), (1000, 10, 7), (23463, 10, None), (997, 9, 31),
                                       (50, 10, 3), (12, 10, None), (5, 10, None), (64, 1, 8), (64, 0, None)])
@pytest.mark.parametrize("kind", ["ties", "inf", "all_inf", "continuous", "duplicate_min_chunks"])
def test_equals_full_top_k(n, k, chunk, kind):
  rng = np.random.default_rng(n * 31 + k)
  m = 6
  if kind == "continuous":
    x = rng.normal(size=(m, n)).astype(np.float32)
  else:
    x = rng.integers(0, 4, size=(m, n)).astype(np.float32)      # heavy exact ties
  if kind == "inf":
    x[rng.random((m, n)) < 0.9] = np.inf
    x[0] = np.inf
    x[0, -3:] = 1.0                                             # few finite entries, at the end
  if kind == "all_inf":
    x[:] = np.inf
  if kind == "duplicate_min_chunks":
    x[:] = 5.0
    x[:, ::17] = 1.0                                            # many chunks share the same minimum
    x[1, -1] = 0.0
  got_v, got_i = jax.jit(lambda a: smallest_k(a, k, chunk))(x)
  want_v, want_i = full_top_k(x, k)
  np.testing.assert_array_equal(np.asarray(got_i), want_i)
  np.testing.assert_array_equal(np.asarray(got_v), want_v)
  ref_v, ref_i = numpy_smallest(x, min(k, n))
  np.testing.assert_array_equal(np.asarray(got_i), ref_i)
  np.testing.assert_array_equal(np.asarray(got_v), ref_v)


def test_hand_worked_tie_across_chunks():
  # chunks of 2: [5, 5 | 5, 1 | 5, 5]; k = 2 -> the 1 (index 3) and the first 5 (index 0), though chunk 0's
  # minimum ties with chunk 2's and only chunk 1 has a smaller one.
  x = np.array([[5, 5, 5, 1, 5, 5]], np.float32)
  v, i = smallest_k(jnp.asarray(x), 2, chunk=2)
  np.testing.assert_array_equal(np.asarray(i), [[3, 0]])
  np.testing.assert_array_equal(np.asarray(v), [[1, 5]])


def test_batched_under_vmap():
  rng = np.random.default_rng(0)
  x = rng.integers(0, 3, size=(3, 4, 500)).astype(np.float32)
  v, i = jax.jit(jax.vmap(lambda a: smallest_k(a, 10)))(x)
  want_v, want_i = full_top_k(x, 10)
  np.testing.assert_array_equal(np.asarray(i), want_i)
  np.testing.assert_array_equal(np.asarray(v), want_v)


def test_default_chunk_prefers_a_divisor_near_sqrt_n_over_k():
  from lla_jax.assigners.common import _chunk_size
  assert _chunk_size(23463, 10) == 33          # 23463 = 27 * 11 * 79; sqrt(2346) ~ 48: 27, 33 and 79 qualify
  assert _chunk_size(1705, 10) == 11           # the quick start's points
  assert _chunk_size(997, 9) == 11             # a prime: no divisor in range, the rounded ideal (then padded)
