"""Multi-level ROIAlignV2 of Faster R-CNN (cvpods cvpods/modeling/poolers.py ROIPooler with
ROIAlignV2 = ROIAlign(aligned=True, sampling_ratio=0), and cvpods/layers/csrc/ROIAlign/ROIAlign_cpu.cpp,
the same recipe as torchvision.ops.roi_align(aligned=True)). Pure jnp, one image, static shapes.

Adaptive grid under static shapes: upstream samples ceil(roi_h / 7) x ceil(roi_w / 7) points per bin,
a number that depends on the RoI. Here every RoI runs the same `pooler_max_grid` = (Gh, Gw) sample
slots per bin (default (8, 8)) and masks the slots past its own grid; the running sum visits the valid
samples in upstream's order (rows, then columns) and adds exact zeros for the masked ones, so the result
is upstream's. Bound: exact for every RoI whose extent on its pooling level is at most 7 Gh feature cells
tall and 7 Gw wide (56 x 56 cells by default: 224 px on P2, 448 on P3, 896 on P4, 1792 on P5). A box the
level rule sends to P2..P4 has sqrt(area) < 28 cells there, so only boxes more elongated than 4 : 1 (or
P5 boxes over 1792 px) pass the default bound. Past the
bound, along the axis that exceeds it, the RoI is sampled with exactly Gh (or Gw) points per bin, evenly
spaced as a fixed sampling_ratio would place them, and the average divides by the capped count: a
documented, deterministic approximation of upstream's denser average, never an error.
"""
from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp

from lla_jax.assigners.common import option
from lla_jax.boxes import divide, rounded

DEFAULTS = dict(
    pooler_resolution=7,
    pooler_strides=(4, 8, 16, 32),          # P2..P5 (the RoI head's in_features)
    pooler_canonical_box_size=224,
    pooler_canonical_level=4,
    pooler_aligned=True,                    # ROIAlignV2: half-pixel offset, no minimum RoI size
    pooler_sampling_ratio=0,                # 0 = adaptive grid ceil(roi / resolution)
    pooler_max_grid=(8, 8),                 # static sample slots per bin (rows, columns); see the module doc
)
_EPS = 2.220446049250313e-16  # float64 eps of poolers.py assign_boxes_to_levels, added in float32


def box_levels(boxes, min_level: int, max_level: int, canonical_box_size: float = 224, canonical_level: int = 4):
  """(R,) int32 pooling level index (0 = min_level) of xyxy boxes (R, 4).

  L = floor(canonical_level + log2(sqrt(area) / canonical_box_size + eps)) clamped to [min, max], float32,
  area = (x2 - x1)(y2 - y1) unclamped. A negative or non-finite area gives the lowest level.
  """
  boxes = jnp.asarray(boxes, jnp.float32)
  area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
  size = jnp.sqrt(area)
  lvl = jnp.floor(jnp.float32(canonical_level) + jnp.log2(divide(size, canonical_box_size) + jnp.float32(_EPS)))
  lvl = jnp.where(jnp.isnan(lvl), min_level, jnp.clip(lvl, min_level, max_level))
  return (lvl - min_level).astype(jnp.int32)


