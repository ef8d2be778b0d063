"""Checkpoint-restore evaluation: jitted prediction over each evaluated split, then the evaluators
`config.evals` lists (lla_jax/evaluation/registry.py; empty: the data set's own evaluators from
data_pipelines/registry.py on data.eval_split). The protocols are described in
lla_jax/evaluation/protocols.py.

Entries run in name order; the first is the run's headline: its MR keeps the best checkpoint during
training and it writes, under the workdir: eval_metrics.json (fractions; null where undefined),
eval_table_step{N}.txt (the table it prints), mr_fppi_step{N}.png, and the protocol's
detections/{split}_step{N}.{odgt,json}; eval_metrics.json also records the test-time padding
(test.padding), the number of predict compilations (one per padded input shape) and the batches per
shape. Further entries write the same files with `_{entry name}`
after "eval_metrics", "eval_table" and "mr_fppi" and log their scalars under eval_{entry name}/.
The headline entry also draws the first train.max_pictures images of its split (lla_jax/pictures.py:
TP / FP / missed / ignore by the CrowdHuman matching, else the detections only, at test.draw_score_thresh,
None = the score at FPPI 0.1) into pictures/{ID}_step{N}.png and the contact sheet
pictures/sheet_step{N}.png. Scalars go to TensorBoard / metrics.jsonl through `writer`, and so do the
contact sheet and every MR-FPPI curve as images.
"""
from __future__ import annotations

import os

import jax
import numpy as np
from jax.experimental import multihost_utils

import data_pipelines
from data_pipelines import registry as datasets
from lla_jax import atomic, pictures, sharding, visualize, writers
from lla_jax.evaluation import odgt, plots, protocols
from lla_jax.evaluation import registry as evaluators
from lla_jax.methods import get_method
from lla_jax.train_state import restore_train_state


def eval_specs(config) -> list:
  """[(entry name, evaluator name, split)] of config.evals in name order; the data set's evaluators on
  data.eval_split when config.evals is empty. Unknown evaluators raise, naming the registered ones; so do
  an unsupported data.box (data_pipelines/registry.py) and an evaluator that does not evaluate it."""
  specs = _listed_specs(config)
  box = datasets.box(config.data)
  for entry, kind, _ in specs:
    if box not in evaluators.get(kind).boxes:
      raise ValueError(f"evaluation {entry!r}: evaluator {kind!r} evaluates the box types "
                       f"{', '.join(map(repr, evaluators.get(kind).boxes))}, not data.box={box!r}")
  return specs


def _listed_specs(config) -> list:
  """eval_specs before the box-type check."""
  evals = config.get("evals", None) or {}
  if not evals:
    return [(name, name, config.data.eval_split) for name in datasets.get(config.data.name).evals]
  specs = []
  for entry in sorted(evals):
    spec = evals[entry] or {}
    kind = spec.get("type", None) or entry
    if kind not in evaluators.names():
      raise ValueError(f"config.evals.{entry}: evaluator {kind!r} is not registered; expected one of "
                       f"{', '.join(map(repr, evaluators.names()))}")
    specs.append((entry, kind, spec.get("split", None) or config.data.eval_split))
  return specs


def eval_protocol(config) -> str:
  """The evaluator of the headline evaluation (the first of eval_specs)."""
  return eval_specs(config)[0][1]


def eval_data_config(config):
  """config.data with the test-time padding of config.test for the data pipelines' evaluation path:
  data.eval_padding = test.padding ('divisible' | 'fixed'), data.eval_size_divisibility =
  test.size_divisibility (see configs/base.py)."""
  data_cfg = config.data.copy_and_resolve_references()
  test = config.get("test", None) or {}
  with data_cfg.unlocked():
    data_cfg.eval_padding = test.get("padding", None) or "fixed"
    data_cfg.eval_size_divisibility = int(test.get("size_divisibility", None) or 32)
  return data_cfg


