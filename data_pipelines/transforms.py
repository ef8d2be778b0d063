"""Numpy image and box transforms of the input pipelines, shared by both data sources: the CrowdHuman
recipe (cvpods cvpods/data/transforms/transform_gen.py) and, at the end, the ALFNet augmentation
(liuwei16/ALFNet keras_alfnet/data_augment.py).

The tf.data pipeline (input_pipeline.py) restates the same steps in TensorFlow ops; the numpy source
(numpy_source.py) calls these functions directly; tests hold the two against each other. Boxes are
float32 xyxy in pixels, classes int32 (0 person, -1 ignore).

One example after `preprocess` (and one Batch row after stacking) holds the lla_jax/types.py Batch
fields plus two bookkeeping fields that `finish_batch` checks and strips:
  num_boxes   () int32  boxes left after clipping, before padding (> max_boxes is an error)
  num_dropped () int32  boxes dropped because they were not finite or clipping left zero width or height
"""
from __future__ import annotations

import logging

import numpy as np
from PIL import Image

from data_pipelines import records as records_lib
from data_pipelines import registry
from lla_jax.types import BATCH_KEYS

EXTRA_KEYS = ("num_boxes", "num_dropped")


def resized_size(height: int, width: int, min_size: int, max_size: int) -> tuple[int, int, float]:
  """ResizeShortestEdge (cvpods cvpods/data/transforms/transform_gen.py): scale = min_size / short side,
  capped so the long side is at most max_size; new size int(h * scale + 0.5), int(w * scale + 0.5).
  Returns (new_h, new_w, scale)."""
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


def finite_rows(boxes: np.ndarray) -> np.ndarray:
  """(N,) bool: the box has four finite coordinates. NaN or infinite boxes never reach an assigner."""
  return np.isfinite(boxes).all(axis=1)


def clip_and_drop(boxes: np.ndarray, classes: np.ndarray, height, width):
  """Clip to [0, W] x [0, H]; drop boxes that are not finite or are left with width <= 0 or height <= 0
  (ignore boxes too). Returns (boxes (K, 4), classes (K,), number dropped)."""
  hi = np.array([width, height, width, height], np.float32)
  finite = finite_rows(boxes)
  clipped = np.clip(np.where(finite[:, None], boxes, 0), np.float32(0), hi).astype(np.float32)
  keep = finite & (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
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


def too_many_boxes_error(image_id: str, num_boxes: int, max_boxes: int, needed: int | None = None,
                         where: str = "") -> ValueError:
  """The error for an image with more boxes than data.max_boxes; `needed` is the maximum over the split
  (the value the statistics call for) when known."""
  fix = (f"the statistics of {where or 'this split'} call for data.max_boxes >= {needed} "
         f"(--config.data.max_boxes={needed})" if needed is not None else "raise data.max_boxes")
  return ValueError(f"image {image_id} has {num_boxes} boxes after clipping, more than data.max_boxes = "
                    f"{max_boxes}; {fix}")


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
               data_cfg, flip: bool, pad_size=None) -> dict:
  """One decoded image (uint8 (h, w, 3) RGB) and its GT (xyxy, classes) -> one example padded to
  pad_size (H, W) (default data.pad_size)."""
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
                    pad_size or data_cfg.pad_size, image_id)
  gt_boxes, gt_classes, gt_valid = pad_boxes(boxes, classes, data_cfg.max_boxes, image_id)
  return {"image": image, "image_size": np.array([new_h, new_w], np.int32), "orig_size": np.array([h, w], np.int32),
          "scale": np.float32(scale), "gt_boxes": gt_boxes, "gt_classes": gt_classes, "gt_valid": gt_valid,
          "image_id": np.int32(index), "num_boxes": np.int32(len(boxes)), "num_dropped": np.int32(dropped)}


