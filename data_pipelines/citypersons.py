"""TFDS builder `citypersons`: CityPersons (Zhang et al., CVPR 2017; cvgroup-njust/CityPersons) from the
Cityscapes images in a manual_dir.

Boxes come from the Cityscapes gtBboxCityPersons JSON files or, as an alternative, the CityPersons
toolbox's anno_{train,val}.mat (LAYOUT; `annotations` = "auto" takes the JSON files when present). Both
give per box the toolbox row [class_label, x, y, w, h, instance_id, x_vis, y_vis, w_vis, h_vis]. Image
order: .mat order (for val the order of the official val_gt.json, image ids 1..500), or for the JSON
files sorted by city and file name. The build streams (one image in memory at a time) and stores the
original PNG bytes after a full decode.

Features (one example per image, images without boxes included):
  image, image/id ("<city>_<seq>_<frame>"), image/index, image/name (the leftImg8bit file name, as in
  val_gt.json), image/city, size (h, w);
  fbox, vbox     float32 (N, 4) the raw full and visible boxes as xyxy (x2 = x + w), not clipped;
  label          int32 (N,) class_label 0 ignore region, 1 pedestrian, 2 rider, 3 sitting, 4 other, 5 group;
  instance_id    int32 (N,);
  train_box      float32 (N, 4) the box ALFNet trains on (liuwei16/ALFNet generate_data.py): x1 = max(int(x), 0),
                 y1 = max(int(y), 0), w = min(int(w), W - x1 - 1), h = min(int(h), H - y1 - 1), (x1, y1, x1 + w, y1 + h);
  ignore         bool (N,) the training role (ALFNet generate_data.py): False exactly for a pedestrian (label 1) with
                 clipped height >= 50 whose summed coverage of the image's ignore regions (sum of
                 intersection / ignore-region area, +1 areas) is < 0.5; every other box is an ignore region.
The training pipeline skips images with no pedestrian of clipped height >= 50 (before the move), as
ALFNet does. `evaluation_gt` turns the examples of a split into the evaluator's val_gt.json layout.

Statistics per split (stored in the builder metadata, key "statistics", logged after each split):
images, boxes, per-label counts, GT and ignore boxes under the training rule, boxes moved to the
ignore list, the ALFNet training subset (images with GT, their GT and ignore boxes), boxes per image
max / mean, boxes past the border, boxes with no area, images without boxes, corrupt images skipped.
"""
from __future__ import annotations

import glob
import json
import logging
import os

import numpy as np
import tensorflow_datasets as tfds

from data_pipelines import images as image_files
from lla_jax.evaluation import text

SPLITS = ("train", "val")
LABELS = ("ignore", "pedestrian", "rider", "sitting person", "person (other)", "person group")  # class_label 0..5
EVAL_CATEGORIES = [{"id": 1, "name": "pedestrian"}, {"id": 2, "name": "rider"}, {"id": 3, "name": "sitting person"},
                   {"id": 4, "name": "other person"}, {"id": 5, "name": "people group"},
                   {"id": 0, "name": "ignore region"}]
PEDESTRIAN, GROUP = 1, 5
MIN_GT_HEIGHT = 50            # ALFNet generate_data.py: pedestrians at least this tall (clipped) are GT
IGNORE_MOVE_FRACTION = 0.5    # a GT covering >= this much of ignore regions becomes one
OFFICIAL = {"train": {"images": 2975, "boxes": 27770, "alfnet_images": 2112, "alfnet_gt": 12390,
                      "alfnet_ignore": 12942},
            "val": {"images": 500, "boxes": 5795}}
DEFAULT_MAX_BOXES = 128        # data.max_boxes of configs/alfnet_*.py
EXAMPLE_CONFIG = "alfnet_r50_2s"
BUILD_OPTIONS = ("annotations",)  # keyword options of Citypersons() taken from the prepare command line
IMAGE_SUFFIX = "_leftImg8bit.png"
JSON_SUFFIX = "_gtBboxCityPersons.json"

LAYOUT = """Expected CityPersons layout under --manual_dir (Cityscapes downloads and the CityPersons toolbox):
  DIR/leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png      (Cityscapes leftImg8bit_trainvaltest.zip)
and one box source:
  DIR/gtBboxCityPersons/{train,val}/<city>/<city>_<seq>_<frame>_gtBboxCityPersons.json
                                                                   (Cityscapes gtBbox_cityPersons_trainval.zip)
  or DIR/anno_train.mat and DIR/anno_val.mat (CityPersons toolbox; also under DIR/annotations/)"""


