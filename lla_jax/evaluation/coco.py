"""COCO json in and out: the format-neutral annotation model, the COCO reader / writer, and the hook that lets the
CrowdHuman and CityPersons evaluators read COCO-format detections.

Model (what every conversion carries; lla_jax/evaluation/convert.py reads and writes the other formats into it):
  Annotations(kind 'gt' | 'dt', images, source)
  Image(name, file, id, width, height, boxes, extra)   name = the image's identity (odgt ID = file name without
      folder and extension); file = the file name where the source has one (COCO file_name, CityPersons
      im_name); id = the source's numeric image id; width / height = image size (None where unknown).
  Box(box [x, y, w, h], ignore, score, vis, head, label, extra)   vis / head: visible and head boxes where known;
      label: the source's class name (CrowdHuman tag, Caltech label, a COCO "label" key); extra: the source's
      other JSON fields of the box, written back verbatim by the JSON formats.

COCO ground truth (what this module writes and reads):
  {"images": [{id, file_name, width, height}], "categories": [{id: 1, name: "person"}],
   "annotations": [{id, image_id, category_id: 1, bbox: [x, y, w, h], area: w * h, iscrowd, ignore,
                    vis_bbox?, head_bbox?, label?, ...}]}
  An ignore region is written with iscrowd = 1 and ignore = 1 (pycocotools skips iscrowd GTs as "crowd"
  regions; mmdetection reads `ignore`); on reading, iscrowd or ignore marks it. Boxes are absolute pixels and
  may leave the image (CrowdHuman full boxes do); nothing is clipped.
COCO detections (the COCO "results" format, identical to the CityPersons detection json):
  [{image_id, category_id, bbox: [x, y, w, h], score}], image ids resolved through a ground truth.

Evaluator hook: `crowdhuman_dt_records` / `citypersons_dt` turn a COCO detection list into the evaluator's own
detections. COCO image ids map to GT images (a) through a COCO ground truth's `images` (id -> file_name ->
name) when one is given, else (b) for CrowdHuman: a string image_id is the odgt ID (or its file name), an
integer the 1-based position of the image in the GT odgt (the numbering `convert --to coco` writes); for
CityPersons: the GT json's own image ids. An id that matches no GT image is an error naming it.
"""
from __future__ import annotations

import dataclasses
import math
import os

from lla_jax.evaluation import InputError
from lla_jax.evaluation.cityjson import read as load_json  # the one JSON reader with located errors

PERSON = 1
_COCO_ANN_KEYS = ("id", "image_id", "category_id", "bbox", "area", "iscrowd", "ignore", "vis_bbox", "head_bbox",
                  "label", "score")
_COCO_IMAGE_KEYS = ("id", "file_name", "width", "height")


@dataclasses.dataclass
class Box:
  box: list
  ignore: bool = False
  score: float | None = None
  vis: list | None = None
  head: list | None = None
  label: str | None = None
  extra: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Image:
  name: str
  file: str | None = None
  id: int | None = None
  width: float | None = None
  height: float | None = None
  boxes: list = dataclasses.field(default_factory=list)
  extra: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Annotations:
  """One file's content: kind 'gt' | 'dt', images in file order (detections: in the ground truth's order when
  the file names images by number), source = the path, for messages."""
  kind: str
  images: list
  source: str = "?"

  def by_name(self) -> dict:
    return {im.name: im for im in self.images}


# ----------------------------------------------------------------------------------------------- small helpers

def stem(file_name: str) -> str:
  """'Images/273271,c9db000d5146c15.jpg' -> '273271,c9db000d5146c15' (the odgt ID of a file name)."""
  return os.path.splitext(os.path.basename(str(file_name)))[0]


def class_name(label, ignore):
  """A source's class name, None for the defaults every writer restores: 'person' for a positive, 'mask' (the
  CrowdHuman tag of ignore regions) for an ignore region."""
  return None if label == ("mask" if ignore else "person") else label


