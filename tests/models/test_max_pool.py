"""layers.max_pool: flax.linen.max_pool's values and, bit for bit, its gradients (XLA's select-and-scatter)."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lla_jax.models import layers


def numpy_max_pool_grad(x, g, window, strides, pads):
  """Hand re-statement: each output's gradient goes to the first maximum of its window (row-major); the
  outputs are visited in row-major order and their gradients added in that order."""
  n, h, w, c = x.shape
  xp = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)), constant_values=-np.inf)
  dxp = np.zeros_like(xp)
  ho, wo = g.shape[1:3]
  for b in range(n):
    for ch in range(c):
      for oy in range(ho):
        for ox in range(wo):
          win = xp[b, oy * strides[0]:oy * strides[0] + window[0], ox * strides[1]:ox * strides[1] + window[1], ch]
          i, j = np.unravel_index(np.argmax(win), win.shape)         # argmax: the first maximum, row-major
          dxp[b, oy * strides[0] + i, ox * strides[1] + j, ch] += g[b, oy, ox, ch]
  return dxp[:, pads[0][0]:pads[0][0] + h, pads[1][0]:pads[1][0] + w]


@pytest.mark.parametrize("shape", [(2, 9, 11, 3), (1, 8, 8, 2), (1, 3, 2, 1)])
@pytest.mark.parametrize("padding", [((1, 1), (1, 1)), "SAME", ((0, 0), (0, 0))])
@pytest.mark.parametrize("ties", [False, True])
def test_values_and_gradients_bit_exact(shape, padding, ties):
  rng = np.random.default_rng(sum(shape))
  x = rng.integers(-2, 3, size=shape).astype(np.float32) if ties else rng.normal(size=shape).astype(np.float32)
  if ties:
    x = np.maximum(x, 0.0)                                           # many tied zeros, as after a ReLU
  if padding == ((0, 0), (0, 0)) and min(shape[1:3]) < 3:
    pytest.skip("no valid window")
  stock = lambda v: nn.max_pool(v, (3, 3), strides=(2, 2), padding=padding)
  ours = lambda v: layers.max_pool(v, (3, 3), (2, 2), padding)
  y_ref, vjp_ref = jax.vjp(jax.jit(stock), jnp.asarray(x))
  y, vjp = jax.vjp(jax.jit(ours), jnp.asarray(x))
  np.testing.assert_array_equal(np.asarray(y), np.asarray(y_ref))
  g = rng.normal(size=y.shape).astype(np.float32)
  (dx_ref,), (dx,) = vjp_ref(jnp.asarray(g)), vjp(jnp.asarray(g))
  np.testing.assert_array_equal(np.asarray(dx), np.asarray(dx_ref))
  pads = jax.lax.padtype_to_pads(shape[1:3], (3, 3), (2, 2), padding) if isinstance(padding, str) else padding
  np.testing.assert_array_equal(np.asarray(dx), numpy_max_pool_grad(x, g, (3, 3), (2, 2), pads))


def test_gradient_through_jit_of_a_network_matches():
  """The stem pattern (ReLU, then the pool) inside a jitted grad: identical to the stock pool's."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 16, 20, 4)).astype(np.float32))
  w = jnp.asarray(rng.normal(size=(2, 8, 10, 4)).astype(np.float32))
  loss = lambda pool: jax.jit(jax.grad(lambda v: jnp.sum(pool(jax.nn.relu(v)) * w)))
  ref = loss(lambda v: nn.max_pool(v, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1))))(x)
  got = loss(lambda v: layers.max_pool(v, (3, 3), (2, 2), ((1, 1), (1, 1))))(x)
  np.testing.assert_array_equal(np.asarray(got), np.asarray(ref))


class _Stem(nn.Module):
  """conv -> batch norm (batch statistics) -> ReLU -> 3x3/2 pool -> conv: the ResNet stem's pattern."""
  pool: object

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(8, (7, 7), strides=(2, 2), padding=((3, 3), (3, 3)), use_bias=False)(x)
    x = nn.BatchNorm(use_running_average=False)(x)
    x = self.pool(nn.relu(x))
    return nn.Conv(4, (3, 3), padding=((1, 1), (1, 1)))(x)


def test_stem_gradients_bit_exact_when_xla_recomputes_the_pool_input():
  """In a jitted train step XLA may recompute the pool's input (batch norm + ReLU) inside the backward
  fusion with other roundings than the forward pass's; the gradients must still equal the stock pool's."""
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(4, 64, 80, 3)).astype(np.float32))
  stock = _Stem(lambda v: nn.max_pool(v, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1))))
  ours = _Stem(lambda v: layers.max_pool(v, (3, 3), (2, 2), ((1, 1), (1, 1))))
  variables = stock.init(jax.random.key(0), x)

  def grads(model):
    def loss(params):
      out, _ = model.apply({**variables, "params": params}, x, mutable=["batch_stats"])
      return jnp.sum(out ** 2)
    return jax.jit(jax.grad(loss))(variables["params"])

  for a, b in zip(jax.tree.leaves(grads(ours)), jax.tree.leaves(grads(stock))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
