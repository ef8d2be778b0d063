"""Train-step throughput: images/s of the jitted, sharded LLA.FCOS train step (forward, LLA assignment,
losses, backward, SGD) for the quick start and the lla_r50 shapes, in float32 and bfloat16, on meshes of
1, 2, ... devices; and the share of the step spent in label assignment (the jitted, vmapped assigner
alone on the same predictions' shapes and the same mesh, over the whole step).

Batches are synthetic numpy Batch dicts (noise images, 4-32 pedestrian-shaped boxes per image, ~10 %
ignore regions, padded to the config's max_boxes); they are sharded once and reused, so the numbers are
the step alone, not the input pipeline. No TensorFlow, no data set.

  quickstart  configs/quickstart.py: ResNet-18/16 FPN, 256 x 320, global batch 8 (split over the devices)
  lla_r50     configs/lla_r50.py:    ResNet-50 FPN, 800 x 1408, 2 images per device, max_boxes 500
  faster_rcnn_r50  configs/faster_rcnn_r50.py: Faster R-CNN R-50 FPN P2..P6, 800 x 1408 (281 358 anchors),
              2 images per device; "assign" times the RPN anchor labelling (rpn_assign) alone

  python benchmarks/train_bench.py                 # --quick: a few minutes on a 2-core CPU
  python benchmarks/train_bench.py --full          # every preset x dtype x device count
  python benchmarks/train_bench.py --presets lla_r50 --dtypes float32 bfloat16 --devices 1 8 --steps 10
  python benchmarks/train_bench.py --presets faster_rcnn_r50 --hw 128 160 --devices 1 --steps 1   # CPU sanity

On CPU, --devices N uses N virtual devices of one host (XLA_FLAGS=--xla_force_host_platform_device_count,
set here before JAX starts): they share the same cores, so this checks that sharding works and costs
little, it does not measure scaling. On GPUs the meshes are the first N real devices.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

PRESETS = {
    # name: (config module, (H, W), global batch or None, images per device or None)
    "quickstart": ("quickstart", (256, 320), 8, None),
    "lla_r50": ("lla_r50", (800, 1408), None, 2),
    "faster_rcnn_r50": ("faster_rcnn_r50", (800, 1408), None, 2),
}
LARGE = ("lla_r50", "faster_rcnn_r50")   # minutes per step on a CPU: left out of --quick there


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--presets", nargs="+", choices=sorted(PRESETS), default=None)
  p.add_argument("--dtypes", nargs="+", choices=["float32", "bfloat16"], default=None)
  p.add_argument("--devices", nargs="+", type=int, default=None, help="mesh sizes (default: 1, 2, 8 on CPU)")
  p.add_argument("--steps", type=int, default=None, help="timed steps per case (after one warm-up step)")
  p.add_argument("--max-boxes", type=int, default=None, help="override the config's data.max_boxes")
  p.add_argument("--hw", type=int, nargs=2, default=None, metavar=("H", "W"),
                 help="override the preset's input size (a CPU sanity run of a large preset at a tiny size)")
  mode = p.add_mutually_exclusive_group()
  mode.add_argument("--quick", action="store_true", help="(default) on CPU: quickstart float32 on 1, 2, 8 "
                    "devices and bfloat16 on 1, 2 timed steps each; on GPU: every preset and dtype")
  mode.add_argument("--full", action="store_true", help="every preset x dtype x device count, 5 timed steps")
  args = p.parse_args(argv)
  return args


def plan(args, platform, device_count):
  """([(preset, dtype, devices)], timed steps, notes) from the flags. On CPU without --full and without
  explicit choices, --quick keeps a few minutes' worth: quickstart float32 on 1, 2 and 8 devices and
  bfloat16 on 1; lla_r50 is left out (one step of R-50 at 800 x 1408 takes minutes on two cores)."""
  explicit = bool(args.presets or args.dtypes or args.devices)
  quick_cpu = platform == "cpu" and not args.full and not explicit
  devices = args.devices or ([1, 2, 8] if platform == "cpu" else sorted({1, device_count}))
  dtypes = args.dtypes or ["float32", "bfloat16"]
  presets = args.presets or ["quickstart", "lla_r50", "faster_rcnn_r50"]
  steps = args.steps or (5 if args.full else 2)
  cases, notes = [], []
  for preset in presets:
    for dtype in dtypes:
      for n in devices:
        if quick_cpu and (preset in LARGE or (dtype == "bfloat16" and n != 1)):
          continue
        cases.append((preset, dtype, n))
  if quick_cpu:
    notes.append("--quick on CPU: quickstart float32 on 1/2/8 devices and bfloat16 on 1; lla_r50 and "
                 "faster_rcnn_r50 left out (minutes per step on CPU): run --presets lla_r50 --devices 1 --steps 1, "
                 "--presets faster_rcnn_r50 --hw 128 160 --devices 1 --steps 1, or --full")
  return cases, steps, notes


def synthetic_batch(rng, batch, height, width, max_boxes, pixel_std):
  """A Batch dict (lla_jax/types.py) of noise images and crowded pedestrian-shaped boxes."""
  import numpy as np
  boxes = np.zeros((batch, max_boxes, 4), np.float32)
  classes = np.zeros((batch, max_boxes), np.int32)
  valid = np.zeros((batch, max_boxes), bool)
  for i in range(batch):
    n = int(rng.integers(4, min(32, max_boxes) + 1))
    h = rng.uniform(0.1, 0.6, n) * height
    w = h * rng.uniform(0.35, 0.45, n)
    x = rng.uniform(0, width - w)
    y = rng.uniform(0, height - h)
    boxes[i, :n] = np.stack([x, y, x + w, y + h], -1)
    classes[i, :n] = np.where(rng.random(n) < 0.1, -1, 0)
    valid[i, :n] = True
  hw = np.tile(np.array([height, width], np.int32), (batch, 1))
  return {"image": (rng.normal(size=(batch, height, width, 3)) * np.mean(pixel_std)).astype(np.float32) / 50,
          "image_size": hw, "orig_size": hw, "scale": np.ones(batch, np.float32), "gt_boxes": boxes,
          "gt_classes": classes, "gt_valid": valid, "image_id": np.arange(batch, dtype=np.int32)}


def timed(fn, steps):
  """(first call s, median of `steps` further calls s); fn must block until its result is ready."""
  t = time.perf_counter()
  fn()
  first = time.perf_counter() - t
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return first, statistics.median(times)


def case_hw(preset, hw=None):
  return tuple(hw) if hw else PRESETS[preset][1]


def case_config(preset, dtype, max_boxes=None, hw=None):
  import importlib
  module = PRESETS[preset][0]
  hw = case_hw(preset, hw)
  config = importlib.import_module(f"configs.{module}").get_config()
  config.data.pad_size = hw
  config.model.dtype = dtype
  config.model.backbone.pretrained = None   # random weights: the step costs the same
  config.train.warmup_steps = 0
  if max_boxes:
    config.data.max_boxes = max_boxes
  return config


def assigner_alone(config, hw, batch_size, batch, data):
  """(number of priors, jitted assigner, its arguments) on the step's shapes: the FCOS-family assigner on
  random predictions, or Faster R-CNN's RPN anchor labelling (which needs no predictions)."""
  import jax
  import numpy as np

  from lla_jax import priors
  from lla_jax.assigners import assign_batch
  from lla_jax.assigners import rcnn as rcnn_assign
  from lla_jax.methods import faster_rcnn

  gt = (batch["gt_boxes"], batch["gt_classes"], batch["gt_valid"])
  if config.method == "faster_rcnn":
    opts = faster_rcnn.piece_options(config)
    anchors, _ = priors.rcnn_anchors(hw, opts)
    assign = jax.jit(lambda b, k, v: jax.vmap(lambda *g: rcnn_assign.rpn_assign(anchors, *g, opts))(b, k, v))
    return len(anchors), assign, gt
  pts = priors.fpn_points(*hw, tuple(config.model.head.strides))
  a = len(pts.xy)
  r = np.random.default_rng(1)
  logits = jax.device_put(r.normal(-4, 1.5, (batch_size, a, config.model.num_classes)).astype(np.float32), data)
  ltrb = jax.device_put((r.uniform(0, 150, (batch_size, a, 4)) * pts.strides[None, :, None] / 8).astype(np.float32),
                        data)
  assign = jax.jit(lambda c, l, b, k, v: assign_batch(config.assigner, pts.xy, pts.strides, c, l, b, k, v))
  return a, assign, (logits, ltrb, *gt)


