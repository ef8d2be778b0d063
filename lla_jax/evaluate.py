"""Checkpoint-restore evaluation: jitted prediction over the eval split, then the data set's protocol.

Protocols (`eval_protocol(config)`; `config.eval_protocol` overrides the data set's default):
  crowdhuman   default for data.name crowdhuman and synthetic_crowds. CrowdHuman body mode
               (evaluation.md §A): MR^-2, AP50, Recall, JI against info["gt_odgt"]; detections as
               odgt lines {ID, width, height, dtboxes: [{box: [x, y, w, h], score, tag: 1}]}.
  citypersons  default for data.name citypersons; the ALFNet configs set it for synthetic data too.
               Official CityPersons toolbox (evaluation.md §B): MR^-2 of every setup at IoU 0.5 and
               0.75 against info["gt_json"] (citypersons) or the CityPersons conversion of the
               CrowdHuman-format GT (synthetic: full box = fbox, visible box = vbox). Detections as a
               json list [{image_id, category_id: 1, bbox: [x, y, w, h], score}].
               "MR" is Reasonable at IoU 0.5. "AP" / "Recall" / "JI" come from the CrowdHuman
               evaluator run on the same detections when the split has a CrowdHuman-format GT
               (synthetic: all boxes, no height / visibility filter); null for CityPersons data.

Every evaluation writes, under the workdir: eval_metrics.json (fractions; null where undefined),
eval_table_step{N}.txt (the table it prints), mr_fppi_step{N}.png (CityPersons: the main setups at
IoU 0.5 and Reasonable at 0.75), detections/{split}_step{N}.{odgt,json} (the protocol's format; both
when the CityPersons protocol also runs the CrowdHuman evaluator),
pictures/ of the first images, and TensorBoard / metrics.jsonl scalars through `writer`.
"""
from __future__ import annotations

import json
import math
import os

import jax
import numpy as np
from jax.experimental import multihost_utils

from lla_jax import checkpointing, sharding, visualize, writers
from lla_jax.evaluation import citypersons, crowdhuman, plots
from lla_jax.methods import get_method

PROTOCOLS = ("crowdhuman", "citypersons")
CITYPERSONS_IOUS = (0.5, 0.75)
# Setups drawn in the MR-FPPI figure (IoU 0.5); Reasonable at IoU 0.75 is drawn too.
CURVE_SETUPS = ("Reasonable", "Reasonable_small", "Reasonable_occ=heavy", "All")
# The suffix of CityPersons image names (datasets.md §2): record IDs may carry the name without it.
CITYPERSONS_SUFFIX = "_leftImg8bit.png"


def eval_protocol(config) -> str:
  """'crowdhuman' or 'citypersons': config.eval_protocol if set, else the data set's own protocol."""
  protocol = config.get("eval_protocol", None)
  if protocol is None:
    return "citypersons" if config.data.name == "citypersons" else "crowdhuman"
  if protocol not in PROTOCOLS:
    raise ValueError(f"config.eval_protocol={protocol!r}: expected one of {PROTOCOLS} (or None for the data set's own)")
  return protocol


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


def _xywh(b):
  """xyxy -> [x, y, w, h] rounded to 0.01 px (what the detection files hold and the metrics read)."""
  return [round(float(b[0]), 2), round(float(b[1]), 2), round(float(b[2] - b[0]), 2), round(float(b[3] - b[1]), 2)]


def _detections_of(results, rec):
  return results.get(int(rec["index"]), (np.zeros((0, 4)), np.zeros((0,))))


def to_odgt(results, records):
  """CrowdHuman DT records {ID, width, height, dtboxes: [{box: [x, y, w, h], score, tag: 1}]}."""
  out = []
  for rec in records:
    boxes, scores = _detections_of(results, rec)
    dt = [{"box": _xywh(b), "score": round(float(s), 5), "tag": 1} for b, s in zip(boxes, scores)]
    out.append({"ID": rec["ID"], "width": int(rec["width"]), "height": int(rec["height"]), "dtboxes": dt})
  return out


def to_citypersons_dt(results, records, image_ids):
  """CityPersons DT list [{image_id, category_id: 1, bbox: [x, y, w, h], score}]; image_ids[i] is the GT
  image id of record i (records in image_id order)."""
  out = []
  for rec in records:
    boxes, scores = _detections_of(results, rec)
    image_id = image_ids[int(rec["index"])]
    out += [{"image_id": image_id, "category_id": 1, "bbox": _xywh(b), "score": round(float(s), 5)}
            for b, s in zip(boxes, scores)]
  return out


