"""TFDS builder `caltech`: Caltech Pedestrian (Dollar et al. 2009/2012) from the raw videos in a manual_dir.

Nothing is downloaded: the user unpacks the official set00.tar .. set10.tar and annotations.zip (and, optionally,
the new annotations of Zhang et al., CVPR 2016) into one folder (LAYOUT). Frames are sampled as the official code
does (caltech_io.sampled_frames): test = every 30th frame from frame 29 of set06-set10 (4024 images), train =
every 30th of set00-set05 ("1x"), train_10x = every 3rd from frame 2 (42 782 images). Images are stored as the raw
JPEG bytes of the .seq record (what dbExtract writes), after a full decode that proves them readable.

Annotations per split, `annotations` = "auto" (default) | "vbb" | "new": the new-annotation text files of the
split when their folder is present (NEW_FOLDERS; every sampled frame needs one), else the .vbb exported as
vbbToFiles does (round(pos), round(posv), occl, ign 0). Either way the frame's bbGt text is stored ("bbgt") and
parsed into the shared detection schema (synthetic_crowds.detection_features):
  image, image/id ("set06_V000_I00029"), image/index (evaluation order), size (480, 640);
  fbox float32 (N, 4) xyxy of bb; vbox xyxy of bbv where occluded (occ = 1 and bbv != 0), else fbox;
  hbox = fbox (Caltech has no head boxes); tag = the label (person, person?, people, ignore, person-fa);
  ignore = training role: label != "person" or the file's ign flag (the evaluator applies dbEval's own rules
  to the stored text);
plus label-independent raw fields: occ int32 (N,), bbgt (the text), image/set, image/video, image/frame int32.

Statistics per split (builder metadata "statistics", logged): images, boxes, per-label counts, ignore, images
without boxes, max / mean boxes, boxes past the 640x480 border, boxes with no area, videos, annotation source.
`export_gt` writes a split's evaluation GT: ANNO_DIR/<image id>.txt + FRAMES.txt for
`python -m lla_jax.evaluation caltech --gt ANNO_DIR --frames FRAMES.txt --dt ...`.
"""
from __future__ import annotations

import glob
import logging
import os
import re

import numpy as np
import tensorflow_datasets as tfds

from data_pipelines import caltech_io
from data_pipelines import synthetic_crowds

SPLITS = ("train", "train_10x", "test")
SPLIT_SETS = {"train": caltech_io.TRAIN_SETS, "train_10x": caltech_io.TRAIN_SETS, "test": caltech_io.TEST_SETS}
SPLIT_SKIP = {"train": 30, "train_10x": 3, "test": 30}
OFFICIAL_IMAGES = {"train_10x": 42782, "test": 4024}  # the CSP README; the standard test list
NEW_FOLDERS = {  # new-annotation folders (first found wins); the train folder name of the release is unverified
    "test": ("anno_test_1xnew", "annotations_new/test", "test/annotations_new"),
    "train_10x": ("anno_train_10x_alignedby_RPN", "anno_train_10x", "annotations_new/train",
                  "train_3/annotations_new"),
}
ANNOTATION_SOURCES = ("auto", "vbb", "new")
WIDTH, HEIGHT = 640, 480
# For `python -m data_pipelines.prepare caltech` (its module doc): per split the counts of the official release it
# warns about (train 1x has no published count), the configs' data.max_boxes, the config it names, the options.
OFFICIAL = {"train": {}, "train_10x": {"images": OFFICIAL_IMAGES["train_10x"]},
            "test": {"images": OFFICIAL_IMAGES["test"]}}
DEFAULT_MAX_BOXES = 64          # data.max_boxes of configs/{lla_r50,alfnet_r50_2s}_caltech.py
EXAMPLE_CONFIG = "lla_r50_caltech"
BUILD_OPTIONS = ("annotations",)  # keyword options of Caltech() taken from the prepare command line

LAYOUT = """Expected Caltech Pedestrian layout under --manual_dir (unpack set00.tar .. set10.tar and annotations.zip):
  DIR/setXX/VYYY.seq                 the videos (or DIR/videos/setXX/VYYY.seq)
  DIR/annotations/setXX/VYYY.vbb     the video annotations
optional, the new annotations (Zhang et al. 2016), one bbGt text file per image:
  DIR/anno_test_1xnew/setSS_VVVV_IFFFFF.txt                 test (4024 files)
  DIR/anno_train_10x_alignedby_RPN/setSS_VVVV_IFFFFF.txt    train 10x"""


def layout_error(manual_dir, missing: str) -> FileNotFoundError:
  return FileNotFoundError(f"Caltech: {missing} (manual_dir {manual_dir}).\n{LAYOUT}")


