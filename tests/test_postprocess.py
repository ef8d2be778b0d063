"""NMS and FCOS decoding against plain numpy re-statements."""
import numpy as np
import jax
import jax.numpy as jnp
import ml_collections
import pytest

from lla_jax import postprocess
from tests.reference import nms_loop


def greedy_nms_np(boxes, scores, thresh, max_out, plus_one=False, inclusive=False):
  """Textbook greedy NMS: stable sort by score, suppress later boxes overlapping a kept one."""
  off = 1.0 if plus_one else 0.0
  order = list(np.argsort(-scores, kind="stable"))
  keep = []
  while order and len(keep) < max_out:
    i = order.pop(0)
    keep.append(i)
    rest = []
    for j in order:
      w = max(min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0]) + off, 0)
      h = max(min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1]) + off, 0)
      inter = w * h
      ai = (boxes[i, 2] - boxes[i, 0] + off) * (boxes[i, 3] - boxes[i, 1] + off)
      aj = (boxes[j, 2] - boxes[j, 0] + off) * (boxes[j, 3] - boxes[j, 1] + off)
      iou = inter / (ai + aj - inter)
      if not (iou >= thresh if inclusive else iou > thresh):
        rest.append(j)
    order = rest
  return keep


@pytest.mark.parametrize("seed,plus_one,inclusive", [(0, False, False), (1, True, True), (2, False, False)])
def test_nms_matches_numpy_greedy(seed, plus_one, inclusive):
  rng = np.random.default_rng(seed)
  n = 200
  xy = rng.uniform(0, 100, (n, 2))
  wh = rng.uniform(5, 40, (n, 2))
  boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
  scores = np.round(rng.uniform(0, 1, n), 2).astype(np.float32)   # rounded: many exact ties
  valid = rng.random(n) > 0.1
  idx, keep = postprocess.nms(jnp.array(boxes), jnp.array(scores), jnp.array(valid), 0.5, 50, plus_one, inclusive)
  ref = greedy_nms_np(boxes[valid], scores[valid], 0.5, 50, plus_one, inclusive)
  ref = list(np.nonzero(valid)[0][ref])
  assert list(np.asarray(idx)[np.asarray(keep)]) == ref


def _crowded(rng, n, quantum):
  """Crowded boxes (some zero-width, some snapped to a grid: exact IoU ties) and rounded scores (ties)."""
  xy = rng.uniform(0, 150, (n, 2))
  wh = rng.uniform(0, 60, (n, 2)) * (rng.random((n, 1)) > 0.03)
  boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
  if quantum:
    boxes = np.round(boxes / quantum) * quantum
  return boxes, np.round(rng.uniform(0, 1, n), int(rng.integers(1, 4))).astype(np.float32), rng.random(n) > 0.15


@pytest.mark.parametrize("seed", range(12))
def test_blocked_nms_equals_the_serial_loop_and_numpy_greedy(seed):
  """The blocked NMS gives the fori_loop NMS's (idx, keep) exactly, across blocks (n > NMS_BLOCK), slots
  beyond n, thresholds 0 (inclusive: any touching box), plus_one and inclusive, and the numpy greedy order."""
  rng = np.random.default_rng(seed)
  n = int(rng.choice([1, 7, 300, 700]))
  max_out = int(rng.choice([1, 50, 300, 1000]))
  boxes, scores, valid = _crowded(rng, n, quantum=8.0 if seed % 2 else 0.0)
  thresh = float(rng.choice([0.0, 0.3, 0.5, 0.6]))
  plus_one, inclusive = bool(seed % 3 == 0), bool(seed % 4 < 2)
  args = (jnp.array(boxes), jnp.array(scores), jnp.array(valid), thresh, max_out, plus_one, inclusive)
  idx, keep = postprocess.nms(*args)
  ref_idx, ref_keep = nms_loop.nms_loop(*args)
  np.testing.assert_array_equal(np.asarray(idx), np.asarray(ref_idx))
  np.testing.assert_array_equal(np.asarray(keep), np.asarray(ref_keep))
  greedy = nms_loop.greedy_nms_numpy(boxes, scores, valid, thresh, max_out, plus_one, inclusive)
  assert list(np.asarray(idx)[np.asarray(keep)]) == greedy


def test_blocked_nms_infinite_scores_as_the_loop():
  """+inf takes a slot with keep False (the loop's isfinite check); -inf is never chosen."""
  boxes = jnp.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [80, 80, 90, 90]], jnp.float32)
  scores = jnp.array([0.5, jnp.inf, 0.7, -jnp.inf])
  valid = jnp.array([True, True, True, True])
  for got, want in zip(postprocess.nms(boxes, scores, valid, 0.5, 4), nms_loop.nms_loop(boxes, scores, valid, 0.5, 4)):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_batched_nms_class_aware_equals_the_loop():
  rng = np.random.default_rng(5)
  parts = [_crowded(rng, 400, 0.0) for _ in range(3)]
  boxes, scores, valid = (jnp.array(np.stack(x)) for x in zip(*parts))
  classes = jnp.array(rng.integers(0, 3, (3, 400)))
  got = jax.jit(lambda *a: postprocess.batched_nms(*a, 0.6, 200, classes=classes))(boxes, scores, valid)
  want = nms_loop.batched_nms_loop(boxes, scores, valid, 0.6, 200, classes=classes)
  for g, w in zip(got, want):
    np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


def test_nms_fewer_boxes_than_slots():
  boxes = jnp.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], jnp.float32)
  idx, keep = postprocess.nms(boxes, jnp.array([0.9, 0.8, 0.7]), jnp.array([True, True, True]), 0.6, 5)
  assert list(np.asarray(idx)[np.asarray(keep)]) == [0, 2]
  assert np.asarray(keep).sum() == 2


def test_fcos_detections_decode_and_rescale():
  cfg = ml_collections.ConfigDict(dict(topk_per_level=2, score_thresh=0.05, nms_thresh=0.6, max_detections=4))
  points = jnp.array([[0, 0], [8, 0], [0, 8], [8, 8], [0, 0]], jnp.float32)   # level 0: 4 points, level 1: 1
  logit = lambda p: np.log(p / (1 - p))
  cls = jnp.array([[[logit(0.9)], [logit(0.04)], [logit(0.5)], [logit(0.6)], [logit(0.3)]]], jnp.float32)
  ltrb = jnp.full((1, 5, 4), 4.0)
  aux = jnp.zeros((1, 5))   # sigmoid 0.5
  det = postprocess.fcos_detections(points, (4, 1), cls, ltrb, aux, jnp.array([[16, 16]]), jnp.array([[32, 64]]), cfg)
  # Level 0 top-2: probs .9 (point 0) and .6 (point 3); level 1: .3 (point 4, same box as point 0 -> suppressed).
  v = np.asarray(det.valid[0])
  assert v.sum() == 2
  np.testing.assert_allclose(np.asarray(det.scores[0])[v], np.sqrt([0.45, 0.3]), rtol=1e-5)
  # Point 0 box (-4, -4, 4, 4) -> x*4, y*2 -> (-16, -8, 16, 8) -> clipped (0, 0, 16, 8).
  np.testing.assert_allclose(np.asarray(det.boxes[0, 0]), [0, 0, 16, 8], atol=1e-5)
  np.testing.assert_allclose(np.asarray(det.boxes[0, 1]), [16, 8, 48, 24], atol=1e-5)
