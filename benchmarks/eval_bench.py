"""Evaluator speed: vectorised CrowdHuman / CityPersons / Caltech evaluators vs the plain per-image re-statements.

Synthesises CrowdHuman-val-scale data (4370 images, ~23 GT boxes incl. ignore regions, ~150 detections per image,
boxes past the border, tied scores, images without detections) and CityPersons-val-scale data (500 images), times
both implementations, prints seconds and the ratio, and checks that both give the same numbers. The slow
re-statement runs on a subset of images and its time is extrapolated linearly (stated in the output). Then the
Caltech test-set scale (4024 images, ~50 detections each, all 19 setups) in both detection layouts
(benchmarks/caltech_eval_bench.py synthesises the files; both sides read them).

  python benchmarks/eval_bench.py [--reference-images 300] [--seed 0] [--no-caltech] [--repeats 3]
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from lla_jax.evaluation import citypersons, crowdhuman  # noqa: E402
from benchmarks.caltech_eval_bench import bench_caltech  # noqa: E402
from tests.reference import evaluation as reference  # noqa: E402


def synth_crowdhuman(rng, n_images=4370, gt_per_image=23, dt_per_image=150):
  """(gt_records, dt_records) shaped like annotation_val.odgt and a detector's odgt output."""
  gt_records, dt_records = [], []
  for i in range(n_images):
    w, h = int(rng.integers(600, 1500)), int(rng.integers(400, 1100))
    n = max(1, int(rng.poisson(gt_per_image)))
    centres = rng.uniform([-0.05 * w, 0], [1.05 * w, h], size=(max(1, n // 6), 2))  # crowds
    boxes = []
    for _ in range(n):
      cx, cy = centres[rng.integers(len(centres))] + rng.normal(0, [0.05 * w, 0.05 * h])
      bh = float(rng.uniform(30, 0.8 * h))
      bw = bh * float(rng.uniform(0.3, 0.5))
      x, y = round(cx - bw / 2), round(cy - bh / 2)
      r = rng.random()
      tag, ignore = ("mask", 1) if r < 0.04 else ("person", 1 if r < 0.05 else 0)
      boxes.append({"tag": tag, "fbox": [x, y, round(bw), round(bh)], "hbox": [x, y, 10, 10],
                    "vbox": [x, y, round(bw), round(bh)], "extra": {"ignore": ignore}})
    ident = f"{273271 + i},{i:015x}"
    gt_records.append({"ID": ident, "gtboxes": boxes})
    if rng.random() < 0.01:  # no DT record at all
      continue
    dets = []
    m = int(rng.poisson(dt_per_image)) if rng.random() > 0.005 else 0
    for k in range(m):
      if k < 2 * n:
        b = boxes[k % n]["fbox"]
        jitter = rng.normal(0, 0.08, 4) * [b[2], b[3], b[2], b[3]]
        box = [b[0] + jitter[0], b[1] + jitter[1], b[2] * (1 + jitter[2] / b[2]), b[3] * (1 + jitter[3] / b[3])]
        score = float(rng.beta(5, 2)) if k < n else float(rng.beta(2, 5))
      else:
        bh = float(rng.uniform(20, 0.6 * h))
        box = [float(rng.uniform(-0.05 * w, w)), float(rng.uniform(0, h - 10)), bh * 0.4, bh]
        score = float(rng.beta(1, 8))
      dets.append({"box": [round(v, 1) for v in box], "score": max(round(score, 3), 0.05), "tag": 1})
    dt_records.append({"ID": ident, "width": w, "height": h, "dtboxes": dets})
  order = rng.permutation(len(dt_records))  # DT files need not follow the GT order
  return gt_records, [dt_records[k] for k in order]


def synth_citypersons(rng, n_images=500, gt_per_image=12, dt_per_image=150):
  """(gt, dt) shaped like val_gt.json and a detector's result list."""
  images = [{"id": i + 1, "im_name": f"city_{i:06d}_leftImg8bit.png", "height": 1024, "width": 2048}
            for i in range(n_images)]
  anns, dets = [], []
  for im in images:
    n = int(rng.poisson(gt_per_image)) if rng.random() > 0.1 else 0
    boxes = []
    for _ in range(n):
      h = float(np.exp(rng.uniform(np.log(15), np.log(400))))
      x, y = float(rng.uniform(-20, 2048)), float(rng.uniform(200, 900))
      box = [round(x), round(y), round(0.41 * h), round(h)]
      boxes.append(box)
      anns.append({"id": len(anns) + 1, "image_id": im["id"], "category_id": 1, "iscrowd": 0,
                   "ignore": int(rng.random() < 0.3), "bbox": box, "vis_bbox": box, "height": round(h),
                   "vis_ratio": float(rng.choice([1.0, rng.uniform(0, 1)]))})
    for k in range(int(rng.poisson(dt_per_image))):
      if k < 2 * n:
        b = boxes[k % n]
        box = [v + float(rng.normal(0, 0.06 * b[3])) for v in b]
        score = float(rng.beta(5, 2))
      else:
        h = float(np.exp(rng.uniform(np.log(10), np.log(300))))
        box = [float(rng.uniform(0, 2048)), float(rng.uniform(200, 900)), 0.41 * h, h]
        score = float(rng.beta(1, 6))
      dets.append({"image_id": im["id"], "category_id": 1, "bbox": [round(v, 2) for v in box],
                   "score": round(score, 3)})
  return {"images": images, "categories": [{"id": 1, "name": "pedestrian"}], "annotations": anns}, dets


def _timed(repeats, fn, *args, **kwargs):
  """-> (result, wall seconds, CPU seconds of this process), medians of `repeats` calls (the first call of a
  process pays one-off costs, ~15 % for the vectorised CrowdHuman evaluator): the machine may be shared, CPU
  time is steadier."""
  walls, cpus = [], []
  for _ in range(repeats):
    t, c = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    walls.append(time.perf_counter() - t)
    cpus.append(time.process_time() - c)
  return out, statistics.median(walls), statistics.median(cpus)


def _same(a, b):
  return (a is None and b is None) or (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-12 * max(1, abs(b))


def bench_crowdhuman(rng, n_ref, repeats):
  gt, dt = synth_crowdhuman(rng)
  boxes = sum(len(r["gtboxes"]) for r in gt)
  dets = sum(len(r["dtboxes"]) for r in dt)
  print(f"CrowdHuman synthetic: {len(gt)} images, {boxes / len(gt):.1f} GT and {dets / len(gt):.1f} detections "
        f"per image")
  subset_ids = {r["ID"] for r in gt[:n_ref]}
  gt_sub = gt[:n_ref]
  dt_sub = [r for r in dt if r["ID"] in subset_ids]
  scale = len(gt) / n_ref
  ok = True
  walls = {}
  for ji in (True, False):
    what = "AP/MR/Recall/JI" if ji else "AP/MR/Recall only"
    fast, t_fast, c_fast = _timed(repeats, crowdhuman.evaluate, gt, dt, compute_ji=ji)
    slow, t_slow, c_slow = _timed(repeats, reference.crowdhuman, gt_sub, dt_sub, compute_ji=ji)
    fast_sub = crowdhuman.evaluate(gt_sub, dt_sub, compute_ji=ji)
    print(f"  {what}: vectorised, all {len(gt)} images: {t_fast:.2f} s wall ({c_fast:.2f} s CPU)")
    print(f"  {what}: plain re-statement, first {n_ref} images: {t_slow:.2f} s wall ({c_slow:.2f} s CPU) -> "
          f"{t_slow * scale:.1f} s wall ({c_slow * scale:.1f} s CPU) extrapolated linearly to {len(gt)} images")
    print(f"  {what}: speed-up {t_slow * scale / t_fast:.1f}x wall, {c_slow * scale / c_fast:.1f}x CPU")
    walls[ji] = (t_fast, t_slow * scale, c_fast, c_slow * scale)
    keys = ("AP", "MR", "Recall", "JI") if ji else ("AP", "MR", "Recall")
    same = all(_same(fast_sub[k], slow[k]) for k in keys)
    ok &= same
    print(f"  {what}: subset check (vectorised vs re-statement): "
          + ", ".join(f"{k} {fast_sub[k]:.12f} / {slow[k]:.12f}" for k in keys)
          + f" -> {'same' if same else 'DIFFERENT'}")
    if ji:
      print(f"  {what}: all images: " + ", ".join(f"{k} {100 * fast[k]:.3f}%" for k in keys))
  (t_all, _, c_all, _), (_, t_plain, _, c_plain) = walls[True], walls[False]
  print(f"  all four metrics (vectorised) vs the plain AP/MR/Recall-only re-statement: {t_all:.2f} s vs "
        f"{t_plain:.1f} s wall -> {t_plain / t_all:.1f}x ({c_plain / c_all:.1f}x CPU)")
  return ok


def bench_citypersons(rng, n_ref, repeats):
  gt, dt = synth_citypersons(rng)
  print(f"CityPersons synthetic: {len(gt['images'])} images, {len(gt['annotations']) / len(gt['images']):.1f} GT "
        f"and {len(dt) / len(gt['images']):.1f} detections per image, all 9 setups, IoU 0.5 and 0.75")
  ok, t_fast, c_fast, t_slow, c_slow = True, 0.0, 0.0, 0.0, 0.0
  ids = {im["id"] for im in gt["images"][:n_ref]}
  gt_sub = dict(gt, images=gt["images"][:n_ref], annotations=[a for a in gt["annotations"] if a["image_id"] in ids])
  dt_sub = [d for d in dt if d["image_id"] in ids]
  for iou in (0.5, 0.75):
    fast, t, c = _timed(repeats, citypersons.evaluate, gt, dt, iou=iou)
    t_fast, c_fast = t_fast + t, c_fast + c
    slow, t, c = _timed(repeats, reference.citypersons, gt_sub, dt_sub, iou=iou)
    t_slow, c_slow = t_slow + t, c_slow + c
    fast_sub = citypersons.evaluate(gt_sub, dt_sub, iou=iou)
    ok &= all(_same(fast_sub[n]["MR"], slow[n]) for n in slow)
    print(f"  IoU {iou}: " + ", ".join(f"{n} {100 * v['MR']:.2f}%" for n, v in fast.items()))
  scale = len(gt["images"]) / n_ref
  print(f"  vectorised, all {len(gt['images'])} images: {t_fast:.2f} s wall ({c_fast:.2f} s CPU)")
  extrapolated = "" if n_ref == len(gt["images"]) else \
      f" -> {t_slow * scale:.1f} s wall ({c_slow * scale:.1f} s CPU) extrapolated linearly"
  print(f"  plain re-statement, first {n_ref} images: {t_slow:.2f} s wall ({c_slow:.2f} s CPU){extrapolated}")
  print(f"  speed-up {t_slow * scale / t_fast:.1f}x wall, {c_slow * scale / c_fast:.1f}x CPU")
  print(f"  check (vectorised vs re-statement, 9 setups x 2 IoUs on the first {n_ref} images): "
        f"{'same' if ok else 'DIFFERENT'}")
  return ok


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--reference-images", type=int, default=300,
                      help="CrowdHuman images given to the slow re-statement (time extrapolated)")
  parser.add_argument("--citypersons-reference-images", type=int, default=500)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--no-caltech", action="store_true", help="skip the Caltech test-set scale")
  parser.add_argument("--repeats", type=int, default=3,
                      help="calls per CrowdHuman / CityPersons timing (medians reported)")
  args = parser.parse_args(argv)
  repeats = max(1, args.repeats)
  rng = np.random.default_rng(args.seed)
  print(f"machine: {os.cpu_count()} CPU cores, numpy {np.__version__}; CrowdHuman and CityPersons times are "
        f"medians of {repeats} calls")
  ok = bench_crowdhuman(rng, args.reference_images, repeats)
  ok &= bench_citypersons(rng, args.citypersons_reference_images, repeats)
  if not args.no_caltech:
    for layout in ("video", "frame"):
      ok &= bench_caltech(rng, layout)
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())
