"""configs/alfnet.py:r50,steps=2 under its earlier name."""
from configs import alfnet
from configs.alfnet import alfnet_config  # noqa: F401  (the earlier home of the shared recipe)


def get_config():
  return alfnet.get_config("r50,steps=2")
