"""The tf.data input pipeline (lla.md §2): TFDS examples -> fixed-shape numpy Batch dicts.

Steps per image: decode (RGB uint8; JPEG with the accurate integer DCT, which equals PIL's decoder),
ResizeShortestEdge (min_size / max_size, int(h * scale + 0.5)), bilinear resize (antialiased like PIL,
rounded to uint8 values as PIL returns), boxes scaled by (new_w / w, new_h / h), horizontal flip
(train, flip_prob), clip to the image and drop boxes of zero width or height (counted), normalise
(BGR if data.bgr; minus pixel_mean, over pixel_std), zero padding bottom/right to data.pad_size after
normalisation, GT padded to data.max_boxes. Then batch (train: shuffle, repeat, drop the remainder;
eval: every process runs the same number of full batches, padded with filler images of image_id -1),
prefetch. Deterministic for a given seed. TensorFlow is imported inside the functions only, and never
sees an accelerator.

transforms.py states the same steps in numpy; tests hold both to the same numbers.
"""
from __future__ import annotations

import glob
import logging
import os

import numpy as np

import data_pipelines
from data_pipelines import records as records_lib
from data_pipelines import transforms

PREPARED_NAMES = ("crowdhuman", "citypersons")


def _tf():
  """TensorFlow, kept off every accelerator (JAX owns them)."""
  import tensorflow as tf
  try:
    tf.config.set_visible_devices([], "GPU")
    tf.config.set_visible_devices([], "TPU")
  except (RuntimeError, ValueError):  # already initialised, or no such device type
    pass
  return tf


# ---------------------------------------------------------------------------------------------------
# Builders and the per-split GT cache.


def not_prepared_error(name: str, data_dir: str) -> FileNotFoundError:
  return FileNotFoundError(
      f"data set {name!r} is not prepared: found no TFDS data (dataset_info.json) under "
      f"{os.path.join(data_dir, name)}. Prepare it once from the official files with\n"
      f"  python -m data_pipelines.prepare {name} --manual_dir DIR --data_dir {data_dir}\n"
      f"where DIR holds the downloaded {name} images and annotations (datasets.md), or point "
      f"data.data_dir at the folder that holds {name}/.")


def _version_key(path: str):
  try:
    return tuple(int(p) for p in os.path.basename(os.path.dirname(path)).split("."))
  except ValueError:
    return None


def prepared_builder(name: str, data_dir: str):
  """The TFDS builder of a data set prepared into data_dir/name (by its builder, with or without a
  config level), read from the prepared files alone (builder code need not be importable). The newest
  version wins; several configs are an error naming them."""
  import tensorflow_datasets as tfds
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
  """The prepared builder for data_cfg.name; the synthetic data set is built on first use."""
  if data_cfg.name == data_pipelines.SYNTHETIC:
    from data_pipelines import synthetic_crowds
    return synthetic_crowds.prepare(**data_pipelines.synthetic_params(data_cfg), data_dir=data_dir)
  if data_cfg.name in PREPARED_NAMES:
    return prepared_builder(data_cfg.name, data_dir)
  raise ValueError(f"data.name must be one of {(data_pipelines.SYNTHETIC,) + PREPARED_NAMES}, got {data_cfg.name!r}")


def _xyxy_to_xywh(b):
  b = np.asarray(b, np.float64).reshape(-1, 4)
  return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)


def split_gt(builder, split: str, data_dir: str) -> tuple[str, list[dict]]:
  """(path, lines) of the split's GT odgt (with width/height), in image_id order.

  Written once from the TFDS examples (images not decoded) into data_pipelines.cache_dir(data_dir,
  builder full name) and rebuilt when the prepared data changes (dataset_info.json stamp). Checks
  that image/index runs over 0..N-1 exactly once and that IDs are unique.
  """
  import tensorflow_datasets as tfds
  cache = data_pipelines.cache_dir(data_dir, builder.info.full_name)
  gt_path = os.path.join(cache, f"{split}_gt.odgt")
  stamp_path = gt_path + ".stamp"
  st = os.stat(os.path.join(builder.data_dir, "dataset_info.json"))
  stamp = f"{st.st_mtime_ns} {st.st_size}"
  if os.path.exists(gt_path) and os.path.exists(stamp_path):
    with open(stamp_path) as f:
      if f.read() == stamp:
        return gt_path, records_lib.read_odgt(gt_path)

  where = f"{builder.info.full_name}/{split}"
  logging.info("Writing the GT odgt of %s to %s", where, gt_path)
  ds = builder.as_dataset(split=split, shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()})
  lines, ids = {}, set()
  for ex in ds.as_numpy_iterator():
    index, image_id = int(ex["image/index"]), ex["image/id"].decode()
    if index in lines:
      raise ValueError(f"{where}: image/index {index} occurs twice ({lines[index]['ID']} and {image_id})")
    if image_id in ids:
      raise ValueError(f"{where}: image/id {image_id} occurs twice")
    ids.add(image_id)
    h, w = (int(v) for v in ex["size"])
    lines[index] = records_lib.odgt_line(
        image_id, _xyxy_to_xywh(ex["fbox"]), _xyxy_to_xywh(ex["vbox"]), _xyxy_to_xywh(ex["hbox"]),
        [t.decode() for t in ex["tag"]], ex["ignore"], height=h, width=w)
  missing = sorted(set(range(len(lines))) - set(lines))
  if missing:
    raise ValueError(f"{where}: image/index must run over 0..{len(lines) - 1}; missing {missing[:10]}")
  ordered = [lines[i] for i in range(len(lines))]
  records_lib.write_odgt(gt_path, ordered)
  with open(stamp_path, "w") as f:
    f.write(stamp)
  return gt_path, ordered


