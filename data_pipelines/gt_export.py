"""A prepared TFDS data set read back: its builder, and per split the evaluation GT and the record
list, exported once into the cache (settings.cache_dir) and rebuilt when the prepared data changes.

How a split's GT is exported is the data set's registry entry `gt_format` (EXPORTERS): 'odgt' writes
CrowdHuman odgt lines with width/height (CrowdHuman, synthetic crowds); 'citypersons_json' writes the
CityPersons toolbox's val_gt.json layout plus a record list; 'caltech_bbgt' writes the odgt lines and the
Caltech evaluator's bbGt folder and frame list. Either way the pipeline gets a records.SplitGT.
"""
from __future__ import annotations

import glob
import json
import logging
import os

import numpy as np
import tensorflow_datasets as tfds

from data_pipelines import caltech
from data_pipelines import citypersons
from data_pipelines import records as records_lib
from data_pipelines import registry
from data_pipelines import settings
from lla_jax import atomic


def not_prepared_error(name: str, data_dir: str) -> FileNotFoundError:
  module = registry.get(name).builder.partition(":")[0] if name in registry.names() else "its builder"
  return FileNotFoundError(
      f"data set {name!r} is not prepared: found no TFDS data (dataset_info.json) under "
      f"{os.path.join(data_dir, name)}. Prepare it once from the official files with\n"
      f"  python -m data_pipelines.prepare {name} --manual_dir DIR --data_dir {data_dir}\n"
      f"where DIR holds the downloaded {name} images and annotations (the layout: LAYOUT in {module}), "
      f"or point data.data_dir at the folder that holds {name}/.")


def _version_key(path: str):
  try:
    return tuple(int(p) for p in os.path.basename(os.path.dirname(path)).split("."))
  except ValueError:
    return None


def prepared_builder(name: str, data_dir: str):
  """The TFDS builder of a data set prepared into data_dir/name (by its builder, with or without a
  config level), read from the prepared files alone (builder code need not be importable). The newest
  version wins; several configs are an error naming them."""
  root = os.path.join(data_dir, name)
  infos = [p for pattern in ("*", os.path.join("*", "*"))
           for p in glob.glob(os.path.join(root, pattern, "dataset_info.json"))]
  infos = [p for p in infos if _version_key(p) is not None]  # skips incomplete.* build folders
  if not infos:
    raise not_prepared_error(name, data_dir)
  configs = sorted({os.path.relpath(os.path.dirname(os.path.dirname(p)), root) for p in infos})
  if len(configs) > 1:
    raise ValueError(f"{root} holds several prepared configs {configs}; keep one or use another data.data_dir")
  newest = max(infos, key=_version_key)
  return tfds.builder_from_directory(os.path.dirname(newest))


def builder_for(data_cfg, data_dir: str):
  """The builder of data set data_cfg.name (registry.py): read from its prepared files when the builder
  needs manual files (MANUAL_DOWNLOAD_INSTRUCTIONS), else built on first use by the builder class's
  from_data_config (synthetic crowds)."""
  cls = registry.builder_class(data_cfg.name)
  if cls.MANUAL_DOWNLOAD_INSTRUCTIONS:
    return prepared_builder(data_cfg.name, data_dir)
  return cls.from_data_config(data_cfg, data_dir)


def _xyxy_to_xywh(b):
  b = np.asarray(b, np.float64).reshape(-1, 4)
  return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)


def _cache_paths(builder, split: str, data_dir: str, suffix: str) -> tuple[str, str, str]:
  """(path, stamp path, stamp) of a derived per-split file; the stamp changes when the prepared data does."""
  path = os.path.join(settings.cache_dir(data_dir, builder.info.full_name), f"{split}_{suffix}")
  st = os.stat(os.path.join(builder.data_dir, "dataset_info.json"))
  return path, path + ".stamp", f"{st.st_mtime_ns} {st.st_size}"


def _fresh(path: str, stamp_path: str, stamp: str) -> bool:
  if not (os.path.exists(path) and os.path.exists(stamp_path)):
    return False
  with open(stamp_path) as f:
    return f.read() == stamp


