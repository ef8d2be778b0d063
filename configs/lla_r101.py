"""LLA.FCOS, ResNet-101 FPN, CrowdHuman: the R-50 recipe with a deeper backbone."""
from configs import lla_r50


def get_config():
  c = lla_r50.get_config()
  c.model.backbone.depth = 101
  return c