def padding_example(data_cfg, pad_size=None) -> dict:
  """A filler example for static eval batches: zero image (pad_size, default data.pad_size) and sizes,
  scale 1, no valid boxes, image_id -1."""
  ph, pw = pad_size or data_cfg.pad_size
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


EVAL_PADDINGS = ("divisible", "fixed")


def round_up(size: int, divisor: int) -> int:
  """size rounded up to a multiple of divisor."""
  return -(-int(size) // int(divisor)) * int(divisor)


def eval_padding(data_cfg) -> str:
  """How evaluation pads a resized image (data.augment 'flip'), set from config.test by the callers
  (lla_jax/evaluate.py eval_data_config): 'divisible' = to its own size rounded up to
  data.eval_size_divisibility, as the released code tests one image at a time (cvpods ImageList with
  SIZE_DIVISIBILITY 32); 'fixed' = to data.pad_size. A data config without the field pads 'fixed'."""
  mode = data_cfg.get("eval_padding", None) or "fixed"
  if mode not in EVAL_PADDINGS:
    raise ValueError(f"test.padding must be one of {', '.join(map(repr, EVAL_PADDINGS))}; got {mode!r}")
  return mode


def eval_pad_shape(height: int, width: int, data_cfg) -> tuple[int, int]:
  """(H, W) an original image of height x width is padded to in evaluation (data.augment 'flip')."""
  if eval_padding(data_cfg) == "fixed":
    return tuple(int(v) for v in data_cfg.pad_size)
  div = int(data_cfg.get("eval_size_divisibility", None) or 32)
  new_h, new_w, _ = resized_size(height, width, data_cfg.min_size, data_cfg.max_size)
  return round_up(new_h, div), round_up(new_w, div)


def eval_schedule(shapes, batch_size: int, process_index: int, process_count: int) -> list:
  """The evaluation batches of this process: [(pad shape (H, W), [record index or None (a filler)] *
  batch_size)], grouped by padded shape so that each shape is one static input shape (one compilation).

  shapes: the pad shape of every record of the split, in record order. Shapes run in sorted order; for
  each, every process runs the same number of batches (enough for the process holding most images of
  that shape in its contiguous shard, `shard_range`), filled with None slots, so all processes step
  through the same global shapes together. With a single shape this is the plain contiguous order with
  `eval_num_batches` batches."""
  shapes = [tuple(int(v) for v in s) for s in shapes]
  shards = [shard_range(len(shapes), p, process_count) for p in range(process_count)]
  start, end = shards[process_index]
  out = []
  for shape in sorted(set(shapes)):
    most = max(sum(1 for i in range(a, b) if shapes[i] == shape) for a, b in shards)
    mine = [i for i in range(start, end) if shapes[i] == shape]
    n = -(-most // batch_size)
    mine += [None] * (n * batch_size - len(mine))
    out += [(shape, mine[k * batch_size:(k + 1) * batch_size]) for k in range(n)]
  return out


def shape_buckets(sizes, divisor: int, shards) -> tuple[np.ndarray, list]:
  """Training buckets by padded shape (the upstream-like batching): (bucket (N,) int per image, pad
  shapes [(H, W)] per bucket, sorted). sizes (N, 2) resized (h, w); an image's shape is its size rounded
  up to `divisor`. cvpods pads each aspect-grouped per-GPU batch to its common size rounded up to 32;
  here a batch holds images of one padded shape. A shape that some process's shard (`shards`, [(start,
  end)]) lacks is merged into the smallest-area shape of the same orientation that covers it and every
  shard holds; failing that, into the covering size of its orientation (largest h, largest w)."""
  sizes = np.asarray(sizes, np.int64).reshape(-1, 2)
  shapes = [(round_up(h, divisor), round_up(w, divisor)) for h, w in sizes]
  everywhere = set.intersection(*[set(shapes[a:b]) for a, b in shards]) if shards else set()
  landscape = sizes[:, 1] >= sizes[:, 0]
  out = []
  for i, (h, w) in enumerate(shapes):
    if (h, w) not in everywhere:
      cover = [s for s in everywhere if s[0] >= h and s[1] >= w and (s[1] >= s[0]) == bool(landscape[i])]
      if cover:
        h, w = min(cover, key=lambda s: (s[0] * s[1], s))
      else:
        same = np.array([s for s, o in zip(shapes, landscape) if o == landscape[i]])
        h, w = (int(v) for v in same.max(axis=0))
    out.append((h, w))
  pads = sorted(set(out))
  return np.array([pads.index(s) for s in out], np.int64), pads


def shard_range(num_images: int, process_index: int, process_count: int) -> tuple[int, int]:
  """[start, end) of this process's contiguous shard; the first N % P shards hold one extra image
  (the rule of tfds.split_for_jax_process without drop_remainder)."""
  per, extra = divmod(num_images, process_count)
  start = per * process_index + min(process_index, extra)
  return start, start + per + (process_index < extra)


def check_split(lines, data_cfg, where: str, check_pad: bool = True) -> dict:
  """Fail before training, naming the image, if any image of the split would not fit data.pad_size
  after resizing or would keep more than data.max_boxes boxes after clipping (the error states the
  value the whole split calls for); log the box maxima. Lines are GT odgt dicts
  with "width"/"height". Returns the maxima."""
  key = registry.box_key(data_cfg)   # the boxes data.box trains on
  max_raw = max_kept = 0
  over = None  # (ID, boxes kept) of the first image over data.max_boxes
  for i, line in enumerate(lines):
    h, w = int(line["height"]), int(line["width"])
    new_h, new_w, _ = resized_size(h, w, data_cfg.min_size, data_cfg.max_size)
    if check_pad and (new_h > data_cfg.pad_size[0] or new_w > data_cfg.pad_size[1]):
      raise pad_size_error(line["ID"], new_h, new_w, data_cfg.pad_size)
    gt = records_lib.gt_arrays(line, f"{where} line {i + 1} (ID {line['ID']})")
    boxes = gt[key] * box_scale_factors(h, w, new_h, new_w)
    kept, _, _ = clip_and_drop(boxes, gt["ignore"], new_h, new_w)
    if len(kept) > data_cfg.max_boxes and over is None:
      over = (line["ID"], len(kept))
    max_raw, max_kept = max(max_raw, len(boxes)), max(max_kept, len(kept))
  if over is not None:
    raise too_many_boxes_error(over[0], over[1], data_cfg.max_boxes, max_kept, where)
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
    logging.info("%s: %d images in %d batches, %d boxes dropped (not finite, or zero width or height after "
                 "clipping)",
                 self.name, self.images, self.batches, self.dropped_boxes)


def check_flip_split(gt: records_lib.SplitGT, data_cfg, where: str, check_pad: bool = True) -> dict:
  """data.augment 'flip': `check_split` on the split's odgt lines (it needs the boxes of every image);
  a GT format without them is an error naming the choice that works."""
  if gt.lines is None:
    raise ValueError(f"{where}: data.augment 'flip' needs the boxes of every image in the split GT (an odgt "
                     f"file); data set {data_cfg.name!r} exports its GT as {gt.info_key}: use data.augment='alfnet'")
  return check_split(gt.lines, data_cfg, where, check_pad)


def alfnet_sizes(data_cfg) -> tuple[tuple[int, int], tuple[int, int]]:
  """(train_size, eval_size) of data.augment 'alfnet' (data.train_size / data.eval_size, set by the
  ALFNet configs); an error naming the fields when they are missing or do not fit data.pad_size."""
  sizes = []
  for key in ("train_size", "eval_size"):
    v = data_cfg.get(key)
    if v is None or len(v) != 2:
      raise ValueError(f"data.augment 'alfnet' (data set {data_cfg.name!r}) needs data.{key} = (H, W) "
                       f"(configs/alfnet_*.py set train_size (640, 1280) and eval_size (1024, 2048)); got {v!r}")
    sizes.append(tuple(int(x) for x in v))
  if sizes[0][0] > data_cfg.pad_size[0] or sizes[0][1] > data_cfg.pad_size[1]:
    raise ValueError(f"data.train_size {sizes[0]} exceeds data.pad_size {tuple(data_cfg.pad_size)}")
  return sizes[0], sizes[1]


def check_alfnet_split(gt: records_lib.SplitGT, data_cfg, train: bool, where: str, shard: tuple[int, int]) -> dict:
  """data.augment 'alfnet': fail before training, naming the image, when an image has more boxes than
  data.max_boxes (the error states the split maximum) or (eval) does not fit data.eval_size, or (train)
  this process's shard holds no image ALFNet trains on (one with GT). Returns {"max_boxes",
  "num_train_images"}."""
  _, eval_size = alfnet_sizes(data_cfg)
  needed = int(gt.num_boxes.max(initial=0))
  for r, n in zip(gt.records, gt.num_boxes):
    if n > data_cfg.max_boxes:
      raise too_many_boxes_error(r["ID"], int(n), data_cfg.max_boxes, needed, where)
    if not train and (r["height"] > eval_size[0] or r["width"] > eval_size[1]):
      raise pad_size_error(r["ID"], r["height"], r["width"], eval_size)
  usable = int(gt.has_gt.sum())
  if train and not gt.has_gt[shard[0]:shard[1]].any():
    raise ValueError(f"{where}: images {shard[0]}..{shard[1] - 1} of this process hold no GT box (ALFNet trains "
                     "only on images with one; CityPersons: a pedestrian of height >= 50); use fewer processes "
                     "or more data")
  logging.info("%s: %d images (%d with GT, used for training), at most %d boxes per image (data.max_boxes = %d)",
               where, len(gt.records), usable, needed, data_cfg.max_boxes)
  return {"max_boxes": needed, "num_train_images": usable}


def split_plan(gt: records_lib.SplitGT, data_cfg, alfnet: bool, train: bool, where: str, process_index: int,
               process_count: int, batch_size: int = 1) -> tuple[dict, tuple[int, int], tuple[int, int]]:
  """What both sources do with a split before any step runs: check it for the augmentation (`alfnet` or
  'flip'), find this process's shard and the batches' pad size. Returns (info dict of create_dataset,
  (start, end) of the shard, pad size (H, W): data.pad_size, or data.eval_size in 'alfnet' evaluation).
  Evaluation adds info["schedule"] (`eval_schedule`: this process's batches grouped by pad shape; 'flip'
  pads each image as `eval_pad_shape`, 'alfnet' to data.eval_size)."""
  start, end = shard_range(len(gt.records), process_index, process_count)
  if alfnet:
    maxima = check_alfnet_split(gt, data_cfg, train, where, (start, end))
    pad_size = data_cfg.pad_size if train else alfnet_sizes(data_cfg)[1]
  else:
    maxima = check_flip_split(gt, data_cfg, where, check_pad=train or eval_padding(data_cfg) == "fixed")
    pad_size = data_cfg.pad_size
  stats = PipelineStats(f"{where} (process {process_index}/{process_count})")
  info = {"num_images": len(gt.records), "records": gt.records, **gt.info(), "stats": stats, **maxima}
  if not train:
    shapes = [pad_size if alfnet else eval_pad_shape(r["height"], r["width"], data_cfg) for r in gt.records]
    info["schedule"] = eval_schedule(shapes, batch_size, process_index, process_count) or [
        (tuple(int(v) for v in pad_size), [None] * batch_size)]
  return info, (start, end), tuple(pad_size)


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


# ---------------------------------------------------------------------------------------------------
# ALFNet augmentation (liuwei16/ALFNet keras_alfnet/data_augment.py). Boxes are integer pixel coordinates
# (x2 = x1 + w, the +1 convention of ALFNet); classes 0 = GT, -1 = ignore region. The random numbers
# come in as NUM_DRAWS uniforms in [0, 1) so that the tf.data version (input_pipeline.py) and this one
# can be fed the same draws.

BRIGHTNESS_PROB = 0.5
BRIGHTNESS_RANGE = (0.5, 2.0)   # HSV V channel x U(0.5, 2), saturated at 255
CROP_SCALE = (0.3, 1.0)         # crop side = int(r x image side), r ~ U(0.3, 1.0)
CROP_KEEP_FRACTION = 0.5        # GT kept when its clamped area >= 0.5 x its area (in_thre)
CROP_MIN_IGNORE_AREA = 100      # ignore region kept when its clamped area > 100
MIN_GT_WIDTH = 16               # after the resize: GT kept when x2 - x1 >= 16
MIN_IGNORE_SIDE = 8             # after the resize: ignore region kept when w >= 8 and h >= 8
NUM_DRAWS = 6                   # brightness coin, brightness factor, flip coin, crop ratio, GT pick / x, y


def brightness(image: np.ndarray, factor) -> np.ndarray:
  """Scale the HSV value channel: V' = min(int(V * factor), 255) with V = max(R, G, B); hue and
  saturation fixed means every channel scales by V' / V (rounded). uint8 (h, w, 3) -> uint8.
  (Upstream round-trips through OpenCV's 8-bit HSV, which adds its own +-1 quantisation; not reproduced.)"""
  x = image.astype(np.float32)
  v = x.max(axis=2, keepdims=True)
  f = np.float32(factor)
  v_new = np.where(v * f > 255, np.float32(255), np.floor(v * f))
  gain = np.where(v > 0, v_new / np.where(v > 0, v, 1), 0).astype(np.float32)
  return np.clip(np.floor(x * gain + np.float32(0.5)), 0, 255).astype(np.uint8)


def crop_window(height: int, width: int, gt_boxes: np.ndarray, ratio: float, u_pick: float,
                u_y: float) -> tuple[int, int, int, int]:
  """ALFNet random crop around a person: (x0, y0, crop_h, crop_w).

  crop size int(ratio * side); centre = int centre of GT int(u_pick * num_gt) (a random position when
  there is no GT: x offset int(u_pick * (W - crop_w)), y offset int(u_y * (H - crop_h))); top-left =
  max(centre - int(crop / 2), 0), then shifted back inside the image."""
  crop_h, crop_w = int(ratio * height), int(ratio * width)
  if len(gt_boxes):
    sel = min(int(u_pick * len(gt_boxes)), len(gt_boxes) - 1)
    cx = int((float(gt_boxes[sel, 0]) + float(gt_boxes[sel, 2])) / 2.0)
    cy = int((float(gt_boxes[sel, 1]) + float(gt_boxes[sel, 3])) / 2.0)
  else:
    cx = int(u_pick * (width - crop_w)) + int(crop_w * 0.5)
    cy = int(u_y * (height - crop_h)) + int(crop_h * 0.5)
  x0 = max(cx - int(crop_w * 0.5), 0)
  y0 = max(cy - int(crop_h * 0.5), 0)
  x0 -= max(x0 + crop_w - width, 0)
  y0 -= max(y0 + crop_h - height, 0)
  return x0, y0, crop_h, crop_w


def crop_boxes(boxes: np.ndarray, x0: int, y0: int, crop_h: int, crop_w: int) -> np.ndarray:
  """Translate into the crop and clamp: coordinates < 0 become 0, coordinates >= crop side become side - 1."""
  b = boxes - np.array([x0, y0, x0, y0], np.float32)
  hi = np.array([crop_w, crop_h, crop_w, crop_h], np.float32)
  b = np.where(b < 0, np.float32(0), b)
  return np.where(b >= hi, hi - 1, b).astype(np.float32)


def box_area(boxes: np.ndarray) -> np.ndarray:
  """(x2 - x1) * (y2 - y1), no +1 (the crop keep rules of keras_alfnet/data_augment.py use it so)."""
  return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def resize_bilinear(image: np.ndarray, new_h: int, new_w: int) -> np.ndarray:
  """Plain bilinear resize with half-pixel centres and no antialiasing (OpenCV INTER_LINEAR, as ALFNet;
  the same arithmetic as tf.image.resize(antialias=False)), rounded to uint8 values. -> float32."""
  def weights(n_in, n_out):
    pos = (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * (np.float32(n_in) / np.float32(n_out)) - np.float32(0.5)
    lo = np.floor(pos)
    frac = (pos - lo).astype(np.float32)
    return np.maximum(lo, 0).astype(np.int64), np.minimum(np.ceil(pos), n_in - 1).astype(np.int64), frac

  y_lo, y_hi, fy = weights(image.shape[0], new_h)
  x_lo, x_hi, fx = weights(image.shape[1], new_w)
  img = image.astype(np.float32)
  top = img[y_lo][:, x_lo] + (img[y_lo][:, x_hi] - img[y_lo][:, x_lo]) * fx[None, :, None]
  bottom = img[y_hi][:, x_lo] + (img[y_hi][:, x_hi] - img[y_hi][:, x_lo]) * fx[None, :, None]
  out = top + (bottom - top) * fy[:, None, None]
  return np.clip(np.floor(out + np.float32(0.5)), 0, 255).astype(np.float32)


def alfnet_augment(image: np.ndarray, boxes: np.ndarray, classes: np.ndarray, u, train_size,
                   flip_prob: float) -> dict:
  """ALFNet training augmentation of one image (keras_alfnet/data_augment.py), in this order: brightness (p 0.5),
  horizontal flip (p flip_prob; x1' = W - x2, x2' = W - x1), random scale-crop around a person with
  the crop keep rules, resize to train_size with boxes divided by crop_h / train_h and truncated to
  int and the size keep rules. Boxes that are not finite are dropped first, boxes with no area last
  (both counted; neither occurs in valid data).

  image uint8 (H, W, 3); boxes (N, 4) integer xyxy; classes (N,) 0 / -1; u (NUM_DRAWS,) uniforms.
  Returns {"image": float32 (th, tw, 3) uint8 values, "boxes" (K, 4) GT first then ignore regions,
  "classes" (K,), "crop": (x0, y0, crop_h, crop_w), "flip", "factor" (None: no brightness), "dropped"}.
  """
  u = np.asarray(u, np.float64)
  th, tw = (int(v) for v in train_size)
  height, width = image.shape[:2]
  boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
  classes = np.asarray(classes, np.int32).reshape(-1)
  finite = finite_rows(boxes)
  dropped = int((~finite).sum())
  boxes, classes = boxes[finite], classes[finite]

  factor = None
  if u[0] < BRIGHTNESS_PROB:
    factor = np.float32(BRIGHTNESS_RANGE[0] + (BRIGHTNESS_RANGE[1] - BRIGHTNESS_RANGE[0]) * u[1])
    image = brightness(image, factor)
  flip = bool(u[2] < flip_prob)
  if flip:
    image = image[:, ::-1]
    boxes = flip_boxes(boxes, width)

  gt, ig = boxes[classes == 0], boxes[classes != 0]
  ratio = CROP_SCALE[0] + (CROP_SCALE[1] - CROP_SCALE[0]) * u[3]
  x0, y0, crop_h, crop_w = crop_window(height, width, gt, ratio, u[4], u[5])
  image = image[y0:y0 + crop_h, x0:x0 + crop_w]
  gt_c, ig_c = crop_boxes(gt, x0, y0, crop_h, crop_w), crop_boxes(ig, x0, y0, crop_h, crop_w)
  gt = gt_c[box_area(gt_c) >= np.float32(CROP_KEEP_FRACTION) * box_area(gt)]
  ig = ig_c[box_area(ig_c) > CROP_MIN_IGNORE_AREA]

  image = resize_bilinear(image, th, tw)
  reratio = crop_h / th
  gt = (gt.astype(np.float64) / reratio).astype(np.int64).astype(np.float32)
  ig = (ig.astype(np.float64) / reratio).astype(np.int64).astype(np.float32)
  gt = gt[gt[:, 2] - gt[:, 0] >= MIN_GT_WIDTH]
  ig = ig[(ig[:, 2] - ig[:, 0] >= MIN_IGNORE_SIDE) & (ig[:, 3] - ig[:, 1] >= MIN_IGNORE_SIDE)]
  out_boxes = np.concatenate([gt, ig]).reshape(-1, 4)
  out_classes = np.concatenate([np.zeros(len(gt), np.int32), np.full(len(ig), -1, np.int32)])
  area_ok = (out_boxes[:, 2] > out_boxes[:, 0]) & (out_boxes[:, 3] > out_boxes[:, 1])
  dropped += int((~area_ok).sum())
  return {"image": image, "boxes": out_boxes[area_ok], "classes": out_classes[area_ok],
          "crop": (x0, y0, crop_h, crop_w), "flip": flip, "factor": factor, "dropped": dropped}


def preprocess_alfnet(image: np.ndarray, boxes: np.ndarray, classes: np.ndarray, index: int, image_id: str,
                      data_cfg, u) -> dict:
  """One CityPersons training image through `alfnet_augment`, normalised and padded: one example
  (the fields of `preprocess`; image_size = data.train_size, scale = train_h / crop_h)."""
  aug = alfnet_augment(image, boxes, classes, u, data_cfg.train_size, data_cfg.flip_prob)
  th, tw = (int(v) for v in data_cfg.train_size)
  h, w = image.shape[:2]
  img = pad_image(normalize_image(aug["image"], data_cfg.pixel_mean, data_cfg.pixel_std, data_cfg.bgr),
                  data_cfg.pad_size, image_id)
  gt_boxes, gt_classes, gt_valid = pad_boxes(aug["boxes"], aug["classes"], data_cfg.max_boxes, image_id)
  return {"image": img, "image_size": np.array([th, tw], np.int32), "orig_size": np.array([h, w], np.int32),
          "scale": np.float32(th / aug["crop"][2]), "gt_boxes": gt_boxes, "gt_classes": gt_classes,
          "gt_valid": gt_valid, "image_id": np.int32(index), "num_boxes": np.int32(len(aug["boxes"])),
          "num_dropped": np.int32(aug["dropped"])}


def preprocess_full(image: np.ndarray, boxes: np.ndarray, classes: np.ndarray, index: int, image_id: str,
                    data_cfg, pad_size) -> dict:
  """Evaluation under data.augment 'alfnet': the full image, not resized, boxes clipped to it (pictures
  only; evaluation reads the GT file), normalised and padded to pad_size (data.eval_size): one example
  with the fields of `preprocess` (image_size = orig_size = (h, w), scale 1)."""
  h, w = image.shape[:2]
  boxes, classes, dropped = clip_and_drop(np.asarray(boxes, np.float32).reshape(-1, 4),
                                          np.asarray(classes, np.int32).reshape(-1), h, w)
  img = pad_image(normalize_image(image, data_cfg.pixel_mean, data_cfg.pixel_std, data_cfg.bgr), pad_size, image_id)
  gt_boxes, gt_classes, gt_valid = pad_boxes(boxes, classes, data_cfg.max_boxes, image_id)
  return {"image": img, "image_size": np.array([h, w], np.int32), "orig_size": np.array([h, w], np.int32),
          "scale": np.float32(1.0), "gt_boxes": gt_boxes, "gt_classes": gt_classes, "gt_valid": gt_valid,
          "image_id": np.int32(index), "num_boxes": np.int32(len(boxes)), "num_dropped": np.int32(dropped)}
