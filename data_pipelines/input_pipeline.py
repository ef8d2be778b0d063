"""The tf.data input pipeline: TFDS examples -> fixed-shape numpy Batch dicts.

data.augment 'flip' (the FCOS-family recipe of cvpods cvpods/data/transforms/transform_gen.py; the default of
CrowdHuman and synthetic crowds), per image: decode (RGB uint8; JPEG with the accurate integer DCT,
which equals PIL's decoder), ResizeShortestEdge (min_size / max_size, int(h * scale + 0.5)), bilinear
resize (antialiased like PIL, rounded to uint8 values as PIL returns), boxes scaled by (new_w / w,
new_h / h), horizontal flip (train, flip_prob), clip to the image and drop boxes that are not finite or
have zero width or height (counted), normalise (BGR if data.bgr; minus pixel_mean, over pixel_std),
zero padding bottom/right to data.pad_size after normalisation (training with data.buckets: to the size
of the batch's orientation bucket; evaluation with data.eval_padding 'divisible': to the image's own
size rounded up to data.eval_size_divisibility, batches grouped by that shape), GT padded to data.max_boxes.

data.augment 'alfnet' (liuwei16/ALFNet keras_alfnet/data_augment.py; the default of CityPersons):
training takes the images with GT (CityPersons: a pedestrian of height >= 50) through the ALFNet
augmentation (brightness on V, flip, random scale-crop around a person with the box keep rules, resize
to data.train_size with boxes truncated to int) and pads to data.pad_size; evaluation takes the full
image without resizing, padded to data.eval_size.

The data set's registry entry (registry.py) names its builder and how its evaluation GT is exported
(gt_export.py: info["gt_odgt"] or info["gt_json"]).

Then batch (train: shuffle, repeat, drop the remainder; eval: every process runs the same number of
full batches, padded with filler images of image_id -1), prefetch. Deterministic for a given seed.
TensorFlow is imported inside the functions only, and never sees an accelerator.

transforms.py states the same steps in numpy; tests hold both to the same numbers.
"""
from __future__ import annotations

import logging

import numpy as np
import tensorflow_datasets as tfds

from data_pipelines import gt_export
from data_pipelines import images as image_files
from data_pipelines import registry
from data_pipelines import settings
from data_pipelines import transforms


# ---------------------------------------------------------------------------------------------------
# Per-example preprocessing in TensorFlow (mirrors transforms.preprocess and transforms.alfnet_augment).


def _resized_size(tf, h, w, min_size, max_size):
  """transforms.resized_size in float64 ops (same IEEE results as the Python floats)."""
  hf, wf = tf.cast(h, tf.float64), tf.cast(w, tf.float64)
  scale = tf.constant(float(min_size), tf.float64) / tf.minimum(hf, wf)
  long_side = tf.maximum(hf, wf)
  scale = tf.where(long_side * scale > float(max_size), float(max_size) / long_side, scale)
  return (tf.cast(tf.floor(hf * scale + 0.5), tf.int32), tf.cast(tf.floor(wf * scale + 0.5), tf.int32), scale)


def _resize(tf, image, new_h, new_w):
  """uint8 -> float32 holding uint8 values: bilinear like PIL, rounded. Shrinking uses the antialiased
  (triangle, widened) kernel as PIL does; enlarging uses plain half-pixel bilinear, which is the same
  filter there and four times faster than the antialias op."""
  shape = tf.shape(image)
  size = tf.stack([new_h, new_w])
  same = tf.logical_and(tf.equal(shape[0], new_h), tf.equal(shape[1], new_w))
  shrink = tf.logical_or(new_h < shape[0], new_w < shape[1])
  resized = lambda aa: tf.clip_by_value(
      tf.floor(tf.image.resize(image, size, method="bilinear", antialias=aa) + 0.5), 0.0, 255.0)
  return tf.cond(same, lambda: tf.cast(image, tf.float32),
                 lambda: tf.cond(shrink, lambda: resized(True), lambda: resized(False)))