def run_case(preset, dtype, n, steps, method, max_boxes=None, hw=None):
  """One row: the step and the assigner alone timed on a mesh of the first n devices."""
  import jax
  import numpy as np

  from lla_jax import sharding, train, train_state

  _, _, global_batch, per_device = PRESETS[preset]
  hw = case_hw(preset, hw)
  config = case_config(preset, dtype, max_boxes, hw)
  batch_size = global_batch if global_batch else per_device * n
  if batch_size % n:
    return None
  config.train.batch_size = batch_size
  mesh = sharding.make_mesh(jax.devices()[:n])
  state, tx, schedule = train_state.create_train_state(config, method, mesh)
  step = train.make_train_step(method, tx, schedule, mesh, jax.tree.map(lambda x: x.sharding, state))
  rng = train.train_rng(config, mesh)
  batch = sharding.shard_batch(
      synthetic_batch(np.random.default_rng(0), batch_size, *hw, config.data.max_boxes, config.data.pixel_std), mesh)
  holder = {"state": state}

  def one_step():
    holder["state"], holder["metrics"] = step(holder["state"], batch, rng)
    jax.block_until_ready(holder["metrics"]["loss"])

  compile_s, step_s = timed(one_step, steps)
  loss = float(holder["metrics"]["loss"])   # after 1 + steps updates on the same batch: a sanity value

  # The assigner alone, on the step's shapes (float32, as the network emits them).
  a, assign, args = assigner_alone(config, hw, batch_size, batch, sharding.data_sharding(mesh))
  _, assign_s = timed(lambda: jax.block_until_ready(assign(*args)), steps)
  return dict(preset=preset, dtype=dtype, devices=n, batch=batch_size, hw=hw, points=a,
              max_boxes=config.data.max_boxes, compile_s=compile_s, step_s=step_s, images_s=batch_size / step_s,
              assign_s=assign_s, share=assign_s / step_s, loss=loss)


