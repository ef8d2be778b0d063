"""The paper's comparison in miniature: the same detector trained with the LLA, ATSS and FCOS label
assignments, everything else identical, and the two-stage Faster R-CNN on the same backbone, data and
budget, on the synthetic crowds; then the MR^-2 / AP50 / Recall table and a picture of each one-stage
assigner's positives on a val image.

  python -m lla_jax.compare --workdir=/tmp/lla_compare [--steps=900] [--seed=0 | --seeds=0,1,2] [--methods=LLA,FASTER_RCNN]
  python -m lla_jax.compare --workdir=/tmp/lla_paper --preset=paper [--set data.source=numpy]

--preset=paper: every method of METHODS for the same longer schedule (PRESETS["paper"]: 3000 steps, seeds
0, 1, 2, 500 val images), so that the ordering is not the optimiser's noise; the table gives each
method's mean and sample standard deviation over the seeds and every seed's value. Explicit --steps /
--seeds / --methods / --set still win over the preset.

Each method trains in <workdir>/<name> (one seed) or <workdir>/<name>/seed<S> (several), resuming there
like main.py. Writes comparison.md, comparison.json and assignment.png (first seed) into the workdir.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os

import jax
import numpy as np

import data_pipelines
from lla_jax import checkpointing, cli, evaluate, host_memory, pictures, priors, sharding, train_state, visualize
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
# Named schedules: steps per method, seeds, and config overrides applied to every method.
PRESETS = {"paper": {"steps": 3000, "seeds": (0, 1, 2), "set": {"data.num_val_images": "500"}}}
METRICS = ("MR", "AP", "Recall", "JI")
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


def summarise(per_seed: dict) -> dict:
  """{seed: metrics} of one method -> {"mean": {metric: v}, "std": {metric: sample std (0 for one seed)},
  "min", "max", "seeds": {seed: {metric: v}}} over METRICS (None where a metric is missing)."""
  out = {"mean": {}, "std": {}, "min": {}, "max": {},
         "seeds": {str(s): {k: (m or {}).get(k) for k in METRICS} for s, m in per_seed.items()}}
  for k in METRICS:
    v = np.array([(m or {}).get(k) for m in per_seed.values()], dtype=float)
    ok = v[np.isfinite(v)]
    out["mean"][k] = float(ok.mean()) if ok.size else None
    out["std"][k] = float(ok.std(ddof=1)) if ok.size > 1 else (0.0 if ok.size else None)
    out["min"][k], out["max"][k] = (float(ok.min()), float(ok.max())) if ok.size else (None, None)
  return out


def format_spread_table(summary: dict, steps: int, seeds, num_val: int) -> str:
  """Markdown: per method mean +- sample std (percent) of MR^-2 / AP50 / Recall / JI, and each seed's MR."""
  pct = lambda v: "-" if v is None else f"{100 * v:.2f}"
  lines = ["| method | MR^-2 (lower is better) | AP50 | Recall | JI | MR^-2 per seed |", "|---|---|---|---|---|---|"]
  for name, s in summary.items():
    cells = [f"{pct(s['mean'][k])} ± {pct(s['std'][k])}" for k in METRICS]
    lines.append(f"| {ROWS[name].label if name in ROWS else name} | " + " | ".join(cells) + " | " + ", ".join(pct(m["MR"]) for m in s["seeds"].values()) + " |")
  lines.append(f"\nSynthetic crowds val ({num_val} images), {steps} steps, seeds {', '.join(map(str, seeds))}: mean ± "
               "sample standard deviation over the seeds; same backbone, data and schedule for every method.")
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
  parser.add_argument("--seed", type=int, default=None, help="one seed (default 0)")
  parser.add_argument("--seeds", default=None, help="comma-separated seeds: mean and spread over them")
  parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                      help="paper: every method, 3000 steps, seeds 0,1,2, 500 val images")
  parser.add_argument("--methods", default=None,
                      help=f"comma-separated, of {','.join(row.key for row in METHODS)} (default: all)")
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="config override applied to every method, e.g. --set data.source=numpy")
  args = parser.parse_args(argv)

  preset = PRESETS.get(args.preset, {})
  names = [m.strip().upper() for m in args.methods.split(",")] if args.methods else [row.key for row in METHODS]
  unknown = [n for n in names if n not in ROWS]
  if unknown:
    parser.error(f"--methods: unknown {unknown}; choose from {[row.key for row in METHODS]}")
  if args.seed is not None and args.seeds is not None:
    parser.error("--seed and --seeds: give one")
  seeds = ([int(s) for s in args.seeds.split(",")] if args.seeds else
           [args.seed] if args.seed is not None else list(preset.get("seeds", (0,))))
  steps_arg = args.steps or preset.get("steps")
  overrides = {**preset.get("set", {}), **dict(kv.split("=", 1) for kv in args.set)}
  runs = {(n, s): load(n, steps_arg, s, overrides) for n in names for s in seeds}
  one = len(seeds) == 1
  workdirs = {(n, s): os.path.join(args.workdir, n.lower(), *([] if one else [f"seed{s}"])) for n, s in runs}
  if not one and not jax.config.jax_compilation_cache_dir:
    # The train and predict steps of one method do not depend on the seed: XLA's persistent cache lets
    # every seed after the first skip compilation.
    jax.config.update("jax_compilation_cache_dir", os.path.join(args.workdir, "jax_cache"))
  per_seed = {n: {} for n in names}
  for (name, seed), config in runs.items():
    print(f"=== {name} seed {seed}: training in {workdirs[name, seed]}", flush=True)
    per_seed[name][seed] = cli.train_and_evaluate(config, workdirs[name, seed])
  first = runs[names[0], seeds[0]]
  steps, num_val = first.train.steps, first.data.num_val_images
  if one:
    rows = {n: per_seed[n][seeds[0]] for n in names}
    table, result = format_table(rows, steps, seeds[0]), {"steps": steps, "seed": seeds[0], "results": rows}
  else:
    summary = {n: summarise(per_seed[n]) for n in names}
    table = format_spread_table(summary, steps, seeds, num_val)
    result = {"preset": args.preset, "steps": steps, "seeds": seeds, "num_val_images": num_val, "results": summary}
  with open(os.path.join(args.workdir, "comparison.md"), "w") as f:
    f.write(table + "\n")
  with open(os.path.join(args.workdir, "comparison.json"), "w") as f:
    json.dump(result, f, indent=1, default=str)
  print(table)
  drawn = [n for n in names if ROWS[n].assigner]
  if drawn:
    picture = assignment_picture({n: runs[n, seeds[0]] for n in drawn}, {n: workdirs[n, seeds[0]] for n in drawn},
                                 os.path.join(args.workdir, "assignment.png"))
    print(f"Assignment picture: {picture}")


if __name__ == "__main__":
  host_memory.keep_freed_memory()   # before JAX starts its threads (lla_jax/host_memory.py)
  main()
