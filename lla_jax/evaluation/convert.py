"""Convert ground truth and detections between CrowdHuman odgt, CityPersons json, Caltech text and COCO json.

  python -m lla_jax.evaluation convert IN OUT --to FORMAT [--from FORMAT] [--kind gt|dt] [--gt GT]
                                       [--image-size WxH] [--category ID] [--caltech-layout frame|video]

FORMAT: odgt (CrowdHuman), citypersons, coco, caltech. --from and --kind are detected from IN when left out:
a folder is Caltech text (bbGt files `% bbGt version=3` -> gt; per-frame `x y w h score` or per-video
`setXX/VYYY.txt` `frame+1 x y w h score` -> dt); a file starting with '[' is a COCO detection list (the
CityPersons detection json is the same format); a JSON object with 'images' / 'annotations' is CityPersons
when its images carry 'im_name', else COCO; JSON lines are odgt (gtboxes -> gt, dtboxes -> dt).

--gt GT (any format, detected) is the ground truth detections belong to: formats that name images by number
(COCO, CityPersons) map image ids through it, and it supplies image sizes (odgt detections need them).
--image-size WxH fills sizes a source does not have (Caltech: 640x480). OUT is written atomically (a
temporary file or folder, then a rename); a Caltech OUT folder is replaced as a whole.

What is carried: image names (odgt ID = file name without folder and extension; file names are kept where the
target has a place), image sizes, every box with its ignore flag (odgt tag != 'person' or extra.ignore; CityPersons
ignore; COCO iscrowd or ignore; Caltech ign), scores, visible boxes (odgt vbox, CityPersons / COCO vis_bbox,
Caltech bbv), head boxes (odgt hbox, COCO head_bbox), class names (odgt tag, Caltech label; CityPersons
iscrowd = label 'people') and, between the JSON formats, every other field verbatim. What a target cannot
hold is reported on stderr with a count (e.g. head boxes in Caltech text); a box or image the target cannot
hold at all is an error naming the file, image and box index.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys

from lla_jax import atomic
from lla_jax.evaluation import InputError, caltech_files, citypersons, odgt
from lla_jax.evaluation.coco import (Annotations, Box, Image, class_name, image_ids, image_size,
                                     load_json, number, read_coco, stem, unique_names, write_coco, xywh)
from lla_jax.evaluation.text import read_text

FORMATS = ("odgt", "citypersons", "coco", "caltech")
CALTECH_HEADER = "% bbGt version=3"
_VIDEO_NAME = re.compile(r"^(set\d+)_(V\d+)_I(\d+)$")
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def _note(dropped, what, n=1):
  dropped[what] = dropped.get(what, 0) + n


# ------------------------------------------------------------------------------------------------------ odgt

_ODGT_KEYS = ("ID", "gtboxes", "dtboxes", "width", "height", "file_name", "image_id")


def read_odgt(path, kind=None) -> Annotations:
  records = odgt.load(path)
  kinds = {"gt" if "gtboxes" in r else "dt" if "dtboxes" in r else None for r in records}
  if None in kinds or len(kinds) > 1:
    raise InputError(f"{path}: every line needs 'gtboxes' (ground truth) or 'dtboxes' (detections), not a mix")
  found = kinds.pop() if kinds else kind or "gt"
  if kind is not None and kind != found:
    raise InputError(f"{path}: holds {'ground truth' if found == 'gt' else 'detections'}, not --kind {kind}")
  images = []
  for i, r in enumerate(records):
    where = f"{path}:{records.lines[i]}"
    if not isinstance(r.get("ID"), str):
      raise InputError(f"{where}: 'ID' must be a string, got {r.get('ID')!r}")
    where += f" (ID {r['ID']!r})"
    width, height = image_size(r, where)
    im = Image(r["ID"], r.get("file_name"), r.get("image_id"), width, height,
               extra={k: v for k, v in r.items() if k not in _ODGT_KEYS})
    boxes = r["gtboxes" if found == "gt" else "dtboxes"]
    if not isinstance(boxes, list):
      raise InputError(f"{where}: expected a list of boxes")
    for j, b in enumerate(boxes):
      at = f"{where} box {j}"
      if not isinstance(b, dict):
        raise InputError(f"{at}: expected an object")
      if found == "dt":
        if "box" not in b or not number(b.get("score")):
          raise InputError(f"{at}: needs 'box' and a numeric 'score'")
        im.boxes.append(Box(xywh(b["box"], at + " box"), score=b["score"],
                            extra={k: v for k, v in b.items() if k not in ("box", "score", "tag")}))
        continue
      if "fbox" not in b or not isinstance(b.get("tag"), str):
        raise InputError(f"{at}: needs 'fbox' and a string 'tag'")
      sub = b.get("extra", {})
      if not isinstance(sub, dict):
        raise InputError(f"{at}: 'extra' must be an object, got {sub!r}")
      extra = {k: v for k, v in b.items() if k not in ("tag", "fbox", "vbox", "hbox", "extra")}
      rest = {k: v for k, v in sub.items() if k not in ("ignore", "label")}
      if rest:
        extra["extra"] = rest
      ignore = b["tag"] != "person" or bool(sub.get("ignore", 0))  # CrowdDet / cvpods evaluation rule
      im.boxes.append(Box(xywh(b["fbox"], at + " fbox"), ignore=ignore,
                          vis=xywh(b["vbox"], at + " vbox") if "vbox" in b else None,
                          head=xywh(b["hbox"], at + " hbox") if "hbox" in b else None,
                          label=class_name(sub.get("label", b["tag"]), ignore), extra=extra))
    images.append(im)
  unique_names(images, str(path))
  return Annotations(found, images, str(path))


def write_odgt(ann: Annotations, ref: Annotations | None, dropped: dict) -> str:
  sizes = ref.by_name() if ref is not None else {}
  lines = []
  for im in ann.images:
    rec = {**im.extra, "ID": im.name}
    width, height = im.width, im.height
    if width is None and im.name in sizes:
      width, height = sizes[im.name].width, sizes[im.name].height
    if width is not None and height is not None:
      rec["width"], rec["height"] = width, height
    elif ann.kind == "dt":
      raise InputError(f"{ann.source}: image {im.name!r}: odgt detections need the image size (the protocol clips "
                       "to it); pass --gt with sizes or --image-size WxH")
    if ann.kind == "gt" and im.file is not None and im.file != im.name + ".jpg":
      rec["file_name"] = im.file
    if ann.kind == "gt" and im.id is not None:
      rec["image_id"] = im.id  # the COCO / CityPersons image id, read back by read_odgt
    if ann.kind == "dt":
      rec["dtboxes"] = [{**b.extra, "box": b.box, "score": b.score, "tag": 1} for b in im.boxes]
    else:
      rec["gtboxes"] = [_odgt_gt_box(b) for b in im.boxes]
    lines.append(json.dumps(rec))
  return "".join(line + "\n" for line in lines)


def _odgt_gt_box(b: Box) -> dict:
  """A positive is tagged 'person' (the protocol ignores any other tag); its other class name goes to
  extra.label. An ignore region keeps its class name as the tag ('mask' when it has none)."""
  sub = dict(b.extra.get("extra", {}))
  if b.ignore:
    tag = b.label or "mask"
  else:
    tag = "person"
    if b.label not in (None, "person"):
      sub["label"] = b.label
  sub["ignore"] = int(b.ignore)
  out = {k: v for k, v in b.extra.items() if k != "extra"}
  out.update(tag=tag, fbox=b.box)
  if b.vis is not None:
    out["vbox"] = b.vis
  if b.head is not None:
    out["hbox"] = b.head
  out["extra"] = sub
  return out


# ----------------------------------------------------------------------------------------------- CityPersons

_CITY_ANN_KEYS = ("id", "image_id", "category_id", "iscrowd", "ignore", "bbox", "vis_bbox", "head_bbox", "label")


def _vis_ratio(box, vis):
  """The toolbox's vis_ratio = visible area / full area (val_gt.json)."""
  return vis[2] * vis[3] / (box[2] * box[3])


