"""TFDS builder `crowdhuman`: CrowdHuman (Shao et al., arXiv 1805.00123) from the official files in a manual_dir.

Nothing is downloaded: the user unpacks the official archives (LAYOUT) and runs
`python -m data_pipelines.prepare crowdhuman --manual_dir DIR --data_dir OUT`. The build streams: one
odgt line and one image in memory at a time; images are stored as their original JPEG bytes, after a
full decode that proves they are readable (and gives the size the public odgt lacks).

Features: the shared schema of synthetic_crowds.detection_features (image, image/id, image/index =
line order, size, fbox / vbox / hbox float32 xyxy absolute pixels, ignore = tag != "person" or
extra.ignore, tag) plus the raw per-box attributes, int32 (N,) with -1 where the odgt has no value:
extra/ignore, extra/box_id, extra/occ, head_attr/ignore, head_attr/occ, head_attr/unsure; and the odgt
line itself ("annotation", text), from which the evaluation GT is rewritten without loss.

Statistics of each split (images, boxes, person and ignore boxes, boxes per image max and mean, boxes
with no area, boxes past the border, images with only ignore boxes or none, corrupt images skipped) are
stored in the builder metadata (metadata.json, key "statistics") and logged after each split.

Checks (each error names the file, line and ID): a line that is not JSON, a box that
is not 4 finite numbers, a tag other than "person" without extra.ignore = 1, a duplicate ID, an image
that is missing or cannot be decoded (or, with skip_corrupt, is skipped and counted). Boxes with no
area are kept, as in the official files (evaluation sees them), and counted; the training pipeline
drops them after clipping, like the released code's filter_empty_instances, and counts that too.
"""
from __future__ import annotations

import logging
import os

import numpy as np
import tensorflow_datasets as tfds

from data_pipelines import images as image_files
from data_pipelines import records as records_lib
from data_pipelines import synthetic_crowds

SPLITS = ("train", "val")
# The official release (per split, statistics as stored in the builder metadata): prepare warns on a difference.
OFFICIAL = {"train": {"images": 15000}, "val": {"images": 4370, "images_without_boxes": 0}}
DEFAULT_MAX_BOXES = 500        # data.max_boxes of configs/base.py, the configs that train on CrowdHuman
EXAMPLE_CONFIG = "lla_r50"     # the config prepare's closing line suggests
BUILD_OPTIONS = ()             # keyword options of Crowdhuman() taken from the prepare command line
IMAGE_FOLDERS = ("Images", "CrowdHuman_train01/Images", "CrowdHuman_train02/Images", "CrowdHuman_train03/Images",
                 "CrowdHuman_val/Images")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
ATTRIBUTES = (("extra", "ignore"), ("extra", "box_id"), ("extra", "occ"), ("head_attr", "ignore"),
              ("head_attr", "occ"), ("head_attr", "unsure"))

LAYOUT = """Expected CrowdHuman layout under --manual_dir (unpack the official archives of crowdhuman.org):
  DIR/annotation_train.odgt        (or DIR/annotations/annotation_train.odgt)
  DIR/annotation_val.odgt          (or DIR/annotations/annotation_val.odgt)
  DIR/Images/<ID>.jpg              train and val images: CrowdHuman_train01.zip, CrowdHuman_train02.zip,
                                   CrowdHuman_train03.zip and CrowdHuman_val.zip all unpack to Images/
  (or one folder per archive: DIR/CrowdHuman_train01/Images/<ID>.jpg ... DIR/CrowdHuman_val/Images/<ID>.jpg)"""


def layout_error(manual_dir: str, missing: str) -> FileNotFoundError:
  return FileNotFoundError(f"CrowdHuman: {missing} (manual_dir {manual_dir}).\n{LAYOUT}")


def find_layout(manual_dir: str) -> dict:
  """{"train": odgt path, "val": odgt path, "image_dirs": [existing image folders]} of a manual_dir;
  a missing folder or file raises with the expected layout."""
  manual_dir = os.fspath(manual_dir)
  if not os.path.isdir(manual_dir):
    raise layout_error(manual_dir, "the folder does not exist")
  out = {}
  for split in SPLITS:
    name = f"annotation_{split}.odgt"
    found = [p for p in (os.path.join(manual_dir, name), os.path.join(manual_dir, "annotations", name))
             if os.path.isfile(p)]
    if not found:
      raise layout_error(manual_dir, f"no {name}")
    out[split] = found[0]
  out["image_dirs"] = [os.path.join(manual_dir, d) for d in IMAGE_FOLDERS
                       if os.path.isdir(os.path.join(manual_dir, d))]
  if not out["image_dirs"]:
    raise layout_error(manual_dir, "no image folder (Images/ or CrowdHuman_*/Images/)")
  return out


def image_index(image_dirs) -> dict:
  """{ID: path} of every image in the folders (file name without extension; the first folder wins)."""
  index = {}
  for folder in image_dirs:
    with os.scandir(folder) as entries:
      for e in entries:
        stem, ext = os.path.splitext(e.name)
        if ext.lower() in IMAGE_EXTENSIONS and e.is_file():
          index.setdefault(stem, e.path)
  return index


def box_attributes(boxes) -> dict:
  """The raw per-box attributes of one odgt line: {"extra/ignore", ...: int32 (N,)}, -1 where absent."""
  out = {}
  for group, key in ATTRIBUTES:
    vals = []
    for box in boxes:
      v = box.get(group, {}).get(key, -1)
      vals.append(int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) else -1)
    out[f"{group}/{key}"] = np.asarray(vals, np.int32).reshape(-1)
  return out