def multilevel_roi_align(features: Sequence[jax.Array], boxes, cfg=None):
  """ROIAlignV2 of one image's RoIs, each on its level: (pooled (R, S, S, C), level (R,) int32 (0 = P2)).

  features: the P2..P5 maps of ONE image, a sequence of (H_l, W_l, C) arrays (the level strides are
  `pooler_strides`); boxes (R, 4) xyxy input pixels (unclipped proposals are fine). S = pooler_resolution.
  Level: box_levels. Per RoI on its level (scale 1 / stride): x0 = x1 scale - 0.5, rw = x2 scale - 0.5 - x0,
  bin_w = rw / S, grid gw = ceil(rw / S) (capped at the bound), sample x = (x0 + pw bin_w) +
  ((ix + 0.5) bin_w) / gw; bilinear with the border rules of ROIAlign_cpu.cpp (a sample with y < -1, y > H,
  x < -1 or x > W is 0; coordinates <= 0 read row/column 0; past H - 1 read the last row); the bin value
  is the running sum of its samples over the count max(gh gw, 1). A zero-size or non-finite RoI gives 0.
  Differentiable w.r.t. the features (not the boxes).
  """
  opt = lambda name: option(cfg, name, DEFAULTS)
  strides = tuple(float(s) for s in opt("pooler_strides"))
  if len(features) != len(strides):
    raise ValueError(f"multilevel_roi_align: {len(features)} feature maps for pooler_strides={strides}")
  chans = {f.shape[-1] for f in features}
  if any(f.ndim != 3 for f in features) or len(chans) != 1:
    raise ValueError(f"multilevel_roi_align: features must be (H_l, W_l, C) maps of one image with one C; got "
                     f"{[tuple(f.shape) for f in features]}")
  boxes = jnp.asarray(boxes, jnp.float32)
  if boxes.ndim != 2 or boxes.shape[1] != 4:
    raise ValueError(f"multilevel_roi_align: boxes must be (R, 4) xyxy, got {tuple(boxes.shape)}")
  s = int(opt("pooler_resolution"))
  gh_max, gw_max = (int(g) for g in opt("pooler_max_grid"))
  ratio = int(opt("pooler_sampling_ratio"))
  aligned = bool(opt("pooler_aligned"))
  min_level = int(round(math.log2(strides[0])))
  level = box_levels(boxes, min_level, min_level + len(strides) - 1, float(opt("pooler_canonical_box_size")),
                     int(opt("pooler_canonical_level")))

  heights = [f.shape[0] for f in features]
  widths = [f.shape[1] for f in features]
  starts = [0]
  for h, w in zip(heights, widths):
    starts.append(starts[-1] + h * w)
  dtype = features[0].dtype
  flat = jnp.concatenate([f.reshape(-1, f.shape[-1]) for f in features], axis=0)
  table = lambda v, dt: jnp.asarray(v, dt)[level]
  scale = table([1.0 / st for st in strides], jnp.float32)
  height, width = table(heights, jnp.int32), table(widths, jnp.int32)
  start = table(starts[:-1], jnp.int32)

  finite = jnp.all(jnp.isfinite(boxes), axis=1)
  b = jnp.where(finite[:, None], boxes, 0.0)
  off = jnp.float32(0.5 if aligned else 0.0)
  x0, y0 = b[:, 0] * scale - off, b[:, 1] * scale - off
  rw, rh = b[:, 2] * scale - off - x0, b[:, 3] * scale - off - y0
  if not aligned:
    rw, rh = jnp.maximum(rw, 1.0), jnp.maximum(rh, 1.0)
  bin_w, bin_h = divide(rw, s), divide(rh, s)        # also the adaptive grid: ceil(roi / S)
  if ratio > 0:
    gh = jnp.full(level.shape, ratio, jnp.int32)
    gw = gh
  else:
    gh, gw = jnp.ceil(bin_h).astype(jnp.int32), jnp.ceil(bin_w).astype(jnp.int32)
  gh = jnp.where(finite, jnp.clip(gh, 0, gh_max), 0)
  gw = jnp.where(finite, jnp.clip(gw, 0, gw_max), 0)
  count = jnp.maximum(gh * gw, 1).astype(jnp.float32)
  bins = jnp.arange(s, dtype=jnp.float32)
  ys0 = y0[:, None] + rounded(bins[None] * bin_h[:, None])              # (R, S) start of each bin row
  xs0 = x0[:, None] + rounded(bins[None] * bin_w[:, None])
  ghf, gwf = jnp.maximum(gh, 1).astype(jnp.float32), jnp.maximum(gw, 1).astype(jnp.float32)

  def axis_weights(c0, binsz, g, gf, i, size):
    """Bilinear taps along one axis for sample i of every bin: (low, high, w_low, w_high, inside)."""
    c = c0 + ((jnp.asarray(i).astype(jnp.float32) + 0.5) * binsz)[:, None] / gf[:, None]   # (R, S)
    limit = size[:, None].astype(jnp.float32)
    inside = (c >= -1.0) & (c <= limit) & (i < g)[:, None]
    c = jnp.clip(c, 0.0, limit)                                         # <= 0 -> 0; > size is masked anyway
    low = c.astype(jnp.int32)
    last = low >= size[:, None] - 1
    low = jnp.where(last, size[:, None] - 1, low)
    high = jnp.where(last, low, low + 1)
    c = jnp.where(last, low.astype(jnp.float32), c)
    lc = c - low.astype(jnp.float32)
    return low, high, 1.0 - lc, lc, inside

  def body(k, acc):
    iy, ix = k // gw_max, k % gw_max
    yl, yh, hy, ly, iny = axis_weights(ys0, bin_h, gh, ghf, iy, height)
    xl, xh, hx, lx, inx = axis_weights(xs0, bin_w, gw, gwf, ix, width)
    inside = iny[:, :, None] & inx[:, None, :]                          # (R, S, S)
    row = lambda r: start[:, None, None] + r[:, :, None] * width[:, None, None]
    tap = lambda r, c: flat[row(r) + c[:, None, :]].astype(jnp.float32)  # (R, S, S, C)
    w = lambda a, c: jnp.where(inside, a[:, :, None] * c[:, None, :], 0.0)[..., None]
    term = lambda a, c, r, q: rounded(w(a, c) * tap(r, q))             # no fused multiply-add: upstream's rounding
    val = ((term(hy, hx, yl, xl) + term(hy, lx, yl, xh)) + term(ly, hx, yh, xl)) + term(ly, lx, yh, xh)
    return acc + val

  acc = jnp.zeros((boxes.shape[0], s, s, flat.shape[-1]), jnp.float32)
  acc = jax.lax.fori_loop(0, gh_max * gw_max, body, acc)
  return divide(acc, count[:, None, None, None]).astype(dtype), level
