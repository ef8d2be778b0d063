"""CityPersons evaluation: log-average miss rate (MR^-2) per setup, official toolbox semantics
(CityPersons evaluation/eval_script/eval_demo.py, coco.py, eval_MR_multisetup.py).

Per setup a GT is ignored when flagged ``ignore`` or when its stored ``height`` / ``vis_ratio`` fall outside the
setup's ranges (inclusive). Per image the detections are stable-sorted by score, cut to 1000, then kept only when
H_lo / 1.25 <= h < H_hi * 1.25. Matching (threshold t): a detection takes the unmatched regular GT with the
highest IoU >= t (ties to the later GT); failing that it is ignored when its IoA with an ignored GT is >= t, else
it is a false positive. The non-ignored detections of all images are stable-sorted by score; FPPI divides by the
number of images in the GT file; each reference FPPI reads the recall at the last position with FPPI <= ref (the
toolbox's k = -1 reads the last recall); MR = exp(mean(ln(1 - recall))). NOT the ALFNet-repository variant.

Speed: IoU / IoA tensors are computed once per padded bucket of images and shared by all setups; the greedy
matching loops over candidate rank across the images of a bucket. Arithmetic follows the toolbox term by term.
"""
from __future__ import annotations

import math

import numpy as np

from lla_jax.evaluation import InputError, cityjson, finite_floats, image_score_order, pad_runs, size_buckets

INF = 1e5 ** 2  # the toolbox's "infinite" height / visibility bound
SETUPS = {  # name -> ((height lo, height hi), (visibility lo, visibility hi)), bounds inclusive
    "Reasonable": ((50, INF), (0.65, INF)),
    "Reasonable_small": ((50, 75), (0.65, INF)),
    "Reasonable_occ=heavy": ((50, INF), (0.2, 0.65)),
    "All": ((20, INF), (0.2, INF)),
    "bare": ((50, INF), (0.9, INF)),
    "partial": ((50, INF), (0.65, 0.9)),
    "heavy": ((50, INF), (0.0, 0.65)),
    "middle": ((75, 100), (0.65, INF)),
    "large": ((100, INF), (0.65, INF)),
}
FPPI_REFS = np.array([0.0100, 0.0178, 0.0316, 0.0562, 0.1000, 0.1778, 0.3162, 0.5623, 1.0000])
MAX_DETS = 1000
HEIGHT_EXPANSION = 1.25  # the detection pre-filter's tolerance around a setup's height range
PERSON = 1  # the only category accumulated
_BUCKET_ELEMENTS = 1 << 18  # images x detections x GTs per padded bucket (cache-sized tensors)


# ----------------------------------------------------------------------------------------------- input checks

def _number(x):
  return isinstance(x, (int, float)) and math.isfinite(x)


def _box_ok(b):
  return isinstance(b, (list, tuple)) and len(b) == 4 and all(_number(x) for x in b)


def _image_id_ok(i):
  return isinstance(i, (int, str)) and not isinstance(i, bool)


