"""Label-assignment speed and memory: jit(vmap(assign)) of LLA, FCOS and ATSS vs a per-image loop of the
plain numpy re-statements in tests/reference/ (assigners.py for FCOS/ATSS, lla.py for LLA).

A batch of 16 images at the released 800 x 1408 input (points from lla_jax.priors.fpn_points), GT padded to
100 and to 500 rows, about half of them valid: crowded pedestrian-shaped boxes, some tiny, some leaving the
image, ~10 % ignore regions; random cls logits and ltrb. Prints per-batch time (median of --repeats runs after
compilation), compile time, XLA temp memory (compiled memory_analysis), the numpy loop's time and peak
traced memory (tracemalloc), the ratio, and how many points the two sides assign differently.

The numpy loops run on the first --reference-images images and are extrapolated linearly to the batch. The
LLA re-statement loops over every (GT, point) pair in Python (~0.5 s per GT here), so it is timed on the
first 4 and 8 valid GTs of image 0 and extrapolated linearly in the number of valid GTs (stated in the output).

  python benchmarks/assign_bench.py [--batch 16] [--max-boxes 100 500] [--reference-images 16] [--repeats 3]
"""
from __future__ import annotations

import argparse
import functools
import importlib
import os
import statistics
import sys
import time
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax  # noqa: E402

from lla_jax.priors import fpn_points  # noqa: E402
from tests.reference import assigners as numpy_reference  # noqa: E402

NAMES = ("lla", "fcos", "atss")


