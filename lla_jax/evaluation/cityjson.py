"""CityPersons json files (the official toolbox's val_gt.json layout and its detection list) and the
conversions into them. The one module of lla_jax that writes them (reading with checks:
citypersons.load_gt / load_dt, through `read` here).

  GT          {images: [{id, im_name, height, width}], annotations: [{id, image_id, category_id, iscrowd,
              ignore, bbox [x, y, w, h], vis_bbox, height, vis_ratio}], categories}
  detections  [{image_id, category_id: 1, bbox: [x, y, w, h], score}]
"""
from __future__ import annotations

import json
import os

import numpy as np

from lla_jax import atomic
from lla_jax.evaluation import InputError, odgt, text

IGNORE_CLASS = -1   # the Batch's ignore-region class (lla_jax/types.py)
# The suffix of CityPersons image names (leftImg8bit/<split>/<city>/<name>_leftImg8bit.png): record IDs may
# carry the name without it.
CITYPERSONS_SUFFIX = "_leftImg8bit.png"


def read(path):
  """The parsed json of `path`; InputError naming the file, line and column when it is not json."""
  try:
    return json.loads(text.read_text(path))   # UTF-8; a UTF-8 byte-order mark is dropped
  except json.JSONDecodeError as e:
    raise InputError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None


def write(path, obj) -> str:
  """Writes a GT dict or a detection list to `path` atomically, without indentation."""
  return atomic.write_json(path, obj, indent=None)


def detections_from_results(results, records, image_ids):
  """CityPersons DT list [{image_id, category_id: 1, bbox: [x, y, w, h], score}]; image_ids[i] is the GT
  image id of record i (records in image_id order)."""
  out = []
  for rec in records:
    boxes, scores = odgt.detections_of(results, rec)
    image_id = image_ids[int(rec["index"])]
    out += [{"image_id": image_id, "category_id": 1, "bbox": odgt.xywh(b), "score": round(float(s), 5)}
            for b, s in zip(boxes, scores)]
  return out


def citypersons_image_ids(gt: dict, records, source: str) -> list:
  """The GT image id of every record: its "eval_image_id" when the pipeline gives one, else the GT image
  whose im_name equals the record ID (with or without the CityPersons suffix or an extension)."""
  if all("eval_image_id" in rec for rec in records):
    known = {im["id"] for im in gt["images"]}
    ids = [rec["eval_image_id"] for rec in records]
    bad = [(rec["ID"], i) for rec, i in zip(records, ids) if i not in known]
    if bad:
      raise ValueError(f"{source}: records name eval_image_ids absent from the GT images, e.g. {bad[:3]}")
    return ids
  by_name = {}
  for im in gt["images"]:
    name = str(im.get("im_name", ""))
    keys = [name, os.path.splitext(name)[0]]
    if name.endswith(CITYPERSONS_SUFFIX):
      keys.append(name[:-len(CITYPERSONS_SUFFIX)])
    for key in keys:
      by_name.setdefault(key, im["id"])
  missing = [rec["ID"] for rec in records if rec["ID"] not in by_name]
  if missing:
    raise ValueError(f"{source}: {len(missing)} eval images have no GT image with that im_name, e.g. {missing[:3]}")
  return [by_name[rec["ID"]] for rec in records]


def citypersons_gt(records) -> dict:
  """CityPersons val_gt.json-like dict from canonical records (the canonical records of data_pipelines).

  A record: {height, width, boxes (M, 4) xyxy, classes (M,) 0 person / -1 ignore, optional
  vis_boxes (M, 4) xyxy, optional im_name / file}. Image ids are 1-based positions in `records`
  (evaluation needs ids >= 1); annotation ids run 1.. over all boxes. Per annotation: bbox = [x1, y1,
  x2 - x1, y2 - y1], height = full-box height, vis_ratio = visible area / full area (1 without
  vis_boxes), ignore = 1 for ignore regions.
  """
  images, annotations = [], []
  for i, rec in enumerate(records):
    boxes = np.asarray(rec["boxes"], np.float64).reshape(-1, 4)
    classes = np.asarray(rec["classes"]).reshape(-1)
    if len(classes) != len(boxes):
      raise ValueError(f"citypersons_gt: record {i} has {len(boxes)} boxes but {len(classes)} classes")
    vis = rec.get("vis_boxes")
    vis = boxes if vis is None else np.asarray(vis, np.float64).reshape(-1, 4)
    if len(vis) != len(boxes):
      raise ValueError(f"citypersons_gt: record {i} has {len(boxes)} boxes but {len(vis)} vis_boxes")
    images.append({"id": i + 1, "im_name": str(rec.get("im_name", rec.get("file", f"image_{i}"))),
                   "height": int(rec["height"]), "width": int(rec["width"])})
    for b, c, v in zip(boxes, classes, vis):
      w, h = b[2] - b[0], b[3] - b[1]
      if w <= 0 or h <= 0:
        raise ValueError(f"citypersons_gt: record {i} has an empty box {b.tolist()} (expected x2 > x1, y2 > y1)")
      vw, vh = max(v[2] - v[0], 0.0), max(v[3] - v[1], 0.0)
      annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                          "ignore": int(c == IGNORE_CLASS), "bbox": [float(b[0]), float(b[1]), float(w), float(h)],
                          "vis_bbox": [float(v[0]), float(v[1]), float(vw), float(vh)], "height": float(h),
                          "vis_ratio": float(min(vw * vh / (w * h), 1.0))})
  return {"images": images, "annotations": annotations,
          "categories": [{"id": 1, "name": "pedestrian"}]}


