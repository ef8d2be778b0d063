"""Caltech Pedestrian evaluation: log-average miss rate (MR^-2) of the 19 dbEval setups, new-annotation code path.

Semantics of the new-annotation dbEval (CSP eval_caltech/dbEval.m; Pedestron's copy adds 'Small') with the pdollar
toolbox's bbGt.m (bbLoad, evalRes, compRoc) and bbApply.m (resize), quirks included:
- GT per image = the bbGt text file; labels person, person?, people and ignore are loaded (others dropped), only
  'ignore' is an ignore label, so person? and people are positives. A GT is ignored when its file flag is set,
  its label is 'ignore', either edge leaves the bounds [5 5 635 475] (inclusive), its height leaves hr
  (inclusive) or its visible fraction leaves vr (v = 1 when occ = 0 or bbv = 0, v = 0 when bbv == bb, else the
  area ratio). Rotated boxes (ang != 0) become the extent of the inscribed ellipse. Non-ignored GT only are
  standardised to aspect 0.41 (d = 0.41 h - w; x -= d / 2; w += d); detections never are.
- Detections of a setup: hr(1) / filter <= h < hr(2) * filter; no score threshold, no cap, no clipping.
- Matching per image (threshold t of the setup for IoU and IoA): detections in stable score order; a detection
  takes the unmatched regular GT of highest IoU >= t (ties to the later GT), else it is ignored when some ignore
  GT has IoA >= t, else it is a false positive.
- All images in evaluation order, stable score sort; fppi = fp / nImg (every listed image counts), recall = tp /
  np; each reference FPPI 10^(-2:.25:0) reads the recall of the last point with fppi <= ref (a sentinel gives 0
  before the first point); MR = exp(mean(log(1 - recall))). No kept detection: MR = 1; no positives: NaN.
  vr = [inf inf] setups (Scale=*, Occ=none, Ar=*) ignore every GT on this path, so they are NaN (or 1).

Speed: IoU with the standardised GT boxes and IoA with the original ones are computed once, per padded bucket of
images, for all setups (a regular GT is always standardised, an ignored one never) and kept as the sparse list of
pairs above the lowest threshold; each setup's greedy matching then runs on a small padded tensor of the images
and detections that have candidates. Setups with the same filters share their matching. Arithmetic follows bbGt.m term by term, so the numbers agree to the last bit.

Command line: ``python -m lla_jax.evaluation caltech --gt ANNO_DIR --dt DET_DIR [--frames FRAMES.txt]
[--setups A,B] [--bounds none] [--json] [--plot PNG]`` (see caltech_files for the layouts).
"""
from __future__ import annotations

import argparse
import collections
import json
import math
import sys

import numpy as np

from lla_jax.evaluation import InputError, caltech_files, image_score_order, pad_runs, size_buckets
from lla_jax.evaluation.citypersons import toolbox_matching

INF = math.inf
Setup = collections.namedtuple("Setup", "hr vr ar overlap filter")
SETUPS = {  # dbEval's exps rows: height range, visibility range, aspect ratio (unused here), IoU, filter
    "Reasonable": Setup((50, INF), (.65, INF), 0, .5, 1.25),
    "All": Setup((20, INF), (.2, INF), 0, .5, 1.25),
    "Small": Setup((50, 75), (.65, INF), 0, .5, 1.25),  # Pedestron's extra row
    "Scale=large": Setup((100, INF), (INF, INF), 0, .5, 1.25),
    "Scale=near": Setup((80, INF), (INF, INF), 0, .5, 1.25),
    "Scale=medium": Setup((30, 80), (INF, INF), 0, .5, 1.25),
    "Scale=far": Setup((20, 30), (INF, INF), 0, .5, 1.25),
    "Occ=none": Setup((50, INF), (INF, INF), 0, .5, 1.25),
    "Occ=partial": Setup((50, INF), (.65, 1), 0, .5, 1.25),
    "Occ=heavy": Setup((50, INF), (.2, .65), 0, .5, 1.25),
    "Ar=all": Setup((50, INF), (INF, INF), 0, .5, 1.25),
    "Ar=typical": Setup((50, INF), (INF, INF), .1, .5, 1.25),
    "Ar=atypical": Setup((50, INF), (INF, INF), -.1, .5, 1.25),
    "Overlap=25": Setup((50, INF), (.65, INF), 0, .25, 1.25),
    "Overlap=50": Setup((50, INF), (.65, INF), 0, .5, 1.25),
    "Overlap=75": Setup((50, INF), (.65, INF), 0, .75, 1.25),
    "Expand=100": Setup((50, INF), (.65, INF), 0, .5, 1.),
    "Expand=125": Setup((50, INF), (.65, INF), 0, .5, 1.25),
    "Expand=150": Setup((50, INF), (.65, INF), 0, .5, 1.5),
}
FPPI_REFS = np.array([10.0 ** (-2 + 0.25 * k) for k in range(9)])  # 10.^(-2:.25:0), unrounded
DEFAULT_BOUNDS = (5.0, 5.0, 635.0, 475.0)  # [x0 y0 x1 y1] of dbEval's bnds
NO_BOUNDS = (-INF, -INF, INF, INF)         # dbEval's commented alternative (the CSP cache was built this way)
ASPECT = 0.41
_BUCKET_ELEMENTS = 1 << 18