def predict_dataset(config, variables, method, mesh, eval_iter, on_batch=None, shapes=None):
  """Runs jit(method.predict) over a finite iterator of Batches; returns {image_id: (boxes, scores)}
  in original pixels, valid detections only. `on_batch(batch, detections)` sees host copies. Batches
  of several padded shapes compile once per shape (jax.jit's cache); `shapes` (a dict, if given)
  counts the batches of each padded (H, W)."""
  predict = jax.jit(method.predict)
  results = {}
  for local in eval_iter:
    if shapes is not None:
      hw = tuple(int(v) for v in local["image"].shape[1:3])
      shapes[hw] = shapes.get(hw, 0) + 1
    batch = sharding.shard_batch(local, mesh)
    dets, ids = multihost_utils.process_allgather((predict(variables, batch), batch["image_id"]), tiled=True)
    for row, image_id in enumerate(np.asarray(ids)):
      if image_id >= 0:
        v = np.asarray(dets.valid[row])
        results[int(image_id)] = (np.asarray(dets.boxes[row])[v], np.asarray(dets.scores[row])[v])
    if on_batch is not None:
      on_batch(local, dets)
  return results


def _json_safe(obj):
  """NaN -> null in nested metric dicts (json would write the invalid token NaN)."""
  if isinstance(obj, dict):
    return {k: _json_safe(v) for k, v in obj.items()}
  if isinstance(obj, float):
    return protocols.finite_or_none(obj)
  return obj


def format_table(m) -> str:
  """The metric table of an eval_metrics dict (percentages)."""
  head = f"Evaluation at step {m['step']} on {m['split']} ({m['num_images']} images), {m['protocol']} protocol"
  if m.get("box", "full") != "full":
    head += f", {m['box']} boxes"
  return "\n".join([head] + evaluators.get(m["protocol"]).table(m))


def _image_keeper(config, info, images):
  """on_batch callback of predict_dataset keeping the first train.max_pictures images of the split
  (process 0) as {ID: (h, w, 3) uint8} at the input resolution, for the pictures drawn after evaluation."""

  def keep(local, dets):
    if jax.process_index() != 0:
      return
    for row in np.flatnonzero(np.asarray(local["image_id"]) >= 0)[:max(0, config.train.max_pictures - len(images))]:
      rec = info["records"][int(local["image_id"][row])]
      images[rec["ID"]] = visualize.denormalise(local["image"][row], local["image_size"][row], config.data)
  return keep


def _draw_pictures(config, workdir, images, inp, metrics, curve_path, writer, prefix):
  """The evaluation's pictures (lla_jax/pictures.py): TP / FP / missed / ignore by the CrowdHuman protocol's
  own matching where the evaluator ran it (inp.crowdhuman), else the detections only; the contact sheet
  pictures/sheet_step{N}.png with the MR-FPPI curve. Sets metrics["pictures"]; the sheet goes to TensorBoard."""
  crowd = inp.crowdhuman
  drawn = pictures.evaluation_pictures(
      images, crowd.get("gt"), crowd["dt"] if crowd else odgt.detections_from_results(inp.results, inp.records),
      crowd.get("result"), os.path.join(workdir, "pictures"), inp.step,
      draw_score_thresh=config.test.get("draw_score_thresh", None),
      curve=None if crowd and metrics["protocol"] == "crowdhuman" else curve_path,
      title=pictures.sheet_title(f"{config.data.name} {inp.split}", metrics, len(images)), split=inp.split)
  metrics["pictures"] = {k: drawn[k] for k in ("sheet", "threshold", "threshold_note")}
  if writer is not None:
    writer.write_images(inp.step, {"pictures": drawn["sheet_image"]}, prefix=prefix)


