"""Faster R-CNN on the quick start's terms: the synthetic crowds, ResNet-18 width 16 with BatchNorm from
scratch, 256 x 320, batch 8, Adam 3e-3, 1200 steps (configs/quickstart.py), minutes on a CPU.

python main.py --config=configs/faster_rcnn_quickstart.py --workdir=/tmp/frcnn_quickstart

Changed from the released recipe (configs/faster_rcnn_r50.py) for the CPU, all in proportion to an image
of 256 x 320 with at most 64 people instead of 800 x 1400 with hundreds:
  FPN / RPN channels 64 (the quick start's FPN width), box head FC 256 (1024)
  RPN proposals per level before NMS 1000 train / 500 test (12000 / 6000); per image after NMS
      500 train / 300 test (2000 / 1000): there are 20 460 anchors in all
  RoI sample 128 per image (512), still half foreground at most
  pooler_max_grid (2, 2) (8, 8): exact ROIAlignV2 (adaptive grid) for RoIs up to 14 feature cells on
      their level (56 px on P2); a larger RoI takes 2 evenly spaced samples per bin along that axis, as
      sampling_ratio=2 (torchvision's MultiScaleRoIAlign default) would. At (4, 4) the step costs 1.6x
      the wall time on 2 CPU cores (0.80 s against 0.50 s a step on train_bench.py's synthetic batches)
Everything else (anchors, matchers, ignore handling, losses, normalisers, NMS thresholds) is the released code's.
"""
from configs import faster_rcnn_r50, quickstart


def get_config():
  c = quickstart.get_config()        # data, backbone, optimizer, schedule of the quick start
  for section in ("assigner", "loss"):
    del c[section]
  del c.model["head"]
  del c.test["topk_per_level"]
  train = c.train.to_dict()
  c = faster_rcnn_r50.add_faster_rcnn(c)
  c.train.update(train)              # keep the quick start's Adam 3e-3, 1200 steps, batch 8
  c.model.fpn.channels = 64
  c.model.box_head.fc_dim = 256
  r = c.rcnn
  r.rpn_pre_nms_topk = (1000, 500)
  r.rpn_post_nms_topk = (500, 300)
  r.roi_batch_size_per_image = 128
  r.pooler_max_grid = (2, 2)
  return c
