"""The one place that turns `config.model.backbone` into a network and its optimiser mask.

  name 'resnet' (default; the FCOS-family configs carry no name): ResNet-18/34/50/101 in the caffe,
      torchvision or keras layout (lla_jax/models/resnet.py); depth, layout, norm, freeze_at, width,
      bn_eps, stem_pool.
  name 'mobilenet': MobileNet v1 (lla_jax/models/mobilenet.py, ALFNet keras_alfnet/model/mobilenet_v1.py);
      alpha, frozen_blocks.

Every backbone maps images (B, H, W, 3) to a dict with at least 'C3', 'C4', 'C5' (strides 8, 16, 32)
and takes `train`. The detector, ALFNet, their trainable masks and the weight importers all ask here.
"""
from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn

from lla_jax.models import mobilenet, resnet

KINDS = ("resnet", "mobilenet")


def backbone_kind(backbone_cfg) -> str:
  """'resnet' or 'mobilenet' (backbone.name; absent means ResNet)."""
  kind = backbone_cfg.get("name", "resnet")
  if kind not in KINDS:
    raise ValueError(f"config.model.backbone.name={kind!r}: expected one of {', '.join(map(repr, KINDS))}")
  return kind


def build_backbone(backbone_cfg, dtype: Any, name: str | None = None) -> nn.Module:
  """The backbone module of a `config.model.backbone` section, computing in `dtype`."""
  b = backbone_cfg
  if backbone_kind(b) == "mobilenet":
    return mobilenet.MobileNetV1(alpha=b.get("alpha", 1.0), dtype=dtype, name=name)
  return resnet.ResNet(depth=b.depth, layout=b.layout, norm=b.norm, freeze_at=b.freeze_at, width=b.width, dtype=dtype,
                       bn_eps=b.get("bn_eps", None), stem_pool=b.get("stem_pool", None), name=name)


def trainable_mask(params: Mapping, backbone_cfg) -> dict:
  """Optimiser mask of a backbone param tree: False for frozen stages / blocks and FrozenBN vectors."""
  if backbone_kind(backbone_cfg) == "mobilenet":
    return mobilenet.trainable_mask(params, backbone_cfg.get("frozen_blocks", 1))
  return resnet.trainable_mask(params, backbone_cfg.freeze_at)


def resnet_layout(backbone_cfg) -> str | None:
  """The ResNet layout (caffe | torchvision | keras) the weight formats are checked against; None for
  other backbones."""
  return backbone_cfg.get("layout", None) if backbone_kind(backbone_cfg) == "resnet" else None
