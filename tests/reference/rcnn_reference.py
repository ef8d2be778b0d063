"""Plain numpy re-statements of the Faster R-CNN pieces (the cvpods CrowdHuman baseline): anchors, the
weighted delta coder, the RPN matcher, proposals, MatcherIgnore, ROIAlignV2 and the box-head inference,
plus the random crowd images the tests draw.

Written from the description of the released code, independently of lla_jax: explicit Python loops over
GTs, candidates, bins and samples, in the order upstream visits them, so "first maximal index" is an update
with a strict comparison and sums accumulate in upstream's order. Geometry in float32 (np.float32 scalars
throughout), so exactly representable cases agree bit for bit with the jnp code.
"""
from __future__ import annotations

import math

import numpy as np

F = np.float32
IGNORE = -1
SCALE_CLAMP = math.log(1000.0 / 16)


# ---------------------------------------------------------------------------------------------- anchors
def anchors_np(height, width, strides=(4, 8, 16, 32, 64), sizes=(32, 64, 128, 256, 512), ratios=(1.0, 2.0, 3.0)):
  """(A, 4) float32 anchors and the level starts, one anchor at a time: level, row, column, ratio."""
  out, starts = [], [0]
  h, w = height, width
  for level, (s, size) in enumerate(zip(strides, sizes)):
    if s <= 32:
      h, w = height // s, width // s
    else:  # P6 = P5[::2, ::2]
      h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    cells = []
    for r in ratios:
      cw = math.sqrt(size * size / r)
      ch = r * cw
      cells.append([F(-cw / 2), F(-ch / 2), F(cw / 2), F(ch / 2)])
    for i in range(h):
      for j in range(w):
        for c in cells:
          sx, sy = F(j * s), F(i * s)
          out.append([sx + c[0], sy + c[1], sx + c[2], sy + c[3]])
    starts.append(len(out))
  return np.asarray(out, np.float32), np.asarray(starts)


# ------------------------------------------------------------------------------------------- box coder
def encode_np(s, t, weights):
  wx, wy, ww, wh = (F(v) for v in weights)
  sw, sh = F(s[2] - s[0]), F(s[3] - s[1])
  scx, scy = F(s[0] + F(0.5) * sw), F(s[1] + F(0.5) * sh)
  tw, th = F(t[2] - t[0]), F(t[3] - t[1])
  tcx, tcy = F(t[0] + F(0.5) * tw), F(t[1] + F(0.5) * th)
  return np.array([wx * (tcx - scx) / sw, wy * (tcy - scy) / sh, ww * np.log(tw / sw), wh * np.log(th / sh)], F)


def decode_np(s, d, weights, clamp=SCALE_CLAMP):
  wx, wy, ww, wh = (F(v) for v in weights)
  w, h = F(s[2] - s[0]), F(s[3] - s[1])
  cx, cy = F(s[0] + F(0.5) * w), F(s[1] + F(0.5) * h)
  dw, dh = min(F(d[2] / ww), F(clamp)), min(F(d[3] / wh), F(clamp))
  px, py = F(F(d[0] / wx) * w + cx), F(F(d[1] / wy) * h + cy)
  pw, ph = F(np.exp(F(dw)) * w), F(np.exp(F(dh)) * h)
  return np.array([px - F(0.5) * pw, py - F(0.5) * ph, px + F(0.5) * pw, py + F(0.5) * ph], F)


# ------------------------------------------------------------------------------------------- overlaps
def inter_np(g, b):
  w = max(F(min(g[2], b[2]) - max(g[0], b[0])), F(0))
  h = max(F(min(g[3], b[3]) - max(g[1], b[1])), F(0))
  return F(w * h)


def iou_np(g, b):
  """IoU of two boxes: inter / ((area_g + area_b) - inter) where inter > 0, else 0."""
  inter = inter_np(g, b)
  if inter <= 0:
    return F(0)
  ag, ab = F((g[2] - g[0]) * (g[3] - g[1])), F((b[2] - b[0]) * (b[3] - b[1]))
  return F(inter / F(F(ag + ab) - inter))


