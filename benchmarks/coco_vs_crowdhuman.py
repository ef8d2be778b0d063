"""CrowdHuman-protocol AP vs the COCO tool's AP50 on the same detections, with the differences taken apart.

  python benchmarks/coco_vs_crowdhuman.py GT.odgt DT.odgt     (needs pycocotools; not a project
  dependency). Prints the numbers of the README note "COCO AP vs the CrowdHuman protocol".
"""
import contextlib
import io
import json
import os
import sys
import tempfile

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from lla_jax.evaluation import convert, crowdhuman  # noqa: E402


def coco_ap50(gt_json, dt_json, max_dets=100, all_areas=False, stat=1):
  with contextlib.redirect_stdout(io.StringIO()):
    g = COCO(gt_json)
    e = COCOeval(g, g.loadRes(dt_json), "bbox")
    e.params.maxDets = [1, 10, max_dets]
    if all_areas:
      e.params.areaRng = [[0, 1e10]] * 4
    e.evaluate()
    e.accumulate()
    e.summarize()
  return e.stats[stat]


def coco_interpolated(recall, precision):
  """COCO's 101-point interpolated AP of a (recall, precision) list: precision envelope, sampled."""
  env = np.maximum.accumulate(precision[::-1])[::-1]
  idx = np.searchsorted(recall, np.linspace(0, 1, 101), side="left")
  return float(np.mean([env[i] if i < len(env) else 0.0 for i in idx]))


def clip_odgt(records, key, box_key, sizes):
  out = []
  for r in records:
    w, h = sizes[r["ID"]]
    r = json.loads(json.dumps(r))
    for b in r[key]:
      x, y, bw, bh = b[box_key]
      x1, y1 = min(max(x, 0), w - 1), min(max(y, 0), h - 1)
      x2, y2 = max(min(x + bw, w), 0), max(min(y + bh, h), 0)
      b[box_key] = [x1, y1, x2 - x1, y2 - y1]
    out.append(r)
  return out


def main(gt_path, dt_path):
  gt, dt = crowdhuman.load_odgt(gt_path), crowdhuman.load_odgt(dt_path)
  r = crowdhuman.evaluate(gt, dt, compute_ji=False)
  sizes = {d["ID"]: (d["width"], d["height"]) for d in dt}
  n_det = [len(d["dtboxes"]) for d in dt]
  n_pos = [sum(b["tag"] == "person" and not b.get("extra", {}).get("ignore", 0) for b in g["gtboxes"]) for g in gt]
  n_ign = [sum(b["tag"] != "person" or b.get("extra", {}).get("ignore", 0) for b in g["gtboxes"]) for g in gt]
  outside = sum(b["fbox"][0] < 0 or b["fbox"][1] < 0 or b["fbox"][0] + b["fbox"][2] > sizes[g["ID"]][0]
                or b["fbox"][1] + b["fbox"][3] > sizes[g["ID"]][1] for g in gt for b in g["gtboxes"])
  print(f"{len(gt)} images, {sum(n_pos)} positives (max {max(n_pos)} / image), {sum(n_ign)} ignore regions, "
        f"{outside} GT boxes leaving the image; detections {sum(n_det)} (max {max(n_det)}, mean "
        f"{np.mean(n_det):.1f} / image)")
  tmp = tempfile.mkdtemp()

  def files(gt_records, dt_records, tag):
    g, d = os.path.join(tmp, f"gt_{tag}.odgt"), os.path.join(tmp, f"dt_{tag}.odgt")
    for path, recs in ((g, gt_records), (d, dt_records)):
      with open(path, "w") as f:
        f.writelines(json.dumps(x) + "\n" for x in recs)
    gj, dj = g + ".json", d + ".json"
    convert.write(convert.read(g), "coco", gj)
    convert.write(convert.align(convert.read(d), convert.read(g)), "coco", dj, ref=convert.read(g))
    return gj, dj

  gj, dj = files(gt, dt, "raw")
  no_ign = [{**g, "gtboxes": [b for b in g["gtboxes"] if b["tag"] == "person" and not b.get("extra", {}).get("ignore")]}
            for g in gt]
  gj_noign, dj_noign = files(no_ign, dt, "noign")
  gj_clip, dj_clip = files(clip_odgt(gt, "gtboxes", "fbox", sizes), clip_odgt(dt, "dtboxes", "box", sizes), "clip")
  c = r["curve"]
  rows = [
      ("CrowdHuman protocol AP (trapezoid, all detections, GT+DT clipped, IoA>0.5 ignore)", r["AP"]),
      ("  same list, COCO 101-point interpolation", coco_interpolated(c["recall"], c["precision"])),
      ("COCO AP50, maxDets 100 (the tool's default)", coco_ap50(gj, dj, 100)),
      ("COCO AP50, maxDets 1000", coco_ap50(gj, dj, 1000)),
      ("COCO AP50, maxDets 100, GT and DT clipped to the image", coco_ap50(gj_clip, dj_clip, 100)),
      ("COCO AP50, maxDets 1000, GT and DT clipped to the image", coco_ap50(gj_clip, dj_clip, 1000)),
      ("COCO AP50, maxDets 1000, clipped, one area range [0, 1e10] everywhere",
       coco_ap50(gj_clip, dj_clip, 1000, all_areas=True)),
      ("COCO AP50, maxDets 100, ignore regions dropped (converter without iscrowd)",
       coco_ap50(gj_noign, dj_noign, 100)),
      ("COCO AP50, maxDets 1000, ignore regions dropped", coco_ap50(gj_noign, dj_noign, 1000)),
  ]
  rows.append(("COCO AP (IoU 0.50:0.95), maxDets 100 (mmdetection's 'bbox_mAP')", coco_ap50(gj, dj, 100, stat=0)))
  for cap in (10, 30, 50):
    cut = [{**d, "dtboxes": sorted(d["dtboxes"], key=lambda b: -b["score"])[:cap]} for d in dt]
    rows.append((f"CrowdHuman protocol AP, top {cap} detections per image",
                 crowdhuman.evaluate(gt, cut, compute_ji=False)["AP"]))
    rows.append((f"COCO AP50, maxDets {cap}", coco_ap50(gj, dj, cap)))
  for name, v in rows:
    print(f"  {100 * v:6.2f}  {name}")


if __name__ == "__main__":
  main(*sys.argv[1:])
