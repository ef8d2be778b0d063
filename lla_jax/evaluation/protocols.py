"""The evaluation protocols as the eval loop runs them on one split's predictions: write the detection
file(s) in the protocol's format, evaluate against the split's GT, return the metrics, the MR-FPPI
curves to draw and the protocol's lines of the metric table. Registered by name in registry.py.

  crowdhuman   CrowdHuman body mode (CrowdDet / cvpods toolkit, crowdhuman.py): MR^-2, AP50, Recall, JI
               against info["gt_odgt"]; detections/{split}_step{N}.odgt.
  citypersons  the official CityPersons toolbox (citypersons.py): MR^-2 of every setup at IoU 0.5 and 0.75
               against info["gt_json"] (GT format 'citypersons_json') or the CityPersons conversion of the
               odgt GT (full box = fbox, visible box = vbox; written to detections/{split}_gt.json so the
               detection file can be re-evaluated alone); detections/{split}_step{N}.json. "MR" is
               Reasonable at IoU 0.5. "AP" / "Recall" / "JI" come from the CrowdHuman evaluator on the same
               detections when the split has an odgt GT (all boxes, no height / visibility filter; the odgt
               detections are written too); null for CityPersons data.
  caltech      the Caltech dbEval (caltech.py, new-annotation semantics, bounds [5 5 635 475]): MR^-2 of all
               19 setups against info["gt_caltech"] (the bbGt folder, gt_format 'caltech_bbgt'); detections in
               the per-video layout detections/{split}_step{N}/setSS/VVVV.txt, which are then read back and
               evaluated as `python -m lla_jax.evaluation caltech` reads them (same numbers). "MR" is
               Reasonable, "MR_75" Overlap=75 (Reasonable at IoU 0.75); "setups" groups the setups by IoU.
"""
from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

from lla_jax import atomic
from lla_jax.evaluation import caltech as caltech_eval
from lla_jax.evaluation import caltech_files
from lla_jax.evaluation import citypersons as citypersons_eval
from lla_jax.evaluation import cityjson, odgt
from lla_jax.evaluation import crowdhuman as crowdhuman_eval

CITYPERSONS_IOUS = (0.5, 0.75)
# Setups drawn in the MR-FPPI figure (IoU 0.5); Reasonable at IoU 0.75 is drawn too.
CURVE_SETUPS = ("Reasonable", "Reasonable_small", "Reasonable_occ=heavy", "All")


@dataclasses.dataclass(frozen=True)
class EvalInput:
  """What a protocol evaluates. results: {image index: (boxes (N, 4) xyxy, scores (N,))} in original
  pixels; records / info: the pipeline's (data_pipelines.create_dataset); gt_format: the data set's
  ('odgt' | 'citypersons_json', data_pipelines/registry.py); det_dir: where detection files go; box: the
  box type evaluated (data.box: 'full', 'visible' or 'head'; odgt.gt_on_box, cityjson.gt_on_box)."""
  results: dict
  records: list
  info: dict
  data_name: str
  gt_format: str
  split: str
  step: int
  det_dir: str
  box: str = "full"
  # Filled by the CrowdHuman protocol for the pictures (lla_jax/pictures.py): {"gt": GT records on `box`,
  # "dt": detection records as written, "result": crowdhuman.evaluate's dict}; empty otherwise.
  crowdhuman: dict = dataclasses.field(default_factory=dict)


def finite_or_none(v):
  return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def percent(v):
  return "   n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:6.2f}"


def _crowdhuman_on(inp: EvalInput):
  """(path of the odgt detections written, CrowdHuman result dict) against info['gt_odgt']."""
  if not inp.info.get("gt_odgt"):
    raise ValueError(f"CrowdHuman evaluation of {inp.data_name}: the pipeline gives no GT odgt (info['gt_odgt'])")
  dt_lines = odgt.detections_from_results(inp.results, inp.records)
  path = odgt.write(os.path.join(inp.det_dir, f"{inp.split}_step{inp.step}.odgt"), dt_lines)
  gt = crowdhuman_gt(inp)
  result = crowdhuman_eval.evaluate(gt, dt_lines)
  inp.crowdhuman.update(gt=gt, dt=dt_lines, result=result)
  return path, result


