"""One-call accelerator suite: train step, label assignment, NMS, predict and evaluator timings, written as one
JSON file and one markdown table. Sized to finish in under 8 minutes on one H100 / H200.

Sections (each runs on its own; a failing section is recorded with its error and the others still run):
  train     images/s of the jitted LLA.FCOS train step at the lla_r50 shapes (ResNet-50 FPN, 800 x 1408,
            2 images per device, max_boxes 500) in float32 and bfloat16, and the LLA assignment's share of the
            step (benchmarks/train_bench.py's run_case: synthetic numpy batches, no TensorFlow)
  assign    jit(vmap(lla.assign)) for a batch of 16 at 800 x 1408 with 100 and 500 padded GTs: time and XLA
            temporaries (compiled memory_analysis)
  nms       postprocess.nms against the fori_loop NMS it replaced (tests/reference/nms_loop.py), 5k -> 300 and
            20k -> 2000 candidates, outputs checked identical
  predict   images/s of the jitted predict function (forward + decode + NMS) at the lla_r50 shapes
  evaluate  CrowdHuman evaluator (AP, MR, Recall, JI) on a synthetic 4370-image val-scale set (host CPU)

--table adds the paper's table in miniature (lla_jax.compare --preset=paper: every method of compare.METHODS,
3000 steps x 3 seeds, scored on 500 synthetic val images; numpy data source, no TensorFlow) after the sections,
written into DIR/table/ and summarised as one row per method (mean and sample spread over the seeds). It is
long: minutes per method and seed (see the README's estimate), so it is not part of the default run.

--smoke shrinks every shape (tiny ResNet-18 quick-start model at 128 x 128, a few GTs, 50 images): seconds to a
minute on a CPU; tests/test_gpu_suite.py runs it. No TensorFlow anywhere. The train and predict sections build
their config with configs/ (ml_collections, imported there, not here): without ml_collections installed those
two sections are recorded as skipped and the rest still run.

  python benchmarks/gpu_suite.py [--out DIR] [--smoke] [--sections train assign nms predict evaluate] [--table]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import traceback

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from benchmarks import train_bench  # noqa: E402  (its lla_jax imports are inside its functions)
from benchmarks.eval_bench import synth_crowdhuman  # noqa: E402
from benchmarks.nms_bench import crowd  # noqa: E402
from lla_jax import postprocess  # noqa: E402
from lla_jax.assigners import lla  # noqa: E402
from lla_jax.evaluation import crowdhuman  # noqa: E402
from lla_jax.priors import fpn_points  # noqa: E402
from tests.reference.assigners import crowd_case  # noqa: E402
from tests.reference import nms_loop  # noqa: E402

SECTIONS = ("train", "assign", "nms", "predict", "evaluate")
FULL = dict(train_presets=("lla_r50",), dtypes=("float32", "bfloat16"), steps=5, assign_hw=(800, 1408),
            assign_batch=16, assign_boxes=(100, 500), nms_cases=((5000, 300), (20000, 2000)), repeats=5,
            eval_images=4370, table_args=())
# The smoke table: two methods x two seeds, two steps each, on 16 train / 8 val images.
SMOKE_TABLE = ("--methods", "LLA,FCOS", "--seeds", "0,1", "--steps", "2", "--set", "data.num_train_images=16",
               "--set", "data.num_val_images=8")
SMOKE = dict(train_presets=("smoke",), dtypes=("float32",), steps=1, assign_hw=(128, 128), assign_batch=2,
             assign_boxes=(4, 8), nms_cases=((300, 20),), repeats=1, eval_images=50,
             table_args=SMOKE_TABLE)


def _median_time(fn, repeats):
  """Median seconds of `repeats` calls of fn (which blocks) after one warm-up call."""
  fn()
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def section_train(p, smoke):
  # Lazy: lla_jax.methods -> models.detector and configs/ need ml_collections; only train and predict do.
  from lla_jax.methods import get_method  # noqa: PLC0415

  if smoke:
    train_bench.PRESETS.setdefault("smoke", ("quickstart", (128, 128), 2, None))
  rows = []
  for preset in p["train_presets"]:
    for dtype in p["dtypes"]:
      method = get_method(train_bench.case_config(preset, dtype))
      row = train_bench.run_case(preset, dtype, 1, p["steps"], method)
      rows.append({k: (list(v) if isinstance(v, tuple) else v) for k, v in row.items()})
  return rows


def section_assign(p, smoke):

  h, w = p["assign_hw"]
  pts = fpn_points(h, w)
  a, b = len(pts.xy), p["assign_batch"]
  rng = np.random.default_rng(0)
  rows = []
  for m in p["assign_boxes"]:
    cases = [crowd_case(rng, h, w, max(1, m // 2), m, ignore_frac=0.1, num_clusters=max(2, m // 25)) for _ in range(b)]
    gt = tuple(jnp.asarray(np.stack(x)) for x in zip(*cases))
    logits = jnp.asarray(rng.normal(-4, 1.5, (b, a, 1)).astype(np.float32))
    ltrb = jnp.asarray((rng.uniform(0, 150, (b, a, 4)) * pts.strides[None, :, None] / 8).astype(np.float32))
    fn = jax.jit(jax.vmap(lambda c, l, bx, k, v: lla.assign(pts.xy, pts.strides, c, l, bx, k, v)))
    compiled = fn.lower(logits, ltrb, *gt).compile()
    mem = compiled.memory_analysis()
    temp = getattr(mem, "temp_size_in_bytes", None) if mem is not None else None
    s = _median_time(lambda: jax.block_until_ready(compiled(logits, ltrb, *gt)), p["repeats"])
    rows.append(dict(batch=b, hw=[h, w], points=a, max_boxes=m, seconds=s, images_s=b / s, xla_temp_bytes=temp))
  return rows


def section_nms(p, smoke):

  rows = []
  for n, max_out in p["nms_cases"]:
    dev = tuple(jnp.asarray(x) for x in crowd(np.random.default_rng(0), n))
    new = jax.jit(lambda bx, s, v, m=max_out: postprocess.nms(bx, s, v, 0.6, m))
    old = jax.jit(lambda bx, s, v, m=max_out: nms_loop.nms_loop(bx, s, v, 0.6, m))
    same = all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(new(*dev), old(*dev)))
    t_new = _median_time(lambda: jax.block_until_ready(new(*dev)), p["repeats"])
    t_old = _median_time(lambda: jax.block_until_ready(old(*dev)), p["repeats"])
    rows.append(dict(candidates=n, max_out=max_out, new_s=t_new, old_loop_s=t_old, speedup=t_old / t_new,
                     identical=bool(same)))
  return rows


def section_predict(p, smoke):
  # Lazy: lla_jax.methods -> models.detector and configs/ need ml_collections; only train and predict do.
  from lla_jax.methods import get_method  # noqa: PLC0415

  rows = []
  for preset in p["train_presets"]:
    for dtype in p["dtypes"]:
      config = train_bench.case_config(preset, dtype)
      _, hw, global_batch, per_device = train_bench.PRESETS[preset]
      batch_size = global_batch or per_device
      method = get_method(config)
      variables = jax.jit(lambda r: method.init(r, hw))(jax.random.PRNGKey(0))
      batch = train_bench.synthetic_batch(np.random.default_rng(0), batch_size, *hw, config.data.max_boxes,
                                          config.data.pixel_std)
      batch = {k: jnp.asarray(batch[k]) for k in ("image", "image_size", "orig_size")}
      fn = jax.jit(method.predict)
      s = _median_time(lambda: jax.block_until_ready(fn(variables, batch)), p["steps"])
      rows.append(dict(preset=preset, dtype=dtype, batch=batch_size, hw=list(hw), seconds=s, images_s=batch_size / s))
  return rows


def section_evaluate(p, smoke):

  gt, dt = synth_crowdhuman(np.random.default_rng(0), n_images=p["eval_images"])
  t = time.perf_counter()
  res = crowdhuman.evaluate(gt, dt, compute_ji=True)
  return [dict(images=len(gt), seconds=time.perf_counter() - t, AP=res["AP"], MR=res["MR"], Recall=res["Recall"],
               JI=res["JI"])]


def section_table(p, out):
  """lla_jax.compare --preset=paper on the numpy source into out/table; one row per method."""
  from lla_jax import compare  # noqa: PLC0415  (configs and ml_collections, as the train section)

  workdir = os.path.join(out, "table")
  compare.main(["--workdir", workdir, "--preset", "paper", "--set", "data.source=numpy",
                "--set", f"data.data_dir={os.path.join(workdir, 'data')}", *p["table_args"]])
  with open(os.path.join(workdir, "comparison.json")) as f:
    result = json.load(f)
  return [dict(method=name, steps=result["steps"], seeds=result["seeds"], num_val_images=result["num_val_images"],
               mean=s["mean"], std=s["std"]) for name, s in result["results"].items()]


def _pm(row, key):
  mean, std = row["mean"][key], row["std"][key]
  return "-" if mean is None else f"{100 * mean:.2f} ± {100 * (std or 0):.2f}"


def markdown(report):
  """The report as one markdown table (section, case, figure)."""
  lines = [f"GPU suite on {report['device']} ({report['platform']}), jax {report['jax']}, {report['date']}"
           f"{' (smoke)' if report['smoke'] else ''}", "", "| section | case | result |", "|---|---|---|"]
  for name, sec in report["sections"].items():
    if "error" in sec:
      lines.append(f"| {name} | - | {sec['error'].splitlines()[-1][:120]} |")
      continue
    for r in sec["rows"]:
      if name == "train":
        case = f"{r['preset']} {r['hw'][0]}x{r['hw'][1]} {r['dtype']} batch {r['batch']}"
        res = f"{r['images_s']:.2f} img/s, {r['step_s']:.3f} s/step, assignment {100 * r['share']:.0f} % of the step"
      elif name == "assign":
        case = f"LLA batch {r['batch']} x {r['max_boxes']} GTs, {r['points']} points"
        temp = f", XLA temp {r['xla_temp_bytes'] / 2**20:.0f} MiB" if r["xla_temp_bytes"] is not None else ""
        res = f"{1e3 * r['seconds']:.1f} ms{temp}"
      elif name == "nms":
        case = f"{r['candidates']} -> {r['max_out']}"
        res = (f"new {1e3 * r['new_s']:.2f} ms, old loop {1e3 * r['old_loop_s']:.2f} ms, {r['speedup']:.1f}x, "
               f"{'identical' if r['identical'] else 'DIFFERENT'}")
      elif name == "table":
        case = f"{r['method']}, {r['steps']} steps x seeds {r['seeds']}, {r['num_val_images']} val images"
        res = f"MR^-2 {_pm(r, 'MR')}, AP50 {_pm(r, 'AP')}, Recall {_pm(r, 'Recall')}"
      elif name == "predict":
        case = f"{r['preset']} {r['hw'][0]}x{r['hw'][1]} {r['dtype']} batch {r['batch']}"
        res = f"{r['images_s']:.2f} img/s"
      else:
        case = f"CrowdHuman synthetic, {r['images']} images, AP/MR/Recall/JI"
        res = f"{r['seconds']:.2f} s"
      lines.append(f"| {name} | {case} | {res} |")
  return "\n".join(lines) + "\n"


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="gpu_suite_out", help="folder for gpu_suite.json and gpu_suite.md")
  parser.add_argument("--smoke", action="store_true", help="tiny shapes: a CPU check that every section runs")
  parser.add_argument("--sections", nargs="*", choices=SECTIONS, default=list(SECTIONS))
  parser.add_argument("--table", action="store_true", help="also lla_jax.compare --preset=paper (long; see above)")
  args = parser.parse_args(argv)
  p = SMOKE if args.smoke else FULL
  device = jax.devices()[0]
  report = dict(device=str(getattr(device, "device_kind", device)), platform=jax.default_backend(),
                device_count=jax.device_count(), jax=jax.__version__, host=platform.node(), smoke=args.smoke,
                date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), sections={})
  runners = dict(train=section_train, assign=section_assign, nms=section_nms, predict=section_predict,
                 evaluate=section_evaluate, table=lambda p, smoke: section_table(p, args.out))
  start = time.perf_counter()
  for name in args.sections + (["table"] if args.table else []):
    t = time.perf_counter()
    try:
      report["sections"][name] = dict(rows=runners[name](p, args.smoke))
    except Exception:  # noqa: BLE001  (recorded: one failing section must not lose the others' numbers)
      report["sections"][name] = dict(error=traceback.format_exc())
    report["sections"][name]["wall_s"] = time.perf_counter() - t
    print(f"{name}: {report['sections'][name]['wall_s']:.1f} s"
          + (" (error)" if "error" in report["sections"][name] else ""), flush=True)
  report["wall_s"] = time.perf_counter() - start
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "gpu_suite.json"), "w") as f:
    json.dump(report, f, indent=1)
  table = markdown(report)
  with open(os.path.join(args.out, "gpu_suite.md"), "w") as f:
    f.write(table)
  print(table)
  return 0 if all("error" not in s for s in report["sections"].values()) else 1


if __name__ == "__main__":
  sys.exit(main())
