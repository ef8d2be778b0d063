"""Plain numpy re-statement of LLA assignment, written from the paper (Ge et al. 2021,
LLA: Loss-aware Label Assignment) and Megvii-BaseDetection/LLA playground/detection/crowdhuman/
lla.res50.fpn.crowdhuman.800size.30k/fcos.py with explicit loops.

Independent of lla_jax: used by tests and benchmarks/assign_bench.py as the reference.
"""
import math

import numpy as np

EPS = np.finfo(np.float32).eps


def _focal(x, t, alpha=0.25, gamma=2.0):
  p = 1.0 / (1.0 + math.exp(-x))
  ce = max(x, 0.0) - x * t + math.log1p(math.exp(-abs(x)))
  p_t = p * t + (1 - p) * (1 - t)
  return (alpha * t + (1 - alpha) * (1 - t)) * ce * (1 - p_t) ** gamma


def assign_np(points, strides, cls_logits, ltrb, gt_boxes, gt_classes, gt_valid, cfg=None):
  """Returns dict(matched_gt, fg, valid, box_targets, aux_target, num_fg) as numpy arrays."""
  cfg = dict(topk=10, reg_cost=1.5, hard_inside=False) | dict(cfg or {})
  points, ltrb, gt_boxes = (np.asarray(x, np.float64) for x in (points, ltrb, gt_boxes))
  cls_logits = np.asarray(cls_logits, np.float64)
  A, M = len(points), len(gt_boxes)
  cost = np.full((M, A), np.inf)
  iou = np.zeros((M, A))
  tgt = np.zeros((M, A, 4))
  for g in range(M):
    if not gt_valid[g]:
      continue
    x1, y1, x2, y2 = gt_boxes[g]
    c = max(int(gt_classes[g]), 0)
    for a in range(A):
      x, y = points[a]
      d = np.array([x - x1, y - y1, x2 - x, y2 - y])
      tgt[g, a] = d
      inside = d.min() > 0.01
      cls_cost = sum(_focal(cls_logits[a, k], 1.0 if k == c else 0.0) for k in range(cls_logits.shape[1]))
      # Boxes relative to the point: pred (-l, -t, r, b), gt (-dl, -dt, dr, db).
      pl, pt, pr, pb = ltrb[a]
      pa = max(pl + pr, 0) * max(pt + pb, 0)
      ga = max(d[0] + d[2], 0) * max(d[1] + d[3], 0)
      inter = max(min(pl, d[0]) + min(pr, d[2]), 0) * max(min(pt, d[1]) + min(pb, d[3]), 0)
      u = inter / max(pa + ga - inter, EPS)
      iou[g, a] = u
      cst = cls_cost + cfg["reg_cost"] * -math.log(max(u, EPS))
      if cfg["hard_inside"]:
        cst = cst if inside else np.inf
      else:
        cst += 0.0 if inside else 1000.0
      cost[g, a] = cst
  claims = np.zeros((M, A), bool)
  for g in range(M):
    order = np.argsort(cost[g], kind="stable")[: cfg["topk"]]
    for a in order:
      if np.isfinite(cost[g, a]):
        claims[g, a] = True
  matched = np.full(A, -1)
  for a in range(A):
    who = np.nonzero(claims[:, a])[0]
    if len(who) == 1:
      matched[a] = who[0]
    elif len(who) > 1:
      matched[a] = int(np.argmin(cost[:, a]))   # over all rows; first minimum on ties
  fg = np.array([m >= 0 and gt_classes[m] >= 0 for m in matched])
  valid = np.array([not (m >= 0 and gt_classes[m] < 0) for m in matched])
  box_targets = np.zeros((A, 4))
  aux = np.zeros(A)
  for a in range(A):
    if fg[a]:
      box_targets[a] = tgt[matched[a], a]
      aux[a] = iou[matched[a], a]
  return dict(matched_gt=matched, fg=fg, valid=valid, box_targets=box_targets, aux_target=aux,
              num_fg=float((matched >= 0).sum()))
