"""Data sets by name: one entry per data set (builder, splits, evaluators, GT format, default
augmentation). No TensorFlow here; the builder is imported only when a pipeline is built.

MINIMAL VERSION written by helper arch-a against the interface agreed in the coordination sheet, so
that lla_jax's evaluator and config code can consume it; helper arch-b owns this file and its
version replaces this one at merge.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DataSet:
  """name: config.data.name. builder: 'module:Class' of the TFDS builder, imported lazily. splits: the
  split names. evals: the evaluator names (lla_jax/evaluation/registry.py) run on its eval split by
  default. gt_format: how the pipeline gives the eval split's GT ('odgt': info['gt_odgt'];
  'citypersons_json': info['gt_json']). augment: the default config.data.augment ('flip' | 'alfnet').
  numpy_source: whether data.source='numpy' can serve it (no TensorFlow)."""
  name: str
  builder: str
  splits: tuple
  evals: tuple
  gt_format: str
  augment: str
  numpy_source: bool = False


_DATASETS: dict[str, DataSet] = {}


def register(data_set: DataSet) -> DataSet:
  """Adds `data_set` under its name (an error when the name is taken)."""
  if data_set.name in _DATASETS:
    raise ValueError(f"data set {data_set.name!r} is registered already")
  _DATASETS[data_set.name] = data_set
  return data_set


def names() -> tuple:
  """The registered data set names, sorted."""
  return tuple(sorted(_DATASETS))


def get(name: str) -> DataSet:
  """The entry of `name`; a ValueError listing the registered names when there is none."""
  if name not in _DATASETS:
    raise ValueError(f"config.data.name={name!r}: expected one of {', '.join(map(repr, names()))}")
  return _DATASETS[name]


register(DataSet("crowdhuman", "data_pipelines.crowdhuman:Crowdhuman", ("train", "val"), ("crowdhuman",), "odgt",
                 "flip"))
register(DataSet("citypersons", "data_pipelines.citypersons:Citypersons", ("train", "val"), ("citypersons",),
                 "citypersons_json", "alfnet"))
register(DataSet("synthetic_crowds", "data_pipelines.synthetic_crowds:SyntheticCrowds", ("train", "val"),
                 ("crowdhuman",), "odgt", "flip", numpy_source=True))
