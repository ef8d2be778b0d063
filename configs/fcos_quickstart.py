"""The quick start with the FCOS assigner and loss: same data, network, schedule and seed."""
from configs import fcos_r50, quickstart


def get_config():
  return fcos_r50.fcos_settings(quickstart.get_config())
