"""NMS and FCOS decoding against plain numpy re-statements."""
import numpy as np
import jax
import jax.numpy as jnp
import ml_collections
import pytest

from lla_jax import postprocess


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
