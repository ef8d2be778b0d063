"""Box formats, pairwise overlaps and box coders. Pure jnp, xyxy, no +1 unless a function says so."""
from __future__ import annotations

import math

import jax.numpy as jnp

EPS = float(jnp.finfo(jnp.float32).eps)  # 1.1920929e-07, the clamp of the released IoU losses


def xywh_to_xyxy(b):
  """(..., 4) [x, y, w, h] -> [x1, y1, x2, y2]."""
  return jnp.concatenate([b[..., :2], b[..., :2] + b[..., 2:4]], axis=-1)


def xyxy_to_xywh(b):
  """(..., 4) [x1, y1, x2, y2] -> [x, y, w, h]."""
  return jnp.concatenate([b[..., :2], b[..., 2:4] - b[..., :2]], axis=-1)


def select_min(a, b):
  """Elementwise min as one compare-and-select, where(a < b, a, b), for the large passes that compare boxes
  without a gradient (assigners, NMS, matchers).

  jnp.minimum lowers on XLA:CPU to llvm.minimum, which propagates NaN and orders -0 before +0: several x86
  instructions per vector instead of one (about half the time of LLA's (M, A) cost pass). Equal to
  jnp.minimum on all non-NaN inputs except for the sign of a zero result, which none of those results
  depends on: every min / max there feeds a comparison or a clamp max(., c >= 0) (c = 0 gives the literal
  +0 either way). With NaN inputs (a diverged step, whose loss is NaN either way) results may differ.
  Not for losses: jnp.minimum's gradient splits ties, and NaN must reach the non-finite guard.
  """
  return jnp.where(a < b, a, b)


def select_max(a, b):
  """Elementwise max as one compare-and-select, where(a > b, a, b); see select_min."""
  return jnp.where(a > b, a, b)


def area(b):
  """(..., 4) xyxy -> (...) area with negative sides clamped to 0."""
  return select_max(b[..., 2] - b[..., 0], 0.0) * select_max(b[..., 3] - b[..., 1], 0.0)


def pairwise_intersection(a, b):
  """a (N, 4), b (M, 4) xyxy -> (N, M) intersection areas (select_min / select_max: no gradient user)."""
  w = select_min(a[:, None, 2], b[None, :, 2]) - select_max(a[:, None, 0], b[None, :, 0])
  h = select_min(a[:, None, 3], b[None, :, 3]) - select_max(a[:, None, 1], b[None, :, 1])
  return select_max(w, 0.0) * select_max(h, 0.0)


def pairwise_iou(a, b, eps=0.0):
  """a (N, 4), b (M, 4) xyxy -> (N, M) IoU = inter / max(union, eps); 0 where union is 0."""
  inter = pairwise_intersection(a, b)
  union = area(a)[:, None] + area(b)[None, :] - inter
  if eps > 0:
    return inter / jnp.maximum(union, eps)
  return jnp.where(union > 0, inter / jnp.where(union > 0, union, 1.0), 0.0)


def pairwise_ioa(a, b):
  """a (N, 4), b (M, 4) -> (N, M) intersection over the area of a (0 where a has no area)."""
  inter = pairwise_intersection(a, b)
  ar = area(a)[:, None]
  return jnp.where(ar > 0, inter / jnp.where(ar > 0, ar, 1.0), 0.0)


def ltrb_targets(points, boxes):
  """Regression targets of every point for every box, as four (M, A) arrays.

  points (A, 2) xy, boxes (M, 4) xyxy -> (l, t, r, b) each (M, A) = (x - x1, y - y1, x2 - x, y2 - y).
  Kept as separate arrays so the (M, A, 4) tensor is never materialised (lla.md §16).
  """
  x, y = points[None, :, 0], points[None, :, 1]
  return (x - boxes[:, None, 0], y - boxes[:, None, 1], boxes[:, None, 2] - x, boxes[:, None, 3] - y)


def ltrb_iou(pred, target, eps=EPS):
  """IoU of boxes given as distances from a shared point, (..., 4) ltrb each -> (...).

  Point-relative form of the released IoU loss: boxes (-l, -t, r, b), areas with max(0, .) sides.
  """
  inter, union, _ = ltrb_overlap(_split4(pred), _split4(target))
  return inter / jnp.maximum(union, eps)


