"""Plain numpy / python re-statement of ALFNet's per-step target assignment and losses, written from
liuwei16/ALFNet keras_alfnet/{bbox_transform,data_generators,losses}.py with explicit loops. Independent of
lla_jax; used by tests/assigners/test_alf.py and tests/methods/test_alfnet.py."""
import math

import numpy as np


def iou_plus1(a, b):
  """IoU of two xyxy boxes with pixel-inclusive +1 sides."""
  iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
  ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
  if iw <= 0 or ih <= 0:
    return 0.0
  inter = iw * ih
  area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
  area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
  return inter / (area_a + area_b - inter)


def ignore_sum(box, regions):
  """sum over ignore regions of inter(box, region) / area(region), +1 convention."""
  total = 0.0
  for r in regions:
    iw = min(box[2], r[2]) - max(box[0], r[0]) + 1
    ih = min(box[3], r[3]) - max(box[1], r[1]) + 1
    if iw > 0 and ih > 0:
      total += iw * ih / ((r[2] - r[0] + 1) * (r[3] - r[1] + 1))
  return total


def encode(ref, gt, std=(0.1, 0.1, 0.2, 0.2)):
  w, h = ref[2] - ref[0] + 1, ref[3] - ref[1] + 1
  gw, gh = gt[2] - gt[0] + 1, gt[3] - gt[1] + 1
  cx, cy = ref[0] + 0.5 * w, ref[1] + 0.5 * h
  gcx, gcy = gt[0] + 0.5 * gw, gt[1] + 0.5 * gh
  t = [(gcx - cx) / w, (gcy - cy) / h, math.log(gw / w), math.log(gh / h)]
  return [v / s for v, s in zip(t, std)]


def assign_step(ref, gt_boxes, gt_classes, gt_valid, step, neg_thr, pos_thr, top_n=3, min_size=10, ig_thr=0.5):
  """Targets of one image at ALF step `step` (1-based).

  Returns dict(pos (N,) bool, neg (N,) bool, matched (N,) int GT row or -1, deltas (N, 4)).
  Rule (iii) tie order: lower box index first.
  """
  ref = np.asarray(ref, np.float64)
  n = len(ref)
  gts = [g for g in range(len(gt_boxes)) if gt_valid[g] and gt_classes[g] >= 0]
  regions = [np.asarray(gt_boxes[g], np.float64) for g in range(len(gt_boxes)) if gt_valid[g] and gt_classes[g] < 0]
  ig = [ignore_sum(ref[i], regions) for i in range(n)]
  if step == 1:
    cand = [True] * n
  else:
    cand = [ig[i] <= ig_thr and ref[i, 2] - ref[i, 0] + 1 > min_size and ref[i, 3] - ref[i, 1] + 1 > min_size
            for i in range(n)]
  pos, neg = [False] * n, [False] * n
  matched, deltas = [-1] * n, [[0.0] * 4 for _ in range(n)]
  if not gts:
    if step == 1:
      neg = [ig[i] <= ig_thr for i in range(n)]
    return dict(pos=np.array(pos), neg=np.array(neg), matched=np.array(matched), deltas=np.array(deltas))

  overlap = {(i, g): iou_plus1(ref[i], np.asarray(gt_boxes[g], np.float64)) for i in range(n) if cand[i] for g in gts}
  best_iou, best_gt = {}, {}
  for i in range(n):
    if not cand[i]:
      continue
    best_iou[i], best_gt[i] = -1.0, None
    for g in gts:                                   # first GT wins ties (argmax)
      if overlap[i, g] > best_iou[i]:
        best_iou[i], best_gt[i] = overlap[i, g], g
  for g in gts:
    top = max(overlap[i, g] for i in range(n) if cand[i]) if any(cand) else None
    for i in range(n):                              # (i) every box reaching the GT's best IoU
      if cand[i] and overlap[i, g] == top:
        pos[i] = True
    ranked = sorted((i for i in range(n) if cand[i]), key=lambda i: (-overlap[i, g], i))
    for i in ranked[:top_n]:                        # (iii) the GT's top_n boxes
      pos[i] = True
  for i in range(n):
    if cand[i] and best_iou[i] >= pos_thr:          # (ii)
      pos[i] = True
  for i in range(n):
    if step == 1:
      neg[i] = best_iou[i] < neg_thr and ig[i] <= ig_thr
    else:
      neg[i] = cand[i] and not pos[i] and best_iou[i] < neg_thr
    if pos[i]:
      matched[i] = best_gt[i]
      deltas[i] = encode(ref[i], np.asarray(gt_boxes[best_gt[i]], np.float64))
  return dict(pos=np.array(pos), neg=np.array(neg), matched=np.array(matched), deltas=np.array(deltas))