def crowdhuman_gt(inp: EvalInput) -> list:
  """The split's GT odgt records on the evaluated box type (odgt.gt_on_box); for a box other than "full"
  also written to det_dir/{split}_gt_{box}.odgt so that the detection file can be re-evaluated alone."""
  gt = odgt.gt_on_box(odgt.load(inp.info["gt_odgt"]), inp.box)
  if inp.box != "full":
    odgt.write(os.path.join(inp.det_dir, f"{inp.split}_gt_{inp.box}.odgt"), gt)
  return gt


def crowdhuman(inp: EvalInput):
  """(metrics, curves) of the CrowdHuman protocol."""
  path, r = _crowdhuman_on(inp)
  metrics = {k: finite_or_none(r[k]) for k in ("AP", "Recall", "JI")}
  metrics.update(MR=finite_or_none(r["MR"]), detections=path)
  return metrics, {f"step {inp.step}": (r["curve"]["fppi"], r["curve"]["miss"], r["MR"])}


def crowdhuman_table(m) -> list:
  rows = [("MR^-2", m["MR"]), ("AP50", m["AP"]), ("Recall", m["Recall"]), ("JI", m["JI"])]
  return [f"  {name:<7} {percent(v)}" for name, v in rows]


def citypersons_gt(inp: EvalInput):
  """(GT dict, path of its json, GT image id per record) for the CityPersons protocol."""
  records = inp.records
  if inp.gt_format == "citypersons_json":
    if not inp.info.get("gt_json"):
      raise ValueError("CityPersons evaluation needs the pipeline's info['gt_json'] (the val_gt.json-like GT)")
    gt = citypersons_eval.load_gt(inp.info["gt_json"])
    ids = cityjson.citypersons_image_ids(gt, records, inp.info["gt_json"])
    if inp.box == "full":
      return gt, inp.info["gt_json"], ids
    gt = cityjson.gt_on_box(gt, inp.box)
    return gt, cityjson.write(os.path.join(inp.det_dir, f"{inp.split}_gt_{inp.box}.json"), gt), ids
  if not inp.info.get("gt_odgt"):
    raise ValueError(f"CityPersons evaluation of {inp.data_name}: the pipeline gives no GT odgt")
  gt = cityjson.citypersons_gt_from_odgt(odgt.load(inp.info["gt_odgt"]), ids=[rec["ID"] for rec in records])
  gt = cityjson.gt_on_box(gt, inp.box)
  suffix = "" if inp.box == "full" else f"_{inp.box}"
  path = cityjson.write(os.path.join(inp.det_dir, f"{inp.split}_gt{suffix}.json"), gt)
  return gt, path, [i + 1 for i in range(len(records))]


def citypersons(inp: EvalInput):
  """(metrics, curves) of the CityPersons protocol (and the CrowdHuman numbers when the GT is odgt)."""
  metrics, odgt_path = {}, None
  if inp.gt_format == "odgt" and inp.info.get("gt_odgt"):
    odgt_path, crowd = _crowdhuman_on(inp)
    metrics.update({k: finite_or_none(crowd[k]) for k in ("AP", "Recall", "JI")})
  gt, gt_path, image_ids = citypersons_gt(inp)
  dt = cityjson.detections_from_results(inp.results, inp.records, image_ids)
  per_iou = {iou: citypersons_eval.evaluate(gt, dt, iou=iou) for iou in CITYPERSONS_IOUS}
  json_path = cityjson.write(os.path.join(inp.det_dir, f"{inp.split}_step{inp.step}.json"), dt)
  setups = {f"{iou:g}": {name: finite_or_none(r["MR"]) for name, r in res.items()} for iou, res in per_iou.items()}
  metrics.update(MR=setups["0.5"]["Reasonable"], MR_75=setups["0.75"]["Reasonable"], setups=setups,
                 detections=json_path, gt=gt_path)
  if odgt_path is not None:
    metrics["detections_odgt"] = odgt_path
  curves = {f"{name} IoU 0.5": (per_iou[0.5][name]["fppi"], per_iou[0.5][name]["miss"], per_iou[0.5][name]["MR"])
            for name in CURVE_SETUPS}
  r75 = per_iou[0.75]["Reasonable"]
  curves["Reasonable IoU 0.75"] = (r75["fppi"], r75["miss"], r75["MR"])
  return metrics, curves


