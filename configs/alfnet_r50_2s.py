"""ALFNet-2s, ResNet-50 (Keras-v1 layout), CityPersons: the released recipe (alfnet.md §9).

python main.py --config=configs/alfnet_r50_2s.py --workdir=W --config.data.data_dir=PREPARED

`alfnet_config(num_steps, backbone)` is the shared ALFNet recipe the other alfnet_* configs call.
"""
import ml_collections

from configs import base

# (neg <, pos >=) IoU thresholds per step (alfnet.md §7): the config values, except that the
# 2-step training scripts override step 2 to {0.5, 0.7}.
STEP_THRESHOLDS = {1: ((0.3, 0.5),),
                   2: ((0.3, 0.5), (0.5, 0.7)),
                   3: ((0.3, 0.5), (0.4, 0.65), (0.5, 0.75))}


def alfnet_config(num_steps: int = 2, backbone: str = "resnet"):
  c = base.get_base_config()
  c.method = "alfnet"

  # CityPersons (alfnet.md §10-§12): 640x1280 random scale-crops for training, full 1024x2048 for testing.
  d = c.data
  d.name = "citypersons"
  d.train_size = (640, 1280)      # every training sample is resized to exactly this (H, W)
  d.eval_size = (1024, 2048)      # test input: the full image, no resize
  d.min_size = 1024
  d.max_size = 2048
  d.pad_size = (640, 1280)
  d.size_divisibility = 64
  d.flip_prob = 0.5
  d.bgr = True
  d.pixel_mean = (103.939, 116.779, 123.68)   # Keras caffe-style BGR mean, no std scaling
  d.pixel_std = (1.0, 1.0, 1.0)
  d.max_boxes = 128               # GT + ignore regions; train max is 99 per image (datasets.md §2.3)

  b = c.model.backbone
  b.name = backbone               # resnet | mobilenet (lla_jax/models/alfnet.py)
  if backbone == "resnet":
    b.depth = 50
    b.layout = "keras"            # conv biases, BN eps 1e-3, TF-same max-pool, stride on the first 1x1
    b.norm = "frozen_bn"
    b.freeze_at = 2               # conv1 + res2 not trainable
    b.width = 64
  else:
    b.alpha = 1.0
    b.norm = "bn"                 # ordinary trainable Keras BN (momentum 0.99, eps 1e-3)
    b.frozen_blocks = 1           # conv1 and depthwise-separable block 1 kernels frozen

  c.alfnet = a = ml_collections.ConfigDict()
  a.num_steps = num_steps
  a.step_thresholds = STEP_THRESHOLDS[num_steps]
  a.std = (0.1, 0.1, 0.2, 0.2)
  a.strides = (8, 16, 32, 64)
  a.anchor_scales = ((16, 24), (32, 48), (64, 80), (128, 160))   # anchor widths per level
  a.anchor_ratio = 0.41
  a.ignore_thr = 0.5              # ignored <=> sum_r inter / area(r) > 0.5
  a.top_n = 3                     # rule (iii): each GT's 3 best boxes are positive
  a.min_train_size = 10.0         # step >= 2: boxes with a +1 side <= 10 px are invalid (roi_stride)
  a.focal_alpha = 0.25
  a.focal_gamma = 2.0
  a.max_log_wh = ml_collections.FieldReference(None, field_type=float)  # optional dw/dh clamp; upstream none
  a.cpb_channels = 256
  a.p3_channels = 512
  a.p6_channels = 256
  a.prior_prob = 0.01
  a.alternating = False           # True: faithful per-step updates (methods/alfnet.make_alternating_step)
  a.test_step = num_steps         # score = prod of steps 1..test_step, boxes B^test_step
  a.test_min_size = 16.0          # drop boxes with a +1 side < 16 px
  a.pre_nms_topk = 6000

  # Evaluation (lla_jax/evaluate.py): the CityPersons toolbox setups at IoU 0.5 and 0.75, also on synthetic data.
  c.eval_protocol = "citypersons"

  t = c.test
  t.score_thresh = 0.1
  t.nms_thresh = 0.5              # suppress IoU >= 0.5 (+1 areas)
  t.max_detections = 100
  t.batch_size = 2

  tr = c.train
  tr.optimizer = "adam"           # Keras Adam, constant lr, no weight decay
  tr.base_lr = 1e-4
  tr.adam_b1 = 0.9
  tr.adam_b2 = 0.999
  tr.adam_eps = 1e-8
  tr.momentum = 0.0
  tr.weight_decay = 0.0
  tr.warmup_steps = 0
  tr.warmup_factor = 1.0
  tr.batch_size = 20              # 2 GPUs x 10, loss over the merged batch
  tr.reference_batch_size = 20
  tr.scale_by_batch = False
  tr.steps = 15000                # 150 "epochs" x 100 iterations
  tr.lr_steps = ()
  tr.lr_gamma = 1.0
  tr.checkpoint_every = 100       # one "epoch"; upstream selects the best checkpoint by val MR
  tr.keep_checkpoints = 10
  return c


def get_config():
  return alfnet_config(2)
