"""Faster R-CNN RPN and RoI targets against the numpy reference and the worked rules of the released code."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lla_jax.assigners import rcnn
from lla_jax.priors import rcnn_anchors
from tests.reference import rcnn_reference as ref

H, W = 128, 192
ANCHORS, STARTS = rcnn_anchors((H, W))     # 6138 anchors
rpn = jax.jit(rcnn.rpn_assign)
roi = jax.jit(rcnn.roi_assign)


def assert_rpn(got, gt_boxes, gt_classes, gt_valid, anchors=ANCHORS):
  labels, matched, targets = ref.rpn_assign_np(anchors, gt_boxes, gt_classes, gt_valid)
  np.testing.assert_array_equal(np.asarray(got.labels), labels)
  pos = labels == 1
  np.testing.assert_array_equal(np.asarray(got.matched_gt)[pos], matched[pos])
  np.testing.assert_array_equal(np.asarray(got.matched_gt), matched)
  np.testing.assert_allclose(np.asarray(got.box_targets), targets, rtol=1e-5, atol=1e-5)
  return labels


@pytest.mark.parametrize("seed", range(5))
def test_rpn_crowds_match_reference(seed):
  rng = np.random.default_rng(seed)
  b, c, v = ref.crowd_np(rng, H, W, n_person=int(rng.integers(1, 15)), n_ignore=int(rng.integers(0, 3)))
  labels = assert_rpn(rpn(ANCHORS, b, c, v), b, c, v)
  assert (labels == 1).sum() > 0 and (labels == -1).sum() > 0


def test_rpn_chunked_matching_is_identical():
  rng = np.random.default_rng(11)
  b, c, v = ref.crowd_np(rng, H, W, n_person=10, n_ignore=2)
  got = jax.jit(functools.partial(rcnn.rpn_assign, cfg=dict(rpn_match_chunk=1000)))(ANCHORS, b, c, v)
  assert_rpn(got, b, c, v)


def test_rpn_ignore_regions_are_removed():
  """Ignore boxes take no part: an anchor equal to an ignore box is a negative."""
  ig = ANCHORS[STARTS[1] + 3 * (2 * 24 + 3)]        # a P3 anchor inside the image
  person = np.array([100, 20, 130, 110], np.float32)
  b = np.stack([ig, person])
  got = rpn(ANCHORS, b, np.array([-1, 0]), np.array([True, True]))
  i = STARTS[1] + 3 * (2 * 24 + 3)
  assert int(got.labels[i]) == 0
  assert np.all(np.asarray(got.matched_gt)[np.asarray(got.labels) == 1] == 1)
  assert_rpn(got, b, np.array([-1, 0]), np.array([True, True]))


def test_rpn_tiny_gt_makes_all_tied_anchors_positive():
  """GT [301, 201, 303, 205] lies inside 56 P2 ratio-1 anchors, all at IoU 2^-7: all positive (800 x 1408)."""
  anchors, starts = rcnn_anchors((800, 1408))
  a = anchors[: starts[1]]
  b = np.array([[301, 201, 303, 205]], np.float32)
  got = jax.jit(rcnn.rpn_assign)(a, b, np.zeros(1, np.int32), np.ones(1, bool))
  pos = np.flatnonzero(np.asarray(got.labels) == 1)
  assert len(pos) == 56 and np.all(pos % 3 == 0)
  area = (a[pos, 2] - a[pos, 0]) * (a[pos, 3] - a[pos, 1])
  np.testing.assert_array_equal(area, 1024.0)        # 8 / 1024 = 2^-7


def test_rpn_duplicate_gt_gets_no_anchor_of_its_own_and_empty_image():
  b = np.array([[40, 30, 72, 94], [40, 30, 72, 94], [0, 0, 0, 0]], np.float32)
  got = rpn(ANCHORS, b, np.array([0, 0, 0]), np.array([True, True, False]))
  m = np.asarray(got.matched_gt)[np.asarray(got.labels) == 1]
  assert len(m) > 0 and np.all(m == 0)
  assert_rpn(got, b, np.array([0, 0, 0]), np.array([True, True, False]))
  for c, v in [(np.array([0, 0, 0]), np.zeros(3, bool)), (np.array([-1, -1, 0]), np.array([True, True, False]))]:
    got = rpn(ANCHORS, b, c, v)            # no GT, or only ignore boxes: all negative, matched 0, targets 0
    np.testing.assert_array_equal(got.labels, 0)
    np.testing.assert_array_equal(got.matched_gt, 0)
    np.testing.assert_array_equal(got.box_targets, 0)


def test_rpn_sample_sizes():
  rng = np.random.default_rng(3)
  b, c, v = ref.crowd_np(rng, H, W)
  t = rpn(ANCHORS, b, c, v)
  s = jax.jit(rcnn.sample_rpn)(t.labels, jax.random.key(0))
  labels = np.asarray(t.labels)
  n_pos = min((labels == 1).sum(), 128)
  assert int(s.valid.sum()) == n_pos + min((labels == 0).sum(), 256 - n_pos)
  assert np.all(labels[np.asarray(s.index)[np.asarray(s.positive)]] == 1)


def test_rpn_vmaps():
  rng = np.random.default_rng(9)
  cases = [ref.crowd_np(rng, H, W, n_person=5, n_ignore=1, pad=6 - k) for k in range(2)]
  m = max(len(x[0]) for x in cases)
  pad = lambda x, fill: np.concatenate([x, np.full((m - len(x),) + x.shape[1:], fill, x.dtype)])
  bb, cc, vv = (np.stack([pad(x[i], 0) for x in cases]) for i in range(3))
  got = jax.jit(jax.vmap(rcnn.rpn_assign, in_axes=(None, 0, 0, 0)))(ANCHORS, bb, cc, vv)
  for i in range(2):
    assert_rpn(jax.tree.map(lambda x: x[i], got), bb[i], cc[i], vv[i])


# --------------------------------------------------------------------------------------------- RoI head
GT_RULES = np.array([[0, 0, 100, 100], [300, 0, 500, 200]], np.float32)   # person, ignore


@pytest.mark.parametrize("box,cls,matched", [
    ([0, 0, 100, 50], 0, 0),          # IoU exactly 0.5: person
    ([0, 0, 100, 49.75], 1, 0),       # IoU 0.4975: background
    ([350, 50, 450, 150], -1, 1),     # IoU 0.25, IoA 1: ignored
    ([300, 0, 500, 100], -1, 1),      # IoU 0.5 with the ignore box: no re-match, class -1
    ([250, 0, 350, 200], -1, 1),      # IoA 0.5 > IoU 0.2: ignored
    ([220, 0, 340, 200], 1, 1),       # IoA 1/3 > IoU 1/7: re-matched, but background
    ([280, -20, 520, 220], -1, 1),    # IoA = IoU 0.6944: no re-match (strict), -1 through the IoU
])
def test_roi_worked_rules(box, cls, matched):
  got = roi(np.array([box], np.float32), GT_RULES, np.array([0, -1]), np.array([True, True]))
  assert int(got.classes[0]) == cls and int(got.matched_gt[0]) == matched
  np.testing.assert_array_equal(got.classes[1:], [0, -1])   # the appended GT: person, ignore


def test_roi_duplicate_gt_lower_index_and_targets():
  gt = np.array([[10, 10, 50, 90], [10, 10, 50, 90]], np.float32)
  p = np.array([[10, 10, 50, 90], [12, 8, 52, 88]], np.float32)
  got = roi(p, gt, np.array([0, 0]), np.array([True, True]))
  np.testing.assert_array_equal(got.matched_gt, [0, 0, 0, 0])
  np.testing.assert_allclose(got.box_targets[1], ref.encode_np(p[1], gt[0], (10, 10, 5, 5)), rtol=1e-6)
  np.testing.assert_array_equal(got.box_targets[0], 0)


@pytest.mark.parametrize("seed", range(5))
def test_roi_crowds_match_reference(seed):
  rng = np.random.default_rng(seed + 100)
  b, c, v = ref.crowd_np(rng, H, W, n_person=int(rng.integers(1, 12)), n_ignore=int(rng.integers(0, 3)))
  real = b[v]
  # proposals: jittered GTs (ignore ones too), random boxes, boxes past the border, duplicates, tiny ones
  jit = real[rng.integers(0, len(real), 60)] + rng.normal(0, 6, (60, 4)).astype(np.float32)
  xy = rng.uniform(-40, 200, (40, 2))
  rand = np.concatenate([xy, xy + rng.uniform(3, 120, (40, 2))], 1)
  props = np.round(np.concatenate([jit, rand, jit[:5], [[5, 5, 8, 8]]]) * 4) / 4
  props = np.where(props[:, 2:3] > props[:, 0:1], props, props[:, [2, 1, 0, 3]])
  props = np.where(props[:, 3:4] > props[:, 1:2], props, props[:, [0, 3, 2, 1]]).astype(np.float32)
  pvalid = rng.random(len(props)) > 0.1
  got = roi(props, b, c, v, proposal_valid=pvalid)
  classes, matched, cvalid = ref.roi_assign_np(props, pvalid, b, c, v)
  np.testing.assert_array_equal(got.classes, classes)
  np.testing.assert_array_equal(got.valid, cvalid)
  np.testing.assert_array_equal(np.asarray(got.matched_gt)[classes >= 0], matched[classes >= 0])
  fg = np.flatnonzero(classes == 0)
  want = np.stack([ref.encode_np(np.r_[props, b][i], b[matched[i]], (10, 10, 5, 5)) for i in fg])
  np.testing.assert_allclose(np.asarray(got.box_targets)[fg], want, rtol=1e-5, atol=1e-5)
  assert np.all(np.asarray(got.box_targets)[classes != 0] == 0)
  assert {-1, 0, 1} <= set(classes.tolist()) or not (c[v] == -1).any()
  s = jax.jit(rcnn.sample_rois)(got.classes, jax.random.key(seed))
  n_fg = min((classes == 0).sum(), 256)
  assert int(s.valid.sum()) == n_fg + min((classes == 1).sum(), 512 - n_fg)
  assert np.all(classes[np.asarray(s.index)[np.asarray(s.valid)]] >= 0)


def test_roi_no_gt_all_background_and_plain_matcher():
  p = np.array([[0, 0, 10, 10], [5, 5, 30, 30]], np.float32)
  got = roi(p, np.zeros((3, 4), np.float32), np.zeros(3, np.int32), np.zeros(3, bool))
  np.testing.assert_array_equal(got.classes, [1, 1, -1, -1, -1])
  np.testing.assert_array_equal(got.matched_gt, 0)
  plain = rcnn.roi_assign(np.array([[350, 50, 450, 150]], np.float32), GT_RULES, np.array([0, -1]),
                          np.array([True, True]), cfg=dict(roi_ignore_ioa=False))
  assert int(plain.classes[0]) == 1            # without the IoA step the covered proposal is background


def test_input_errors():
  with pytest.raises(ValueError, match="gt_classes"):
    rcnn.rpn_assign(ANCHORS, np.zeros((2, 4)), np.zeros(3), np.zeros(2, bool))