def main(argv=None):
  args = parse_args(argv)
  if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    # CPU only takes effect before JAX starts; harmless on GPU hosts (it only sizes the CPU platform).
    wanted = max(args.devices or [8])
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={wanted}").strip()
  import jax

  platform = jax.default_backend()
  cases, steps, notes = plan(args, platform, jax.device_count())
  device = jax.devices()[0]
  print(f"train_bench: {jax.device_count()} {platform} device(s) ({getattr(device, 'device_kind', device)}), "
        f"{os.cpu_count()} CPU cores, jax {jax.__version__}; {steps} timed steps per case after 1 warm-up")
  if platform == "cpu":
    print("CPU: virtual devices share the same cores; a sanity check of sharding, not of scaling.")
  for note in notes:
    print(note)
  from lla_jax.methods import get_method
  methods = {}   # one per preset and dtype: the initialisation compiles once for every mesh
  rows = []
  for preset, dtype, n in cases:
    if n > jax.device_count():
      print(f"  {preset} {dtype} {n} devices: skipped, only {jax.device_count()} available")
      continue
    t = time.perf_counter()
    if (preset, dtype) not in methods:
      methods[preset, dtype] = get_method(case_config(preset, dtype, args.max_boxes, args.hw))
    row = run_case(preset, dtype, n, steps, methods[preset, dtype], args.max_boxes, args.hw)
    if row is None:
      print(f"  {preset} {dtype} {n} devices: skipped, batch not divisible")
      continue
    rows.append(row)
    print(f"  {preset:<15} {dtype:<8} {n} dev  batch {row['batch']:>3}  {row['step_s']:.3f} s/step  "
          f"{row['images_s']:.2f} img/s  assign {row['assign_s']:.3f} s ({100 * row['share']:.0f} %)  "
          f"first step {row['compile_s']:.1f} s  loss@{steps + 1} {row['loss']:.3f}  [{time.perf_counter() - t:.0f} s]", flush=True)
  print("\n| preset | input | max_boxes | dtype | devices | global batch | s/step | images/s | assign s | "
        "assign share | first step (compile) s |")
  print("|---|---|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['preset']} | {r['hw'][0]}x{r['hw'][1]} | {r['max_boxes']} | {r['dtype']} | {r['devices']} | "
          f"{r['batch']} | {r['step_s']:.3f} | {r['images_s']:.2f} | {r['assign_s']:.3f} | "
          f"{100 * r['share']:.0f} % | {r['compile_s']:.1f} |")
  return rows


if __name__ == "__main__":
  main()