class _GroundTruth:
  """Category-1 GT: image_ids sorted ascending, index {id: i}; per annotation (grouped by image in that order,
  file order within an image): image (N,), bbox (N, 4) [x, y, w, h], height, vis_ratio, ignore (N,)."""

  def __init__(self, gt, source):
    if not isinstance(gt, dict) or not isinstance(gt.get("images"), list) \
        or not isinstance(gt.get("annotations"), list):
      raise InputError(f"{source}: expected an object with 'images' and 'annotations' lists")
    ids = []
    for k, im in enumerate(gt["images"]):
      if not isinstance(im, dict) or not _image_id_ok(im.get("id")):
        raise InputError(f"{source}: images[{k}] needs an 'id' (an integer)")
      ids.append(im["id"])
    try:
      self.image_ids = sorted(set(ids))
    except TypeError:
      raise InputError(f"{source}: image ids mix types") from None
    if len(self.image_ids) != len(ids):
      dup = next(i for i in ids if ids.count(i) > 1)
      raise InputError(f"{source}: image id {dup!r} is listed twice")
    self.index = {i: k for k, i in enumerate(self.image_ids)}
    image, bbox, height, vis, ignore, ann_ids = [], [], [], [], [], set()
    self.other_category = 0
    for k, a in enumerate(gt["annotations"]):
      where = f"{source}: annotations[{k}]"
      if not isinstance(a, dict):
        raise InputError(f"{where}: expected an object")
      where += f" (id {a.get('id')!r})"
      for key in ("id", "image_id", "category_id", "bbox", "height", "vis_ratio"):
        if key not in a:
          raise InputError(f"{where}: missing '{key}'")
      if isinstance(a["id"], bool) or not isinstance(a["id"], int) or a["id"] < 1:
        # The toolbox records a match as the GT id; id 0 would read as "unmatched".
        raise InputError(f"{where}: 'id' must be an integer >= 1")
      if a["id"] in ann_ids:
        raise InputError(f"{where}: duplicate annotation id")
      ann_ids.add(a["id"])
      if not _image_id_ok(a["image_id"]) or a["image_id"] not in self.index:
        raise InputError(f"{where}: image_id {a['image_id']!r} is not in 'images'")
      if not _box_ok(a["bbox"]) or min(a["bbox"][2:]) < 0:
        raise InputError(f"{where}: 'bbox' must be [x, y, w, h] (4 finite numbers, w, h >= 0), got {a['bbox']!r}")
      for key in ("height", "vis_ratio"):
        if not _number(a[key]):
          raise InputError(f"{where}: '{key}' must be a finite number, got {a[key]!r}")
      if a["category_id"] != PERSON:
        self.other_category += 1
        continue
      image.append(self.index[a["image_id"]])
      bbox.append(a["bbox"])
      height.append(a["height"])
      vis.append(a["vis_ratio"])
      ignore.append(bool(a.get("ignore", 0)))
    order = np.argsort(np.asarray(image, np.int64), kind="stable")
    self.image = np.asarray(image, np.int64)[order]
    self.bbox = np.asarray(bbox, np.float64).reshape(-1, 4)[order]
    self.height = np.asarray(height, np.float64)[order]
    self.vis = np.asarray(vis, np.float64)[order]
    self.ignore = np.asarray(ignore, bool)[order]


class _Detections:
  """Category-1 detections: image (M,), bbox (M, 4), score (M,) in file order."""

  def __init__(self, dt, gt, source):
    if not isinstance(dt, list):
      raise InputError(f"{source}: expected a JSON list of detections")
    try:
      image = [gt.index[d["image_id"]] for d in dt]
      category = [d["category_id"] for d in dt]
      bbox = [d["bbox"] for d in dt]
      score = [d["score"] for d in dt]
    except (KeyError, TypeError):
      self._raise_first_problem(dt, gt, source)
    bbox_a = finite_floats(bbox, (len(dt), 4))
    score_a = finite_floats(score, (len(dt),))
    if bbox_a is None or score_a is None:
      self._raise_first_problem(dt, gt, source)
    negative = np.flatnonzero((bbox_a[:, 2:] < 0).any(axis=1))
    if negative.size:   # reversed corners x2 < x1 read as [x, y, w, h]
      raise InputError(f"{source}: detection [{negative[0]}]: 'bbox' must be [x, y, w, h] with w, h >= 0, got "
                       f"{dt[negative[0]]['bbox']!r}")
    person = np.asarray([c == PERSON for c in category], bool)
    self.other_category = int((~person).sum())
    self.image = np.asarray(image, np.int64)[person]
    self.bbox = bbox_a[person]
    self.score = score_a[person]

  @staticmethod
  def _raise_first_problem(dt, gt, source):
    for k, d in enumerate(dt):
      where = f"{source}: detection [{k}]"
      if not isinstance(d, dict):
        raise InputError(f"{where}: expected an object")
      for key in ("image_id", "category_id", "bbox", "score"):
        if key not in d:
          raise InputError(f"{where}: missing '{key}'")
      if not _image_id_ok(d["image_id"]) or d["image_id"] not in gt.index:
        raise InputError(f"{where}: image_id {d['image_id']!r} is not in the ground truth")
      if not _box_ok(d["bbox"]):
        raise InputError(f"{where}: 'bbox' must be [x, y, w, h] (4 finite numbers), got {d['bbox']!r}")
      if not _number(d["score"]):
        raise InputError(f"{where}: 'score' must be a finite number, got {d['score']!r}")
    raise InputError(f"{source}: detections could not be read as numbers")


