"""Priors: FPN points (FCOS family) built once per padded input shape, with level metadata."""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np


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