def read_citypersons(data, source, kind=None, ref=None, category=None, dropped=None) -> Annotations:
  if isinstance(data, list):
    return read_coco(data, source, kind, ref, category, None, dropped)
  if kind == "dt":
    raise InputError(f"{source}: a CityPersons ground truth, not detections (expected a list)")
  citypersons._GroundTruth(data, source)  # the evaluator's checks: ids, boxes, height, vis_ratio
  images, by_id = [], {}
  for rec in data["images"]:
    name = rec.get("im_name", str(rec["id"]))
    width, height = image_size(rec, f"{source}: image id {rec['id']!r}")
    im = Image(stem(name), rec.get("im_name"), rec["id"], width, height,
               extra={k: v for k, v in rec.items() if k not in ("id", "im_name", "width", "height")})
    images.append(im)
    by_id[rec["id"]] = im
  unique_names(images, source)
  for k, a in enumerate(data["annotations"]):
    if a["category_id"] != (category or citypersons.PERSON):
      if category is None:
        raise InputError(f"{source}: annotations[{k}] (id {a['id']!r}): category_id {a['category_id']!r} is not "
                         f"{citypersons.PERSON}; choose one with --category ID")
      _note(dropped, "annotations of other categories")
      continue
    where = f"{source}: annotations[{k}] (id {a['id']!r})"
    box = xywh(a["bbox"], where + " bbox")
    vis = xywh(a["vis_bbox"], where + " vis_bbox") if "vis_bbox" in a else None
    extra = {key: v for key, v in a.items() if key not in _CITY_ANN_KEYS}
    if extra["height"] == box[3]:
      del extra["height"]  # derived again on writing; kept where the file's value differs
    if vis is not None and box[2] * box[3] > 0 and extra["vis_ratio"] == _vis_ratio(box, vis):
      del extra["vis_ratio"]
    by_id[a["image_id"]].boxes.append(Box(
        box, ignore=bool(a.get("ignore", 0)), vis=vis,
        head=xywh(a["head_bbox"], where + " head_bbox") if "head_bbox" in a else None,
        label="people" if a.get("iscrowd", 0) else class_name(a.get("label"), bool(a.get("ignore", 0))),
        extra=extra))
  return Annotations("gt", images, source)