def parse_bounds(text) -> tuple:
  """'none' -> NO_BOUNDS; 'x0,y0,x1,y1' (or a 4-sequence) -> floats; None -> DEFAULT_BOUNDS."""
  if text is None:
    return DEFAULT_BOUNDS
  if isinstance(text, str):
    if text.strip().lower() == "none":
      return NO_BOUNDS
    text = text.replace(",", " ").split()
  try:
    b = tuple(float(v) for v in text)
  except (TypeError, ValueError):
    b = ()
  if len(b) != 4:
    raise InputError(f"bounds must be 'none' or 'x0,y0,x1,y1' (4 numbers), got {text!r}")
  return b


# ---------------------------------------------------------------------------------------------- ground truth

def _cosd(t):
  """Octave's cosd: cos(t / 180 * pi), exactly 0 at odd multiples of 90."""
  i = t / 180
  return np.where((i + 0.5) == np.trunc(i + 0.5), 0.0, np.cos(i * np.pi))


def _sind(t):
  i = t / 180
  return np.where(i == np.trunc(i), 0.0, np.sin(i * np.pi))


def extents(bb, ang):
  """bbGt bbLoad: a box with ang != 0 (mod 360) -> the extent of the ellipse inscribed in the rotated box. (N, 4)."""
  ang = np.mod(ang, 360)
  out = bb.copy()
  rot = ang != 0
  if rot.any():
    b = bb[rot]
    cx, cy = b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2
    a, w2, t = b[:, 3] / 2, b[:, 2] / 2, ang[rot] - 90
    with np.errstate(invalid="ignore", divide="ignore"):
      rx = (a * _cosd(t)) ** 2 + (w2 * _sind(t)) ** 2
      rx = np.abs(rx / np.sqrt(rx))
      ry = (a * _sind(t)) ** 2 + (w2 * _cosd(t)) ** 2
      ry = np.abs(ry / np.sqrt(ry))
    out[rot] = np.stack([cx - rx, cy - ry, 2 * rx, 2 * ry], axis=1)
  return out


def standardised(boxes):
  """bbApply resize(bb, 1, 0, .41): d = 0.41 h - w; x -= d / 2; w += d (height and y unchanged). (N, 4)."""
  out = boxes.copy()
  d = boxes[:, 3] * ASPECT - boxes[:, 2]
  out[:, 0] = boxes[:, 0] - d / 2
  out[:, 2] = boxes[:, 2] + d
  return out


def visible_fraction(gt) -> np.ndarray:
  """bbLoad's v: 1 when occ == 0 or bbv is all 0, 0 when bbv == bb, else (wv hv) / (w h). (N,)."""
  with np.errstate(invalid="ignore", divide="ignore"):
    v = (gt.bbv[:, 2] * gt.bbv[:, 3]) / (gt.bb[:, 2] * gt.bb[:, 3])
  v = np.where((gt.bbv == gt.bb).all(axis=1), 0.0, v)
  return np.where((gt.occ == 0) | (gt.bbv == 0).all(axis=1), 1.0, v)