def citypersons_image_ids(gt: dict, records, source: str) -> list:
  """The GT image id of every record: its "eval_image_id" when the pipeline gives one, else the GT image
  whose im_name equals the record ID (with or without the CityPersons suffix or an extension)."""
  if all("eval_image_id" in rec for rec in records):
    known = {im["id"] for im in gt["images"]}
    ids = [rec["eval_image_id"] for rec in records]
    bad = [(rec["ID"], i) for rec, i in zip(records, ids) if i not in known]
    if bad:
      raise ValueError(f"{source}: records name eval_image_ids absent from the GT images, e.g. {bad[:3]}")
    return ids
  by_name = {}
  for im in gt["images"]:
    name = str(im.get("im_name", ""))
    keys = [name, os.path.splitext(name)[0]]
    if name.endswith(CITYPERSONS_SUFFIX):
      keys.append(name[:-len(CITYPERSONS_SUFFIX)])
    for key in keys:
      by_name.setdefault(key, im["id"])
  missing = [rec["ID"] for rec in records if rec["ID"] not in by_name]
  if missing:
    raise ValueError(f"{source}: {len(missing)} eval images have no GT image with that im_name, e.g. {missing[:3]}")
  return [by_name[rec["ID"]] for rec in records]


def _finite_or_none(v):
  return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _json_safe(obj):
  """NaN -> null in nested metric dicts (json would write the invalid token NaN)."""
  if isinstance(obj, dict):
    return {k: _json_safe(v) for k, v in obj.items()}
  if isinstance(obj, float):
    return _finite_or_none(obj)
  return obj


def _write_atomic(path, text):
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def _percent(v):
  return "   n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:6.2f}"


def crowdhuman_protocol(results, records, gt_odgt_path):
  """(dt odgt lines, CrowdHuman result dict) of the detections against the split's odgt GT."""
  dt_records = to_odgt(results, records)
  return dt_records, crowdhuman.evaluate(crowdhuman.load_odgt(gt_odgt_path), dt_records)


def citypersons_protocol(results, records, gt: dict, image_ids):
  """(dt list, {iou: citypersons.evaluate result over every setup}) of the detections against `gt`."""
  dt = to_citypersons_dt(results, records, image_ids)
  return dt, {iou: citypersons.evaluate(gt, dt, iou=iou) for iou in CITYPERSONS_IOUS}


def citypersons_gt(config, info, workdir):
  """(GT dict, path of its json, GT image id per record) for the CityPersons protocol. CityPersons: the
  pipeline's val_gt.json-like file; other data: the CityPersons conversion of the odgt GT, written to
  workdir/detections/{split}_gt.json so the detection file can be re-evaluated alone."""
  records = info["records"]
  if config.data.name == "citypersons":
    if "gt_json" not in info:
      raise ValueError("CityPersons evaluation needs the pipeline's info['gt_json'] (the val_gt.json-like GT)")
    gt = citypersons.load_gt(info["gt_json"])
    return gt, info["gt_json"], citypersons_image_ids(gt, records, info["gt_json"])
  from lla_jax.methods import alfnet
  if "gt_odgt" not in info:
    raise ValueError(f"config.eval_protocol='citypersons' on {config.data.name}: the pipeline gives no GT odgt")
  gt = alfnet.citypersons_gt_from_odgt(crowdhuman.load_odgt(info["gt_odgt"]), ids=[rec["ID"] for rec in records])
  path = os.path.join(workdir, "detections", f"{config.data.eval_split}_gt.json")
  writers.write_json_atomic(path, gt, indent=None)
  return gt, path, [i + 1 for i in range(len(records))]


def format_table(m) -> str:
  """The metric table of an eval_metrics dict (percentages)."""
  lines = [f"Evaluation at step {m['step']} on {m['split']} ({m['num_images']} images), {m['protocol']} protocol"]
  if m["protocol"] == "citypersons":
    ious = list(m["setups"])
    lines.append(f"  {'MR^-2 (%)':<22}" + "".join(f"{'IoU ' + iou:>10}" for iou in ious))
    for name in citypersons.SETUPS:
      lines.append(f"  {name:<22}" + "".join(f"    {_percent(m['setups'][iou][name])}" for iou in ious))
    if "detections_odgt" in m:
      lines.append("  CrowdHuman protocol on the same detections (all boxes):")
      lines += [f"  {name:<7} {_percent(m[k])}" for name, k in (("AP50", "AP"), ("Recall", "Recall"), ("JI", "JI"))]
    else:
      lines.append("  AP50 / Recall / JI: n/a (no CrowdHuman-format GT for this split)")
  else:
    rows = [("MR^-2", m["MR"]), ("AP50", m["AP"]), ("Recall", m["Recall"]), ("JI", m["JI"])]
    lines += [f"  {name:<7} {_percent(v)}" for name, v in rows]
  return "\n".join(lines)