def citypersons_table(m) -> list:
  ious = list(m["setups"])
  lines = [f"  {'MR^-2 (%)':<22}" + "".join(f"{'IoU ' + iou:>10}" for iou in ious)]
  for name in citypersons_eval.SETUPS:
    lines.append(f"  {name:<22}" + "".join(f"    {percent(m['setups'][iou][name])}" for iou in ious))
  if "detections_odgt" in m:
    lines.append("  CrowdHuman protocol on the same detections (all boxes):")
    lines += [f"  {name:<7} {percent(m[k])}" for name, k in (("AP50", "AP"), ("Recall", "Recall"), ("JI", "JI"))]
  else:
    lines.append("  AP50 / Recall / JI: n/a (no CrowdHuman-format GT for this split)")
  return lines


# Caltech setups drawn in the MR-FPPI figure.
CALTECH_CURVES = ("Reasonable", "All", "Occ=heavy", "Overlap=75")


def write_caltech_detections(inp: EvalInput, frames) -> str:
  """The results as DET_DIR/{split}_step{N}/setSS/VVVV.txt (caltech_files.write_detections, per-video layout,
  [x y w h] boxes), replacing an older folder of that name as a whole. Returns the folder."""
  image, boxes, scores = [], [], []
  for index, (b, s) in sorted(inp.results.items()):
    b = np.asarray(b, np.float64).reshape(-1, 4)
    image.append(np.full(len(b), index, np.int64))
    boxes.append(np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1))
    scores.append(np.asarray(s, np.float64).reshape(-1))
  cat = lambda parts, shape: np.concatenate(parts) if parts else np.zeros(shape)
  return atomic.write_folder(os.path.join(inp.det_dir, f"{inp.split}_step{inp.step}"), lambda tmp: (
      caltech_files.write_detections(tmp, frames, cat(image, (0,)), cat(boxes, (0, 4)), cat(scores, (0,)), "video")))


def caltech(inp: EvalInput):
  """(metrics, curves) of the Caltech protocol (module doc)."""
  if not inp.info.get("gt_caltech"):
    raise ValueError(f"Caltech evaluation of {inp.data_name}: the pipeline gives no bbGt folder (info['gt_caltech']; "
                     "the data set's gt_format must be 'caltech_bbgt')")
  frames = [caltech_files.parse_frame_name(rec["ID"], f"{inp.data_name}/{inp.split} record {k}")
            for k, rec in enumerate(inp.records)]
  det = write_caltech_detections(inp, frames)
  res = caltech_eval.evaluate_dirs(inp.info["gt_caltech"], det, frames)
  setups = {}
  for name, r in res.items():
    setups.setdefault(f"{caltech_eval.SETUPS[name].overlap:g}", {})[name] = finite_or_none(r["MR"])
  metrics = {"MR": finite_or_none(res["Reasonable"]["MR"]), "MR_75": finite_or_none(res["Overlap=75"]["MR"]),
             "setups": setups, "num_positives": {name: r["num_positives"] for name, r in res.items()},
             "detections": det, "gt": inp.info["gt_caltech"], "frames": inp.info.get("gt_caltech_frames")}
  curves = {name: (res[name]["fppi"], res[name]["miss"], res[name]["MR"]) for name in CALTECH_CURVES}
  return metrics, curves


def caltech_table(m) -> list:
  lines = [f"  {'setup':<13} {'IoU':>5} {'MR^-2 (%)':>10} {'positives':>10}"]
  for name, setup in caltech_eval.SETUPS.items():
    iou = f"{setup.overlap:g}"
    if name in m["setups"].get(iou, {}):
      lines.append(f"  {name:<13} {iou:>5}     {percent(m['setups'][iou][name])} {m['num_positives'][name]:>10}")
  lines.append("  n/a: undefined (no positives, as dbEval's NaN; Scale=*, Occ=none and Ar=* ignore every GT on the "
               "new-annotation path)")
  return lines
