"""Priors: FPN points (FCOS family) built once per padded input shape, with level metadata."""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np

from lla_jax.assigners.common import option


class Points(NamedTuple):
  """Points of all levels concatenated P3..P7, row-major inside a level (lla.md §1.2, §5).

  xy      (A, 2) float32  (x, y) = (j * s, i * s): offset 0, the top-left corner of the cell
  strides (A,) float32    stride of the point's level
  level   (A,) int32      level index 0.. (P3 = 0)
  shapes  tuple of (h, w) feature-map sizes per level
  """
  xy: np.ndarray
  strides: np.ndarray
  level: np.ndarray
  shapes: tuple


def feature_shape(size: int, stride: int) -> int:
  """Feature size after log2(stride) stride-2 convs with padding 1 (ceil division each time)."""
  for _ in range(int(round(math.log2(stride)))):
    size = (size + 1) // 2
  return size


def fpn_points(height: int, width: int, strides: Sequence[int] = (8, 16, 32, 64, 128), offset: float = 0.0) -> Points:
  """Points for a padded input of (height, width) pixels; numpy, computed once per shape."""
  xy, st, lv, shapes = [], [], [], []
  for level, s in enumerate(strides):
    h, w = feature_shape(height, s), feature_shape(width, s)
    ys, xs = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    xy.append(np.stack([(xs.ravel() + offset) * s, (ys.ravel() + offset) * s], axis=-1))
    st.append(np.full(h * w, s, np.float32))
    lv.append(np.full(h * w, level, np.int32))
    shapes.append((h, w))
  return Points(np.concatenate(xy), np.concatenate(st), np.concatenate(lv), tuple(shapes))


# ALFNet anchors (alfnet.md §5): one aspect ratio, two widths per level, +1 pixel convention.
ALFNET_STRIDES = (8, 16, 32, 64)
ALFNET_SCALES = ((16, 24), (32, 48), (64, 80), (128, 160))


def alfnet_anchor_sizes(stride: int, scales: Sequence[float], ratio: float = 0.41) -> np.ndarray:
  """(A, 2) anchor (w, h) of one level: base cell s x round(s / ratio), scaled so that w = scale."""
  base_h = float(np.round(stride / ratio))
  return np.array([[k, base_h * k / stride] for k in scales], np.float64)


def alfnet_anchors(height: int, width: int, strides: Sequence[int] = ALFNET_STRIDES,
                   scales: Sequence[Sequence[float]] = ALFNET_SCALES, ratio: float = 0.41,
                   clip: bool = True) -> np.ndarray:
  """ALFNet anchors of an input of (height, width) pixels: (N, 4) float32 xyxy, clipped, never dropped.

  Levels concatenated in `strides` order; inside a level the index is (y * W_l + x) * A + a with
  A = len(scales[level]) and the anchors of a cell in `scales` order. Cell (i, j) of stride s is
  centred at (j s + (s - 1) / 2, i s + (s - 1) / 2); a w x h anchor spans centre -/+ (w - 1) / 2.
  Clipping (x1, y1 >= 0; x2 <= W - 1; y2 <= H - 1) uses the actual input size, so train and test
  anchor sets differ. `clip=False` returns the raw anchors (for inspection only).
  """
  if len(strides) != len(scales):
    raise ValueError(f"alfnet_anchors: {len(strides)} strides but {len(scales)} scale tuples")
  out = []
  for s, scl, (h, w) in zip(strides, scales, alfnet_level_shapes(height, width, strides)):
    wh = alfnet_anchor_sizes(s, scl, ratio)                                   # (A, 2)
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    c = np.stack([xs.ravel(), ys.ravel()], -1)[:, None, :] * s + (s - 1) / 2.0  # (h w, 1, 2)
    half = (wh[None, :, :] - 1.0) / 2.0                                        # (1, A, 2)
    out.append(np.concatenate([c - half, c + half], -1).reshape(-1, 4))
  a = np.concatenate(out)
  if not clip:
    return a.astype(np.float32)
  a[:, 0:2] = np.maximum(a[:, 0:2], 0.0)
  a[:, 2] = np.minimum(a[:, 2], width - 1.0)
  a[:, 3] = np.minimum(a[:, 3], height - 1.0)
  return a.astype(np.float32)


def alfnet_level_shapes(height: int, width: int, strides: Sequence[int] = ALFNET_STRIDES) -> tuple:
  """Feature-map (h, w) per level: ceil halving per stride-2 layer (Keras "same"/zero-pad 3 stem)."""
  return tuple((feature_shape(height, s), feature_shape(width, s)) for s in strides)


def alfnet_anchor_levels(height: int, width: int, strides: Sequence[int] = ALFNET_STRIDES,
                         num_anchors: Sequence[int] = (2, 2, 2, 2)) -> np.ndarray:
  """(N,) int32 level index (0 = stride 8) of every anchor of `alfnet_anchors`."""
  return np.concatenate([np.full(h * w * a, level, np.int32) for level, ((h, w), a)
                         in enumerate(zip(alfnet_level_shapes(height, width, strides), num_anchors))])


