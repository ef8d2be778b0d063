"""LLA.FCOS, ResNet-50 FPN, on Caltech Pedestrian (new annotations): train on train_10x, evaluate on the
standard 4024-frame test set with the Caltech dbEval (lla_jax/evaluation/caltech.py; Reasonable is the headline).

python -m data_pipelines.prepare caltech --manual_dir DIR --data_dir PREPARED
python main.py --config=configs/lla_r50_caltech.py --workdir=W --config.data.data_dir=PREPARED

The LLA repository has no Caltech recipe; this is its CrowdHuman recipe (configs/lla_r50.py: LLA assignment,
head, losses, SGD 0.01 for batch 16, 28 125 iterations with steps at 18 750 / 24 735) with the data changed:
  - train_10x (42 782 frames; 28 125 x 16 images is about 10.5 passes over it), test every 30th frame of set06-10.
  - frames enlarged 1.6x: short side 768 (480x640 -> 768x1024, exact multiples of 128, so no padding; the
    CrowdHuman recipe's 800 would pad 800x1067 to 896x1152). Caltech pedestrians of the Reasonable setup are
    50 px tall and up, below the FCOS-family's smallest objects at 1x.
  - data.max_boxes 64, evaluation with the Caltech protocol (the registry's default for data.name 'caltech').
"""
from configs import base


def get_config():
  c = base.get_base_config()
  d = c.data
  d.name = "caltech"
  d.train_split = "train_10x"
  d.eval_split = "test"
  d.min_size = 768
  d.max_size = 1024
  d.pad_size = (768, 1024)
  d.max_boxes = 64
  return c
