"""Pictures a person can read: detections coloured by the CrowdHuman evaluator's own matching, contact sheets.

  match_image(gt_record, dt_record)          one image under the evaluator's matching (TP / FP / ignored / missed)
  operating_point(result, fppi=0.1)          the score at FPPI 0.1 on the evaluation's curve (default threshold)
  resolve_threshold(draw_score_thresh, result)  config value (None = the operating point) -> Threshold
  predict_threshold(draw_score_thresh, workdir)  --mode=predict: the config value, else the last evaluation's
  draw_match(image, match, threshold)        TP / FP / missed / ignore regions, scores, upscaled, caption, legend
  draw_predictions(image, boxes, scores, threshold, image_id)   --mode=predict: no GT, detections above threshold
  draw_assignment(image, points, strides, matched_gt, gt_boxes, gt_classes, gt_valid, title)  comparison tool
  contact_sheet(pictures, curve, title)      the pictures and the MR-FPPI curve in one grid (sheet_title: its title)
  evaluation_pictures(images, gt_records, dt_records, result, out_dir, step, ...)  all of it for one evaluation

Matching is never restated here: TP / FP and ignore decisions come from lla_jax/evaluation/crowdhuman.py
(its record parsing, clip_boxes, iou_matrix, ioa_matrix, caltech_matching, image_score_order), so a picture
cannot disagree with the metrics. Colours are the Okabe & Ito (2008) colour-blind-safe palette; every line has a
black halo so it shows on light and dark backgrounds, and missed persons are dashed (not only a colour).
"""
from __future__ import annotations

import dataclasses
import io
import json
import math
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lla_jax.evaluation import crowdhuman, image_score_order, plots

# Okabe & Ito, "Color Universal Design" (2008).
BLUE, VERMILLION, YELLOW = (0, 114, 178), (213, 94, 0), (240, 228, 66)
SKY_BLUE, BLUISH_GREEN, ORANGE, PURPLE = (86, 180, 233), (0, 158, 115), (230, 159, 0), (204, 121, 167)
BLACK, WHITE, GREY = (0, 0, 0), (255, 255, 255), (150, 150, 150)
TP_COLOUR, FP_COLOUR, MISSED_COLOUR, IGNORED_DT_COLOUR = BLUE, VERMILLION, YELLOW, GREY
PREDICTION_COLOUR = SKY_BLUE
IGNORE_SHADE = (255, 255, 255, 120)    # ignore regions: washed out in white (RGBA)
CAPTION_BACKGROUND = (32, 32, 32)
PERSON_COLOURS = (ORANGE, SKY_BLUE, BLUISH_GREEN, YELLOW, BLUE, VERMILLION, PURPLE)   # assignment picture

MIN_LONG_SIDE = 800          # small images are upscaled (nearest, integer factor) to at least this long side
DEFAULT_FPPI = 0.1           # the operating point the default threshold is read at
DEFAULT_SCORE_THRESH = 0.3   # when the evaluation has no curve (no detection at all) and for predict without eval
TENSORBOARD_LONG_SIDE = 2048  # the contact sheet sent to TensorBoard is shrunk to this long side


# ------------------------------------------------------------------------------------------------ matching

@dataclasses.dataclass(frozen=True)
class ImageMatch:
  """One image under the CrowdHuman evaluator's matching, in original pixels, boxes clipped as evaluated.

  boxes (N, 4) xyxy and scores (N,): detections in the DT record's order; tp (N,) bool; ignored (N,) bool: not a
  TP and IoA > 0.5 with an ignore region (dropped from the TP / FP list); matched_gt (N,) index into gt_boxes of
  a TP's person, else -1; gt_boxes (P, 4) positives; ignore_boxes (Q, 4) ignore regions.
  """
  image_id: str
  width: float
  height: float
  boxes: np.ndarray
  scores: np.ndarray
  tp: np.ndarray
  ignored: np.ndarray
  matched_gt: np.ndarray
  gt_boxes: np.ndarray
  ignore_boxes: np.ndarray

  def at(self, thresh: float) -> dict:
    """Masks and counts of the detections with score >= thresh: {"tp", "fp", "ignored" (N,) bool, "missed" (P,)
    bool (positives no TP above thresh took), "found_at" (P,) the score of the TP that takes each person in the
    whole list (NaN: none does), "counts": {TP, FP, missed, ignored}}. The evaluator matches in score order, so
    the decisions above a threshold do not depend on the detections below it, and a missed person is found once
    the threshold drops to its found_at."""
    shown = self.scores >= thresh
    tp = shown & self.tp
    ignored = shown & self.ignored
    fp = shown & ~self.tp & ~self.ignored
    missed = np.ones(len(self.gt_boxes), bool)
    missed[self.matched_gt[tp]] = False
    found_at = np.full(len(self.gt_boxes), np.nan)
    found_at[self.matched_gt[self.tp]] = self.scores[self.tp]
    counts = {"TP": int(tp.sum()), "FP": int(fp.sum()), "missed": int(missed.sum()), "ignored": int(ignored.sum())}
    return {"tp": tp, "fp": fp, "ignored": ignored, "missed": missed, "found_at": found_at, "counts": counts}


