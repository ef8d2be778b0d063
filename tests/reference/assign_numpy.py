"""Efficient vectorised numpy statements of the LLA, FCOS and ATSS point -> GT matches (lla.md §6, §11.3,
§12.2), one image at a time: the strongest plain-numpy version we could write, used as the speed baseline
of benchmarks/assign_bench.py (and checked against lla_jax in that run and in tests/assigners).

Written from the spec, not from lla_jax: float32 (M, A) planes for the valid GT rows only (padding rows are
dropped up front), in-place ufuncs, np.argpartition for the K smallest per row with an explicit
lowest-index tie fix, bincount for the claims, and the all-rows argmin taken only for contested columns.
Each function returns matched (A,) int64: the GT row of each point, -1 for background.
"""
from __future__ import annotations

import numpy as np

EPS = np.float32(np.finfo(np.float32).eps)
FCOS_SIZE_RANGES = ((-1.0, 64.0), (64.0, 128.0), (128.0, 256.0), (256.0, 512.0), (512.0, np.inf))
F32 = np.float32


def _focal(x, t, alpha=0.25, gamma=2.0):
  """Sigmoid focal loss in float32, the formula of Lin et al. (stable BCE with logits)."""
  p = F32(1) / (F32(1) + np.exp(-x))
  ce = np.maximum(x, F32(0)) - x * F32(t) + np.log1p(np.exp(-np.abs(x)))
  p_t = p * F32(t) + (F32(1) - p) * F32(1 - t)
  return F32(alpha * t + (1 - alpha) * (1 - t)) * (ce * (F32(1) - p_t) ** (2 if gamma == 2.0 else F32(gamma)))


def _ltrb(points, boxes):
  x, y = points[None, :, 0], points[None, :, 1]
  return x - boxes[:, 0:1], y - boxes[:, 1:2], boxes[:, 2:3] - x, boxes[:, 3:4] - y


def _smallest_k(cost, k):
  """(M, A) -> (M, k) column indices of the k smallest entries per row, ties to the lowest index."""
  m, a = cost.shape
  k = min(k, a)
  part = np.argpartition(cost, k - 1, axis=1)[:, :k]
  kth = np.take_along_axis(cost, part, axis=1).max(axis=1)
  # argpartition picks arbitrary members of a tie at the k-th value; redo the rows where it could matter.
  equal = (cost == kth[:, None]).sum(axis=1)
  chosen_equal = (np.take_along_axis(cost, part, axis=1) == kth[:, None]).sum(axis=1)
  for g in np.flatnonzero(equal > chosen_equal):
    below = np.flatnonzero(cost[g] < kth[g])
    tied = np.flatnonzero(cost[g] == kth[g])[:k - len(below)]
    part[g] = np.concatenate([below, tied])
  return part


def lla_matched(points, cls_logits, ltrb, gt_boxes, gt_classes, gt_valid, k=10, reg_cost=1.5, penalty=1000.0,
                margin=0.01):
  """LLA (lla.md §6.1, §6.3): cost planes, K cheapest per GT, contested points to the all-rows argmin."""
  points, ltrb, cls_logits = (np.asarray(v, F32) for v in (points, ltrb, cls_logits))
  a = len(points)
  rows = np.flatnonzero(gt_valid)
  matched = np.full(a, -1, np.int64)
  if rows.size == 0:
    return matched
  boxes = np.asarray(gt_boxes, F32)[rows]
  cls = np.maximum(np.asarray(gt_classes)[rows], 0)
  neg = _focal(cls_logits, 0)
  per_class = (neg.sum(-1)[:, None] - neg + _focal(cls_logits, 1)).T                       # (C, A)
  l, t, r, b = _ltrb(points, boxes)
  inside = np.minimum(np.minimum(l, t), np.minimum(r, b)) > F32(margin)
  pl, pt, pr, pb = (ltrb[None, :, i] for i in range(4))
  p_area = np.maximum(pl + pr, F32(0)) * np.maximum(pt + pb, F32(0))
  cost = np.maximum(l + r, F32(0))
  cost *= np.maximum(t + b, F32(0))                                                        # GT area
  iw = np.minimum(pl, l)
  iw += np.minimum(pr, r)
  np.maximum(iw, F32(0), out=iw)
  ih = np.minimum(pt, t)
  ih += np.minimum(pb, b)
  np.maximum(ih, F32(0), out=ih)
  iw *= ih                                                                                 # intersection
  cost += p_area
  cost -= iw                                                                               # union
  np.maximum(cost, EPS, out=cost)
  np.divide(iw, cost, out=cost)                                                            # IoU
  np.maximum(cost, EPS, out=cost)
  np.log(cost, out=cost)
  cost *= F32(-reg_cost)
  cost += per_class[cls] if per_class.shape[0] > 1 else per_class
  cost += np.where(inside, F32(0), F32(penalty))
  picks = _smallest_k(cost, k)                                                              # (G, K)
  cols = picks.ravel()
  count = np.bincount(cols, minlength=a)
  owner = np.repeat(np.arange(len(rows)), picks.shape[1])
  matched[cols] = rows[owner]
  contested = np.flatnonzero(count > 1)
  matched[contested] = rows[np.argmin(cost[:, contested], axis=0)]                         # over ALL rows
  return matched