def layout_error(manual_dir: str, missing: str) -> FileNotFoundError:
  return FileNotFoundError(f"CityPersons: {missing} (manual_dir {manual_dir}).\n{LAYOUT}")


def find_layout(manual_dir: str, annotations: str = "auto") -> dict:
  """{"images": leftImg8bit folder, "source": "json" | "mat", "json": {split: folder}, "mat": {split: path}}
  of a manual_dir; anything missing raises with the expected layout."""
  manual_dir = os.fspath(manual_dir)
  if annotations not in ("auto", "json", "mat"):
    raise ValueError(f"annotations must be 'auto', 'json' or 'mat', got {annotations!r}")
  if not os.path.isdir(manual_dir):
    raise layout_error(manual_dir, "the folder does not exist")
  out = {"images": os.path.join(manual_dir, "leftImg8bit"), "json": {}, "mat": {}}
  for split in SPLITS:
    if not os.path.isdir(os.path.join(out["images"], split)):
      raise layout_error(manual_dir, f"no image folder leftImg8bit/{split}")
    folder = os.path.join(manual_dir, "gtBboxCityPersons", split)
    if os.path.isdir(folder):
      out["json"][split] = folder
    mats = [p for p in (os.path.join(manual_dir, f"anno_{split}.mat"),
                        os.path.join(manual_dir, "annotations", f"anno_{split}.mat")) if os.path.isfile(p)]
    if mats:
      out["mat"][split] = mats[0]
  has = {s: len(out[s]) == len(SPLITS) for s in ("json", "mat")}
  source = annotations if annotations != "auto" else ("json" if has["json"] else "mat")
  if not has[source]:
    what = {"json": "gtBboxCityPersons/{train,val}", "mat": "anno_train.mat and anno_val.mat"}[source]
    raise layout_error(manual_dir, f"no box annotations: {what} not found")
  out["source"] = source
  return out


def _row(values, where: str) -> np.ndarray:
  row = np.asarray(values, np.float64).reshape(-1)
  if row.shape != (10,) or not np.isfinite(row).all():
    raise ValueError(f"{where}: expected 10 finite numbers [class_label, x, y, w, h, instance_id, x_vis, y_vis, "
                     f"w_vis, h_vis], got {np.asarray(values).tolist()}")
  if min(row[3], row[4]) < 0:   # reversed corners
    raise ValueError(f"{where}: w and h must be >= 0 ([class_label, x, y, w, h, ...]), got w {row[3]:g}, h {row[4]:g}")
  if row[0] not in range(len(LABELS)):
    raise ValueError(f"{where}: class_label {row[0]:g} is not one of 0..5 ({', '.join(LABELS)})")
  return row


def json_entries(folder: str, split: str):
  """Yield one entry per gtBboxCityPersons JSON file (sorted by city and name): {"city", "im_name",
  "bbs" float64 (N, 10) toolbox rows, "size" (h, w) from the file, "where"}."""
  files = sorted(glob.glob(os.path.join(folder, "*", "*" + JSON_SUFFIX)))
  if not files:
    raise FileNotFoundError(f"CityPersons: no *{JSON_SUFFIX} under {folder}/<city>/.\n{LAYOUT}")
  for path in files:
    try:
      doc = json.loads(text.read_text(path))   # UTF-8; a UTF-8 byte-order mark is dropped
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("objects"), list):
      raise ValueError(f"{path}: expected an object with 'imgHeight', 'imgWidth' and an 'objects' list")
    rows = []
    for j, obj in enumerate(doc["objects"]):
      where = f"{path}: objects[{j}]"
      if not isinstance(obj, dict) or obj.get("label") not in LABELS:
        got = obj.get("label") if isinstance(obj, dict) else obj
        raise ValueError(f"{where}: label {got!r} is not one of {list(LABELS)}")
      for key in ("bbox", "bboxVis"):
        if not isinstance(obj.get(key), list) or len(obj[key]) != 4:
          raise ValueError(f"{where}: '{key}' must be [x, y, w, h], got {obj.get(key)!r}")
      rows.append(_row([LABELS.index(obj["label"]), *obj["bbox"], obj.get("instanceId", -1), *obj["bboxVis"]],
                       where))
    name = os.path.basename(path)[:-len(JSON_SUFFIX)]
    size = (doc.get("imgHeight"), doc.get("imgWidth"))
    if not all(isinstance(v, int) and v > 0 for v in size):
      raise ValueError(f"{path}: 'imgHeight' and 'imgWidth' must be positive integers, got {size}")
    yield {"city": os.path.basename(os.path.dirname(path)), "im_name": name + IMAGE_SUFFIX,
           "bbs": np.asarray(rows, np.float64).reshape(-1, 10), "size": size, "where": path}


