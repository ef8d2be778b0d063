"""The data config read in one place: where prepared data and derived files live, and the size of the
synthetic data set. Plain Python; imports nothing heavy."""
from __future__ import annotations

import os


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
