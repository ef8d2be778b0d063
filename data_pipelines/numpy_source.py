"""TensorFlow-free data source: synthetic crowds rendered on the fly, the same Batch contract.

Serves the data sets whose registry entry has numpy_source (synthetic crowds). Each image is rendered
and JPEG round-tripped exactly as the TFDS builder stores it (synthetic.render_example), then goes
through the numpy transforms of data.augment: 'flip' (transforms.preprocess) or 'alfnet'
(transforms.preprocess_alfnet in training, transforms.preprocess_full in evaluation). Same sharding,
eval padding and bookkeeping as the tf.data pipeline; the GT odgt of a split is rendered once into
settings.cache_dir(data_dir, "synthetic_crowds_numpy", config, renderer version).
Rendering runs in data.num_parallel_calls worker processes (-1: one per CPU), up to two batches ahead.
"""
from __future__ import annotations

import itertools
import logging
import os

import numpy as np

from data_pipelines import records as records_lib
from data_pipelines import registry
from data_pipelines import settings
from data_pipelines import synthetic
from data_pipelines import transforms


def _config_name(p: dict) -> str:
  return synthetic.config_name(p["num_train"], p["num_val"], p["height"], p["width"], p["base_seed"])


def _workers(data_cfg) -> int:
  n = int(data_cfg.num_parallel_calls)
  return (os.cpu_count() or 1) if n < 0 else max(n, 1)


def split_gt(data_cfg, split: str) -> tuple[str, list[dict]]:
  """(path, lines) of the split's GT odgt, rendered once and cached."""
  p = settings.synthetic_params(data_cfg)
  n = settings.synthetic_split_size(p, split)
  cache = settings.cache_dir(settings.resolve_data_dir(data_cfg), "synthetic_crowds_numpy",
                                   _config_name(p), synthetic.RENDERER_VERSION)
  gt_path = os.path.join(cache, f"{split}_gt.odgt")
  if not os.path.exists(gt_path):
    logging.info("Rendering the GT of synthetic_crowds/%s/%s (%d images) into %s; one time only",
                 _config_name(p), split, n, gt_path)
    lines = [records_lib.odgt_line(ex["id"], ex["fbox"], ex["vbox"], ex["hbox"], ex["tag"], ex["ignore"],
                                   ex["height"], ex["width"])
             for ex in synthetic.render_examples(split, range(n), p["base_seed"], p["height"], p["width"],
                                                 _workers(data_cfg))]
    records_lib.write_odgt(gt_path, lines)
  return gt_path, records_lib.read_odgt(gt_path)


def create_dataset(data_cfg, split: str, batch_size: int, train: bool, seed: int, process_index: int = 0,
                   process_count: int = 1, skip_batches: int = 0):
  """(iterator of Batch dicts, info), as input_pipeline.create_dataset, for a data set with numpy_source.
  Training: the stream starts after skip_batches * batch_size slots, the same slots (image, flip or ALFNet
  draws) the full stream has there, found arithmetically (no image of a skipped slot is rendered)."""
  served = [n for n in registry.names() if registry.get(n).numpy_source]
  if data_cfg.name not in served:
    registry.get(data_cfg.name)  # an unknown name: the error lists the registered ones
    raise ValueError(f"data.source 'numpy' renders only {', '.join(map(repr, served))}; data set {data_cfg.name!r} "
                     "needs data.source 'tfds' (TensorFlow and a prepared TFDS data set)")
  alfnet = registry.augment(data_cfg) == "alfnet"
  p = settings.synthetic_params(data_cfg)
  gt_path, lines = split_gt(data_cfg, split)
  where = f"synthetic_crowds/{_config_name(p)}/{split} (numpy)"
  gt = records_lib.odgt_split(gt_path, lines)
  records = gt.records
  info, (start, end), _ = transforms.split_plan(gt, data_cfg, alfnet, train, where, process_index,
                                                       process_count, batch_size)
  stats = info["stats"]

  def slots():
    """The example stream: (index, draws, pad shape) per image (draws: the flip coin, or the NUM_DRAWS
    uniforms of the ALFNet augmentation; None in evaluation; pad shape: None in training (data.pad_size)),
    (None, None, pad shape) for an eval filler slot. Evaluation follows info["schedule"]."""
    if train:
      rng = np.random.default_rng([seed, process_index, 1])
      usable = np.arange(start, end)[gt.has_gt[start:end]] if alfnet else np.arange(start, end)
      draws = transforms.NUM_DRAWS if alfnet else 1          # uniforms per slot from `rng`
      skip = int(skip_batches) * batch_size
      first_epoch, offset = divmod(skip, max(len(usable), 1))
      for done in range(0, skip * draws, 1 << 20):          # the skipped slots' draws, in bounded chunks
        rng.random(min(1 << 20, skip * draws - done))
      for epoch in itertools.count(first_epoch):  # batches may straddle epochs, as with shuffle().repeat().batch()
        order = np.random.default_rng([seed, process_index, 0, epoch]).permutation(usable)
        for i in order[offset if epoch == first_epoch else 0:]:
          yield int(i), (rng.random(transforms.NUM_DRAWS) if alfnet else bool(rng.random() < data_cfg.flip_prob)), None
    else:
      for shape, indices in info["schedule"]:
        yield from ((i, None, shape) for i in indices)

  def example(slot, loaded):
    if slot[0] is None:
      return transforms.padding_example(data_cfg, slot[2])
    (index, image, boxes, classes), draws = loaded, slot[1]
    image_id = records[index]["ID"]
    if alfnet and train:
      return transforms.preprocess_alfnet(image, boxes, classes, index, image_id, data_cfg, draws)
    if alfnet:
      return transforms.preprocess_full(image, boxes, classes, index, image_id, data_cfg, slot[2])
    return transforms.preprocess(image, boxes, classes, index, image_id, data_cfg, bool(draws), slot[2])

  def batches():
    stream, jobs = itertools.tee(slots())
    key = registry.box_key(data_cfg)   # data.box: the boxes served (fbox, vbox or hbox)
    jobs = (None if s[0] is None else (split, s[0], p["base_seed"], p["height"], p["width"], key) for s in jobs)
    loaded = synthetic.ordered_map(synthetic.load_example, jobs, _workers(data_cfg), window=2 * batch_size)
    examples = map(example, stream, loaded)
    while batch := list(itertools.islice(examples, batch_size)):
      yield transforms.finish_batch(transforms.stack_examples(batch), data_cfg.max_boxes, records, stats)
    stats.log()

  return batches(), info
