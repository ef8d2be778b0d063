"""CrowdHuman evaluation: AP, MR^-2, Recall and JI with the CrowdDet / cvpods toolkit semantics (spec §A).

Body mode: GT box = ``fbox``; tag "person" is positive, any other tag or ``extra.ignore != 0`` an ignore region.
Each image's GT and DT boxes are clipped to the image; DTs are matched greedily in score order (stable) against
GTs in tag order (positives first): the unmatched positive with the highest IoU > 0.5 (strict, ties to the earlier
GT), else discarded when its IoA with an ignore region is > 0.5, else a false positive. The kept entries of all
images are stable-sorted by score; MR^-2 samples the miss rate at the first position whose FPPI reaches each
reference, AP is the trapezoid over the (recall, precision) list, Recall its last recall. JI is the CrowdDet
Jaccard index: a maximum-weight bipartite matching over IoU > 0.5 edges, best over score thresholds 0.0 .. 0.9.

Speed: images are padded into buckets of similar size (cache-sized tensors); IoU / IoA tensors are computed per
bucket, and the greedy matching loops over the rank of the detections that have an edge (IoU > 0.5) across all
images of the bucket at once; JI reuses the same IoU rows. Floating-point operations follow the upstream
formulas term by term, so the numbers agree to the last bit.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.optimize import linear_sum_assignment

from lla_jax.evaluation import InputError, finite_floats, image_score_order, pad_runs, size_buckets
from lla_jax.evaluation.odgt import load as load_odgt  # noqa: F401  (the reader this evaluator takes input from)

IOU_THRESHOLD = 0.5
EPS = 1e-6  # the toolkit's epsilon in the IoU / IoA denominators
MR_REFS = np.array([0.0100, 0.0178, 0.03160, 0.0562, 0.1000, 0.1778, 0.3162, 0.5623, 1.000])  # CALTECH_-2
JI_SCORE_THRESHOLDS = tuple(1e-1 * i for i in range(10))  # as upstream computes them (0.30000000000000004, ...)
_BUCKET_ELEMENTS = 1 << 18  # images x detections x positives per padded bucket (2 MB float64 tensors)


# ----------------------------------------------------------------------------------------------- input checks

def _where(records, i, side):
  """'file:line (ID x)' when the records came from load_odgt, else 'GT record i (ID x)'."""
  record = records[i]
  ident = record.get("ID") if isinstance(record, dict) else None
  lines = getattr(records, "lines", None)
  if lines is not None:
    return f"{records.path}:{lines[i]} (ID {ident!r})"
  return f"{side} record {i} (ID {ident!r})"


def _number_problem(x):
  if not isinstance(x, (int, float)):
    return f"expected a number, got {x!r}"
  if not math.isfinite(x):
    return f"expected a finite number, got {x!r}"
  return None


def _box_problem(box):
  if not isinstance(box, (list, tuple)) or len(box) != 4:
    return f"expected [x, y, w, h] (4 numbers), got {box!r}"
  for x in box:
    if _number_problem(x):
      return f"expected [x, y, w, h] (4 finite numbers), got {box!r}"
  return None


def _record_id(records, i, side):
  record = records[i]
  if not isinstance(record, dict):
    raise InputError(f"{side} record {i}: expected a JSON object, got {type(record).__name__}")
  ident = record.get("ID")
  if isinstance(ident, bool) or not isinstance(ident, (str, int)):
    raise InputError(f"{_where(records, i, side)}: 'ID' must be a string, got {ident!r}")
  return ident


def _image_size(records, i, side):
  """(width, height) of a record, NaN where absent."""
  size = [math.nan, math.nan]
  for k, key in enumerate(("width", "height")):
    v = records[i].get(key)
    if v is not None:
      if _number_problem(v) or v <= 0:
        raise InputError(f"{_where(records, i, side)}: '{key}' must be a positive number, got {v!r}")
      size[k] = float(v)
  return size


def _gt_box_problem(b):
  if not isinstance(b, dict) or "fbox" not in b or "tag" not in b:
    return "needs 'fbox' and 'tag'"
  if _box_problem(b["fbox"]):
    return f".fbox: {_box_problem(b['fbox'])}"
  if not isinstance(b.get("extra", {}), dict):
    return f".extra must be an object, got {b['extra']!r}"
  return None


def _dt_box_problem(b):
  if not isinstance(b, dict) or "box" not in b or "score" not in b:
    return "needs 'box' and 'score'"
  if _box_problem(b["box"]):
    return f".box: {_box_problem(b['box'])}"
  if _number_problem(b["score"]):
    return f".score: {_number_problem(b['score'])}"
  return None


def _raise_first_problem(records, key, problem, side):
  """Scans records[i][key][j] for the first box `problem` finds and raises an InputError naming it."""
  for i, record in enumerate(records):
    for j, b in enumerate(record.get(key) or []):
      reason = problem(b)
      if reason:
        raise InputError(f"{_where(records, i, side)}: {key}[{j}]{'' if reason[0] == '.' else ' '}{reason}")
  raise InputError(f"{side}: {key} could not be read as float64 numbers")


def _check_sizes(records, key, field, xywh, counts, side):
  """Raises naming the first box of records[i][key][j][field] (xywh (N, 4), per-record counts) whose width or
  height is negative (reversed corners written as [x1, y1, x2, y2]?); zero sizes and boxes past the border
  occur in CrowdHuman and are kept."""
  bad = np.flatnonzero((xywh[:, 2:] < 0).any(axis=1))
  if bad.size:
    i = int(np.searchsorted(np.cumsum(counts), bad[0], side="right"))
    j = int(bad[0] - (np.cumsum(counts)[i - 1] if i else 0))
    raise InputError(f"{_where(records, i, side)}: {key}[{j}].{field}: expected [x, y, w, h] with w, h >= 0, got "
                     f"{records[i][key][j][field]!r}")


def _read_boxes(records, key, columns_of, problem, side):
  """records[i][key] (a list of box objects) -> the columns columns_of(list) returns, concatenated over records,
  and the per-record counts; on a malformed box raise the first problem (a missing field, not an object...)."""
  columns, counts = None, []
  for i, record in enumerate(records):
    boxes = record.get(key)
    if not isinstance(boxes, list):
      raise InputError(f"{_where(records, i, side)}: missing '{key}' list")
    try:
      values = columns_of(boxes)
    except (KeyError, TypeError, AttributeError):
      _raise_first_problem(records, key, problem, side)
    if columns is None:
      columns = tuple([] for _ in values)
    for column, v in zip(columns, values):
      column.extend(v)
    counts.append(len(boxes))
  return columns or ([], []), np.asarray(counts, np.int64)


_NO_EXTRA = {}


def _gt_columns(boxes):
  return ([b["fbox"] for b in boxes],
          [b["tag"] == "person" and b.get("extra", _NO_EXTRA).get("ignore", 0) == 0 for b in boxes])


def _dt_columns(boxes):
  return [b["box"] for b in boxes], [b["score"] for b in boxes]


class _GroundTruth:
  """GT of all images in file order: boxes (N, 4) xyxy float64, positive (N,) bool, image (N,) int, per image
  counts (I,), width / height (I,) (NaN when the GT line has none), ids (I,) and index {ID: i}."""

  def __init__(self, records):
    self.ids, self.index = [], {}
    sizes = []
    for i in range(len(records)):
      ident = _record_id(records, i, "GT")
      if ident in self.index:
        raise InputError(f"{_where(records, i, 'GT')}: duplicate ID (also at GT record {self.index[ident]})")
      self.index[ident] = i
      self.ids.append(ident)
      sizes.append(_image_size(records, i, "GT"))
    (fbox, positive), self.counts = _read_boxes(records, "gtboxes", _gt_columns, _gt_box_problem, "GT")
    xywh = finite_floats(fbox, (len(fbox), 4))
    if xywh is None:
      _raise_first_problem(records, "gtboxes", _gt_box_problem, "GT")
    _check_sizes(records, "gtboxes", "fbox", xywh, self.counts, "GT")
    self.boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    self.positive = np.asarray(positive, bool)
    self.image = np.repeat(np.arange(len(self.counts)), self.counts)
    sizes = np.asarray(sizes, np.float64).reshape(-1, 2)
    self.width, self.height = sizes[:, 0], sizes[:, 1]


class _Detections:
  """DT of all records: boxes (M, 4) xyxy float64, scores (M,), image (M,) GT image index, in DT file order.
  Fills the GT's missing image sizes from the DT records that have detections."""

  def __init__(self, records, gt):
    seen = np.zeros(len(gt.ids), bool)
    images = []
    for i in range(len(records)):
      ident = _record_id(records, i, "DT")
      g = gt.index.get(ident)
      if g is None:
        raise InputError(f"{_where(records, i, 'DT')}: ID {ident!r} is not in the ground truth")
      if seen[g]:
        raise InputError(f"{_where(records, i, 'DT')}: a second detection record for ID {ident!r}")
      seen[g] = True
      images.append(g)
      width, height = _image_size(records, i, "DT")
      if (math.isnan(width) and math.isnan(gt.width[g])) or (math.isnan(height) and math.isnan(gt.height[g])):
        raise InputError(f"{_where(records, i, 'DT')}: needs 'width' and 'height' (the original image size, "
                         "used for clipping)")
      # Only a record with detections sizes (and so clips) the GT: one with "dtboxes": [] counts exactly as an
      # image without a record, whose size is unknown (JI's m depends on the GT clipping).
      if records[i].get("dtboxes"):
        gt.width[g] = width if math.isnan(gt.width[g]) else gt.width[g]
        gt.height[g] = height if math.isnan(gt.height[g]) else gt.height[g]
    (box, score), counts = _read_boxes(records, "dtboxes", _dt_columns, _dt_box_problem, "DT")
    xywh = finite_floats(box, (len(box), 4))
    self.scores = finite_floats(score, (len(score),))
    if xywh is None or self.scores is None:
      _raise_first_problem(records, "dtboxes", _dt_box_problem, "DT")
    _check_sizes(records, "dtboxes", "box", xywh, counts, "DT")
    self.boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    self.image = np.repeat(np.asarray(images, np.int64), counts)