def match_image(gt_record: dict, dt_record: dict | None = None, width=None, height=None) -> ImageMatch:
  """The CrowdHuman evaluator's matching of one image (crowdhuman.evaluate does the same per bucket of images).

  gt_record {ID, gtboxes} and dt_record {ID, width, height, dtboxes} as crowdhuman.evaluate reads them (same
  parsing and error messages); without dt_record the image has no detections and width / height give its size.
  """
  if dt_record is None:
    if width is None or height is None:
      raise ValueError(f"match_image({gt_record.get('ID')!r}): without a DT record pass width and height")
    dt_record = {"ID": gt_record.get("ID"), "width": width, "height": height, "dtboxes": []}
  gt = crowdhuman._GroundTruth([gt_record])    # the evaluator's reading: positive = person tag, not ignore
  dt = crowdhuman._Detections([dt_record], gt)
  w, h = float(gt.width[0]), float(gt.height[0])
  gt_boxes = crowdhuman.clip_boxes(gt.boxes, np.full(len(gt.boxes), w), np.full(len(gt.boxes), h))
  pos, ign = gt_boxes[gt.positive], gt_boxes[~gt.positive]
  order = image_score_order(dt.image, dt.scores, 1)
  n = len(order)
  d = crowdhuman.clip_boxes(dt.boxes[order], np.full(n, w), np.full(n, h))
  iou = crowdhuman.iou_matrix(d[None], pos[None])[0]
  in_ignore = (crowdhuman.ioa_matrix(d[None], ign[None])[0] > crowdhuman.IOU_THRESHOLD).any(axis=1)
  candidate = np.flatnonzero((iou > crowdhuman.IOU_THRESHOLD).any(axis=1))
  rows = iou[candidate]
  rows[np.isnan(rows)] = -np.inf
  hit = crowdhuman.caltech_matching(rows[None])[0]
  # caltech_matching decides whether a detection is a TP; its person is the one that greedy step took: the
  # highest-IoU untaken positive (argmax, as caltech_matching). Steps without a hit take nothing.
  taken = np.zeros(len(pos), bool)
  person = np.full(n, -1)
  for k in np.flatnonzero(hit):
    g = int(np.where(taken, -np.inf, rows[k]).argmax())
    taken[g] = True
    person[candidate[k]] = g
  tp = person >= 0
  back = np.empty(n, np.int64)
  back[order] = np.arange(n)          # score order -> record order
  box_out = np.empty_like(d)
  box_out[order] = d
  return ImageMatch(image_id=str(gt.ids[0]), width=w, height=h, boxes=box_out, scores=dt.scores, tp=tp[back],
                    ignored=(in_ignore & ~tp)[back], matched_gt=person[back], gt_boxes=pos, ignore_boxes=ign)


# ------------------------------------------------------------------------------------------------ threshold

@dataclasses.dataclass(frozen=True)
class Threshold:
  """The score threshold of the pictures, how it was chosen (said in the caption) and, when an evaluation curve
  is known, its point there: FPPI and miss rate of all detections with score >= score."""
  score: float
  note: str
  fppi: float | None = None
  miss: float | None = None


def score_text(score) -> str:
  """A score as the pictures print it: 2 decimals, 2 significant digits below 0.01 (an untrained head's)."""
  score = float(score)
  return f"{score:.2f}" if score >= 0.01 or score == 0 else f"{score:.2g}"


def _curve_at(curve, score):
  """(fppi, miss) of the curve after every entry with score >= `score`, or None above the first entry."""
  k = int(np.searchsorted(-np.asarray(curve["score"]), -score, side="right")) - 1
  return None if k < 0 else (float(curve["fppi"][k]), float(curve["miss"][k]))