def losses(scores, deltas, pos, neg, box_targets, alpha=0.25, gamma=2.0, eps=1e-7):
  """(L_cls, L_reg) of one step over a batch (keras_alfnet/losses.py), normalised by max(1, batch N+)."""
  n_pos = max(1.0, float(np.sum(pos)))
  cls = reg = 0.0
  for p, d, y_pos, y_neg, t in zip(np.ravel(scores), np.reshape(deltas, (-1, 4)), np.ravel(pos), np.ravel(neg),
                                   np.reshape(box_targets, (-1, 4))):
    y_pos, y_neg = float(y_pos), float(y_neg)
    if y_pos + y_neg == 0:
      continue
    q = min(max(p, eps), 1 - eps)
    bce = -(y_pos * math.log(q) + (1 - y_pos) * math.log(1 - q))
    cls += (y_pos + y_neg) * bce * (alpha * y_pos * (1 - p) ** gamma + (1 - alpha) * y_neg * p ** gamma)
    if y_pos:
      for a, b in zip(d, t):
        x = abs(a - b)
        reg += 0.5 * x * x if x < 1 else x - 0.5
  return cls / n_pos, reg / n_pos


def decode_clip(ref, deltas, height, width, std=(0.1, 0.1, 0.2, 0.2)):
  """keras_alfnet/bbox_transform.py decode of one box, then clip to [0, W-1] x [0, H-1]."""
  dx, dy, dw, dh = (d * s for d, s in zip(deltas, std))
  w, h = ref[2] - ref[0] + 1, ref[3] - ref[1] + 1
  cx, cy = ref[0] + 0.5 * w, ref[1] + 0.5 * h
  px, py, pw, ph = dx * w + cx, dy * h + cy, math.exp(dw) * w, math.exp(dh) * h
  box = [px - 0.5 * pw, py - 0.5 * ph, px + 0.5 * pw, py + 0.5 * ph]
  return [min(max(box[0], 0), width - 1), min(max(box[1], 0), height - 1),
          min(max(box[2], 0), width - 1), min(max(box[3], 0), height - 1)]


def detect(anchors, steps, height, width, min_size=16, topk=6000, score_thr=0.1, nms_thr=0.5, max_det=100):
  """Inference (ALFNet test.py, keras_alfnet/bbox_process.py) for one image: steps = [(scores (N,),
  deltas (N, 4)), ...].

  Returns [(box, score), ...] in output order.
  """
  boxes = [list(map(float, a)) for a in anchors]
  score = [1.0] * len(boxes)
  for s, d in steps:
    boxes = [decode_clip(b, dd, height, width) for b, dd in zip(boxes, d)]
    score = [a * float(b) for a, b in zip(score, s)]
  big = [i for i, b in enumerate(boxes) if b[2] - b[0] + 1 >= min_size and b[3] - b[1] + 1 >= min_size]
  order = sorted(big, key=lambda i: (-score[i], i))[:topk]
  order = [i for i in order if score[i] > score_thr]
  kept = []
  for i in order:
    if all(iou_plus1(boxes[i], boxes[k]) < nms_thr for k in kept):
      kept.append(i)
  return [(boxes[i], score[i]) for i in kept[:max_det]]
