"""The image a normalised Batch entry came from (the pictures themselves: lla_jax/pictures.py)."""
from __future__ import annotations

import numpy as np


def denormalise(image, image_size, data_cfg):
  """Batch image (H, W, 3) float normalised -> uint8 RGB cropped to its true (h, w)."""
  h, w = (int(v) for v in image_size)
  x = np.asarray(image[:h, :w], np.float32) * np.asarray(data_cfg.pixel_std) + np.asarray(data_cfg.pixel_mean)
  if data_cfg.bgr:
    x = x[..., ::-1]
  return np.clip(x + 0.5, 0, 255).astype(np.uint8)
