"""Pictures: detections drawn on images, and the image a normalised Batch entry came from."""
from __future__ import annotations

import colorsys

import numpy as np


def denormalise(image, image_size, data_cfg):
  """Batch image (H, W, 3) float normalised -> uint8 RGB cropped to its true (h, w)."""
  h, w = (int(v) for v in image_size)
  x = np.asarray(image[:h, :w], np.float32) * np.asarray(data_cfg.pixel_std) + np.asarray(data_cfg.pixel_mean)
  if data_cfg.bgr:
    x = x[..., ::-1]
  return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def palette(n):
  """n well-separated RGB colours."""
  return [tuple(int(255 * c) for c in colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.85, 1.0)) for i in range(n)]


def draw_boxes(image, boxes, scores=None, color=(0, 255, 0), gt_boxes=None, colors=None, width=2, path=None):
  """Draws xyxy boxes (with scores) and optional GT boxes (thin white) on an RGB uint8 image."""
  from PIL import Image, ImageDraw
  im = Image.fromarray(np.asarray(image, np.uint8))
  d = ImageDraw.Draw(im)
  for b in ([] if gt_boxes is None else gt_boxes):
    d.rectangle([float(v) for v in b], outline=(255, 255, 255), width=1)
  for i, b in enumerate(boxes):
    c = colors[i] if colors is not None else color
    d.rectangle([float(v) for v in b], outline=c, width=width)
    if scores is not None:
      d.text((float(b[0]) + 2, float(b[1]) + 1), f"{float(scores[i]):.2f}", fill=c)
  if path:
    im.save(path)
  return im
