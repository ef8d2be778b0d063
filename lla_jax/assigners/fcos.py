"""FCOS label assignment of the released baseline (lla.md §11.3): centre sampling, per-level scale
ranges, smallest-area GT. Static: the predictions take no part. One image; vmap over the batch."""
from __future__ import annotations

import jax.numpy as jnp

from lla_jax import boxes
from lla_jax.assigners import common
from lla_jax.types import Targets

# The (M, A) passes' min / max as compare-and-selects (boxes.select_min: the same masks, fewer instructions).
minimum, maximum = boxes.select_min, boxes.select_max

DEFAULTS = dict(
    center_sampling_radius=1.5,  # in units of the level stride; <= 0 uses the whole GT box instead
    size_ranges=((-1.0, 64.0), (64.0, 128.0), (128.0, 256.0), (256.0, 512.0), (512.0, float("inf"))),
    strides=common.LEVEL_STRIDES,  # size_ranges[i] belongs to the i-th smallest stride
)


def assign(points, strides, cls_logits, ltrb, gt_boxes, gt_classes, gt_valid, cfg=None) -> Targets:
  """FCOS targets of one image.

  points (A, 2) xy input pixels, levels concatenated; strides (A,) the stride of each point's level;
  cls_logits (A, C) and ltrb (A, 4) are unused (static assignment; kept for the common signature);
  gt_boxes (M, 4) xyxy; gt_classes (M,) int, -1 = ignore; gt_valid (M,) bool, False = padding row.
  cfg: None (released values) or a ConfigDict / dict overriding fields of DEFAULTS.
  A point is given to the smallest-area GT (ties: lowest index) among those whose centre region holds
  it strictly and whose scale range fits max(l*, t*, r*, b*); a chosen ignore GT makes it invalid.
  num_fg counts non-ignore foreground points.
  """
  points, strides, gt_boxes = (jnp.asarray(v, jnp.float32) for v in (points, strides, gt_boxes))
  gt_classes, gt_valid = jnp.asarray(gt_classes, jnp.int32), jnp.asarray(gt_valid, bool)
  levels = common.level_strides(cfg, DEFAULTS)
  common.check_inputs("fcos", points, strides, jnp.asarray(cls_logits), jnp.asarray(ltrb), gt_boxes, gt_classes,
                      gt_valid, known_strides=levels)
  ranges = tuple(tuple(float(v) for v in r) for r in common.option(cfg, "size_ranges", DEFAULTS))
  if len(ranges) != len(levels) or any(len(r) != 2 for r in ranges):
    raise ValueError(f"fcos assigner cfg field 'size_ranges'={ranges}: expected one (lo, hi) pair per level "
                     f"stride {levels}")
  radius = float(common.option(cfg, "center_sampling_radius", DEFAULTS))

  inside = center_sampling(points, strides, gt_boxes, radius)
  fits = scale_range(points, strides, gt_boxes, dict(zip(levels, ranges)))
  matched = smallest_area_gt(inside & fits & gt_valid[:, None], gt_boxes)
  return common.targets_from_matches(points, gt_boxes, gt_classes, matched)


def center_sampling(points, strides, gt_boxes, radius):
  """(M, A) bool: point strictly inside the GT's centre box of its level.

  Centre box = [max(cx - r s, x1), max(cy - r s, y1), min(cx + r s, x2), min(cy + r s, y2)] with s the
  point's stride; "strictly" = the smallest of the four deltas > 0. radius <= 0: strictly inside the GT.
  """
  if radius > 0:
    cx = 0.5 * (gt_boxes[:, 0] + gt_boxes[:, 2])
    cy = 0.5 * (gt_boxes[:, 1] + gt_boxes[:, 3])
    r = radius * strides[None, :]
    x1 = maximum(cx[:, None] - r, gt_boxes[:, 0, None])
    y1 = maximum(cy[:, None] - r, gt_boxes[:, 1, None])
    x2 = minimum(cx[:, None] + r, gt_boxes[:, 2, None])
    y2 = minimum(cy[:, None] + r, gt_boxes[:, 3, None])
    x, y = points[None, :, 0], points[None, :, 1]
    deltas = (x - x1, y - y1, x2 - x, y2 - y)
  else:
    deltas = boxes.ltrb_targets(points, gt_boxes)
  return minimum(minimum(deltas[0], deltas[1]), minimum(deltas[2], deltas[3])) > 0


def scale_range(points, strides, gt_boxes, ranges):
  """(M, A) bool: lo <= max(l*, t*, r*, b*) <= hi for the (lo, hi) of the point's level (inclusive both ends).

  ranges: static {level stride: (lo, hi)}. A point of a stride missing from it fits no GT.
  """
  l, t, r, b = boxes.ltrb_targets(points, gt_boxes)
  m = maximum(maximum(l, t), maximum(r, b))
  lo = common.per_level(strides, {s: v[0] for s, v in ranges.items()}, jnp.inf)
  hi = common.per_level(strides, {s: v[1] for s, v in ranges.items()}, -jnp.inf)
  return (lo[None, :] <= m) & (m <= hi[None, :])


def smallest_area_gt(eligible, gt_boxes):
  """(A,) int32 index of the smallest-area (w h) eligible GT per point, lowest index on ties; -1 if none.

  eligible (M, A) bool, gt_boxes (M, 4).
  """
  if gt_boxes.shape[0] == 0:
    return jnp.full(eligible.shape[1:], -1, jnp.int32)
  area = (gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1])
  # Reduced over the GT axis as the minor (contiguous) axis of an (A, M) array: XLA:CPU reduces a row-major
  # (M, A) array over M with a strided inner loop, several times slower. Two plain reductions (min, then the
  # lowest index reaching it) also beat argmin's variadic reduce there, and make the tie rule explicit.
  cost = jnp.where(eligible.T, area[None, :], jnp.inf)                                   # (A, M)
  smallest = jnp.min(cost, axis=1)
  rows = jnp.arange(cost.shape[1], dtype=jnp.int32)[None, :]
  best = jnp.min(jnp.where(cost == smallest[:, None], rows, cost.shape[1]), axis=1)
  return jnp.where(smallest < jnp.inf, best, -1)