# ---------------------------------------------------------------------------------------------------
# Per-example preprocessing in TensorFlow (mirrors transforms.preprocess).


def _decode(tf, data):
  """Encoded JPEG/PNG -> uint8 (h, w, 3) RGB. JPEG with INTEGER_ACCURATE, bit-equal to PIL's decoder."""
  return tf.cond(tf.io.is_jpeg(data),
                 lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
                 lambda: tf.io.decode_png(data, channels=3))


def _resized_size(tf, h, w, min_size, max_size):
  """transforms.resized_size in float64 ops (same IEEE results as the Python floats)."""
  hf, wf = tf.cast(h, tf.float64), tf.cast(w, tf.float64)
  scale = tf.constant(float(min_size), tf.float64) / tf.minimum(hf, wf)
  long_side = tf.maximum(hf, wf)
  scale = tf.where(long_side * scale > float(max_size), float(max_size) / long_side, scale)
  return (tf.cast(tf.floor(hf * scale + 0.5), tf.int32), tf.cast(tf.floor(wf * scale + 0.5), tf.int32), scale)


def _resize(tf, image, new_h, new_w):
  """uint8 -> float32 holding uint8 values: bilinear, antialiased when shrinking (like PIL), rounded."""
  shape = tf.shape(image)
  same = tf.logical_and(tf.equal(shape[0], new_h), tf.equal(shape[1], new_w))
  return tf.cond(
      same, lambda: tf.cast(image, tf.float32),
      lambda: tf.clip_by_value(tf.floor(tf.image.resize(image, tf.stack([new_h, new_w]), method="bilinear",
                                                        antialias=True) + 0.5), 0.0, 255.0))


def make_preprocess(tf, data_cfg):
  """fn(example, flip) -> padded example (see transforms.preprocess for the fields)."""
  pad_h, pad_w = (int(v) for v in data_cfg.pad_size)
  max_boxes = int(data_cfg.max_boxes)
  mean = tf.constant(np.asarray(data_cfg.pixel_mean, np.float32))
  std = tf.constant(np.asarray(data_cfg.pixel_std, np.float32))

  def preprocess(ex, flip):
    image = _decode(tf, ex["image"])
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    new_h, new_w, scale = _resized_size(tf, h, w, data_cfg.min_size, data_cfg.max_size)
    image = _resize(tf, image, new_h, new_w)
    sx = tf.cast(tf.cast(new_w, tf.float64) / tf.cast(w, tf.float64), tf.float32)
    sy = tf.cast(tf.cast(new_h, tf.float64) / tf.cast(h, tf.float64), tf.float32)
    boxes = ex["fbox"] * tf.stack([sx, sy, sx, sy])
    classes = tf.where(ex["ignore"], -1, 0)
    wf, hf = tf.cast(new_w, tf.float32), tf.cast(new_h, tf.float32)
    boxes = tf.cond(flip, lambda: tf.stack([wf - boxes[:, 2], boxes[:, 1], wf - boxes[:, 0], boxes[:, 3]], axis=1),
                    lambda: boxes)
    image = tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image)
    boxes = tf.clip_by_value(boxes, 0.0, tf.stack([wf, hf, wf, hf]))
    keep = tf.logical_and(boxes[:, 2] > boxes[:, 0], boxes[:, 3] > boxes[:, 1])
    boxes, classes = tf.boolean_mask(boxes, keep), tf.boolean_mask(classes, keep)
    num_boxes = tf.shape(boxes)[0]
    if data_cfg.bgr:
      image = image[..., ::-1]
    image = (image - mean) / std
    fits = tf.logical_and(new_h <= pad_h, new_w <= pad_w)
    with tf.control_dependencies([tf.debugging.Assert(fits, [
        "image", ex["image/id"], "resized to", new_h, new_w, "exceeds data.pad_size", pad_h, pad_w])]):
      image = tf.pad(image, [[0, pad_h - new_h], [0, pad_w - new_w], [0, 0]])
    # More than max_boxes rows are cut here only to keep shapes static; transforms.finish_batch
    # raises on num_boxes > max_boxes before the batch is handed out.
    k = tf.minimum(num_boxes, max_boxes)
    return {
        "image": tf.ensure_shape(image, (pad_h, pad_w, 3)),
        "image_size": tf.stack([new_h, new_w]),
        "orig_size": tf.stack([h, w]),
        "scale": tf.cast(scale, tf.float32),
        "gt_boxes": tf.ensure_shape(tf.pad(boxes[:max_boxes], [[0, max_boxes - k], [0, 0]]), (max_boxes, 4)),
        "gt_classes": tf.ensure_shape(tf.pad(classes[:max_boxes], [[0, max_boxes - k]]), (max_boxes,)),
        "gt_valid": tf.range(max_boxes) < k,
        "image_id": tf.cast(ex["image/index"], tf.int32),
        "num_boxes": num_boxes,
        "num_dropped": tf.shape(keep)[0] - num_boxes,
    }

  return preprocess


