"""Slow, plain re-statements of both evaluation protocols, one image and one box pair at a time.

Written from the protocols (CrowdHuman: xg-chu/CrowdDet lib/evaluate/APMRToolkits and compute_JI.py; CityPersons:
cvgroup-njust/CityPersons evaluation/eval_script/eval_MR_multisetup.py) with Python loops and Python floats,
sharing no code with the fast evaluators in lla_jax/evaluation/crowdhuman.py and citypersons.py; tests and
benchmarks/eval_bench.py compare the two. Inputs are the same records the fast evaluators take; inputs are assumed
valid (no checks here).
"""
from __future__ import annotations

import math

import numpy as np

CALTECH_REFS = [0.0100, 0.0178, 0.03160, 0.0562, 0.1000, 0.1778, 0.3162, 0.5623, 1.000]


def _log_average(values):
  """exp(mean(ln v)), 0 when some value is 0."""
  if any(v == 0 for v in values):
    return 0.0
  return math.exp(sum(math.log(v) for v in values) / len(values))


# ---------------------------------------------------------------------------------------------- CrowdHuman

def _clip(box, w, h):
  x1, y1, x2, y2 = box[:4]
  return [min(max(x1, 0), w - 1), min(max(y1, 0), h - 1), max(min(x2, w), 0), max(min(y2, h), 0)] + box[4:]


def _inter(a, b):
  iw = min(a[2], b[2]) - max(a[0], b[0])
  ih = min(a[3], b[3]) - max(a[1], b[1])
  return max(0, iw) * max(0, ih)


def _iou_ch(d, g):
  inter = _inter(d, g)
  return inter / ((d[2] - d[0]) * (d[3] - d[1]) + (g[2] - g[0]) * (g[3] - g[1]) - inter + 1e-6)


def _ioa_ch(d, g, clamped=False):
  if clamped:
    area = max(d[2] - d[0], 0) * max(d[3] - d[1], 0)
  else:
    area = (d[2] - d[0]) * (d[3] - d[1])
  return _inter(d, g) / (area + 1e-6)


def _crowdhuman_images(gt_records, dt_records):
  images = {}
  for rec in gt_records:
    gts = []
    for b in rec["gtboxes"]:
      x, y, w, h = b["fbox"]
      tag = 1 if b["tag"] == "person" else -1
      if "extra" in b and "ignore" in b["extra"] and b["extra"]["ignore"] != 0:
        tag = -1
      gts.append([x, y, x + w, y + h, tag])
    images[rec["ID"]] = {"gt": gts, "dt": [], "w": rec.get("width"), "h": rec.get("height")}
  for rec in dt_records:
    im = images[rec["ID"]]
    if rec["dtboxes"]:  # a record without detections counts as no record: it does not size the GT
      im["w"] = rec["width"] if im["w"] is None else im["w"]
      im["h"] = rec["height"] if im["h"] is None else im["h"]
    dts = [[d["box"][0], d["box"][1], d["box"][0] + d["box"][2], d["box"][1] + d["box"][3], d["score"]]
           for d in rec["dtboxes"]]
    im["dt"] = [_clip(d, im["w"], im["h"]) for d in dts]
  for im in images.values():  # GT is clipped wherever the image size is known
    if im["w"] is not None and im["h"] is not None:
      im["gt"] = [_clip(g, im["w"], im["h"]) for g in im["gt"]]
  return images


def _crowdhuman_match(im):
  """[(score, 1 = TP / 0 = FP)] of one image, in its score order (spec §A.3)."""
  dts = sorted(im["dt"], key=lambda d: d[4], reverse=True)
  gts = sorted(im["gt"], key=lambda g: g[4], reverse=True)
  matched = [False] * len(gts)
  out = []
  for d in dts:
    best, pick = 0.5, None
    for j, g in enumerate(gts):
      if g[4] > 0 and matched[j]:
        continue
      if g[4] > 0:
        o = _iou_ch(d, g)
        if o > best:
          best, pick = o, j
      else:
        if pick is not None:
          break
        o = _ioa_ch(d, g)
        if o > 0.5:
          best, pick = o, j
    if pick is None:
      out.append((d[4], 0))
    elif gts[pick][4] > 0:
      matched[pick] = True
      out.append((d[4], 1))
  return out


def _ji_ratio(im, threshold):
  from scipy.optimize import linear_sum_assignment
  dts = [d for d in im["dt"] if d[4] > threshold]
  pos = [g for g in im["gt"] if g[4] != -1]
  ign = [g for g in im["gt"] if g[4] == -1]
  k, matched_d, matched_g = 0, set(), set()
  if dts and pos:
    w = np.zeros((len(dts), len(pos)))
    for i, d in enumerate(dts):
      for j, g in enumerate(pos):
        o = _iou_ch(d, g)
        if o > 0.5:
          w[i, j] = o
    rows, cols = linear_sum_assignment(w, maximize=True)
    for i, j in zip(rows, cols):
      if w[i, j] > 0:
        k += 1
        matched_d.add(i)
        matched_g.add(j)

  def in_ignore(box):
    return bool(ign) and max(_ioa_ch(box, g, clamped=True) for g in ign) > 0.5

  n = len(dts) - sum(1 for i, d in enumerate(dts) if i not in matched_d and in_ignore(d))
  m = len(pos) - sum(1 for j, g in enumerate(pos) if j not in matched_g and in_ignore(g))
  return k / (m + n - k + 1e-6), (m != 0 or n != 0)