# ------------------------------------------------------------------------------------------------ geometry

def clip_boxes(boxes, width, height):
  """Clip xyxy boxes (N, 4) to their images, width / height (N,), as the toolkit does (x1 <= W - 1, x2 <= W)."""
  out = np.empty_like(boxes)
  out[:, 0] = np.minimum(np.maximum(boxes[:, 0], 0), width - 1)
  out[:, 1] = np.minimum(np.maximum(boxes[:, 1], 0), height - 1)
  out[:, 2] = np.maximum(np.minimum(boxes[:, 2], width), 0)
  out[:, 3] = np.maximum(np.minimum(boxes[:, 3], height), 0)
  return out


def _intersection(a, b):
  """a (B, N, 4), b (B, K, 4) xyxy -> (B, N, K) intersection areas, max(0, .) per side as the toolkit."""
  a, b = a.transpose(2, 0, 1)[:, :, :, None], b.transpose(2, 0, 1)[:, :, None, :]
  iw = np.minimum(a[2], b[2])
  scratch = np.maximum(a[0], b[0])
  iw -= scratch  # in place: the tensors are the bulk of the work
  np.maximum(iw, 0, out=iw)
  ih = np.minimum(a[3], b[3])
  ih -= np.maximum(a[1], b[1], out=scratch)
  np.maximum(ih, 0, out=ih)
  iw *= ih
  return iw