def ioa_np(g, b):
  """Intersection over the area of b (the candidate) where inter > 0, else 0."""
  inter = inter_np(g, b)
  return F(0) if inter <= 0 else F(inter / F((b[2] - b[0]) * (b[3] - b[1])))


def iou_matrix_np(gts, cands):
  """(G, N) float32, one pair at a time, vectorised over the candidates for speed."""
  out = np.zeros((len(gts), len(cands)), F)
  c = np.asarray(cands, F)
  for g, box in enumerate(gts):
    w = np.maximum(np.minimum(box[2], c[:, 2]) - np.maximum(box[0], c[:, 0]), F(0))
    h = np.maximum(np.minimum(box[3], c[:, 3]) - np.maximum(box[1], c[:, 1]), F(0))
    inter = (w * h).astype(F)
    ag = F((box[2] - box[0]) * (box[3] - box[1]))
    ac = ((c[:, 2] - c[:, 0]) * (c[:, 3] - c[:, 1])).astype(F)
    with np.errstate(divide="ignore", invalid="ignore"):
      out[g] = np.where(inter > 0, inter / ((ag + ac) - inter), F(0))
  return out


# ------------------------------------------------------------------------------------------ RPN targets
def rpn_assign_np(anchors, gt_boxes, gt_classes, gt_valid, lo=0.3, hi=0.7, low_quality=True):
  """(labels, matched (indices of gt_boxes rows), box_targets) per the released RPN matcher."""
  rows = [g for g in range(len(gt_boxes)) if gt_valid[g] and gt_classes[g] != IGNORE]
  a = len(anchors)
  if not rows:
    return np.zeros(a, np.int32), np.zeros(a, np.int32), np.zeros((a, 4), F)
  q = iou_matrix_np(gt_boxes[rows], anchors)
  value = np.full(a, -1.0, F)
  m = np.zeros(a, np.int64)
  for gi in range(len(rows)):           # first maximal GT: strict update in GT order
    better = q[gi] > value
    value[better], m[better] = q[gi][better], gi
  labels = np.where(value < F(lo), 0, np.where(value < F(hi), -1, 1)).astype(np.int32)
  if low_quality:
    for gi in range(len(rows)):
      labels[q[gi] == q[gi].max()] = 1
  matched = np.asarray(rows)[m].astype(np.int32)
  targets = np.stack([encode_np(anchors[i], gt_boxes[matched[i]], (1, 1, 1, 1)) for i in range(a)])
  return labels, matched, targets


# ------------------------------------------------------------------------------------------ RoI targets
def roi_assign_np(proposals, prop_valid, gt_boxes, gt_classes, gt_valid, thresh=0.5, num_classes=1):
  """(classes, matched, candidate_valid) of [proposals, all GT rows] per MatcherIgnore; -1 on invalid slots."""
  cands = np.concatenate([proposals, gt_boxes]).astype(F)
  cvalid = np.concatenate([prop_valid, gt_valid])
  n = len(cands)
  rows = [g for g in range(len(gt_boxes)) if gt_valid[g]]
  classes = np.full(n, num_classes, np.int32)
  matched = np.zeros(n, np.int32)
  if rows:
    for c in range(n):
      v, m, u, k = F(-1), -1, F(-1), -1
      for g in rows:
        iou = iou_np(gt_boxes[g], cands[c])
        if iou > v:
          v, m = iou, g
        ioa = ioa_np(gt_boxes[g], cands[c]) if gt_classes[g] == IGNORE else F(0)
        if ioa > u:
          u, k = ioa, g
      if u > v and v < F(thresh):
        v, m = u, k
      matched[c] = m
      classes[c] = gt_classes[m] if v >= F(thresh) else num_classes
  classes[~cvalid] = -1
  return classes, matched, cvalid


# ---------------------------------------------------------------------------------------------- NMS
def nms_np(boxes, scores, thresh):
  """Greedy NMS (torchvision CPU recipe): stable descending order; a later box is removed when its IoU
  inter / ((area_i + area_j) - inter) with a kept box is > thresh (NaN never suppresses). Kept indices."""
  boxes = np.asarray(boxes, F)
  order = np.argsort(-np.asarray(scores), kind="stable")
  area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).astype(F)
  removed = np.zeros(len(boxes), bool)
  keep = []
  for n, i in enumerate(order):
    if removed[i]:
      continue
    keep.append(i)
    rest = order[n + 1:]
    w = np.maximum(np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]), F(0))
    h = np.maximum(np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]), F(0))
    inter = (w * h).astype(F)
    with np.errstate(divide="ignore", invalid="ignore"):
      iou = inter / ((area[i] + area[rest]) - inter)
    removed[rest[iou > F(thresh)]] = True
  return keep


