"""The Faster R-CNN method: the training loss is the released normalisation of the pieces (numpy sums,
image by image), the random samples are keyed by the global image index (1 device and 8 draw the same),
one sharded train step equals one single-device step, and inference gives fixed-size detections."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import faster_rcnn_quickstart, faster_rcnn_r50
from lla_jax import postprocess, priors, sharding
from lla_jax.assigners import rcnn as rcnn_assign
from lla_jax.methods import faster_rcnn, get_method
from lla_jax.models import faster_rcnn as frcnn_model
from lla_jax.models import roi_align
from tests.test_sharding import LOSS_RTOL, STATE_RTOL, assert_states_close, one_step, random_batch

HW = (64, 96)


def tiny_config(**train):
  """The Faster R-CNN quick start shrunk for fast compiles: 64 x 96 inputs, 8 boxes, few proposals."""
  c = faster_rcnn_quickstart.get_config()
  c.data.pad_size = HW
  c.data.max_boxes = 8
  c.model.backbone.width = 8
  c.model.fpn.channels = 16
  c.model.box_head.fc_dim = 32
  c.rcnn.rpn_pre_nms_topk = (200, 100)
  c.rcnn.rpn_post_nms_topk = (64, 32)
  c.rcnn.roi_batch_size_per_image = 32
  c.rcnn.pooler_max_grid = (2, 2)
  c.test.max_detections = 20
  c.train.warmup_steps = 0
  c.train.update(train)
  return c


@pytest.fixture(scope="module")
def tiny():
  config = tiny_config()
  method = get_method(config)
  with jax.default_prng_impl("unsafe_rbg"):   # threefry makes the Flax init compile ~8x slower on CPU
    variables = jax.jit(lambda: method.init(jax.random.key(0), HW))()
  return config, method, variables


def test_registered_and_configs():
  c = faster_rcnn_r50.get_config()
  assert c.method == "faster_rcnn" and c.train.base_lr == 0.02 and c.train.lr_steps == (18750, 24375)
  assert c.train.steps == 28125 and c.train.batch_size == 16 and c.test.nms_thresh == 0.5
  q = faster_rcnn_quickstart.get_config()
  assert (q.train.optimizer, q.train.base_lr, q.train.steps, q.train.batch_size) == ("adam", 0.003, 1200, 8)
  assert q.model.backbone.depth == 18 and q.model.backbone.width == 16 and tuple(q.data.pad_size) == (256, 320)
  bad = tiny_config()
  bad.model.fpn.top_block = "conv"
  with pytest.raises(ValueError, match="top_block='maxpool'"):
    get_method(bad)
  bad = tiny_config()
  bad.data.pad_size = (64, 100)
  with pytest.raises(ValueError, match="multiples of rcnn.size_divisibility=32"):
    get_method(bad)


def _bce(x, t):
  return np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))


def _smooth_l1(d, beta=1.0):
  d = np.abs(d)
  return np.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta)


def test_loss_is_the_pieces_normalised_as_released(tiny):
  """method.loss against a per-image re-computation: the same network outputs, the pieces called one image at
  a time with image i's key fold_in(rng, i), and the four losses summed in numpy with cvpods' normalisers
  (RPN: / (256 B); RoI: CE mean and box sum / the number of sampled RoIs of the batch)."""
  config, method, variables = tiny
  batch = random_batch(3, b=4)
  rng = jax.random.key(7)
  params, state = variables["params"], {k: v for k, v in variables.items() if k != "params"}
  total, (parts, _) = jax.jit(method.loss)(params, state, batch, rng)

  opts = faster_rcnn.piece_options(config)
  model = frcnn_model.build(config.model, 7)
  (p, logits, deltas), _ = model.apply(variables, batch["image"], train=True, method="features",
                                       mutable=["batch_stats"])
  anchors, starts = priors.rcnn_anchors(HW, opts)
  rpn_cls = rpn_loc = 0.0
  ce, box, n_rois = [], 0.0, 0
  for i in range(4):
    k_rpn, k_roi = jax.random.split(jax.random.fold_in(rng, i), 2)
    gt = (batch["gt_boxes"][i], batch["gt_classes"][i], batch["gt_valid"][i])
    t = rcnn_assign.rpn_assign(anchors, *gt, opts)
    s = rcnn_assign.sample_rpn(t.labels, k_rpn, opts)
    idx, pos = np.asarray(s.index)[np.asarray(s.valid)], np.asarray(s.positive)[np.asarray(s.valid)]
    lg, dl, tg = np.asarray(logits[i], np.float64), np.asarray(deltas[i], np.float64), np.asarray(t.box_targets)
    assert np.all(np.asarray(t.labels)[idx] == pos.astype(int))
    rpn_cls += _bce(lg[idx], pos.astype(np.float64)).sum()
    rpn_loc += _smooth_l1(dl[idx[pos]] - tg[idx[pos]]).sum()
    boxes, valid = postprocess.rpn_proposals(anchors, starts, logits[i], deltas[i], batch["image_size"][i], True, opts)
    r = rcnn_assign.roi_assign(boxes, *gt, opts, proposal_valid=valid)
    rs = rcnn_assign.sample_rois(r.classes, k_roi, opts)
    take = np.asarray(rs.index)[np.asarray(rs.valid)]
    pooled, _ = roi_align.multilevel_roi_align([f[i] for f in p[:4]], r.boxes[take], opts)
    cls_logits, box_deltas = model.apply(variables, pooled, method="box_head")
    cls = np.asarray(r.classes)[take]
    lg = np.asarray(cls_logits, np.float64)
    lse = np.log(np.exp(lg - lg.max(1, keepdims=True)).sum(1)) + lg.max(1)
    ce += list(lse - lg[np.arange(len(cls)), cls])
    fg = cls == 0
    box += _smooth_l1(np.asarray(box_deltas, np.float64)[fg] - np.asarray(r.box_targets)[take][fg]).sum()
    n_rois += len(take)
  want = dict(loss_rpn_cls=rpn_cls / (256 * 4), loss_rpn_loc=rpn_loc / (256 * 4), loss_cls=np.mean(ce),
              loss_box_reg=box / n_rois)
  for k, v in want.items():
    assert float(parts[k]) == pytest.approx(v, rel=2e-5, abs=1e-7), k
  assert float(total) == pytest.approx(sum(want.values()), rel=2e-5)
  assert float(parts["rpn_pos_per_image"]) > 0 and float(parts["roi_fg_per_image"]) > 0


def test_sampling_keys_are_global_image_indices():
  """Image i samples with fold_in(step key, i): the same indices with the batch on 1 device or split over 8,
  and the same as image i sampled alone."""
  rng = jax.random.key(11)
  r = np.random.default_rng(0)
  labels = r.choice([-1, 0, 1], size=(8, 3000), p=[0.3, 0.65, 0.05]).astype(np.int32)

  def draw(key, lab):
    keys = faster_rcnn.image_keys(key, lab.shape[0])
    return jax.vmap(lambda la, k: rcnn_assign.sample_rpn(la, k).index)(lab, keys)

  got = {}
  for n in (1, 8):
    mesh = sharding.make_mesh(jax.devices()[:n])
    f = jax.jit(draw, in_shardings=(sharding.replicated(mesh), sharding.data_sharding(mesh)))
    got[n] = np.asarray(f(rng, labels))
  np.testing.assert_array_equal(got[1], got[8])
  alone = rcnn_assign.sample_rpn(labels[5], jax.random.fold_in(rng, 5)).index
  np.testing.assert_array_equal(got[8][5], np.asarray(alone))
  assert not np.array_equal(got[8][0], got[8][1])


def test_predict_fixed_size(tiny):
  config, method, variables = tiny
  batch = random_batch(1, b=2)
  batch["orig_size"] = batch["orig_size"] * 2
  det = jax.jit(method.predict)(variables, batch)
  assert det.boxes.shape == (2, 20, 4) and det.valid.shape == (2, 20)
  v = np.asarray(det.valid)
  boxes = np.asarray(det.boxes)[v]
  assert v.any() and np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
  assert np.all(boxes[:, 2] <= 2 * HW[1]) and np.all(boxes[:, 3] <= 2 * HW[0])
  assert np.all(np.asarray(det.scores)[v] > 0.05)


# One train step on 8 virtual devices vs 1 device, same global batch and step key: loss parts within
# LOSS_RTOL and the new state within STATE_RTOL (relative global norm per part, tests/test_sharding.py).
# The samples are the same on both (keys by global image index), so only the order of float32 sums differs.
@pytest.mark.slow
def test_sharded_train_step_matches_one_device():
  config = tiny_config()
  method = get_method(config)
  batch = random_batch(0)
  want, want_metrics, _ = one_step(config, method, sharding.make_mesh(jax.devices()[:1]), batch)
  got, metrics, _ = one_step(config, method, sharding.make_mesh(), batch)
  for k in ("loss", "loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg", "rpn_pos_per_image",
            "roi_fg_per_image", "proposals_per_image"):
    assert float(metrics[k]) == pytest.approx(float(want_metrics[k]), rel=LOSS_RTOL), k
  assert float(want_metrics["roi_fg_per_image"]) > 0
  assert_states_close(got, want)
  assert STATE_RTOL <= 1e-5