def _flip_boxes(tf, boxes, width):
  w = tf.cast(width, tf.float32)
  return tf.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], axis=1)


def _clip_and_drop(tf, boxes, classes, height, width):
  """transforms.clip_and_drop: clip to the image, drop boxes that are not finite or have no area.
  -> (boxes, classes, number dropped)."""
  hf, wf = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
  finite = tf.reduce_all(tf.math.is_finite(boxes), axis=1)
  boxes = tf.clip_by_value(tf.where(finite[:, None], boxes, 0.0), 0.0, tf.stack([wf, hf, wf, hf]))
  keep = finite & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
  return tf.boolean_mask(boxes, keep), tf.boolean_mask(classes, keep), tf.shape(keep)[0] - tf.reduce_sum(
      tf.cast(keep, tf.int32))


def _finish_example(tf, data_cfg, ex, image, boxes, classes, image_size, orig_size, scale, dropped, pad_size):
  """Normalise and pad one preprocessed image (float32 uint8 values, RGB) and its boxes: the example dict."""
  pad_h, pad_w = (int(v) for v in pad_size)
  max_boxes = int(data_cfg.max_boxes)
  if data_cfg.bgr:
    image = tf.reverse(image, axis=[-1])  # four times faster than image[..., ::-1]
  image = (image - tf.constant(np.asarray(data_cfg.pixel_mean, np.float32))) / tf.constant(
      np.asarray(data_cfg.pixel_std, np.float32))
  fits = tf.logical_and(image_size[0] <= pad_h, image_size[1] <= pad_w)
  with tf.control_dependencies([tf.debugging.Assert(fits, [
      "image", ex["image/id"], "resized to", image_size[0], image_size[1], "exceeds the padded size", pad_h, pad_w])]):
    image = tf.pad(image, [[0, pad_h - image_size[0]], [0, pad_w - image_size[1]], [0, 0]])
  num_boxes = tf.shape(boxes)[0]
  # More than max_boxes rows are cut here only to keep shapes static; transforms.finish_batch
  # raises on num_boxes > max_boxes before the batch is handed out.
  k = tf.minimum(num_boxes, max_boxes)
  return {
      "image": tf.ensure_shape(image, (pad_h, pad_w, 3)),
      "image_size": tf.cast(image_size, tf.int32),
      "orig_size": tf.cast(orig_size, tf.int32),
      "scale": tf.cast(scale, tf.float32),
      "gt_boxes": tf.ensure_shape(tf.pad(boxes[:max_boxes], [[0, max_boxes - k], [0, 0]]), (max_boxes, 4)),
      "gt_classes": tf.ensure_shape(tf.pad(classes[:max_boxes], [[0, max_boxes - k]]), (max_boxes,)),
      "gt_valid": tf.range(max_boxes) < k,
      "image_id": tf.cast(ex["image/index"], tf.int32),
      "num_boxes": num_boxes,
      "num_dropped": tf.cast(dropped, tf.int32),
  }


def make_preprocess(tf, data_cfg, pad_size=None):
  """data.augment 'flip' (cvpods cvpods/data/transforms/transform_gen.py): fn(example, flip) -> example
  padded to pad_size (default data.pad_size; see transforms.preprocess for the fields)."""
  pad_size = pad_size or data_cfg.pad_size
  key = registry.box_key(data_cfg)   # data.box: fbox, vbox or hbox

  def preprocess(ex, flip):
    image = image_files.decode_image(tf, ex["image"])
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    new_h, new_w, scale = _resized_size(tf, h, w, data_cfg.min_size, data_cfg.max_size)
    image = _resize(tf, image, new_h, new_w)
    sx = tf.cast(tf.cast(new_w, tf.float64) / tf.cast(w, tf.float64), tf.float32)
    sy = tf.cast(tf.cast(new_h, tf.float64) / tf.cast(h, tf.float64), tf.float32)
    boxes = ex[key] * tf.stack([sx, sy, sx, sy])
    classes = tf.where(ex["ignore"], -1, 0)
    boxes = tf.cond(flip, lambda: _flip_boxes(tf, boxes, new_w), lambda: boxes)
    image = tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image)
    boxes, classes, dropped = _clip_and_drop(tf, boxes, classes, new_h, new_w)
    return _finish_example(tf, data_cfg, ex, image, boxes, classes, tf.stack([new_h, new_w]), tf.stack([h, w]),
                           scale, dropped, pad_size)

  return preprocess