def crowdhuman(gt_records, dt_records, compute_ji=True) -> dict:
  """{"AP", "MR", "Recall", "JI", "JI_per_threshold"} of spec §A, image by image."""
  images = _crowdhuman_images(gt_records, dt_records)
  positives = sum(1 for im in images.values() for g in im["gt"] if g[4] == 1)
  entries = []
  for im in images.values():
    entries.extend(_crowdhuman_match(im))
  entries = sorted(entries, key=lambda e: e[0], reverse=True)
  tp = fp = 0
  recall, precision, fppi, miss = [], [], [], []
  for _, is_tp in entries:
    tp += is_tp
    fp += 1 - is_tp
    recall.append(tp / positives if positives else math.nan)
    precision.append(tp / (tp + fp))
    fppi.append(fp / len(images))
    miss.append(1.0 - recall[-1])
  ap = 0.0
  for i in range(1, len(entries)):
    ap += (recall[i] - recall[i - 1]) * (precision[i] + precision[i - 1]) / 2
  samples = []
  for r in CALTECH_REFS if entries else []:
    k = next((i for i, f in enumerate(fppi) if f >= r), len(fppi) - 1)
    samples.append(miss[k])
  result = {"AP": ap, "MR": _log_average(samples) if entries else math.nan,
            "Recall": recall[-1] if entries else (0.0 if positives else math.nan), "JI": None, "JI_per_threshold": None}
  if compute_ji:
    per_threshold = []
    for i in range(10):
      ratios = [_ji_ratio(im, 0.1 * i) for im in images.values()]
      counted = sum(1 for _, c in ratios if c)
      per_threshold.append(sum(r for r, _ in ratios) / counted if counted else math.nan)
    result["JI_per_threshold"] = per_threshold
    result["JI"] = max(v for v in per_threshold if not math.isnan(v))
  return result


# --------------------------------------------------------------------------------------------- CityPersons

CITYPERSONS_SETUPS = {
    "Reasonable": ((50, 1e10), (0.65, 1e10)),
    "Reasonable_small": ((50, 75), (0.65, 1e10)),
    "Reasonable_occ=heavy": ((50, 1e10), (0.2, 0.65)),
    "All": ((20, 1e10), (0.2, 1e10)),
    "bare": ((50, 1e10), (0.9, 1e10)),
    "partial": ((50, 1e10), (0.65, 0.9)),
    "heavy": ((50, 1e10), (0.0, 0.65)),
    "middle": ((75, 100), (0.65, 1e10)),
    "large": ((100, 1e10), (0.65, 1e10)),
}


def _overlap_cp(d, g, ignored):
  """IoU (IoA of d when g is ignored) of [x, y, w, h] boxes, toolbox formula, 0 without overlap."""
  uw = min(d[0] + d[2], g[0] + g[2]) - max(d[0], g[0])
  uh = min(d[1] + d[3], g[1] + g[3]) - max(d[1], g[1])
  if uw <= 0 or uh <= 0:
    return 0.0
  inter = uw * uh
  union = d[2] * d[3] if ignored else d[2] * d[3] + g[2] * g[3] - inter
  return inter / union


def _citypersons_image(gts, dts, t):
  """[(score, 'tp' | 'fp' | 'ign')] of one image's kept DTs (spec §B.4)."""
  gts = sorted(gts, key=lambda g: g["ign"])
  matched = [False] * len(gts)
  out = []
  for d in dts:
    best, pick = min(t, 1 - 1e-10), None
    for j, g in enumerate(gts):
      if not g["ign"] and matched[j]:
        continue
      if pick is not None and g["ign"]:
        break
      o = _overlap_cp(d["bbox"], g["bbox"], g["ign"])
      if o < best:
        continue
      best, pick = o, j
    if pick is None:
      out.append((d["score"], "fp"))
    elif gts[pick]["ign"]:
      out.append((d["score"], "ign"))
    else:
      matched[pick] = True
      out.append((d["score"], "tp"))
  return out


def citypersons(gt, dt, setups=None, iou=0.5) -> dict:
  """{setup: MR} (fractions) of spec §B, image by image; NaN for a setup without regular GT."""
  ids = sorted(im["id"] for im in gt["images"])
  anns = {i: [] for i in ids}
  for a in gt["annotations"]:
    if a["category_id"] == 1:
      anns[a["image_id"]].append(a)
  dets = {i: [] for i in ids}
  for d in dt:
    if d["category_id"] == 1:
      dets[d["image_id"]].append(d)
  result = {}
  for name in (setups or CITYPERSONS_SETUPS):
    (h_lo, h_hi), (v_lo, v_hi) = CITYPERSONS_SETUPS[name]
    entries, npig = [], 0
    for i in ids:
      gts = [{"bbox": a["bbox"], "ign": bool(a.get("ignore", 0)) or a["height"] < h_lo or a["height"] > h_hi
              or a["vis_ratio"] < v_lo or a["vis_ratio"] > v_hi} for a in anns[i]]
      npig += sum(1 for g in gts if not g["ign"])
      dts = sorted(dets[i], key=lambda d: -d["score"])[:1000]
      dts = [d for d in dts if h_lo / 1.25 <= d["bbox"][3] < h_hi * 1.25]
      entries.extend(_citypersons_image(gts, dts, iou))
    if npig == 0:
      result[name] = math.nan
      continue
    entries = [e for e in sorted(entries, key=lambda e: -e[0]) if e[1] != "ign"]
    tp = fp = 0
    recall, fppi = [], []
    for _, kind in entries:
      tp += kind == "tp"
      fp += kind == "fp"
      recall.append(tp / npig)
      fppi.append(fp / len(ids))
    samples = []
    for r in [0.0100, 0.0178, 0.0316, 0.0562, 0.1000, 0.1778, 0.3162, 0.5623, 1.0000]:
      k = sum(1 for f in fppi if f <= r) - 1
      samples.append(recall[k] if entries else 0.0)  # k = -1 reads the last recall (toolbox quirk)
    result[name] = _log_average([1 - s for s in samples])
  return result
