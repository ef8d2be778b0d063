"""The paper's comparison in miniature: the same detector trained with the LLA, ATSS and FCOS label
assignments, everything else identical, and the two-stage Faster R-CNN on the same backbone, data and
budget, on the synthetic crowds; then the MR^-2 / AP50 / Recall table and a picture of each one-stage
assigner's positives on a val image.

  python -m lla_jax.compare --workdir=/tmp/lla_compare [--steps=900] [--seed=0] [--methods=LLA,FASTER_RCNN]

Each method trains in <workdir>/<name> (resuming there like main.py). Writes comparison.md,
comparison.json and assignment.png into the workdir.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os

import jax
import numpy as np

import data_pipelines
from lla_jax import checkpointing, cli, evaluate, pictures, priors, sharding, train_state, visualize
from lla_jax.assigners import assign_batch
from lla_jax.methods import get_method
from lla_jax.models import detector



@dataclasses.dataclass(frozen=True)
class Row:
  """One row of the table: --methods key, table label, quick-start config, and whether it is an FCOS-family
  assigner whose positives the assignment picture draws."""
  key: str
  label: str
  config: str
  assigner: bool = True


METHODS = [Row("LLA", "LLA", "configs/quickstart.py"), Row("ATSS", "ATSS", "configs/atss_quickstart.py"),
           Row("FCOS", "FCOS", "configs/fcos_quickstart.py"),
           Row("FASTER_RCNN", "Faster R-CNN", "configs/faster_rcnn_quickstart.py", assigner=False)]
ROWS = {row.key: row for row in METHODS}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(name: str, steps: int | None, seed: int, overrides: dict):
  config = cli.load_config_file(os.path.join(ROOT, ROWS[name].config))
  config.seed = seed
  if steps:
    ratio = steps / config.train.steps
    config.train.lr_steps = tuple(int(s * ratio) for s in config.train.lr_steps)
    config.train.steps = steps
    config.train.checkpoint_every = steps
  for key, value in overrides.items():
    node = config
    *path, leaf = key.split(".")
    for p in path:
      node = node[p]
    node[leaf] = type(node[leaf])(value) if node[leaf] is not None else value
  return config


def format_table(rows: dict, steps: int, seed: int) -> str:
  lines = ["| method | MR^-2 (lower is better) | AP50 | Recall |", "|---|---|---|---|"]
  for name, m in rows.items():
    lines.append(f"| {ROWS[name].label if name in ROWS else name} | {100 * m['MR']:.2f} | {100 * m['AP']:.2f} | {100 * m['Recall']:.2f} |")
  lines.append(f"\nSynthetic crowds val, {steps} steps, seed {seed}, same backbone, data and schedule.")
  return "\n".join(lines)


def assignment_picture(configs: dict, workdirs: dict, path: str, image_index: int = 0):
  """Positives of each assigner for one val image, from each method's trained checkpoint."""
  first = next(iter(configs.values()))
  batches, _ = data_pipelines.create_dataset(evaluate.eval_data_config(first), split=first.data.eval_split,
                                             batch_size=1, train=False, seed=0)
  for _ in range(image_index + 1):
    batch = next(batches)
  panels = []
  for name, config in configs.items():
    mesh = sharding.make_mesh(jax.devices()[:1])
    method = get_method(config)
    state = train_state.abstract_train_state(config, method, mesh)
    ckpt = checkpointing.Checkpoints(workdirs[name], config.train.keep_checkpoints)
    state = ckpt.restore(state)
    ckpt.close()
    out = detector.build_detector(config.model).apply({"params": state.params, **state.model_state}, batch["image"])
    pts = priors.fpn_points(*batch["image"].shape[1:3], tuple(config.model.head.strides))
    t = assign_batch(config.assigner, pts.xy, pts.strides, out["cls_logits"], out["ltrb"], batch["gt_boxes"],
                     batch["gt_classes"], batch["gt_valid"])
    image = visualize.denormalise(batch["image"][0], batch["image_size"][0], config.data)
    panels.append(pictures.draw_assignment(image, pts.xy, pts.strides, np.asarray(t.matched_gt[0]),
                                           batch["gt_boxes"][0], batch["gt_classes"][0], batch["gt_valid"][0],
                                           title=name))
  return pictures.save_png(pictures.grid(panels, columns=len(panels)), path)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--steps", type=int, default=None, help="train steps per method (default: the config's)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--methods", default=",".join(row.key for row in METHODS))
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="config override applied to every method, e.g. --set data.source=numpy")
  args = parser.parse_args(argv)

  names = [m.strip().upper() for m in args.methods.split(",")]
  unknown = [n for n in names if n not in ROWS]
  if unknown:
    parser.error(f"--methods: unknown {unknown}; choose from {[row.key for row in METHODS]}")
  overrides = dict(kv.split("=", 1) for kv in args.set)
  configs = {n: load(n, args.steps, args.seed, overrides) for n in names}
  workdirs = {n: os.path.join(args.workdir, n.lower()) for n in names}
  rows = {}
  for name in names:
    print(f"=== {name}: training in {workdirs[name]}", flush=True)
    rows[name] = cli.train_and_evaluate(configs[name], workdirs[name])
  steps = configs[names[0]].train.steps
  table = format_table(rows, steps, args.seed)
  with open(os.path.join(args.workdir, "comparison.md"), "w") as f:
    f.write(table + "\n")
  with open(os.path.join(args.workdir, "comparison.json"), "w") as f:
    json.dump({"steps": steps, "seed": args.seed, "results": rows}, f, indent=1)
  print(table)
  drawn = {n: configs[n] for n in names if ROWS[n].assigner}
  if drawn:
    picture = assignment_picture(drawn, workdirs, os.path.join(args.workdir, "assignment.png"))
    print(f"Assignment picture: {picture}")


if __name__ == "__main__":
  main()