def fcos_matched(points, strides, gt_boxes, gt_classes, gt_valid, radius=1.5, level_strides=(8, 16, 32, 64, 128),
                 size_ranges=FCOS_SIZE_RANGES):
  """FCOS (lla.md §11.3): centre sampling, inclusive per-level scale range, smallest area, lowest index."""
  points, strides = np.asarray(points, F32), np.asarray(strides, F32)
  rows = np.flatnonzero(gt_valid)
  if rows.size == 0:
    return np.full(len(points), -1, np.int64)
  boxes = np.asarray(gt_boxes, F32)[rows]
  x, y = points[None, :, 0], points[None, :, 1]
  cx, cy = (F32(0.5) * (boxes[:, 0] + boxes[:, 2]))[:, None], (F32(0.5) * (boxes[:, 1] + boxes[:, 3]))[:, None]
  rad = F32(radius) * strides[None, :]
  d = x - np.maximum(cx - rad, boxes[:, 0:1])
  np.minimum(d, y - np.maximum(cy - rad, boxes[:, 1:2]), out=d)
  np.minimum(d, np.minimum(cx + rad, boxes[:, 2:3]) - x, out=d)
  np.minimum(d, np.minimum(cy + rad, boxes[:, 3:4]) - y, out=d)
  ok = d > 0
  l, t, r, b = _ltrb(points, boxes)
  np.maximum(l, t, out=l)
  np.maximum(l, r, out=l)
  np.maximum(l, b, out=l)
  lo, hi = np.full(len(points), np.inf, F32), np.full(len(points), -np.inf, F32)
  for s, (a_lo, a_hi) in zip(level_strides, size_ranges):
    lo[strides == s], hi[strides == s] = a_lo, a_hi
  ok &= lo[None, :] <= l
  ok &= l <= hi[None, :]
  area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
  cost = np.where(ok, area[:, None], F32(np.inf))
  best = np.argmin(cost, axis=0)
  return np.where(ok.any(axis=0), rows[best], -1)


def atss_matched(points, strides, gt_boxes, gt_classes, gt_valid, topk=9, anchor_scale=8.0):
  """ATSS (lla.md §12.2): per level the topk points nearest the GT centre, IoU >= mean + std (ddof 1) of the
  candidates' pseudo-anchor IoUs, centre strictly inside, conflicts to the max IoU (lowest index)."""
  points, strides = np.asarray(points, F32), np.asarray(strides, F32)
  a = len(points)
  rows = np.flatnonzero(gt_valid)
  if rows.size == 0:
    return np.full(a, -1, np.int64)
  boxes = np.asarray(gt_boxes, F32)[rows]
  cx, cy = F32(0.5) * (boxes[:, 0] + boxes[:, 2]), F32(0.5) * (boxes[:, 1] + boxes[:, 3])
  change = np.flatnonzero(np.diff(strides)) + 1
  cand = []
  for start, stop in zip(np.concatenate([[0], change]), np.concatenate([change, [a]])):  # levels: stride runs
    dx = points[None, start:stop, 0] - cx[:, None]
    dy = points[None, start:stop, 1] - cy[:, None]
    dist = np.sqrt(dx * dx + dy * dy)
    cand.append(start + _smallest_k(dist, topk))
  idx = np.concatenate(cand, axis=1)                                                       # (G, L * k)
  px, py, ps = points[idx, 0], points[idx, 1], strides[idx]
  h = F32(0.5 * anchor_scale) * ps
  ax1, ay1, ax2, ay2 = px - h, py - h, px + h, py + h
  bx1, by1, bx2, by2 = (boxes[:, i:i + 1] for i in range(4))
  iw = np.maximum(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), F32(0))
  ih = np.maximum(np.minimum(ay2, by2) - np.maximum(ay1, by1), F32(0))
  inter = iw * ih
  union = (bx2 - bx1) * (by2 - by1) + (ax2 - ax1) * (ay2 - ay1) - inter
  with np.errstate(invalid="ignore", divide="ignore"):
    iou = np.where(union > 0, inter / np.where(union > 0, union, F32(1)), F32(0))
  n = F32(idx.shape[1])
  mean = iou.sum(axis=1) / n
  thr = mean + np.sqrt(((iou - mean[:, None]) ** 2).sum(axis=1) / (n - F32(1)))
  inside = np.minimum(np.minimum(px - bx1, py - by1), np.minimum(bx2 - px, by2 - py)) > 0
  positive = (iou >= thr[:, None]) & inside
  g, j = np.nonzero(positive)
  point, value = idx[g, j], iou[g, j]
  order = np.lexsort((g, -value, point))      # per point: max IoU first, then lowest GT row
  point, g = point[order], g[order]
  first = np.concatenate([[True], point[1:] != point[:-1]]) if point.size else np.zeros(0, bool)
  matched = np.full(a, -1, np.int64)
  matched[point[first]] = rows[g[first]]
  return matched