def find_layout(manual_dir, annotations: str = "auto") -> dict:
  """{"videos": {(set, video): (seq path, vbb path)}, "new": {split: folder or None}, "source": {split: "vbb" |
  "new"}}; a missing folder, a video without its .vbb, or annotations="new" without the folders raise."""
  manual_dir = os.fspath(manual_dir)
  if annotations not in ANNOTATION_SOURCES:
    raise ValueError(f"annotations must be one of {ANNOTATION_SOURCES}, got {annotations!r}")
  if not os.path.isdir(manual_dir):
    raise layout_error(manual_dir, "the folder does not exist")
  videos = {}
  for root in (manual_dir, os.path.join(manual_dir, "videos")):
    for seq in sorted(glob.glob(os.path.join(root, "set[0-9][0-9]", "V[0-9][0-9][0-9].seq"))):
      m = re.search(r"set(\d\d)[/\\]V(\d\d\d)\.seq$", seq)
      key = (int(m.group(1)), int(m.group(2)))
      vbb = os.path.join(manual_dir, "annotations", f"set{key[0]:02d}", f"V{key[1]:03d}.vbb")
      if not os.path.isfile(vbb):
        raise layout_error(manual_dir, f"{seq} has no annotation file {vbb}")
      videos.setdefault(key, (seq, vbb))
  if not videos:
    raise layout_error(manual_dir, "no videos setXX/VYYY.seq")
  new, source = {}, {}
  for split in SPLITS:
    found = [os.path.join(manual_dir, d) for d in NEW_FOLDERS.get(split, ())
             if os.path.isdir(os.path.join(manual_dir, d))]
    new[split] = found[0] if found else None
    if annotations == "new" and split in NEW_FOLDERS and new[split] is None:
      if any(s in SPLIT_SETS[split] for s, _ in videos):
        raise layout_error(manual_dir, f"annotations='new' but no new-annotation folder for {split} "
                           f"({' or '.join(NEW_FOLDERS[split])})")
    source[split] = "new" if new[split] is not None and annotations != "vbb" else "vbb"
  return {"videos": dict(sorted(videos.items())), "new": new, "source": source}


def xywh_to_xyxy(b) -> np.ndarray:
  b = np.asarray(b, np.float32).reshape(-1, 4)
  return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def features() -> tfds.features.FeaturesDict:
  feats = dict(synthetic_crowds.detection_features("jpeg"))
  feats.update({"occ": tfds.features.Tensor(shape=(None,), dtype=np.int32), "bbgt": tfds.features.Text(),
                "image/set": tfds.features.Scalar(dtype=np.int32), "image/video": tfds.features.Scalar(dtype=np.int32),
                "image/frame": tfds.features.Scalar(dtype=np.int32)})
  return tfds.features.FeaturesDict(feats)


class SplitStatistics:
  """Running statistics of one split during the build."""

  LABELS = ("person", "person?", "people", "ignore", "person-fa")

  def __init__(self, source: str):
    self.source = source
    self.counts = dict.fromkeys(("images", "boxes", "ignore", "images_without_boxes", "boxes_past_border",
                                 "no_area_boxes"), 0)
    self.labels = dict.fromkeys(self.LABELS, 0)
    self.videos = set()
    self.max_boxes, self.max_boxes_id = 0, None
    self.corrupt_ids = []

  def add(self, image_id, key, objs, ignore):
    c, bb, n = self.counts, objs["bb"], len(objs["label"])
    c["images"] += 1
    c["boxes"] += n
    c["ignore"] += int(ignore.sum())
    c["images_without_boxes"] += n == 0
    c["boxes_past_border"] += int(((bb[:, 0] < 0) | (bb[:, 1] < 0) | (bb[:, 0] + bb[:, 2] > WIDTH)
                                   | (bb[:, 1] + bb[:, 3] > HEIGHT)).sum())
    c["no_area_boxes"] += int(((bb[:, 2] <= 0) | (bb[:, 3] <= 0)).sum())
    for label in objs["label"]:
      self.labels[label] = self.labels.get(label, 0) + 1
    self.videos.add(key[:2])
    if self.max_boxes_id is None or n > self.max_boxes:
      self.max_boxes, self.max_boxes_id = n, image_id

  def as_dict(self) -> dict:
    return {"source": self.source, **self.counts, "labels": dict(self.labels), "videos": len(self.videos),
            "max_boxes": self.max_boxes, "max_boxes_id": self.max_boxes_id,
            "mean_boxes": round(self.counts["boxes"] / max(self.counts["images"], 1), 3),
            "corrupt_skipped": len(self.corrupt_ids), "corrupt_ids": list(self.corrupt_ids)}


def example_from_bbgt(text: str, where: str) -> dict:
  """The box features of one frame's bbGt text (module doc)."""
  objs = caltech_io.parse_bbgt(text, where)
  bb, bbv = objs["bb"], objs["bbv"]
  occluded = (objs["occ"] != 0) & (bbv != 0).any(axis=1)
  ignore = np.asarray([lbl != "person" for lbl in objs["label"]], bool) | (objs["ign"] != 0)
  fbox = xywh_to_xyxy(bb)
  return objs, {"fbox": fbox, "vbox": np.where(occluded[:, None], xywh_to_xyxy(bbv), fbox), "hbox": fbox,
                "ignore": ignore, "tag": np.array(objs["label"], dtype=object).reshape(-1),
                "occ": objs["occ"].astype(np.int32)}


