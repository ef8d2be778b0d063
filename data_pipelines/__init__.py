"""Data pipelines: TFDS builders, the tf.data input pipeline and a TensorFlow-free numpy source.

Builders: synthetic_crowds.py (built on first use), crowdhuman.py and citypersons.py (from the official
files, once: `python -m data_pipelines.prepare crowdhuman|citypersons --manual_dir DIR --data_dir OUT`).

`create_dataset(data_cfg, split, batch_size, train, seed, process_index, process_count)` returns
`(iterator, info)`: the iterator yields numpy Batch dicts (lla_jax/types.py); info holds "num_images",
"records" ([{"ID", "width", "height", "index"}] in image_id order; CityPersons records add "eval_image_id"
(the image id of the GT json, index + 1) and "im_name"), "gt_odgt" (CrowdHuman-format GT of the split,
for evaluation; None for CityPersons), "gt_json" (CityPersons: the GT in the evaluator's val_gt.json
layout, for lla_jax.evaluation.citypersons.load_gt; None otherwise), "max_boxes" (most boxes of one
image in the split) and "stats" (live counters of the iterator).

This module imports neither TensorFlow nor TFDS; `data_cfg.source` picks the implementation:
"tfds" (input_pipeline.py, tf.data) or "numpy" (numpy_source.py, synthetic data only, no TensorFlow).
"""
from __future__ import annotations

import os

SYNTHETIC = "synthetic_crowds"


def resolve_data_dir(data_cfg) -> str:
  """data_cfg.data_dir, else $TFDS_DATA_DIR, else ~/tensorflow_datasets (TFDS's own default)."""
  return os.path.expanduser(data_cfg.data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets")


def cache_dir(data_dir: str, *parts: str) -> str:
  """Where derived files (GT odgt of a split) live: <data_dir>/lla_cache/<parts...>, next to the TFDS data."""
  return os.path.join(data_dir, "lla_cache", *parts)


def synthetic_params(data_cfg) -> dict:
  """Size of the synthetic data set from the data config: num_train, num_val, height, width, base_seed.
  The base seed is `data.synthetic_seed` when the config has it, else 0."""
  height, width = (int(v) for v in data_cfg.render_size)
  return {"num_train": int(data_cfg.num_train_images), "num_val": int(data_cfg.num_val_images),
          "height": height, "width": width, "base_seed": int(data_cfg.get("synthetic_seed", 0))}


def synthetic_split_size(params: dict, split: str) -> int:
  sizes = {"train": params["num_train"], "val": params["num_val"]}
  if split not in sizes:
    raise ValueError(f"synthetic_crowds has splits {sorted(sizes)}, not {split!r}")
  return sizes[split]


def create_dataset(data_cfg, split: str, batch_size: int, train: bool, seed: int, process_index: int = 0,
                   process_count: int = 1):
  """(iterator of Batch dicts, info) for `split`; batch_size is the per-process batch. See the module doc."""
  if data_cfg.source == "tfds":
    from data_pipelines import input_pipeline
    return input_pipeline.create_dataset(data_cfg, split, batch_size, train, seed, process_index, process_count)
  if data_cfg.source == "numpy":
    from data_pipelines import numpy_source
    return numpy_source.create_dataset(data_cfg, split, batch_size, train, seed, process_index, process_count)
  raise ValueError(f"data.source must be 'tfds' or 'numpy', got {data_cfg.source!r}")