def load_gt(path) -> dict:
  """Reads and checks a CityPersons GT json (val_gt.json layout) -> the parsed dict."""
  gt = cityjson.read(path)
  _GroundTruth(gt, str(path))
  return gt


def load_dt(path, gt: dict | None = None) -> list[dict]:
  """Reads a detection json (list of {image_id, category_id, bbox, score}) -> the parsed list; with `gt` also
  checks every entry (errors name the file and the entry's index)."""
  dt = cityjson.read(path)
  if not isinstance(dt, list):
    raise InputError(f"{path}: expected a JSON list of detections")
  if gt is not None:
    _Detections(dt, _GroundTruth(gt, "GT"), str(path))
  return dt


# ------------------------------------------------------------------------------------------------ matching

def toolbox_matching(overlap, threshold):
  """Greedy toolbox matching of score-sorted detections against regular GTs, all images of a bucket at once.

  overlap (B, D, G) IoU with regular GTs, -inf where absent; rows in score order. Each detection takes the
  unmatched GT with the highest IoU >= min(threshold, 1 - 1e-10), ties to the later GT (the toolbox's '<'
  skip). Returns (B, D) bool true positives.
  """
  b, d, g = overlap.shape
  best = min(threshold, 1 - 1e-10)
  tp = np.zeros((b, d), bool)
  if d == 0 or g == 0:
    return tp
  candidate = (overlap >= best).any(axis=2)
  steps = int(candidate.sum(axis=1).max())
  if steps == 0:
    return tp
  order = np.argsort(~candidate, axis=1, kind="stable")[:, :steps]
  rows = np.take_along_axis(overlap, order[:, :, None], axis=1)[:, :, ::-1]  # reversed GTs: argmax -> last
  taken = np.zeros((b, g), bool)
  hit = np.zeros((b, steps), bool)
  images = np.arange(b)
  for step in range(steps):
    row = np.where(taken, -np.inf, rows[:, step])
    pick = row.argmax(axis=1)
    h = row[images, pick] >= best
    taken[images[h], pick[h]] = True
    hit[:, step] = h
  np.put_along_axis(tp, order, hit, axis=1)
  return tp


def miss_rate_samples(recall, fppi):
  """Recall at the last position with FPPI <= each reference (k = -1 reads the last; empty list -> 0)."""
  if len(recall) == 0:
    return np.zeros(len(FPPI_REFS))
  return recall[np.searchsorted(fppi, FPPI_REFS, side="right") - 1]


def log_average_miss_rate(samples):
  """MR = exp(mean(ln(1 - recall samples))); a sample of 1 gives 0 (no clamp)."""
  with np.errstate(divide="ignore"):
    return float(np.exp(np.mean(np.log(1 - samples))))


# ------------------------------------------------------------------------------------------------ evaluation

def _overlaps(d, g):
  """d (B, D, 4), g (B, G, 4) [x, y, w, h] -> IoU, IoA (B, D, G) with the toolbox's formulas (0 w/o overlap)."""
  uw = np.minimum(d[:, :, None, 0] + d[:, :, None, 2], g[:, None, :, 0] + g[:, None, :, 2]) \
      - np.maximum(d[:, :, None, 0], g[:, None, :, 0])
  uh = np.minimum(d[:, :, None, 1] + d[:, :, None, 3], g[:, None, :, 1] + g[:, None, :, 3]) \
      - np.maximum(d[:, :, None, 1], g[:, None, :, 1])
  overlap = (uw > 0) & (uh > 0)
  inter = np.where(overlap, uw * uh, 0.0)
  d_area = (d[:, :, 2] * d[:, :, 3])[:, :, None]
  g_area = (g[:, :, 2] * g[:, :, 3])[:, None, :]
  with np.errstate(divide="ignore", invalid="ignore"):
    iou = np.where(overlap, inter / (d_area + g_area - inter), 0.0)
    ioa = np.where(overlap, inter / d_area, 0.0)
  return iou, ioa