# General anchor generator (detectron2 / cvpods cvpods/modeling/anchor_generator.py DefaultAnchorGenerator)
# and the anchors of the released Faster R-CNN R50-FPN CrowdHuman config (P2..P6).
RCNN_ANCHOR_DEFAULTS = dict(
    anchor_strides=(4, 8, 16, 32, 64),                  # P2..P6; P6 = max-pool(P5, kernel 1, stride 2)
    anchor_sizes=((32,), (64,), (128,), (256,), (512,)),  # one size per level
    anchor_ratios=((1.0, 2.0, 3.0),),                   # h / w; one tuple for all levels or one per level
    anchor_offset=0.0,                                  # anchors centred on the top-left corner of a cell
    size_divisibility=32,                               # inputs are zero-padded to a multiple of 32
)


def cell_anchors(sizes: Sequence[float], ratios: Sequence[float]) -> np.ndarray:
  """(len(sizes) * len(ratios), 4) float32 anchors centred on (0, 0), sizes outer, ratios inner.

  For size s and ratio r = h / w: w = sqrt(s^2 / r), h = r w, box [-w/2, -h/2, w/2, h/2], computed in
  float64 and rounded once to float32 (anchor_generator.py generate_cell_anchors).
  """
  out = []
  for s in sizes:
    for r in ratios:
      w = math.sqrt(float(s) ** 2 / float(r))
      h = float(r) * w
      out.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
  return np.asarray(out, np.float64).astype(np.float32)


def grid_anchors(shapes: Sequence[tuple], strides: Sequence[float], cells: Sequence[np.ndarray],
                 offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
  """Anchors of several levels: (anchors (A, 4) float32 xyxy, level_start (L + 1,) int32).

  shapes: (h, w) per level; strides: the level strides; cells: (K_l, 4) float32 cell anchors per level.
  Level l covers anchors[level_start[l]:level_start[l + 1]]; inside a level the index is (i w + j) K_l + k
  for cell (i, j) and cell anchor k. Shift of cell (i, j) = (j s + offset s, i s + offset s) in float32,
  anchor = shift + cell anchor as one float32 add.
  """
  if not len(shapes) == len(strides) == len(cells):
    raise ValueError(f"grid_anchors: {len(shapes)} shapes, {len(strides)} strides, {len(cells)} cell anchor sets")
  out, starts = [], [0]
  for (h, w), s, cell in zip(shapes, strides, cells):
    xs = np.arange(w, dtype=np.float32) * np.float32(s) + np.float32(offset * s)
    ys = np.arange(h, dtype=np.float32) * np.float32(s) + np.float32(offset * s)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    shifts = np.stack([xx.ravel(), yy.ravel(), xx.ravel(), yy.ravel()], axis=-1)     # (h w, 4)
    out.append((shifts[:, None, :] + np.asarray(cell, np.float32)[None]).reshape(-1, 4))
    starts.append(starts[-1] + out[-1].shape[0])
  return np.concatenate(out).astype(np.float32), np.asarray(starts, np.int32)


def rcnn_anchors(padded_hw, cfg=None) -> tuple[np.ndarray, np.ndarray]:
  """Faster R-CNN anchors of a padded input: (anchors (A, 4) float32 xyxy, level_start (6,) int32).

  padded_hw: (H, W) of the zero-padded batch, multiples of `size_divisibility`. Levels P2..P6 (strides
  4..64): P2..P5 are H / s x W / s; P6 halves P5 with ceil. Order: levels, then row-major cells, then the
  ratios (1, 2, 3) of the cell; with offset 0 the first anchor of P2 is [-16, -16, 16, 16]. At 800 x 1408:
  281 358 anchors. cfg: None (released values) or a ConfigDict / dict overriding RCNN_ANCHOR_DEFAULTS.
  """
  opt = lambda name: option(cfg, name, RCNN_ANCHOR_DEFAULTS)
  height, width = (int(v) for v in padded_hw)
  div = int(opt("size_divisibility"))
  if height <= 0 or width <= 0 or height % div or width % div:
    raise ValueError(f"rcnn_anchors: padded_hw={tuple(padded_hw)} must be positive multiples of "
                     f"size_divisibility={div} (the batch is zero-padded to it)")
  strides = tuple(opt("anchor_strides"))
  sizes, ratios = tuple(opt("anchor_sizes")), tuple(opt("anchor_ratios"))
  if len(ratios) == 1:
    ratios = ratios * len(strides)
  if not len(sizes) == len(ratios) == len(strides):
    raise ValueError(f"rcnn_anchors: cfg fields anchor_sizes ({len(sizes)} levels), anchor_ratios ({len(ratios)}) "
                     f"and anchor_strides ({len(strides)}) must describe the same levels")
  shapes = tuple((feature_shape(height, s), feature_shape(width, s)) for s in strides)
  cells = [cell_anchors(sz, r) for sz, r in zip(sizes, ratios)]
  return grid_anchors(shapes, strides, cells, float(opt("anchor_offset")))