def gt_ignored(gt, setup: Setup, bounds, vis=None) -> np.ndarray:
  """bbLoad's ignore flags of a setup (module doc), on the original boxes. (N,) bool."""
  x, y, w, h = gt.bb.T
  x0, y0, x1, y1 = bounds
  vis = visible_fraction(gt) if vis is None else vis
  (h0, h1), (v0, v1) = setup.hr, setup.vr
  out = (gt.ign != 0) | gt.is_ignore_label
  for lo, hi, val in ((x0, x1, x), (x0, x1, x + w), (y0, y1, y), (y0, y1, y + h), (h0, h1, h), (v0, v1, vis)):
    out |= (val < lo) | (val > hi)
  return out


def detection_kept(heights, setup: Setup) -> np.ndarray:
  """dbEval's pre-filter: hr(1) * (1 / filter) <= h < hr(2) * filter. (M,) bool."""
  lo, hi = setup.hr[0] * (1 / setup.filter), setup.hr[1] * setup.filter
  return (heights >= lo) & (heights < hi)


# ------------------------------------------------------------------------------------------------ evaluation

def _overlaps(d, g_iou, g_ioa):
  """bbGt compOas term by term: d (B, D, 4), g (B, G, 4) [x y w h] -> IoU with g_iou, IoA with g_ioa (B, D, G)."""
  dx2, dy2 = d[:, :, None, 0] + d[:, :, None, 2], d[:, :, None, 1] + d[:, :, None, 3]
  da = (d[:, :, 2] * d[:, :, 3])[:, :, None]
  out = []
  for g, ioa in ((g_iou, False), (g_ioa, True)):
    w = np.minimum(dx2, (g[:, :, 0] + g[:, :, 2])[:, None, :]) - np.maximum(d[:, :, None, 0], g[:, None, :, 0])
    h = np.minimum(dy2, (g[:, :, 1] + g[:, :, 3])[:, None, :]) - np.maximum(d[:, :, None, 1], g[:, None, :, 1])
    hit = (w > 0) & (h > 0)
    t = np.where(hit, w * h, 0.0)
    u = da if ioa else da + (g[:, :, 2] * g[:, :, 3])[:, None, :] - t
    with np.errstate(invalid="ignore", divide="ignore"):
      out.append(np.where(hit, t / u, 0.0))
  return out


def _candidate_pairs(bbox, std, ex, nd, ng, threshold):
  """The (detection, GT) pairs of the same image with IoU (standardised GT) or IoA (original GT) >= threshold, the
  lowest threshold of the setups: every pair any setup can use. bbox (M, 4) grouped by image; std / ex (N, 4)
  grouped by image; nd / ng (I,) counts. Returns detection and GT rows (P,), IoU and IoA (P,), in row order."""
  dt_starts, gt_starts = np.cumsum(nd) - nd, np.cumsum(ng) - ng
  parts = []
  for images in size_buckets(nd, ng, np.flatnonzero((nd > 0) & (ng > 0)), _BUCKET_ELEMENTS):
    # Padding is all zero: it overlaps nothing, so IoU / IoA 0 < every threshold.
    dbox = pad_runs(bbox, dt_starts, nd, images)[0]
    iou, ioa = _overlaps(dbox, pad_runs(std, gt_starts, ng, images)[0], pad_runs(ex, gt_starts, ng, images)[0])
    b, d, g = np.nonzero((iou >= threshold) | (ioa >= threshold))
    parts.append((dt_starts[images[b]] + d, gt_starts[images[b]] + g, iou[b, d, g], ioa[b, d, g]))
  if not parts:
    return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
  det, gt, iou, ioa = (np.concatenate(p) for p in zip(*parts))
  order = np.lexsort((gt, det))
  return det[order], gt[order], iou[order], ioa[order]


def _greedy_matching(det, gt, iou, threshold, image, gt_starts, ng):
  """evalRes's regular-GT matching from candidate pairs (IoU >= threshold, rows of detections in per-image score
  order): the images with candidates go into one padded (B, D, G) tensor, D = their candidate detections in
  score order, G = their GT in file order. Returns (M,) bool true positives over all detections."""
  hit = np.zeros(len(image), bool)
  if len(det) == 0:
    return hit
  rows, pair_row = np.unique(det, return_inverse=True)
  images, row_image = np.unique(image[rows], return_inverse=True)
  counts = np.bincount(row_image)
  rank = np.arange(len(rows)) - (np.cumsum(counts) - counts)[row_image]
  overlap = np.full((len(images), counts.max(), ng[images].max()), -np.inf)
  overlap[row_image[pair_row], rank[pair_row], gt - gt_starts[image[det]]] = iou
  hit[rows] = toolbox_matching(overlap, threshold)[row_image, rank]
  return hit