def _mat_text(value) -> str:
  arr = np.asarray(value).reshape(-1)
  return str(arr[0]) if arr.size else ""


def mat_entries(path: str, split: str):
  """Yield one entry per cell of the toolbox .mat (variable anno_<split>_aligned, in file order):
  {"city", "im_name", "bbs" float64 (N, 10), "size": None, "where"}."""
  import scipy.io
  var = f"anno_{split}_aligned"
  try:
    mat = scipy.io.loadmat(path)
  except Exception as e:  # scipy raises several types for a damaged file
    raise ValueError(f"{path}: not a readable .mat file ({e})") from None
  if var not in mat:
    found = sorted(k for k in mat if not k.startswith("__"))
    raise ValueError(f"{path}: no variable {var!r} (found {found}); expected the CityPersons toolbox file")
  cells = np.asarray(mat[var]).reshape(-1)
  for l, cell in enumerate(cells):
    where = f"{path}: {var}[{l}]"
    rec = np.asarray(cell).reshape(-1)[0]
    try:
      city, im_name, bbs = _mat_text(rec["cityname"]), _mat_text(rec["im_name"]), np.asarray(rec["bbs"])
    except (ValueError, KeyError, IndexError):
      raise ValueError(f"{where}: expected a struct with fields cityname, im_name, bbs") from None
    if bbs.size and (bbs.ndim != 2 or bbs.shape[1] != 10):
      raise ValueError(f"{where} ({im_name}): 'bbs' must be N x 10, got shape {bbs.shape}")
    rows = [_row(r, f"{where} ({im_name}) row {j}") for j, r in enumerate(bbs.reshape(-1, 10))]
    yield {"city": city, "im_name": im_name, "bbs": np.asarray(rows, np.float64).reshape(-1, 10), "size": None,
           "where": f"{where} ({im_name})"}


def xywh_to_xyxy(b) -> np.ndarray:
  b = np.asarray(b, np.float32).reshape(-1, 4)
  return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def ignore_coverage(gt: np.ndarray, ignore: np.ndarray) -> np.ndarray:
  """(G,) for each GT box the summed fraction of the ignore regions it covers: sum_r inter(g, r) /
  area(r), +1 widths (ALFNet's box_op); inputs xyxy (G, 4), (R, 4)."""
  if len(gt) == 0 or len(ignore) == 0:
    return np.zeros((len(gt),), np.float64)
  g, r = gt.astype(np.float64)[:, None], ignore.astype(np.float64)[None]
  iw = np.minimum(g[..., 2], r[..., 2]) - np.maximum(g[..., 0], r[..., 0]) + 1
  ih = np.minimum(g[..., 3], r[..., 3]) - np.maximum(g[..., 1], r[..., 1]) + 1
  area = (r[..., 2] - r[..., 0] + 1) * (r[..., 3] - r[..., 1] + 1)
  frac = np.where((iw > 0) & (ih > 0) & (area != 0), iw * ih / np.where(area != 0, area, 1), 0.0)
  return frac.sum(axis=1)


def alfnet_training_boxes(bbs: np.ndarray, height: int, width: int):
  """The ALFNet training rule (liuwei16/ALFNet generate_data.py) for one image's toolbox rows (N, 10).

  Returns (train_box float32 (N, 4), ignore bool (N,), has_gt bool, moved int): boxes clipped the
  ALFNet way (int truncation, x1, y1 >= 0, w <= W - x1 - 1, h <= H - y1 - 1); GT = pedestrian with
  clipped h >= 50; has_gt = the image has one (ALFNet trains on it); then GT with ignore coverage
  >= 0.5 move to the ignore regions (moved of them)."""
  n = len(bbs)
  boxes = np.zeros((n, 4), np.float32)
  is_gt = np.zeros((n,), bool)
  for i, (label, x, y, w, h) in enumerate(bbs[:, :5]):
    x1, y1 = max(int(x), 0), max(int(y), 0)
    w, h = min(int(w), width - x1 - 1), min(int(h), height - y1 - 1)
    boxes[i] = (x1, y1, x1 + w, y1 + h)
    is_gt[i] = int(label) == PEDESTRIAN and h >= MIN_GT_HEIGHT
  has_gt = bool(is_gt.any())
  cover = ignore_coverage(boxes[is_gt], boxes[~is_gt])
  move = np.flatnonzero(is_gt)[cover >= IGNORE_MOVE_FRACTION]
  is_gt[move] = False
  return boxes, ~is_gt, has_gt, len(move)


