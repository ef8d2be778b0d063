"""Faster R-CNN RPN head, box head and their losses against numpy."""
import math

import jax
import jax.numpy as jnp
import numpy as np

from lla_jax.models import roi_heads, rpn
from lla_jax.priors import rcnn_anchors


def bce_np(x, t):
  return max(x, 0.0) - x * t + math.log1p(math.exp(-abs(x)))


def sl1_np(d, beta=1.0):
  d = abs(d)
  return 0.5 * d * d / beta if d < beta else d - 0.5 * beta


def test_rpn_head_shapes_order_and_init():
  rng = np.random.default_rng(0)
  shapes = [(16, 24), (8, 12), (4, 6), (2, 3), (1, 2)]          # P2..P6 of a 64 x 96 input
  feats = [jnp.asarray(rng.normal(size=(2, h, w, 8)), jnp.float32) for h, w in shapes]
  head = rpn.RPNHead(channels=8)
  params = head.init(jax.random.key(0), feats)
  logits, deltas = head.apply(params, feats)
  anchors, starts = rcnn_anchors((64, 96))
  assert logits.shape == (2, len(anchors)) and deltas.shape == (2, len(anchors), 4)
  p = jax.tree.map(np.asarray, params["params"])
  assert set(p) == {"conv", "objectness_logits", "anchor_deltas"}
  assert 0.005 < p["conv"]["kernel"].std() < 0.015 and np.all(p["conv"]["bias"] == 0)
  # anchor (level 1, cell (i, j), ratio a): the 1x1 convs at that cell of the 3x3 conv + ReLU output
  f = np.pad(np.asarray(feats[1][1]), ((1, 1), (1, 1), (0, 0)))
  i, j = 5, 7
  t = np.maximum(np.einsum("hwc,hwcd->d", f[i:i + 3, j:j + 3], p["conv"]["kernel"]) + p["conv"]["bias"], 0)
  cls = t @ p["objectness_logits"]["kernel"][0, 0] + p["objectness_logits"]["bias"]
  box = t @ p["anchor_deltas"]["kernel"][0, 0] + p["anchor_deltas"]["bias"]
  base = starts[1] + (i * 12 + j) * 3
  np.testing.assert_allclose(np.asarray(logits[1, base:base + 3]), cls, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(np.asarray(deltas[1, base:base + 3]), box.reshape(3, 4), rtol=1e-4, atol=1e-6)


def test_rpn_losses_match_numpy():
  rng = np.random.default_rng(1)
  b, a = 2, 300
  logits = rng.normal(0, 2, (b, a)).astype(np.float32)
  deltas = rng.normal(0, 1.5, (b, a, 4)).astype(np.float32)
  targets = rng.normal(0, 1, (b, a, 4)).astype(np.float32)
  labels = rng.choice([-1, 0, 1], (b, a), p=[0.6, 0.3, 0.1]).astype(np.int32)
  cls, loc = jax.jit(rpn.rpn_losses)(logits, deltas, labels, targets)
  want_cls = sum(bce_np(float(logits[i, k]), float(labels[i, k] == 1)) for i in range(b) for k in range(a)
                 if labels[i, k] >= 0) / (256 * b)
  want_loc = sum(sl1_np(float(deltas[i, k, c] - targets[i, k, c])) for i in range(b) for k in range(a) for c in range(4)
                 if labels[i, k] == 1) / (256 * b)
  np.testing.assert_allclose([float(cls), float(loc)], [want_cls, want_loc], rtol=1e-5)


def test_box_head_channel_major_flatten_and_init():
  rng = np.random.default_rng(2)
  pooled = jnp.asarray(rng.normal(size=(3, 7, 7, 4)), jnp.float32)
  head = roi_heads.FastRCNNHead(fc_dim=16)
  params = head.init(jax.random.key(1), pooled)
  cls, box = head.apply(params, pooled)
  assert cls.shape == (3, 2) and box.shape == (3, 4)
  p = jax.tree.map(np.asarray, params["params"])
  x = np.asarray(pooled).transpose(0, 3, 1, 2).reshape(3, -1)         # torch (C, H, W) order
  for name in ("fc1", "fc2"):
    x = np.maximum(x @ p[name]["kernel"] + p[name]["bias"], 0)
  np.testing.assert_allclose(np.asarray(cls), x @ p["cls_score"]["kernel"], rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(np.asarray(box), x @ p["bbox_pred"]["kernel"], rtol=1e-4, atol=1e-7)
  big = roi_heads.FastRCNNHead().init(jax.random.key(2), jnp.zeros((1, 7, 7, 256)))["params"]
  np.testing.assert_allclose(np.asarray(big["fc1"]["kernel"]).var(), 1 / 12544, rtol=0.02)   # kaiming-uniform a=1
  np.testing.assert_allclose(np.asarray(big["bbox_pred"]["kernel"]).std(), 0.001, rtol=0.1)


def test_fast_rcnn_losses_match_numpy():
  rng = np.random.default_rng(3)
  b, r = 2, 40
  logits = rng.normal(0, 2, (b, r, 2)).astype(np.float32)
  deltas = rng.normal(0, 1.5, (b, r, 4)).astype(np.float32)
  targets = rng.normal(0, 1, (b, r, 4)).astype(np.float32)
  classes = rng.choice([0, 1], (b, r), p=[0.3, 0.7]).astype(np.int32)
  valid = rng.random((b, r)) > 0.2
  cls, box = jax.jit(roi_heads.fast_rcnn_losses)(logits, deltas, classes, targets, valid)
  n = valid.sum()
  ce = []
  for i in range(b):
    for k in range(r):
      if valid[i, k]:
        z = logits[i, k].astype(np.float64)
        ce.append(np.log(np.exp(z).sum()) - z[classes[i, k]])
  reg = sum(sl1_np(float(deltas[i, k, c] - targets[i, k, c])) for i in range(b) for k in range(r) for c in range(4)
            if valid[i, k] and classes[i, k] == 0)
  np.testing.assert_allclose([float(cls), float(box)], [np.sum(ce) / n, reg / n], rtol=1e-5)