def number(x) -> bool:
  return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def xywh(value, where: str) -> list:
  """Checks [x, y, w, h] (4 finite numbers) -> a list of floats / ints as given; InputError naming `where`."""
  if not isinstance(value, (list, tuple)) or len(value) != 4 or not all(number(v) for v in value):
    raise InputError(f"{where}: expected [x, y, w, h] (4 finite numbers), got {value!r}")
  return list(value)


def image_size(record: dict, where: str, keys=("width", "height")):
  """(width, height) of a JSON object, None where absent; InputError when present but not a positive number."""
  out = []
  for key in keys:
    v = record.get(key)
    if v is not None and (not number(v) or v <= 0):
      raise InputError(f"{where}: '{key}' must be a positive number, got {v!r}")
    out.append(v)
  return tuple(out)


def unique_names(images, source: str):
  """InputError when two images share a name (file names that differ only in folder or extension)."""
  seen = {}
  for k, im in enumerate(images):
    if im.name in seen:
      raise InputError(f"{source}: images {seen[im.name]} and {k} both have the name {im.name!r}")
    seen[im.name] = k


def image_ids(images) -> list:
  """The images' numeric ids when every image has one and they are unique, else 1-based positions."""
  ids = [im.id for im in images]
  if all(isinstance(i, int) and not isinstance(i, bool) for i in ids) and len(set(ids)) == len(ids):
    return ids
  return list(range(1, len(images) + 1))


class ImageIndex:
  """Finds the image of a ground truth `ref` that a COCO / CityPersons image_id names -> its position in ref:
  through coco_images {id: file_name} (a COCO ground truth's images) when given, else an integer id equal to
  the image's numeric id (1-based position where the GT has none), else a string id equal to its name or file
  name. Anything else is an InputError naming the entry and the id."""

  def __init__(self, ref: Annotations, coco_images: dict | None = None):
    self.ref, self.coco_images = ref, coco_images
    self.by_id = {i: k for k, i in enumerate(image_ids(ref.images))}
    self.by_name = {}
    for k, im in enumerate(ref.images):
      self.by_name[im.name] = k
    for k, im in enumerate(ref.images):
      if im.file is not None:
        self.by_name.setdefault(im.file, k)

  def __call__(self, image_id, where: str) -> int:
    if self.coco_images is not None:
      if image_id not in self.coco_images:
        raise InputError(f"{where}: image_id {image_id!r} is not in the COCO ground truth's images")
      found = self.by_name.get(stem(self.coco_images[image_id]))
    elif isinstance(image_id, str):
      found = self.by_name.get(image_id, self.by_name.get(stem(image_id)))
    elif isinstance(image_id, int) and not isinstance(image_id, bool):
      found = self.by_id.get(image_id)
    else:
      raise InputError(f"{where}: image_id must be an integer or a string, got {image_id!r}")
    if found is None:
      raise InputError(f"{where}: image_id {image_id!r} matches no image of the ground truth {self.ref.source}")
    return found


# ------------------------------------------------------------------------------------------------- COCO read

def _person_categories(data: dict, source: str, category) -> set:
  cats = data.get("categories") or []
  ids = {c.get("id") for c in cats if isinstance(c, dict)}
  if category is not None:
    return {category}
  if len(ids) <= 1:
    return ids or {PERSON}
  named = {c["id"] for c in cats if isinstance(c, dict) and c.get("name") in ("person", "pedestrian")}
  if len(named) == 1:
    return named
  raise InputError(f"{source}: {len(ids)} categories {sorted(ids)!r} and none (or several) named 'person'; "
                   "choose one with --category ID")