def write_citypersons(ann: Annotations, ref, dropped):
  if ann.kind == "dt":
    return write_coco(ann, ref, dropped)
  images, annotations = [], []
  for image_id, im in zip(image_ids(ann.images), ann.images):
    rec = {**im.extra, "id": image_id, "im_name": im.file or im.name + ".jpg"}
    if im.width is not None and im.height is not None:
      rec["height"], rec["width"] = im.height, im.width
    else:
      _note(dropped, "images without width / height (none in the source; pass --image-size WxH)")
    images.append(rec)
    for j, b in enumerate(im.boxes):
      extra = dict(b.extra)
      vis = b.vis
      if vis is None:
        vis = b.box
        _note(dropped, "boxes without a visible box (written with vis_bbox = bbox)")
      if "vis_ratio" not in extra and b.box[2] * b.box[3] <= 0:
        raise InputError(f"{ann.source}: image {im.name!r} box {j} {b.box!r}: a box without area has no "
                         "CityPersons vis_ratio")
      if b.head is not None:
        extra["head_bbox"] = b.head
      if "vis_ratio" not in extra:
        extra["vis_ratio"] = _vis_ratio(b.box, vis)
      a = {"height": b.box[3], **extra, "id": len(annotations) + 1, "image_id": image_id,
           "category_id": citypersons.PERSON,
           "iscrowd": int(b.label == "people"), "ignore": int(b.ignore), "bbox": b.box, "vis_bbox": vis}
      if b.label not in (None, "people"):
        a["label"] = b.label
      annotations.append(a)
  cats = [{"id": citypersons.PERSON, "name": "pedestrian"}]
  return {"images": images, "categories": cats, "annotations": annotations}


