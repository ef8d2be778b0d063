"""Shared helpers of the assigner tests: run an assigner on one numpy image, compare with a reference."""
import functools

import jax
import numpy as np

_JITTED = {}
FIELDS = ("matched_gt", "fg", "valid", "box_targets", "aux_target", "num_fg")


def run(assign, points, gt_boxes, gt_classes, gt_valid, cfg=None, num_classes=1, seed=0, jit=True):
  """assign(...) on one image with random predictions (the static assigners must ignore them), jitted
  (one compile instead of one per eager op) unless jit=False."""
  rng = np.random.default_rng(seed)
  a = len(points.xy)
  logits = rng.normal(size=(a, num_classes)).astype(np.float32)
  ltrb = rng.uniform(0, 50, size=(a, 4)).astype(np.float32)
  if not jit:
    fn = functools.partial(assign, cfg=cfg)
  elif cfg is None:  # one jitted function per assigner, so equal shapes reuse the compilation
    fn = _JITTED.setdefault(assign, jax.jit(functools.partial(assign, cfg=None)))
  else:
    fn = jax.jit(functools.partial(assign, cfg=cfg))
  return fn(points.xy, points.strides, logits, ltrb, gt_boxes, gt_classes, gt_valid)


def run_batch(assign, points, gt_boxes, gt_classes, gt_valid, cfg=None):
  """jit(vmap(assign)) over a leading batch axis of the GT arrays; predictions random."""
  b, a = gt_boxes.shape[0], len(points.xy)
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(b, a, 1)).astype(np.float32)
  ltrb = rng.uniform(0, 50, size=(b, a, 4)).astype(np.float32)
  fn = jax.jit(jax.vmap(functools.partial(assign, cfg=cfg), in_axes=(None, None, 0, 0, 0, 0, 0)))
  return fn(points.xy, points.strides, logits, ltrb, gt_boxes, gt_classes, gt_valid)


def assert_same(targets, expected, where=""):
  """Targets (or a dict of its fields) equal the reference dict: indices and masks exactly, floats to
  float32 rounding."""
  for f in FIELDS:
    got = np.asarray(targets[f] if isinstance(targets, dict) else getattr(targets, f))
    want = np.asarray(expected[f])
    assert got.shape == want.shape, f"{where} {f}: shape {got.shape} != {want.shape}"
    if f in ("box_targets", "aux_target", "num_fg"):
      np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=f"{where} {f}")
    else:
      bad = np.flatnonzero(got != want)
      assert bad.size == 0, f"{where} {f}: {bad.size} points differ, first {bad[:5]}: got {got[bad[:5]]} want {want[bad[:5]]}"


def as_dict(targets, i=None):
  """Targets (image i of batched Targets) as a dict of numpy arrays."""
  return {f: np.asarray(getattr(targets, f)) if i is None else np.asarray(getattr(targets, f))[i] for f in FIELDS}
