"""Faster R-CNN proposals and box-head inference against the numpy reference."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lla_jax import postprocess
from lla_jax.priors import rcnn_anchors
from tests.reference import rcnn_reference as ref

H, W = 128, 192
ANCHORS, STARTS = rcnn_anchors((H, W))
SMALL = dict(rpn_pre_nms_topk=(300, 200), rpn_post_nms_topk=(250, 120))


def random_rpn(seed, a=len(ANCHORS)):
  rng = np.random.default_rng(seed)
  logits = rng.normal(0, 3, a).astype(np.float32)
  deltas = rng.normal(0, 0.4, (a, 4)).astype(np.float32)
  deltas[rng.random(a) < 0.05, 2] = 9.0        # past the clamp
  deltas[rng.random(a) < 0.05, 3] = -4.0       # tiny: removed by the min-size filter
  return logits, deltas


def proposals(logits, deltas, train, cfg, with_logits=True):
  f = jax.jit(functools.partial(postprocess.rpn_proposals, level_start=STARTS, train=train, cfg=cfg,
                                with_logits=with_logits))
  return f(ANCHORS, objectness_logits=logits, anchor_deltas=deltas, image_hw=jnp.array([H - 10, W - 30]))


@pytest.mark.parametrize("seed,train", [(0, True), (1, False), (2, True)])
def test_proposals_match_reference(seed, train):
  logits, deltas = random_rpn(seed)
  boxes, valid, lg = proposals(logits, deltas, train, SMALL)
  k_pre, k_post = SMALL["rpn_pre_nms_topk"][1 - train], SMALL["rpn_post_nms_topk"][1 - train]
  want_b, want_s = ref.rpn_proposals_np(ANCHORS, STARTS, logits, deltas, k_pre, k_post)
  n = len(want_s)
  assert boxes.shape == (k_post, 4) and int(valid.sum()) == n
  np.testing.assert_array_equal(np.asarray(lg)[:n], want_s)
  np.testing.assert_allclose(np.asarray(boxes)[:n], want_b, rtol=1e-6, atol=1e-3)
  np.testing.assert_array_equal(np.asarray(boxes)[n:], 0)
  assert np.any(want_b[:, 0] < 0) or np.any(want_b[:, 2] > W)   # unclipped: some leave the image


def test_proposals_released_settings_fewer_than_post_k():
  """Released top-k values on a small image (1536 anchors): every anchor is a candidate, < 2000 survive."""
  anchors, starts = rcnn_anchors((64, 96))
  logits, deltas = random_rpn(5, len(anchors))
  f = jax.jit(functools.partial(postprocess.rpn_proposals, level_start=starts, train=True, with_logits=True))
  boxes, valid, lg = f(anchors, objectness_logits=logits, anchor_deltas=deltas, image_hw=(64, 96))
  want_b, want_s = ref.rpn_proposals_np(anchors, starts, logits, deltas, 12000, 2000)
  n = len(want_s)
  assert boxes.shape == (2000, 4) and int(valid.sum()) == n < len(anchors)
  np.testing.assert_array_equal(np.asarray(lg)[:n], want_s)
  np.testing.assert_allclose(np.asarray(boxes)[:n], want_b, rtol=1e-6, atol=1e-3)
  w, h = (np.asarray(boxes)[:n, 2] - np.asarray(boxes)[:n, 0]), (np.asarray(boxes)[:n, 3] - np.asarray(boxes)[:n, 1])
  assert np.all(w > 2) and np.all(h > 2)


def test_proposals_ties_lowest_index_and_clip_switch():
  a = np.array([[0, 0, 10, 10], [100, 100, 110, 110], [200, 0, 210, 10], [-20, -20, 40, 40]], np.float32)
  starts = np.array([0, 2, 4])
  logits = np.array([1.0, 2.0, 2.0, 0.5], np.float32)
  cfg = dict(rpn_pre_nms_topk=(2, 1), rpn_post_nms_topk=(3, 1))
  b, v, lg = postprocess.rpn_proposals(a, starts, logits, np.zeros((4, 4), np.float32), (50, 50), True, cfg,
                                       with_logits=True)
  # level 0 keeps anchors 1, 0; level 1: anchor 2 (logit 2.0), anchor 3. Equal logits 2.0: lower level first.
  np.testing.assert_array_equal(np.asarray(b), a[[1, 2, 0]])
  np.testing.assert_array_equal(np.asarray(lg), [2.0, 2.0, 1.0])
  cfg["rpn_clip_proposals"] = True          # stock detectron2: clip, then the size filter drops anchors 1, 2
  b, v = postprocess.rpn_proposals(a, starts, logits, np.zeros((4, 4), np.float32), (50, 50), True, cfg)
  np.testing.assert_array_equal(np.asarray(v), [True, True, False])
  np.testing.assert_array_equal(np.asarray(b)[:2], [[0, 0, 10, 10], [0, 0, 40, 40]])


def test_proposals_errors():
  logits, deltas = random_rpn(0)
  with pytest.raises(ValueError, match="agree on A"):
    postprocess.rpn_proposals(ANCHORS[:-1], STARTS, logits, deltas, (H, W), True)
  with pytest.raises(ValueError, match="concrete"):
    jax.jit(lambda s: postprocess.rpn_proposals(ANCHORS, s, logits, deltas, (H, W), True))(STARTS)


def random_head(seed, p=400, hw=(100, 150)):
  rng = np.random.default_rng(seed)
  xy = rng.uniform(-30, 160, (p, 2))
  props = np.concatenate([xy, xy + rng.uniform(4, 80, (p, 2))], 1).astype(np.float32)
  logits = rng.normal(0, 2, (p, 2)).astype(np.float32)
  deltas = rng.normal(0, 1.0, (p, 4)).astype(np.float32)
  return props, logits, deltas


@pytest.mark.parametrize("seed", range(3))
def test_detections_match_reference(seed):
  props, logits, deltas = random_head(seed)
  image_hw, orig_hw = np.array([100, 150]), np.array([213, 333])
  det = jax.jit(postprocess.rcnn_detections)(props, logits, deltas, image_hw, orig_hw)
  want_b, want_s = ref.rcnn_detections_np(props, logits, deltas, image_hw, orig_hw)
  v = np.asarray(det.valid)
  assert det.boxes.shape == (300, 4) and v.sum() == len(want_s) > 0
  np.testing.assert_allclose(np.asarray(det.scores)[v], want_s, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(det.boxes)[v], want_b, rtol=1e-5, atol=1e-3)
  assert np.all(np.asarray(det.classes) == 0) and np.all(np.asarray(det.boxes)[~v] == 0)
  assert np.all(np.asarray(det.boxes)[v][:, 2] <= 333) and np.all(np.asarray(det.boxes)[v][:, 3] <= 213)


def test_detections_threshold_cut_then_drop_empty():
  """Score exactly float32(0.05) is dropped; empty boxes take slots of the cut and are dropped after it."""
  props = np.array([[-50, 10, -20, 40], [10, 10, 40, 40], [-60, 0, -30, 20], [50, 50, 90, 90], [5, 5, 9, 9]],
                   np.float32)
  p = np.array([0.9, 0.8, 0.7, 0.6, 0.05], np.float32)
  logits = np.stack([np.log(p / (1 - p)), np.zeros(5, np.float32)], 1).astype(np.float32)
  det = postprocess.rcnn_detections(props, logits, np.zeros((5, 4), np.float32), (100, 100), (100, 100),
                                    dict(test_detections_per_image=3))
  np.testing.assert_array_equal(np.asarray(det.valid), [False, True, False])  # boxes 0, 2 clipped to width 0
  np.testing.assert_allclose(np.asarray(det.boxes)[1], [10, 10, 40, 40])
  prob = np.asarray(jax.nn.softmax(jnp.asarray(logits), -1))[:, 0]
  if prob[4] <= np.float32(0.05):     # softmax rounding decides: the threshold is strict either way
    det = postprocess.rcnn_detections(props[4:], logits[4:], np.zeros((1, 4), np.float32), (100, 100), (100, 100))
    assert not bool(det.valid.any())


def test_detections_vmap_and_errors():
  props, logits, deltas = random_head(7, p=50)
  f = jax.jit(jax.vmap(postprocess.rcnn_detections))
  det = f(np.stack([props] * 2), np.stack([logits] * 2), np.stack([deltas] * 2), np.array([[100, 150]] * 2),
          np.array([[100, 150], [50, 75]]))
  np.testing.assert_allclose(np.asarray(det.boxes)[1], np.asarray(det.boxes)[0] / 2, rtol=1e-6)
  with pytest.raises(ValueError, match="num_classes=1"):
    postprocess.rcnn_detections(props, logits[:, :1], deltas, (100, 150), (100, 150))


def test_detections_two_classes_and_non_finite():
  """Class-wise NMS: the same box kept once per class; a non-finite delta row is dropped."""
  props = np.array([[10, 10, 50, 90], [10, 10, 50, 90], [60, 10, 90, 50]], np.float32)
  logits = np.array([[3.0, 2.0, 0.0], [2.5, 2.9, 0.0], [1.0, 0.5, 0.0]], np.float32)
  deltas = np.zeros((3, 8), np.float32)
  deltas[2, [0, 4]] = np.inf                                   # dx of both classes
  det = postprocess.rcnn_detections(props, logits, deltas, (100, 100), (100, 100), dict(num_classes=2))
  v = np.asarray(det.valid)
  # (0, class 0) 0.705, (1, class 1) 0.58; their twins are suppressed within the class; proposal 2 is dropped
  assert v.sum() == 2
  np.testing.assert_array_equal(np.asarray(det.classes)[v], [0, 1])
  np.testing.assert_array_equal(np.asarray(det.boxes)[v], props[:2])


def test_proposals_vmap_over_images():
  l0, d0 = random_rpn(8)
  l1, d1 = random_rpn(9)
  f = functools.partial(postprocess.rpn_proposals, level_start=STARTS, train=False, cfg=SMALL)
  batched = jax.jit(jax.vmap(lambda l, d, hw: f(ANCHORS, objectness_logits=l, anchor_deltas=d, image_hw=hw)))(
      np.stack([l0, l1]), np.stack([d0, d1]), np.array([[H, W], [H - 20, W]]))
  for i, (l, d) in enumerate([(l0, d0), (l1, d1)]):
    one = proposals(l, d, False, SMALL, with_logits=False)
    for x, y in zip(batched, one):
      np.testing.assert_array_equal(np.asarray(x)[i], np.asarray(y))
