"""Faster R-CNN, ResNet-50 FPN, CrowdHuman, the released recipe of the LLA study's two-stage baseline
(cvpods playground detection/crowdhuman/rcnn/faster_rcnn.res50.fpn.crowdhuman.800size.1x/config.py on
cvpods rcnn_fpn_config.py; the LLA repository's rcnn.res50.fpn.crowdhuman.800size.30k holds the same files).

python main.py --config=configs/faster_rcnn_r50.py --workdir=W --config.data.data_dir=PREPARED
    [--config.model.backbone.pretrained=R-50.pkl]        # detectron2://ImageNetPretrained/MSRA/R-50.pkl
python main.py --config=configs/faster_rcnn_r50.py --workdir=W --mode=convert --config.convert.source=model_final.pth

Solver: SGD momentum 0.9, LR 0.02 for a global batch of 16 (8 GPUs x 2), WD 1e-4 (none on norms), linear
warmup over 1000 steps from 0.001, x0.1 at 18750 and 24375, 28125 steps; the linear scaling rule
(train.scale_by_batch) rescales LR, steps and decay points for other batches (B = 8: LR 0.01, 56250
steps, decay at 37500 / 48750), warmup unchanged.
"""
import ml_collections

from configs import base


def add_faster_rcnn(c):
  """The Faster R-CNN sections on a common config: model.fpn (P2..P6, max-pooled P6), model.rpn,
  model.box_head, the pieces' options (rcnn: released values) and the test thresholds."""
  c.method = "faster_rcnn"
  m = c.model
  m.fpn = f = ml_collections.ConfigDict()
  f.channels = 256
  f.in_levels = (2, 3, 4, 5)        # res2..res5 feed the top-down path
  f.out_levels = (2, 3, 4, 5, 6)    # P2..P6
  f.top_block = "maxpool"           # LastLevelMaxPool: P6 = P5[::2, ::2], RPN only
  m.rpn = ml_collections.ConfigDict(dict(num_anchors=3))      # 3 ratios x 1 size per level
  m.box_head = ml_collections.ConfigDict(dict(num_fc=2, fc_dim=1024))

  # The pieces' options by name (lla_jax/methods/faster_rcnn.py); these are the released values.
  c.rcnn = r = ml_collections.ConfigDict()
  r.anchor_sizes = ((32,), (64,), (128,), (256,), (512,))
  r.anchor_ratios = ((1.0, 2.0, 3.0),)
  r.anchor_offset = 0.0
  r.size_divisibility = 32
  r.rpn_iou_thresholds = (0.3, 0.7)
  r.rpn_batch_size_per_image = 256
  r.rpn_positive_fraction = 0.5
  r.rpn_pre_nms_topk = (12000, 6000)    # per level (train, test)
  r.rpn_post_nms_topk = (2000, 1000)    # per image (train, test)
  r.rpn_nms_thresh = 0.7
  r.rpn_min_size = 2.0
  r.rpn_clip_proposals = False          # the playground rpn.py comments the clip out (True: stock detectron2)
  r.roi_iou_threshold = 0.5
  r.roi_ignore_ioa = True               # MatcherIgnore (False: plain Matcher)
  r.roi_batch_size_per_image = 512
  r.roi_positive_fraction = 0.5         # the playground config; cvpods' default is 0.25
  r.pooler_resolution = 7
  r.pooler_max_grid = (8, 8)            # static ROIAlignV2 sample slots per bin (lla_jax/models/roi_align.py)

  c.data.size_divisibility = 32
  c.test.score_thresh = 0.05
  c.test.nms_thresh = 0.5
  c.test.max_detections = 300

  tr = c.train
  tr.optimizer = "sgd"
  tr.base_lr = 0.02
  tr.momentum = 0.9
  tr.weight_decay = 1e-4
  tr.warmup_steps = 1000
  tr.warmup_factor = 0.001
  tr.batch_size = 16
  tr.reference_batch_size = 16
  tr.scale_by_batch = True
  tr.steps = 28125
  tr.lr_steps = (18750, 24375)
  tr.lr_gamma = 0.1
  tr.checkpoint_every = 1000
  return c


def get_config():
  return add_faster_rcnn(base.get_common_config())