# ----------------------------------------------------------------------------------------------- Caltech text
# Read and written through caltech_files (the evaluator's reader / writer) with the numbers kept as written.

def _caltech_kind(folder):
  if any(re.fullmatch(r"set\d+", d) and os.path.isdir(os.path.join(folder, d)) for d in os.listdir(folder)):
    return "dt", "video"
  for name in sorted(os.listdir(folder)):
    if name.endswith(".txt"):
      with open(os.path.join(folder, name), encoding="utf-8") as f:
        return ("gt", None) if f.readline().startswith("% bbGt") else ("dt", "frame")
  return "gt", None


def _image_name(file_name):
  """'set06_V000_I00029.jpg.txt' / 'x.txt' -> (name, file or None)."""
  base = file_name[:-len(".txt")]
  return (stem(base), base) if base.lower().endswith(_IMAGE_EXTENSIONS) else (base, None)


def read_caltech(folder, kind=None) -> Annotations:
  """A folder of bbGt files (gt, versions 0-3), per-image detection files `x y w h score` or setXX/VYYY.txt
  per-video detections `frame+1 x y w h score` (dt)."""
  found, layout = _caltech_kind(folder)
  if kind is not None and kind != found:
    raise InputError(f"{folder}: holds Caltech {'ground truth' if found == 'gt' else 'detections'}, not --kind {kind}")
  if layout == "video":
    images = {}
    for s in sorted(d for d in os.listdir(folder) if re.fullmatch(r"set\d+", d)):
      for v in sorted(f for f in os.listdir(os.path.join(folder, s)) if re.fullmatch(r"V\d+\.txt", f)):
        path = os.path.join(folder, s, v)
        for n, row in caltech_files.read_rows(path, 6, typed=True):
          frame = row[0]
          if not isinstance(frame, int) or frame < 1:
            raise InputError(f"{path}:{n}: the frame number (1-based) must be a positive integer, got {frame!r}")
          name = f"{s}_{v[:-4]}_I{frame - 1:05d}"
          im = images.setdefault(name, Image(name))
          im.boxes.append(Box(row[1:5], score=row[5]))
    return Annotations("dt", list(images.values()), str(folder))
  images = []
  for file_name in sorted(f for f in os.listdir(folder) if f.endswith(".txt")):
    path = os.path.join(folder, file_name)
    name, file = _image_name(file_name)
    im = Image(name, file)
    if found == "dt":
      im.boxes = [Box(row[:4], score=row[4]) for _, row in caltech_files.read_rows(path, 5, typed=True)]
    else:
      with open(path, encoding="utf-8") as f:
        _, labels, rows, lines = caltech_files.bbgt_rows(f.read(), path, integers=False)
      for label, row, n in zip(labels, rows, lines):
        box, occ, vis, ign, ang = row[0:4], row[4], row[5:9], row[9], row[10]
        if occ not in (0, 1) or ign not in (0, 1):
          raise InputError(f"{path}:{n}: occ and ign must be 0 or 1")
        im.boxes.append(Box(box, ignore=ign != 0, vis=vis if occ or any(vis) else None,
                            label=class_name(label, ign != 0), extra={"ang": ang} if ang != 0 else {}))
    images.append(im)
  unique_names(images, str(folder))
  return Annotations(found, images, str(folder))