# ---------------------------------------------------------------------------------------------------
# The data set.


def create_dataset(data_cfg, split: str, batch_size: int, train: bool, seed: int, process_index: int = 0,
                   process_count: int = 1):
  """(iterator of Batch dicts, info) for `split` of data_cfg.name; batch_size images per process.

  Train: shuffled (files and a data.shuffle_buffer, seeded), repeated forever, random flips, full
  batches. Eval: in index order, no flip, ceil(ceil(N / process_count) / batch_size) batches on every
  process, the tail filled with image_id -1 images. This process reads its contiguous shard
  (tfds.split_for_jax_process). info: "num_images", "records", "gt_odgt", "stats", "max_boxes".
  """
  tf = _tf()
  import tensorflow_datasets as tfds
  data_dir = data_pipelines.resolve_data_dir(data_cfg)
  builder = builder_for(data_cfg, data_dir)
  if split not in builder.info.splits:
    raise ValueError(f"{builder.info.full_name} has splits {sorted(builder.info.splits)}, not {split!r}")
  gt_path, lines = split_gt(builder, split, data_dir)
  where = f"{builder.info.full_name}/{split}"
  maxima = transforms.check_split(lines, data_cfg, where)
  records = transforms.split_records(lines)
  stats = transforms.PipelineStats(f"{where} (process {process_index}/{process_count})")
  info = {"num_images": len(records), "records": records, "gt_odgt": gt_path, "stats": stats, **maxima}

  subsplit = tfds.split_for_jax_process(split, process_index=process_index, process_count=process_count)
  read_config = tfds.ReadConfig(shuffle_seed=seed, enable_ordering_guard=False)
  ds = builder.as_dataset(split=subsplit, shuffle_files=train, read_config=read_config,
                          decoders={"image": tfds.decode.SkipDecoding()})
  preprocess = make_preprocess(tf, data_cfg)
  parallel = data_cfg.num_parallel_calls
  if train:
    ds = ds.shuffle(data_cfg.shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat().enumerate()

    def train_preprocess(count, ex):
      # Flip decision from a stateless generator keyed by (seed, position in the stream): reproducible.
      u = tf.random.stateless_uniform([], seed=tf.stack([tf.constant(seed, tf.int64), count]))
      return preprocess(ex, u < data_cfg.flip_prob)

    ds = ds.map(train_preprocess, num_parallel_calls=parallel, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=True)
  else:
    start, end = transforms.shard_range(len(records), process_index, process_count)
    num_batches = transforms.eval_num_batches(len(records), batch_size, process_count)
    filler = tf.data.Dataset.from_tensors(transforms.padding_example(data_cfg))
    ds = ds.map(lambda ex: preprocess(ex, tf.constant(False)), num_parallel_calls=parallel, deterministic=True)
    ds = ds.concatenate(filler.repeat(num_batches * batch_size - (end - start)))
    ds = ds.batch(batch_size, drop_remainder=True)
  options = tf.data.Options()
  options.deterministic = True
  ds = ds.with_options(options).prefetch(data_cfg.prefetch)

  def batches():
    for raw in ds.as_numpy_iterator():
      yield transforms.finish_batch(raw, data_cfg.max_boxes, records, stats)
    stats.log()

  return batches(), info
