"""ALFNet (Liu et al., ECCV 2018) on CityPersons: the released recipe (ALFNet repository
keras_alfnet/config.py, train.py), one config for every backbone and step count.

python main.py --config=configs/alfnet.py:r50,steps=2 --workdir=W --config.data.data_dir=PREPARED
python main.py --config=configs/alfnet.py:mobilenet,steps=1 --workdir=W --config.data.data_dir=PREPARED

The argument is "<backbone>[,steps=N]": backbone r50 (Keras-v1 ResNet-50 layout) or mobilenet
(MobileNet v1, alpha 1, trainable BN; results unverified upstream); steps 1, 2 (default) or 3.
configs/alfnet_{r50,mobilenet}_{N}s.py name the same configs.
"""
import ml_collections

from configs import base

# (neg <, pos >=) IoU thresholds per step: keras_alfnet/config.py, except that the 2-step training
# scripts (train.py, train_2step_wma.py) override step 2 to {0.5, 0.7}.
STEP_THRESHOLDS = {1: ((0.3, 0.5),),
                   2: ((0.3, 0.5), (0.5, 0.7)),
                   3: ((0.3, 0.5), (0.4, 0.65), (0.5, 0.75))}
BACKBONES = {"r50": "resnet", "mobilenet": "mobilenet"}


def alfnet_config(num_steps: int = 2, backbone: str = "resnet"):
  """The ALFNet recipe with `num_steps` ALF steps on a 'resnet' (Keras-v1 ResNet-50) or 'mobilenet'
  (MobileNet v1) backbone: the common sections (configs/base.py) and an `alfnet` section; no FPN, head,
  assigner or loss sections (those are the FCOS family's)."""
  c = base.get_common_config()
  c.method = "alfnet"

  # CityPersons (keras_alfnet/data_generators.py, data_augment.py): 640x1280 random scale-crops for
  # training, the full 1024x2048 image for testing.
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
  d.max_boxes = 128               # GT + ignore regions; the train split has at most 99 per image

  b = c.model.backbone
  b.name = backbone               # resnet | mobilenet (lla_jax/models/backbones.py)
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

  # keras_alfnet/config.py (anchors, thresholds, std, test settings) and model/model_alf.py (the CPBs).
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
  a.alternating = False           # True: train.py's per-step updates (methods/alfnet.make_alternating_step)
  a.test_step = num_steps         # score = prod of steps 1..test_step, boxes B^test_step
  a.test_min_size = 16.0          # drop boxes with a +1 side < 16 px
  a.pre_nms_topk = 6000

  # Evaluation (lla_jax/evaluation/protocols.py): the CityPersons toolbox setups at IoU 0.5 and 0.75, also
  # on synthetic data.
  c.evals.citypersons = ml_collections.ConfigDict({"split": c.data.get_ref("eval_split")})

  t = c.test
  t.score_thresh = 0.1
  t.nms_thresh = 0.5              # suppress IoU >= 0.5 (+1 areas)
  t.max_detections = 100
  t.batch_size = 2

  tr = c.train                    # keras_alfnet train.py
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


def parse_arg(arg: str) -> tuple:
  """"r50,steps=2" -> (backbone name, steps); errors name the expected form."""
  parts = [p.strip() for p in arg.split(",") if p.strip()]
  if not parts or parts[0] not in BACKBONES:
    raise ValueError(f"configs/alfnet.py:{arg}: expected '<backbone>[,steps=N]' with backbone in {sorted(BACKBONES)}")
  steps = 2
  for p in parts[1:]:
    key, _, value = p.partition("=")
    if key != "steps" or value not in ("1", "2", "3"):
      raise ValueError(f"configs/alfnet.py:{arg}: unexpected {p!r}; expected steps=1, 2 or 3")
    steps = int(value)
  return BACKBONES[parts[0]], steps


def get_config(arg: str = "r50,steps=2"):
  backbone, steps = parse_arg(arg)
  return alfnet_config(steps, backbone=backbone)
