"""Inference post-processing on device: decode, per-level top-k, score threshold, fixed-size
batched NMS, and the map back to original-image pixels (lla.md §8). Static shapes throughout."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lla_jax import boxes as box_ops
from lla_jax.types import Detections


def nms(boxes, scores, valid, iou_thresh, max_out, plus_one=False, inclusive=False):
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


def batched_nms(boxes, scores, valid, iou_thresh, max_out, classes=None, plus_one=False, inclusive=False):
  """NMS per image of a batch, class-aware by offsetting each class to its own region.

  boxes (B, N, 4), scores (B, N), valid (B, N), classes (B, N) or None. Returns (idx, keep) (B, max_out).
  """
  if classes is not None:
    extent = jnp.max(jnp.abs(jnp.where(valid[..., None], boxes, 0.0))) + 1.0
    boxes = boxes + (classes.astype(boxes.dtype) * 2.0 * extent)[..., None]
  f = lambda b, s, v: nms(b, s, v, iou_thresh, max_out, plus_one, inclusive)
  return jax.vmap(f)(boxes, scores, valid)


def level_topk(scores, level_sizes, k):
  """Per-level top-k candidates. scores (B, A, C) flattened per level over (points x classes).

  level_sizes: static point counts per level. Returns (point index (B, N), class (B, N),
  score (B, N)) with N = sum over levels of min(k, A_l * C), in descending order within a level.
  """
  num_classes = scores.shape[-1]
  out_idx, out_cls, out_score = [], [], []
  start = 0
  for n in level_sizes:
    flat = scores[:, start:start + n, :].reshape(scores.shape[0], n * num_classes)
    s, i = jax.lax.top_k(flat, min(k, n * num_classes))
    out_idx.append(start + i // num_classes)
    out_cls.append(i % num_classes)
    out_score.append(s)
    start += n
  return jnp.concatenate(out_idx, 1), jnp.concatenate(out_cls, 1), jnp.concatenate(out_score, 1)


def to_original(boxes, image_size, orig_size):
  """Scale input-pixel boxes (B, D, 4) to original pixels per axis, clip to the original image.

  image_size, orig_size (B, 2) as (h, w). Returns (boxes, nonempty) with nonempty (B, D) bool.
  """
  sy = orig_size[:, 0] / image_size[:, 0]
  sx = orig_size[:, 1] / image_size[:, 1]
  scale = jnp.stack([sx, sy, sx, sy], -1)[:, None, :].astype(jnp.float32)
  b = boxes * scale
  hi = jnp.stack([orig_size[:, 1], orig_size[:, 0]] * 2, -1)[:, None, :].astype(jnp.float32)
  b = jnp.clip(b, 0.0, hi)
  return b, (b[..., 2] > b[..., 0]) & (b[..., 3] > b[..., 1])


def fcos_detections(points, level_sizes, cls_logits, ltrb, aux_logits, image_size, orig_size, cfg) -> Detections:
  """FCOS-family inference (lla.md §8): top-k per level on the raw class probability, keep
  prob > score_thresh, score = sqrt(prob * sigmoid(aux)), NMS, keep max_detections, map back.

  points (A, 2); cls_logits (B, A, C); ltrb (B, A, 4); aux_logits (B, A); sizes (B, 2) (h, w).
  """
  prob = jax.nn.sigmoid(cls_logits.astype(jnp.float32))
  idx, cls, p = level_topk(prob, level_sizes, cfg.topk_per_level)
  keep = p > cfg.score_thresh
  take = lambda x: jnp.take_along_axis(x, idx, axis=1)
  aux = jax.nn.sigmoid(take(aux_logits.astype(jnp.float32)))
  score = jnp.sqrt(p * aux)
  box = box_ops.decode_ltrb(jnp.asarray(points)[idx], jnp.take_along_axis(ltrb.astype(jnp.float32), idx[..., None], 1))
  sel, ok = batched_nms(box, score, keep, cfg.nms_thresh, cfg.max_detections, classes=cls)
  pick = lambda x: jnp.take_along_axis(x, sel if x.ndim == 2 else sel[..., None], axis=1)
  out_boxes, nonempty = to_original(pick(box), image_size, orig_size)
  valid = ok & nonempty
  return Detections(boxes=jnp.where(valid[..., None], out_boxes, 0.0), scores=jnp.where(valid, pick(score), 0.0),
                    classes=jnp.where(valid, pick(cls), 0).astype(jnp.int32), valid=valid)
