"""CrowdHuman-format ground truth (odgt: one JSON object per line, as released on crowdhuman.org), no TensorFlow.

A GT line is {"ID": str, "gtboxes": [{"tag", "fbox", "vbox", "hbox", "extra": {"ignore", "box_id"},
"head_attr": {}}]} with boxes [x, y, w, h] in original-image pixels (no +1). Lines written here also
carry "width" and "height" (the public CrowdHuman files do not; the evaluator takes the first size it
finds, so an extra, correct size is harmless).
"""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from lla_jax import atomic
from lla_jax.evaluation import text

_BOX_KEYS = ("fbox", "vbox", "hbox")


def odgt_line(image_id: str, fbox, vbox, hbox, tags, ignore, height: int | None = None,
              width: int | None = None) -> dict:
  """One GT line from per-box arrays: fbox/vbox/hbox (N, 4) [x, y, w, h], tags (N,) str, ignore (N,) bool."""
  fbox, vbox, hbox = (np.asarray(b, np.float64).reshape(-1, 4) for b in (fbox, vbox, hbox))
  ignore = np.asarray(ignore, bool).reshape(-1)
  n = len(fbox)
  if not (len(vbox) == len(hbox) == len(tags) == len(ignore) == n):
    raise ValueError(f"odgt_line({image_id!r}): box arrays disagree in length: fbox {n}, vbox {len(vbox)}, "
                     f"hbox {len(hbox)}, tag {len(tags)}, ignore {len(ignore)}")
  boxes = []
  for i in range(n):
    boxes.append({"tag": str(tags[i]), "fbox": [float(v) for v in fbox[i]], "vbox": [float(v) for v in vbox[i]],
                  "hbox": [float(v) for v in hbox[i]], "extra": {"ignore": int(ignore[i]), "box_id": i},
                  "head_attr": {}})
  line = {"ID": str(image_id), "gtboxes": boxes}
  if height is not None:
    line["height"], line["width"] = int(height), int(width)
  return line


def write_odgt(path: str, records) -> str:
  """Write GT lines (dicts as from `odgt_line`) to `path`, atomically (lla_jax/atomic.py: temporary file +
  rename), so a reader never sees a half-written file and concurrent writers of the same content cannot clash."""
  lines = []
  for i, rec in enumerate(records):
    if not isinstance(rec, dict) or "ID" not in rec or "gtboxes" not in rec:
      raise ValueError(f"write_odgt({path}): record {i} must be a dict with 'ID' and 'gtboxes', got "
                       f"{type(rec).__name__} with keys {sorted(rec) if isinstance(rec, dict) else '-'}")
    lines.append(json.dumps(rec, separators=(",", ":")) + "\n")
  return atomic.write_text(path, "".join(lines))


def _check_box(value, where, key):
  if (not isinstance(value, (list, tuple)) or len(value) != 4
      or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in value)):
    raise ValueError(f"{where}: '{key}' must be 4 finite numbers [x, y, w, h], got {value!r}")


def check_odgt_line(rec, where: str) -> dict:
  """Validate one parsed GT line: a JSON object with a string "ID" and a list "gtboxes" whose entries
  have a string "tag" and a 4-number finite "fbox" (vbox/hbox checked when present, "extra" and
  "head_attr" objects when present). Errors say `where`. Returns rec."""
  if not isinstance(rec, dict):
    raise ValueError(f"{where}: expected a JSON object, got {type(rec).__name__}")
  if not isinstance(rec.get("ID"), str):
    raise ValueError(f"{where}: missing or non-string 'ID'")
  boxes = rec.get("gtboxes")
  if not isinstance(boxes, list):
    raise ValueError(f"{where} (ID {rec['ID']}): 'gtboxes' must be a list, got {type(boxes).__name__}")
  for j, box in enumerate(boxes):
    bwhere = f"{where} (ID {rec['ID']}, gtboxes[{j}])"
    if not isinstance(box, dict):
      raise ValueError(f"{bwhere}: expected an object, got {type(box).__name__}")
    if not isinstance(box.get("tag"), str):
      raise ValueError(f"{bwhere}: missing or non-string 'tag'")
    if "fbox" not in box:
      raise ValueError(f"{bwhere}: missing 'fbox'")
    for key in _BOX_KEYS:
      if key in box:
        _check_box(box[key], bwhere, key)
    if min(box["fbox"][2:]) < 0:   # reversed corners; zero sizes and boxes past the border do occur
      raise ValueError(f"{bwhere}: 'fbox' must be [x, y, w, h] with w, h >= 0, got {box['fbox']!r}")
    for key in ("extra", "head_attr"):
      if key in box and not isinstance(box[key], dict):
        raise ValueError(f"{bwhere}: '{key}' must be an object, got {type(box[key]).__name__}")
  return rec


