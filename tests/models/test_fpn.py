"""FPN P3..P7 (cvpods cvpods/modeling/backbone/fpn.py) against a numpy re-statement."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lla_jax.models import fpn
from tests.reference.networks import np_conv2d, randomize, relu


def np_fpn(c, p, p6_from):
  """Lateral 1x1 + top-down nearest x2 (cropped) sum + output 3x3; P6 3x3/2 on P5 or C5; P7 on ReLU(P6)."""
  conv = lambda x, m, stride=1, pad=0: np_conv2d(x, p[m]["kernel"], p[m]["bias"], stride, pad)
  prev, outs = None, {}
  for level in (5, 4, 3):
    lat = conv(c[f"C{level}"], f"lateral{level}")
    if prev is not None:
      up = prev.repeat(2, axis=1).repeat(2, axis=2)[:, :lat.shape[1], :lat.shape[2]]
      lat = lat + up
    prev = lat
    outs[level] = conv(lat, f"output{level}", 1, 1)
  p6 = conv(outs[5] if p6_from == "p5" else c["C5"], "p6", 2, 1)
  p7 = conv(relu(p6), "p7", 2, 1)
  return [outs[3], outs[4], outs[5], p6, p7]


def _features(rng, sizes=((13, 9), (7, 5), (4, 3)), channels=(6, 8, 10)):
  return {f"C{l}": rng.normal(size=(2, h, w, ch)).astype(np.float32)
          for l, (h, w), ch in zip((3, 4, 5), sizes, channels)}


@pytest.mark.parametrize("p6_from", ["p5", "c5"])
def test_matches_numpy(p6_from):
  c = _features(np.random.default_rng(0))
  model = fpn.FPN(channels=4, p6_from=p6_from)
  params = randomize(jax.eval_shape(model.init, jax.random.key(0), c)["params"], seed=5)
  out = jax.jit(model.apply)({"params": params}, c)
  ref = np_fpn(c, jax.tree.map(np.asarray, params), p6_from)
  assert [o.shape[1:3] for o in out] == [(13, 9), (7, 5), (4, 3), (2, 2), (1, 1)]
  for o, r in zip(out, ref):
    np.testing.assert_allclose(np.asarray(o), r, rtol=1e-4, atol=1e-5)
  assert params["p6"]["kernel"].shape[2] == (4 if p6_from == "p5" else 10)


def test_upsample_crops_odd_sizes():
  x = jnp.arange(6.0).reshape(1, 2, 3, 1)
  y = fpn.upsample_nearest_2x(x, (3, 5))
  np.testing.assert_array_equal(y[0, :, :, 0], [[0, 0, 1, 1, 2], [0, 0, 1, 1, 2], [3, 3, 4, 4, 5]])


def test_c2_xavier_init():
  c = _features(np.random.default_rng(0), channels=(64, 128, 256))
  v = jax.jit(fpn.FPN(channels=32).init)(jax.random.key(0), c)["params"]
  for name, fan_in in [("lateral5", 256), ("output4", 9 * 32), ("p7", 9 * 32)]:
    k = np.asarray(v[name]["kernel"])
    bound = np.sqrt(3.0 / fan_in)  # kaiming_uniform(a=1)
    assert np.abs(k).max() <= bound and np.abs(k).max() > 0.95 * bound, name
    assert abs(k.std() / (bound / np.sqrt(3)) - 1) < 0.1, name
    np.testing.assert_array_equal(v[name]["bias"], 0.0)


def test_bad_p6_source():
  with pytest.raises(ValueError, match="p6_from"):
    jax.eval_shape(fpn.FPN(p6_from="c6").init, jax.random.key(0), _features(np.random.default_rng(0)))


def test_p2_p6_maxpool_matches_numpy():
  """Faster R-CNN's pyramid (detectron2 FPN + LastLevelMaxPool): C2..C5 in, P2..P6 out, P6 = P5[::2, ::2]
  (max-pool kernel 1, stride 2), no p6 / p7 convs."""
  rng = np.random.default_rng(1)
  sizes, channels = ((25, 17), (13, 9), (7, 5), (4, 3)), (3, 6, 8, 10)
  c = {f"C{l}": rng.normal(size=(2, h, w, ch)).astype(np.float32) for l, (h, w), ch in zip((2, 3, 4, 5), sizes, channels)}
  model = fpn.FPN(channels=4, in_levels=(2, 3, 4, 5), out_levels=(2, 3, 4, 5, 6), top_block="maxpool")
  params = randomize(jax.eval_shape(model.init, jax.random.key(0), c)["params"], seed=3)
  assert sorted(params) == sorted([f"{k}{l}" for k in ("lateral", "output") for l in (2, 3, 4, 5)])
  out = jax.jit(model.apply)({"params": params}, c)
  p = jax.tree.map(np.asarray, params)
  conv = lambda x, m, pad=0: np_conv2d(x, p[m]["kernel"], p[m]["bias"], 1, pad)
  prev, ref = None, {}
  for level in (5, 4, 3, 2):
    lat = conv(c[f"C{level}"], f"lateral{level}")
    if prev is not None:
      lat = lat + prev.repeat(2, axis=1).repeat(2, axis=2)[:, :lat.shape[1], :lat.shape[2]]
    prev = lat
    ref[level] = conv(lat, f"output{level}", 1)
  ref[6] = ref[5][:, ::2, ::2]
  assert [o.shape[1:3] for o in out] == [(25, 17), (13, 9), (7, 5), (4, 3), (2, 2)]
  for o, level in zip(out, (2, 3, 4, 5, 6)):
    np.testing.assert_allclose(np.asarray(o), ref[level], rtol=1e-4, atol=1e-5)


def test_output_subset_and_bad_levels():
  """out_levels may start above the lowest input (P3..P7 from C3..C5 is the default); gaps are an error."""
  c = _features(np.random.default_rng(0))
  full = fpn.FPN(channels=4)
  params = jax.eval_shape(full.init, jax.random.key(0), c)["params"]
  sub = jax.eval_shape(fpn.FPN(channels=4, out_levels=(4, 5, 6)).apply, {"params": params}, c)
  assert [o.shape[1:3] for o in sub] == [(7, 5), (4, 3), (2, 2)]
  with pytest.raises(ValueError, match="in_levels=.*out_levels"):
    jax.eval_shape(fpn.FPN(out_levels=(3, 5, 6)).init, jax.random.key(0), c)
  with pytest.raises(ValueError, match="top_block"):
    jax.eval_shape(fpn.FPN(top_block="pool").init, jax.random.key(0), c)
