"""Shared defaults.

`get_common_config()`: what every method reads (seed, data, backbone, test, train, evals, convert, export).
`get_base_config()`: the LLA.FCOS R-50 CrowdHuman recipe of the released code (LLA repository,
playground/detection/crowdhuman/lla.res50.fpn.crowdhuman.800size.30k/config.py, on cvpods'
defaults): the common sections plus the FCOS-family ones (`add_fcos_family`: model.fpn, model.head,
assigner, loss, test.topk_per_level). Each experiment file starts from one of them and changes what
differs; ALFNet (configs/alfnet.py) adds its own `alfnet` section to the common config.
"""
import ml_collections


def get_common_config():
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.method = "fcos_family"        # the lla_jax/methods entry that builds model, loss and predict
  # Evaluators (lla_jax/evaluation/registry.py), big_vision style: entry name -> {type (default: the
  # name), split (default: data.eval_split)}, run in name order, the first is the headline (best
  # checkpoint, eval_metrics.json). Empty: the data set's own evaluators (data_pipelines/registry.py).
  c.evals = ml_collections.ConfigDict()

  # Data (data_pipelines/). Boxes xyxy in input pixels; see lla_jax/types.py for the Batch contract.
  c.data = d = ml_collections.ConfigDict()
  d.name = "crowdhuman"           # crowdhuman | citypersons | synthetic_crowds
  d.source = "tfds"               # tfds (tf.data pipeline) | numpy (synthetic only; no TensorFlow needed)
  d.data_dir = ml_collections.FieldReference(None, field_type=str)  # TFDS data_dir holding the prepared data set
  d.manual_dir = ml_collections.FieldReference(None, field_type=str)
  d.train_split = "train"
  d.eval_split = "val"
  d.min_size = 800                # ResizeShortestEdge short side
  d.max_size = 1400               # long side cap
  d.pad_size = (1408, 1408)       # static padded (H, W); multiple of 128 keeps P7 integral
  d.size_divisibility = 128
  d.flip_prob = 0.5
  # Training augmentation: flip (FCOS family: resize + horizontal flip) | alfnet (ALFNet's CityPersons
  # random crop / scale, keras_alfnet/data_augment.py); None: the data set's default (data_pipelines/registry.py).
  d.augment = ml_collections.FieldReference(None, field_type=str)
  # The box to learn and evaluate: full | visible | head (CrowdHuman fbox / vbox / hbox; CityPersons and
  # Caltech: full | visible); the data sets' choices are in data_pipelines/registry.py.
  d.box = "full"
  d.bgr = True                    # MSRA caffe weights: BGR, mean only
  d.pixel_mean = (103.530, 116.280, 123.675)
  d.pixel_std = (1.0, 1.0, 1.0)
  d.max_boxes = 500               # static GT padding; more boxes in an image is an error (never silent)
  d.shuffle_buffer = 1000
  d.num_parallel_calls = -1       # tf.data.AUTOTUNE
  d.prefetch = 2
  # Synthetic crowds only: how many images per split and the rendered size.
  d.num_train_images = 2000
  d.num_val_images = 200
  d.render_size = (384, 512)
  d.synthetic_seed = 0
  # tf.data only: size of the pipeline's private thread pool (0 = TensorFlow's default, all cores).
  d.num_threads = 0
  # Training batches of landscape or portrait images only, each padded to its own size (896x1408 or
  # 1408x896 at the CrowdHuman setting): about 36% fewer pixels than data.pad_size.
  d.buckets = False
  # With data.buckets: orientation (the two buckets above) | shape (upstream-like: one bucket per
  # orientation and padded shape, each image's resized size rounded up to data.bucket_divisibility;
  # cvpods pads each aspect-grouped batch to its common size rounded up to 32). Each shape is one more
  # compilation of the training step.
  d.bucket_by = "orientation"
  d.bucket_divisibility = 32

  # Model (lla_jax/models/).
  c.model = m = ml_collections.ConfigDict()
  m.num_classes = 1
  m.dtype = "float32"             # compute dtype: float32 | bfloat16 (parameters stay float32)
  m.backbone = b = ml_collections.ConfigDict()
  b.depth = 50
  b.layout = "caffe"              # caffe (stride in the 1x1) | torchvision (stride in the 3x3) | keras
  b.norm = "frozen_bn"            # frozen_bn | gn | bn
  b.freeze_at = 2                 # 0: nothing frozen, 1: stem, 2: stem + res2, ...
  b.width = 64                    # stem width; stage widths scale with it
  b.bn_eps = ml_collections.FieldReference(None, field_type=float)     # None: the layout's default
  b.stem_pool = ml_collections.FieldReference(None, field_type=str)    # None | symmetric | same
  b.pretrained = ml_collections.FieldReference(None, field_type=str)

  # Inference (lla_jax/postprocess.py).
  c.test = t = ml_collections.ConfigDict()
  t.score_thresh = 0.05
  t.nms_thresh = 0.6
  t.max_detections = 300
  t.batch_size = 8
  # Test-time padding of the FCOS family (data.augment 'flip'; ALFNet evaluates the full image padded to
  # data.eval_size): divisible = each image zero-padded to its own resized size rounded up to
  # test.size_divisibility, as the released code tests (cvpods ImageList, SIZE_DIVISIBILITY 32); images
  # are batched by padded shape, one compilation per shape. fixed = every image padded to data.pad_size
  # (one compilation), which changes the head's GroupNorm statistics and so the detections.
  t.padding = "divisible"
  t.size_divisibility = 32
  t.draw_score_thresh = None      # pictures (lla_jax/pictures.py): detections drawn at score >= this; None = the
                                  # score at FPPI 0.1 on the evaluation's curve (predict: the last evaluation's)

  # Optimisation (lla_jax/optim.py, the loop in lla_jax/train.py).
  c.train = tr = ml_collections.ConfigDict()
  tr.batch_size = 16              # global batch
  tr.base_lr = 0.01
  tr.optimizer = "sgd"            # sgd (with momentum; every released FCOS-family recipe) | adam
  tr.momentum = 0.9
  tr.weight_decay = 1e-4
  tr.warmup_steps = 1000
  tr.warmup_factor = 0.001
  tr.steps = 28125
  tr.lr_steps = (18750, 24735)    # as the released config.py (24735: likely a digit swap of 24375, kept for parity)
  tr.lr_gamma = 0.1
  tr.lr_schedule = "step"         # step (released recipes: lr_steps, lr_gamma) | cosine (decays to 0 at train.steps)
  tr.reference_batch_size = 16    # linear scaling rule: lr, steps, lr_steps and checkpoints scale by 16/batch
  tr.scale_by_batch = True
  tr.log_every = 20
  tr.checkpoint_every = 5000
  tr.keep_checkpoints = 3
  tr.eval_after_train = True
  tr.max_pictures = 8
  tr.eval_every = 0               # evaluate every N steps, keep the best val MR in workdir/best (0: only at the end)
  tr.param_sharding = "replicated"  # replicated (data parallel) | fsdp (parameters and optimizer state split over devices)
  tr.fsdp_min_size = 65536        # fsdp: arrays with fewer elements stay replicated
  tr.max_nonfinite_steps = 5      # stop after this many skipped (NaN / Inf loss or gradient) steps in a row; 0: never
  tr.profile_steps = ()           # (first, last): a jax.profiler trace of these steps into workdir/profile; (): off
  tr.test_nan_at_steps = ()       # TEST ONLY: steps whose loss is replaced by NaN (exercises the non-finite guard)

  # --mode=convert (lla_jax/convert.py): a weights file -> checkpoint `step` in the workdir.
  c.convert = cv = ml_collections.ConfigDict()
  cv.source = ml_collections.FieldReference(None, field_type=str)  # .pkl (MSRA / cvpods), .pth, .npz, .h5
  cv.step = 0                     # checkpoint step to save the converted state as
  cv.strict = True                # stop on missing / mismatched / unplaceable names of the imported scope
  cv.check_pixels = True          # stop when data.bgr / pixel_mean / pixel_std disagree with the weights

  # --mode=export (lla_jax/export.py): W/export/detector.jax, run by lla_jax/serving.py.
  c.export = ex = ml_collections.ConfigDict()
  # Fixed (H, W) the caller pads every resized image to; None: the square --mode=predict pads to.
  ex.input_size = ml_collections.FieldReference(None, field_type=tuple)
  ex.platforms = ("cpu", "cuda")  # lowered for each: one file runs on CPU and NVIDIA GPUs
  return c