def sample_recall(fppi, recall):
  """Recall of the last point with fppi <= each reference; a sentinel (fppi -inf, recall 0) comes first. (9,)."""
  return np.concatenate([[0.0], recall])[np.searchsorted(fppi, FPPI_REFS, side="right")]


def log_average_miss_rate(recall_at) -> float:
  """exp(mean(log(1 - r))) with a sequential sum of libm logs (as Octave); a zero miss gives 0, NaN stays NaN."""
  total = 0.0
  for r in recall_at:
    m = 1.0 - float(r)
    total += -math.inf if m == 0 else (math.log(m) if m == m else math.nan)
  return math.exp(total / len(recall_at))


def evaluate(gt: caltech_files.GroundTruth, dt: caltech_files.Detections, setups=None,
             bounds=DEFAULT_BOUNDS) -> dict:
  """MR^-2 of each setup (names of SETUPS, default all) under `bounds` (DEFAULT_BOUNDS, NO_BOUNDS or 4 numbers).

  gt: GroundTruth of n_images images; dt: Detections with image indices into the same list (file order within
  an image). Returns {setup: {"MR": fraction (NaN where dbEval gives NaN), "recall_at": (9,) recall at
  FPPI_REFS, "fppi": (K,), "miss": (K,) along the score order of the K kept detections, "num_positives": np,
  "num_images": nImg}}.
  """
  names = list(SETUPS) if setups is None else list(setups)
  for name in names:
    if name not in SETUPS:
      raise InputError(f"unknown setup {name!r}; known: {', '.join(SETUPS)}")
  bounds = parse_bounds(bounds)
  if not names:
    return {}
  n_images = gt.n_images
  if len(dt.image) and (dt.image.min() < 0 or dt.image.max() >= n_images):
    raise InputError(f"detection image indices must lie in [0, {n_images})")
  if not (np.isfinite(dt.bbox).all() and np.isfinite(dt.score).all()):
    raise InputError("detections must be finite numbers")

  order = image_score_order(dt.image, dt.score, n_images)  # evalRes's stable per-image score sort
  image, score, bbox = dt.image[order], dt.score[order], dt.bbox[order]
  nd = np.bincount(image, minlength=n_images)
  ng = np.bincount(gt.image, minlength=n_images)
  gt_starts = np.cumsum(ng) - ng
  ex = extents(gt.bb, gt.ang)
  std = standardised(ex)
  vis = visible_fraction(gt)

  # Setups with the same filters and threshold share one matching (Reasonable = Overlap=50 = Expand=125, ...).
  groups = {}
  for name in names:
    s = SETUPS[name]
    groups.setdefault((s.hr, s.vr, s.filter, s.overlap), []).append(name)
  ignored = {k: gt_ignored(gt, SETUPS[v[0]], bounds, vis) for k, v in groups.items()}
  keep = {k: detection_kept(bbox[:, 3], SETUPS[v[0]]) for k, v in groups.items()}
  pair_det, pair_gt, pair_iou, pair_ioa = _candidate_pairs(bbox, std, ex, nd, ng, min(k[3] for k in groups))
  tp, in_ignore = {}, {}
  for k in groups:
    t, ign = k[3], ignored[k]
    kept = keep[k][pair_det]
    regular = kept & ~ign[pair_gt] & (pair_iou >= t)
    hit = _greedy_matching(pair_det[regular], pair_gt[regular], pair_iou[regular], t, image, gt_starts, ng)
    tp[k] = hit
    in_ignore[k] = np.zeros(len(score), bool)
    in_ignore[k][pair_det[kept & ign[pair_gt] & (pair_ioa >= t)]] = True
    in_ignore[k] &= ~hit

  # compRoc's stable score sort of all images' rows (image order, then each image's order); the kept rows of a
  # setup are a subsequence, so their stable sort is this order restricted to them.
  by_score = np.argsort(-score, kind="stable")
  results = {}
  for k, members in groups.items():
    n_pos = int((~ignored[k]).sum())
    listed = (keep[k] & ~in_ignore[k])[by_score]
    is_tp = tp[k][by_score][listed]
    if len(is_tp) == 0:
      fppi, recall, recall_at, mr = np.zeros(0), np.zeros(0), np.zeros(len(FPPI_REFS)), 1.0
    else:
      fppi = np.cumsum(~is_tp).astype(np.float64) / n_images
      with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.cumsum(is_tp).astype(np.float64) / n_pos
      recall_at = sample_recall(fppi, recall)
      mr = log_average_miss_rate(recall_at)
    for name in members:
      results[name] = {"MR": mr, "recall_at": recall_at, "fppi": fppi, "miss": 1 - recall,
                       "num_positives": n_pos, "num_images": n_images}
  return {name: results[name] for name in names}


