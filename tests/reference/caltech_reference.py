"""Plain re-statement of the Caltech new-annotation evaluation (dbEval + bbGt bbLoad / evalRes / compRoc), one
image, one box pair at a time with Python floats, written from the Caltech spec (sections D, E) and sharing no code
with lla_jax/evaluation/caltech*.py. It reads the files itself: bbGt texts, per-video detection files at full
precision, per-frame files through '%.5g' (the dlmwrite consolidation). Inputs are assumed valid.
"""
from __future__ import annotations

import math
import os

INF = math.inf
SETUPS = {
    "Reasonable": ((50, INF), (.65, INF), .5, 1.25), "All": ((20, INF), (.2, INF), .5, 1.25),
    "Small": ((50, 75), (.65, INF), .5, 1.25), "Scale=large": ((100, INF), (INF, INF), .5, 1.25),
    "Scale=near": ((80, INF), (INF, INF), .5, 1.25), "Scale=medium": ((30, 80), (INF, INF), .5, 1.25),
    "Scale=far": ((20, 30), (INF, INF), .5, 1.25), "Occ=none": ((50, INF), (INF, INF), .5, 1.25),
    "Occ=partial": ((50, INF), (.65, 1), .5, 1.25), "Occ=heavy": ((50, INF), (.2, .65), .5, 1.25),
    "Ar=all": ((50, INF), (INF, INF), .5, 1.25), "Ar=typical": ((50, INF), (INF, INF), .5, 1.25),
    "Ar=atypical": ((50, INF), (INF, INF), .5, 1.25), "Overlap=25": ((50, INF), (.65, INF), .25, 1.25),
    "Overlap=50": ((50, INF), (.65, INF), .5, 1.25), "Overlap=75": ((50, INF), (.65, INF), .75, 1.25),
    "Expand=100": ((50, INF), (.65, INF), .5, 1.0), "Expand=125": ((50, INF), (.65, INF), .5, 1.25),
    "Expand=150": ((50, INF), (.65, INF), .5, 1.5),
}
REFS = [10.0 ** (-2 + 0.25 * k) for k in range(9)]


def read_gt(path):
  """bbGt text -> list of objects (lbl, [x y w h], occ, [xv yv wv hv], ign, ang) as Python numbers."""
  with open(path) as f:
    lines = [line.split() for line in f.read().splitlines()]
  version = 0
  if lines and lines[0] and lines[0][0].startswith("%"):
    version = int("".join(lines[0]).split("=")[1])
    lines = lines[1:]
  objs = []
  for t in lines:
    if not t:
      continue
    n = [float(int(v)) for v in t[1:]]
    ign = n[9] if version >= 2 else 0.0
    ang = n[10] if version >= 3 else 0.0
    objs.append((t[0], n[0:4], n[4], n[5:9], ign, ang))
  return objs


def _div(a, b):
  if b == 0:
    return math.nan if a == 0 else math.copysign(INF, a)
  return a / b


def _cosd(t):
  i = t / 180
  return 0.0 if (i + 0.5) == math.trunc(i + 0.5) else math.cos(i * math.pi)


def _sind(t):
  i = t / 180
  return 0.0 if i == math.trunc(i) else math.sin(i * math.pi)


def load_gt(objs, hr, vr, bounds):
  """bbLoad (lbls person/person?/people/ignore, ilbls ignore) + dbEval's 0.41 resize of the kept rows."""
  x0, y0, x1, y1 = bounds
  rows = []
  for lbl, bb, occ, bbv, ign, ang in objs:
    if lbl not in ("person", "person?", "people", "ignore"):
      continue
    x, y, w, h = bb
    if occ == 0 or all(v == 0 for v in bbv):
      v = 1.0
    elif list(bbv) == list(bb):
      v = 0.0
    else:
      v = _div(bbv[2] * bbv[3], w * h)
    ignored = (ign != 0 or lbl == "ignore" or x < x0 or x > x1 or x + w < x0 or x + w > x1 or y < y0 or y > y1
               or y + h < y0 or y + h > y1 or h < hr[0] or h > hr[1] or v < vr[0] or v > vr[1])
    a = ang % 360
    if a != 0:
      cx, cy, ea, eb, t = x + w / 2, y + h / 2, h / 2, w / 2, a - 90
      rx = (ea * _cosd(t)) ** 2 + (eb * _sind(t)) ** 2
      rx = abs(rx / math.sqrt(rx))
      ry = (ea * _sind(t)) ** 2 + (eb * _cosd(t)) ** 2
      ry = abs(ry / math.sqrt(ry))
      x, y, w, h = cx - rx, cy - ry, 2 * rx, 2 * ry
    if not ignored:
      d = h * 0.41 - w
      x, w = x - d / 2, w + d
    rows.append([x, y, w, h, ignored])
  return rows