def evaluate(gt: dict, dt: list[dict], setups=None, iou: float = 0.5) -> dict:
  """MR^-2 of each setup at IoU threshold `iou` (eval_MR_multisetup.py).

  gt: val_gt.json-like dict; dt: list of {image_id, category_id, bbox [x, y, w, h], score}; setups: names of
  SETUPS (default all). Returns {setup: {"MR": fraction (NaN without regular GT), "fppi": (K,), "miss": (K,),
  "recall_samples": (9,)}} where K runs over the setup's non-ignored detections in score order.
  """
  names = list(SETUPS) if setups is None else list(setups)
  for name in names:
    if name not in SETUPS:
      raise InputError(f"unknown setup {name!r}; known: {', '.join(SETUPS)}")
  if not (isinstance(iou, (int, float)) and 0 < iou <= 1):
    raise InputError(f"iou threshold must be in (0, 1], got {iou!r}")
  g = _GroundTruth(gt, "GT")
  d = _Detections(dt, g, "DT")
  n_images = len(g.image_ids)

  # Per image: detections stable-sorted by score, the first MAX_DETS kept (before any setup's height filter).
  order = image_score_order(d.image, d.score, n_images)
  image, score, bbox = d.image[order], d.score[order], d.bbox[order]
  counts = np.bincount(image, minlength=n_images)
  rank = np.arange(len(image)) - np.repeat(np.cumsum(counts) - counts, counts)
  top = rank < MAX_DETS
  image, score, bbox = image[top], score[top], bbox[top]
  nd = np.bincount(image, minlength=n_images)
  ng = np.bincount(g.image, minlength=n_images)
  dt_starts, gt_starts = np.cumsum(nd) - nd, np.cumsum(ng) - ng

  keep, ignored_gt = {}, {}
  for name in names:
    (h_lo, h_hi), (v_lo, v_hi) = SETUPS[name]
    keep[name] = (bbox[:, 3] >= h_lo / HEIGHT_EXPANSION) & (bbox[:, 3] < h_hi * HEIGHT_EXPANSION)
    ignored_gt[name] = g.ignore | (g.height < h_lo) | (g.height > h_hi) | (g.vis < v_lo) | (g.vis > v_hi)
  tp = {name: np.zeros(len(score), bool) for name in names}
  in_ignore = {name: np.zeros(len(score), bool) for name in names}

  for images in size_buckets(nd, ng, np.flatnonzero((nd > 0) & (ng > 0)), _BUCKET_ELEMENTS):
    # Padding boxes are all zero: no overlap with anything, so IoU / IoA 0 (below every threshold).
    dbox, (row, rank, src) = pad_runs(bbox, dt_starts, nd, images)
    gbox, _ = pad_runs(g.bbox, gt_starts, ng, images)
    ious, ioas = _overlaps(dbox, gbox)
    for name in names:
      dt_keep, _ = pad_runs(keep[name], dt_starts, nd, images)
      gt_ign, _ = pad_runs(ignored_gt[name], gt_starts, ng, images)
      regular = np.where(dt_keep[:, :, None] & ~gt_ign[:, None, :], ious, -np.inf)
      hit = toolbox_matching(regular, iou)
      ign_hit = (dt_keep[:, :, None] & gt_ign[:, None, :] & (ioas >= min(iou, 1 - 1e-10))).any(axis=2)
      tp[name][src] = hit[row, rank]
      in_ignore[name][src] = (ign_hit & ~hit)[row, rank]

  results = {}
  for name in names:
    npig = int((~ignored_gt[name]).sum())
    listed = keep[name] & ~in_ignore[name]
    by_score = np.argsort(-score[listed], kind="stable")
    is_tp = tp[name][listed][by_score]
    tp_cum = np.cumsum(is_tp).astype(np.float64)
    fp_cum = np.cumsum(~is_tp).astype(np.float64)
    fppi = fp_cum / n_images
    with np.errstate(divide="ignore", invalid="ignore"):
      recall = tp_cum / npig
    samples = miss_rate_samples(recall, fppi)
    results[name] = {"MR": log_average_miss_rate(samples) if npig else math.nan, "fppi": fppi,
                     "miss": 1 - recall, "recall_samples": samples}
  return results
