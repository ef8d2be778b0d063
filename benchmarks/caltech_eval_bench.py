"""Caltech evaluator speed at the test-set scale: vectorised lla_jax.evaluation.caltech vs the plain per-image
re-statement (tests/reference/caltech_reference.py), all 19 setups, same files, same run.

Synthesises Caltech-test-like files in a temporary folder: the shipped 4024-frame test list, bbGt annotations with
about 1.9 objects per image in 63 % of the images (person / person? / people / ignore / person-fa labels, partial
occlusion, boxes crossing the bounds, heights 20-300 px), about 50 detections per image (jittered GT and
background, 3-decimal scores with ties), in the per-video layout (or --layout frame). Both implementations read the
files themselves; the vectorised one is also timed without file reading. Checks that all 19 MRs agree bit for bit.

  python benchmarks/caltech_eval_bench.py [--seed 0] [--layout video|frame]
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from lla_jax.evaluation import caltech, caltech_files  # noqa: E402
from tests.reference import caltech_reference  # noqa: E402

LABELS = ("person",) * 12 + ("person?", "people", "ignore", "person-fa")


def synth_caltech(rng, folder, dt_per_image=50, layout="video"):
  """Writes FOLDER/anno (bbGt) and FOLDER/dt for the standard test list; returns (anno, dt, frames, n_gt, n_dt)."""
  frames = caltech_files.load_frames()
  anno = os.path.join(folder, "anno")
  os.makedirs(anno)
  image, boxes, scores, n_gt = [], [], [], 0
  for i, key in enumerate(frames):
    rows = []
    n = int(rng.poisson(3.0)) if rng.random() < 0.63 else 0
    for _ in range(n):
      h = int(np.exp(rng.uniform(np.log(20), np.log(300))))
      w = int(round(h * rng.uniform(0.3, 0.5)))
      x, y = int(rng.uniform(-30, 650)), int(rng.uniform(0, 480 - 0.5 * h))
      occ = int(rng.random() < 0.3)
      bbv = [x, y, w, int(h * rng.uniform(0.1, 1))] if occ else [0, 0, 0, 0]
      rows.append(f"{rng.choice(LABELS)} {x} {y} {w} {h} {occ} {' '.join(map(str, bbv))} {int(rng.random() < .05)} 0")
      for _ in range(int(rng.integers(1, 4))):
        j = rng.normal(0, 0.08, 4) * [w, h, w, h]
        boxes.append([x + j[0], y + j[1], 0.41 * h + j[2], h + j[3]])
        scores.append(rng.beta(5, 2))
        image.append(i)
    n_gt += n
    with open(os.path.join(anno, caltech_files.frame_name(*key) + ".txt"), "w") as f:
      f.write("% bbGt version=3\n" + "".join(r + "\n" for r in rows))
    m = max(0, int(rng.poisson(dt_per_image)) - 2 * n)
    h = np.exp(rng.uniform(np.log(15), np.log(300), m))
    boxes.extend(np.column_stack([rng.uniform(-20, 640, m), rng.uniform(0, 400, m), 0.41 * h, h]).tolist())
    scores.extend(rng.beta(1, 6, m).tolist())
    image.extend([i] * m)
  dt = os.path.join(folder, "dt")
  caltech_files.write_detections(dt, frames, image, np.round(boxes, 2), np.round(scores, 3), layout)
  return anno, dt, frames, n_gt, len(image)


def _timed(fn, *args, **kwargs):
  t, c = time.perf_counter(), time.process_time()
  out = fn(*args, **kwargs)
  return out, time.perf_counter() - t, time.process_time() - c


def bench_caltech(rng, layout="video") -> bool:
  with tempfile.TemporaryDirectory() as folder:
    anno, dt, frames, n_gt, n_dt = synth_caltech(rng, folder, layout=layout)
    print(f"Caltech synthetic: {len(frames)} images, {n_gt / len(frames):.2f} GT objects and {n_dt / len(frames):.1f} "
          f"detections per image ({layout} layout), all {len(caltech.SETUPS)} setups")
    fast, t_fast, c_fast = _timed(caltech.evaluate_dirs, anno, dt, frames)
    gt, t_gt, _ = _timed(caltech_files.load_gt_dir, anno, frames)
    det, t_dt, _ = _timed(caltech_files.load_detections, dt, frames)
    _, t_core, c_core = _timed(caltech.evaluate, gt, det)
    slow, t_slow, c_slow = _timed(caltech_reference.evaluate, anno, dt, frames)
  ok = all(fast[n]["MR"] == slow[n]["MR"] or (math.isnan(fast[n]["MR"]) and math.isnan(slow[n]["MR"]))
           for n in caltech.SETUPS)
  print("  " + ", ".join(f"{n} {100 * v['MR']:.2f}%" for n, v in fast.items() if not math.isnan(v["MR"])))
  print(f"  vectorised, files to 19 MRs: {t_fast:.2f} s wall ({c_fast:.2f} s CPU); of which reading the GT "
        f"{t_gt:.2f} s, the detections {t_dt:.2f} s, evaluating {t_core:.2f} s wall ({c_core:.2f} s CPU)")
  print(f"  plain re-statement, files to 19 MRs: {t_slow:.2f} s wall ({c_slow:.2f} s CPU)")
  print(f"  speed-up {t_slow / t_fast:.1f}x wall, {c_slow / c_fast:.1f}x CPU")
  print(f"  check (19 MRs, vectorised vs re-statement): {'same to the last bit' if ok else 'DIFFERENT'}")
  return ok


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--layout", choices=("video", "frame"), default="video")
  args = parser.parse_args(argv)
  print(f"machine: {os.cpu_count()} CPU cores, numpy {np.__version__}")
  return 0 if bench_caltech(np.random.default_rng(args.seed), args.layout) else 1


if __name__ == "__main__":
  sys.exit(main())
