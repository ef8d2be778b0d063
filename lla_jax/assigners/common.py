"""What the label assigners share: options, input checks, FPN level tables and the Targets of a
point -> GT match. Pure jnp; nothing here depends on which assigner made the match."""
from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from lla_jax import boxes
from lla_jax.types import IGNORE_CLASS, Targets

LEVEL_STRIDES = (8, 16, 32, 64, 128)  # P3..P7 (lla.md §3.4)


def option(cfg, name: str, defaults: Mapping):
  """`cfg.<name>` when cfg (a ConfigDict, dict or plain object) holds it, else the released default."""
  if cfg is None:
    return defaults[name]
  return cfg.get(name, defaults[name]) if hasattr(cfg, "get") else getattr(cfg, name, defaults[name])


def level_strides(cfg, defaults: Mapping) -> tuple:
  """The static, ascending stride of each FPN level (P3 first)."""
  strides = tuple(sorted(float(s) for s in option(cfg, "strides", defaults)))
  if len(set(strides)) != len(strides) or not strides or strides[0] <= 0:
    raise ValueError(f"assigner cfg field 'strides'={strides}: expected distinct positive level strides")
  return strides


def check_inputs(method: str, points, strides, cls_logits, ltrb, gt_boxes, gt_classes, gt_valid, known_strides=None):
  """Raises ValueError naming the argument whose shape does not fit one image's assignment inputs.

  With `known_strides`, concrete (non-traced) point strides are also checked against the level table:
  a point of an unknown level would silently never be positive.
  """
  def fail(arg, expected, got):
    raise ValueError(f"lla_jax.assigners.{method}.assign: {arg} must be {expected}, got shape {tuple(got)}")

  if points.ndim != 2 or points.shape[1] != 2:
    fail("points", "(A, 2) xy", points.shape)
  a = points.shape[0]
  if strides.shape != (a,):
    fail("strides", f"(A,) = ({a},)", strides.shape)
  if cls_logits.ndim != 2 or cls_logits.shape[0] != a:
    fail("cls_logits", f"(A, C) with A = {a}", cls_logits.shape)
  if ltrb.shape != (a, 4):
    fail("ltrb", f"(A, 4) = ({a}, 4)", ltrb.shape)
  if gt_boxes.ndim != 2 or gt_boxes.shape[1] != 4:
    fail("gt_boxes", "(M, 4) xyxy", gt_boxes.shape)
  m = gt_boxes.shape[0]
  if gt_classes.shape != (m,):
    fail("gt_classes", f"(M,) = ({m},)", gt_classes.shape)
  if gt_valid.shape != (m,):
    fail("gt_valid", f"(M,) = ({m},)", gt_valid.shape)
  if known_strides is not None:
    try:
      concrete = np.asarray(strides)
    except jax.errors.JAXTypeError:  # traced under jit/vmap: the values are not known here
      return
    unknown = sorted(set(concrete.tolist()) - set(known_strides))
    if unknown:
      raise ValueError(f"lla_jax.assigners.{method}.assign: strides {unknown} are not FPN levels of the assigner "
                       f"cfg field 'strides'={tuple(known_strides)}")


