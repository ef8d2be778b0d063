"""Quick start: ALFNet-2s with a tiny from-scratch ResNet-18 on the built-in synthetic crowds, about
ten minutes on a 2-core CPU (training and evaluation). Evaluated with the CityPersons MR setups at
IoU 0.5 and 0.75 (config.evals).

python main.py --config=configs/alfnet_quickstart.py --workdir=/tmp/alf_q
python main.py --config=configs/alfnet_quickstart.py:1 --workdir=/tmp/alf_q1    # ALFNet-1s (":3": 3 steps)
python main.py --config=configs/alfnet_quickstart.py --workdir=/tmp/alf_qa --config.alfnet.alternating=True
"""
from configs.alfnet import alfnet_config


def get_config(num_steps="2"):
  c = alfnet_config(int(num_steps))
  d = c.data
  d.name = "synthetic_crowds"
  d.source = "numpy"              # rendered on the fly, no TensorFlow
  d.render_size = (256, 320)
  d.train_size = (256, 320)
  d.eval_size = (256, 320)
  d.min_size = 256
  d.max_size = 320
  d.pad_size = (256, 320)         # the rendered size: no padding, anchors clipped to the image as upstream
  d.max_boxes = 64
  d.num_train_images = 2000
  d.num_val_images = 100
  d.bgr = False
  d.pixel_mean = (123.675, 116.28, 103.53)
  d.pixel_std = (58.395, 57.12, 57.375)
  b = c.model.backbone
  b.depth = 18
  b.layout = "keras"
  b.norm = "bn"                   # trained from scratch: batch statistics (GroupNorm is slower on a CPU)
  b.freeze_at = 0
  b.width = 16
  a = c.alfnet
  # People are 16-205 px tall at 256x320: anchors of half the CityPersons widths (heights 20-195).
  a.anchor_scales = ((8, 12), (16, 24), (32, 48), (64, 80))
  a.min_train_size = 4.0
  a.test_min_size = 8.0
  a.cpb_channels = 32
  a.p3_channels = 32
  a.p6_channels = 32
  a.pre_nms_topk = 1000
  c.train.base_lr = 1e-3          # Adam from scratch (1e-4 is the fine-tuning rate of the R-50 recipe)
  c.train.batch_size = 8
  c.train.reference_batch_size = 8
  c.train.steps = 1000
  c.train.lr_steps = (800,)       # one decay by 10 for the last fifth (the released recipe keeps 1e-4 constant)
  c.train.lr_gamma = 0.1
  c.train.log_every = 50
  c.train.checkpoint_every = 400
  c.train.keep_checkpoints = 2
  c.test.batch_size = 8
  return c
