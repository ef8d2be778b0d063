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
  # Every min / max of the (M, A) pass as a compare-and-select (boxes.select_min: half the pass's time).
  minimum, maximum = boxes.select_min, boxes.select_max
  l, t, r, b = boxes.ltrb_targets(points, gt_boxes)
  inside = minimum(minimum(l, t), minimum(r, b)) > _get(cfg, "inside_margin")
  # Focal loss of each point against a positive target of the GT's class; ignore GTs use class 0.
  alpha, gamma = _get(cfg, "focal_alpha"), _get(cfg, "focal_gamma")
  pos = losses.sigmoid_focal_loss(cls_logits, jnp.ones_like(cls_logits), alpha, gamma)    # (A, C)
  neg = losses.sigmoid_focal_loss(cls_logits, jnp.zeros_like(cls_logits), alpha, gamma)   # (A, C)
  # (neg_sum - neg_c) + pos_c as a reduction over a stacked axis (the same additions in the same order):
  # XLA then computes it once per point instead of inlining the focal terms into every (M, A) element.
  per_class = jnp.sum(jnp.stack([jnp.broadcast_to(neg.sum(-1)[:, None], neg.shape), -neg, pos]), axis=0).T  # (C, A)
  # cls_cost[g] = per_class[max(class_g, 0)] (the last class for larger ids, as a clamped gather), chosen
  # with selects: an (M, A) gather would be materialised, a select fuses into the cost's single pass.
  cls = jnp.maximum(gt_classes, 0)[:, None]
  cls_cost = per_class[-1][None, :]
  for c in range(per_class.shape[0] - 2, -1, -1):                                         # static, C small
    cls_cost = jnp.where(cls == c, per_class[c][None, :], cls_cost)                       # (M, A)
  pred = tuple(ltrb[None, :, i].astype(jnp.float32) for i in range(4))
  inter, union, _ = boxes.ltrb_overlap(pred, (l, t, r, b), minimum, maximum)
  iou = inter / maximum(union, boxes.EPS)
  reg_cost = -jnp.log(maximum(iou, boxes.EPS))
  cost = cls_cost + _get(cfg, "reg_cost") * reg_cost
  if _get(cfg, "hard_inside"):
    cost = jnp.where(inside, cost, jnp.inf)
  else:
    cost = cost + jnp.where(inside, 0.0, jnp.float32(_get(cfg, "inside_penalty")))
  cost = jnp.where(gt_valid[:, None], cost, jnp.inf)
  return cost, iou


def select_positives(cost, k, column_cost=None, entry_cost=None):
  """Top-K per GT row, then conflicts resolved by argmin over all rows (lla.md §6.3).

  cost (M, A) with +inf on rows/entries that may not be chosen. Returns assigned (A,) int32, the
  GT of each point or -1. Ties go to the lowest index: common.smallest_k and argmin both prefer it.
  column_cost(cols) -> (M, len(cols)): the same cost for some columns, recomputed from the inputs;
  by default gathered from `cost`. entry_cost(cols (M, J)) -> (M, J): row m's cost at its own columns,
  likewise. Recomputing leaves `cost` one reader (the chunk minima of common.smallest_k), so it is the
  one (M, A) buffer.

  Only (M, K)-sized work besides the chunk minima: the claims are M * K scatters into (A,)
  counters, and the argmin over all rows is taken only for the claimed columns, not for all A
  points. A full (M, A) claims mask and column reductions over (M, A) cost several passes over the
  largest array and dominated the time on XLA:CPU.
  """
  m, a = cost.shape
  k = min(k, a)
  val, idx = common.smallest_k(cost, k, values_at=entry_cost)               # (M, K), K cheapest per row
  picked = val < jnp.inf                                                    # no inf picks
  cols = idx.reshape(-1)
  rows = jnp.broadcast_to(jnp.arange(m, dtype=jnp.int32)[:, None], idx.shape)
  count = jnp.zeros((a,), jnp.int32).at[cols].add(picked.reshape(-1).astype(jnp.int32))
  only = jnp.full((a,), -1, jnp.int32).at[cols].max(jnp.where(picked, rows, -1).reshape(-1))
  # argmin over ALL rows of each claimed column (not only over the claimants); every pick of a column
  # computes the same winner, so the scatter order does not matter.
  claimed = cost[:, cols] if column_cost is None else column_cost(cols)     # (M, M * K)
  cheapest = jnp.zeros((a,), jnp.int32).at[cols].set(_first_argmin(claimed.T))
  assigned = jnp.where(count > 1, cheapest, only)
  return jnp.where(count > 0, assigned, -1).astype(jnp.int32)


