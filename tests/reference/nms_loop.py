"""The fori_loop NMS lla_jax.postprocess used before the blocked version: one argmax step per output slot.

Kept verbatim as the exactness reference for tests/test_postprocess.py and the baseline of
benchmarks/nms_bench.py; not part of the package.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def nms_loop(boxes, scores, valid, iou_thresh, max_out, plus_one=False, inclusive=False):
  """Greedy NMS of one image with a fixed number of output slots.

  boxes (N, 4) xyxy, scores (N,), valid (N,) bool. Repeatedly takes the highest-scoring remaining
  box (ties -> lowest index, as a stable sort would) and suppresses the rest whose IoU with it is
  > iou_thresh (>= with `inclusive`); `plus_one` uses pixel-inclusive +1 widths (ALFNet).
  Returns (indices (max_out,) int32, keep (max_out,) bool), in score order.
  """
  off = 1.0 if plus_one else 0.0
  x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
  areas = (x2 - x1 + off) * (y2 - y1 + off)
  remaining = jnp.where(valid, scores, -jnp.inf)

  def body(i, carry):
    remaining, idx, keep = carry
    j = jnp.argmax(remaining)
    ok = jnp.isfinite(remaining[j])
    w = jnp.maximum(jnp.minimum(x2, x2[j]) - jnp.maximum(x1, x1[j]) + off, 0.0)
    h = jnp.maximum(jnp.minimum(y2, y2[j]) - jnp.maximum(y1, y1[j]) + off, 0.0)
    inter = w * h
    union = areas + areas[j] - inter
    iou = jnp.where(union > 0, inter / jnp.where(union > 0, union, 1.0), 0.0)
    suppress = (iou >= iou_thresh) if inclusive else (iou > iou_thresh)
    remaining = jnp.where(suppress, -jnp.inf, remaining).at[j].set(-jnp.inf)
    return remaining, idx.at[i].set(j), keep.at[i].set(ok)

  init = (remaining, jnp.zeros((max_out,), jnp.int32), jnp.zeros((max_out,), bool))
  _, idx, keep = jax.lax.fori_loop(0, max_out, body, init)
  return idx, keep


def batched_nms_loop(boxes, scores, valid, iou_thresh, max_out, classes=None, plus_one=False, inclusive=False):
  """NMS per image of a batch, class-aware by offsetting each class to its own region.

  boxes (B, N, 4), scores (B, N), valid (B, N), classes (B, N) or None. Returns (idx, keep) (B, max_out).
  """
  if classes is not None:
    extent = jnp.max(jnp.abs(jnp.where(valid[..., None], boxes, 0.0))) + 1.0
    boxes = boxes + (classes.astype(boxes.dtype) * 2.0 * extent)[..., None]
  f = lambda b, s, v: nms_loop(b, s, v, iou_thresh, max_out, plus_one, inclusive)
  return jax.vmap(f)(boxes, scores, valid)


def greedy_nms_numpy(boxes, scores, valid, iou_thresh, max_out, plus_one=False, inclusive=False):
  """Textbook greedy NMS in numpy, vectorised over the remaining boxes (the numpy baseline of
  benchmarks/nms_bench.py): stable sort by score, keep the first remaining box, drop the remaining boxes
  overlapping it. Returns the kept indices (at most max_out) in score order; float32 like the jnp code."""
  boxes = np.asarray(boxes, np.float32)
  off = np.float32(1.0 if plus_one else 0.0)
  rest = np.flatnonzero(np.asarray(valid) & (np.asarray(scores) > -np.inf))
  rest = rest[np.argsort(-np.asarray(scores)[rest], kind="stable")]
  x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
  areas = (x2 - x1 + off) * (y2 - y1 + off)
  keep = []
  while rest.size and len(keep) < max_out:
    i, rest = rest[0], rest[1:]
    keep.append(int(i))
    w = np.maximum(np.minimum(x2[rest], x2[i]) - np.maximum(x1[rest], x1[i]) + off, np.float32(0))
    h = np.maximum(np.minimum(y2[rest], y2[i]) - np.maximum(y1[rest], y1[i]) + off, np.float32(0))
    inter = w * h
    union = areas[rest] + areas[i] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
      iou = np.where(union > 0, inter / np.where(union > 0, union, np.float32(1)), np.float32(0))
    rest = rest[~((iou >= iou_thresh) if inclusive else (iou > iou_thresh))]
  return keep