def evaluate_dirs(anno_dir, dt_dir, frames=None, setups=None, bounds=DEFAULT_BOUNDS) -> dict:
  """evaluate() on files: ANNO_DIR bbGt texts, DET_DIR in either detection layout, frames a list of
  (set, video, frame) or a list file (default: the standard 4024-image test list)."""
  if frames is None or isinstance(frames, (str, bytes)) or hasattr(frames, "__fspath__"):
    frames = caltech_files.load_frames(frames)
  gt = caltech_files.load_gt_dir(anno_dir, frames)
  dt = caltech_files.load_detections(dt_dir, frames)
  return evaluate(gt, dt, setups, bounds)


# ------------------------------------------------------------------------------------------------ command line

def _fraction(v):
  return None if v is None or math.isnan(v) else float(v)


def add_parser(sub) -> argparse.ArgumentParser:
  """Adds the `caltech` subcommand to an argparse subparsers object (dispatch with args.run(args))."""
  p = sub.add_parser("caltech", help="MR^-2 per dbEval setup (Caltech new-annotation semantics)",
                     description="Caltech Pedestrian MR^-2, identical to the MATLAB dbEval + bbGt code.")
  p.add_argument("--gt", required=True, help="folder of bbGt text files, one per image (set06_V000_I00029.txt)")
  p.add_argument("--dt", required=True, help="detections: setSS/VVVV.txt rows 'frame+1 x y w h score', or "
                 "setSS/VVVV/IFFFFF.txt rows 'x y w h score' (rounded to 5 significant digits, as dbEval does)")
  p.add_argument("--frames", default=None, help="evaluated images in evaluation order, one name per line "
                 "(default: the standard 4024-image test list)")
  p.add_argument("--setups", default=None, help=f"comma-separated setups (default all: {', '.join(SETUPS)})")
  p.add_argument("--bounds", default=None, help="GT bounds 'x0,y0,x1,y1' (default 5,5,635,475) or 'none'")
  p.add_argument("--json", action="store_true", help="print one JSON object {setup: MR fraction} on the last line")
  p.add_argument("--plot", default=None, metavar="PNG", help="write the miss rate vs FPPI curves")
  p.set_defaults(run=run)
  return p


def run(args) -> None:
  setups = [s.strip() for s in args.setups.split(",") if s.strip()] if args.setups else None
  r = evaluate_dirs(args.gt, args.dt, args.frames, setups, parse_bounds(args.bounds))
  if args.plot:
    from lla_jax.evaluation import plots
    plots.plot_mr_fppi({n: (v["fppi"], v["miss"], v["MR"]) for n, v in r.items()}, args.plot,
                       title="Caltech (new annotations)")
  if args.json:
    print(json.dumps({n: _fraction(v["MR"]) for n, v in r.items()}))
    return
  first = next(iter(r.values()))
  print(f"Caltech MR^-2 ({first['num_images']} images); recall at FPPI " +
        " ".join(f"{x:.4g}" for x in FPPI_REFS))
  for name, v in r.items():
    mr = "n/a" if math.isnan(v["MR"]) else f"{100 * v['MR']:.2f}%"
    recall = " ".join("  n/a" if math.isnan(x) else f"{x:.3f}" for x in v["recall_at"])
    print(f"  {name:<13} {mr:>7}  np {v['num_positives']:<5} {recall}")


def main(argv=None) -> int:
  """`python -m lla_jax.evaluation caltech ...` as a function: exit status 0, or 2 on bad input."""
  parser = argparse.ArgumentParser(prog="python -m lla_jax.evaluation")
  add_parser(parser.add_subparsers(dest="benchmark", required=True))
  args = parser.parse_args(["caltech", *(sys.argv[1:] if argv is None else argv)])
  try:
    run(args)
  except (InputError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0
