"""NMS speed: lla_jax.postprocess.nms (sort once, blocks of candidates resolved in parallel) against the
fori_loop NMS it replaced (one argmax step per output slot; tests/reference/nms_loop.py) and a vectorised
numpy greedy NMS, in the same run, with identical outputs checked.

Crowded random images: pedestrian-shaped boxes around a few crowd centres, scores rounded to 3 decimals
(exact ties), ~5 % invalid; 1k, 5k and 20k candidates, 300 and 2000 slots, IoU threshold 0.6 (torchvision
semantics). Each function is jitted, warmed up, and called --repeats times interleaved; medians reported.

  python benchmarks/nms_bench.py [--sizes 1000 5000 20000] [--max-out 300 2000] [--repeats 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from lla_jax import postprocess  # noqa: E402
from tests.reference import nms_loop  # noqa: E402


def crowd(rng, n, width=1400.0, height=800.0):
  """(boxes (n, 4) float32, scores (n,) float32 with ties, valid (n,) bool)."""
  centres = rng.uniform([0, 0], [width, height], size=(max(2, n // 200), 2))
  c = centres[rng.integers(len(centres), size=n)] + rng.normal(0, 30, (n, 2))
  h = np.exp(rng.uniform(np.log(20), np.log(400), n))
  w = h * rng.uniform(0.3, 0.5, n)
  boxes = np.stack([c[:, 0] - w / 2, c[:, 1] - h / 2, c[:, 0] + w / 2, c[:, 1] + h / 2], 1).astype(np.float32)
  scores = np.round(rng.beta(1, 4, n), 3).astype(np.float32)
  return boxes, scores, rng.random(n) > 0.05


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000])
  parser.add_argument("--max-out", type=int, nargs="+", default=[300, 2000])
  parser.add_argument("--iou", type=float, default=0.6)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  print(f"nms_bench: jax {jax.__version__} on {jax.devices()[0].platform} ({os.cpu_count()} CPU cores visible)")
  rows, ok = [], True
  for n in args.sizes:
    boxes, scores, valid = crowd(np.random.default_rng(args.seed), n)
    dev = tuple(jnp.asarray(x) for x in (boxes, scores, valid))
    for max_out in args.max_out:
      new = jax.jit(lambda b, s, v, m=max_out: postprocess.nms(b, s, v, args.iou, m))
      old = jax.jit(lambda b, s, v, m=max_out: nms_loop.nms_loop(b, s, v, args.iou, m))
      fns = {"new": lambda: jax.block_until_ready(new(*dev)), "old": lambda: jax.block_until_ready(old(*dev)),
             "numpy": lambda m=max_out: nms_loop.greedy_nms_numpy(boxes, scores, valid, args.iou, m)}
      outs = {k: f() for k, f in fns.items()}
      times = {k: [] for k in fns}
      for _ in range(args.repeats):
        for k, f in fns.items():
          t0 = time.perf_counter()
          f()
          times[k].append(time.perf_counter() - t0)
      med = {k: statistics.median(v) for k, v in times.items()}
      kept = [list(np.asarray(i)[np.asarray(k)]) for i, k in (outs["new"], outs["old"])]
      same = (all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(outs["new"], outs["old"]))
              and kept[0] == outs["numpy"])
      ok &= same
      rows.append((n, max_out, len(kept[0]), med, same))
      print(f"  {n} candidates -> {max_out} slots: kept {len(kept[0])}; new {1e3 * med['new']:.1f} ms, old loop "
            f"{1e3 * med['old']:.1f} ms, numpy {1e3 * med['numpy']:.1f} ms; outputs "
            f"{'identical' if same else 'DIFFERENT'}")
  print("\n| candidates | slots | kept | new ms | old loop ms | numpy greedy ms | old / new | numpy / new | identical |")
  print("|---|---|---|---|---|---|---|---|---|")
  for n, max_out, kept, med, same in rows:
    print(f"| {n} | {max_out} | {kept} | {1e3 * med['new']:.1f} | {1e3 * med['old']:.1f} | {1e3 * med['numpy']:.1f} | "
          f"{med['old'] / med['new']:.1f}x | {med['numpy'] / med['new']:.1f}x | {'yes' if same else 'NO'} |")
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())
