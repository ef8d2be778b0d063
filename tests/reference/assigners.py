"""Plain numpy re-statements of the FCOS and ATSS assigners (Tian et al. 2019, FCOS; Zhang et al. 2020,
ATSS; as configured in Megvii-BaseDetection/LLA playground/detection/crowdhuman/
{fcos,atss}.res50.fpn.crowdhuman.800size.30k), one image at a time, plus the random crowd images the tests
and benchmarks/assign_bench.py draw.

Written from the spec, independently of lla_jax/assigners: explicit Python loops over the GTs (in index
order, so "lowest index wins a tie" is an update with a strict comparison), over the levels (contiguous
runs of equal stride, found here from the strides) and over the candidates; numpy only over the points
of one GT. Geometry in float32 like the jnp code, so exactly representable test cases agree bit for bit.
"""
from __future__ import annotations

import math

import numpy as np

IGNORE = -1
FCOS_SIZE_RANGES = {8: (-1.0, 64.0), 16: (64.0, 128.0), 32: (128.0, 256.0), 64: (256.0, 512.0),
                    128: (512.0, math.inf)}


def level_runs(strides):
  """[(stride, start, stop)] of the contiguous runs of equal stride; a level must be one run."""
  runs, start = [], 0
  for i in range(1, len(strides) + 1):
    if i == len(strides) or strides[i] != strides[start]:
      runs.append((float(strides[start]), start, i))
      start = i
  seen = [r[0] for r in runs]
  assert len(seen) == len(set(seen)), f"levels are not contiguous: stride runs {seen}"
  return runs


def targets_np(points, gt_boxes, gt_classes, matched, claims):
  """Targets dict of one image from matched (A,) (-1 background), point by point; `contested` counts
  the points that several GTs could take (claims (A,) = how many), to show a case exercises conflicts."""
  a = len(points)
  out = dict(matched_gt=matched.astype(np.int32), fg=np.zeros(a, bool), valid=np.ones(a, bool),
             box_targets=np.zeros((a, 4), np.float32), aux_target=np.zeros(a, np.float32))
  for p in range(a):
    g = matched[p]
    if g < 0:
      continue
    if gt_classes[g] == IGNORE:
      out["valid"][p] = False
      continue
    x, y = points[p]
    x1, y1, x2, y2 = gt_boxes[g]
    l, t, r, b = x - x1, y - y1, x2 - x, y2 - y
    out["fg"][p] = True
    out["box_targets"][p] = (l, t, r, b)
    out["aux_target"][p] = math.sqrt(min(l, r) / max(l, r) * (min(t, b) / max(t, b)))
  out["num_fg"] = np.float32(out["fg"].sum())
  out["contested"] = int((claims > 1).sum())
  return out


def fcos_np(points, strides, gt_boxes, gt_classes, gt_valid, radius=1.5, size_ranges=None):
  """FCOS: centre sampling (radius in strides), inclusive scale range on max ltrb, smallest area."""
  size_ranges = FCOS_SIZE_RANGES if size_ranges is None else size_ranges
  points, strides, gt_boxes = (np.asarray(v, np.float32) for v in (points, strides, gt_boxes))
  x, y = points[:, 0], points[:, 1]
  lo = np.array([size_ranges[float(s)][0] for s in strides], np.float32)
  hi = np.array([size_ranges[float(s)][1] for s in strides], np.float32)
  matched = np.full(len(points), -1, np.int64)
  best_area = np.full(len(points), np.inf, np.float32)
  claims = np.zeros(len(points), np.int64)
  for g in range(len(gt_boxes)):
    if not gt_valid[g]:
      continue
    x1, y1, x2, y2 = gt_boxes[g]
    if radius > 0:
      cx, cy = (x1 + x2) / np.float32(2), (y1 + y2) / np.float32(2)
      rad = np.float32(radius) * strides
      region = (np.maximum(cx - rad, x1), np.maximum(cy - rad, y1), np.minimum(cx + rad, x2), np.minimum(cy + rad, y2))
    else:
      region = (x1, y1, x2, y2)
    inside = np.min(np.stack([x - region[0], y - region[1], region[2] - x, region[3] - y]), axis=0) > 0
    m = np.max(np.stack([x - x1, y - y1, x2 - x, y2 - y]), axis=0)
    area = (x2 - x1) * (y2 - y1)
    eligible = inside & (lo <= m) & (m <= hi)
    claims += eligible
    take = eligible & (area < best_area)  # strict: an equal area keeps the lower index
    matched[take] = g
    best_area[take] = area
  return targets_np(points, gt_boxes, gt_classes, matched, claims)


def iou_np(a, b):
  """IoU of two xyxy boxes, no +1; 0 when the union is empty."""
  iw = max(min(a[2], b[2]) - max(a[0], b[0]), np.float32(0))
  ih = max(min(a[3], b[3]) - max(a[1], b[1]), np.float32(0))
  inter = iw * ih
  area_a = max(a[2] - a[0], np.float32(0)) * max(a[3] - a[1], np.float32(0))
  area_b = max(b[2] - b[0], np.float32(0)) * max(b[3] - b[1], np.float32(0))
  union = area_a + area_b - inter
  return inter / union if union > 0 else np.float32(0)