def _write_stamp(stamp_path: str, stamp: str):
  with open(stamp_path, "w") as f:
    f.write(stamp)


def _indexed_examples(builder, split: str):
  """The split's examples (images not decoded) by image/index, checking that the index runs over
  0..N-1 exactly once and that image/id is unique. -> list of numpy example dicts."""
  where = f"{builder.info.full_name}/{split}"
  ds = builder.as_dataset(split=split, shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()})
  out, ids = {}, set()
  for ex in ds.as_numpy_iterator():
    ex.pop("image")
    index, image_id = int(ex["image/index"]), ex["image/id"].decode()
    if index in out:
      raise ValueError(f"{where}: image/index {index} occurs twice ({out[index]['image/id'].decode()} and {image_id})")
    if image_id in ids:
      raise ValueError(f"{where}: image/id {image_id} occurs twice")
    ids.add(image_id)
    out[index] = ex
  missing = sorted(set(range(len(out))) - set(out))
  if missing:
    raise ValueError(f"{where}: image/index must run over 0..{len(out) - 1}; missing {missing[:10]}")
  return [out[i] for i in range(len(out))]


def odgt_gt_line(ex) -> dict:
  """The GT odgt line of one example with width/height: the stored odgt line itself where the data set
  keeps it (CrowdHuman: the official content), else rebuilt from the boxes (synthetic crowds)."""
  h, w = (int(v) for v in ex["size"])
  if "annotation" in ex:
    line = json.loads(ex["annotation"].decode())
    line["height"], line["width"] = h, w
    return line
  return records_lib.odgt_line(
      ex["image/id"].decode(), _xyxy_to_xywh(ex["fbox"]), _xyxy_to_xywh(ex["vbox"]), _xyxy_to_xywh(ex["hbox"]),
      [t.decode() for t in ex["tag"]], ex["ignore"], height=h, width=w)


def split_gt(builder, split: str, data_dir: str) -> tuple[str, list[dict]]:
  """(path, lines) of the split's GT odgt (with width/height), in image_id order.

  Written once from the TFDS examples (images not decoded) into settings.cache_dir(data_dir,
  builder full name) and rebuilt when the prepared data changes (dataset_info.json stamp). Checks
  that image/index runs over 0..N-1 exactly once and that IDs are unique.
  """
  gt_path, stamp_path, stamp = _cache_paths(builder, split, data_dir, "gt.odgt")
  if _fresh(gt_path, stamp_path, stamp):
    return gt_path, records_lib.read_odgt(gt_path)
  logging.info("Writing the GT odgt of %s/%s to %s", builder.info.full_name, split, gt_path)
  lines = [odgt_gt_line(ex) for ex in _indexed_examples(builder, split)]
  records_lib.write_odgt(gt_path, lines)
  _write_stamp(stamp_path, stamp)
  return gt_path, lines


def citypersons_split_gt(builder, split: str, data_dir: str) -> tuple[str, list[dict]]:
  """(path, records) of a CityPersons split: the evaluator's GT json (val_gt.json layout, image id =
  image/index + 1; citypersons.evaluation_gt) and the record list [{"ID", "width", "height", "index",
  "eval_image_id", "im_name", "num_boxes", "has_gt"}] (has_gt: ALFNet trains on the image). Written
  once into the cache like `split_gt`."""
  gt_path, stamp_path, stamp = _cache_paths(builder, split, data_dir, "gt.json")
  rec_path = os.path.join(os.path.dirname(gt_path), f"{split}_records.json")
  if _fresh(gt_path, stamp_path, stamp) and os.path.exists(rec_path):
    with open(rec_path) as f:
      return gt_path, json.load(f)
  logging.info("Writing the evaluation GT of %s/%s to %s", builder.info.full_name, split, gt_path)
  examples = _indexed_examples(builder, split)
  images, records = [], []
  for i, ex in enumerate(examples):
    h, w = (int(v) for v in ex["size"])
    name = ex["image/name"].decode()
    images.append({"im_name": name, "height": h, "width": w, "fbox": ex["fbox"], "vbox": ex["vbox"],
                   "label": ex["label"]})
    tb = ex["train_box"]
    has_gt = bool(((ex["label"] == citypersons.PEDESTRIAN) & (tb[:, 3] - tb[:, 1] >= citypersons.MIN_GT_HEIGHT)).any())
    records.append({"ID": ex["image/id"].decode(), "width": w, "height": h, "index": i, "eval_image_id": i + 1,
                    "im_name": name, "num_boxes": int(len(tb)), "has_gt": has_gt})
  os.makedirs(os.path.dirname(gt_path), exist_ok=True)
  for path, obj in ((gt_path, citypersons.evaluation_gt(images)), (rec_path, records)):
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
      json.dump(obj, f)
    os.replace(tmp, path)
  _write_stamp(stamp_path, stamp)
  return gt_path, records


