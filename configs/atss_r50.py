"""ATSS baseline, ResNet-50 FPN, CrowdHuman (LLA repository playground/detection/crowdhuman/
atss.res50.fpn.crowdhuman.800size.30k/config.py): as FCOS but the adaptive IoU threshold
over the 9 nearest points per level, box loss weight 2.0. Test max size 1400 (upstream 14000 typo)."""
from configs import base, fcos_r50


def atss_settings(c):
  c = fcos_r50.fcos_settings(c)
  c.assigner.name = "atss"
  c.assigner.topk = 9             # ATSS TOPK (the same field is LLA's K)
  c.loss.box_weight = 2.0
  return c


def get_config():
  return atss_settings(base.get_base_config())
