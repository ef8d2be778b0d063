"""LLA.FCOS, ResNet-50 FPN, CrowdHuman, 30 epochs: the released recipe (LLA repository
playground/detection/crowdhuman/lla.res50.fpn.crowdhuman.800size.30k/config.py).

python main.py --config=configs/lla_r50.py --workdir=W --config.data.data_dir=PREPARED
"""
from configs import base


def get_config():
  return base.get_base_config()
