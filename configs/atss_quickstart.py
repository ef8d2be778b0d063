"""The quick start with the ATSS assigner and loss: same data, network, schedule and seed."""
from configs import atss_r50, quickstart


def get_config():
  return atss_r50.atss_settings(quickstart.get_config())
