"""The IoU-threshold matcher (detectron2 / cvpods Matcher) on hand cases and against loops."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lla_jax import boxes
from lla_jax.assigners import matcher


def loop_match(iou, valid, thresholds, labels, low_quality):
  """Column by column, GT by GT (first maximal), then the low-quality pass."""
  m, a = iou.shape
  rows = [g for g in range(m) if valid[g]]
  if not rows:
    return np.zeros(a, np.int32), np.full(a, labels[0], np.int32)
  matched, out = np.zeros(a, np.int32), np.zeros(a, np.int32)
  for j in range(a):
    v, k = -np.inf, -1
    for g in rows:
      if iou[g, j] > v:
        v, k = iou[g, j], g
    matched[j] = k
    lab = labels[0]
    for t, l in zip(thresholds, labels[1:]):
      if v >= np.float32(t):
        lab = l
    out[j] = lab
  if low_quality:
    for g in rows:
      out[iou[g] == iou[g].max()] = 1
  return matched, out


def test_rpn_thresholds_and_float32_boundaries():
  below = lambda v: np.nextafter(np.float32(v), np.float32(0))
  iou = jnp.array([[below(0.3), 0.3, below(0.7), 0.7, 1.0, 0.0]], jnp.float32)
  _, lab = matcher.match(iou, (0.3, 0.7), (0, -1, 1), False)
  np.testing.assert_array_equal(lab, [0, -1, -1, 1, 1, 0])  # float32(0.7) itself is positive


def test_low_quality_ties_all_positive_and_keep_own_argmax():
  iou = jnp.array([[0.2, 0.2, 0.1, 0.0],
                   [0.25, 0.1, 0.25, 0.0]], jnp.float32)
  matched, lab = matcher.match(iou, (0.3, 0.7), (0, -1, 1), True)
  # GT 0's best 0.2 at columns 0 and 1 (tie: both positive); GT 1's best 0.25 at columns 0 and 2.
  np.testing.assert_array_equal(lab, [1, 1, 1, 0])
  np.testing.assert_array_equal(matched, [1, 0, 1, 0])  # column 0 stays with its own argmax GT 1


def test_duplicate_gt_argmax_is_first_and_padding_ignored():
  iou = jnp.array([[0.9, 0.8], [0.9, 0.8], [5.0, 5.0]], jnp.float32)
  matched, lab = matcher.match(iou, (0.5,), (0, 1), False, valid=jnp.array([True, True, False]))
  np.testing.assert_array_equal(matched, [0, 0])
  np.testing.assert_array_equal(lab, [1, 1])


def test_no_gt():
  for iou, valid in [(jnp.zeros((0, 5)), None), (jnp.ones((2, 5)), jnp.array([False, False]))]:
    matched, lab = matcher.match(iou, (0.3, 0.7), (0, -1, 1), True, valid=valid)
    np.testing.assert_array_equal(matched, 0)
    np.testing.assert_array_equal(lab, 0)


def test_zero_best_gt_makes_every_zero_column_positive():
  iou = jnp.array([[0.0, 0.0, 0.0], [0.8, 0.0, 0.0]], jnp.float32)
  _, lab = matcher.match(iou, (0.3, 0.7), (0, -1, 1), True)
  np.testing.assert_array_equal(lab, [1, 1, 1])  # upstream behaviour (unreachable for positive-area GT)


@pytest.mark.parametrize("seed", range(4))
def test_random_against_loops(seed):
  rng = np.random.default_rng(seed)
  m, a = 7, 60
  iou = np.round(rng.uniform(0, 1, (m, a)) ** 2, 1).astype(np.float32)  # coarse values: many exact ties
  valid = rng.random(m) > 0.3
  f = jax.jit(lambda q, v: matcher.match(q, (0.3, 0.7), (0, -1, 1), True, v))
  got = f(iou, valid)
  want = loop_match(iou, valid, (0.3, 0.7), (0, -1, 1), True)
  for g, w in zip(got, want):
    np.testing.assert_array_equal(np.asarray(g), w)


def test_bad_thresholds():
  with pytest.raises(ValueError, match="ascending"):
    matcher.match(jnp.zeros((1, 1)), (0.7, 0.3), (0, -1, 1), True)
  with pytest.raises(ValueError, match="expected 3 labels"):
    matcher.match(jnp.zeros((1, 1)), (0.3, 0.7), (0, 1), True)


@pytest.mark.parametrize("chunk", [7, 64, 1000])
def test_match_boxes_chunked_equals_whole(chunk):
  """Chunked over the predictions: identical outputs, low-quality ties across chunks included."""
  rng = np.random.default_rng(chunk)
  gt = np.round(rng.uniform(0, 100, (6, 2)) * 4) / 4
  gt = np.concatenate([gt, gt + np.round(rng.uniform(2, 40, (6, 2)) * 4) / 4], 1).astype(np.float32)
  gt[3] = gt[1]                                            # duplicate
  xy = np.repeat(np.round(rng.uniform(-10, 110, (40, 2))), 5, 0)
  pred = np.concatenate([xy, xy + 16.0], 1).astype(np.float32)  # equal-size boxes: many exact IoU ties
  valid = np.array([True, True, False, True, True, True])
  args = ((0.3, 0.7), (0, -1, 1), True)
  whole = matcher.match(boxes.pairwise_iou_exact(gt, pred), *args, valid=valid)
  part = jax.jit(lambda g, p, v: matcher.match_boxes(g, p, boxes.pairwise_iou_exact, *args, valid=v, chunk=chunk))(
      gt, pred, valid)
  for w, p in zip(whole, part):
    np.testing.assert_array_equal(np.asarray(p), np.asarray(w))
  assert int((whole[1] == 1).sum()) > 0