def read_detections(dt_dir, frames):
  """{frame key: [[x y w h score], ...]} in file order, dbEval's loadDt per video."""
  out = {key: [] for key in frames}
  videos = []
  for s, v, _ in frames:
    if (s, v) not in videos:
      videos.append((s, v))
  for s, v in videos:
    base = os.path.join(dt_dir, "set%02d" % s, "V%03d" % v)
    if os.path.isfile(base + ".txt"):
      with open(base + ".txt") as f:
        rows = [[float(t) for t in line.replace(",", " ").split()] for line in f if line.strip()]
    else:
      rows = []
      for s2, v2, fr in frames:
        if (s2, v2) == (s, v):
          with open(os.path.join(base, "I%05d.txt" % fr)) as f:
            for line in f:
              if line.strip():
                rows.append([float("%.5g" % (fr + 1))] + [float("%.5g" % float(t)) for t in line.split()])
    for r in rows:
      key = (s, v, int(r[0]) - 1) if r[0] == int(r[0]) else None
      if key in out:
        out[key].append(r[1:6])
  return out


def overlap(d, g, ignored):
  """bbGt compOa: IoA with an ignored GT, IoU otherwise, 0 without positive-width-and-height intersection."""
  w = min(d[0] + d[2], g[0] + g[2]) - max(d[0], g[0])
  if w <= 0:
    return 0.0
  h = min(d[1] + d[3], g[1] + g[3]) - max(d[1], g[1])
  if h <= 0:
    return 0.0
  t = w * h
  u = d[2] * d[3] if ignored else d[2] * d[3] + g[2] * g[3] - t
  return t / u


def eval_image(gt, dt, thr):
  """bbGt evalRes: (gt flags in G order, dt rows [x y w h score flag] in score order)."""
  dt = sorted(dt, key=lambda r: -r[4])  # Python's sort is stable
  gt = sorted(gt, key=lambda r: r[4])
  gflag = [-1 if g[4] else 0 for g in gt]
  out = []
  for d in dt:
    best, pick, kind = thr, None, 0
    for k, g in enumerate(gt):
      if gflag[k] == 1:
        continue
      if kind != 0 and gflag[k] == -1:
        break
      oa = overlap(d, g, gflag[k] == -1)
      if oa < best:
        continue
      best, pick, kind = oa, k, (1 if gflag[k] == 0 else -1)
    if kind == 1:
      gflag[pick] = 1
    out.append(list(d) + [kind])
  return gflag, out


def evaluate(anno_dir, dt_dir, frames, setups=None, bounds=(5, 5, 635, 475)):
  """{setup: {"MR", "recall_at"}} for frames [(set, video, frame)] in evaluation order."""
  objs = [read_gt(os.path.join(anno_dir, "set%02d_V%03d_I%05d.txt" % key)) for key in frames]
  dets = read_detections(dt_dir, frames)
  results = {}
  for name in (setups or SETUPS):
    hr, vr, thr, filt = SETUPS[name]
    lo, hi = hr[0] * (1 / filt), hr[1] * filt
    gflags, drows = [], []
    for key, o in zip(frames, objs):
      gt = load_gt(o, hr, vr, bounds)
      dt = [d for d in dets[key] if lo <= d[3] < hi]
      g, d = eval_image(gt, dt, thr)
      gflags += g
      drows += d
    n_pos = sum(1 for g in gflags if g != -1)
    kept = [d for d in drows if d[5] != -1]
    if not kept:
      results[name] = {"MR": 1.0, "recall_at": [0.0] * 9}
      continue
    kept = sorted(kept, key=lambda r: -r[4])
    xs, ys, tp, fp = [-INF], [0.0], 0, 0
    for d in kept:
      tp += d[5] == 1
      fp += d[5] != 1
      xs.append(fp / len(frames))
      ys.append(_div(tp, n_pos))
    recall_at = []
    for r in REFS:
      j = max(k for k in range(len(xs)) if xs[k] <= r)
      recall_at.append(ys[j])
    total = 0.0
    for r in recall_at:
      m = 1 - r
      total += -INF if m == 0 else (math.log(m) if m == m else math.nan)
    results[name] = {"MR": math.exp(total / 9), "recall_at": recall_at}
  return results
