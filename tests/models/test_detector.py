"""FCOSDetector: output layout = priors.fpn_points order, masks, mixed precision."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import base
from lla_jax import priors
from lla_jax.models import detector
from tests.reference.networks import randomize


def tiny_cfg(**backbone):
  cfg = base.get_base_config().model
  cfg.backbone.depth, cfg.backbone.width = 18, 8
  cfg.fpn.channels = cfg.head.channels = 16
  cfg.head.num_convs, cfg.head.gn_groups = 1, 8
  for k, v in backbone.items():
    setattr(cfg.backbone, k, v)
  return cfg


def _tiny():
  """Tiny detector with random params (eval_shape + randomize: no init compile)."""
  cfg = tiny_cfg()
  model = detector.build_detector(cfg)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 64, 96, 3), jnp.float32))
  return cfg, model, {"params": randomize(shapes["params"])}


@pytest.mark.parametrize("hw", [(800, 1216), (256, 384), (130, 200)])
def test_levels_match_priors(hw):
  cfg = base.get_base_config().model  # the full R-50 model: shapes only
  model = detector.build_detector(cfg)
  x = jax.ShapeDtypeStruct((2, *hw, 3), jnp.float32)
  v = jax.eval_shape(model.init, jax.random.key(0), x)
  out, inter = jax.eval_shape(functools.partial(model.apply, capture_intermediates=True), v, x)
  pts = priors.fpn_points(*hw, cfg.head.strides)
  pyramid = inter["intermediates"]["fpn"]["__call__"][0]
  assert tuple(p.shape[1:3] for p in pyramid) == pts.shapes
  a = len(pts.xy)
  assert out["cls_logits"].shape == (2, a, 1) and out["ltrb"].shape == (2, a, 4) and out["aux_logits"].shape == (2, a)
  assert all(o.dtype == jnp.float32 for o in out.values())


def test_concat_order_is_priors_order():
  # Level maps holding each cell's own point (j*s, i*s) must concatenate to priors.fpn_points(...).xy.
  pts = priors.fpn_points(130, 200)
  maps = []
  for (h, w), s in zip(pts.shapes, (8, 16, 32, 64, 128)):
    i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    maps.append(np.stack([j * s, i * s], -1)[None].astype(np.float32))
  np.testing.assert_array_equal(detector.concat_levels(maps, 1)[0], pts.xy)
  scalar_maps = [m[..., 0] for m in maps]
  np.testing.assert_array_equal(detector.concat_levels(scalar_maps, 0)[0], pts.xy[:, 0])


def test_forward_and_bfloat16():
  cfg, model, v = _tiny()
  x = np.random.default_rng(0).normal(size=(2, 64, 96, 3)).astype(np.float32)
  out = jax.jit(model.apply)(v, x)
  pts = priors.fpn_points(64, 96)
  assert out["ltrb"].shape == (2, len(pts.xy), 4)
  assert bool((out["ltrb"] >= 0).all()) and bool((out["ltrb"] > 0).any())
  assert all(bool(jnp.isfinite(o).all()) for o in out.values())
  # bfloat16 compute with the same float32 params: float32 outputs close to the float32 run.
  cfg16 = tiny_cfg()
  cfg16.dtype = "bfloat16"
  out16 = jax.jit(detector.build_detector(cfg16).apply)(v, x)
  for k in out:
    assert out16[k].dtype == jnp.float32
    scale = float(jnp.abs(out[k]).max())
    np.testing.assert_allclose(out16[k], out[k], atol=0.05 * scale + 1e-2, err_msg=k)


def test_trainable_mask():
  cfg = tiny_cfg(norm="gn", freeze_at=2)
  model = detector.build_detector(cfg)
  v = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
  mask = detector.trainable_mask(v["params"], cfg)
  assert jax.tree.structure(mask) == jax.tree.structure(v["params"])
  for path, m in jax.tree_util.tree_flatten_with_path(mask)[0]:
    keys = [p.key for p in path]
    assert m == (keys[0] != "backbone" or keys[1] not in ("stem", "res2")), keys
  cfg = tiny_cfg(norm="frozen_bn", freeze_at=0)
  v = jax.eval_shape(detector.build_detector(cfg).init, jax.random.key(0),
                     jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
  mask = detector.trainable_mask(v["params"], cfg)
  assert not any(jax.tree.leaves(mask["backbone"]["res4"]["block1"]["norm2"]))
  assert all(jax.tree.leaves(mask["backbone"]["res4"]["block1"]["conv2"]))
  assert all(jax.tree.leaves(mask["head"])) and all(jax.tree.leaves(mask["fpn"]))


def test_decay_mask():
  cfg = tiny_cfg()
  v = jax.eval_shape(detector.build_detector(cfg).init, jax.random.key(0),
                     jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
  mask = detector.decay_mask(v["params"])
  head = mask["head"]
  assert head["scales"] and head["cls_tower0"]["kernel"] and head["cls_tower0"]["bias"]
  assert not head["cls_norm0"]["scale"] and not head["box_norm0"]["bias"]  # WD 0 on GroupNorm
  assert head["cls_score"]["bias"] and mask["fpn"]["lateral3"]["bias"] and mask["fpn"]["p7"]["kernel"]
  assert mask["backbone"]["res3"]["block0"]["conv1"]["kernel"]
  assert not any(jax.tree.leaves(mask["backbone"]["stem"]["norm1"]))  # FrozenBN
  n_true = sum(jax.tree.leaves(mask))
  n_conv = sum(1 for p, _ in jax.tree_util.tree_flatten_with_path(v["params"])[0] if p[-1].key == "kernel")
  n_bias = sum(1 for p, _ in jax.tree_util.tree_flatten_with_path(v["params"])[0]
               if p[-1].key == "bias" and "norm" not in p[-2].key)
  assert n_true == n_conv + n_bias + 1  # + scales


def test_bad_strides():
  cfg = tiny_cfg()
  cfg.head.strides = (8, 16, 32, 64)
  with pytest.raises(ValueError, match="strides"):
    jax.eval_shape(detector.build_detector(cfg).init, jax.random.key(0),
                   jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
  cfg = tiny_cfg()
  cfg.dtype = "float16"
  with pytest.raises(ValueError, match="dtype"):
    jax.eval_shape(detector.build_detector(cfg).init, jax.random.key(0),
                   jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