def read_coco(data, source: str, kind: str | None = None, ref: Annotations | None = None, category=None,
              coco_images: dict | None = None, dropped: dict | None = None) -> Annotations:
  """A COCO ground truth (dict) or detection list (list) -> Annotations.

  Detections need `ref` (the ground truth they belong to: names, sizes, order); their images come out in the
  ref's order, one per ref image (empty where no detection). Annotations of other categories than the person
  one (the only category, or the one named 'person', or `category`) are counted in dropped['other category']
  when `category` is given, else an error naming the annotation.
  """
  if isinstance(data, list):
    if kind == "gt":
      raise InputError(f"{source}: a COCO detection list, not a ground truth (expected 'images'/'annotations')")
    if ref is None:
      raise InputError(f"{source}: COCO detections name images by number; pass the ground truth (--gt FILE)")
    cats = {category if category is not None else PERSON}
    out = [Image(im.name, im.file, im.id, im.width, im.height) for im in ref.images]
    find = ImageIndex(ref, coco_images)
    for k, d in enumerate(data):
      where = f"{source}: detection [{k}]"
      if not isinstance(d, dict) or "bbox" not in d or "score" not in d or "image_id" not in d:
        raise InputError(f"{where}: expected an object with 'image_id', 'bbox', 'score'")
      if d.get("category_id", PERSON) not in cats:
        _other_category(where, d.get("category_id"), category, dropped)
        continue
      im = out[find(d["image_id"], where)]
      if not number(d["score"]):
        raise InputError(f"{where}: 'score' must be a finite number, got {d['score']!r}")
      extra = {key: v for key, v in d.items() if key not in _COCO_ANN_KEYS}
      im.boxes.append(Box(xywh(d["bbox"], where + " bbox"), score=d["score"], extra=extra))
    return Annotations("dt", out, source)
  if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
      or not isinstance(data.get("annotations"), list):
    raise InputError(f"{source}: expected a COCO object with 'images' and 'annotations' lists, or a detection list")
  if kind == "dt":
    raise InputError(f"{source}: a COCO ground truth, not detections (expected a list)")
  cats = _person_categories(data, source, category)
  images, by_id = [], {}
  for k, rec in enumerate(data["images"]):
    where = f"{source}: images[{k}]"
    if not isinstance(rec, dict) or "id" not in rec or not isinstance(rec.get("file_name"), str):
      raise InputError(f"{where}: needs 'id' and 'file_name'")
    if rec["id"] in by_id:
      raise InputError(f"{where}: image id {rec['id']!r} is listed twice")
    width, height = image_size(rec, where)
    extra = {key: v for key, v in rec.items() if key not in _COCO_IMAGE_KEYS}
    by_id[rec["id"]] = im = Image(stem(rec["file_name"]), rec["file_name"], rec["id"], width, height, extra=extra)
    images.append(im)
  unique_names(images, source)
  for k, a in enumerate(data["annotations"]):
    where = f"{source}: annotations[{k}]"
    if not isinstance(a, dict) or "image_id" not in a or "bbox" not in a:
      raise InputError(f"{where}: needs 'image_id' and 'bbox'")
    where += f" (id {a.get('id')!r})"
    if a.get("category_id", PERSON) not in cats:
      _other_category(where, a.get("category_id"), category, dropped)
      continue
    if a["image_id"] not in by_id:
      raise InputError(f"{where}: image_id {a['image_id']!r} is not in 'images'")
    extra = {key: v for key, v in a.items() if key not in _COCO_ANN_KEYS}
    bbox = xywh(a["bbox"], where + " bbox")
    if "area" in a and a["area"] != bbox[2] * bbox[3]:
      extra["area"] = a["area"]  # a segmentation area: kept (the writer derives w * h otherwise)
    ignore = bool(a.get("iscrowd", 0)) or bool(a.get("ignore", 0))
    box = Box(bbox, ignore=ignore, vis=xywh(a["vis_bbox"], where + " vis_bbox") if "vis_bbox" in a else None,
              head=xywh(a["head_bbox"], where + " head_bbox") if "head_bbox" in a else None,
              label=class_name(a.get("label"), ignore), extra=extra)
    by_id[a["image_id"]].boxes.append(box)
  return Annotations("gt", images, source)