def generate_split(layout: dict, split: str, stats: SplitStatistics, skip_corrupt: bool = False):
  """Yield (index, example) for the sampled frames of a split's videos, video by video, streaming. A frame whose
  JPEG cannot be decoded stops the build naming it, or with skip_corrupt is left out and counted."""
  index = 0
  folder = layout["new"][split] if stats.source == "new" else None
  for key, (seq_path, vbb_path) in layout["videos"].items():
    if key[0] not in SPLIT_SETS[split]:
      continue
    seq = caltech_io.SeqFile(seq_path)
    vbb = caltech_io.read_vbb(vbb_path)
    if len(seq) < vbb["num_frames"]:
      raise ValueError(f"{seq_path}: {len(seq)} frames, but {vbb_path} annotates {vbb['num_frames']}")
    for f in caltech_io.sampled_frames(vbb["num_frames"], SPLIT_SKIP[split]):
      image_id = caltech_io.frame_name(key[0], key[1], f)
      if folder is not None:
        where = os.path.join(folder, image_id + ".txt")
        if not os.path.isfile(where):
          raise FileNotFoundError(f"{where}: no new annotation of frame {image_id} (every sampled frame of the "
                                  f"{split} split needs one)")
        with open(where, encoding="utf-8") as fh:
          text = fh.read()
      else:
        where = f"{vbb_path} frame {f}"
        text = caltech_io.vbb_frame_bbgt(vbb["frames"][f])
      try:
        data = seq.frame(f)
        height, width = caltech_io.jpeg_size(data, f"{seq_path} frame {f}")
      except ValueError as e:
        if not skip_corrupt:
          raise
        logging.warning("skipping %s: %s", image_id, e)
        stats.corrupt_ids.append(image_id)
        continue
      objs, boxes = example_from_bbgt(text, where)
      stats.add(image_id, (*key, f), objs, boxes["ignore"])
      yield index, {"image": data, "image/id": image_id, "image/index": index,
                    "size": np.array([height, width], np.int32), "bbgt": text, "image/set": key[0],
                    "image/video": key[1], "image/frame": f, **boxes}
      index += 1


class Caltech(tfds.core.GeneratorBasedBuilder):
  """Caltech Pedestrian train (1x), train_10x and test frames with full and visible boxes, labels, bbGt text."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Raw .seq JPEG bytes; bbGt text (new annotations or vbb); shared box schema."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = LAYOUT
  code_path = None  # nothing downloaded: no checksums file

  def __init__(self, *, annotations: str = "auto", skip_corrupt: bool = False, **kwargs):
    self.annotations = annotations
    self.skip_corrupt = bool(skip_corrupt)
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description="Caltech Pedestrian (Dollar et al. 2012): sampled video frames with pedestrian boxes.",
        features=features(),
        homepage="https://data.caltech.edu/records/f6rph-90m20",
        disable_shuffling=True,  # stored in evaluation order (sets, videos, frames)
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    layout = find_layout(dl_manager.manual_dir, self.annotations)
    present = {s for s, _ in layout["videos"]}
    splits = [s for s in SPLITS if present & set(SPLIT_SETS[s])]
    return {s: self._generate_examples(s, layout) for s in splits}

  def _generate_examples(self, split, layout):
    stats = SplitStatistics(layout["source"][split])
    yield from generate_split(layout, split, stats, self.skip_corrupt)
    self.info.metadata.setdefault("statistics", {})[split] = stats.as_dict()
    logging.info("caltech/%s statistics: %s", split, stats.as_dict())


def write_gt(records, out_dir) -> dict:
  """Writes evaluation GT from (image id, bbGt text) pairs in evaluation order: OUT/annotations/<id>.txt and
  OUT/frames.txt. Returns {"gt": annotation folder, "frames": list file, "images": count}."""
  out_dir = os.fspath(out_dir)
  anno = os.path.join(out_dir, "annotations")
  os.makedirs(anno, exist_ok=True)
  names = []
  for image_id, text in records:
    caltech_io.parse_frame_name(image_id)
    with open(os.path.join(anno, image_id + ".txt"), "w", encoding="utf-8") as f:
      f.write(text)
    names.append(image_id)
  frames = os.path.join(out_dir, "frames.txt")
  with open(frames, "w", encoding="utf-8") as f:
    f.writelines(n + "\n" for n in names)
  return {"gt": anno, "frames": frames, "images": len(names)}


def export_gt(builder: Caltech, split: str, out_dir) -> dict:
  """A prepared split's evaluation GT (write_gt) read back from the TFDS records (image id and stored bbGt text)."""
  ds = builder.as_dataset(split=split, shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()})
  records = ((ex["image/id"].decode(), ex["bbgt"].decode()) for ex in tfds.as_numpy(ds))
  return write_gt(records, out_dir)