def alfnet_augment(tf, image, boxes, classes, u, train_size, flip_prob):
  """transforms.alfnet_augment in TensorFlow ops (same draws u (NUM_DRAWS,) float64, same arithmetic).
  -> (image float32 (th, tw, 3) uint8 values, boxes (K, 4), classes (K,), crop_h, dropped)."""
  t = transforms
  th, tw = (int(v) for v in train_size)
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  finite = tf.reduce_all(tf.math.is_finite(boxes), axis=1)
  dropped = tf.reduce_sum(tf.cast(~finite, tf.int32))
  boxes, classes = tf.boolean_mask(boxes, finite), tf.boolean_mask(classes, finite)

  def brighten(img):
    x = tf.cast(img, tf.float32)
    v = tf.reduce_max(x, axis=2, keepdims=True)
    f = tf.cast(t.BRIGHTNESS_RANGE[0] + (t.BRIGHTNESS_RANGE[1] - t.BRIGHTNESS_RANGE[0]) * u[1], tf.float32)
    v_new = tf.where(v * f > 255.0, 255.0, tf.floor(v * f))
    gain = tf.where(v > 0, v_new / tf.where(v > 0, v, 1.0), 0.0)
    return tf.cast(tf.clip_by_value(tf.floor(x * gain + 0.5), 0.0, 255.0), tf.uint8)

  flip = u[2] < flip_prob
  boxes = tf.cond(flip, lambda: _flip_boxes(tf, boxes, width), lambda: boxes)

  is_gt = tf.equal(classes, 0)
  gt, ig = tf.boolean_mask(boxes, is_gt), tf.boolean_mask(boxes, ~is_gt)
  ratio = t.CROP_SCALE[0] + (t.CROP_SCALE[1] - t.CROP_SCALE[0]) * u[3]
  crop_h = tf.cast(tf.floor(ratio * tf.cast(height, tf.float64)), tf.int32)
  crop_w = tf.cast(tf.floor(ratio * tf.cast(width, tf.float64)), tf.int32)
  num_gt = tf.shape(gt)[0]

  def around_gt():
    sel = tf.minimum(tf.cast(tf.floor(u[4] * tf.cast(num_gt, tf.float64)), tf.int32), num_gt - 1)
    b = gt[sel]
    return tf.cast((b[0] + b[2]) / 2.0, tf.int32), tf.cast((b[1] + b[3]) / 2.0, tf.int32)

  def anywhere():
    ox = tf.cast(tf.floor(u[4] * tf.cast(width - crop_w, tf.float64)), tf.int32)
    oy = tf.cast(tf.floor(u[5] * tf.cast(height - crop_h, tf.float64)), tf.int32)
    return ox + crop_w // 2, oy + crop_h // 2

  cx, cy = tf.cond(num_gt > 0, around_gt, anywhere)
  x0, y0 = tf.maximum(cx - crop_w // 2, 0), tf.maximum(cy - crop_h // 2, 0)
  x0 -= tf.maximum(x0 + crop_w - width, 0)
  y0 -= tf.maximum(y0 + crop_h - height, 0)
  # Brightness is per pixel and flip + crop only select pixels, so cropping first (the crop of the
  # flipped image is the flipped crop at the mirrored place) gives the same pixels for less work.
  src_x0 = tf.where(flip, width - x0 - crop_w, x0)
  image = tf.slice(image, tf.stack([y0, src_x0, 0]), tf.stack([crop_h, crop_w, 3]))
  image = tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image)
  image = tf.cond(u[0] < t.BRIGHTNESS_PROB, lambda: brighten(image), lambda: image)

  def crop(b):
    b = b - tf.cast(tf.stack([x0, y0, x0, y0]), tf.float32)
    hi = tf.cast(tf.stack([crop_w, crop_h, crop_w, crop_h]), tf.float32)
    b = tf.where(b < 0, 0.0, b)
    return tf.where(b >= hi, hi - 1, b)

  area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
  gt_c, ig_c = crop(gt), crop(ig)
  gt = tf.boolean_mask(gt_c, area(gt_c) >= t.CROP_KEEP_FRACTION * area(gt))
  ig = tf.boolean_mask(ig_c, area(ig_c) > t.CROP_MIN_IGNORE_AREA)

  image = tf.clip_by_value(tf.floor(tf.image.resize(image, [th, tw], method="bilinear", antialias=False) + 0.5),
                           0.0, 255.0)
  reratio = tf.cast(crop_h, tf.float64) / float(th)
  to_int = lambda b: tf.cast(tf.cast(tf.cast(b, tf.float64) / reratio, tf.int64), tf.float32)
  gt, ig = to_int(gt), to_int(ig)
  gt = tf.boolean_mask(gt, gt[:, 2] - gt[:, 0] >= t.MIN_GT_WIDTH)
  ig = tf.boolean_mask(ig, (ig[:, 2] - ig[:, 0] >= t.MIN_IGNORE_SIDE) & (ig[:, 3] - ig[:, 1] >= t.MIN_IGNORE_SIDE))
  out = tf.concat([gt, ig], axis=0)
  out_classes = tf.concat([tf.zeros([tf.shape(gt)[0]], tf.int32), -tf.ones([tf.shape(ig)[0]], tf.int32)], axis=0)
  area_ok = (out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])
  dropped += tf.reduce_sum(tf.cast(~area_ok, tf.int32))
  image = tf.ensure_shape(image, (th, tw, 3))
  return image, tf.boolean_mask(out, area_ok), tf.boolean_mask(out_classes, area_ok), crop_h, dropped


