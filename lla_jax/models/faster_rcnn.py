"""The Faster R-CNN network of the LLA study's two-stage baseline (cvpods cvpods/modeling/meta_arch/rcnn.py
GeneralizedRCNN with the playground detection/crowdhuman/rcnn RPN and RoI heads): backbone -> FPN P2..P6
(P6 = max-pool of P5) -> RPN head on P2..P6; the 2-FC box head on RoIAligned P2..P5 features.

The two stages are separate methods of one module because the proposals between them are computed
without gradient (lla_jax.postprocess.rpn_proposals) and pooled per image (lla_jax.models.roi_align):
  features(images, train) -> (P2..P6 [(B, h_l, w_l, C)], objectness_logits (B, A), anchor_deltas (B, A, 4))
  box_head(pooled (R, S, S, C)) -> (cls_logits (R, num_classes + 1), box_deltas (R, 4 num_classes))
`__call__` runs both once (on one zero RoI) so that `init` creates every parameter.

The parameter tree has the FCOS detector's 'backbone' and 'fpn' scopes, so its optimiser masks are
lla_jax.models.detector.trainable_mask / decay_mask (FREEZE_AT and FrozenBN frozen; every conv / FC kernel
and bias decayed, no norm parameter: cvpods optimizer_builder.py, WEIGHT_DECAY_NORM 0).
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from lla_jax.models import backbones, fpn, layers, roi_heads, rpn


class FasterRCNN(nn.Module):
  """`config` is the experiment's `model` section (model.backbone, model.fpn, model.rpn, model.box_head);
  `pooler_resolution` the side S of the pooled RoI features (the first FC takes C S S inputs)."""
  config: Any
  pooler_resolution: int = 7

  def setup(self):
    cfg = self.config
    dtype = layers.compute_dtype(cfg.dtype)
    f = cfg.fpn
    self.backbone = backbones.build_backbone(cfg.backbone, dtype)
    self.fpn = fpn.FPN(channels=f.channels, p6_from=f.get("p6_from", "p5"), in_levels=tuple(f.in_levels),
                       out_levels=tuple(f.out_levels), top_block=f.top_block, dtype=dtype)
    self.rpn = rpn.RPNHead(num_anchors=cfg.rpn.num_anchors, channels=f.channels, dtype=dtype)
    h = cfg.box_head
    self.head = roi_heads.FastRCNNHead(num_classes=cfg.num_classes, fc_dim=h.fc_dim, num_fc=h.num_fc, dtype=dtype)

  def features(self, images, train: bool = False):
    """images (B, H, W, 3) -> (P2..P6 maps, objectness_logits (B, A), anchor_deltas (B, A, 4)), float32 heads."""
    p = self.fpn(self.backbone(images, train))
    logits, deltas = self.rpn(p)
    return p, logits, deltas

  def box_head(self, pooled):
    """pooled (R, S, S, C) RoI features -> (cls_logits (R, C' + 1) background last, box_deltas (R, 4 C'))."""
    return self.head(pooled)

  def __call__(self, images, train: bool = False):
    p, logits, deltas = self.features(images, train)
    s = self.pooler_resolution
    cls, box = self.box_head(jnp.zeros((1, s, s, p[0].shape[-1]), p[0].dtype))
    return {"objectness_logits": logits, "anchor_deltas": deltas, "cls_logits": cls, "box_deltas": box}


def build(model_cfg, pooler_resolution: int = 7) -> FasterRCNN:
  """The network of a `config.model` section (frozen copy, so later config edits cannot leak in)."""
  if isinstance(model_cfg, ml_collections.ConfigDict):
    model_cfg = ml_collections.FrozenConfigDict(model_cfg)
  return FasterRCNN(model_cfg, pooler_resolution=int(pooler_resolution))

