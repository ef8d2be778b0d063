"""IoU-threshold matcher of the two-stage detectors (detectron2 / cvpods cvpods/modeling/matcher.py
`Matcher`): every prediction (anchor, proposal) gets the GT of maximum quality and a label from the
threshold interval its quality falls in, optionally re-labelled positive by the low-quality rule.
Pure jnp, one image, static shapes; vmap over a batch."""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp


def check_thresholds(thresholds: Sequence[float], labels: Sequence[int]) -> tuple:
  """Validated (thresholds, labels): thresholds ascending, len(labels) = len(thresholds) + 1, labels in {-1, 0, 1}."""
  thresholds, labels = tuple(float(t) for t in thresholds), tuple(int(l) for l in labels)
  if any(b < a for a, b in zip(thresholds, thresholds[1:])):
    raise ValueError(f"matcher thresholds={thresholds}: expected ascending values")
  if len(labels) != len(thresholds) + 1:
    raise ValueError(f"matcher labels={labels}: expected {len(thresholds) + 1} labels for thresholds={thresholds}")
  if any(l not in (-1, 0, 1) for l in labels):
    raise ValueError(f"matcher labels={labels}: each label must be -1 (ignore), 0 (negative) or 1 (positive)")
  return thresholds, labels


def match(iou, thresholds: Sequence[float], labels: Sequence[int], allow_low_quality: bool, valid=None):
  """Match each of A predictions to one of M GTs.

  iou (M, A) float32 match quality (GT rows, prediction columns); valid (M,) bool or None: False rows
  (padding) take no part. Returns (matched (A,) int32, match_labels (A,) int32):
  - matched = first (lowest index) valid GT of maximum quality (torch `max(dim=0)` on CPU);
  - label = labels[i] for thresholds[i-1] <= quality < thresholds[i] (with -inf and +inf at the ends),
    compared in float32 like torch compares a float32 tensor with a Python float;
  - allow_low_quality: for each valid GT g, EVERY prediction whose quality equals g's maximum exactly
    (ties included) gets label 1, whatever its label was; its matched index stays its own argmax GT.
    A GT whose best quality is 0 makes every zero-quality prediction positive, as upstream.
  - no valid GT: matched 0, label labels[0] for every prediction (matcher.py, the empty-GT branch).
  """
  thresholds, labels = check_thresholds(thresholds, labels)
  iou = jnp.asarray(iou, jnp.float32)
  m, a = iou.shape
  if m == 0:
    return jnp.zeros((a,), jnp.int32), jnp.full((a,), labels[0], jnp.int32)
  valid = jnp.ones((m,), bool) if valid is None else jnp.asarray(valid, bool)
  q = jnp.where(valid[:, None], iou, -jnp.inf)
  value, matched = jnp.max(q, axis=0), jnp.argmax(q, axis=0).astype(jnp.int32)
  low = _ties_at_best(q, jnp.max(q, axis=1), valid) if allow_low_quality else None
  return _finish(value, matched, low, valid, thresholds, labels)


def match_boxes(gt_boxes, boxes, iou_fn, thresholds: Sequence[float], labels: Sequence[int],
                allow_low_quality: bool, valid=None, chunk: int | None = None):
  """`match(iou_fn(gt_boxes, boxes), ...)` without the whole (M, A) matrix: the same outputs, bit for bit.

  gt_boxes (M, 4), boxes (A, 4); iou_fn(gt (M, 4), boxes (a, 4)) -> (M, a), values >= 0. With `chunk`, the
  boxes are visited `chunk` at a time (lax.map, zero boxes padding the last chunk): pass 1 takes each box's
  max / first argmax and each GT's best over the chunks, pass 2 (low-quality rule) recomputes the chunks
  and marks the ties. Peak memory (M, chunk) instead of (M, A) at the price of computing the IoU twice.
  """
  gt_boxes, boxes = jnp.asarray(gt_boxes, jnp.float32), jnp.asarray(boxes, jnp.float32)
  m, a = gt_boxes.shape[0], boxes.shape[0]
  if chunk is None or a <= chunk or m == 0:
    return match(iou_fn(gt_boxes, boxes), thresholds, labels, allow_low_quality, valid)
  thresholds, labels = check_thresholds(thresholds, labels)
  valid = jnp.ones((m,), bool) if valid is None else jnp.asarray(valid, bool)
  n = -(-a // chunk)
  parts = jnp.pad(boxes, ((0, n * chunk - a), (0, 0))).reshape(n, chunk, 4)
  quality = lambda b: jnp.where(valid[:, None], iou_fn(gt_boxes, b).astype(jnp.float32), -jnp.inf)

  def first_pass(b):
    q = quality(b)
    return jnp.max(q, axis=0), jnp.argmax(q, axis=0).astype(jnp.int32), jnp.max(q, axis=1)

  value, matched, rowmax = jax.lax.map(first_pass, parts)
  value, matched = value.reshape(-1)[:a], matched.reshape(-1)[:a]
  low = None
  if allow_low_quality:
    best = jnp.max(rowmax, axis=0)   # padding boxes have quality 0 <= every GT's best: no change
    low = jax.lax.map(lambda b: _ties_at_best(quality(b), best, valid), parts).reshape(-1)[:a]
  return _finish(value, matched, low, valid, thresholds, labels)


def _ties_at_best(q, best, valid):
  """(a,) bool: the predictions whose quality equals some valid GT's best exactly (-inf rows never match)."""
  return jnp.any((q == best[:, None]) & valid[:, None], axis=0)


def _finish(value, matched, low, valid, thresholds, labels):
  """Labels from the threshold intervals, the low-quality positives, and the no-GT case."""
  out = jnp.full(value.shape, labels[0], jnp.int32)
  for t, l in zip(thresholds, labels[1:]):  # later intervals overwrite: quality >= t gets the next label
    out = jnp.where(value >= jnp.float32(t), jnp.int32(l), out)
  if low is not None:
    out = jnp.where(low, 1, out)
  any_gt = jnp.any(valid)
  return jnp.where(any_gt, matched, 0), jnp.where(any_gt, out, labels[0])