def _number(v):
  v = float(v)
  return int(v) if v.is_integer() else v


def evaluation_gt(images) -> dict:
  """The evaluator's GT (the layout of the toolbox's evaluation/val_gt.json) from per-image dicts in image order, each
  {"im_name", "height", "width", "fbox" (N, 4) xyxy, "vbox" (N, 4) xyxy, "label" (N,)}: images
  [{id 1..N, im_name, height, width}], categories, annotations [{id 1.., image_id, category_id 1,
  iscrowd (label 5), ignore (label != 1), bbox, vis_bbox (raw [x, y, w, h]), height = bbox h,
  vis_ratio = visible area / full area (0 for a full box with no area)}]."""
  out = {"images": [], "annotations": [], "categories": EVAL_CATEGORIES}
  for i, im in enumerate(images):
    image_id = i + 1
    out["images"].append({"id": image_id, "im_name": im["im_name"], "height": int(im["height"]),
                          "width": int(im["width"])})
    fbox = np.asarray(im["fbox"], np.float64).reshape(-1, 4)
    vbox = np.asarray(im["vbox"], np.float64).reshape(-1, 4)
    for f, v, label in zip(fbox, vbox, np.asarray(im["label"]).reshape(-1)):
      bbox = [_number(f[0]), _number(f[1]), _number(f[2] - f[0]), _number(f[3] - f[1])]
      vis = [_number(v[0]), _number(v[1]), _number(v[2] - v[0]), _number(v[3] - v[1])]
      area = bbox[2] * bbox[3]
      out["annotations"].append({
          "id": len(out["annotations"]) + 1, "image_id": image_id, "category_id": 1,
          "iscrowd": int(label == GROUP), "ignore": int(label != PEDESTRIAN), "bbox": bbox, "vis_bbox": vis,
          "height": bbox[3], "vis_ratio": float(vis[2] * vis[3] / area) if area else 0.0})
  return out


def features() -> tfds.features.FeaturesDict:
  boxes = lambda: tfds.features.Tensor(shape=(None, 4), dtype=np.float32)
  return tfds.features.FeaturesDict({
      "image": tfds.features.Image(shape=(None, None, 3), dtype=np.uint8, encoding_format="png"),
      "image/id": tfds.features.Text(),
      "image/index": tfds.features.Scalar(dtype=np.int64),
      "image/name": tfds.features.Text(),
      "image/city": tfds.features.Text(),
      "size": tfds.features.Tensor(shape=(2,), dtype=np.int32),
      "fbox": boxes(),
      "vbox": boxes(),
      "label": tfds.features.Tensor(shape=(None,), dtype=np.int32),
      "instance_id": tfds.features.Tensor(shape=(None,), dtype=np.int32),
      "train_box": boxes(),
      "ignore": tfds.features.Tensor(shape=(None,), dtype=np.bool_),
  })


class SplitStatistics:
  """Running statistics of one split during the build."""

  def __init__(self):
    self.counts = dict.fromkeys(("images", "boxes", "gt", "ignore", "moved_to_ignore", "alfnet_images",
                                 "alfnet_gt", "alfnet_ignore", "boxes_past_border", "no_area_boxes",
                                 "images_without_boxes"), 0)
    self.labels = [0] * len(LABELS)
    self.max_boxes, self.max_boxes_id = 0, None
    self.corrupt_ids = []

  def add(self, image_id, bbs, ignore, has_gt, moved, height, width):
    c, n = self.counts, len(bbs)
    x, y, w, h = bbs[:, 1], bbs[:, 2], bbs[:, 3], bbs[:, 4]
    c["images"] += 1
    c["boxes"] += n
    c["gt"] += int((~ignore).sum())
    c["ignore"] += int(ignore.sum())
    c["moved_to_ignore"] += moved
    if has_gt:
      c["alfnet_images"] += 1
      c["alfnet_gt"] += int((~ignore).sum())
      c["alfnet_ignore"] += int(ignore.sum())
    c["boxes_past_border"] += int(((x < 0) | (y < 0) | (x + w > width) | (y + h > height)).sum())
    c["no_area_boxes"] += int(((w <= 0) | (h <= 0)).sum())
    c["images_without_boxes"] += n == 0
    for label in bbs[:, 0].astype(int):
      self.labels[label] += 1
    if self.max_boxes_id is None or n > self.max_boxes:
      self.max_boxes, self.max_boxes_id = n, image_id

  def as_dict(self) -> dict:
    return {**self.counts, "labels": dict(zip(LABELS, self.labels)), "max_boxes": self.max_boxes,
            "max_boxes_id": self.max_boxes_id, "mean_boxes": round(self.counts["boxes"] / max(self.counts["images"], 1), 3),
            "corrupt_skipped": len(self.corrupt_ids), "corrupt_ids": self.corrupt_ids}


