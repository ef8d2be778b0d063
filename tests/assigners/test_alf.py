"""ALFNet's anchors, +1 box coder and per-step target assignment (Liu et al., ECCV 2018; upstream
liuwei16/ALFNet keras_alfnet/bbox_process.py and bbox_transform.py) against hand-worked numbers and the
plain re-statement in tests/reference/alfnet.py."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lla_jax import boxes, priors
from lla_jax.assigners import alf
from lla_jax.types import Targets
from tests.reference import alfnet as ref


# ------------------------------------------------------------------------------------------------
# Anchors (keras_alfnet/data_generators.py).

@pytest.mark.parametrize("stride,scales,wh", [
    (8, (16, 24), [(16, 40), (24, 60)]), (16, (32, 48), [(32, 78), (48, 117)]),
    (32, (64, 80), [(64, 156), (80, 195)]), (64, (128, 160), [(128, 312), (160, 390)])])
def test_anchor_sizes(stride, scales, wh):
  np.testing.assert_allclose(priors.alfnet_anchor_sizes(stride, scales), wh)


def test_anchor_table():
  raw = priors.alfnet_anchors(640, 1280, clip=False)
  a = priors.alfnet_anchors(640, 1280)
  assert a.shape == (34000, 4) and a.dtype == np.float32
  assert priors.alfnet_anchors(1024, 2048).shape == (87040, 4)
  # Level starts: 80*160*2, then 40*80*2, 20*40*2.
  starts = [0, 25600, 32000, 33600]
  cell00 = [[(-4, -16, 11, 23), (-8, -26, 15, 33)], [(-8, -31, 23, 46), (-16, -50.5, 31, 65.5)],
            [(-16, -62, 47, 93), (-24, -81.5, 55, 112.5)], [(-32, -124, 95, 187), (-48, -163, 111, 226)]]
  for s, expected in zip(starts, cell00):
    np.testing.assert_allclose(raw[s:s + 2], expected)
  # Clipping example: stride 8, first anchor of cell (i=1, j=2) = (12, -8, 27, 31) -> (12, 0, 27, 31).
  k = (1 * 160 + 2) * 2
  np.testing.assert_allclose(raw[k], (12, -8, 27, 31))
  np.testing.assert_allclose(a[k], (12, 0, 27, 31))
  # Generic form and clipping everywhere (never dropped).
  lv = priors.alfnet_anchor_levels(640, 1280)
  np.testing.assert_array_equal(np.bincount(lv), [25600, 6400, 1600, 400])
  rng = np.random.default_rng(0)
  for n in rng.integers(0, 34000, 50):
    level = lv[n]
    s = (8, 16, 32, 64)[level]
    w_l = 1280 // s
    cell, j = divmod(n - starts[level], 2)
    i, x = divmod(cell, w_l)
    w, h = priors.alfnet_anchor_sizes(s, priors.ALFNET_SCALES[level])[j]
    cx, cy = x * s + (s - 1) / 2, i * s + (s - 1) / 2
    box = np.array([cx - (w - 1) / 2, cy - (h - 1) / 2, cx + (w - 1) / 2, cy + (h - 1) / 2])
    np.testing.assert_allclose(raw[n], box)
    np.testing.assert_allclose(a[n], [max(box[0], 0), max(box[1], 0), min(box[2], 1279), min(box[3], 639)])


# ------------------------------------------------------------------------------------------------
# +1 box coder (keras_alfnet/bbox_transform.py).

def test_coder_spec_example():
  b, g = jnp.array([0.0, 0, 15, 39]), jnp.array([2.0, 4, 19, 47])
  t = boxes.encode_deltas_plus1(b, g)
  np.testing.assert_allclose(t, [1.875, 1.5, 0.588915, 0.476551], atol=1e-5)
  np.testing.assert_allclose(t * jnp.array(boxes.ALF_STD), [0.1875, 0.15, 0.117783, 0.095310], atol=1e-6)
  np.testing.assert_allclose(boxes.decode_deltas_plus1(b, t), [2, 4, 20, 48], atol=1e-4)


def test_coder_round_trip_and_clip():
  rng = np.random.default_rng(1)
  xy = rng.uniform(0, 500, (200, 2))
  r = np.concatenate([xy, xy + rng.uniform(5, 200, (200, 2))], 1).astype(np.float32)
  xy = rng.uniform(0, 500, (200, 2))
  g = np.concatenate([xy, xy + rng.uniform(5, 200, (200, 2))], 1).astype(np.float32)
  back = boxes.decode_deltas_plus1(r, boxes.encode_deltas_plus1(r, g))
  np.testing.assert_allclose(back, g + np.array([0, 0, 1, 1], np.float32), atol=2e-3)   # the decode asymmetry
  clipped = boxes.decode_deltas_plus1(jnp.array([[-20.0, -20, 700, 300]]), jnp.zeros((1, 4)), clip_hw=(240, 640))
  np.testing.assert_allclose(clipped, [[0, 0, 639, 239]])
  # Against the scalar reference with per-image clip sizes.
  d = rng.normal(0, 2, (200, 4)).astype(np.float32)
  got = boxes.decode_deltas_plus1(r, d, clip_hw=(300.0, 400.0))
  want = [ref.decode_clip(rb, dd, 300, 400) for rb, dd in zip(r.astype(np.float64), d.astype(np.float64))]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)
  # Optional clamp of dw/dh.
  big = boxes.decode_deltas_plus1(jnp.array([[0.0, 0, 9, 9]]), jnp.array([[0.0, 0, 100.0, 100.0]]), max_log_wh=1.0)
  np.testing.assert_allclose(big[0, 2] - big[0, 0], 10 * math.e, rtol=1e-5)


def test_iou_plus1():
  a = jnp.array([[0.0, 0, 9, 9]])
  b = jnp.array([[5.0, 0, 14, 9], [10.0, 0, 19, 9], [9.0, 9, 20, 20]])
  np.testing.assert_allclose(boxes.pairwise_iou_plus1(a, b), [[50 / 150, 0.0, 1 / 243]], rtol=1e-6)


# ------------------------------------------------------------------------------------------------
# Per-step target assignment (keras_alfnet/data_generators.py) against the numpy re-statement.

def _gt(rng, height, width, m, n_gt, n_ignore):
  """Integer pedestrian boxes (aspect 0.41, some crossing the border), ignore regions, padding."""
  boxes_ = np.zeros((m, 4), np.float32)
  classes = np.zeros(m, np.int32)
  valid = np.zeros(m, bool)
  for k in range(n_gt + n_ignore):
    if k < n_gt:
      h = rng.uniform(20, 0.9 * height) if rng.random() < 0.75 else rng.uniform(6, 16)   # tiny: double flags
      w = 0.41 * h
    else:
      w, h = rng.uniform(8, 60), rng.uniform(8, 60)
      classes[k] = -1
    x, y = rng.uniform(-0.2 * w, width - 0.8 * w), rng.uniform(-0.2 * h, height - 0.8 * h)
    boxes_[k] = np.round([x, y, x + w, y + h])
    valid[k] = True
  perm = rng.permutation(m)   # padding rows and ignore regions interleaved with GT
  return boxes_[perm], classes[perm], valid[perm]


def _refined(rng, anchors, height, width):
  d = rng.normal(0, 1.5, anchors.shape).astype(np.float32)
  r = np.array(boxes.decode_deltas_plus1(anchors, d, clip_hw=(height, width)))
  r[::37, 2] = r[::37, 0] + rng.uniform(0, 10, r[::37].shape[0])   # invalid small boxes (+1 side <= 10)
  return r


def _check(got, want):
  np.testing.assert_array_equal(np.asarray(got.fg), want["pos"])
  np.testing.assert_array_equal(np.asarray(got.aux_target) > 0, want["neg"])
  np.testing.assert_array_equal(np.asarray(got.valid), want["pos"] | want["neg"])
  np.testing.assert_array_equal(np.asarray(got.matched_gt), want["matched"])
  np.testing.assert_allclose(np.asarray(got.box_targets), want["deltas"], rtol=1e-4, atol=1e-4)
  assert float(got.num_fg) == want["pos"].sum()


CASES = [(0, 10, 6, 2), (1, 8, 8, 0), (2, 6, 0, 3), (3, 6, 0, 0), (4, 12, 3, 5), (5, 16, 14, 2)]


@pytest.mark.parametrize("seed,m,n_gt,n_ignore", CASES)
def test_step1_targets_against_reference(seed, m, n_gt, n_ignore):
  rng = np.random.default_rng(seed)
  height, width = 96, 192
  anchors = priors.alfnet_anchors(height, width)
  gt, cls, val = _gt(rng, height, width, m, n_gt, n_ignore)
  got = jax.jit(lambda *a: alf.assign(*a, first_step=True, neg_thr=0.3, pos_thr=0.5))(anchors, gt, cls, val)
  want = ref.assign_step(anchors, gt, cls, val, 1, 0.3, 0.5)
  _check(got, want)
  if n_gt:   # tiny GTs give positives (rules i, iii) with max IoU < 0.3: also negatives at step 1
    assert want["pos"].sum() >= 3 and (want["pos"] & want["neg"]).any()
  else:
    np.testing.assert_array_equal(want["neg"],
                                  [ref.ignore_sum(a, gt[(cls < 0) & val]) <= 0.5 for a in anchors])


@pytest.mark.parametrize("seed,m,n_gt,n_ignore", CASES)
@pytest.mark.parametrize("thr", [(0.5, 0.7), (0.4, 0.65), (0.5, 0.75)])
def test_later_step_targets_against_reference(seed, m, n_gt, n_ignore, thr):
  rng = np.random.default_rng(100 + seed)
  height, width = 96, 192
  anchors = priors.alfnet_anchors(height, width)
  gt, cls, val = _gt(rng, height, width, m, n_gt, n_ignore)
  r = _refined(rng, anchors, height, width)
  got = jax.jit(lambda *a: alf.assign(*a, first_step=False, neg_thr=thr[0], pos_thr=thr[1]))(r, gt, cls, val)
  want = ref.assign_step(r, gt, cls, val, 2, *thr)
  _check(got, want)
  if not n_gt:   # quirk: an image without GT gets no labels at all at step >= 2
    assert not want["pos"].any() and not want["neg"].any()


def test_step1_double_flag_and_batch():
  # One GT far from every anchor shape: its top-3 anchors have IoU < 0.3, so they are positive AND negative.
  anchors = priors.alfnet_anchors(96, 192)
  gt = np.array([[[100, 40, 103, 47], [0, 0, 0, 0]], [[0, 0, 0, 0], [0, 0, 0, 0]]], np.float32)
  cls = np.zeros((2, 2), np.int32)
  val = np.array([[True, False], [False, False]])
  t = jax.jit(lambda *a: alf.assign_batch(*a, first_step=True, neg_thr=0.3, pos_thr=0.5))(anchors, gt, cls, val)
  assert isinstance(t, Targets) and t.fg.shape == (2, len(anchors))
  both = np.asarray(t.fg[0] & (t.aux_target[0] > 0))
  assert both.sum() >= 3
  np.testing.assert_array_equal(np.asarray(t.num_fg), [np.asarray(t.fg[0]).sum(), 0])
  assert bool(jnp.all(t.aux_target[1] == 1))        # no GT, no ignore: every anchor negative at step 1
  t2 = jax.jit(lambda *a: alf.assign_batch(*a, first_step=False, neg_thr=0.5, pos_thr=0.7))(
      jnp.broadcast_to(anchors, (2,) + anchors.shape), gt, cls, val)
  assert not bool(jnp.any(t2.valid[1]))             # ... and nothing at step 2


def test_ignore_overlap_sums_fractions():
  ref_box = jnp.array([[0.0, 0, 9, 9]])
  regions = jnp.array([[0.0, 0, 4, 9], [5.0, 0, 19, 9], [0.0, 0, 0, 0]])   # half of r1 ... 1/3 of r2
  got = alf.ignore_overlap(ref_box, regions, jnp.array([True, True, False]))
  np.testing.assert_allclose(got, [1.0 + 50 / 150], rtol=1e-6)