def training_boxes(ex, key: str = "fbox"):
  """The boxes an example trains on for the box feature `key` (data.box, registry.box_key): for the full
  boxes "train_box" where the builder stores its own (CityPersons: the ALFNet clipped boxes), else "fbox";
  the visible / head boxes as stored ("vbox", "hbox")."""
  if key == "fbox" and "train_box" in ex:
    return ex["train_box"]
  return ex[key]


def make_alfnet_preprocess(tf, data_cfg, train: bool):
  """data.augment 'alfnet': train fn(example, u) -> the ALFNet augmentation (Liu et al. 2018, ALFNet;
  upstream liuwei16/ALFNet keras_alfnet/data_augment.py) at data.train_size, padded to data.pad_size;
  eval fn(example) -> the full image, no resize, padded to data.eval_size, with the training boxes
  clipped to the image (for pictures; evaluation reads the GT file)."""
  train_size, eval_size = transforms.alfnet_sizes(data_cfg)
  key = registry.box_key(data_cfg)

  def train_fn(ex, u):
    image = image_files.decode_image(tf, ex["image"])
    classes = tf.where(ex["ignore"], -1, 0)
    out, boxes, classes, crop_h, dropped = alfnet_augment(tf, image, training_boxes(ex, key), classes, u, train_size,
                                                          data_cfg.flip_prob)
    scale = tf.cast(train_size[0], tf.float32) / tf.cast(crop_h, tf.float32)
    return _finish_example(tf, data_cfg, ex, out, boxes, classes, tf.constant(train_size, tf.int32),
                           tf.shape(image)[:2], scale, dropped, data_cfg.pad_size)

  def eval_fn(ex):
    image = image_files.decode_image(tf, ex["image"])
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    boxes, classes, dropped = _clip_and_drop(tf, training_boxes(ex, key), tf.where(ex["ignore"], -1, 0), h, w)
    return _finish_example(tf, data_cfg, ex, tf.cast(image, tf.float32), boxes, classes, tf.stack([h, w]),
                           tf.stack([h, w]), 1.0, dropped, eval_size)

  return train_fn if train else eval_fn


