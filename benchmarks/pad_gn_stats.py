"""What padding does to the FCOS head's GroupNorm statistics and logits (R-50 LLA.FCOS).

The released code pads each batch (2 images per GPU, aspect-ratio grouped) to its common size rounded up
to 32; GroupNorm (the head towers) takes its mean and variance over the whole feature map, padding
included. This compares, on CrowdHuman-shaped synthetic crowds, the statistics and the classification
logits of the upstream padding (`div32`: one image padded to its own size rounded up to 32, the test-time
input and a batch of two same-aspect images of the same size) with the suite's static paddings:
`fixed` (data.pad_size, square) and `bucket` (data.buckets: 896x1408 / 1408x896 at the CrowdHuman
setting). Per level: the median over the head's GN groups (all 8 GN layers) of |mean shift| / upstream
std and of the variance ratio; the median |logit shift| on the image area against the spread (std) of
the upstream logits there. Also the compile time of the jitted predict per new input shape.

  python -m benchmarks.pad_gn_stats [--scale=0.5] [--images=3]

Weights: the model's initialisation (head convs N(0, 0.01^2), as upstream before training); the
statistics shift comes from the padding, not from the weights. --scale shrinks the CrowdHuman sizes
(800 / 1400, pad 1408) to keep a CPU run short.
"""
from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np

from configs import base
from data_pipelines import synthetic, transforms
from lla_jax import priors
from lla_jax.methods import get_method
from lla_jax.models import detector

# Original sizes (h, w) of CrowdHuman-like images: 2:3 landscape, 16:9 landscape, 3:4 portrait.
SHAPES = ((1080, 1620), (1080, 1920), (1333, 1000))


def pad_shapes(new_hw, cfg, div=32):
  """{padding: (H, W)} for one resized size."""
  nh, nw = new_hw
  side = transforms.round_up(cfg.max_size, 128)
  short = transforms.round_up(cfg.min_size, 128)
  bucket = (short, side) if nw >= nh else (side, short)
  return {"div32": (transforms.round_up(nh, div), transforms.round_up(nw, div)), "fixed": (side, side),
          "bucket": (max(bucket[0], transforms.round_up(nh, div)), max(bucket[1], transforms.round_up(nw, div)))}


def group_stats(x, groups):
  """(mean, var) per (image, group) as GroupNorm computes them over (h, w, C / G). x (B, h, w, C)."""
  b, h, w, c = x.shape
  g = np.asarray(x, np.float64).reshape(b, h * w, groups, c // groups)
  return g.mean(axis=(1, 3)), g.var(axis=(1, 3))


def run(scale: float, num_images: int):
  config = base.get_base_config()
  config.data.min_size = int(round(800 * scale))
  config.data.max_size = int(round(1400 * scale))
  model = detector.build_detector(config.model)
  method = get_method(config)
  with jax.default_prng_impl("unsafe_rbg"):   # threefry makes the Flax init compile far slower on CPU
    variables = jax.jit(lambda: method.init(jax.random.PRNGKey(0), (64, 64)))()
  strides = tuple(config.model.head.strides)
  groups = int(config.model.head.gn_groups)

  def forward(image):
    def norm_inputs(mdl, name):
      return name == "__call__" and "_tower" in (mdl.name or "")
    out, state = model.apply(variables, image, train=False, capture_intermediates=norm_inputs)
    return out["cls_logits"], state["intermediates"]
  forward = jax.jit(forward)

  def level_map(logits, padded, level):
    """(h_l, w_l) cls logits of one level from the detector's concatenated (1, A, 1) output."""
    shapes = priors.fpn_points(*padded, strides).shapes
    start = sum(h * w for h, w in shapes[:level])
    h, w = shapes[level]
    return np.asarray(logits)[0, start:start + h * w, 0].reshape(h, w)

  rows, compile_s = {}, []
  for k, (h, w) in enumerate(SHAPES[:num_images]):
    image = synthetic.render_scene(synthetic.scene_seed("val", k, 0), h, w)["image"]
    pre = transforms.preprocess(np.asarray(image), np.zeros((0, 4)), np.zeros((0,)), k, f"synthetic {k}", config.data,
                                flip=False, pad_size=(4096, 4096))
    nh, nw = (int(v) for v in pre["image_size"])
    got = {}
    for name, (ph, pw) in pad_shapes((nh, nw), config.data).items():
      x = np.zeros((1, ph, pw, 3), np.float32)
      x[0, :nh, :nw] = pre["image"][:nh, :nw]
      t0 = time.perf_counter()
      compiled = forward.lower(x).compile()
      compile_s.append(time.perf_counter() - t0)
      logits, inter = jax.device_get(compiled(x))
      got[name] = (logits, inter, (ph, pw))
    ref_logits, ref_inter, _ = got["div32"]
    for name in ("fixed", "bucket"):
      logits, inter, padded = got[name]
      for level, s in enumerate(strides):
        fh, fw = -(-nh // s), -(-nw // s)
        shift, ratio = [], []
        for layer in sorted(ref_inter["head"]):
          m0, v0 = group_stats(ref_inter["head"][layer]["__call__"][level], groups)
          m1, v1 = group_stats(inter["head"][layer]["__call__"][level], groups)
          shift.append(np.abs(m1 - m0).ravel() / np.sqrt(v0).ravel())
          ratio.append((v1 / v0).ravel())
        a = level_map(ref_logits, got["div32"][2], level)[:fh, :fw]
        b = level_map(logits, padded, level)[:fh, :fw]
        rows.setdefault(name, {}).setdefault(f"P{level + 3}", []).append({
            "image": f"{h}x{w} -> {nh}x{nw}, div32 {got['div32'][2]}, {name} {padded}",
            "gn_mean_shift_over_std": float(np.median(np.concatenate(shift))),
            "gn_var_ratio": float(np.median(np.concatenate(ratio))),
            "logit_shift_median": float(np.median(np.abs(b - a))),
            "logit_shift_max": float(np.abs(b - a).max()),
            "logit_spread": float(a.std())})
  return {"scale": scale, "min_size": config.data.min_size, "max_size": config.data.max_size, "rows": rows,
          "compile_seconds_per_shape": [round(t, 1) for t in compile_s]}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--scale", type=float, default=0.5)
  p.add_argument("--images", type=int, default=3)
  args = p.parse_args(argv)
  res = run(args.scale, args.images)
  for name, levels in res["rows"].items():
    print(f"\n{name} padding against upstream (/32), min_size {res['min_size']}, max_size {res['max_size']}:")
    print("| level | GN |mean shift| / std (median) | GN var ratio (median) | |logit shift| median | max | "
          "logit spread (std) |")
    print("|---|---|---|---|---|---|")
    for level, items in levels.items():
      med = lambda key: float(np.median([it[key] for it in items]))
      print(f"| {level} | {med('gn_mean_shift_over_std'):.3f} | {med('gn_var_ratio'):.3f} | "
            f"{med('logit_shift_median'):.3f} | {max(it['logit_shift_max'] for it in items):.3f} | "
            f"{med('logit_spread'):.3f} |")
  print(f"\ncompile seconds per new input shape (jitted R-50 forward): {res['compile_seconds_per_shape']}")
  print(json.dumps(res))


if __name__ == "__main__":
  main()
