"""The data sets the suite knows: one entry each, so that adding a data set is one builder file and
one `register` call here, not an edit of every place that reads data.

An entry names (fields of `DataSet`):
  name          the config's data.name and the TFDS name of the prepared data
  builder       'module:Class' of its TFDS builder, imported only when asked for (`builder_class`);
                this module imports neither TensorFlow nor TFDS
  splits        the splits the builder writes
  evals         evaluator names (lla_jax/evaluation/registry.py) run on the data set's eval split when
                the config lists none (config.evals empty)
  gt_format     how the evaluation GT of a split is exported: 'odgt' (CrowdHuman lines),
                'citypersons_json' (the CityPersons toolbox's val_gt.json layout) or 'caltech_bbgt' (odgt
                lines plus the Caltech evaluator's bbGt folder and frame list); see gt_export.py
  augment       the default data.augment: 'flip' (FCOS-family resize + flip) or 'alfnet' (ALFNet's
                brightness, flip and scale-crop); a config's data.augment overrides it
  numpy_source  the TensorFlow-free numpy source (data.source 'numpy') can render it
  boxes         the box types data.box may choose (BOX_KEYS: 'full' = the builder's fbox feature,
                'visible' = vbox, 'head' = hbox); the default 'full' is always allowed

A builder whose class declares MANUAL_DOWNLOAD_INSTRUCTIONS is prepared once from the official files
(`python -m data_pipelines.prepare NAME`); the others are built on first use through the class method
`from_data_config(data_cfg, data_dir)`.
"""
from __future__ import annotations

import dataclasses
import importlib

AUGMENTS = ("flip", "alfnet")
# data.box -> the builder feature / odgt key holding that box (CrowdHuman: fbox, vbox, hbox).
BOX_KEYS = {"full": "fbox", "visible": "vbox", "head": "hbox"}


@dataclasses.dataclass(frozen=True)
class DataSet:
  name: str
  builder: str
  splits: tuple[str, ...]
  evals: tuple[str, ...]
  gt_format: str
  augment: str
  numpy_source: bool = False
  boxes: tuple[str, ...] = ("full",)


_ENTRIES: dict[str, DataSet] = {}


def register(entry: DataSet) -> DataSet:
  """Add an entry; a second entry of the same name, a builder not of the 'module:Class' form or an
  unknown augmentation is an error."""
  if entry.name in _ENTRIES:
    raise ValueError(f"data set {entry.name!r} is registered twice")
  module, _, cls = entry.builder.partition(":")
  if not module or not cls:
    raise ValueError(f"data set {entry.name!r}: builder must be 'module:Class', got {entry.builder!r}")
  if entry.augment not in AUGMENTS:
    raise ValueError(f"data set {entry.name!r}: augment must be one of {AUGMENTS}, got {entry.augment!r}")
  if "full" not in entry.boxes or not set(entry.boxes) <= set(BOX_KEYS):
    raise ValueError(f"data set {entry.name!r}: boxes must include 'full' and be among {tuple(BOX_KEYS)}, "
                     f"got {entry.boxes!r}")
  if not entry.splits or not entry.evals:
    raise ValueError(f"data set {entry.name!r}: splits and evals must not be empty")
  _ENTRIES[entry.name] = entry
  return entry


def names() -> tuple[str, ...]:
  """The registered data set names, in registration order."""
  return tuple(_ENTRIES)


def get(name: str) -> DataSet:
  """The entry of data set `name`; an unknown name is an error listing the registered ones."""
  try:
    return _ENTRIES[name]
  except KeyError:
    raise ValueError(f"config.data.name={name!r}: unknown data set; registered: {', '.join(names())}") from None


def builder_class(name: str):
  """The TFDS builder class of data set `name`, imported now (this imports TFDS)."""
  module, _, cls = get(name).builder.partition(":")
  return getattr(importlib.import_module(module), cls)


def augment(data_cfg) -> str:
  """The augmentation a data config asks for: data.augment, or the data set's default when it is None
  (or the config has no such field)."""
  entry = get(data_cfg.name)
  choice = data_cfg.get("augment") or entry.augment
  if choice not in AUGMENTS:
    raise ValueError(f"data.augment must be one of {AUGMENTS} (or None: {entry.name}'s default "
                     f"{entry.augment!r}), got {choice!r}")
  return choice


def box(data_cfg) -> str:
  """The box type a data config trains and evaluates on: data.box ('full' when None or absent), checked
  against the data set's choices (an error naming the data set and the valid choices)."""
  entry = get(data_cfg.name)
  choice = data_cfg.get("box") or "full"
  if choice not in entry.boxes:
    raise ValueError(f"data.box={choice!r}: data set {entry.name!r} has the box types "
                     f"{', '.join(map(repr, entry.boxes))}")
  return choice


def box_key(data_cfg) -> str:
  """The builder feature / odgt key of the chosen box type (`box`): 'fbox', 'vbox' or 'hbox'."""
  return BOX_KEYS[box(data_cfg)]


register(DataSet(name="crowdhuman", builder="data_pipelines.crowdhuman:Crowdhuman", splits=("train", "val"),
                 evals=("crowdhuman",), gt_format="odgt", augment="flip", boxes=("full", "visible", "head")))
register(DataSet(name="citypersons", builder="data_pipelines.citypersons:Citypersons", splits=("train", "val"),
                 evals=("citypersons",), gt_format="citypersons_json", augment="alfnet",
                 boxes=("full", "visible")))
register(DataSet(name="synthetic_crowds", builder="data_pipelines.synthetic_crowds:SyntheticCrowds",
                 splits=("train", "val"), evals=("crowdhuman",), gt_format="odgt", augment="flip",
                 numpy_source=True, boxes=("full", "visible", "head")))
register(DataSet(name="caltech", builder="data_pipelines.caltech:Caltech", splits=("train", "train_10x", "test"),
                 evals=("caltech",), gt_format="caltech_bbgt", augment="flip"))
