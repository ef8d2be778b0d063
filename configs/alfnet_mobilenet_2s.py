"""configs/alfnet.py:mobilenet,steps=2 under its earlier name."""
from configs import alfnet


def get_config():
  return alfnet.get_config("mobilenet,steps=2")
