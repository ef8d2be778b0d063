"""Label-assignment speed and memory: jitted LLA, FCOS and ATSS against the strongest vectorised numpy
statements we could write (tests/reference/assign_numpy.py: float32 (M, A) planes, np.argpartition, bincount
claims), in the same run, per image, and the XLA temporaries of the batched (vmapped) assigners.

Per image: the released 800 x 1408 input (23 463 points from lla_jax.priors.fpn_points, closed over as in the
training step), 100 and 300 valid GTs (crowded pedestrian-shaped boxes, some tiny, some leaving the image,
~10 % ignore regions), random cls logits and ltrb. jax and numpy calls are interleaved --repeats times; the
table gives the minimum and the median of each and the ratio of the medians. Every numpy match is checked
against the jax match (points assigned differently; expected 0).
The process runs with lla_jax/host_memory.py's allocator settings, as training does (LLA_MALLOC=default: off).
Memory: jit(vmap(assign)) for a batch of --batch images with --memory-boxes padded GT rows, from
compiled.memory_analysis() (compiled, not run).

  python benchmarks/assign_bench.py [--boxes 100 300] [--repeats 7] [--batch 16] [--memory-boxes 500]
"""
from __future__ import annotations

import argparse
import functools
import importlib
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from lla_jax import host_memory  # noqa: E402

# As main.py: glibc keeps freed memory, for both sides (numpy's (M, A) planes and XLA's temporaries are
# above the mmap threshold; without it each call faults its pages in anew and the timings turn bimodal).
host_memory.keep_freed_memory()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from lla_jax.priors import fpn_points  # noqa: E402
from tests.reference.assigners import crowd_case  # noqa: E402
from tests.reference import assign_numpy  # noqa: E402

NAMES = ("lla", "fcos", "atss")


def image_case(rng, points, num_boxes, height, width):
  """One image: (cls_logits (A, 1), ltrb (A, 4), gt_boxes (M, 4), gt_classes (M,), gt_valid (M,)), M = num_boxes."""
  a = len(points.xy)
  boxes, classes, valid = crowd_case(rng, height, width, num_boxes, num_boxes, ignore_frac=0.1, tiny_frac=0.05,
                                     leave_frac=0.05, num_clusters=max(2, num_boxes // 25))
  logits = rng.normal(-4.0, 1.5, (a, 1)).astype(np.float32)
  ltrb = rng.uniform(0, 150, (a, 4)).astype(np.float32) * points.strides[:, None] / 8
  return logits, ltrb, boxes, classes, valid


def numpy_fn(name, points, case):
  logits, ltrb, boxes, classes, valid = case
  if name == "lla":
    return lambda: assign_numpy.lla_matched(points.xy, logits, ltrb, boxes, classes, valid)
  matched = {"fcos": assign_numpy.fcos_matched, "atss": assign_numpy.atss_matched}[name]
  return lambda: matched(points.xy, points.strides, boxes, classes, valid)


def jax_fn(name, points, case):
  assign = importlib.import_module(f"lla_jax.assigners.{name}").assign
  fn = jax.jit(lambda *gt: assign(points.xy, points.strides, *gt).matched_gt)   # points static, as in training
  args = tuple(jnp.asarray(x) for x in case)
  return lambda: jax.block_until_ready(fn(*args))


def interleaved(fns, repeats):
  """{name: [seconds]} of `repeats` rounds, each calling every fn once (after one warm-up call each)."""
  outs = {k: f() for k, f in fns.items()}
  times = {k: [] for k in fns}
  for _ in range(repeats):
    for k, f in fns.items():
      t0 = time.perf_counter()
      f()
      times[k].append(time.perf_counter() - t0)
  return times, outs


def temp_bytes(name, points, batch, max_boxes):
  """XLA temporary bytes of jit(vmap(assign)) for (batch, max_boxes) GT rows, points closed over."""
  assign = importlib.import_module(f"lla_jax.assigners.{name}").assign
  a = len(points.xy)
  fn = jax.jit(jax.vmap(functools.partial(assign, points.xy, points.strides)))
  shapes = ((batch, a, 1), jnp.float32), ((batch, a, 4), jnp.float32), ((batch, max_boxes, 4), jnp.float32), \
           ((batch, max_boxes), jnp.int32), ((batch, max_boxes), bool)
  compiled = fn.lower(*(jax.ShapeDtypeStruct(s, d) for s, d in shapes)).compile()
  mem = compiled.memory_analysis()
  return getattr(mem, "temp_size_in_bytes", float("nan")) if mem is not None else float("nan")


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--height", type=int, default=800)
  parser.add_argument("--width", type=int, default=1408)
  parser.add_argument("--boxes", type=int, nargs="+", default=[100, 300])
  parser.add_argument("--methods", nargs="+", default=list(NAMES), choices=NAMES)
  parser.add_argument("--repeats", type=int, default=7)
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--memory-boxes", type=int, default=500)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)

  points = fpn_points(args.height, args.width)
  print(f"assign_bench: input {args.height} x {args.width}, {len(points.xy)} points, jax {jax.__version__} on "
        f"{jax.devices()[0].platform} ({os.cpu_count()} CPU cores visible), numpy {np.__version__}")
  rows, ok = [], True
  for num_boxes in args.boxes:
    case = image_case(np.random.default_rng(args.seed), points, num_boxes, args.height, args.width)
    fns = {}
    for name in args.methods:
      fns[name] = jax_fn(name, points, case)
      fns[name + "/numpy"] = numpy_fn(name, points, case)
    times, outs = interleaved(fns, args.repeats)
    for name in args.methods:
      t_jax, t_np = times[name], times[name + "/numpy"]
      diff = int(np.sum(np.asarray(outs[name]) != outs[name + "/numpy"]))
      ok &= diff == 0
      rows.append((num_boxes, name, min(t_jax), statistics.median(t_jax), min(t_np), statistics.median(t_np), diff))
      print(f"  {num_boxes} GTs {name}: jax {1e3 * statistics.median(t_jax):.1f} ms, numpy "
            f"{1e3 * statistics.median(t_np):.1f} ms (medians), points assigned differently: {diff}")

  print(f"\n| GTs | assigner | jax ms (min / median) | numpy ms (min / median) | speed-up (medians) | differing points |")
  print("|---|---|---|---|---|---|")
  for m, name, j_min, j_med, n_min, n_med, diff in rows:
    print(f"| {m} | {name} | {1e3 * j_min:.1f} / {1e3 * j_med:.1f} | {1e3 * n_min:.1f} / {1e3 * n_med:.1f} | "
          f"{n_med / j_med:.1f}x | {diff} |")
  if args.memory_boxes:
    print(f"\nXLA temporaries of jit(vmap(assign)), batch {args.batch} x {args.memory_boxes} padded GTs:")
    for name in args.methods:
      b = temp_bytes(name, points, args.batch, args.memory_boxes)
      print(f"  {name}: {b / 2**20:.0f} MiB ({b / 1e9:.2f} GB)")
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())