def operating_point(result: dict, fppi: float = DEFAULT_FPPI):
  """The score of the curve point the evaluator's MR samples at `fppi` (the first entry whose FPPI reaches it,
  else the last entry): {"score", "fppi", "miss"} (FPPI and miss rate of all detections with score >= that
  score), or None when the curve is empty. result: crowdhuman.evaluate's dict ("curve" has a "score" per entry)."""
  curve = result["curve"]
  if len(curve["score"]) == 0:
    return None
  k = min(int(np.searchsorted(curve["fppi"], fppi, side="left")), len(curve["fppi"]) - 1)
  score = float(curve["score"][k])
  at_fppi, miss = _curve_at(curve, score)
  return {"score": score, "fppi": at_fppi, "miss": miss}


def resolve_threshold(draw_score_thresh=None, result: dict | None = None, fppi: float = DEFAULT_FPPI,
                      split: str = "") -> Threshold:
  """config.test.draw_score_thresh (None = the evaluation's operating point at `fppi`) -> Threshold."""
  where = f" on {split}" if split else ""
  if draw_score_thresh is not None:
    score = float(draw_score_thresh)
    at = _curve_at(result["curve"], score) if result is not None else None
    stats = f" ({where.strip()}: FPPI {at[0]:.2f}, miss rate {100 * at[1]:.1f}%)" if at else ""
    return Threshold(score, f"score >= {score_text(score)}: test.draw_score_thresh{stats}", *(at or (None, None)))
  point = operating_point(result, fppi) if result is not None else None
  if point is None:
    return Threshold(DEFAULT_SCORE_THRESH, f"score >= {DEFAULT_SCORE_THRESH:.2f} (no evaluation curve to choose from)")
  return Threshold(point["score"], f"score >= {score_text(point['score'])}: operating point at FPPI {fppi:g}{where} "
                                   f"(FPPI {point['fppi']:.2f}, miss rate {100 * point['miss']:.1f}%)",
                   point["fppi"], point["miss"])


def predict_threshold(draw_score_thresh=None, workdir: str | None = None) -> Threshold:
  """--mode=predict's threshold: config.test.draw_score_thresh, else the one the last evaluation drew with
  (workdir/eval_metrics.json "pictures": {"threshold", "threshold_note"}, written by evaluate), else
  DEFAULT_SCORE_THRESH."""
  if draw_score_thresh is not None:
    return Threshold(float(draw_score_thresh), f"score >= {score_text(draw_score_thresh)}: test.draw_score_thresh")
  path = os.path.join(workdir, "eval_metrics.json") if workdir else None
  if path and os.path.exists(path):
    with open(path) as f:
      drawn = json.load(f).get("pictures") or {}
    if drawn.get("threshold") is not None:
      return Threshold(float(drawn["threshold"]), f"{drawn.get('threshold_note', '')} (the workdir's last evaluation)")
  return Threshold(DEFAULT_SCORE_THRESH, f"score >= {DEFAULT_SCORE_THRESH:.2f} (default: no evaluation in the "
                                         "workdir to read the FPPI 0.1 operating point from)")


# ------------------------------------------------------------------------------------------------ drawing

def font(size: int):
  """Pillow's scalable built-in font (Pillow >= 10.1) of `size` pixels, else its fixed bitmap font."""
  try:
    return ImageFont.load_default(size=size)
  except TypeError:
    return ImageFont.load_default()


def line_height(fnt) -> int:
  """Pixel height of a line of text in `fnt` (ascender to descender), without spacing."""
  _, top, _, bottom = fnt.getbbox("Ag")
  return bottom - top


def upscale_factor(height: int, width: int, min_long_side: int = MIN_LONG_SIDE) -> int:
  """The integer nearest-neighbour factor that brings the long side to at least min_long_side (>= 1)."""
  return max(1, math.ceil(min_long_side / max(height, width)))


