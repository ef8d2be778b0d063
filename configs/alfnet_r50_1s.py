"""configs/alfnet.py:r50,steps=1 under its earlier name."""
from configs import alfnet


def get_config():
  return alfnet.get_config("r50,steps=1")
