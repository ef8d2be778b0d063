"""Label assigners: one function each, `assign(points, strides, cls_logits, ltrb, gt_boxes,
gt_classes, gt_valid, cfg=None) -> Targets` for one image (lla_jax/types.py). FCOS, ATSS and LLA
differ only here; `assign_batch` vmaps the configured one over a batch under stop_gradient.
"""
from __future__ import annotations

import importlib

import jax

NAMES = ("lla", "fcos", "atss")


def get_assigner(name: str):
  """The `assign` function of the assigner called `name`."""
  if name not in NAMES:
    raise ValueError(f"config.assigner.name={name!r}: expected one of {NAMES}")
  return importlib.import_module(f"lla_jax.assigners.{name}").assign


def assign_batch(cfg, points, strides, cls_logits, ltrb, gt_boxes, gt_classes, gt_valid):
  """Targets for a batch: per-image assignment vmapped over the leading axis of the predictions
  and GT (points/strides are shared), entirely under stop_gradient (lla.md §6, Q4)."""
  assign = get_assigner(cfg.name)
  args = jax.lax.stop_gradient((cls_logits, ltrb, gt_boxes, gt_classes, gt_valid))
  per_image = lambda c, l, b, k, v: assign(points, strides, c, l, b, k, v, cfg)
  return jax.lax.stop_gradient(jax.vmap(per_image)(*args))
