"""TFDS builder `synthetic_crowds`: the built-in synthetic crowd data set (data_pipelines/synthetic.py).

No download: images are rendered deterministically from (split, index, base seed). Importing this
module imports TensorFlow Datasets; `data_pipelines/__init__` never does, so only a tf.data run pays.

The feature schema (`detection_features`) is the one the CrowdHuman and CityPersons builders share:
  image        encoded JPEG/PNG, decoded uint8 (H, W, 3) RGB
  image/id     string ID (CrowdHuman ID, e.g. "synth_val_000012")
  image/index  int64 position of the image in its split (= Batch image_id)
  size         int32 (2,) original (h, w)
  fbox, vbox, hbox  float32 (N, 4) xyxy absolute pixels, not normalised (full boxes may leave the image)
  ignore       bool (N,)   extra.ignore (class -1 in training)
  tag          string (N,) "person" | "mask"
"""
from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np
import tensorflow_datasets as tfds

from data_pipelines import settings
from data_pipelines import synthetic

# Rendering runs in worker processes above this many images (process start-up costs about a second).
_PARALLEL_MIN_IMAGES = 64


def detection_features(encoding_format: str = "jpeg") -> tfds.features.FeaturesDict:
  """The shared detection feature schema (see the module docstring)."""
  boxes = lambda: tfds.features.Tensor(shape=(None, 4), dtype=np.float32)
  return tfds.features.FeaturesDict({
      "image": tfds.features.Image(shape=(None, None, 3), dtype=np.uint8, encoding_format=encoding_format),
      "image/id": tfds.features.Text(),
      "image/index": tfds.features.Scalar(dtype=np.int64),
      "size": tfds.features.Tensor(shape=(2,), dtype=np.int32),
      "fbox": boxes(),
      "vbox": boxes(),
      "hbox": boxes(),
      "ignore": tfds.features.Tensor(shape=(None,), dtype=np.bool_),
      "tag": tfds.features.Tensor(shape=(None,), dtype=np.str_),
  })


def xywh_to_xyxy(b) -> np.ndarray:
  b = np.asarray(b, np.float32).reshape(-1, 4)
  return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


config_name = synthetic.config_name  # the builder config name


@dataclasses.dataclass(eq=False)
class SyntheticCrowdsConfig(tfds.core.BuilderConfig):
  """Number of images per split, render size (H, W) and base seed of one synthetic data set."""
  num_train: int = 2000
  num_val: int = 200
  height: int = 384
  width: int = 512
  base_seed: int = 0


def make_config(num_train: int, num_val: int, height: int, width: int, base_seed: int = 0) -> SyntheticCrowdsConfig:
  return SyntheticCrowdsConfig(
      name=config_name(num_train, num_val, height, width, base_seed),
      description=f"{num_train} train / {num_val} val images of {height}x{width}, base seed {base_seed}",
      num_train=num_train, num_val=num_val, height=height, width=width, base_seed=base_seed)


DEFAULT_CONFIG = make_config(2000, 200, 384, 512, 0)


class SyntheticCrowds(tfds.core.GeneratorBasedBuilder):
  """Procedural crowded street scenes with full, visible and head boxes and ignore regions."""

  VERSION = tfds.core.Version(synthetic.RENDERER_VERSION)
  RELEASE_NOTES = {synthetic.RENDERER_VERSION: "Renderer version " + synthetic.RENDERER_VERSION}
  BUILDER_CONFIGS = [DEFAULT_CONFIG]
  # Nothing is downloaded, so there is no checksums file to locate next to the code; locating it would
  # also need the optional `importlib_resources` package, which tfds imports lazily and does not require.
  code_path = None

  @classmethod
  def from_data_config(cls, data_cfg, data_dir: str) -> "SyntheticCrowds":
    """The builder of the sizes data_cfg asks for (settings.synthetic_params), built into data_dir on
    first use."""
    return prepare(**settings.synthetic_params(data_cfg), data_dir=data_dir)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=("Synthetic crowds: procedurally rendered street scenes with pedestrians (amodal full "
                     "box, visible box, head box) and ignore regions, in the CrowdHuman box conventions."),
        features=detection_features("jpeg"),
        disable_shuffling=True,  # stored in index order: eval batches follow the record list
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    c = self.builder_config
    return {"train": self._generate_examples("train", c.num_train),
            "val": self._generate_examples("val", c.num_val)}

  def _generate_examples(self, split: str, num_images: int):
    c = self.builder_config
    workers = min(os.cpu_count() or 1, 8) if num_images >= _PARALLEL_MIN_IMAGES else 1
    for ex in synthetic.render_examples(split, range(num_images), c.base_seed, c.height, c.width, workers):
      yield _to_example(ex)


def _to_example(ex: dict):
  """A rendered example (synthetic.render_example) -> (key, TFDS feature dict)."""
  return ex["index"], {
      "image": ex["jpeg"],
      "image/id": ex["id"],
      "image/index": ex["index"],
      "size": np.array([ex["height"], ex["width"]], np.int32),
      "fbox": xywh_to_xyxy(ex["fbox"]),
      "vbox": xywh_to_xyxy(ex["vbox"]),
      "hbox": xywh_to_xyxy(ex["hbox"]),
      "ignore": np.asarray(ex["ignore"], bool),
      "tag": np.array(list(ex["tag"]), dtype=object).reshape(-1),  # TFDS wants str as object arrays
  }


def builder(num_train: int, num_val: int, height: int, width: int, base_seed: int = 0,
            data_dir: str | None = None) -> SyntheticCrowds:
  """The builder for these sizes: the registered default config when it matches, else a custom one."""
  name = config_name(num_train, num_val, height, width, base_seed)
  config = (name if name in SyntheticCrowds.builder_configs
            else make_config(num_train, num_val, height, width, base_seed))
  return SyntheticCrowds(config=config, data_dir=data_dir)


def prepare(num_train: int, num_val: int, height: int, width: int, base_seed: int = 0,
            data_dir: str | None = None) -> SyntheticCrowds:
  """The builder, built into data_dir first if it is not there yet (logged)."""
  b = builder(num_train, num_val, height, width, base_seed, data_dir)
  if not b.is_prepared():
    logging.info("Building synthetic_crowds/%s (%d train + %d val images at %dx%d) into %s; one time only",
                 b.builder_config.name, num_train, num_val, height, width, b.data_dir)
    b.download_and_prepare()
  return b
