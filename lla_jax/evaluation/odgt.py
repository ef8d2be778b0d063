"""CrowdHuman odgt files: one JSON object per line (the CrowdHuman release format, also the CrowdDet /
cvpods toolkit's detection format). The one module of lla_jax that reads and writes them.

  GT line         {ID, gtboxes: [{tag, fbox, vbox, hbox, extra: {ignore, box_id}, head_attr}], [width, height]}
  detection line  {ID, width, height, dtboxes: [{box: [x, y, w, h], score, tag: 1}]}
Boxes are [x, y, w, h] in original-image pixels (no +1).
"""
from __future__ import annotations

import json

import numpy as np

from lla_jax import atomic
from lla_jax.evaluation import InputError, text


class OdgtRecords(list):
  """A list of odgt records that remembers its file and 1-based line numbers, for error messages."""

  def __init__(self, records, path, lines):
    super().__init__(records)
    self.path = path
    self.lines = lines


def load(path) -> list[dict]:
  """Reads an odgt file (UTF-8, one JSON object per line; blank lines skipped) -> list of records (an
  OdgtRecords); an InputError names the file and line of a malformed line, or an empty file."""
  records, lines = [], []
  for n, line in text.lines(path):   # UTF-8; a UTF-8 byte-order mark is dropped
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      raise InputError(f"{path}:{n}: not a JSON object ({e.msg}, column {e.colno}); expected one JSON object "
                       "per line") from None
    if not isinstance(record, dict):
      raise InputError(f"{path}:{n}: expected a JSON object, got {type(record).__name__}")
    records.append(record)
    lines.append(n)
  if not records:
    raise InputError(f"{path}: no records (an empty file); expected one JSON object per line, one line per image")
  return OdgtRecords(records, str(path), lines)


def write(path, records, compact: bool = False) -> str:
  """Writes records as odgt lines to `path` atomically; compact: no spaces after ',' and ':'."""
  separators = (",", ":") if compact else None
  return atomic.write_text(path, "".join(json.dumps(rec, separators=separators) + "\n" for rec in records))


def xywh(box, decimals: int | None = 2) -> list:
  """xyxy -> [x, y, w, h], rounded to `decimals` (0.01 px: what the detection files hold) unless None."""
  out = [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]   # w, h in the box dtype
  return out if decimals is None else [round(v, decimals) for v in out]


def detection_line(image_id: str, width: int, height: int, boxes, scores, rounded: bool = True) -> dict:
  """One detection line from xyxy boxes (N, 4) and scores (N,) in original pixels; rounded: boxes to
  0.01 px and scores to 5 decimals (the evaluation files), else full float precision."""
  dt = [{"box": xywh(b, 2 if rounded else None), "score": round(float(s), 5) if rounded else float(s), "tag": 1}
        for b, s in zip(boxes, scores)]
  return {"ID": image_id, "width": int(width), "height": int(height), "dtboxes": dt}


def detections_of(results, rec):
  """(boxes (N, 4) xyxy, scores (N,)) of record `rec` in {image index: (boxes, scores)}; none when absent."""
  return results.get(int(rec["index"]), (np.zeros((0, 4)), np.zeros((0,))))


def detections_from_results(results, records) -> list:
  """Detection lines of every record (in record order) from {image index: (boxes, scores)} in original
  pixels, rounded as the evaluation files hold them."""
  out = []
  for rec in records:
    boxes, scores = detections_of(results, rec)
    out.append(detection_line(rec["ID"], rec["width"], rec["height"], boxes, scores))
  return out


# The GT box each box type evaluates (CrowdDet / cvpods toolkit `eval_mode`: 0 body = fbox, 1 head = hbox);
# "visible" evaluates vbox under the body rules.
BOX_KEYS = {"full": "fbox", "visible": "vbox", "head": "hbox"}


def gt_on_box(records, box: str) -> list[dict]:
  """GT records evaluated on another box type: each GT box's "fbox" (the box the CrowdHuman evaluator
  reads) replaced by its "vbox" ("visible") or "hbox" ("head"); records unchanged for "full".

  Ignore handling follows CrowdDet's eval modes (CrowdDet lib/evaluate/APMRToolkits/image.py): a box is
  an ignore region when its tag is not "person" or extra.ignore != 0, and in head mode also when
  head_attr.ignore != 0 (a head that is not visible); such boxes get extra.ignore = 1 here. A missing
  vbox / hbox is an error naming the image and the box.
  """
  if box not in BOX_KEYS:
    raise ValueError(f"box type {box!r}: expected one of {', '.join(map(repr, BOX_KEYS))}")
  if box == "full":
    return list(records)
  key, out = BOX_KEYS[box], []
  for i, rec in enumerate(records):
    boxes = []
    for j, b in enumerate(rec.get("gtboxes", [])):
      if key not in b:
        raise InputError(f"GT record {i + 1} (ID {rec.get('ID')!r}), gtboxes[{j}]: no {key!r} to evaluate the "
                         f"{box} boxes on")
      b = dict(b, fbox=b[key])
      if box == "head" and (b.get("head_attr") or {}).get("ignore", 0):
        b["extra"] = dict(b.get("extra") or {}, ignore=1)
      boxes.append(b)
    out.append(dict(rec, gtboxes=boxes))
  return out