# ---------------------------------------------------------------------------------------------------
# The data set.


def orientation_buckets(records, data_cfg) -> tuple[np.ndarray, tuple]:
  """Aspect-ratio buckets (the grouping of cvpods cvpods/data/samplers/grouped_batch_sampler.py) for
  training batches: (landscape (N,) bool per record, (pad size
  of the landscape bucket, of the portrait bucket)). A bucket's pad size is the largest resized size of
  its images over the whole split rounded up to data.size_divisibility (at most data.pad_size), so every
  process pads alike; at the CrowdHuman setting landscape batches are 896x1408 instead of 1408x1408."""
  div = int(data_cfg.size_divisibility)
  sizes = np.array([transforms.resized_size(r["height"], r["width"], data_cfg.min_size, data_cfg.max_size)[:2]
                    for r in records], np.int64).reshape(-1, 2)
  landscape = sizes[:, 1] >= sizes[:, 0]
  pads = []
  for mask in (landscape, ~landscape):
    most = sizes[mask].max(axis=0) if mask.any() else np.zeros(2, np.int64)
    pads.append(tuple(int(min(-(-m // div) * div, p)) for m, p in zip(most, data_cfg.pad_size)))
  return landscape, tuple(pads)


def train_buckets(records, data_cfg, shards) -> tuple[np.ndarray, list, list]:
  """(bucket (N,) int per record, pad size per bucket, bucket names) of data.buckets: data.bucket_by
  'orientation' (landscape 0, portrait 1: `orientation_buckets`) or 'shape' (one bucket per padded shape,
  each image's resized size rounded up to data.bucket_divisibility: transforms.shape_buckets)."""
  by = data_cfg.get("bucket_by", None) or "orientation"
  if by == "orientation":
    landscape, pads = orientation_buckets(records, data_cfg)
    return np.where(landscape, 0, 1), list(pads), ["landscape", "portrait"]
  if by != "shape":
    raise ValueError(f"data.bucket_by must be 'orientation' or 'shape'; got {by!r}")
  sizes = [transforms.resized_size(r["height"], r["width"], data_cfg.min_size, data_cfg.max_size)[:2] for r in records]
  bucket, pads = transforms.shape_buckets(sizes, int(data_cfg.get("bucket_divisibility", None) or 32), shards)
  return bucket, pads, [f"{h}x{w}" for h, w in pads]


def _bucketed_train(tf, ds, data_cfg, records, batch_size, seed, process_index, process_count, shard, where,
                    skip_batches=0):
  """Training batches from one stream per bucket (`train_buckets`); which bucket feeds each batch comes
  from a seeded random stream (same on every process, in proportion to the split's bucket sizes), so all
  processes pad a step's batch alike. skip_batches: the first batches of the choice stream are dropped,
  and each bucket's stream skips the examples those batches took from it, before the random map."""
  shards = [transforms.shard_range(len(records), p, process_count) for p in range(process_count)]
  bucket, pads, names = train_buckets(records, data_cfg, shards)
  share = np.bincount(bucket, minlength=len(pads)) / max(len(bucket), 1)
  mine = bucket[shard[0]:shard[1]]
  used = [b for b in range(len(pads)) if share[b] > 0]
  for b in used:
    if not (mine == b).any():
      raise ValueError(f"{where}: data.buckets needs images of every bucket in every process's shard; images "
                       f"{shard[0]}..{shard[1] - 1} have no {names[b]} one. Set data.buckets=False")
  table = tf.constant(bucket)
  nb = max(len(pads), 2)
  scale = 1 << 20
  bounds = [int(round(v * scale)) for v in np.cumsum(share[used])[:-1]]
  # The stream index (into `used`) of each batch.
  choice = tf.data.Dataset.random(seed=seed).map(
      lambda x: tf.add_n([tf.cast(x % scale >= t, tf.int64) for t in bounds]) if bounds else tf.zeros([], tf.int64))
  taken = np.zeros(len(used), np.int64)   # batches the skipped steps took from each stream
  if skip_batches:
    taken += np.bincount(np.fromiter(choice.take(skip_batches).as_numpy_iterator(), np.int64), minlength=len(used))
  streams = []
  for k, b in enumerate(used):
    preprocess = make_preprocess(tf, data_cfg, pads[b])
    sub = ds.filter(lambda ex, want=b: tf.equal(tf.gather(table, ex["image/index"]), want))
    sub = sub.shuffle(data_cfg.shuffle_buffer, seed=seed + b, reshuffle_each_iteration=True).repeat().enumerate()
    sub = sub.skip(int(taken[k]) * batch_size)
    key = lambda count, b=b: tf.stack([tf.constant(seed, tf.int64), (count * nb + b) * process_count + process_index])
    sub = sub.map(lambda count, ex, key=key, pre=preprocess: pre(
        ex, tf.random.stateless_uniform([], seed=key(count)) < data_cfg.flip_prob),
        num_parallel_calls=data_cfg.num_parallel_calls, deterministic=True)
    streams.append(sub.batch(batch_size, drop_remainder=True))
  logging.info("%s: buckets %s", where, ", ".join(f"{names[b]} {pads[b]} ({100 * share[b]:.0f}% of the images)"
                                                  for b in used))
  if len(streams) == 1:
    return streams[0]
  return tf.data.Dataset.choose_from_datasets(streams, choice.skip(skip_batches))


def _eval_batches(tf, ds, data_cfg, alfnet: bool, schedule: list, batch_size: int, num_records: int):
  """Evaluation batches of this process's shard `ds` in the order of `schedule`
  (transforms.eval_schedule): one pass over the shard per pad shape, keeping that shape's images (in
  index order), padded to it, then the shape's filler images (image_id -1)."""
  groups = {}
  for shape, indices in schedule:
    groups.setdefault(shape, []).extend(indices)
  parts = []
  for shape, slots in groups.items():
    mine = [i for i in slots if i is not None]
    pre = make_alfnet_preprocess(tf, data_cfg, False) if alfnet else (
        lambda ex, p=make_preprocess(tf, data_cfg, shape): p(ex, tf.constant(False)))
    part = ds
    if len(groups) > 1:
      keep = np.zeros(num_records, bool)
      keep[mine] = True
      table = tf.constant(keep)
      part = part.filter(lambda ex, t=table: tf.gather(t, ex["image/index"]))
    part = part.map(pre, num_parallel_calls=data_cfg.num_parallel_calls, deterministic=True)
    filler = tf.data.Dataset.from_tensors(transforms.padding_example(data_cfg, shape))
    parts.append(part.concatenate(filler.repeat(len(slots) - len(mine))).batch(batch_size, drop_remainder=True))
  out = parts[0]
  for part in parts[1:]:
    out = out.concatenate(part)
  return out


def create_dataset(data_cfg, split: str, batch_size: int, train: bool, seed: int, process_index: int = 0,
                   process_count: int = 1, skip_batches: int = 0):
  """(iterator of Batch dicts, info) for `split` of data_cfg.name; batch_size images per process.

  Train: shuffled (files and a data.shuffle_buffer, seeded), repeated forever, random augmentation
  (data.augment, None = the registry entry's default: 'flip' = resize + flip; 'alfnet' = the ALFNet
  augmentation, on the images with GT only), full batches; with data.buckets ('flip' only) each batch
  holds landscape or portrait images only, padded to that bucket's size (orientation_buckets) instead
  of data.pad_size, or with data.bucket_by 'shape' images of one padded shape (train_buckets). Eval: in index order, no augmentation ('flip': resized; 'alfnet': the full image
  padded to data.eval_size), ceil(ceil(N / process_count) / batch_size) batches on every process,
  the tail filled with image_id -1 images. This process reads its contiguous shard of the files
  (tfds.split_for_jax_process). Random draws come from stateless generators keyed by (seed, position
  in the stream, process): the stream is reproducible, and skip_batches > 0 (a resumed run) drops the first
  skip_batches * batch_size examples of the shuffled stream before the random map, so the rest is the same
  examples with the same draws as in the full stream (the skipped ones are read, not decoded).
  info: "num_images", "records", "gt_odgt" (gt_format 'odgt'; else None), "gt_json" (gt_format
  'citypersons_json'; else None), "stats", "max_boxes" (and "max_boxes_clipped" / "num_train_images").
  """
  tf = image_files.tensorflow()
  data_dir = settings.resolve_data_dir(data_cfg)
  augment = registry.augment(data_cfg)
  alfnet = augment == "alfnet"
  builder = gt_export.builder_for(data_cfg, data_dir)
  if split not in builder.info.splits:
    raise ValueError(f"{builder.info.full_name} has splits {sorted(builder.info.splits)}, not {split!r}")
  where = f"{builder.info.full_name}/{split}"
  gt = gt_export.export_split(data_cfg.name, builder, split, data_dir)
  records = gt.records
  info, (start, end), _ = transforms.split_plan(gt, data_cfg, alfnet, train, where, process_index,
                                                process_count, batch_size)
  stats = info["stats"]

  subsplit = tfds.split_for_jax_process(split, process_index=process_index, process_count=process_count)
  read_config = tfds.ReadConfig(shuffle_seed=seed, enable_ordering_guard=False)
  ds = builder.as_dataset(split=subsplit, shuffle_files=train, read_config=read_config,
                          decoders={"image": tfds.decode.SkipDecoding()})
  parallel = data_cfg.num_parallel_calls
  if train and not alfnet and data_cfg.get("buckets", False):
    ds = _bucketed_train(tf, ds, data_cfg, records, batch_size, seed, process_index, process_count, (start, end),
                         where, skip_batches)
  elif train:
    if alfnet:  # ALFNet trains only on images with GT (upstream generate_data.py skips the others)
      table = tf.constant(gt.has_gt)
      ds = ds.filter(lambda ex: tf.gather(table, ex["image/index"]))
    ds = ds.shuffle(data_cfg.shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat().enumerate()
    ds = ds.skip(int(skip_batches) * batch_size)   # resume: positions (and so the draws' keys) continue
    # Draws keyed by (seed, position in this process's stream, process): reproducible, and independent
    # across processes (a single process keys by (seed, position)).
    key = lambda count: tf.stack([tf.constant(seed, tf.int64), count * process_count + process_index])
    if alfnet:
      preprocess = make_alfnet_preprocess(tf, data_cfg, True)
      fn = lambda count, ex: preprocess(ex, tf.random.stateless_uniform([transforms.NUM_DRAWS], seed=key(count),
                                                                        dtype=tf.float64))
    else:
      preprocess = make_preprocess(tf, data_cfg)
      fn = lambda count, ex: preprocess(ex, tf.random.stateless_uniform([], seed=key(count)) < data_cfg.flip_prob)
    ds = ds.map(fn, num_parallel_calls=parallel, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=True)
  else:
    ds = _eval_batches(tf, ds, data_cfg, alfnet, info["schedule"], batch_size, len(records))
  options = tf.data.Options()
  options.deterministic = True
  threads = int(data_cfg.get("num_threads", 0) or 0)
  if threads > 0:  # a private pool of this many threads (benchmarks; hosts shared with other work)
    options.threading.private_threadpool_size = threads
    options.threading.max_intra_op_parallelism = 1
  ds = ds.with_options(options).prefetch(data_cfg.prefetch)

  def batches():
    for raw in ds.as_numpy_iterator():
      yield transforms.finish_batch(raw, data_cfg.max_boxes, records, stats)
    stats.log()

  return batches(), info