def _area(b):
  """(..., 4) xyxy -> (...) area without clamping, as the toolkit's matching. The JI's clamped area equals it on
  every box that intersects anything (a box with a negative side has no intersection), so one IoA serves both."""
  return (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])


def iou_matrix(d, g):
  """d (B, N, 4), g (B, K, 4) -> (B, N, K) IoU = inter / (area_d + area_g - inter + 1e-6), in that order."""
  inter = _intersection(d, g)
  den = _area(d)[:, :, None] + _area(g)[:, None, :]
  den -= inter
  den += EPS
  return np.divide(inter, den, out=den)


def ioa_matrix(d, g):
  """d (B, N, 4), g (B, K, 4) -> (B, N, K) IoA = inter / (area_d + 1e-6), the share of d inside g."""
  return _intersection(d, g) / (_area(d)[:, :, None] + EPS)


# ------------------------------------------------------------------------------------------------ matching

def caltech_matching(iou):
  """Greedy Caltech matching of score-sorted detections against positive GTs, all images of a bucket at once.

  iou (B, C, G): IoU of each image's candidate detections (those with an edge, IoU > 0.5), in score order, with
  its positive GTs; no NaN; padding rows / columns below 0.5. Each detection takes the unmatched GT with the
  highest IoU > 0.5 (argmax: ties to the earlier GT, the toolkit's strict '>'). Returns (B, C) bool true
  positives.
  """
  b, c, g = iou.shape
  taken = np.zeros((b, g), bool)
  hit = np.zeros((b, c), bool)
  images = np.arange(b)
  for step in range(c):
    row = np.where(taken, -np.inf, iou[:, step])
    best = row.argmax(axis=1)
    h = row[images, best] > IOU_THRESHOLD
    taken[images[h], best[h]] = True
    hit[:, step] = h
  return hit