def _other_category(where, category_id, chosen, dropped):
  if chosen is None:
    raise InputError(f"{where}: category_id {category_id!r} is not the person category; choose one with "
                     "--category ID (the others are then left out, with a count)")
  dropped["annotations of other categories"] = dropped.get("annotations of other categories", 0) + 1


# ------------------------------------------------------------------------------------------------ COCO write

def write_coco(ann: Annotations, ref: Annotations | None = None, dropped: dict | None = None):
  """Annotations -> a COCO ground truth dict (kind 'gt') or detection list (kind 'dt'; image ids from `ref`,
  the ground truth, through the image names; an image that ref lacks is an error naming it)."""
  if ann.kind == "dt":
    if ref is None:
      raise InputError(f"{ann.source}: COCO detections name images by number; pass the ground truth (--gt FILE)")
    ids = dict(zip((im.name for im in ref.images), image_ids(ref.images)))
    ref_images = ref.by_name()
    out = []
    for im in ann.images:
      if im.boxes and im.name not in ids:
        raise InputError(f"{ann.source}: image {im.name!r} (with {len(im.boxes)} detections) is not in the ground "
                         f"truth {ref.source}")
      for b in im.boxes:
        out.append({**b.extra, "image_id": ids[im.name], "category_id": PERSON, "bbox": b.box, "score": b.score})
      _count_lost(im, dropped, ref_images.get(im.name))
    return out
  images, annotations = [], []
  for image_id, im in zip(image_ids(ann.images), ann.images):
    rec = {**im.extra, "id": image_id, "file_name": im.file or im.name + ".jpg"}
    if im.width is not None and im.height is not None:
      rec["width"], rec["height"] = im.width, im.height
    elif dropped is not None:
      key = "images without width / height (none in the source; pass --image-size WxH)"
      dropped[key] = dropped.get(key, 0) + 1
    images.append(rec)
    for b in im.boxes:
      a = {"area": b.box[2] * b.box[3], **b.extra, "id": len(annotations) + 1, "image_id": image_id,
           "category_id": PERSON, "bbox": b.box, "iscrowd": int(b.ignore), "ignore": int(b.ignore)}
      for key, v in (("vis_bbox", b.vis), ("head_bbox", b.head), ("label", b.label)):
        if v is not None:
          a[key] = v
      annotations.append(a)
  return {"images": images, "categories": [{"id": PERSON, "name": "person"}], "annotations": annotations}


def _count_lost(im: Image, dropped, ref_im):
  """Detections in a list format keep no image size: counted when the ground truth does not have it either."""
  if dropped is not None and im.width is not None and (ref_im is None or ref_im.width is None):
    dropped["detection image sizes (the ground truth has none)"] = \
        dropped.get("detection image sizes (the ground truth has none)", 0) + 1


# ------------------------------------------------------------------------------------------- evaluator hook

def is_detection_list(path) -> bool:
  """True when the file's first non-blank character is '[' (a COCO / CityPersons detection list), as opposed
  to odgt lines or a ground-truth object."""
  with open(path, encoding="utf-8-sig", errors="replace") as f:  # a sniff only: the reader names bad bytes
    while True:
      chunk = f.read(4096)
      if not chunk:
        return False
      text = chunk.lstrip()
      if text:
        return text[0] == "["


def _odgt_reference(gt_records, source) -> Annotations:
  images = []
  for k, r in enumerate(gt_records):
    if not isinstance(r, dict) or not isinstance(r.get("ID"), str):
      raise InputError(f"{source}: GT record {k} has no string 'ID'")
    width, height = image_size(r, f"{source}: GT record {k} (ID {r['ID']!r})")
    images.append(Image(r["ID"], r.get("file_name"), r.get("image_id"), width, height))
  return Annotations("gt", images, source)


