"""Numpy image and box transforms of the input pipeline (lla.md §2), shared by both data sources.

The tf.data pipeline (input_pipeline.py) restates the same steps in TensorFlow ops; the numpy source
(numpy_source.py) calls these functions directly; tests hold the two against each other. Boxes are
float32 xyxy in pixels, classes int32 (0 person, -1 ignore).

One example after `preprocess` (and one Batch row after stacking) holds the lla_jax/types.py Batch
fields plus two bookkeeping fields that `finish_batch` checks and strips:
  num_boxes   () int32  boxes left after clipping, before padding (> max_boxes is an error)
  num_dropped () int32  boxes dropped because clipping left zero width or height
"""
from __future__ import annotations

import logging

import numpy as np
from PIL import Image

from data_pipelines import records as records_lib
from lla_jax.types import BATCH_KEYS

EXTRA_KEYS = ("num_boxes", "num_dropped")


def resized_size(height: int, width: int, min_size: int, max_size: int) -> tuple[int, int, float]:
  """ResizeShortestEdge (lla.md §2.3): scale = min_size / short side, capped so the long side is at most
  max_size; new size int(h * scale + 0.5), int(w * scale + 0.5). Returns (new_h, new_w, scale)."""
  scale = min_size / min(height, width)
  if max(height, width) * scale > max_size:
    scale = max_size / max(height, width)
  return int(height * scale + 0.5), int(width * scale + 0.5), scale


def resize_image(image: np.ndarray, new_h: int, new_w: int) -> np.ndarray:
  """uint8 (h, w, 3) -> uint8 (new_h, new_w, 3), PIL bilinear (antialiased when shrinking), as upstream."""
  if image.shape[:2] == (new_h, new_w):
    return image
  return np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))


def box_scale_factors(height: int, width: int, new_h: int, new_w: int) -> np.ndarray:
  """(4,) float32 [sx, sy, sx, sy] with sx = new_w / w, sy = new_h / h (ratios taken in float64)."""
  sx, sy = np.float32(new_w / width), np.float32(new_h / height)
  return np.array([sx, sy, sx, sy], np.float32)


def flip_boxes(boxes: np.ndarray, width) -> np.ndarray:
  """Horizontal flip in an image of `width`: x1' = W - x2, x2' = W - x1."""
  w = np.float32(width)
  return np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], axis=1).astype(np.float32)


def clip_and_drop(boxes: np.ndarray, classes: np.ndarray, height, width):
  """Clip to [0, W] x [0, H]; drop boxes left with width <= 0 or height <= 0 (ignore boxes too).
  Returns (boxes (K, 4), classes (K,), number dropped)."""
  hi = np.array([width, height, width, height], np.float32)
  clipped = np.clip(boxes, np.float32(0), hi).astype(np.float32)
  keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
  return clipped[keep], classes[keep], int(len(boxes) - keep.sum())


def normalize_image(image: np.ndarray, pixel_mean, pixel_std, bgr: bool) -> np.ndarray:
  """uint8/float RGB (h, w, 3) -> float32 (BGR if `bgr`) minus mean, over std (per channel)."""
  x = image.astype(np.float32)
  if bgr:
    x = x[..., ::-1]
  return (x - np.asarray(pixel_mean, np.float32)) / np.asarray(pixel_std, np.float32)


def pad_size_error(image_id: str, new_h: int, new_w: int, pad_size) -> ValueError:
  return ValueError(f"image {image_id}: resized size {new_h}x{new_w} exceeds data.pad_size "
                    f"{pad_size[0]}x{pad_size[1]}; raise pad_size or lower min_size/max_size")


def too_many_boxes_error(image_id: str, num_boxes: int, max_boxes: int) -> ValueError:
  return ValueError(f"image {image_id} has {num_boxes} boxes after clipping, more than data.max_boxes = "
                    f"{max_boxes}; raise data.max_boxes")


def pad_image(image: np.ndarray, pad_size, image_id: str) -> np.ndarray:
  """Zero-pad (h, w, 3) bottom/right to pad_size (H, W); error naming the image if it does not fit."""
  h, w = image.shape[:2]
  if h > pad_size[0] or w > pad_size[1]:
    raise pad_size_error(image_id, h, w, pad_size)
  return np.pad(image, ((0, pad_size[0] - h), (0, pad_size[1] - w), (0, 0)))


def pad_boxes(boxes: np.ndarray, classes: np.ndarray, max_boxes: int, image_id: str):
  """Pad to max_boxes rows: (boxes (M, 4), classes (M,), valid (M,)); padding rows zero and invalid.
  More than max_boxes boxes is an error naming the image."""
  n = len(boxes)
  if n > max_boxes:
    raise too_many_boxes_error(image_id, n, max_boxes)
  out_b = np.zeros((max_boxes, 4), np.float32)
  out_c = np.zeros((max_boxes,), np.int32)
  out_b[:n], out_c[:n] = boxes, classes
  return out_b, out_c, np.arange(max_boxes) < n