def max_weight_matching(weights):
  """Maximum-weight bipartite matching over the edges weights > 0.5 (not maximum cardinality).

  weights (N, K) -> (rows, cols) int arrays of the matched pairs, rows ascending. Solved as an assignment with 0
  for non-edges (any matching extends to a full assignment with zero pairs and back); zero pairs are no match.
  """
  w = np.where(weights > IOU_THRESHOLD, weights, 0.0)
  r, c = linear_sum_assignment(w, maximize=True)
  keep = w[r, c] > 0
  return r[keep], c[keep]


def _ji_matched(w, rows, kept, dt_in_ignore, gt_in_ignore):
  """One image's JI matching per score threshold -> (T, 3): matched pairs k, matched DTs in ignore regions,
  matched positives in ignore regions.

  w (R, G) IoU rows of the score-sorted DTs with an edge (-inf for non-edges), whose ranks are `rows` (R,)
  ascending; kept (T,) the number of DTs above each threshold (non-increasing); dt_in_ignore (D,),
  gt_in_ignore (G,) bool. A matching stays optimal at a higher threshold while all its DTs survive (the edge
  set only shrinks). When matched DTs drop out but none of the GTs they free has an edge to a surviving DT,
  the rest of the matching is still optimal (a better one would, with the dropped pairs added back, beat the
  matching it came from). Only otherwise is the assignment solved again.
  """
  out = np.zeros((len(kept), 3), np.int64)
  edge = w > IOU_THRESHOLD
  weights = np.where(edge, w, 0.0)  # max_weight_matching's assignment problem, built once for all thresholds
  r = c = None
  for t, p in enumerate(np.searchsorted(rows, kept).tolist()):
    if p == 0:
      break
    if r is not None and r.size and r[-1] >= p:
      gone = r >= p
      if not edge[:p, c[gone]].any():
        r, c = r[~gone], c[~gone]
        stats = (r.size, np.count_nonzero(dt_in_ignore[rows[r]]), np.count_nonzero(gt_in_ignore[c]))
    if r is None or (r.size and r[-1] >= p):
      r, c = linear_sum_assignment(weights[:p], maximize=True)  # as max_weight_matching(w[:p])
      matched = edge[r, c]
      r, c = r[matched], c[matched]
      stats = (r.size, np.count_nonzero(dt_in_ignore[rows[r]]), np.count_nonzero(gt_in_ignore[c]))
    out[t] = stats
  return out


