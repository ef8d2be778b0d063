"""ATSS label assignment of the released baseline (lla.md §12.2): per-level nearest candidates, an
adaptive IoU threshold (mean + unbiased std), centre-in-box test, max-IoU conflicts. Static: the
predictions take no part. One image; vmap over the batch."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lla_jax import boxes
from lla_jax.assigners import common
from lla_jax.types import Targets

DEFAULTS = dict(
    topk=9,              # candidates per level and GT (ATSS.TOPK)
    anchor_scale=8.0,    # pseudo anchor side in strides (ATSS.ANCHOR_SCALE)
    strides=common.LEVEL_STRIDES,
)


def assign(points, strides, cls_logits, ltrb, gt_boxes, gt_classes, gt_valid, cfg=None) -> Targets:
  """ATSS targets of one image.

  points (A, 2) xy input pixels, levels concatenated; strides (A,) the stride of each point's level;
  cls_logits (A, C) and ltrb (A, 4) are unused (static assignment; kept for the common signature);
  gt_boxes (M, 4) xyxy; gt_classes (M,) int, -1 = ignore; gt_valid (M,) bool, False = padding row.
  cfg: None (released values) or a ConfigDict / dict overriding fields of DEFAULTS.
  Per GT: the `topk` points of each level nearest to its centre are candidates; a candidate whose pseudo
  anchor has IoU >= mean + std (ddof 1) of the candidates' IoUs and that lies strictly inside the GT is
  positive; a point positive for several GTs goes to the one of maximum IoU (ties: lowest index).
  A point given to an ignore GT is invalid. num_fg counts non-ignore foreground points.
  """
  levels = common.level_strides(cfg, DEFAULTS)
  runs = level_runs(strides, levels)  # before jnp.asarray: under jit that turns numpy strides into tracers
  points, strides, gt_boxes = (jnp.asarray(v, jnp.float32) for v in (points, strides, gt_boxes))
  gt_classes, gt_valid = jnp.asarray(gt_classes, jnp.int32), jnp.asarray(gt_valid, bool)
  common.check_inputs("atss", points, strides, jnp.asarray(cls_logits), jnp.asarray(ltrb), gt_boxes, gt_classes,
                      gt_valid, known_strides=levels)
  topk = int(common.option(cfg, "topk", DEFAULTS))
  if topk < 1:
    raise ValueError(f"atss assigner cfg field 'topk'={topk}: expected >= 1")
  anchor_scale = float(common.option(cfg, "anchor_scale", DEFAULTS))

  idx, ok = candidates(points, strides, gt_boxes, levels, topk, runs)
  anchors = pseudo_anchors(points, strides, anchor_scale)
  # IoU and centre-in-box only for the (M, L * topk) candidates, not for all (M, A) pairs.
  iou = jax.vmap(lambda g, a: boxes.pairwise_iou(g[None], a)[0])(gt_boxes, anchors[idx])
  l, t, r, b = jax.vmap(lambda g, p: [d[0] for d in boxes.ltrb_targets(p, g[None])])(gt_boxes, points[idx])
  inside = jnp.minimum(jnp.minimum(l, t), jnp.minimum(r, b)) > 0
  positive = ok & (iou >= adaptive_iou_threshold(iou, ok)[:, None]) & inside & gt_valid[:, None]
  matched = max_iou_gt(idx, iou, positive, points.shape[0])
  return common.targets_from_matches(points, gt_boxes, gt_classes, matched)


def pseudo_anchors(points, strides, anchor_scale):
  """(A, 4) xyxy square of side anchor_scale * stride centred on each point."""
  h = 0.5 * anchor_scale * strides
  return jnp.stack([points[:, 0] - h, points[:, 1] - h, points[:, 0] + h, points[:, 1] + h], axis=-1)


def candidates(points, strides, gt_boxes, levels, topk, runs=None):
  """Per GT and level, the `topk` points nearest (Euclidean) to the GT centre.

  Returns idx (M, L * k) int32 point indices and ok (M, L * k) bool, k = min(topk, A). ok is False for the
  slots of a level holding fewer than k points (what those slots index is unspecified).
  common.smallest_k returns equal values in index order, so equal distances go to the lowest point index
  (deterministic; upstream torch.topk leaves it open).
  runs: level_runs(strides, levels), or None to find them here. When the strides are concrete (the points
  come from priors.fpn_points, built once per shape) and each level is one contiguous run of points, the
  distances and the top-k are computed on each level's slice: one pass over (M, A) in all. Otherwise
  (traced strides) each level masks the other levels' distances with +inf and takes smallest_k over all A
  points: L passes, same result.
  """
  cx = 0.5 * (gt_boxes[:, 0] + gt_boxes[:, 2])
  cy = 0.5 * (gt_boxes[:, 1] + gt_boxes[:, 3])
  k = min(topk, points.shape[0])
  shape = (gt_boxes.shape[0], len(levels) * k)

  def dist(p):
    return jnp.sqrt((p[None, :, 0] - cx[:, None]) ** 2 + (p[None, :, 1] - cy[:, None]) ** 2)

  runs = level_runs(strides, levels) if runs is None else runs
  if runs is not None:
    idx, ok = [], []
    for start, stop in runs:
      n = min(k, stop - start)
      if n == 0:
        i = jnp.zeros((shape[0], 0), jnp.int32)
      else:
        _, i = common.smallest_k(dist(points[start:stop]), n)
      idx.append(jnp.pad(i.astype(jnp.int32) + start, ((0, 0), (0, k - n))))
      ok.append(jnp.broadcast_to(jnp.arange(k) < n, (shape[0], k)))
    return jnp.concatenate(idx, axis=1), jnp.concatenate(ok, axis=1)

  def nearest_in_level(s):
    d, i = common.smallest_k(jnp.where(strides[None, :] == s, dist(points), jnp.inf), k)
    return i, d < jnp.inf

  # lax.map, not a Python loop: one level at a time keeps a single (M, A) distance buffer alive.
  idx, ok = jax.lax.map(nearest_in_level, jnp.asarray(levels, jnp.float32))  # (L, M, k)
  return jnp.moveaxis(idx, 0, 1).reshape(shape).astype(jnp.int32), jnp.moveaxis(ok, 0, 1).reshape(shape)


def level_runs(strides, levels):
  """[(start, stop)] of each level's points when `strides` is concrete and every level is one contiguous run
  (an absent level gives an empty run); None when traced or not contiguous."""
  try:
    concrete = np.asarray(strides)
  except jax.errors.JAXTypeError:  # traced under jit/vmap: the layout is not known here
    return None
  runs = []
  for s in levels:
    where = np.flatnonzero(concrete == s)
    if where.size and where[-1] - where[0] + 1 != where.size:
      return None
    runs.append((int(where[0]), int(where[-1]) + 1) if where.size else (0, 0))
  return runs


def adaptive_iou_threshold(iou, ok):
  """(M,) mean + unbiased (ddof = 1) standard deviation of each row's candidate IoUs.

  iou (M, K), ok (M, K) bool marks the candidates. Normally K = 45 candidates; with fewer (small levels)
  the actual count is used. A single candidate gives NaN (as torch.std), so nothing passes.
  """
  n = jnp.sum(ok, axis=1).astype(jnp.float32)
  mean = jnp.sum(jnp.where(ok, iou, 0.0), axis=1) / n
  var = jnp.sum(jnp.where(ok, (iou - mean[:, None]) ** 2, 0.0), axis=1) / (n - 1.0)
  return mean + jnp.sqrt(var)


def max_iou_gt(idx, iou, positive, num_points):
  """(A,) int32 GT of maximum IoU among those a point is positive for, lowest index on ties; -1 if none.

  idx (M, K) candidate point indices, iou (M, K), positive (M, K) bool.
  """
  m = idx.shape[0]
  best = jnp.full((num_points,), -jnp.inf, jnp.float32).at[idx].max(jnp.where(positive, iou, -jnp.inf))
  is_best = positive & (iou == best[idx])
  rows = jnp.broadcast_to(jnp.arange(m, dtype=jnp.int32)[:, None], idx.shape)
  winner = jnp.full((num_points,), m, jnp.int32).at[idx].min(jnp.where(is_best, rows, m))
  return jnp.where(winner < m, winner, -1)