def add_fcos_family(c):
  """The FCOS-family sections (LLA.FCOS defaults): FPN, head, label assignment, loss, per-level top-k."""
  m = c.model
  m.fpn = f = ml_collections.ConfigDict()
  f.channels = 256
  f.p6_from = "p5"                # p5 (released LLA/FCOS/ATSS) | c5
  f.in_levels = (3, 4, 5)         # C3..C5 feed the top-down path
  f.out_levels = (3, 4, 5, 6, 7)  # P3..P7 (Faster R-CNN: in (2, 3, 4, 5), out (2, ..., 6), top_block maxpool)
  f.top_block = "conv"            # conv (P6 = 3x3/2 conv, P7 on ReLU(P6)) | maxpool (P6 = 1x1/2 max-pool of P5)
  m.head = h = ml_collections.ConfigDict()
  h.channels = 256
  h.num_convs = 4
  h.gn_groups = 32
  h.prior_prob = 0.01
  h.aux = "iou"                   # iou (LLA) | centerness (FCOS, ATSS)
  h.strides = (8, 16, 32, 64, 128)  # 2 ** fpn.out_levels

  # Label assignment (lla_jax/assigners/).
  c.assigner = a = ml_collections.ConfigDict()
  a.name = "lla"                  # lla | fcos | atss
  a.topk = 10                     # LLA.TopK
  a.reg_cost = 1.5                # LLA.REG_COST (lambda)
  a.inside_penalty = 1000.0       # soft inside constraint: cost added to points outside the box
  a.hard_inside = False           # deviation switch: forbid points outside the box outright
  a.focal_alpha = 0.25
  a.focal_gamma = 2.0

  # Loss (lla_jax/losses.py, lla_jax/methods/fcos_family.py).
  c.loss = l = ml_collections.ConfigDict()
  l.focal_alpha = 0.25
  l.focal_gamma = 2.0
  l.box_weight = 2.0              # LLA 2.0 x GIoU
  l.box_weighting = "none"        # none (LLA) | centerness (FCOS, ATSS: GIoU weighted by the centerness target)
  l.aux_weight = 0.5              # LLA 0.5 x IoU BCE
  l.min_num_fg = 1.0              # max(min_num_fg, num_fg); upstream LLA has no guard (documented deviation)

  c.test.topk_per_level = 1000
  return c


def get_base_config():
  return add_fcos_family(get_common_config())