def ltrb_giou(pred, target, eps=EPS):
  """Generalised IoU of point-relative ltrb boxes (..., 4) -> (...)."""
  inter, union, enclose = ltrb_overlap(_split4(pred), _split4(target))
  iou = inter / jnp.maximum(union, eps)
  return iou - (enclose - union) / jnp.maximum(enclose, eps)


def _split4(x):
  return tuple(x[..., i] for i in range(4))


def ltrb_overlap(p, t, minimum=jnp.minimum, maximum=jnp.maximum):
  """Intersection, union and enclosing area of point-relative boxes.

  p, t: 4-tuples (l, t, r, b) of broadcastable arrays (separate arrays, so an assigner can pass
  (1, A) predictions against (M, A) targets without an (M, A, 4) tensor). Returns 3 arrays.
  minimum / maximum: the elementwise min and max used (an assigner passes select_min / select_max).
  """
  pl, pt, pr, pb = p
  tl, tt, tr, tb = t
  p_area = maximum(pl + pr, 0.0) * maximum(pt + pb, 0.0)
  t_area = maximum(tl + tr, 0.0) * maximum(tt + tb, 0.0)
  inter = maximum(minimum(pl, tl) + minimum(pr, tr), 0.0) * maximum(minimum(pt, tt) + minimum(pb, tb), 0.0)
  union = p_area + t_area - inter
  enclose = maximum(maximum(pl, tl) + maximum(pr, tr), 0.0) * maximum(maximum(pt, tt) + maximum(pb, tb), 0.0)
  return inter, union, enclose


def decode_ltrb(points, ltrb):
  """points (..., 2) xy, ltrb (..., 4) distances -> (..., 4) xyxy boxes (x - l, y - t, x + r, y + b)."""
  x, y = points[..., 0], points[..., 1]
  return jnp.stack([x - ltrb[..., 0], y - ltrb[..., 1], x + ltrb[..., 2], y + ltrb[..., 3]], axis=-1)


def centerness(ltrb):
  """FCOS centerness sqrt(min(l,r)/max(l,r) * min(t,b)/max(t,b)) of (..., 4) ltrb -> (...)."""
  l, t, r, b = (ltrb[..., i] for i in range(4))
  lr = jnp.minimum(l, r) / jnp.maximum(jnp.maximum(l, r), EPS)
  tb = jnp.minimum(t, b) / jnp.maximum(jnp.maximum(t, b), EPS)
  return jnp.sqrt(jnp.maximum(lr * tb, 0.0))


# Pixel-inclusive (+1) boxes of ALFNet / py-faster-rcnn (alfnet.md §1, §6): width = x2 - x1 + 1.
ALF_STD = (0.1, 0.1, 0.2, 0.2)


def encode_deltas_plus1(ref, gt, std=ALF_STD):
  """Regression targets of gt relative to ref, (..., 4) xyxy each -> (..., 4) (dx, dy, dw, dh) / std.

  w = x2 - x1 + 1, cx = x1 + 0.5 w; t = ((gcx - cx) / w, (gcy - cy) / h, log(gw / w), log(gh / h)).
  """
  ref, gt = ref.astype(jnp.float32), gt.astype(jnp.float32)
  w, h = ref[..., 2] - ref[..., 0] + 1.0, ref[..., 3] - ref[..., 1] + 1.0
  gw, gh = gt[..., 2] - gt[..., 0] + 1.0, gt[..., 3] - gt[..., 1] + 1.0
  dx = (gt[..., 0] + 0.5 * gw - ref[..., 0] - 0.5 * w) / w
  dy = (gt[..., 1] + 0.5 * gh - ref[..., 1] - 0.5 * h) / h
  t = jnp.stack([dx, dy, jnp.log(gw / w), jnp.log(gh / h)], axis=-1)
  return t / jnp.asarray(std, jnp.float32)


