"""The FCOS-family detector (LLA.FCOS, FCOS, ATSS share it; the LLA playground fcos.py on cvpods
cvpods/modeling/meta_arch/fcos.py): backbone → FPN → head.

Outputs are dense per point, levels concatenated P3..P7 and row-major inside a level, i.e. exactly the
order of `lla_jax.priors.fpn_points(H, W, strides)`.

Optimiser masks (the released config.py on cvpods defaults): `trainable_mask` is False for the frozen stages (FREEZE_AT) and every
FrozenBN vector; `decay_mask` is True for conv kernels, conv biases and the per-level scales, False
for normalisation params (GroupNorm, BN; WEIGHT_DECAY_NORM = 0). Frozen parameters must also get no
decay: apply weight decay inside the trainable mask.
"""
from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from lla_jax.models import backbones, fpn, heads, layers

FPN_STRIDES = (8, 16, 32, 64, 128)


def concat_levels(per_level, trailing: int):
  """[(B, h_l, w_l, *tail)] -> (B, Σ h_l·w_l, *tail), row-major inside each level (P3 first)."""
  return jnp.concatenate([x.reshape(x.shape[0], -1, *x.shape[3:3 + trailing]) for x in per_level], axis=1)


class FCOSDetector(nn.Module):
  """images (B, H, W, 3) normalised as the backbone expects ->

  {'cls_logits': (B, A, num_classes), 'ltrb': (B, A, 4) pixels ≥ 0, 'aux_logits': (B, A)}, float32,
  A = Σ_l h_l·w_l over P3..P7. `config` is the `model` section of the experiment config; compute runs in
  `config.dtype` (float32 | bfloat16), parameters are float32.
  """
  config: Any

  @nn.compact
  def __call__(self, images, train: bool = False):
    cfg = self.config
    dtype = layers.compute_dtype(cfg.dtype)
    f = cfg.fpn
    out_levels = tuple(f.get("out_levels", (3, 4, 5, 6, 7)))
    strides = tuple(2 ** level for level in out_levels)
    if tuple(cfg.head.strides) != strides:
      raise ValueError(f"model.head.strides={tuple(cfg.head.strides)}: the P{out_levels[0]}..P{out_levels[-1]} pyramid "
                       f"has strides {strides}")
    c = backbones.build_backbone(cfg.backbone, dtype, name="backbone")(images, train)
    p = fpn.FPN(channels=f.channels, p6_from=f.p6_from, in_levels=tuple(f.get("in_levels", (3, 4, 5))),
                out_levels=out_levels, top_block=f.get("top_block", "conv"), dtype=dtype, name="fpn")(c)
    h = cfg.head
    out = heads.FCOSHead(num_classes=cfg.num_classes, channels=h.channels, num_convs=h.num_convs,
                         gn_groups=h.gn_groups, prior_prob=h.prior_prob, aux=h.aux, strides=tuple(h.strides),
                         dtype=dtype, name="head")(p)
    return {"cls_logits": concat_levels(out["cls_logits"], 1), "ltrb": concat_levels(out["ltrb"], 1),
            "aux_logits": concat_levels(out["aux_logits"], 0)}


def build_detector(model_cfg) -> FCOSDetector:
  """The detector of a `config.model` section (frozen copy, so later config edits cannot leak in)."""
  if isinstance(model_cfg, ml_collections.ConfigDict):
    model_cfg = ml_collections.FrozenConfigDict(model_cfg)
  return FCOSDetector(model_cfg)


def trainable_mask(params: Mapping, model_cfg) -> dict:
  """pytree of bool like `params`: False for FrozenBN vectors and everything in the frozen stages."""
  if "backbone" not in params:
    raise ValueError(f"not a detector param tree: top-level keys {sorted(params)} lack 'backbone'")
  mask = layers.map_params(params, lambda path, name, module: not layers.is_frozen_bn(module))
  mask["backbone"] = backbones.trainable_mask(params["backbone"], model_cfg.backbone)
  return mask


def decay_mask(params: Mapping) -> dict:
  """pytree of bool like `params`: True for conv kernels, conv biases (a 'bias' beside a 'kernel') and the
  per-level 'scales'; False for norm params (GroupNorm / BN scale and bias, FrozenBN vectors)."""

  def rule(path, name, module):
    if layers.is_frozen_bn(module):
      return False
    return name == "kernel" or (name == "bias" and "kernel" in module) or name == "scales"

  return layers.map_params(params, rule)