def _run_evaluator(config, workdir, entry, kind, split, results, info, step, writer, headline, padding,
                   images=None):
  """One evaluator on one split's predictions: files, table, scalars, the MR-FPPI curve (also to
  TensorBoard) and, given `images` ({ID: uint8 image}), the pictures; returns its metrics dict.
  `padding`: {"padding", "compilations", "padded_shapes"} of the split's prediction pass."""
  records = info["records"]
  det_dir = os.path.join(workdir, "detections")
  os.makedirs(det_dir, exist_ok=True)
  metrics = {"protocol": kind, "MR": None, "AP": None, "Recall": None, "JI": None, "step": step, "split": split,
             "num_images": len(records), **padding}
  box, evaluator = datasets.box(config.data), evaluators.get(kind)
  inp = protocols.EvalInput(results=results, records=records, info=info, data_name=config.data.name,
                            gt_format=datasets.get(config.data.name).gt_format, split=split, step=step,
                            det_dir=det_dir, box=box)
  update, curves = evaluator.run(inp)
  metrics.update(update)
  if box != "full":
    metrics["box"] = box
  suffix = "" if headline else f"_{entry}"
  curve_path = os.path.join(workdir, f"mr_fppi{suffix}_step{step}.png")
  plots.plot_mr_fppi(curves, curve_path, title=f"{config.data.name} {split}, step {step}")
  prefix = "eval/" if headline else f"eval_{entry}/"
  if images:
    _draw_pictures(config, workdir, images, inp, metrics, curve_path, writer, prefix)
  if writer is not None:
    writer.write_images(step, {"mr_fppi": curve_path}, prefix=prefix)
  table = format_table(metrics)
  table_path = atomic.write_text(os.path.join(workdir, f"eval_table{suffix}_step{step}.txt"), table + "\n")
  metrics.update(table=table_path, curves=curve_path)
  writers.write_json_atomic(os.path.join(workdir, f"eval_metrics{suffix}.json"), _json_safe(metrics))
  if writer is not None:
    scalars = {k: metrics[k] for k in ("MR", "AP", "Recall", "JI") if metrics[k] is not None}
    for iou, res in metrics.get("setups", {}).items():
      scalars.update({f"MR_{name}@{iou}": v for name, v in res.items() if v is not None})
    writer.write(step, scalars, prefix=prefix)
  print(table, flush=True)
  return metrics


def evaluate(config, workdir, state=None, step=None, method=None, mesh=None, writer=None):
  """Evaluates `state` (or the checkpoint `step`, default latest, restored from the workdir) with the
  evaluators of `eval_specs(config)`. Writes the files of the module doc and returns the headline
  metrics dict (process 0; None elsewhere): MR, AP, Recall, JI (fractions or None), step, protocol,
  split, num_images, detections, table, curves, and for CityPersons MR_75, gt and setups
  {"0.5": {setup: MR}, "0.75": {...}}; with several entries also "evals": {entry: metrics of the others}."""
  specs = eval_specs(config)
  method = method or get_method(config)
  mesh = mesh or sharding.make_mesh()
  if state is None:
    state = restore_train_state(config, workdir, method, mesh, step)
  step = int(jax.device_get(state.step))
  variables = {"params": state.params, **state.model_state}
  images, out = {}, {}
  data_cfg = eval_data_config(config)
  for split in dict.fromkeys(s for _, _, s in specs):   # each split predicted once, in order of first use
    eval_iter, info = data_pipelines.create_dataset(
        data_cfg, split=split, batch_size=sharding.local_batch_size(config.test.batch_size, mesh),
        train=False, seed=config.seed, process_index=jax.process_index(), process_count=jax.process_count())
    keep = _image_keeper(config, info, images) if split == specs[0][2] else None
    shapes = {}
    results = predict_dataset(config, variables, method, mesh, eval_iter, on_batch=keep, shapes=shapes)
    padding = {"padding": data_cfg.eval_padding, "compilations": len(shapes),
               "padded_shapes": {f"{h}x{w}": n for (h, w), n in sorted(shapes.items())}}
    if jax.process_index() != 0:
      continue
    print(f"Predicted {split}: test.padding {data_cfg.eval_padding!r}, {sum(shapes.values())} batches in "
          f"{len(shapes)} padded shapes = {len(shapes)} predict compilations ({padding['padded_shapes']})", flush=True)
    for entry, kind, s in specs:
      if s == split:
        first = entry == specs[0][0]
        out[entry] = _run_evaluator(config, workdir, entry, kind, split, results, info, step, writer,
                                    headline=first, padding=padding, images=images if first else None)
  if jax.process_index() != 0:
    return None
  headline = out[specs[0][0]]
  if len(specs) > 1:
    headline["evals"] = {entry: m for entry, m in out.items() if entry != specs[0][0]}
  return headline