def _first_argmin(x):
  """(N, M) -> (N,) int32 index of each row's first minimum.

  Rows, not columns: XLA:CPU reduces over a row-major array's leading axis with a strided inner loop. Two
  plain reductions (min, then the lowest index reaching it) instead of argmin's variadic reduce, which
  XLA:CPU runs several times slower when it fuses the cost computation into it.
  """
  smallest = jnp.min(x, axis=1)
  index = jnp.arange(x.shape[1], dtype=jnp.int32)[None, :]
  return jnp.min(jnp.where(x == smallest[:, None], index, x.shape[1]), axis=1)


def iou_with_assigned(points, ltrb, gt_boxes, assigned):
  """(A,) plain IoU of each point's predicted box with its assigned GT (row 0 for background points),
  the same float operations as cost_matrix's IoU but on A pairs instead of (M, A)."""
  g = gt_boxes[jnp.maximum(assigned, 0)]
  x, y = points[:, 0], points[:, 1]
  target = (x - g[:, 0], y - g[:, 1], g[:, 2] - x, g[:, 3] - y)
  pred = tuple(ltrb[:, i].astype(jnp.float32) for i in range(4))
  inter, union, _ = boxes.ltrb_overlap(pred, target, boxes.select_min, boxes.select_max)
  return inter / boxes.select_max(union, boxes.EPS)


def assign(points, strides, cls_logits, ltrb, gt_boxes, gt_classes, gt_valid, cfg=None) -> Targets:
  """LLA targets for one image.

  points (A, 2) xy; strides (A,) (unused: LLA has no per-level prior); cls_logits (A, C);
  ltrb (A, 4) predicted distances in pixels; gt_boxes (M, 4) xyxy; gt_classes (M,) with -1 for
  ignore; gt_valid (M,) bool. Points matched to ignore GTs are invalid but count in num_fg (Q2).
  """
  common.check_inputs("lla", points, strides, jnp.asarray(cls_logits), jnp.asarray(ltrb), gt_boxes, gt_classes,
                      gt_valid)
  points, cls_logits, ltrb, gt_boxes, gt_classes, gt_valid = (
      jnp.asarray(x) for x in (points, cls_logits, ltrb, gt_boxes, gt_classes, gt_valid))
  if gt_boxes.shape[0] == 0:
    return common.targets_from_matches(points, gt_boxes, gt_classes, jnp.full((points.shape[0],), -1))
  # The (M, A) cost is the only large array: its IoU output is unused here (XLA drops it) and IoU* is
  # recomputed for the A assigned pairs.
  cost_of = lambda p, c, l: cost_matrix(p, c, l, gt_boxes, gt_classes, gt_valid, cfg)[0]
  cost = cost_of(points, cls_logits, ltrb)
  def entry_cost(cols):   # (M, J) -> (M, J): each GT row against its own J points
    one_row = lambda c, box, cls, ok: cost_matrix(points[c], cls_logits[c], ltrb[c], box[None], cls[None], ok[None],
                                                  cfg)[0][0]
    return jax.vmap(one_row)(cols, gt_boxes, gt_classes, gt_valid)

  assigned = select_positives(cost, _get(cfg, "topk"), entry_cost=entry_cost,
                              column_cost=lambda cols: cost_of(points[cols], cls_logits[cols], ltrb[cols]))
  # IoU* = IoU of the detached prediction with the assigned GT; ignore matches count in num_fg (Q2).
  iou_star = iou_with_assigned(points, ltrb, gt_boxes, assigned)
  return common.targets_from_matches(points, gt_boxes, gt_classes, assigned, aux_target=iou_star,
                                     num_fg_counts_ignore=True)