def _caltech_gt_text(ann: Annotations, im: Image, dropped) -> str:
  labels, boxes, occ, vis, ign, ang = [], [], [], [], [], []
  for j, b in enumerate(im.boxes):
    label = b.label or ("mask" if b.ignore else "person")
    if not label or any(c.isspace() for c in label):
      raise InputError(f"{ann.source}: image {im.name!r} box {j}: label {label!r} cannot be a Caltech label")
    extra = dict(b.extra)
    ang.append(extra.pop("ang", 0))
    if extra or b.head is not None:
      _note(dropped, "box fields or head boxes (no place in Caltech text)")
    labels.append(label)
    boxes.append(list(b.box))
    occ.append(int(b.vis is not None and list(b.vis) != list(b.box)))
    vis.append(list(b.vis) if b.vis is not None else [0, 0, 0, 0])
    ign.append(int(b.ignore))
  return caltech_files.bbgt_text(labels, boxes, occ, vis, ign, ang, rounded=False)


def write_caltech(ann: Annotations, dropped, layout="frame") -> dict:
  """-> {relative path: text} of the Caltech folder."""
  files = {}
  number = caltech_files.number_text
  for im in ann.images:
    if ann.kind == "dt" and layout == "video":
      m = _VIDEO_NAME.match(im.name)
      if m is None:
        raise InputError(f"{ann.source}: image {im.name!r}: per-video Caltech detections need names "
                         "setXX_VYYY_INNNNN (write --caltech-layout frame instead)")
      key = os.path.join(m.group(1), m.group(2) + ".txt")
      files[key] = files.get(key, "") + "".join(
          f"{int(m.group(3)) + 1} {' '.join(number(v) for v in b.box)} {number(b.score)}\n" for b in im.boxes)
      continue
    if not im.name or "/" in im.name or im.name.startswith("."):
      raise InputError(f"{ann.source}: image {im.name!r} cannot name a Caltech text file")
    if im.extra or im.file is not None or im.width is not None or im.id is not None:
      _note(dropped, "image fields, file names or sizes (no place in Caltech text)")
    if ann.kind == "dt":
      files[im.name + ".txt"] = "".join(f"{' '.join(number(v) for v in b.box)} {number(b.score)}\n" for b in im.boxes)
    else:
      files[im.name + ".txt"] = _caltech_gt_text(ann, im, dropped)
  return files


def _write_folder(out, files):
  if os.path.exists(out) and not os.path.isdir(out):
    raise InputError(f"{out}: exists and is not a folder (Caltech text is a folder of files)")

  def fill(tmp):
    for rel, text in files.items():
      os.makedirs(os.path.dirname(os.path.join(tmp, rel)), exist_ok=True)
      with open(os.path.join(tmp, rel), "w", encoding="utf-8") as f:
        f.write(text)
  atomic.write_folder(out, fill)


# ------------------------------------------------------------------------------------------- read / write / CLI

def detect(path):
  """(format, kind or None) of a file or folder, from its contents."""
  if os.path.isdir(path):
    return "caltech", _caltech_kind(path)[0]
  text = read_text(path)   # UTF-8 (a UTF-8 byte-order mark dropped); other encodings name the file
  head = text.lstrip()[:1]
  if head == "[":
    return "coco", "dt"
  if head != "{":
    raise InputError(f"{path}: not JSON, odgt or a Caltech folder (starts with {text.lstrip()[:20]!r})")
  try:
    data = json.loads(text)
  except json.JSONDecodeError as e:
    if e.msg == "Extra data":
      return "odgt", None
    raise InputError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
  if isinstance(data, dict) and "images" in data:
    city = any(isinstance(im, dict) and "im_name" in im for im in data["images"])
    return ("citypersons" if city else "coco"), "gt"
  return "odgt", None


def read(path, fmt=None, kind=None, ref=None, category=None, dropped=None) -> Annotations:
  """Reads IN (format detected when None) -> Annotations."""
  dropped = {} if dropped is None else dropped
  fmt = fmt or detect(path)[0]
  if fmt == "odgt":
    return read_odgt(path, kind)
  if fmt == "caltech":
    if not os.path.isdir(path):
      raise InputError(f"{path}: Caltech text is a folder of per-image (or per-video) files")
    return read_caltech(path, kind)
  data = load_json(path)
  if fmt == "coco":
    return read_coco(data, str(path), kind, ref, category, None, dropped)
  return read_citypersons(data, str(path), kind, ref, category, dropped)