def preprocess(image: np.ndarray, boxes: np.ndarray, classes: np.ndarray, index: int, image_id: str,
               data_cfg, flip: bool) -> dict:
  """One decoded image (uint8 (h, w, 3) RGB) and its GT (xyxy, classes) -> one padded example."""
  h, w = image.shape[:2]
  new_h, new_w, scale = resized_size(h, w, data_cfg.min_size, data_cfg.max_size)
  image = resize_image(image, new_h, new_w)
  boxes = np.asarray(boxes, np.float32).reshape(-1, 4) * box_scale_factors(h, w, new_h, new_w)
  classes = np.asarray(classes, np.int32).reshape(-1)
  if flip:
    image = image[:, ::-1]
    boxes = flip_boxes(boxes, new_w)
  boxes, classes, dropped = clip_and_drop(boxes, classes, new_h, new_w)
  image = pad_image(normalize_image(image, data_cfg.pixel_mean, data_cfg.pixel_std, data_cfg.bgr),
                    data_cfg.pad_size, image_id)
  gt_boxes, gt_classes, gt_valid = pad_boxes(boxes, classes, data_cfg.max_boxes, image_id)
  return {"image": image, "image_size": np.array([new_h, new_w], np.int32), "orig_size": np.array([h, w], np.int32),
          "scale": np.float32(scale), "gt_boxes": gt_boxes, "gt_classes": gt_classes, "gt_valid": gt_valid,
          "image_id": np.int32(index), "num_boxes": np.int32(len(boxes)), "num_dropped": np.int32(dropped)}


def padding_example(data_cfg) -> dict:
  """A filler example for static eval batches: zero image and sizes, scale 1, no valid boxes, image_id -1."""
  ph, pw = data_cfg.pad_size
  m = data_cfg.max_boxes
  return {"image": np.zeros((ph, pw, 3), np.float32), "image_size": np.zeros((2,), np.int32),
          "orig_size": np.zeros((2,), np.int32), "scale": np.float32(1.0), "gt_boxes": np.zeros((m, 4), np.float32),
          "gt_classes": np.zeros((m,), np.int32), "gt_valid": np.zeros((m,), bool), "image_id": np.int32(-1),
          "num_boxes": np.int32(0), "num_dropped": np.int32(0)}


def stack_examples(examples) -> dict:
  """List of examples -> one batch dict (leading batch axis)."""
  return {k: np.stack([e[k] for e in examples]) for k in examples[0]}


def eval_num_batches(num_images: int, batch_size: int, process_count: int) -> int:
  """Eval batches per process: every process runs the same number (its shard padded with filler
  images), enough for the largest shard, ceil(N / P) images."""
  largest = -(-num_images // process_count)
  return max(1, -(-largest // batch_size))


def shard_range(num_images: int, process_index: int, process_count: int) -> tuple[int, int]:
  """[start, end) of this process's contiguous shard; the first N % P shards hold one extra image
  (the rule of tfds.split_for_jax_process without drop_remainder)."""
  per, extra = divmod(num_images, process_count)
  start = per * process_index + min(process_index, extra)
  return start, start + per + (process_index < extra)


def split_records(lines) -> list[dict]:
  """The record list of a split from its GT lines (line i = image_id i): [{"ID", "width", "height", "index"}]."""
  return [{"ID": line["ID"], "width": int(line["width"]), "height": int(line["height"]), "index": i}
          for i, line in enumerate(lines)]


def check_split(lines, data_cfg, where: str) -> dict:
  """Fail before training, naming the image, if any image of the split would not fit data.pad_size
  after resizing or would keep more than data.max_boxes boxes after clipping; log the box maxima
  (datasets.md §5.3). Lines are GT odgt dicts with "width"/"height". Returns the maxima."""
  max_raw = max_kept = 0
  for i, line in enumerate(lines):
    h, w = int(line["height"]), int(line["width"])
    new_h, new_w, _ = resized_size(h, w, data_cfg.min_size, data_cfg.max_size)
    if new_h > data_cfg.pad_size[0] or new_w > data_cfg.pad_size[1]:
      raise pad_size_error(line["ID"], new_h, new_w, data_cfg.pad_size)
    gt = records_lib.gt_arrays(line, f"{where} line {i + 1} (ID {line['ID']})")
    boxes = gt["fbox"] * box_scale_factors(h, w, new_h, new_w)
    kept, _, _ = clip_and_drop(boxes, gt["ignore"], new_h, new_w)
    if len(kept) > data_cfg.max_boxes:
      raise too_many_boxes_error(line["ID"], len(kept), data_cfg.max_boxes)
    max_raw, max_kept = max(max_raw, len(boxes)), max(max_kept, len(kept))
  logging.info("%s: %d images, at most %d boxes per image (%d after clipping; data.max_boxes = %d)",
               where, len(lines), max_raw, max_kept, data_cfg.max_boxes)
  return {"max_boxes": max_raw, "max_boxes_clipped": max_kept}


class PipelineStats:
  """Running counters of one iterator: images (non-padding) seen and boxes dropped by clipping."""

  def __init__(self, name: str):
    self.name = name
    self.images = 0
    self.dropped_boxes = 0
    self.batches = 0

  def as_dict(self) -> dict:
    return {"images": self.images, "dropped_boxes": self.dropped_boxes, "batches": self.batches}

  def log(self):
    logging.info("%s: %d images in %d batches, %d boxes dropped (zero width or height after clipping)",
                 self.name, self.images, self.batches, self.dropped_boxes)


def finish_batch(batch: dict, max_boxes: int, records: list, stats: PipelineStats, log_every: int = 1000) -> dict:
  """Check and strip the bookkeeping fields of a raw batch; return the Batch (lla_jax/types.py keys).

  Raises naming the image if one had more than max_boxes boxes; counts dropped boxes in `stats` and
  logs the counters every `log_every` batches.
  """
  over = np.flatnonzero(batch["num_boxes"] > max_boxes)
  if over.size:
    i = over[0]
    raise too_many_boxes_error(records[int(batch["image_id"][i])]["ID"], int(batch["num_boxes"][i]), max_boxes)
  stats.batches += 1
  stats.images += int((batch["image_id"] >= 0).sum())
  stats.dropped_boxes += int(batch["num_dropped"].sum())
  if log_every and stats.batches % log_every == 0:
    stats.log()
  return {k: batch[k] for k in BATCH_KEYS}