def decode_deltas_plus1(ref, deltas, std=ALF_STD, clip_hw=None, max_log_wh=None):
  """Apply std-normalised deltas (..., 4) to ref boxes (..., 4) -> (..., 4) xyxy.

  cx' = dx w + cx, w' = exp(dw) w, x1' = cx' - 0.5 w', x2' = cx' + 0.5 w' (no -1, so
  decode(encode(g)) is one pixel wider and taller than g). clip_hw = (H, W), scalars or arrays
  broadcastable to (...): clip x to [0, W - 1], y to [0, H - 1]. `max_log_wh` optionally clamps
  dw, dh (after the std scaling) as a guard against overflow; upstream has no clamp.
  """
  ref = ref.astype(jnp.float32)
  d = deltas.astype(jnp.float32) * jnp.asarray(std, jnp.float32)
  w, h = ref[..., 2] - ref[..., 0] + 1.0, ref[..., 3] - ref[..., 1] + 1.0
  cx, cy = ref[..., 0] + 0.5 * w, ref[..., 1] + 0.5 * h
  dw, dh = d[..., 2], d[..., 3]
  if max_log_wh is not None:
    dw, dh = jnp.minimum(dw, max_log_wh), jnp.minimum(dh, max_log_wh)
  px, py = d[..., 0] * w + cx, d[..., 1] * h + cy
  pw, ph = jnp.exp(dw) * w, jnp.exp(dh) * h
  out = jnp.stack([px - 0.5 * pw, py - 0.5 * ph, px + 0.5 * pw, py + 0.5 * ph], axis=-1)
  return out if clip_hw is None else clip_boxes_plus1(out, clip_hw)


def clip_boxes_plus1(b, clip_hw):
  """Clip (..., 4) xyxy to x in [0, W - 1], y in [0, H - 1]; clip_hw = (H, W) broadcastable to (...)."""
  hmax = jnp.asarray(clip_hw[0], jnp.float32) - 1.0
  wmax = jnp.asarray(clip_hw[1], jnp.float32) - 1.0
  x1, y1, x2, y2 = (b[..., i] for i in range(4))
  return jnp.stack([jnp.clip(x1, 0.0, wmax), jnp.clip(y1, 0.0, hmax), jnp.clip(x2, 0.0, wmax),
                    jnp.clip(y2, 0.0, hmax)], axis=-1)


def pairwise_intersection_plus1(a, b):
  """a (N, 4), b (M, 4) xyxy -> (N, M) intersections with +1 sides (0 unless both sides > 0)."""
  w = select_min(a[:, None, 2], b[None, :, 2]) - select_max(a[:, None, 0], b[None, :, 0]) + 1.0
  h = select_min(a[:, None, 3], b[None, :, 3]) - select_max(a[:, None, 1], b[None, :, 1]) + 1.0
  return jnp.where((w > 0) & (h > 0), w * h, 0.0)


def area_plus1(b):
  """(..., 4) xyxy -> (...) (x2 - x1 + 1)(y2 - y1 + 1)."""
  return (b[..., 2] - b[..., 0] + 1.0) * (b[..., 3] - b[..., 1] + 1.0)


def pairwise_iou_plus1(a, b):
  """a (N, 4), b (M, 4) -> (N, M) IoU with +1 areas (py-faster-rcnn `bbox_overlaps`)."""
  inter = pairwise_intersection_plus1(a, b)
  union = area_plus1(a)[:, None] + area_plus1(b)[None, :] - inter
  return jnp.where(union > 0, inter / jnp.where(union > 0, union, 1.0), 0.0)


# Weighted delta coder of Faster R-CNN (detectron2 / cvpods cvpods/modeling/box_regression.py
# Box2BoxTransform): no +1, width = x2 - x1, the decoded log-size clamped from above only.
SCALE_CLAMP = math.log(1000.0 / 16)  # 4.1351666; box_regression.py _DEFAULT_SCALE_CLAMP


def encode_deltas(src, tgt, weights=(1.0, 1.0, 1.0, 1.0)):
  """Regression targets of tgt relative to src, (..., 4) xyxy each -> (..., 4) (dx, dy, dw, dh).

  sw = x2 - x1, scx = x1 + 0.5 sw (likewise for tgt); dx = wx (tcx - scx) / sw, dy likewise,
  dw = ww log(tw / sw), dh = wh log(th / sh). A source with no width gives inf/nan (upstream asserts
  sw > 0): mask such rows before use.
  """
  src, tgt = jnp.asarray(src, jnp.float32), jnp.asarray(tgt, jnp.float32)
  wx, wy, ww, wh = (jnp.float32(w) for w in weights)
  sw, sh = src[..., 2] - src[..., 0], src[..., 3] - src[..., 1]
  scx, scy = src[..., 0] + 0.5 * sw, src[..., 1] + 0.5 * sh
  tw, th = tgt[..., 2] - tgt[..., 0], tgt[..., 3] - tgt[..., 1]
  tcx, tcy = tgt[..., 0] + 0.5 * tw, tgt[..., 1] + 0.5 * th
  return jnp.stack([wx * (tcx - scx) / sw, wy * (tcy - scy) / sh,
                    ww * jnp.log(tw / sw), wh * jnp.log(th / sh)], axis=-1)