def write(ann: Annotations, fmt, out, ref=None, dropped=None, layout="frame"):
  """Writes Annotations to OUT in `fmt`, atomically."""
  dropped = {} if dropped is None else dropped
  if fmt == "caltech":
    _write_folder(out, write_caltech(ann, dropped, layout))
  elif fmt == "odgt":
    atomic.write_text(out, write_odgt(ann, ref, dropped))
  else:
    data = (write_coco if fmt == "coco" else write_citypersons)(ann, ref, dropped)
    atomic.write_text(out, json.dumps(data) + "\n")


def align(dt: Annotations, ref: Annotations) -> Annotations:
  """Detections laid out as the ground truth: one image per GT image, in GT order (no detections where the
  source has none), sizes from the detections or else the GT. A detection image the GT lacks is an error."""
  by_name = dt.by_name()
  names = ref.by_name()
  for im in dt.images:
    if im.name not in names:
      raise InputError(f"{dt.source}: image {im.name!r} is not in the ground truth {ref.source}")
  out = []
  for g in ref.images:
    d = by_name.get(g.name)
    width, height = (d.width, d.height) if d is not None and d.width is not None else (g.width, g.height)
    out.append(Image(g.name, g.file, g.id, width, height, d.boxes if d else [], d.extra if d else {}))
  return Annotations("dt", out, dt.source)


def add_arguments(p: argparse.ArgumentParser):
  p.add_argument("input", metavar="IN", help="file (odgt / json) or Caltech folder")
  p.add_argument("output", metavar="OUT", help="file, or folder for Caltech text")
  p.add_argument("--to", required=True, choices=FORMATS)
  p.add_argument("--from", dest="source_format", choices=FORMATS, default=None, help="default: from IN's contents")
  p.add_argument("--kind", choices=("gt", "dt"), default=None, help="default: from IN's contents")
  p.add_argument("--gt", default=None, help="the ground truth detections belong to (any format)")
  p.add_argument("--image-size", default=None, metavar="WxH", help="size of images the source gives none")
  p.add_argument("--category", type=int, default=None, help="COCO / CityPersons category to keep")
  p.add_argument("--caltech-layout", choices=("frame", "video"), default="frame",
                 help="Caltech detections: one file per image, or setXX/VYYY.txt with frame+1 first")


def run(args) -> str:
  """Runs one conversion; returns the summary line; notes of what the target cannot hold go to stderr."""
  dropped = {}
  ref = read(args.gt, kind="gt", category=args.category, dropped={}) if args.gt else None
  ann = read(args.input, args.source_format, args.kind, ref, args.category, dropped)
  if args.image_size:
    m = re.fullmatch(r"(\d+)x(\d+)", args.image_size)
    if m is None:
      raise InputError(f"--image-size: expected WxH (e.g. 640x480), got {args.image_size!r}")
    for im in ann.images + (ref.images if ref else []):
      if im.width is None:
        im.width, im.height = int(m.group(1)), int(m.group(2))
  if ann.kind == "dt" and ref is not None:
    ann = align(ann, ref)
  write(ann, args.to, args.output, ref, dropped, args.caltech_layout)
  for what, n in dropped.items():
    print(f"note: {n} {what}", file=sys.stderr)
  n_boxes = sum(len(im.boxes) for im in ann.images)
  n_ign = sum(b.ignore for im in ann.images for b in im.boxes)
  return (f"wrote {args.to} {'ground truth' if ann.kind == 'gt' else 'detections'}: {len(ann.images)} images, "
          f"{n_boxes} boxes ({n_ign} ignore) -> {args.output}")