def features() -> tfds.features.FeaturesDict:
  feats = dict(synthetic_crowds.detection_features("jpeg"))
  for group, key in ATTRIBUTES:
    feats[f"{group}/{key}"] = tfds.features.Tensor(shape=(None,), dtype=np.int32)
  feats["annotation"] = tfds.features.Text()
  return tfds.features.FeaturesDict(feats)


class SplitStatistics:
  """Running statistics of one split during the build."""

  def __init__(self):
    self.images = self.boxes = self.person = self.ignore = self.no_area = self.outside = 0
    self.only_ignore = self.empty = 0
    self.max_boxes, self.max_boxes_id = 0, None
    self.corrupt_ids = []

  def add(self, image_id: str, fbox: np.ndarray, ignore: np.ndarray, height: int, width: int):
    n = len(fbox)
    self.images += 1
    self.boxes += n
    self.ignore += int(ignore.sum())
    self.person += int((~ignore).sum())
    self.no_area += int(((fbox[:, 2] <= fbox[:, 0]) | (fbox[:, 3] <= fbox[:, 1])).sum())
    self.outside += int(((fbox[:, 0] < 0) | (fbox[:, 1] < 0) | (fbox[:, 2] > width) | (fbox[:, 3] > height)).sum())
    self.empty += n == 0
    self.only_ignore += n > 0 and bool(ignore.all())
    if self.max_boxes_id is None or n > self.max_boxes:
      self.max_boxes, self.max_boxes_id = n, image_id

  def as_dict(self) -> dict:
    return {"images": self.images, "boxes": self.boxes, "person": self.person, "ignore": self.ignore,
            "max_boxes": self.max_boxes, "max_boxes_id": self.max_boxes_id,
            "mean_boxes": round(self.boxes / max(self.images, 1), 3), "no_area_boxes": self.no_area,
            "boxes_past_border": self.outside, "images_only_ignore": self.only_ignore,
            "images_without_boxes": self.empty, "corrupt_skipped": len(self.corrupt_ids),
            "corrupt_ids": self.corrupt_ids}


def generate_split(odgt_path: str, images: dict, skip_corrupt: bool, stats: SplitStatistics):
  """Yield (index, example) for the lines of one odgt file, streaming; fills `stats`."""
  seen = set()
  index = 0
  for lineno, text, rec in records_lib.iter_odgt(odgt_path):
    image_id = rec["ID"]
    where = f"{odgt_path}:{lineno} (ID {image_id})"
    if image_id in seen:
      raise ValueError(f"{where}: ID {image_id} occurs twice")
    seen.add(image_id)
    gt = records_lib.gt_arrays(rec, where)  # raises on a non-"person" tag without extra.ignore = 1
    path = images.get(image_id)
    if path is None:
      raise FileNotFoundError(f"{where}: no image {image_id}.jpg in the image folders.\n{LAYOUT}")
    read = image_files.read_checked_image(path, where, image_id, skip_corrupt, stats.corrupt_ids)
    if read is None:
      continue
    data, height, width = read
    if any(k in rec for k in ("height", "width")) and (rec.get("height"), rec.get("width")) != (height, width):
      raise ValueError(f"{where}: the line says {rec.get('height')}x{rec.get('width')} but image {path} is "
                       f"{height}x{width}")
    stats.add(image_id, gt["fbox"], gt["ignore"], height, width)
    example = {"image": data, "image/id": image_id, "image/index": index,
               "size": np.array([height, width], np.int32), "fbox": gt["fbox"], "vbox": gt["vbox"],
               "hbox": gt["hbox"], "ignore": gt["ignore"],
               "tag": np.array(gt["tag"], dtype=object).reshape(-1), "annotation": text,
               **box_attributes(rec["gtboxes"])}
    yield index, example
    index += 1
  if index == 0:
    raise ValueError(f"{odgt_path}: no images (every line blank{' or corrupt' if stats.corrupt_ids else ''}); "
                     "expected one JSON object per line, one line per image")


class Crowdhuman(tfds.core.GeneratorBasedBuilder):
  """CrowdHuman train and val with full, visible and head boxes, ignore flags and raw attributes."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Original JPEG bytes; fbox/vbox/hbox xyxy pixels; raw attributes; statistics."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = LAYOUT
  # Nothing is downloaded, so there is no checksums file to locate next to the code (locating it would
  # need the optional importlib_resources package).
  code_path = None

  def __init__(self, *, skip_corrupt: bool = False, **kwargs):
    self.skip_corrupt = bool(skip_corrupt)
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description="CrowdHuman (Shao et al. 2018): full-body, visible and head boxes of people in crowds.",
        features=features(),
        homepage="https://www.crowdhuman.org/",
        disable_shuffling=True,  # stored in line order: image/index and eval batches follow the odgt
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    layout = find_layout(dl_manager.manual_dir)
    images = image_index(layout["image_dirs"])
    return {split: self._generate_examples(split, layout[split], images) for split in SPLITS}

  def _generate_examples(self, split: str, odgt_path: str, images: dict):
    stats = SplitStatistics()
    yield from generate_split(odgt_path, images, self.skip_corrupt, stats)
    self.info.metadata.setdefault("statistics", {})[split] = stats.as_dict()
    logging.info("crowdhuman/%s statistics: %s", split, stats.as_dict())