def odgt_split(builder, split: str, data_dir: str) -> records_lib.SplitGT:
  return records_lib.odgt_split(*split_gt(builder, split, data_dir))


def citypersons_split(builder, split: str, data_dir: str) -> records_lib.SplitGT:
  path, records = citypersons_split_gt(builder, split, data_dir)
  return records_lib.SplitGT(path, "gt_json",
                 [{k: r[k] for k in ("ID", "width", "height", "index", "eval_image_id", "im_name")} for r in records],
                 np.array([r["num_boxes"] for r in records], np.int64), np.array([r["has_gt"] for r in records], bool))


def caltech_split(builder, split: str, data_dir: str) -> records_lib.SplitGT:
  """A Caltech split: the odgt GT of `odgt_split` (the pipeline's box checks; any odgt evaluator) and, for the
  Caltech evaluator (lla_jax/evaluation/caltech.py), {split}_caltech/annotations/<image id>.txt (each frame's
  stored bbGt text, data_pipelines/caltech.write_gt) with {split}_caltech/frames.txt (the image ids in
  image/index order, which is dbEval's evaluation order). Written once into the cache next to the odgt and
  rebuilt with it. info gets "gt_caltech" (the folder of bbGt files) and "gt_caltech_frames"."""
  gt_path, stamp_path, stamp = _cache_paths(builder, split, data_dir, "gt.odgt")
  folder = os.path.join(os.path.dirname(gt_path), f"{split}_caltech")
  frames = os.path.join(folder, "frames.txt")
  if _fresh(gt_path, stamp_path, stamp) and os.path.exists(frames):
    lines = records_lib.read_odgt(gt_path)
  else:
    logging.info("Writing the GT of %s/%s to %s and %s", builder.info.full_name, split, gt_path, folder)
    examples = _indexed_examples(builder, split)
    lines = [odgt_gt_line(ex) for ex in examples]
    texts = [(ex["image/id"].decode(), ex["bbgt"].decode()) for ex in examples]
    atomic.write_folder(folder, lambda tmp: caltech.write_gt(texts, tmp))  # replaces an older export whole
    records_lib.write_odgt(gt_path, lines)
    _write_stamp(stamp_path, stamp)
  out = records_lib.odgt_split(gt_path, lines)
  out.extra = {"gt_caltech": os.path.join(folder, "annotations"), "gt_caltech_frames": frames}
  return out


EXPORTERS = {"odgt": odgt_split, "citypersons_json": citypersons_split, "caltech_bbgt": caltech_split}


def export_split(name: str, builder, split: str, data_dir: str) -> records_lib.SplitGT:
  """The SplitGT of `split` of data set `name`, exported the way its registry entry says (gt_format)."""
  fmt = registry.get(name).gt_format
  if fmt not in EXPORTERS:
    raise ValueError(f"data set {name!r}: gt_format {fmt!r} has no exporter in data_pipelines/gt_export.py "
                     f"(known: {sorted(EXPORTERS)})")
  return EXPORTERS[fmt](builder, split, data_dir)
