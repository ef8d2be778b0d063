"""Input pipeline speed: training images per second of each tf.data pipeline, with 1, 2 and all threads.

Pipelines (train mode, as configured for the paper runs):
  synthetic    synthetic_crowds rendered at data.render_size (384x512), resized to 800 / 1400, flip, padded 1408x1408
  crowdhuman   a CrowdHuman-format tree of drawn JPEGs at CrowdHuman-like sizes (about 900x1400, ~200 KB,
               ~23 boxes per image; built with the real builder), resized to 800 / 1400, flip, padded 1408x1408
  citypersons  a CityPersons-format tree of drawn 1024x2048 PNGs (~2.5 MB, like leftImg8bit), the ALFNet
               augmentation (brightness, flip, scale-crop around a person) resized to 640x1280
Threads: the pipeline's private tf.data thread pool (data.num_threads; 0 = TensorFlow's default = all cores).

Each measurement warms up, then times batches for --seconds. The output also states the rate one GPU
would consume, from ASSUMED training-step throughputs (command-line arguments, not measured here):
  --gpu_lla    LLA.FCOS R-50 at 800x1400 (padded 1408x1408), images/s of one H100 (assumed 30)
  --gpu_alfnet ALFNet-2s R-50 at 640x1280, images/s of one H100 (assumed 60)
and the number of such CPU cores one GPU would need at the measured per-thread rate.

  python benchmarks/input_bench.py [--seconds 6] [--threads 1,2,0] [--pipelines synthetic,crowdhuman,citypersons]
                                   [--work_dir DIR (keeps the fixtures between runs)]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

PIPELINES = ("synthetic", "crowdhuman", "citypersons")


def _picture(rng, h, w, noise):
  """A smooth picture with some texture and noise (compresses like a photo, roughly)."""
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  base = np.stack([80 + 100 * np.sin(xx / 97.0) * np.cos(yy / 53.0), 100 + 80 * np.cos(xx / 31.0 + yy / 71.0),
                   60 + 120 * yy / h], axis=-1)
  base += rng.normal(0, noise, base.shape).astype(np.float32)
  return np.clip(base, 0, 255).astype(np.uint8)


def write_crowdhuman_like(root, n_train=16, n_val=2, seed=0):
  """CrowdHuman layout (Images/, annotation_{train,val}.odgt) with drawn JPEGs and ~23 boxes each."""
  from PIL import Image
  rng = np.random.default_rng(seed)
  os.makedirs(os.path.join(root, "Images"), exist_ok=True)
  for split, n in (("train", n_train), ("val", n_val)):
    with open(os.path.join(root, f"annotation_{split}.odgt"), "w") as f:
      for i in range(n):
        h, w = (int(rng.integers(700, 1000)), int(rng.integers(1100, 1600))) if i % 5 else (1400, 900)
        image_id = f"{split}{i:04d},bench"
        Image.fromarray(_picture(rng, h, w, 3)).save(os.path.join(root, "Images", image_id + ".jpg"), quality=90)
        boxes = []
        for j in range(int(rng.poisson(23))):
          bh = float(rng.uniform(30, 0.7 * h))
          x, y = float(rng.uniform(-0.05 * w, w)), float(rng.uniform(0, h - 20))
          tag = "mask" if j % 12 == 11 else "person"
          boxes.append({"tag": tag, "fbox": [round(x), round(y), round(0.41 * bh), round(bh)],
                        "vbox": [round(x), round(y), round(0.41 * bh), round(bh / 2)], "hbox": [round(x), round(y), 8, 8],
                        "extra": {"ignore": int(tag == "mask"), "box_id": j}})
        f.write(json.dumps({"ID": image_id, "gtboxes": boxes}) + "\n")


def write_citypersons_like(root, n_train=8, n_val=1, seed=0):
  """CityPersons layout (leftImg8bit PNGs 1024x2048, gtBboxCityPersons JSON) with ~10 boxes each."""
  from PIL import Image
  rng = np.random.default_rng(seed)
  labels = ("ignore", "pedestrian", "rider", "sitting person", "person (other)", "person group")
  for split, n in (("train", n_train), ("val", n_val)):
    for i in range(n):
      city, name = "benchcity", f"benchcity_{i:06d}_000019"
      for sub in ("leftImg8bit", "gtBboxCityPersons"):
        os.makedirs(os.path.join(root, sub, split, city), exist_ok=True)
      Image.fromarray(_picture(rng, 1024, 2048, 2)).save(
          os.path.join(root, "leftImg8bit", split, city, name + "_leftImg8bit.png"))
      objects = []
      for j in range(10):
        bh = int(rng.uniform(30, 400))
        box = [int(rng.uniform(-20, 2000)), int(rng.uniform(300, 1000 - bh * 0.5)), int(0.41 * bh), bh]
        objects.append({"label": labels[1 if j < 6 else j % 6], "bbox": box, "bboxVis": box, "instanceId": j})
      with open(os.path.join(root, "gtBboxCityPersons", split, city, name + "_gtBboxCityPersons.json"), "w") as f:
        json.dump({"imgHeight": 1024, "imgWidth": 2048, "objects": objects}, f)


def data_config(name, data_dir, threads):
  from configs import alfnet_r50_2s, base
  if name == "citypersons":
    c = alfnet_r50_2s.get_config().data
  else:
    c = base.get_base_config().data
  c.data_dir, c.num_threads = data_dir, threads
  if name == "synthetic":
    c.name, c.num_train_images, c.num_val_images = "synthetic_crowds", 16, 2
  else:
    c.name = name
  return c


def measure(data_cfg, batch_size, seconds, warmup=2):
  """(images/s, batches timed) of the training iterator after `warmup` batches."""
  import data_pipelines
  it, _ = data_pipelines.create_dataset(data_cfg, data_cfg.train_split, batch_size, True, seed=0)
  for _ in range(warmup):
    next(it)
  n, start = 0, time.perf_counter()
  while time.perf_counter() - start < seconds:
    next(it)
    n += 1
  return n * batch_size / (time.perf_counter() - start), n


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--seconds", type=float, default=6.0, help="timed seconds per measurement")
  p.add_argument("--batch_size", type=int, default=2)
  p.add_argument("--threads", default="1,2,0", help="comma list; 0 = TensorFlow's default (all cores)")
  p.add_argument("--pipelines", default=",".join(PIPELINES))
  p.add_argument("--work_dir", default=None, help="keep the fixtures here (default: a temporary folder)")
  p.add_argument("--gpu_lla", type=float, default=30.0,
                 help="ASSUMED images/s of one GPU training LLA.FCOS R-50 at 800x1400 (H100; not measured here)")
  p.add_argument("--gpu_alfnet", type=float, default=60.0,
                 help="ASSUMED images/s of one GPU training ALFNet-2s R-50 at 640x1280 (H100; not measured here)")
  args = p.parse_args(argv)
  import tensorflow as tf  # noqa: F401  (imported up front so its start-up is not timed)
  from data_pipelines import prepare

  work = args.work_dir or tempfile.mkdtemp(prefix="input_bench_")
  data_dir = os.path.join(work, "tfds")
  pipelines = [s for s in args.pipelines.split(",") if s]
  threads = [int(t) for t in args.threads.split(",")]
  t0 = time.perf_counter()
  for name in pipelines:
    manual = os.path.join(work, f"{name}_manual")
    if name == "crowdhuman" and not os.path.exists(manual):
      write_crowdhuman_like(manual)
    if name == "citypersons" and not os.path.exists(manual):
      write_citypersons_like(manual)
    if name != "synthetic":
      prepare.build(name, manual, data_dir)
  print(f"fixtures ready in {time.perf_counter() - t0:.1f} s ({work}); CPU cores: {os.cpu_count()}, load average "
        f"{os.getloadavg()[0]:.1f} (other work on the machine lowers every number)", flush=True)

  rows = []
  for name in pipelines:
    for t in threads:
      rate, n = measure(data_config(name, data_dir, t), args.batch_size, args.seconds)
      rows.append({"pipeline": name, "threads": t or os.cpu_count(), "threads_arg": t, "images_per_s": rate,
                   "batches": n})
      print(f"  {name:<12} threads {'all' if t == 0 else t:>3}: {rate:7.2f} images/s ({n} batches)", flush=True)

  need = {"synthetic": ("LLA R-50", args.gpu_lla), "crowdhuman": ("LLA R-50", args.gpu_lla),
          "citypersons": ("ALFNet-2s R-50", args.gpu_alfnet)}
  print("\npipeline       1 thread   best   | one GPU needs (ASSUMED step rate)  -> cores at the 1-thread rate")
  for name in pipelines:
    mine = [r for r in rows if r["pipeline"] == name]
    one = next((r["images_per_s"] for r in mine if r["threads"] == 1), float("nan"))
    best = max(r["images_per_s"] for r in mine)
    model, gpu = need[name]
    print(f"{name:<12} {one:9.2f} {best:8.2f}   | {gpu:6.1f} img/s ({model}, H100, assumed) -> "
          f"{gpu / one if one > 0 else float('nan'):5.1f} cores")
  print(json.dumps({"rows": rows, "assumed_gpu_images_per_s": {"lla_r50_800x1400": args.gpu_lla,
                                                               "alfnet_r50_640x1280": args.gpu_alfnet},
                    "cpu_count": os.cpu_count(), "batch_size": args.batch_size}))
  if args.work_dir is None:
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
  main()