# ------------------------------------------------------------------------------------------------ evaluation

def log_average_miss_rate(fppi, miss, refs=MR_REFS):
  """MR: miss rate at the first position with FPPI >= ref (else the last), log-averaged; NaN for an empty list."""
  if len(fppi) == 0:
    return math.nan
  k = np.minimum(np.searchsorted(fppi, refs, side="left"), len(fppi) - 1)
  with np.errstate(divide="ignore"):
    return float(np.exp(np.log(miss[k]).mean()))


def average_precision(recall, precision):
  """Trapezoid over consecutive (recall, precision) points, summed in order; no anchor point, no envelope."""
  if len(recall) < 2:
    return 0.0
  area = (recall[1:] - recall[:-1]) * ((precision[:-1] + precision[1:]) / 2)
  return float(np.cumsum(area)[-1])  # cumsum adds left to right, like the toolkit's loop


def evaluate(gt_records: list[dict], dt_records: list[dict], compute_ji: bool = True) -> dict:
  """CrowdHuman body-mode AP, MR^-2, Recall (fractions) and JI over all GT images (spec/evaluation.md §A).

  gt_records: odgt GT lines {ID, gtboxes: [{tag, fbox, extra}]}; dt_records: {ID, width, height,
  dtboxes: [{box, score}]} with boxes in original pixels. A GT image without DT record has no detections.
  Returns {"AP", "MR", "Recall", "JI" (None unless compute_ji), "JI_per_threshold" (10,), "curve": {"fppi",
  "miss", "recall", "precision", "score"} (arrays over the TP / FP list in score order), "num_images",
  "num_positives"}. Where upstream is undefined (no TP / FP entry at all, no positive) MR is NaN, AP 0 and
  Recall 0 (NaN without positives).
  """
  gt = _GroundTruth(gt_records)
  dt = _Detections(dt_records, gt)
  n_images = len(gt.ids)

  # Clip GT where the image size is known (always when the image has a DT record) and every DT.
  sized = ~(np.isnan(gt.width) | np.isnan(gt.height))
  clip = sized[gt.image]
  gt_boxes = gt.boxes.copy()
  gt_boxes[clip] = clip_boxes(gt.boxes[clip], gt.width[gt.image[clip]], gt.height[gt.image[clip]])
  # DTs grouped by image in GT order, score-descending (stable) within an image.
  order = image_score_order(dt.image, dt.scores, n_images)
  dt_image, dt_scores = dt.image[order], dt.scores[order]
  dt_boxes = clip_boxes(dt.boxes[order], gt.width[dt_image], gt.height[dt_image])
  nd = np.bincount(dt_image, minlength=n_images)
  dt_starts = np.cumsum(nd) - nd

  pos = np.flatnonzero(gt.positive)
  ign = np.flatnonzero(~gt.positive)
  pos_image = gt.image[pos]
  npos = np.bincount(pos_image, minlength=n_images)
  nign = np.bincount(gt.image[ign], minlength=n_images)
  pos_starts, ign_starts = np.cumsum(npos) - npos, np.cumsum(nign) - nign

  tp = np.zeros(len(dt_scores), bool)
  in_ignore = np.zeros(len(dt_scores), bool)  # IoA > 0.5 with an ignore region
  if compute_ji:
    # Per image and score threshold: DTs kept (above it); the matching's pairs and matched DTs / positives
    # lying in ignore regions; positives lying in ignore regions.
    kept = np.stack([np.bincount(dt_image[dt_scores > t], minlength=n_images) for t in JI_SCORE_THRESHOLDS], 1)
    ji_matched = np.zeros(kept.shape + (3,), np.int64)
    gt_in_ignore = np.zeros(len(pos), bool)

  todo = np.flatnonzero((nd > 0) | (compute_ji & (npos > 0) & (nign > 0)))
  for images in size_buckets(nd, npos, todo, _BUCKET_ELEMENTS):
    # Padding boxes are all zero: their IoU / IoA with anything is 0 (or NaN), never above 0.5.
    d, (row, rank, src) = pad_runs(dt_boxes, dt_starts, nd, images)
    p, (p_row, p_rank, p_src) = pad_runs(gt_boxes[pos], pos_starts, npos, images)
    g, _ = pad_runs(gt_boxes[ign], ign_starts, nign, images)
    iou = iou_matrix(d, p)
    ign_hit = (ioa_matrix(d, g) > IOU_THRESHOLD).any(axis=2)
    in_ignore[src] = ign_hit[row, rank]
    # Candidates (DTs with an edge) first, in rank order; only they can match.
    candidate = (iou > IOU_THRESHOLD).any(axis=2)
    nc = candidate.sum(axis=1)
    ranks = np.argsort(~candidate, axis=1, kind="stable")[:, :int(nc.max(initial=0))]
    rows = np.take_along_axis(iou, ranks[:, :, None], axis=1)
    rows[np.isnan(rows)] = -np.inf  # NaN never passes the toolkit's '>', but argmax would pick it
    hit = caltech_matching(rows)
    matched = np.zeros(candidate.shape, bool)
    np.put_along_axis(matched, ranks, hit, axis=1)  # rows past an image's candidates never hit
    tp[src] = matched[row, rank]
    if compute_ji:
      gt_in_ignore[p_src] = (ioa_matrix(p, g) > IOU_THRESHOLD).any(axis=2)[p_row, p_rank]
      for k in np.flatnonzero(nc).tolist():
        i = images[k]
        ji_matched[i] = _ji_matched(rows[k, :nc[k], :npos[i]], ranks[k, :nc[k]], kept[i], ign_hit[k],
                                    gt_in_ignore[pos_starts[i]:pos_starts[i] + npos[i]])

  # Accumulation: TP / FP entries in image order, stable-sorted by score.
  listed = tp | ~in_ignore
  scores = dt_scores[listed]
  by_score = np.argsort(-scores, kind="stable")
  is_tp = tp[listed][by_score]
  num_pos = int(len(pos))
  tp_cum = np.cumsum(is_tp).astype(np.float64)
  fp_cum = np.cumsum(~is_tp).astype(np.float64)
  with np.errstate(divide="ignore", invalid="ignore"):
    recall = tp_cum / (tp_cum + (num_pos - tp_cum))  # the toolkit's tp / (tp + fn)
    precision = tp_cum / (tp_cum + fp_cum)
  miss = 1.0 - recall
  fppi = fp_cum / n_images
  result = {
      "AP": average_precision(recall, precision),
      "MR": log_average_miss_rate(fppi, miss),
      "Recall": float(recall[-1]) if len(recall) else (0.0 if num_pos else math.nan),
      "JI": None,
      "JI_per_threshold": None,
      "curve": {"fppi": fppi, "miss": miss, "recall": recall, "precision": precision, "score": scores[by_score]},
      "num_images": n_images,
      "num_positives": num_pos,
  }
  if compute_ji:
    # Per image and threshold: kept DTs / positives lying in ignore regions, minus the matched ones among them.
    dt_ign_cum = np.concatenate([[0], np.cumsum(in_ignore)])
    dt_ign = dt_ign_cum[dt_starts[:, None] + kept] - dt_ign_cum[dt_starts][:, None]
    gt_ign = np.bincount(pos_image[gt_in_ignore], minlength=n_images)
    k = ji_matched[:, :, 0]
    n = kept - (dt_ign - ji_matched[:, :, 1])
    m = npos[:, None] - (gt_ign[:, None] - ji_matched[:, :, 2])
    ratio = k / (m + n - k + EPS)
    counted = ((m != 0) | (n != 0)).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
      per_threshold = ratio.sum(axis=0) / counted
    result["JI_per_threshold"] = per_threshold
    result["JI"] = float(np.nanmax(per_threshold)) if np.isfinite(per_threshold).any() else math.nan
  return result
