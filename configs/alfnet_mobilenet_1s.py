"""ALFNet-1s, MobileNet v1 (alpha 1, trainable BN), CityPersons (alfnet.md §2.2; results unverified upstream).

python main.py --config=configs/alfnet_mobilenet_1s.py --workdir=W --config.data.data_dir=PREPARED
"""
from configs.alfnet_r50_2s import alfnet_config


def get_config():
  return alfnet_config(1, backbone="mobilenet")
