"""Checkpoint-restore evaluation: jitted prediction over the eval split, detections in the data
set's native format, metrics (eval_metrics.json, metrics.jsonl, TensorBoard), an MR-FPPI curve
and pictures of detections, all under the workdir."""
from __future__ import annotations

import json
import os

import jax
import numpy as np
from jax.experimental import multihost_utils

from lla_jax import checkpointing, sharding, visualize, writers
from lla_jax.evaluation import crowdhuman, plots
from lla_jax.methods import get_method


def predict_dataset(config, variables, method, mesh, eval_iter, on_batch=None):
  """Runs jit(method.predict) over a finite iterator of Batches; returns {image_id: (boxes, scores)}
  in original pixels, valid detections only. `on_batch(batch, detections)` sees host copies."""
  predict = jax.jit(method.predict)
  results = {}
  for local in eval_iter:
    batch = sharding.shard_batch(local, mesh)
    dets, ids = multihost_utils.process_allgather((predict(variables, batch), batch["image_id"]), tiled=True)
    for row, image_id in enumerate(np.asarray(ids)):
      if image_id >= 0:
        v = np.asarray(dets.valid[row])
        results[int(image_id)] = (np.asarray(dets.boxes[row])[v], np.asarray(dets.scores[row])[v])
    if on_batch is not None:
      on_batch(local, dets)
  return results


def to_odgt(results, records):
  """CrowdHuman DT records {ID, width, height, dtboxes: [{box: [x, y, w, h], score, tag: 1}]}."""
  out = []
  for rec in records:
    boxes, scores = results.get(int(rec["index"]), (np.zeros((0, 4)), np.zeros((0,))))
    dt = [{"box": [round(float(b[0]), 2), round(float(b[1]), 2), round(float(b[2] - b[0]), 2),
                   round(float(b[3] - b[1]), 2)], "score": round(float(s), 5), "tag": 1}
          for b, s in zip(boxes, scores)]
    out.append({"ID": rec["ID"], "width": int(rec["width"]), "height": int(rec["height"]), "dtboxes": dt})
  return out


def evaluate(config, workdir, state=None, step=None, method=None, mesh=None, writer=None):
  """Evaluates `state` (or the checkpoint `step`, default latest, restored from the workdir) on the
  eval split. Writes eval_metrics.json and returns the metrics dict."""
  import data_pipelines

  method = method or get_method(config)
  mesh = mesh or sharding.make_mesh()
  if state is None:
    from lla_jax import train
    state, _, _ = train.create_train_state(config, method, mesh)
    checkpoints = checkpointing.Checkpoints(workdir, config.train.keep_checkpoints)
    if checkpoints.latest_step() is None:
      raise FileNotFoundError(f"--mode=eval: no checkpoint in {checkpoints.directory}; train first "
                              f"(python main.py --config=... --workdir={workdir})")
    state = checkpoints.restore(state, step)
    checkpoints.close()
  step = int(jax.device_get(state.step))
  variables = {"params": state.params, **state.model_state}
  eval_iter, info = data_pipelines.create_dataset(
      config.data, split=config.data.eval_split, batch_size=sharding.local_batch_size(config.test.batch_size),
      train=False, seed=config.seed, process_index=jax.process_index(), process_count=jax.process_count())

  picture_dir = os.path.join(workdir, "pictures")
  drawn = []

  def draw(local, dets):
    if jax.process_index() != 0 or len(drawn) >= config.train.max_pictures:
      return
    os.makedirs(picture_dir, exist_ok=True)
    for row in range(len(local["image_id"])):
      if local["image_id"][row] < 0 or len(drawn) >= config.train.max_pictures:
        continue
      image = visualize.denormalise(local["image"][row], local["image_size"][row], config.data)
      v = np.asarray(dets.valid[row])
      to_input = (local["image_size"][row] / local["orig_size"][row])[[1, 0, 1, 0]]
      boxes = np.asarray(dets.boxes[row])[v] * to_input
      scores = np.asarray(dets.scores[row])[v]
      keep = scores >= 0.3
      gt = local["gt_boxes"][row][local["gt_valid"][row] & (local["gt_classes"][row] >= 0)]
      rec = info["records"][int(local["image_id"][row])]
      path = os.path.join(picture_dir, f"{rec['ID']}_step{step}.png")
      visualize.draw_boxes(image, boxes[keep], scores[keep], gt_boxes=gt, path=path)
      drawn.append(path)

  results = predict_dataset(config, variables, method, mesh, eval_iter, on_batch=draw)
  if jax.process_index() != 0:
    return None
  dt_records = to_odgt(results, info["records"])
  det_dir = os.path.join(workdir, "detections")
  os.makedirs(det_dir, exist_ok=True)
  det_path = os.path.join(det_dir, f"{config.data.eval_split}_step{step}.odgt")
  tmp = det_path + ".tmp"
  with open(tmp, "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in dt_records)
  os.replace(tmp, det_path)
  gt_records = crowdhuman.load_odgt(info["gt_odgt"])
  res = crowdhuman.evaluate(gt_records, dt_records)
  metrics = {"MR": res["MR"], "AP": res["AP"], "Recall": res["Recall"], "JI": res["JI"], "step": step,
             "split": config.data.eval_split, "num_images": len(dt_records), "detections": det_path}
  writers.write_json_atomic(os.path.join(workdir, "eval_metrics.json"), metrics)
  curve = res["curve"]
  plots.plot_mr_fppi({f"step {step} (MR {res['MR']:.3f})": (curve["fppi"], curve["miss"])},
                     os.path.join(workdir, f"mr_fppi_step{step}.png"), title=f"{config.data.name} {config.data.eval_split}")
  if writer is not None:
    writer.write(step, {k: metrics[k] for k in ("MR", "AP", "Recall", "JI") if metrics[k] is not None}, prefix="eval/")
  print(format_table(metrics), flush=True)
  return metrics


def format_table(m):
  rows = [("MR^-2", m["MR"]), ("AP50", m["AP"]), ("Recall", m["Recall"]), ("JI", m["JI"])]
  lines = [f"Evaluation at step {m['step']} on {m['split']} ({m['num_images']} images)"]
  lines += [f"  {name:<7} {'n/a' if v is None else f'{100 * v:6.2f}'}" for name, v in rows]
  return "\n".join(lines)