def crowdhuman_dt_records(dets: list, gt_records: list, source: str = "DT", coco_images: dict | None = None,
                          category=None) -> list[dict]:
  """COCO detections -> CrowdHuman detection records {ID, width, height, dtboxes: [{box, score, tag: 1}]}, one
  per GT image of known size in GT order (so that image's GT is clipped, as the protocol does for images with
  a detection record). Sizes come from the GT records (width / height) or the COCO ground truth; an image with
  detections and no known size is an error naming it (the protocol clips to the image)."""
  ref = _odgt_reference(gt_records, getattr(gt_records, "path", "GT"))
  if coco_images is not None:
    sizes = getattr(coco_images, "sizes", {})
    for im in ref.images:
      if im.width is None and im.name in sizes:
        im.width, im.height = sizes[im.name]
  dt = read_coco(dets, source, "dt", ref, category, coco_images, {})
  out = []
  for im in dt.images:
    if im.boxes and (im.width is None or im.height is None):
      raise InputError(f"{source}: image {im.name!r} has detections but no width / height in the ground truth; "
                       "pass the COCO ground truth (--coco-gt) or give the GT odgt width / height")
    if im.width is None or im.height is None:
      continue  # no detections and no size: like an image without detection record
    out.append({"ID": im.name, "width": im.width, "height": im.height,
                "dtboxes": [{"box": b.box, "score": b.score, "tag": 1} for b in im.boxes]})
  return out


def citypersons_dt(dets: list, gt: dict, source: str = "DT", coco_images: dict | None = None) -> list[dict]:
  """COCO detections -> CityPersons detections with the GT json's image ids (mapped through the COCO ground
  truth's file names when `coco_images` is given; else the ids must be the GT's own, or its im_names)."""
  images = [Image(stem(r.get("im_name", r.get("id"))), r.get("im_name"), r.get("id"))
            for r in gt.get("images", []) if isinstance(r, dict)]
  find = ImageIndex(Annotations("gt", images, "GT"), coco_images)
  out = []
  for k, d in enumerate(dets):
    where = f"{source}: detection [{k}]"
    if not isinstance(d, dict) or "image_id" not in d:
      raise InputError(f"{where}: expected an object with 'image_id', 'category_id', 'bbox', 'score'")
    out.append({**d, "image_id": images[find(d["image_id"], where)].id})
  return out


class CocoImages(dict):
  """{COCO image id: file_name} of a COCO ground truth's images, plus sizes {name: (width, height)}: the mapping
  of its detections' image ids to the evaluated ground truth's images."""

  def __init__(self, path):
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
      raise InputError(f"{path}: expected a COCO ground truth with an 'images' list")
    super().__init__()
    self.sizes = {}
    for k, rec in enumerate(data["images"]):
      where = f"{path}: images[{k}]"
      if not isinstance(rec, dict) or "id" not in rec or not isinstance(rec.get("file_name"), str):
        raise InputError(f"{where}: needs 'id' and 'file_name'")
      self[rec["id"]] = rec["file_name"]
      width, height = image_size(rec, where)
      if width is not None and height is not None:
        self.sizes[stem(rec["file_name"])] = (width, height)


def load_detections(path, gt, benchmark: str, coco_gt=None, category=None):
  """The CLI's loading hook: the detection file at `path` in the evaluator's own form. A JSON list is COCO
  detections (converted for CrowdHuman; ids mapped for CityPersons); anything else is returned as read by the
  evaluator's own loader (odgt lines / CityPersons list)."""
  from_coco = is_detection_list(path)
  coco_images = CocoImages(coco_gt) if coco_gt else None
  if benchmark == "crowdhuman":
    if not from_coco:
      return None
    return crowdhuman_dt_records(load_json(path), gt, str(path), coco_images, category)
  if not from_coco or coco_images is None:
    return None
  return citypersons_dt(load_json(path), gt, str(path), coco_images)
