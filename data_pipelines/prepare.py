"""Prepare a data set once from the official files: build the TFDS data set, validate it, write the
evaluation GT into the cache and print the statistics. The last line printed is one JSON object
(images, boxes and ignore boxes per split, max_boxes, the GT files, warnings, all statistics).

  python -m data_pipelines.prepare crowdhuman --manual_dir DIR --data_dir OUT
  python -m data_pipelines.prepare citypersons --manual_dir DIR --data_dir OUT [--annotations auto|json|mat]
  python -m data_pipelines.prepare caltech --manual_dir DIR --data_dir OUT [--annotations auto|vbb|new]

The choices are the registered data sets (registry.py) whose builder needs manual files. The builder
module of each provides what this command needs: find_layout(manual_dir, **options), SPLITS, OFFICIAL
(per split, the statistics of the official release), DEFAULT_MAX_BOXES, EXAMPLE_CONFIG and
BUILD_OPTIONS (the command-line options its builder takes).

Options: --skip_corrupt leaves out (and counts) images that cannot be decoded instead of stopping;
--max_boxes N is the data.max_boxes the configs will use (default: the builder module's
DEFAULT_MAX_BOXES, that of the configs that train on it: 500 for CrowdHuman, configs/base.py, 128 for
CityPersons, configs/alfnet_*.py, 64 for Caltech, configs/*_caltech.py): an image with more boxes stops with
an error stating the value the statistics call for; --rebuild builds again over an existing build.
--annotations picks the box source: CityPersons json | mat, Caltech vbb | new (the new annotations of Zhang
et al. 2016 where their folders are present); auto prefers json / new. A split whose files are absent from
DIR (Caltech: no video of its sets) is not built and is named in the warnings.
Afterwards training needs no further step:
  python main.py --config=configs/lla_r50.py --workdir=W --config.data.data_dir=OUT
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

import tensorflow_datasets as tfds

from data_pipelines import gt_export
from data_pipelines import images
from data_pipelines import registry


def prepared_names() -> tuple[str, ...]:
  """The registered data sets prepared from manual files (their builder declares
  MANUAL_DOWNLOAD_INSTRUCTIONS); the others are built on first use."""
  return tuple(n for n in registry.names() if registry.builder_class(n).MANUAL_DOWNLOAD_INSTRUCTIONS)


def _module(name: str):
  """The builder module of a prepared data set (see the module doc for what it provides)."""
  if name not in prepared_names():
    raise ValueError(f"data set must be one of {prepared_names()}, got {name!r}")
  return sys.modules[registry.builder_class(name).__module__]


def build(name: str, manual_dir: str, data_dir: str, skip_corrupt: bool = False, rebuild: bool = False, **options):
  """Build `name` from manual_dir into data_dir/name (streaming; see the builder modules); an existing
  build is reused unless `rebuild`. `options` are the builder's BUILD_OPTIONS (CityPersons:
  annotations). The layout is checked first (errors print the expected layout). Returns the builder."""
  images.tensorflow()  # keep TensorFlow off the accelerators before anything runs
  module = _module(name)
  unknown = sorted(set(options) - set(module.BUILD_OPTIONS))
  if unknown:
    raise ValueError(f"{name} takes the build options {list(module.BUILD_OPTIONS)}, not {unknown}")
  module.find_layout(manual_dir, **options)
  builder = registry.builder_class(name)(data_dir=data_dir, skip_corrupt=skip_corrupt, **options)
  if builder.is_prepared() and not rebuild:
    print(f"{name}: already prepared in {builder.data_dir}; reusing it (pass --rebuild to build again)", flush=True)
  mode = tfds.download.GenerateMode.FORCE_REDOWNLOAD if rebuild else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=os.fspath(manual_dir), download_mode=mode))
  return builder


def format_statistics(name: str, stats: dict) -> str:
  """A readable table of the per-split statistics."""
  lines = [f"{name} statistics"]
  for split, st in stats.items():
    lines.append(f"  {split}:")
    for key, value in st.items():
      if key == "corrupt_ids" and not value:
        continue
      lines.append(f"    {key:<24} {value}")
  return "\n".join(lines)


def validate(name: str, data_dir: str) -> dict:
  """Read the prepared data back the way training does (gt_export.prepared_builder), write the
  evaluation GT of each split into the cache (gt_export.export_split) and check counts against the
  statistics and the official release (the builder module's OFFICIAL). Returns the summary (the JSON of
  the last line)."""
  builder = gt_export.prepared_builder(name, data_dir)
  stats = dict(builder.info.metadata.get("statistics", {}))
  module = _module(name)
  splits = [s for s in module.SPLITS if s in builder.info.splits]
  if sorted(stats) != sorted(splits):
    raise ValueError(f"{builder.data_dir}: the builder metadata holds statistics for {sorted(stats)}, expected "
                     f"{splits}; rebuild with --rebuild")
  summary = {"dataset": name, "version": str(builder.info.version), "data_dir": os.path.abspath(data_dir),
             "images": {}, "boxes": {}, "ignore": {}, "max_boxes": 0, "max_boxes_per_split": {},
             "mean_boxes": {}, "gt": {}, "warnings": [], "statistics": stats}
  worst = None  # (count, ID, split) of the image with the most boxes
  summary["warnings"] += [f"{split}: not built (the manual_dir holds none of its files)"
                          for split in module.SPLITS if split not in splits]
  for split in splits:
    st = stats[split]
    gt = gt_export.export_split(name, builder, split, data_dir)
    n = len(gt.records)
    for key, value in module.OFFICIAL[split].items():
      if st[key] != value:
        summary["warnings"].append(f"{split}: {key} = {st[key]}, the official files give {value}")
    if n != st["images"] or n != builder.info.splits[split].num_examples:
      raise ValueError(f"{builder.data_dir}/{split}: {n} examples read back, {builder.info.splits[split].num_examples} "
                       f"written, statistics say {st['images']}; rebuild with --rebuild")
    if st["corrupt_skipped"]:
      summary["warnings"].append(f"{split}: {st['corrupt_skipped']} corrupt images skipped: {st['corrupt_ids']}")
    summary["images"][split], summary["boxes"][split], summary["ignore"][split] = n, st["boxes"], st["ignore"]
    summary["max_boxes_per_split"][split], summary["mean_boxes"][split] = st["max_boxes"], st["mean_boxes"]
    summary["gt"][split] = gt.path
    if worst is None or st["max_boxes"] > worst[0]:
      worst = (st["max_boxes"], st["max_boxes_id"], split)
  summary["max_boxes"], summary["max_boxes_image"] = worst[0], {"ID": worst[1], "split": worst[2]}
  return summary


def max_boxes_error(summary: dict, max_boxes: int) -> ValueError | None:
  """The error when an image has more boxes than max_boxes, stating the value the statistics call for."""
  n, where = summary["max_boxes"], summary["max_boxes_image"]
  if n <= max_boxes:
    return None
  return ValueError(
      f"image {where['ID']} of {summary['dataset']}/{where['split']} has {n} boxes (ignore regions included), more "
      f"than max_boxes = {max_boxes}; the statistics call for data.max_boxes >= {n}: train with "
      f"--config.data.max_boxes={n} and pass --max_boxes {n} here (the build is kept)")


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(prog="python -m data_pipelines.prepare", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("dataset", choices=prepared_names())
  parser.add_argument("--manual_dir", required=True, help="folder with the unpacked official files")
  parser.add_argument("--data_dir", required=True, help="TFDS data_dir to build into (config data.data_dir)")
  parser.add_argument("--skip_corrupt", action="store_true", help="skip and count images that cannot be decoded")
  parser.add_argument("--max_boxes", type=int, default=None, help="data.max_boxes of the configs to be used")
  parser.add_argument("--annotations", choices=("auto", "json", "mat", "vbb", "new"), default=None,
                      help="box source (default auto): CityPersons gtBboxCityPersons JSON or the toolbox .mat "
                      "files; Caltech .vbb video annotations or the new annotations")
  parser.add_argument("--rebuild", action="store_true", help="build again even if data_dir holds a build")
  args = parser.parse_args(argv)
  module = _module(args.dataset)
  given = {k: getattr(args, k) for k in ("annotations",) if getattr(args, k) is not None}
  unknown = sorted(set(given) - set(module.BUILD_OPTIONS))
  if unknown:
    parser.error(f"{args.dataset} takes no {', '.join('--' + k for k in unknown)}")
  sources = getattr(module, "ANNOTATION_SOURCES", None)
  if sources and given.get("annotations", sources[0]) not in sources:
    parser.error(f"{args.dataset}: --annotations must be one of {', '.join(sources)}, got {given['annotations']!r}")
  max_boxes = args.max_boxes if args.max_boxes is not None else module.DEFAULT_MAX_BOXES
  build(args.dataset, args.manual_dir, args.data_dir, args.skip_corrupt, args.rebuild, **given)
  summary = validate(args.dataset, args.data_dir)
  print(format_statistics(args.dataset, summary["statistics"]))
  error = max_boxes_error(summary, max_boxes)
  if error is not None:
    raise error
  for w in summary["warnings"]:
    print(f"WARNING: {w}")
  for split, path in summary["gt"].items():
    print(f"evaluation GT of {split}: {path}")
  print(f"train with: python main.py --config=configs/{module.EXAMPLE_CONFIG}.py --workdir=W "
        f"--config.data.data_dir={os.path.abspath(args.data_dir)}")
  print(json.dumps(summary, sort_keys=True), flush=True)
  return summary


if __name__ == "__main__":
  logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
  try:
    main()
  except (FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