def rpn_proposals_np(anchors, starts, logits, deltas, k_pre, k_post, nms_thresh=0.7, min_size=2.0):
  """(boxes (n, 4), logits (n,)) n <= k_post, in the released order (see lla_jax.postprocess)."""
  kb, ks = [], []
  for s, e in zip(starts[:-1], starts[1:]):
    order = np.argsort(-logits[s:e], kind="stable")[:min(k_pre, e - s)] + s
    boxes = np.stack([decode_np(anchors[i], deltas[i], (1, 1, 1, 1)) for i in order])
    sc = logits[order]
    ok = [i for i in range(len(order)) if boxes[i, 2] - boxes[i, 0] > F(min_size)
          and boxes[i, 3] - boxes[i, 1] > F(min_size)]
    boxes, sc = boxes[ok], sc[ok]
    for i in nms_np(boxes, sc, nms_thresh):
      kb.append(boxes[i])
      ks.append(sc[i])
  if not kb:
    return np.zeros((0, 4), F), np.zeros(0, F)
  ks = np.asarray(ks, F)
  order = np.argsort(-ks, kind="stable")[:k_post]
  return np.asarray(kb, F)[order], ks[order]


# ------------------------------------------------------------------------------------------- ROIAlign
def box_level_np(box, canonical=224.0, canonical_level=4, lo=2, hi=5):
  area = F((box[2] - box[0]) * (box[3] - box[1]))
  lvl = math.floor(F(F(canonical_level) + np.log2(F(np.sqrt(area) / F(canonical)) + F(2.220446049250313e-16))))
  return min(max(lvl, lo), hi) - lo


def bilinear_np(fmap, y, x):
  """ROIAlign_cpu.cpp bilinear_interpolate: fmap (H, W, C) float32; returns (C,)."""
  h, w = fmap.shape[:2]
  if y < -1.0 or y > h or x < -1.0 or x > w:
    return np.zeros(fmap.shape[2], F)
  y, x = max(y, F(0)), max(x, F(0))
  yl, xl = int(y), int(x)
  if yl >= h - 1:
    yl = yh = h - 1
    y = F(yl)
  else:
    yh = yl + 1
  if xl >= w - 1:
    xl = xh = w - 1
    x = F(xl)
  else:
    xh = xl + 1
  ly, lx = F(y - yl), F(x - xl)
  hy, hx = F(1.0 - ly), F(1.0 - lx)
  return (((F(hy * hx) * fmap[yl, xl] + F(hy * lx) * fmap[yl, xh]) + F(ly * hx) * fmap[yh, xl])
          + F(ly * lx) * fmap[yh, xh]).astype(F)


def roi_align_np(fmap, box, scale, out=7, max_grid=None):
  """ROIAlign(aligned=True, sampling_ratio=0) of one box on one (H, W, C) map -> (out, out, C).
  max_grid = (Gh, Gw) caps the adaptive grid (lla_jax's documented behaviour past its bound)."""
  scale = F(scale)
  x0, y0 = F(box[0] * scale - F(0.5)), F(box[1] * scale - F(0.5))
  x1, y1 = F(box[2] * scale - F(0.5)), F(box[3] * scale - F(0.5))
  rw, rh = F(x1 - x0), F(y1 - y0)
  bw, bh = F(rw / F(out)), F(rh / F(out))
  gh, gw = math.ceil(F(rh / F(out))), math.ceil(F(rw / F(out)))
  if max_grid is not None:
    gh, gw = min(gh, max_grid[0]), min(gw, max_grid[1])
  count = F(max(gh * gw, 1))
  res = np.zeros((out, out, fmap.shape[2]), F)
  for ph in range(out):
    for pw in range(out):
      acc = np.zeros(fmap.shape[2], F)
      for iy in range(gh):
        y = F(F(y0 + F(ph) * bh) + F(F(F(iy + 0.5) * bh) / F(gh)))
        for ix in range(gw):
          x = F(F(x0 + F(pw) * bw) + F(F(F(ix + 0.5) * bw) / F(gw)))
          acc = (acc + bilinear_np(fmap, y, x)).astype(F)
      res[ph, pw] = acc / count
  return res


