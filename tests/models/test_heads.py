"""FCOS head (Megvii-BaseDetection/LLA playground/detection/crowdhuman/fcos.res50.fpn.crowdhuman.800size.30k/fcos.py):
numpy re-statement, initialisation, weight sharing across levels."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lla_jax.models import heads
from tests.reference.networks import np_conv2d, np_group_norm, randomize, relu

STRIDES = (8, 16, 32, 64, 128)


def _levels(rng, channels=8, sizes=((9, 7), (5, 4), (3, 2), (2, 1), (1, 1))):
  return [rng.normal(size=(2, h, w, channels)).astype(np.float32) for h, w in sizes]


def np_head(feats, p, num_convs, groups, aux_name):
  """Per level: towers of [conv3x3 -> GN -> ReLU]; cls on the cls tower; box and aux on the box tower."""
  conv = lambda x, m: np_conv2d(x, p[m]["kernel"], p[m]["bias"], 1, 1)
  out = {"cls_logits": [], "ltrb": [], "aux_logits": []}
  for level, x in enumerate(feats):
    towers = {}
    for t in ("cls", "box"):
      y = x
      for i in range(num_convs):
        n = p[f"{t}_norm{i}"]
        y = relu(np_group_norm(conv(y, f"{t}_tower{i}"), n["scale"], n["bias"], groups))
      towers[t] = y
    out["cls_logits"].append(conv(towers["cls"], "cls_score"))
    out["ltrb"].append(relu(p["scales"][level] * conv(towers["box"], "bbox_pred")) * STRIDES[level])
    out["aux_logits"].append(conv(towers["box"], aux_name)[..., 0])
  return out


@pytest.mark.parametrize("aux,aux_name", [("iou", "iou_pred"), ("centerness", "centerness")])
def test_matches_numpy(aux, aux_name):
  feats = _levels(np.random.default_rng(0))
  head = heads.FCOSHead(num_classes=2, channels=8, num_convs=2, gn_groups=4, aux=aux)
  params = randomize(jax.eval_shape(head.init, jax.random.key(0), feats)["params"], seed=2)
  params["scales"] = jnp.asarray([0.5, 1.0, 1.5, -0.5, 2.0])  # level-specific, one negative (ReLU clamps)
  out = jax.jit(head.apply)({"params": params}, feats)
  ref = np_head(feats, jax.tree.map(np.asarray, params), 2, 4, aux_name)
  for key in ref:
    for o, r in zip(out[key], ref[key]):
      assert o.dtype == jnp.float32
      np.testing.assert_allclose(np.asarray(o), r, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(r).max()), err_msg=key)


def test_init():
  feats = _levels(np.random.default_rng(0), channels=64)
  v = jax.jit(heads.FCOSHead(channels=64, num_convs=4, gn_groups=32).init)(jax.random.key(0), feats)["params"]
  assert heads.prior_bias(0.01) == pytest.approx(-math.log(99.0))
  np.testing.assert_allclose(v["cls_score"]["bias"], [-4.59512], atol=1e-5)
  np.testing.assert_array_equal(v["scales"], np.ones(5))
  for name in ("cls_tower0", "box_tower3", "bbox_pred", "iou_pred"):
    np.testing.assert_array_equal(v[name]["bias"], 0.0)
  k = np.asarray(v["cls_tower1"]["kernel"])  # 3*3*64*64 draws of N(0, 0.01^2)
  assert abs(k.std() - 0.01) < 0.0005 and abs(k.mean()) < 0.0005
  np.testing.assert_array_equal(v["box_norm2"]["scale"], 1.0)
  np.testing.assert_array_equal(v["box_norm2"]["bias"], 0.0)
  assert "centerness" not in v


def test_shared_across_levels():
  # The same feature map on every level: cls/aux identical, ltrb proportional to the stride (scales init 1).
  x = np.random.default_rng(3).normal(size=(1, 4, 5, 8)).astype(np.float32)
  head = heads.FCOSHead(channels=8, num_convs=1, gn_groups=4)
  v = jax.jit(head.init)(jax.random.key(1), [x] * 5)
  out = jax.jit(head.apply)(v, [x] * 5)
  for level in range(1, 5):
    np.testing.assert_array_equal(out["cls_logits"][level], out["cls_logits"][0])
    np.testing.assert_allclose(out["ltrb"][level], out["ltrb"][0] * STRIDES[level] / 8, rtol=1e-6)
  assert out["aux_logits"][0].shape == (1, 4, 5)


def test_bad_config():
  feats = _levels(np.random.default_rng(0))
  with pytest.raises(ValueError, match="gn_groups"):
    jax.eval_shape(heads.FCOSHead(channels=8, gn_groups=3).init, jax.random.key(0), feats)
  with pytest.raises(ValueError, match="aux"):
    jax.eval_shape(heads.FCOSHead(channels=8, gn_groups=4, aux="ctr").init, jax.random.key(0), feats)
  with pytest.raises(ValueError, match="strides"):
    jax.eval_shape(heads.FCOSHead(channels=8, gn_groups=4).init, jax.random.key(0), feats[:4])