def generate_split(entries, image_root: str, split: str, skip_corrupt: bool, stats: SplitStatistics):
  """Yield (index, example) per annotation entry (json_entries / mat_entries), streaming; fills stats."""
  seen = set()
  index = 0
  for entry in entries:
    im_name, where = entry["im_name"], entry["where"]
    if not im_name.endswith(IMAGE_SUFFIX):
      raise ValueError(f"{where}: image name {im_name!r} does not end in {IMAGE_SUFFIX}")
    image_id = im_name[:-len(IMAGE_SUFFIX)]
    if image_id in seen:
      raise ValueError(f"{where}: image {image_id} occurs twice")
    seen.add(image_id)
    path = os.path.join(image_root, split, entry["city"], im_name)
    if not os.path.isfile(path):
      raise FileNotFoundError(f"{where}: image {image_id} not found at {path}.\n{LAYOUT}")
    read = image_files.read_checked_image(path, where, image_id, skip_corrupt, stats.corrupt_ids)
    if read is None:
      continue
    data, height, width = read
    if entry["size"] is not None and tuple(entry["size"]) != (height, width):
      raise ValueError(f"{where}: imgHeight x imgWidth {entry['size'][0]}x{entry['size'][1]} disagrees with the "
                       f"image {path} ({height}x{width})")
    bbs = entry["bbs"]
    train_box, ignore, has_gt, moved = alfnet_training_boxes(bbs, height, width)
    stats.add(image_id, bbs, ignore, has_gt, moved, height, width)
    yield index, {
        "image": data, "image/id": image_id, "image/index": index, "image/name": im_name,
        "image/city": entry["city"], "size": np.array([height, width], np.int32),
        "fbox": xywh_to_xyxy(bbs[:, 1:5]), "vbox": xywh_to_xyxy(bbs[:, 6:10]),
        "label": bbs[:, 0].astype(np.int32), "instance_id": bbs[:, 5].astype(np.int32),
        "train_box": train_box, "ignore": ignore}
    index += 1
  if index == 0:
    raise ValueError(f"CityPersons {split}: no images")


class Citypersons(tfds.core.GeneratorBasedBuilder):
  """CityPersons train and val: full and visible boxes, labels, the ALFNet training boxes and roles."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Original PNG bytes; raw and ALFNet training boxes; labels; statistics."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = LAYOUT
  code_path = None  # nothing downloaded: no checksums file (and no need for importlib_resources)

  def __init__(self, *, annotations: str = "auto", skip_corrupt: bool = False, **kwargs):
    self.annotations = annotations
    self.skip_corrupt = bool(skip_corrupt)
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description="CityPersons (Zhang et al. 2017): pedestrian boxes on Cityscapes, full and visible.",
        features=features(),
        homepage="https://github.com/cvgroup-njust/CityPersons",
        disable_shuffling=True,  # stored in annotation order: image ids of val_gt.json follow it
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    layout = find_layout(dl_manager.manual_dir, self.annotations)
    logging.info("CityPersons boxes from the %s files", layout["source"])
    entries = {s: (json_entries(layout["json"][s], s) if layout["source"] == "json"
                   else mat_entries(layout["mat"][s], s)) for s in SPLITS}
    return {s: self._generate_examples(s, entries[s], layout["images"], layout["source"]) for s in SPLITS}

  def _generate_examples(self, split, entries, image_root, source):
    stats = SplitStatistics()
    yield from generate_split(entries, image_root, split, self.skip_corrupt, stats)
    self.info.metadata.setdefault("statistics", {})[split] = {"source": source, **stats.as_dict()}
    logging.info("citypersons/%s statistics: %s", split, self.info.metadata["statistics"][split])
