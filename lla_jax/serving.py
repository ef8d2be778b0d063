"""Runs an exported detector (W/export/detector.jax, lla_jax/export.py) on images with no model code:
jax, numpy, json and PIL only. `detect(*load("W/export/detector.jax"), [Image.open(p) for p in paths])`."""
import json

import jax
import numpy as np
from PIL import Image


def load(path):
  """(jax.export.Exported, contract dict) of the artifact and the .json next to it."""
  with open(path, "rb") as f:
    exported = jax.export.deserialize(bytearray(f.read()))
  with open(path[:-len(".jax")] + ".json" if path.endswith(".jax") else path + ".json") as f:
    return exported, json.load(f)


def detect(exported, contract, images):
  """PIL images or uint8 RGB arrays (any sizes) -> {boxes (N, D, 4) xyxy original pixels, scores, classes,
  valid} numpy: each image resized and padded as the contract says, one call for the batch."""
  (ph, pw), r = contract["input_size"], contract["resize"]
  batch, sizes = np.zeros((len(images), ph, pw, 3), np.uint8), np.zeros((len(images), 4), np.int32)
  for i, im in enumerate(images):
    im = Image.fromarray(np.asarray(im)) if not isinstance(im, Image.Image) else im.convert("RGB")
    w, h = im.size
    s = r["min_size"] / min(h, w)
    s = r["max_size"] / max(h, w) if max(h, w) * s > r["max_size"] else s
    nh, nw = int(h * s + 0.5), int(w * s + 0.5)
    if nh > ph or nw > pw:
      raise ValueError(f"image {i}: resized to {nh}x{nw}, larger than the artifact's input_size {ph}x{pw}")
    batch[i, :nh, :nw] = np.asarray(im if (nh, nw) == (h, w) else im.resize((nw, nh), Image.BILINEAR))
    sizes[i] = nh, nw, h, w
  return {k: np.asarray(v) for k, v in exported.call(batch, sizes[:, :2], sizes[:, 2:]).items()}
