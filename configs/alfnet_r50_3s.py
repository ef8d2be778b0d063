"""ALFNet-3s, ResNet-50 (Keras-v1 layout), CityPersons (alfnet.md §9; thresholds §7).

python main.py --config=configs/alfnet_r50_3s.py --workdir=W --config.data.data_dir=PREPARED
"""
from configs.alfnet_r50_2s import alfnet_config


def get_config():
  return alfnet_config(3)