# ----------------------------------------------------------------------------------------- inference
def rcnn_detections_np(proposals, logits, deltas, image_hw, orig_hw, thresh=0.05, nms_thresh=0.5, top=300):
  """(boxes, scores) of the box head's inference, one class, in output order."""
  h, w = image_hw
  e = np.exp(logits.astype(np.float64) - logits.max(1, keepdims=True))
  prob = (e / e.sum(1, keepdims=True)).astype(F)[:, 0]
  boxes, scores = [], []
  for i in range(len(proposals)):
    b = decode_np(proposals[i], deltas[i], (10, 10, 5, 5))
    b = np.array([min(max(b[0], F(0)), F(w)), min(max(b[1], F(0)), F(h)), min(max(b[2], F(0)), F(w)),
                  min(max(b[3], F(0)), F(h))], F)
    if prob[i] > F(thresh):
      boxes.append(b)
      scores.append(prob[i])
  if not boxes:
    return np.zeros((0, 4), F), np.zeros(0, F)
  boxes, scores = np.asarray(boxes, F), np.asarray(scores, F)
  keep = nms_np(boxes, scores, nms_thresh)[:top]
  sx, sy = F(orig_hw[1] / w), F(orig_hw[0] / h)
  out, sc = [], []
  for i in keep:
    b = boxes[i] * np.array([sx, sy, sx, sy], F)
    b = np.array([min(max(b[0], F(0)), F(orig_hw[1])), min(max(b[1], F(0)), F(orig_hw[0])),
                  min(max(b[2], F(0)), F(orig_hw[1])), min(max(b[3], F(0)), F(orig_hw[0]))], F)
    if b[2] > b[0] and b[3] > b[1]:
      out.append(b)
      sc.append(scores[i])
  return np.asarray(out, F).reshape(-1, 4), np.asarray(sc, F)


# -------------------------------------------------------------------------------------- random cases
def crowd_np(rng, height, width, n_person=12, n_ignore=2, pad=4):
  """A crowded image: overlapping tall persons, tiny ones, a duplicate, boxes leaving the image (clipped
  to it as the data pipeline does), ignore regions, padding rows. Returns (boxes, classes, valid) float32."""
  boxes = []
  for _ in range(n_person):
    h = rng.uniform(6, height * 0.8)
    w = h * rng.uniform(0.3, 0.6)
    x, y = rng.uniform(-0.2 * width, width), rng.uniform(-0.2 * height, height - 4)
    boxes.append([x, y, x + w, y + h])
  boxes.append([width * 0.5, height * 0.5, width * 0.5 + 2.0, height * 0.5 + 4.0])   # tiny
  if boxes:
    boxes.append(list(boxes[0]))                                                    # duplicate
  classes = [0] * len(boxes)
  for _ in range(n_ignore):
    w, h = rng.uniform(20, width * 0.4), rng.uniform(20, height * 0.4)
    x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
    boxes.append([x, y, x + w, y + h])
    classes.append(IGNORE)
  b = np.asarray(boxes, np.float64).reshape(-1, 4)
  b[:, 0::2] = np.clip(b[:, 0::2], 0, width)
  b[:, 1::2] = np.clip(b[:, 1::2], 0, height)
  keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
  b, classes = np.round(b[keep] * 4) / 4, np.asarray(classes)[keep]   # quarter pixels: exact float32 geometry
  order = rng.permutation(len(b))
  b, classes = b[order], classes[order]
  valid = np.r_[np.ones(len(b), bool), np.zeros(pad, bool)]
  b = np.r_[b, rng.uniform(-50, 50, (pad, 4))].astype(F)       # garbage padding rows must be ignored
  classes = np.r_[classes, np.zeros(pad, int)].astype(np.int32)
  return b, classes, valid