def smallest_k(x, k: int, chunk: int | None = None, values_at=None):
  """The k smallest entries of each row of x (..., N): (values, indices) (..., k), ascending, lowest index
  first on ties; exactly `lax.top_k(-x, k)` with the values negated back.

  Two short top-k passes instead of one over N: the row is cut into chunks of `chunk` entries (default
  ~sqrt(N / k)), the k chunks with the smallest minima (lowest chunk first on ties) are gathered in index
  order and the k smallest are taken among those k * chunk entries. Exact: the k chosen chunks hold k
  entries <= the k-th smallest chunk minimum T, so every entry of a row's k smallest is <= T, and an
  unchosen chunk can only hold entries >= T, tied at T with higher indices than one tied entry in each of
  the chosen chunks with minimum T, which come first. XLA:CPU's top-k costs ~3 ns per element and row
  length; the chunk minima are one vectorised pass.
  values_at(cols (..., J) int32) -> (..., J): x's entries at those columns of each row, recomputed from
  whatever x was computed from (bit for bit the same). With it, x's one reader is the minima reduction:
  a gather as a second reader makes XLA:CPU materialise parts of x's computation twice (LLA, 16 x 500
  GTs: 1.45 GiB of temporaries instead of 0.72). Default: gathered from x.
  """
  n = x.shape[-1]
  k = min(k, n)
  if chunk is None:
    chunk = _chunk_size(n, k)
  num_chunks = -(-n // chunk)
  if num_chunks <= k or k == 0:                       # nothing to skip: one pass
    neg, idx = jax.lax.top_k(-x, k)
    return -neg, idx
  # Chunk minima by a reduction over a reshape (a padded copy only when no chunk size near the ideal
  # divides N); padded and gathered positions past N read +inf, which sorts after every real entry (ties
  # included: higher indices), so they are never chosen while N >= k.
  lead = x.shape[:-1]
  padded = x
  if num_chunks * chunk > n:
    padded = jnp.pad(x, [(0, 0)] * len(lead) + [(0, num_chunks * chunk - n)], constant_values=jnp.inf)
  minima = padded.reshape(lead + (num_chunks, chunk)).min(axis=-1)
  _, best = jax.lax.top_k(-minima, k)                                         # (..., k) chunk ids
  best = jnp.sort(best, axis=-1)                                              # index order: top-k ties hold
  cols = (best[..., :, None] * chunk + jnp.arange(chunk, dtype=best.dtype)).reshape(lead + (k * chunk,))
  if values_at is None:
    picked = jnp.take_along_axis(x, cols, axis=-1, mode="fill", fill_value=jnp.inf)
  else:
    picked = jnp.where(cols < n, values_at(jnp.minimum(cols, n - 1)), jnp.inf)
  neg, pos = jax.lax.top_k(-picked, k)
  idx = jnp.take_along_axis(cols, pos, axis=-1)
  return -neg, idx.astype(jnp.int32)


def _chunk_size(n: int, k: int) -> int:
  """~sqrt(n / k) (the two top-k passes then cost about the same), preferring a divisor of n within 2x of it:
  then the chunk minima are a plain reduction over a reshape, with no padded copy of the row."""
  ideal = max(1.0, (n / max(k, 1)) ** 0.5)
  divisors = [d for d in range(max(1, int(ideal / 2)), int(2 * ideal) + 1) if n % d == 0]
  return min(divisors, key=lambda d: abs(d - ideal)) if divisors else max(1, int(round(ideal)))


def per_level(strides, values, fill):
  """(A,) value of each point's level: values[i] where strides == level_strides[i], `fill` elsewhere.

  `values` is a static dict {level stride: value}; the level is identified by the stride.
  """
  out = jnp.full(strides.shape, fill, jnp.float32)
  for s, v in values.items():  # static loop over the (five) levels
    out = jnp.where(strides == s, jnp.float32(v), out)
  return out


def matched_ltrb(points, gt_boxes, matched_gt):
  """(A, 4) regression target (x - x1, y - y1, x2 - x, y2 - y) of each point for its matched GT.

  Background points (matched_gt = -1) read row 0; callers zero them.
  """
  g = gt_boxes[jnp.maximum(matched_gt, 0)]
  x, y = points[:, 0], points[:, 1]
  return jnp.stack([x - g[:, 0], y - g[:, 1], g[:, 2] - x, g[:, 3] - y], axis=-1)


def targets_from_matches(points, gt_boxes, gt_classes, matched_gt, aux_target=None, num_fg_counts_ignore=False):
  """Targets of one image from its point -> GT match (lla_jax/types.py).

  points (A, 2), gt_boxes (M, 4), gt_classes (M,) with -1 = ignore, matched_gt (A,) int (-1 background).
  A point matched to an ignore GT is neither fg nor valid. aux_target (A,) defaults to the centerness of
  the box target; it is zeroed off fg either way. num_fg counts the fg points, plus the ignore matches
  when `num_fg_counts_ignore` (LLA's normaliser, lla.md §6.4); FCOS and ATSS count fg only (§11.5).
  """
  matched_gt = matched_gt.astype(jnp.int32)
  if gt_boxes.shape[0] == 0:  # no GT rows at all: every point is background; give the gathers a row
    gt_boxes, gt_classes = jnp.zeros((1, 4), jnp.float32), jnp.zeros((1,), jnp.int32)
  has_gt = matched_gt >= 0
  ignored = has_gt & (gt_classes[jnp.maximum(matched_gt, 0)] == IGNORE_CLASS)
  fg = has_gt & ~ignored
  box_targets = jnp.where(fg[:, None], matched_ltrb(points, gt_boxes, matched_gt), 0.0)
  if aux_target is None:
    aux_target = boxes.centerness(box_targets)
  aux_target = jnp.where(fg, aux_target, 0.0).astype(jnp.float32)
  num_fg = jnp.sum(has_gt if num_fg_counts_ignore else fg).astype(jnp.float32)
  return Targets(matched_gt=matched_gt, fg=fg, valid=~ignored, box_targets=box_targets.astype(jnp.float32),
                 aux_target=aux_target, num_fg=num_fg)
