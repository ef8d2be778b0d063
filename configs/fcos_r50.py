"""FCOS baseline, ResNet-50 FPN, CrowdHuman (LLA repository playground/detection/crowdhuman/
fcos.res50.fpn.crowdhuman.800size.30k/config.py and fcos.py): centerness branch, centre sampling 1.5
with size ranges, GIoU x centerness target (weight 1.0), normaliser max(1, non-ignore fg)."""
from configs import base


def fcos_settings(c):
  c.assigner.name = "fcos"
  c.model.head.aux = "centerness"
  c.loss.box_weight = 1.0
  c.loss.box_weighting = "centerness"
  c.loss.aux_weight = 1.0
  c.loss.min_num_fg = 1.0
  return c


def get_config():
  return fcos_settings(base.get_base_config())