def citypersons_dt(detections, image_index) -> list:
  """CityPersons DT json list from Detections (lla_jax/types.py; boxes, scores, valid): one entry per valid slot,
  image_id = image_index + 1 (record position, as `citypersons_gt`), bbox = [x1, y1, x2 - x1, y2 - y1].

  image_index (B,) record positions (the Batch `image_id`); entries < 0 are padding images, skipped.
  """
  boxes, scores, valid = (np.asarray(x) for x in (detections.boxes, detections.scores, detections.valid))
  out = []
  for b, idx in enumerate(np.asarray(image_index).reshape(-1)):
    if idx < 0:
      continue
    for d in np.flatnonzero(valid[b]):
      x1, y1, x2, y2 = (float(v) for v in boxes[b, d])
      out.append({"image_id": int(idx) + 1, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                  "score": float(scores[b, d])})
  return out


def citypersons_gt_from_odgt(lines, ids=None) -> dict:
  """CityPersons GT dict from CrowdHuman-format GT lines (the synthetic crowds' GT).

  Per box: full box = fbox, visible box = vbox (fbox if absent), ignore = extra.ignore or a tag other
  than "person". `ids` (optional) lists the line IDs in image_id order (the eval Batch `image_id`
  indexes it); by default the order of `lines`. Image ids of the result are 1-based positions.
  """
  by_id = {line["ID"]: line for line in lines}
  order = list(ids) if ids is not None else [line["ID"] for line in lines]
  missing = [i for i in order if i not in by_id]
  if missing:
    raise ValueError(f"citypersons_gt_from_odgt: {len(missing)} IDs have no GT line, e.g. {missing[:3]}")
  records = []
  for image_id in order:
    line = by_id[image_id]
    if "height" not in line or "width" not in line:
      raise ValueError(f"citypersons_gt_from_odgt: GT line {image_id!r} has no 'height'/'width'")
    full, vis, classes = [], [], []
    for box in line["gtboxes"]:
      for key, out in (("fbox", full), ("vbox", vis)):
        x, y, w, h = box.get(key, box["fbox"])
        out.append([x, y, x + w, y + h])
      ignore = bool(box.get("extra", {}).get("ignore", 0)) or box["tag"] != "person"
      classes.append(IGNORE_CLASS if ignore else 0)
    records.append({"im_name": image_id, "height": line["height"], "width": line["width"],
                    "boxes": np.asarray(full, np.float64).reshape(-1, 4),
                    "vis_boxes": np.asarray(vis, np.float64).reshape(-1, 4), "classes": np.asarray(classes)})
  return citypersons_gt(records)


def gt_on_box(gt: dict, box: str) -> dict:
  """A CityPersons GT dict evaluated on another box type: "full" unchanged; "visible": each annotation's
  "bbox" (the box the toolbox matches) replaced by its "vis_bbox". "height" and "vis_ratio" stay those of
  the full box, so every setup selects the same people as on the full boxes and only the box matched
  changes. Other box types are an error."""
  if box == "full":
    return gt
  if box != "visible":
    raise ValueError(f"CityPersons evaluation on box type {box!r}: the GT holds full and visible boxes only")
  out = []
  for i, a in enumerate(gt["annotations"]):
    if "vis_bbox" not in a:
      raise ValueError(f"CityPersons GT annotation {i} (id {a.get('id')}): no 'vis_bbox' to evaluate visible boxes")
    out.append(dict(a, bbox=list(a["vis_bbox"])))
  return dict(gt, annotations=out)