def evaluate(config, workdir, state=None, step=None, method=None, mesh=None, writer=None):
  """Evaluates `state` (or the checkpoint `step`, default latest, restored from the workdir) on the
  eval split with the protocol of `eval_protocol(config)`. Writes the files of the module doc and
  returns the metrics dict (process 0; None elsewhere): MR, AP, Recall, JI (fractions or None), step,
  protocol, split, num_images, detections, table, curves, and for CityPersons MR_75 and
  setups {"0.5": {setup: MR}, "0.75": {...}}."""
  import data_pipelines

  protocol = eval_protocol(config)
  method = method or get_method(config)
  mesh = mesh or sharding.make_mesh()
  if state is None:
    from lla_jax import train
    state = train.abstract_train_state(config, method, mesh)   # restore target; nothing computed
    checkpoints = checkpointing.Checkpoints(workdir, config.train.keep_checkpoints)
    if checkpoints.latest_step() is None:
      raise FileNotFoundError(f"--mode=eval: no checkpoint in {checkpoints.directory}; train first "
                              f"(python main.py --config=... --workdir={workdir}) or convert released weights "
                              f"(--mode=convert --config.convert.source=FILE)")
    state = checkpoints.restore(state, step)
    checkpoints.close()
  step = int(jax.device_get(state.step))
  variables = {"params": state.params, **state.model_state}
  eval_iter, info = data_pipelines.create_dataset(
      config.data, split=config.data.eval_split, batch_size=sharding.local_batch_size(config.test.batch_size, mesh),
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
  records, split = info["records"], config.data.eval_split
  det_dir = os.path.join(workdir, "detections")
  os.makedirs(det_dir, exist_ok=True)
  metrics = {"protocol": protocol, "MR": None, "AP": None, "Recall": None, "JI": None, "step": step, "split": split,
             "num_images": len(records)}
  odgt_path = os.path.join(det_dir, f"{split}_step{step}.odgt")
  curve_path = os.path.join(workdir, f"mr_fppi_step{step}.png")
  title = f"{config.data.name} {split}, step {step}"

  crowd = None
  # CityPersons protocol on other data: AP / Recall / JI of the CrowdHuman evaluator, when it has its GT.
  if protocol == "crowdhuman" or (config.data.name != "citypersons" and "gt_odgt" in info):
    if "gt_odgt" not in info:
      raise ValueError(f"CrowdHuman evaluation of {config.data.name}: the pipeline gives no GT odgt (info['gt_odgt'])")
    dt_records, crowd = crowdhuman_protocol(results, records, info["gt_odgt"])
    _write_atomic(odgt_path, "".join(json.dumps(r) + "\n" for r in dt_records))
    metrics.update({k: _finite_or_none(crowd[k]) for k in ("AP", "Recall", "JI")})

  if protocol == "crowdhuman":
    metrics.update(MR=_finite_or_none(crowd["MR"]), detections=odgt_path)
    curves = {f"step {step}": (crowd["curve"]["fppi"], crowd["curve"]["miss"], crowd["MR"])}
  else:
    gt, gt_path, image_ids = citypersons_gt(config, info, workdir)
    dt, per_iou = citypersons_protocol(results, records, gt, image_ids)
    json_path = os.path.join(det_dir, f"{split}_step{step}.json")
    writers.write_json_atomic(json_path, dt, indent=None)
    setups = {f"{iou:g}": {name: _finite_or_none(r["MR"]) for name, r in res.items()} for iou, res in per_iou.items()}
    metrics.update(MR=setups["0.5"]["Reasonable"], MR_75=setups["0.75"]["Reasonable"], setups=setups,
                   detections=json_path, gt=gt_path)
    if crowd is not None:
      metrics["detections_odgt"] = odgt_path
    curves = {f"{name} IoU 0.5": (per_iou[0.5][name]["fppi"], per_iou[0.5][name]["miss"], per_iou[0.5][name]["MR"])
              for name in CURVE_SETUPS}
    r75 = per_iou[0.75]["Reasonable"]
    curves["Reasonable IoU 0.75"] = (r75["fppi"], r75["miss"], r75["MR"])

  plots.plot_mr_fppi(curves, curve_path, title=title)
  table = format_table(metrics)
  table_path = os.path.join(workdir, f"eval_table_step{step}.txt")
  _write_atomic(table_path, table + "\n")
  metrics.update(table=table_path, curves=curve_path)
  writers.write_json_atomic(os.path.join(workdir, "eval_metrics.json"), _json_safe(metrics))
  if writer is not None:
    scalars = {k: metrics[k] for k in ("MR", "AP", "Recall", "JI") if metrics[k] is not None}
    for iou, res in metrics.get("setups", {}).items():
      scalars.update({f"MR_{name}@{iou}": v for name, v in res.items() if v is not None})
    writer.write(step, scalars, prefix="eval/")
  print(table, flush=True)
  return metrics
