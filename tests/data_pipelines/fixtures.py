"""Tiny CrowdHuman and CityPersons trees in the official formats (crowdhuman.org odgt; Cityscapes
gtBboxCityPersons json and the CityPersons toolbox .mat), drawn here.

No dataset content: a few small drawn JPEG / PNG pictures with hand-written annotations that cover the
cases the builders and pipelines must handle (tag "mask" boxes, boxes past the border, a box with no
area, an image with only ignore boxes, an image without boxes, IDs with a comma; CityPersons labels
0..5, short pedestrians, a pedestrian covering an ignore region, a toolbox .mat with the same boxes).
"""
from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image, ImageDraw


def draw_image(height: int, width: int, boxes_xywh=(), seed: int = 0) -> Image.Image:
  """A smooth picture with filled rectangles where the boxes are (something for the codecs to chew)."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:height, 0:width]
  base = np.stack([40 + 150 * xx / max(width - 1, 1), 60 + 120 * yy / max(height - 1, 1),
                   np.full_like(xx, 90.0 + 40 * seed % 120)], axis=-1)
  img = Image.fromarray(base.astype(np.uint8))
  d = ImageDraw.Draw(img)
  for x, y, w, h in boxes_xywh:
    d.rectangle([x, y, x + max(w, 1), y + max(h, 1)], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
  return img


# ---------------------------------------------------------------------------------------------------
# CrowdHuman.

def ch_box(tag, fbox, vbox=None, hbox=None, extra=None, head_attr=None):
  box = {"tag": tag, "fbox": list(fbox), "vbox": list(vbox or fbox), "hbox": list(hbox or fbox[:2] + [4, 4])}
  if extra is not None:
    box["extra"] = extra
  if head_attr is not None:
    box["head_attr"] = head_attr
  return box


# (ID, (height, width), gtboxes). Train: landscape, portrait, only ignore boxes, no boxes.
CH_TRAIN = [
    ("273271,c9db000d5146c15", (60, 90), [
        ch_box("person", [10, 5, 20, 40], [12, 8, 15, 30], [15, 5, 8, 8], {"box_id": 0, "occ": 1},
               {"ignore": 0, "occ": 0, "unsure": 0}),
        ch_box("person", [-6, 20, 14, 44], extra={"box_id": 1, "occ": 0}),      # past the left and bottom border
        ch_box("mask", [60, 10, 25, 30], extra={"ignore": 1, "box_id": 2}),     # crowd region
        ch_box("person", [40, 30, 0, 10], extra={"box_id": 3})]),                # no area
    ("284193,faa9000f2678b5e", (90, 60), [
        ch_box("person", [5, 10, 30, 70], extra={"ignore": 0}),
        ch_box("person", [50, 40, 20, 60], extra={"ignore": 1, "occ": 2})]),     # ignored person, past right/bottom
    ("283554,35288000868e92d2", (48, 64), [
        ch_box("mask", [0, 0, 30, 20], extra={"ignore": 1})]),                   # only an ignore box
    ("282555,f9cc0008b22e3d1", (48, 64), []),                                    # no boxes
]
CH_VAL = [
    ("273275,cadd90003bfe3c8", (60, 90), [
        ch_box("person", [20, 10, 16, 36], [20, 12, 16, 30], [24, 10, 6, 6], {"box_id": 0}),
        ch_box("person", [80, 0, 20, 30], extra={"box_id": 1}),                # past the right border
        ch_box("mask", [0, 30, 10, 10], extra={"ignore": 1, "box_id": 2})]),
    ("273278,c9e66000f2b01c3", (64, 48), [
        ch_box("person", [4, 4, 20, 50], head_attr={"ignore": 1, "unsure": 1})]),
]


def write_crowdhuman(root, train=CH_TRAIN, val=CH_VAL, layout="flat") -> dict:
  """Write a CrowdHuman tree. layout "flat": Images/ and the odgt files at the top; "archives": one
  Images/ per archive folder and the odgt files under annotations/. Returns {split: [(ID, (h, w), lines)]}."""
  os.makedirs(root, exist_ok=True)
  odgt_dir = root if layout == "flat" else os.path.join(root, "annotations")
  os.makedirs(odgt_dir, exist_ok=True)
  for split, items in (("train", train), ("val", val)):
    with open(os.path.join(odgt_dir, f"annotation_{split}.odgt"), "w") as f:
      for k, (image_id, (h, w), boxes) in enumerate(items):
        f.write(json.dumps({"ID": image_id, "gtboxes": boxes}) + "\n")
        folder = "Images" if layout == "flat" else (
            f"CrowdHuman_train0{1 + k % 3}/Images" if split == "train" else "CrowdHuman_val/Images")
        os.makedirs(os.path.join(root, folder), exist_ok=True)
        draw_image(h, w, [b["fbox"] for b in boxes], seed=k).save(
            os.path.join(root, folder, image_id + ".jpg"), quality=90)
  return {"train": train, "val": val}


def ch_image_path(root, image_id):
  for dirpath, _, files in os.walk(root):
    if image_id + ".jpg" in files:
      return os.path.join(dirpath, image_id + ".jpg")
  raise FileNotFoundError(image_id)


# ---------------------------------------------------------------------------------------------------
# CityPersons.

CP_H, CP_W = 128, 256
# Toolbox rows [class_label, x, y, w, h, instance_id, x_vis, y_vis, w_vis, h_vis] per image.
CP_TRAIN = {
    ("aachen", "aachen_000000_000019_leftImg8bit.png"): [
        [1, 20, 30, 25, 60, 24000, 22, 30, 20, 50],      # GT
        [1, 100, 40, 12, 30, 24001, 100, 40, 12, 30],    # pedestrian < 50 px -> ignore
        [2, 150, 20, 28, 70, 25000, 150, 25, 28, 60],    # rider -> ignore
        [0, 200, 10, 40, 40, 0, 200, 10, 40, 40],        # ignore region
        [1, -10, 50, 30, 80, 24002, 0, 50, 20, 70],      # GT past the left and bottom border (clipped h 77)
        [5, 60, 20, 30, 40, 0, 60, 20, 30, 40]],         # person group
    ("aachen", "aachen_000001_000019_leftImg8bit.png"): [
        [1, 40, 20, 24, 60, 24000, 40, 20, 24, 60],      # GT covering the ignore region below -> moved
        [0, 44, 30, 10, 10, 0, 44, 30, 10, 10],
        [3, 120, 60, 30, 40, 26000, 120, 60, 30, 40]],   # sitting person
    ("bochum", "bochum_000000_000313_leftImg8bit.png"): [
        [0, 10, 10, 30, 30, 0, 10, 10, 30, 30],          # only ignore regions: not an ALFNet image
        [4, 100, 30, 20, 50, 27000, 100, 30, 20, 50]],
    ("bochum", "bochum_000000_001097_leftImg8bit.png"): [],   # no boxes
}
CP_VAL = {
    ("frankfurt", "frankfurt_000000_000294_leftImg8bit.png"): [
        [1, 30, 20, 30, 73, 24000, 30, 30, 30, 50],      # vis_ratio 1500 / 2190
        [1, 120, 40, 10, 24, 24001, 120, 40, 10, 24],
        [5, 180, 30, 60, 50, 0, 180, 30, 60, 50],
        [0, 0, 0, 20, 20, 0, 0, 0, 20, 20]],
    ("munster", "munster_000000_000019_leftImg8bit.png"): [
        [1, 240, 50, 30, 74, 24000, 240, 50, 16, 70],    # past the right border
        [2, 100, 30, 20, 50, 25000, 100, 35, 20, 40]],
}


def write_citypersons(root, train=CP_TRAIN, val=CP_VAL, json_source=True, mat_source=True, size=(CP_H, CP_W)):
  """Write a CityPersons tree: leftImg8bit PNGs, gtBboxCityPersons JSON files and/or the toolbox .mat
  files (anno_<split>.mat, variable anno_<split>_aligned, one struct per image in sorted order)."""
  import scipy.io
  labels = ("ignore", "pedestrian", "rider", "sitting person", "person (other)", "person group")
  for split, items in (("train", train), ("val", val)):
    cells = np.empty((1, len(items)), dtype=object)
    for k, ((city, im_name), rows) in enumerate(sorted(items.items())):
      folder = os.path.join(root, "leftImg8bit", split, city)
      os.makedirs(folder, exist_ok=True)
      draw_image(*size, [r[1:5] for r in rows], seed=k).save(os.path.join(folder, im_name))
      if json_source:
        jdir = os.path.join(root, "gtBboxCityPersons", split, city)
        os.makedirs(jdir, exist_ok=True)
        doc = {"imgHeight": size[0], "imgWidth": size[1],
               "objects": [{"instanceId": r[5], "bbox": r[1:5], "bboxVis": r[6:10], "label": labels[r[0]]}
                           for r in rows]}
        with open(os.path.join(jdir, im_name.replace("_leftImg8bit.png", "_gtBboxCityPersons.json")), "w") as f:
          json.dump(doc, f)
      cells[0, k] = {"cityname": city, "im_name": im_name,
                     "bbs": np.asarray(rows, np.float64).reshape(-1, 10) if rows else np.zeros((0, 0))}
    if mat_source:
      scipy.io.savemat(os.path.join(root, f"anno_{split}.mat"), {f"anno_{split}_aligned": cells})
  return {"train": train, "val": val}