def atss_threshold_np(values):
  """mean + unbiased std of the candidate IoUs (float64); NaN with fewer than two."""
  v = np.asarray(values, np.float64)
  if len(v) < 2:
    return math.nan
  mean = v.sum() / len(v)
  return mean + math.sqrt(((v - mean) ** 2).sum() / (len(v) - 1))


def atss_np(points, strides, gt_boxes, gt_classes, gt_valid, topk=9, anchor_scale=8.0):
  """ATSS: per level the topk nearest points (stable: equal distances by index), IoU >= mean + std
  (ddof 1) of the pseudo-anchor IoUs, strictly inside, conflicts to the max IoU (lowest index on ties)."""
  points, strides, gt_boxes = (np.asarray(v, np.float32) for v in (points, strides, gt_boxes))
  x, y = points[:, 0], points[:, 1]
  half = np.float32(anchor_scale / 2) * strides
  anchors = np.stack([x - half, y - half, x + half, y + half], axis=1)
  runs = level_runs(strides)
  matched = np.full(len(points), -1, np.int64)
  best_iou = np.full(len(points), -np.inf, np.float32)
  claims = np.zeros(len(points), np.int64)
  for g in range(len(gt_boxes)):
    if not gt_valid[g]:
      continue
    box = gt_boxes[g]
    cx, cy = (box[0] + box[2]) / np.float32(2), (box[1] + box[3]) / np.float32(2)
    cand = []
    for _, start, stop in runs:
      d = np.sqrt((x[start:stop] - cx) ** 2 + (y[start:stop] - cy) ** 2)
      cand += [start + int(i) for i in np.argsort(d, kind="stable")[:topk]]
    ious = [iou_np(anchors[p], box) for p in cand]
    thr = atss_threshold_np(ious)
    for p, v in zip(cand, ious):
      inside = min(x[p] - box[0], y[p] - box[1], box[2] - x[p], box[3] - y[p]) > 0
      if v >= thr and inside:
        claims[p] += 1
        if v > best_iou[p]:  # strict: an equal IoU keeps the lower index
          best_iou[p] = v
          matched[p] = g
  return targets_np(points, gt_boxes, gt_classes, matched, claims)


# Random crowd images: boxes on a 0.25 px grid inside a small image keep every coordinate, centre,
# squared distance and area exactly representable in float32, so ties are real ties on both sides.

def crowd_case(rng, height, width, num_boxes, max_boxes, ignore_frac=0.1, tiny_frac=0.1, leave_frac=0.1,
               zero_frac=0.0, padding="zeros", quantum=0.25, num_clusters=None):
  """One image's padded GT: gt_boxes (M, 4) float32, gt_classes (M,) int32, gt_valid (M,) bool.

  Pedestrian-shaped boxes (w ~ 0.3..0.6 h, h log-uniform) around a few crowd centres; a fraction are
  tiny (a few px), leave the image, are ignore regions (class -1) or have zero width (still valid).
  padding: "zeros" (the Batch contract) or "garbage" (random boxes with gt_valid False, to show that
  padded rows cannot matter).
  """
  assert num_boxes <= max_boxes
  n_clusters = num_clusters or max(1, num_boxes // 6)
  centres = rng.uniform([0, 0], [width, height], size=(n_clusters, 2))
  c = centres[rng.integers(0, n_clusters, num_boxes)] + rng.normal(0, 0.06 * min(height, width), (num_boxes, 2))
  h = np.exp(rng.uniform(np.log(10), np.log(0.9 * height), num_boxes))
  w = h * rng.uniform(0.3, 0.6, num_boxes)
  tiny = rng.random(num_boxes) < tiny_frac
  h[tiny] = rng.uniform(1, 12, tiny.sum())
  w[tiny] = rng.uniform(1, 8, tiny.sum())
  # Boxes leaving the image straddle a random border.
  side = np.where(rng.random(num_boxes) < leave_frac, rng.integers(0, 4, num_boxes), -1)
  shift_x, shift_y = rng.uniform(-0.4, 0.4, num_boxes) * w, rng.uniform(-0.4, 0.4, num_boxes) * h
  c[:, 0] = np.select([side == 0, side == 1], [shift_x, width + shift_x], c[:, 0])
  c[:, 1] = np.select([side == 2, side == 3], [shift_y, height + shift_y], c[:, 1])
  boxes = np.stack([c[:, 0] - w / 2, c[:, 1] - h / 2, c[:, 0] + w / 2, c[:, 1] + h / 2], axis=1)
  boxes = np.round(boxes / quantum) * quantum
  boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + quantum)
  zero = rng.random(num_boxes) < zero_frac
  boxes[zero, 2] = boxes[zero, 0]
  classes = np.where(rng.random(num_boxes) < ignore_frac, IGNORE, 0)
  gt_boxes = np.zeros((max_boxes, 4), np.float32)
  gt_boxes[:num_boxes] = boxes
  if padding == "garbage" and max_boxes > num_boxes:
    pad = crowd_case(rng, height, width, max_boxes - num_boxes, max_boxes - num_boxes, padding="zeros")
    gt_boxes[num_boxes:] = pad[0]
  gt_classes = np.where(rng.random(max_boxes) < 0.5, IGNORE, 0).astype(np.int32) if padding == "garbage" \
      else np.zeros(max_boxes, np.int32)
  gt_classes[:num_boxes] = classes
  gt_valid = np.arange(max_boxes) < num_boxes
  return gt_boxes, gt_classes, gt_valid
