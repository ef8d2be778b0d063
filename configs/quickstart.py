"""Quick start: LLA.FCOS with a tiny ResNet-18 on the built-in synthetic crowds, minutes on a CPU.

python main.py --config=configs/quickstart.py --workdir=/tmp/lla_quickstart
"""
from configs import base


def get_config():
  c = base.get_base_config()
  c.data.name = "synthetic_crowds"
  c.data.render_size = (256, 320)
  c.data.min_size = 256
  c.data.max_size = 320
  c.data.pad_size = (256, 320)
  c.data.max_boxes = 64
  c.data.num_train_images = 2000
  c.data.num_val_images = 100
  c.data.bgr = False
  c.data.pixel_mean = (123.675, 116.28, 103.53)
  c.data.pixel_std = (58.395, 57.12, 57.375)
  c.model.backbone.depth = 18
  c.model.backbone.layout = "torchvision"
  c.model.backbone.norm = "bn"        # trained from scratch: batch statistics (GN on thin maps is slow on CPU)
  c.model.backbone.freeze_at = 0
  c.model.backbone.width = 16
  c.model.fpn.channels = 64
  c.model.head.channels = 64
  c.model.head.num_convs = 2
  c.model.head.gn_groups = 16
  c.train.batch_size = 8
  c.train.scale_by_batch = False
  # Adam, not the released SGD: from scratch on a CPU budget it learns far faster (README, "Deliberate
  # deviations": at these 1200 steps SGD 0.02 gives MR^-2 70.5, Adam 3e-3 58.0).
  c.train.optimizer = "adam"
  c.train.base_lr = 0.003
  c.train.warmup_steps = 100
  c.train.steps = 1200
  c.train.lr_steps = (950, 1125)
  c.train.log_every = 50
  c.train.checkpoint_every = 400
  c.test.batch_size = 8
  return c
