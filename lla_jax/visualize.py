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


def draw_assignment(image, points, strides, matched_gt, gt_boxes, gt_classes, gt_valid, title="", scale=2):
  """The positives of one assigner on one image: every point drawn in the colour of the person it
  was given to (grey: matched to an ignore region), GT boxes in the same colours.

  image (h, w, 3) uint8; points (A, 2); strides (A,); matched_gt (A,); gt_* (M, ...). Returns a PIL image.
  """
  from PIL import Image, ImageDraw
  h, w = image.shape[:2]
  im = Image.fromarray(np.asarray(image, np.uint8)).resize((w * scale, h * scale))
  d = ImageDraw.Draw(im)
  colours = palette(len(gt_boxes))
  for g, (b, c, v) in enumerate(zip(gt_boxes, gt_classes, gt_valid)):
    if v:
      d.rectangle([float(x) * scale for x in b], outline=(128, 128, 128) if c < 0 else colours[g], width=2)
  for (x, y), s, g in zip(points, strides, matched_gt):
    if g < 0 or x >= w or y >= h:
      continue
    r = 1.5 + np.log2(float(s)) - 3   # bigger dots on coarser levels
    colour = (128, 128, 128) if gt_classes[g] < 0 else colours[g]
    d.ellipse([x * scale - r, y * scale - r, x * scale + r, y * scale + r], fill=colour, outline=(0, 0, 0))
  if title:
    d.rectangle([0, 0, 8 * len(title) + 8, 14], fill=(0, 0, 0))
    d.text((4, 1), title, fill=(255, 255, 255))
  return im
