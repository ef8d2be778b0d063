"""LLA: loss-aware label assignment (Ge et al. 2021; lla.md §6).

Every point of every level is a candidate; the cost of giving point a to GT g is the loss the
point would pay as a positive of g. Each GT takes its K cheapest points; a point claimed by
several GTs goes to the cheapest GT over all rows.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lla_jax import boxes, losses
from lla_jax.assigners import common
from lla_jax.types import Targets

# The released values (lla.md §9); a ConfigDict or dict `cfg` overrides any of them.
DEFAULTS = dict(topk=10, reg_cost=1.5, inside_penalty=1000.0, inside_margin=0.01, hard_inside=False,
                focal_alpha=0.25, focal_gamma=2.0)


def _get(cfg, name):
  return common.option(cfg, name, DEFAULTS)


def cost_matrix(points, cls_logits, ltrb, gt_boxes, gt_classes, gt_valid, cfg=None):
  """The LLA cost C (M, A) = cls_cost + lambda * reg_cost + penalty * (1 - inside) (lla.md §6.1).

  Also returns the (M, A) plain IoU between each point's predicted box and each GT (IoU* comes from
  it). Padding rows cost +inf. With `hard_inside`, outside points cost +inf.
  """
  l, t, r, b = boxes.ltrb_targets(points, gt_boxes)
  inside = jnp.minimum(jnp.minimum(l, t), jnp.minimum(r, b)) > _get(cfg, "inside_margin")
  # Focal loss of each point against a positive target of the GT's class; ignore GTs use class 0.
  alpha, gamma = _get(cfg, "focal_alpha"), _get(cfg, "focal_gamma")
  pos = losses.sigmoid_focal_loss(cls_logits, jnp.ones_like(cls_logits), alpha, gamma)    # (A, C)
  neg = losses.sigmoid_focal_loss(cls_logits, jnp.zeros_like(cls_logits), alpha, gamma)   # (A, C)
  cls = jnp.maximum(gt_classes, 0)
  cls_cost = neg.sum(-1)[None, :] - neg.T[cls] + pos.T[cls]                              # (M, A)
  pred = tuple(ltrb[None, :, i].astype(jnp.float32) for i in range(4))
  inter, union, _ = boxes.ltrb_overlap(pred, (l, t, r, b))
  iou = inter / jnp.maximum(union, boxes.EPS)
  reg_cost = -jnp.log(jnp.maximum(iou, boxes.EPS))
  cost = cls_cost + _get(cfg, "reg_cost") * reg_cost
  if _get(cfg, "hard_inside"):
    cost = jnp.where(inside, cost, jnp.inf)
  else:
    cost = cost + _get(cfg, "inside_penalty") * (1.0 - inside.astype(jnp.float32))
  cost = jnp.where(gt_valid[:, None], cost, jnp.inf)
  return cost, iou


def select_positives(cost, k):
  """Top-K per GT row, then conflicts resolved by argmin over all rows (lla.md §6.3).

  cost (M, A) with +inf on rows/entries that may not be chosen. Returns assigned (A,) int32, the
  GT of each point or -1. Ties go to the lowest index: lax.top_k and argmin both prefer it.
  """
  m, a = cost.shape
  k = min(k, a)
  _, idx = jax.lax.top_k(-cost, k)                                           # (M, K)
  picked = jnp.isfinite(jnp.take_along_axis(cost, idx, axis=1))             # no inf picks
  claims = jnp.zeros((m, a), jnp.int32).at[jnp.arange(m)[:, None], idx].add(picked.astype(jnp.int32))
  count = claims.sum(0)
  only = jnp.argmax(claims, axis=0)           # the claimant when there is exactly one
  cheapest = jnp.argmin(cost, axis=0)         # over ALL rows, not only the claimants
  assigned = jnp.where(count > 1, cheapest, only)
  return jnp.where(count > 0, assigned, -1).astype(jnp.int32)


def assign(points, strides, cls_logits, ltrb, gt_boxes, gt_classes, gt_valid, cfg=None) -> Targets:
  """LLA targets for one image.

  points (A, 2) xy; strides (A,) (unused: LLA has no per-level prior); cls_logits (A, C);
  ltrb (A, 4) predicted distances in pixels; gt_boxes (M, 4) xyxy; gt_classes (M,) with -1 for
  ignore; gt_valid (M,) bool. Points matched to ignore GTs are invalid but count in num_fg (Q2).
  """
  common.check_inputs("lla", points, strides, jnp.asarray(cls_logits), jnp.asarray(ltrb), gt_boxes, gt_classes,
                      gt_valid)
  if gt_boxes.shape[0] == 0:
    return common.targets_from_matches(points, gt_boxes, gt_classes, jnp.full((points.shape[0],), -1))
  cost, iou = cost_matrix(points, cls_logits, ltrb, gt_boxes, gt_classes, gt_valid, cfg)
  assigned = select_positives(cost, _get(cfg, "topk"))
  # IoU* = IoU of the detached prediction with the assigned GT; ignore matches count in num_fg (Q2).
  iou_star = iou[jnp.maximum(assigned, 0), jnp.arange(points.shape[0])]
  return common.targets_from_matches(points, gt_boxes, gt_classes, assigned, aux_target=iou_star,
                                     num_fg_counts_ignore=True)