def iter_odgt(path: str):
  """Stream a GT odgt file: yields (1-based line number, line text, validated dict) per non-blank line,
  one line in memory at a time. A line that is not JSON (NaN and Infinity included, which Python's
  json would accept) or fails `check_odgt_line` raises naming the file and line number."""
  path = os.fspath(path)

  def no_constants(name):
    raise ValueError(f"non-finite number {name}")

  for lineno, line in text.lines(path):   # UTF-8; a UTF-8 byte-order mark is dropped
    if not line.strip():
      continue
    where = f"{path}:{lineno}"
    try:
      rec = json.loads(line, parse_constant=no_constants)
    except json.JSONDecodeError as e:
      raise ValueError(f"{where}: not valid JSON ({e.msg} at column {e.colno}); expected one JSON object per "
                       "line") from None
    except ValueError as e:
      raise ValueError(f"{where}: not valid JSON ({e})") from None
    yield lineno, line.rstrip("\r\n"), check_odgt_line(rec, where)


def read_odgt(path: str) -> list[dict]:
  """Read and validate a whole GT odgt file (see `iter_odgt`; errors name the file and line number)."""
  return [rec for _, _, rec in iter_odgt(path)]


def gt_arrays(record: dict, where: str = "") -> dict:
  """Boxes of one GT line for training (cvpods cvpods/data/datasets/crowdhuman.py): {"fbox", "vbox",
  "hbox": float32 (N, 4) xyxy (x2 = x + w, no +1), "ignore": (N,) bool, "tag": list of str}.

  ignore = `extra.ignore` present and nonzero (the training rule). A box whose tag is not "person" must
  carry extra.ignore = 1 so that training and evaluation agree; otherwise this raises, naming the box.
  Missing vbox/hbox fall back to fbox.
  """
  where = where or f"ID {record.get('ID')}"
  boxes = record["gtboxes"]
  out = {k: np.zeros((len(boxes), 4), np.float32) for k in _BOX_KEYS}
  ignore = np.zeros((len(boxes),), bool)
  tags = []
  for j, box in enumerate(boxes):
    for key in _BOX_KEYS:
      x, y, w, h = box.get(key, box["fbox"])
      out[key][j] = (x, y, x + w, y + h)
    ignore[j] = bool(box.get("extra", {}).get("ignore", 0))
    tags.append(box["tag"])
    if box["tag"] != "person" and not ignore[j]:
      raise ValueError(f"{where}, gtboxes[{j}]: tag {box['tag']!r} without extra.ignore = 1; training would "
                       "treat it as a person while evaluation ignores it")
  out["ignore"], out["tag"] = ignore, tags
  return out


def split_records(lines) -> list[dict]:
  """The record list of a split from its GT lines (line i = image_id i): [{"ID", "width", "height", "index"}]."""
  return [{"ID": line["ID"], "width": int(line["width"]), "height": int(line["height"]), "index": i}
          for i, line in enumerate(lines)]


@dataclasses.dataclass
class SplitGT:
  """What the pipelines need of a split's evaluation GT, whatever its format (gt_export.py).

  path       the evaluation GT file; the info key `info_key` ("gt_odgt" or "gt_json") names it
  records    [{"ID", "width", "height", "index", ...}] in image_id order (the info "records")
  num_boxes  (N,) int boxes per image as stored, ignore regions included
  has_gt     (N,) bool the image holds a box that is not an ignore region (CityPersons: a pedestrian of
             clipped height >= 50, before the ignore-coverage move); ALFNet trains only on these images
  lines      the odgt lines (boxes per image) where the format has them, else None
  extra      further info entries of the format (Caltech: "gt_caltech", the bbGt folder, and
             "gt_caltech_frames", the frame list in evaluation order)
  """
  path: str
  info_key: str
  records: list
  num_boxes: np.ndarray
  has_gt: np.ndarray
  lines: list | None = None
  extra: dict = dataclasses.field(default_factory=dict)

  def info(self) -> dict:
    """{"gt_odgt": path or None, "gt_json": path or None, **extra} for the pipeline's info dict."""
    return {**{key: self.path if key == self.info_key else None for key in ("gt_odgt", "gt_json")}, **self.extra}


def odgt_split(path: str, lines: list[dict]) -> SplitGT:
  """The SplitGT of an odgt GT file and its lines (with width/height); has_gt = some box without
  extra.ignore (the training rule of `gt_arrays`)."""
  return SplitGT(path, "gt_odgt", split_records(lines), np.array([len(line["gtboxes"]) for line in lines], np.int64),
                 np.array([any(not b.get("extra", {}).get("ignore", 0) for b in line["gtboxes"]) for line in lines],
                          bool), lines)