class Canvas:
  """An image upscaled (nearest) by an integer factor, drawn on in the source pixels' coordinates scaled by
  `scale` (x, y): original-image boxes map to canvas pixels as box * scale * factor. Line width ~ long side / 320."""

  def __init__(self, image, scale=(1.0, 1.0), min_long_side: int = MIN_LONG_SIDE):
    image = np.asarray(image, np.uint8)
    h, w = image.shape[:2]
    self.factor = upscale_factor(h, w, min_long_side)
    self.image = Image.fromarray(image).resize((w * self.factor, h * self.factor), Image.NEAREST).convert("RGBA")
    self.sx, self.sy = scale[0] * self.factor, scale[1] * self.factor
    long_side = max(self.image.size)
    self.line = max(2, round(long_side / 320))
    self.font = font(max(11, round(long_side / 60)))
    self.draw = ImageDraw.Draw(self.image)

  def xyxy(self, box):
    return (float(box[0]) * self.sx, float(box[1]) * self.sy, float(box[2]) * self.sx, float(box[3]) * self.sy)

  def shade(self, boxes, fill=IGNORE_SHADE):
    """Semi-transparent fill of boxes (alpha composite), with a thin grey outline."""
    if len(boxes) == 0:
      return
    layer = Image.new("RGBA", self.image.size, (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    for b in boxes:
      d.rectangle(self.xyxy(b), fill=fill, outline=GREY + (255,), width=1)
    self.image.alpha_composite(layer)

  def box(self, box, colour, width=None, dashed=False):
    """A box outline of `width` px drawn inward from the box edge, with a 1 px black halo on both sides;
    dashed: dashes of 4 line widths."""
    x0, y0, x1, y1 = self.xyxy(box)
    w = width or self.line
    x1, y1 = max(x1, x0 + 2 * w), max(y1, y0 + 2 * w)   # a degenerate box still shows
    sides = [(x0, y0, x1, y0 + w), (x0, y1 - w, x1, y1), (x0, y0, x0 + w, y1), (x1 - w, y0, x1, y1)]
    for halo, fill in ((1, BLACK), (0, colour)):
      for sx0, sy0, sx1, sy1 in sides:
        for a0, a1, b0, b1 in _dashes(sx0, sy0, sx1, sy1, 4 * w if dashed else 0):
          self.draw.rectangle([a0 - halo, b0 - halo, a1 + halo - 1, b1 + halo - 1], fill=fill)

  def label(self, box, text, colour):
    """Text in a box-coloured tag just above the box's top-left corner (inside when at the top border)."""
    x0, y0, _, _ = self.xyxy(box)
    l, t, r, b = self.draw.textbbox((0, 0), text, font=self.font)
    pad, th = 2, b - t + 4
    ty = y0 - th if y0 - th >= 0 else y0
    self.draw.rectangle([x0, ty, x0 + r - l + 2 * pad, ty + th], fill=colour, outline=BLACK)
    ink = BLACK if sum(colour) > 380 else WHITE
    self.draw.text((x0 + pad - l, ty + pad - t), text, fill=ink, font=self.font)

  def finish(self, lines, legend):
    return with_caption(self.image.convert("RGB"), lines, legend, self.font)   # see with_caption


def _dashes(x0, y0, x1, y1, dash):
  """An axis-aligned band split into dashes of length `dash` with gaps of dash / 2 (0 = one piece)."""
  horizontal = (x1 - x0) >= (y1 - y0)
  start, end = (x0, x1) if horizontal else (y0, y1)
  pieces = [(s, min(s + dash, end)) for s in np.arange(start, end, 1.5 * dash)] if dash > 0 else [(start, end)]
  return [(a, b, y0, y1) if horizontal else (x0, x1, a, b) for a, b in pieces]


def _wrap(text, draw, fnt, width):
  """Splits text at ' | ' into lines no wider than `width` where possible."""
  lines, current = [], ""
  for part in text.split(" | "):
    trial = part if not current else current + " | " + part
    if current and draw.textlength(trial, font=fnt) > width:
      lines.append(current)
      current = part
    else:
      current = trial
  return lines + [current]


def with_caption(image, lines, legend, fnt):
  """image (RGB PIL) with a dark band below holding `lines` (strings) and a legend row of (kind, colour, text),
  kind in {"box", "dashed", "shade", "thin", "dot"}. Returns a new RGB image of the same width."""
  width = image.width
  probe = ImageDraw.Draw(image)
  t = fnt.getbbox("Ag")[1]
  line_h = line_height(fnt) + 8
  pad = 8
  text_lines = [w for line in lines for w in _wrap(line, probe, fnt, width - 2 * pad)]
  items, x, rows = [], pad, 1
  for kind, colour, text in legend:   # flow layout of the legend items
    item_w = 2 * line_h + math.ceil(probe.textlength(text, font=fnt)) + 16
    if x + item_w > width - pad and x > pad:
      x, rows = pad, rows + 1
    items.append((kind, colour, text, x, rows - 1))
    x += item_w
  band = pad + line_h * (len(text_lines) + (rows if legend else 0)) + pad
  out = Image.new("RGB", (width, image.height + band), CAPTION_BACKGROUND)
  out.paste(image, (0, 0))
  d = ImageDraw.Draw(out)
  y = image.height + pad
  for line in text_lines:
    d.text((pad, y - t), line, fill=WHITE, font=fnt)
    y += line_h
  for kind, colour, text, ix, row in items:
    iy = y + row * line_h
    _swatch(d, kind, colour, ix, iy + 2, 2 * line_h - 8, line_h - 8)
    d.text((ix + 2 * line_h, iy - t), text, fill=WHITE, font=fnt)
  return out


def _swatch(d, kind, colour, x, y, w, h):
  """A legend symbol of kind box / dashed / shade / thin / dot in a w x h cell at (x, y)."""
  if kind == "shade":
    a = IGNORE_SHADE[3] / 255   # the shade over the caption background
    fill = tuple(round(a * s + (1 - a) * b) for s, b in zip(IGNORE_SHADE[:3], CAPTION_BACKGROUND))
    d.rectangle([x, y, x + w, y + h], fill=fill, outline=GREY)
  elif kind == "dot":
    r = h // 2
    d.ellipse([x + w // 2 - r, y, x + w // 2 + r, y + h], fill=colour, outline=BLACK)
  elif kind == "dashed":
    for s in range(x, x + w, 9):
      d.rectangle([s, y + h // 2 - 2, min(s + 5, x + w), y + h // 2 + 2], fill=colour)
  else:
    d.rectangle([x, y, x + w, y + h], outline=colour, width=1 if kind == "thin" else 3)


MATCH_LEGEND = (("box", TP_COLOUR, "true positive"), ("box", FP_COLOUR, "false positive"),
                ("dashed", MISSED_COLOUR, "missed person (tag: the lower score that finds it)"),
                ("shade", None, "ignore region"),
                ("thin", IGNORED_DT_COLOUR, "detection in ignore region (not counted)"))


def draw_match(image, match: ImageMatch, threshold: Threshold, title: str = "",
               min_long_side: int = MIN_LONG_SIDE) -> Image.Image:
  """The evaluation picture of one image: ignore regions shaded, missed persons dashed, detections with score >=
  threshold.score as TP / FP (ignored ones thin grey), each labelled with its score; upscaled; caption with the
  image ID, the counts and how the threshold was chosen; legend.

  image (h, w, 3) uint8 at any resolution of the original (match.width x match.height; the boxes are scaled).
  """
  image = np.asarray(image)
  c = Canvas(image, (image.shape[1] / match.width, image.shape[0] / match.height), min_long_side)
  at = match.at(threshold.score)
  c.shade(match.ignore_boxes)
  for b in match.gt_boxes[at["missed"]]:
    c.box(b, MISSED_COLOUR, dashed=True)
  order = np.argsort(match.scores, kind="stable")    # higher scores drawn last, on top
  groups = ((at["ignored"], IGNORED_DT_COLOUR, 1), (at["fp"], FP_COLOUR, None), (at["tp"], TP_COLOUR, None))
  for mask, colour, width in groups:
    for i in order[mask[order]]:
      c.box(match.boxes[i], colour, width)
  for g in np.flatnonzero(at["missed"] & ~np.isnan(at["found_at"])):
    c.label(match.gt_boxes[g], score_text(at['found_at'][g]), MISSED_COLOUR)
  for mask, colour, _ in groups:
    for i in order[mask[order]]:
      c.label(match.boxes[i], score_text(match.scores[i]), colour)
  n = at["counts"]
  head = f"{match.image_id}{'  ' + title if title else ''}"
  lines = [f"{head} | TP {n['TP']}, FP {n['FP']}, missed {n['missed']} of {len(match.gt_boxes)}, "
           f"ignored {n['ignored']} | {threshold.note}"]
  return c.finish(lines, MATCH_LEGEND)


def draw_predictions(image, boxes, scores, threshold: Threshold, image_id: str, title: str = "",
                     min_long_side: int = MIN_LONG_SIDE) -> Image.Image:
  """--mode=predict picture (no GT): detections with score >= threshold.score, labelled with their scores.
  image (h, w, 3) uint8; boxes (N, 4) xyxy in the image's pixels; scores (N,)."""
  boxes, scores = np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(scores, np.float64).reshape(-1)
  c = Canvas(image, (1.0, 1.0), min_long_side)
  keep = np.flatnonzero(scores >= threshold.score)
  keep = keep[np.argsort(scores[keep], kind="stable")]
  for i in keep:
    c.box(boxes[i], PREDICTION_COLOUR)
  for i in keep:
    c.label(boxes[i], score_text(scores[i]), PREDICTION_COLOUR)
  lines = [f"{image_id}{'  ' + title if title else ''} | {len(keep)} detections | {threshold.note}"]
  return c.finish(lines, (("box", PREDICTION_COLOUR, "detection (label: score)"),))


def draw_assignment(image, points, strides, matched_gt, gt_boxes, gt_classes, gt_valid, title: str = "",
                    min_long_side: int = MIN_LONG_SIDE) -> Image.Image:
  """The positives of one assigner on one image, legible: every positive point a dot in the colour of the person
  it was given to, joined to that person's box centre by a thin line (so the colour is not the only cue), dot
  size growing with the FPN stride; ignore regions shaded and their points grey; upscaled; caption; legend.

  image (h, w, 3) uint8; points (A, 2) xy and strides (A,) in image pixels; matched_gt (A,) GT index or -1;
  gt_boxes (M, 4) xyxy, gt_classes (M,) (< 0: ignore region), gt_valid (M,) bool.
  """
  image = np.asarray(image)
  h, w = image.shape[:2]
  gt_boxes, gt_classes, gt_valid = np.asarray(gt_boxes), np.asarray(gt_classes), np.asarray(gt_valid, bool)
  c = Canvas(image, (1.0, 1.0), min_long_side)
  ignore = gt_valid & (gt_classes < 0)
  c.shade(gt_boxes[ignore])
  colour = [GREY if gt_classes[g] < 0 else PERSON_COLOURS[g % len(PERSON_COLOURS)] for g in range(len(gt_boxes))]
  people = np.flatnonzero(gt_valid & (gt_classes >= 0))
  for g in people:
    c.box(gt_boxes[g], colour[g], width=max(1, c.line // 2))
  matched_gt, strides = np.asarray(matched_gt), np.asarray(strides, np.float64)
  shown = [a for a in np.flatnonzero(matched_gt >= 0) if points[a][0] < w and points[a][1] < h]
  for a in shown:
    g = matched_gt[a]
    x, y = float(points[a][0]) * c.sx, float(points[a][1]) * c.sy
    gx0, gy0, gx1, gy1 = c.xyxy(gt_boxes[g])
    c.draw.line([x, y, (gx0 + gx1) / 2, (gy0 + gy1) / 2], fill=colour[g], width=1)
  for a in shown:
    x, y = float(points[a][0]) * c.sx, float(points[a][1]) * c.sy
    r = _dot_radius(strides[a], c.factor)
    c.draw.ellipse([x - r, y - r, x + r, y + r], fill=colour[matched_gt[a]], outline=BLACK)
  n_ignored = sum(int(gt_classes[matched_gt[a]] < 0) for a in shown)
  levels = ", ".join(str(int(s)) for s in sorted(set(strides.tolist())))
  lines = [f"{title + ' | ' if title else ''}{len(shown) - n_ignored} positive points on {len(people)} persons, "
           f"{n_ignored} points on ignore regions | dot size: FPN stride {levels}"]
  legend = (("dot", ORANGE, "positive point, coloured as its person (line to its box centre)"),
            ("box", ORANGE, "person box"), ("shade", None, "ignore region"), ("dot", GREY, "point on an ignore region"))
  return c.finish(lines, legend)


def _dot_radius(stride, factor):
  """Dot radius in canvas pixels: 1 source pixel at stride 8, +0.75 per coarser level (at least 2 canvas px)."""
  return (1.0 + 0.75 * max(math.log2(float(stride)) - 3, 0)) * max(factor, 2)


# ------------------------------------------------------------------------------------------------ sheets

def grid(tiles, columns: int, background=WHITE, gap: int = 8) -> Image.Image:
  """PIL tiles in a grid of `columns`, each in a cell of the largest tile's size (top-left aligned)."""
  cw, ch = max(t.width for t in tiles), max(t.height for t in tiles)
  rows = -(-len(tiles) // columns)
  out = Image.new("RGB", (columns * cw + (columns - 1) * gap, rows * ch + (rows - 1) * gap), background)
  for k, t in enumerate(tiles):
    out.paste(t.convert("RGB"), ((k % columns) * (cw + gap), (k // columns) * (ch + gap)))
  return out


def _as_image(picture):
  if isinstance(picture, Image.Image):
    return picture.convert("RGB")
  if isinstance(picture, (str, os.PathLike, io.IOBase)):
    with Image.open(picture) as im:
      return im.convert("RGB")
  return Image.fromarray(np.asarray(picture, np.uint8)).convert("RGB")


def contact_sheet(pictures, curve=None, title: str = "", note: str = "", columns=None) -> Image.Image:
  """The pictures (PIL images, arrays or paths) and the MR-FPPI curve (a path, e.g. mr_fppi_step{N}.png, PIL or
  array; scaled to the picture size, `note` written under it) in one grid (default ceil(sqrt(n)) columns) under
  a title band. Returns an RGB PIL image."""
  tiles = [_as_image(p) for p in pictures]
  if curve is not None:
    curve = _as_image(curve)
    cw, ch = (max(t.width for t in tiles), max(t.height for t in tiles)) if tiles else curve.size
    scale = min(cw / curve.width, (ch - 80) / curve.height) if note else min(cw / curve.width, ch / curve.height)
    curve = curve.resize((max(1, round(curve.width * scale)), max(1, round(curve.height * scale))), Image.LANCZOS)
    tile = Image.new("RGB", (cw, ch), WHITE)
    tile.paste(curve, ((cw - curve.width) // 2, 0))
    if note:
      d = ImageDraw.Draw(tile)
      fnt = font(max(12, round(cw / 60)))
      y = curve.height + 8
      for line in _wrap(note, d, fnt, cw - 16):
        d.text((8, y), line, fill=BLACK, font=fnt)
        y += line_height(fnt) + 8
    tiles.append(tile)
  if not tiles:
    raise ValueError("contact_sheet: no pictures and no curve")
  columns = columns or math.ceil(math.sqrt(len(tiles)))
  body = grid(tiles, columns)
  if not title:
    return body
  fnt = font(max(14, round(body.width / 90)))
  head = 2 * line_height(fnt)
  out = Image.new("RGB", (body.width, body.height + head), WHITE)
  top = fnt.getbbox("Ag")[1]
  ImageDraw.Draw(out).text((8, (head - line_height(fnt)) // 2 - top), title, fill=BLACK, font=fnt)
  out.paste(body, (0, head))
  return out


def curve_figure(result: dict, threshold: Threshold | None = None, title: str = "") -> Image.Image:
  """The MR-FPPI figure of a crowdhuman.evaluate result (plots.plot_mr_fppi), with the pictures' threshold marked
  as a vertical line up to its point on the curve. Returns an RGB PIL image."""
  curve = result["curve"]
  curves = {"CrowdHuman protocol": (curve["fppi"], curve["miss"], result["MR"])}
  if threshold is not None and threshold.fppi is not None:
    x = max(threshold.fppi, plots.FPPI_RANGE[0])
    curves[f"pictures: score >= {score_text(threshold.score)}"] = (np.array([x, x]), np.array([0.0, threshold.miss]))
  buf = io.BytesIO()
  plots.plot_mr_fppi(curves, buf, title=title)
  return _as_image(io.BytesIO(buf.getvalue()))


def sheet_title(prefix: str, metrics: dict, shown: int) -> str:
  """'prefix: MR^-2 58.88%  AP50 77.45%  Recall 93.14%  JI 57.73% | first 8 of 100 images' from an evaluation's
  metrics dict (fractions; None / absent ones left out; num_images)."""
  names = (("MR", "MR^-2"), ("AP", "AP50"), ("Recall", "Recall"), ("JI", "JI"))
  values = "  ".join(f"{name} {100 * metrics[k]:.2f}%" for k, name in names
                     if metrics.get(k) is not None and not math.isnan(metrics[k]))
  count = f"first {shown} of {metrics['num_images']} images" if "num_images" in metrics else f"{shown} images"
  return f"{prefix}: {values} | {count}" if values else f"{prefix} | {count}"


def save_png(image: Image.Image, path: str, max_bytes=None) -> str:
  """Writes a PNG atomically (temporary name + rename). With max_bytes, a larger file is written with a
  256-colour palette instead (pictures and curves have few colours; the text stays sharp). zlib's default
  level, not PIL's optimize=True: that searches for ~2 % smaller files at ~9x the time (2.7 s for one
  contact sheet of the quick start)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
  buf = io.BytesIO()
  image.save(buf, format="PNG")
  if max_bytes is not None and buf.tell() > max_bytes:
    buf = io.BytesIO()
    _palette_image(image.convert("RGB")).save(buf, format="PNG")
  with open(path + ".tmp", "wb") as f:
    f.write(buf.getvalue())
  os.replace(path + ".tmp", path)
  return path


_EXACT_COLOURS = (TP_COLOUR, FP_COLOUR, MISSED_COLOUR, IGNORED_DT_COLOUR, PREDICTION_COLOUR, CAPTION_BACKGROUND, BLACK,
                  WHITE) + PERSON_COLOURS


def _palette_image(image):
  """image (RGB) with 256 colours: the drawing colours exactly, the rest a median-cut palette of the image."""
  exact = list(dict.fromkeys(_EXACT_COLOURS))
  rest = image.quantize(256 - len(exact), method=Image.Quantize.MEDIANCUT).getpalette()[:3 * (256 - len(exact))]
  palette = Image.new("P", (1, 1))
  palette.putpalette([v for c in exact for v in c] + rest)
  return image.quantize(palette=palette, dither=Image.Dither.NONE)


def evaluation_pictures(images: dict, gt_records, dt_records, result, out_dir: str, step: int,
                        draw_score_thresh=None, curve=None, title: str = "", split: str = "",
                        fppi: float = DEFAULT_FPPI) -> dict:
  """All pictures of one evaluation: out_dir/{ID}_step{N}.png per image and out_dir/sheet_step{N}.png.

  images {ID: (h, w, 3) uint8} (insertion order = sheet order; any resolution of the original image);
  gt_records / dt_records: the odgt records crowdhuman.evaluate read (dt_records with the scores as written, so
  the pictures match the metrics); result: its dict (None: no CrowdHuman GT, then the pictures show detections
  only, gt_records may be None); draw_score_thresh: config.test.draw_score_thresh (None = the score at FPPI
  `fppi`); curve: a figure for the sheet (path / PIL / array; e.g. the CityPersons mr_fppi_step{N}.png), None =
  the CrowdHuman curve of `result` with the threshold marked (curve_figure); title: the sheet's (sheet_title).
  Returns {"pictures": [paths], "sheet": path, "sheet_image": (H, W, 3) uint8 for TensorBoard (the sheet, long
  side at most TENSORBOARD_LONG_SIDE; writers.MetricWriter.write_images), "threshold": score,
  "threshold_note": str}.
  """
  threshold = resolve_threshold(draw_score_thresh, result, fppi, split)
  gt_by_id = {r["ID"]: r for r in gt_records or []}
  dt_by_id = {r["ID"]: r for r in dt_records}
  paths, pictures = [], []
  for image_id, image in images.items():
    dt = dt_by_id.get(image_id)
    if result is not None:
      h, w = np.asarray(image).shape[:2]
      match = match_image(gt_by_id[image_id], dt, width=w, height=h)
      picture = draw_match(image, match, threshold, title=f"step {step}")
    else:   # no GT: the detections only, scaled from the record's size to the image's
      image = np.asarray(image)
      dets = dt["dtboxes"] if dt else []
      boxes = np.asarray([b["box"] for b in dets], np.float64).reshape(-1, 4)
      boxes[:, 2:] += boxes[:, :2]
      if dt:
        boxes *= np.array([image.shape[1] / dt["width"], image.shape[0] / dt["height"]] * 2)
      picture = draw_predictions(image, boxes, [b["score"] for b in dets], threshold, image_id, title=f"step {step}")
    paths.append(save_png(picture, os.path.join(out_dir, f"{image_id}_step{step}.png")))
    pictures.append(picture)
  if curve is None and result is not None:
    curve = curve_figure(result, threshold, title=f"{split + ', ' if split else ''}step {step}")
  note = f"Pictures: {threshold.note}."
  sheet = contact_sheet(pictures, curve, title=title, note=note)
  sheet_path = save_png(sheet, os.path.join(out_dir, f"sheet_step{step}.png"))
  sheet.thumbnail((TENSORBOARD_LONG_SIDE, TENSORBOARD_LONG_SIDE), Image.LANCZOS)   # in place, never enlarges
  return {"pictures": paths, "sheet": sheet_path, "sheet_image": np.asarray(sheet), "threshold": threshold.score,
          "threshold_note": threshold.note}