def decode_deltas(src, deltas, weights=(1.0, 1.0, 1.0, 1.0), scale_clamp=SCALE_CLAMP):
  """Apply deltas (..., 4) to src boxes (..., 4) xyxy -> (..., 4) xyxy.

  dx = d0 / wx (a division, not a multiply by 1 / wx), dy likewise; dw = min(d2 / ww, scale_clamp),
  dh likewise (no lower clamp); cx' = dx w + cx, w' = exp(dw) w; box = cx' -/+ 0.5 w', cy' -/+ 0.5 h'.
  Rounded op by op as upstream (`divide`, `rounded`); only exp may differ from torch's in the last bits.
  """
  src, d = jnp.asarray(src, jnp.float32), jnp.asarray(deltas, jnp.float32)
  wx, wy, ww, wh = (jnp.float32(w) for w in weights)
  w, h = src[..., 2] - src[..., 0], src[..., 3] - src[..., 1]
  cx, cy = src[..., 0] + 0.5 * w, src[..., 1] + 0.5 * h
  dw = jnp.minimum(divide(d[..., 2], ww), jnp.float32(scale_clamp))
  dh = jnp.minimum(divide(d[..., 3], wh), jnp.float32(scale_clamp))
  px, py = rounded(divide(d[..., 0], wx) * w) + cx, rounded(divide(d[..., 1], wy) * h) + cy
  pw, ph = jnp.exp(dw) * w, jnp.exp(dh) * h
  return jnp.stack([px - 0.5 * pw, py - 0.5 * ph, px + 0.5 * pw, py + 0.5 * ph], axis=-1)


def clip_boxes(b, clip_hw):
  """Clip (..., 4) xyxy to x in [0, W], y in [0, H] (no +1); clip_hw = (H, W) broadcastable to (...)."""
  h = jnp.asarray(clip_hw[0], jnp.float32)
  w = jnp.asarray(clip_hw[1], jnp.float32)
  return jnp.stack([jnp.clip(b[..., 0], 0.0, w), jnp.clip(b[..., 1], 0.0, h), jnp.clip(b[..., 2], 0.0, w),
                    jnp.clip(b[..., 3], 0.0, h)], axis=-1)


def rounded(x):
  """x with every element rounded to its dtype before it meets an add.

  XLA (CPU and GPU) contracts a multiply feeding an add into one fused multiply-add that rounds once, so
  `a * b + c` can differ in the last bit from an op-by-op evaluation (torch's). A select between the
  product and the add blocks the contraction; NaN stays NaN. Use where exact ties matter.
  """
  return jnp.where(jnp.isnan(x), jnp.asarray(jnp.nan, x.dtype), x)


def divide(x, c):
  """x / c as an IEEE division for a constant c (scalar or broadcastable).

  XLA rewrites a division by a constant into a multiply by its rounded reciprocal, which differs in the
  last bit; a divisor that depends on x (NaN exactly where x is NaN, so the quotient is unchanged) keeps
  the division. Upstream divides (e.g. the box coder's weights, ROIAlign's bin size).
  """
  x = jnp.asarray(x)
  return x / jnp.where(jnp.isnan(x), jnp.asarray(jnp.nan, x.dtype), jnp.asarray(c, x.dtype))


def pairwise_iou_exact(a, b):
  """a (N, 4), b (M, 4) xyxy -> (N, M) IoU rounded as an op-by-op float32 evaluation, bit for bit.

  inter = max(w, 0) max(h, 0); IoU = inter / ((area_a + area_b) - inter) where inter > 0, else exactly 0
  (cvpods cvpods/structures/boxes.py pairwise_iou), with areas (x2 - x1)(y2 - y1) unclamped. Every product
  is rounded before it is added (`rounded`), so exactly tied IoUs stay tied (the RPN's low-quality rule
  keeps every anchor tied at a GT's best IoU).
  """
  ar = lambda x: rounded((x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1]))
  inter = rounded(pairwise_intersection(a, b))
  union = (ar(a)[:, None] + ar(b)[None, :]) - inter
  return jnp.where(inter > 0, inter / jnp.where(inter > 0, union, 1.0), 0.0)
