"""Standalone evaluators (numpy, host side): CrowdHuman AP / MR^-2 / Recall / JI and CityPersons MR^-2 setups.

  crowdhuman.evaluate(gt_records, dt_records)   CrowdDet / cvpods toolkit semantics
  citypersons.evaluate(gt, dt, setups, iou)     official CityPersons toolbox semantics
  reference                                      slow per-image re-statements of both, for tests and benchmarks
  plots.plot_mr_fppi(curves, path)               miss rate vs FPPI figure

Command line: ``python -m lla_jax.evaluation {crowdhuman,citypersons} --gt ... --dt ... [--json]``.
Nothing here imports JAX, so the evaluators run on any detector's output files. This module holds the error type
and the small array helpers both evaluators share (input reading, detection order, padded image buckets).
"""
import numpy as np

from lla_jax.errors import BadInputError


class InputError(BadInputError):
  """A ground-truth or detection input is malformed; the message names the file, line / entry, ID and field."""


def finite_floats(values, shape):
  """values (nested lists of numbers) -> float64 array of `shape` with finite entries, or None when they are
  not that (ragged, not numbers, NaN / inf): the caller then looks for the offending entry to name it."""
  try:
    a = np.asarray(values)
  except (ValueError, TypeError):
    return None
  if a.size == 0:
    return np.zeros(shape, np.float64)
  if a.dtype.kind not in "biuf" or a.shape != shape:
    return None
  a = a.astype(np.float64)
  return a if np.isfinite(a).all() else None


def size_buckets(nd, ng, images, budget):
  """Groups `images` by size for padded batches: sorted by GT count ng, then detection count nd, split so that
  a group's len x max nd x max ng stays under `budget` elements. nd, ng (I,) ints; images (K,) -> list of
  index arrays."""
  order = images[np.lexsort((nd[images], ng[images]))]
  sizes = zip(nd[order].tolist(), ng[order].tolist())
  groups, start, max_d, max_g = [], 0, 0, 0
  for k, (n, m) in enumerate(sizes):
    d, g = max(max_d, n), max(max_g, m)
    if k > start and (k - start + 1) * max(d, 1) * max(g, 1) > budget:
      groups.append(order[start:k])
      start, d, g = k, n, m
    max_d, max_g = d, g
  if start < len(order):
    groups.append(order[start:])
  return groups


def pad_runs(values, starts, counts, images):
  """Per-image runs values[starts[i] : starts[i] + counts[i]] of images -> (padded, (row, rank, src)).

  values (N, ...) -> padded (len(images), max count, ...) with zeros after each run; padded[row, rank] =
  values[src] for every copied entry.
  """
  c = counts[images]
  row = np.repeat(np.arange(len(images)), c)
  rank = np.arange(c.sum()) - np.repeat(np.cumsum(c) - c, c)
  src = np.repeat(starts[images], c) + rank
  out = np.zeros((len(images), int(c.max()) if len(c) else 0) + values.shape[1:], values.dtype)
  out[row, rank] = values[src]
  return out, (row, rank, src)


def image_score_order(image, score, n_images):
  """Stable order of detections grouped by image (ascending index), score-descending within an image, file
  order among ties: the order both toolkits process detections in. image (N,) ints, score (N,) -> (N,)."""
  by_score = np.argsort(-score, kind="stable")
  key = image[by_score]
  if n_images <= 1 << 16:
    key = key.astype(np.uint16)  # numpy's stable sort of 16-bit ints is a radix sort
  return by_score[np.argsort(key, kind="stable")]