def make_batch(rng, points, batch, max_boxes, height, width):
  """GT arrays (B, M, ...) with about M/2 valid rows each, random cls logits (B, A, 1) and ltrb (B, A, 4)."""
  a = len(points.xy)
  cases = [numpy_reference.crowd_case(rng, height, width, int(rng.integers(0.4 * max_boxes, 0.6 * max_boxes) + 1),
                                      max_boxes, ignore_frac=0.1, tiny_frac=0.05, leave_frac=0.05,
                                      num_clusters=max(2, max_boxes // 25))
           for _ in range(batch)]
  gt_boxes, gt_classes, gt_valid = (np.stack(x) for x in zip(*cases))
  logits = rng.normal(-4.0, 1.5, (batch, a, 1)).astype(np.float32)
  ltrb = rng.uniform(0, 150, (batch, a, 4)).astype(np.float32) * points.strides[None, :, None] / 8
  return logits, ltrb, gt_boxes, gt_classes, gt_valid


def reference_fn(name):
  """The numpy re-statement of assigner `name`, or None when it is not there."""
  if name == "lla":
    try:
      return importlib.import_module("tests.reference.lla").assign_np
    except ImportError:
      return None
  return {"fcos": numpy_reference.fcos_np, "atss": numpy_reference.atss_np}[name]


def call_reference(ref, name, points, logits, ltrb, boxes, classes, valid):
  if name == "lla":
    return ref(points.xy, points.strides, logits, ltrb, boxes, classes, valid)
  return ref(points.xy, points.strides, boxes, classes, valid)


def bench_jax(assign, points, args, repeats):
  """(median seconds per batch, compile seconds, XLA temp bytes, outputs)."""
  fn = jax.jit(jax.vmap(functools.partial(assign, cfg=None), in_axes=(None, None, 0, 0, 0, 0, 0)))
  inputs = (points.xy, points.strides) + tuple(args)
  t0 = time.perf_counter()
  compiled = fn.lower(*inputs).compile()
  t_compile = time.perf_counter() - t0
  mem = compiled.memory_analysis()
  temp = getattr(mem, "temp_size_in_bytes", float("nan")) if mem is not None else float("nan")
  out = jax.block_until_ready(compiled(*inputs))  # warm-up
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(*inputs))
    times.append(time.perf_counter() - t0)
  return statistics.median(times), t_compile, temp, out


def bench_reference(ref, name, points, args, n_images):
  """(seconds per batch (extrapolated), peak traced bytes for one image, note, per-image outputs or None)."""
  logits, ltrb, boxes, classes, valid = args
  batch = boxes.shape[0]
  if name == "lla":  # too slow for whole images: time 4 and 8 valid GTs of image 0, extrapolate in GT count
    def run_k(k):
      v = valid[0] & (np.cumsum(valid[0]) <= k)
      t0 = time.perf_counter()
      call_reference(ref, name, points, logits[0], ltrb[0], boxes[0], classes[0], v)
      return time.perf_counter() - t0
    t4, t8 = run_k(4), run_k(8)
    per_gt, fixed = (t8 - t4) / 4, max(2 * t4 - t8, 0.0)
    n_valid = valid.sum(axis=1)
    total = float(np.sum(fixed + per_gt * n_valid))
    tracemalloc.start()
    v = valid[0] & (np.cumsum(valid[0]) <= 4)
    call_reference(ref, name, points, logits[0], ltrb[0], boxes[0], classes[0], v)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    note = (f"image 0 with 4 and 8 valid GTs ({t4:.1f} s, {t8:.1f} s) -> {per_gt:.2f} s/GT, extrapolated to "
            f"{int(n_valid.sum())} valid GTs in {batch} images; memory with 4 GTs")
    return total, peak, note, None
  n = min(n_images, batch)
  outs = []
  t0 = time.perf_counter()
  for i in range(n):
    outs.append(call_reference(ref, name, points, logits[i], ltrb[i], boxes[i], classes[i], valid[i]))
  t = (time.perf_counter() - t0) * batch / n
  tracemalloc.start()
  call_reference(ref, name, points, logits[0], ltrb[0], boxes[0], classes[0], valid[0])
  peak = tracemalloc.get_traced_memory()[1]
  tracemalloc.stop()
  note = f"{n} of {batch} images timed" + (f", x{batch / n:.1f} extrapolated" if n < batch else "")
  return t, peak, note, outs


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--height", type=int, default=800)
  parser.add_argument("--width", type=int, default=1408)
  parser.add_argument("--max-boxes", type=int, nargs="+", default=[100, 500])
  parser.add_argument("--methods", nargs="+", default=list(NAMES), choices=NAMES)
  parser.add_argument("--reference-images", type=int, default=16, help="images the FCOS/ATSS numpy loop runs on")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()

  points = fpn_points(args.height, args.width)
  print(f"assign_bench: batch {args.batch}, input {args.height} x {args.width}, {len(points.xy)} points, "
        f"jax {jax.__version__} on {jax.devices()[0].platform} ({os.cpu_count()} CPU cores visible)")
  rows = []
  for max_boxes in args.max_boxes:
    data = make_batch(np.random.default_rng(args.seed), points, args.batch, max_boxes, args.height, args.width)
    n_valid, n_ignore = int(data[4].sum()), int(((data[3] == -1) & data[4]).sum())
    print(f"\nM = {max_boxes}: {n_valid / args.batch:.1f} valid GT rows per image ({n_ignore} ignore in the batch)")
    for name in args.methods:
      try:
        assign = importlib.import_module(f"lla_jax.assigners.{name}").assign
      except (ImportError, AttributeError) as e:
        print(f"  {name}: skipped, lla_jax.assigners.{name}.assign is not available ({e})")
        continue
      t_jax, t_compile, temp, out = bench_jax(assign, points, data, args.repeats)
      ref = reference_fn(name)
      if ref is None:
        print(f"  {name}: jax {t_jax:.3f} s/batch; numpy reference not available, no ratio")
        rows.append((max_boxes, name, t_jax, t_compile, temp, None, None, None))
        continue
      t_np, peak, note, ref_outs = bench_reference(ref, name, points, data, args.reference_images)
      diff = "-"
      if ref_outs is not None:
        bad = sum(int(np.sum(np.asarray(out.matched_gt[i]) != r["matched_gt"])) for i, r in enumerate(ref_outs))
        diff = f"{bad} of {len(ref_outs) * len(points.xy)}"
      print(f"  {name}: jax {t_jax:.3f} s/batch (compile {t_compile:.1f} s, fg {float(out.num_fg.sum()):.0f}); "
            f"numpy {t_np:.2f} s/batch ({note}); points assigned differently: {diff}")
      rows.append((max_boxes, name, t_jax, t_compile, temp, t_np, peak, diff))

  print("\n| M | assigner | jax jit+vmap s/batch | compile s | XLA temp MiB | numpy loop s/batch | numpy peak MiB/img "
        "| speed-up | differing points |")
  print("|---|---|---|---|---|---|---|---|---|")
  for m, name, t_jax, t_compile, temp, t_np, peak, diff in rows:
    np_cols = (f"{t_np:.2f} | {peak / 2**20:.0f} | {t_np / t_jax:.1f}x | {diff}" if t_np is not None
               else "- | - | - | -")
    print(f"| {m} | {name} | {t_jax:.3f} | {t_compile:.1f} | {temp / 2**20:.0f} | {np_cols} |")


if __name__ == "__main__":
  main()
