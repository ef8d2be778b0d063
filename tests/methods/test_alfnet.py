"""The ALFNet method (Liu et al., ECCV 2018; upstream liuwei16/ALFNet keras_alfnet/losses.py, train.py,
test.py): losses, the joint and alternating training steps, inference, configs and the CityPersons json
writers, against hand-worked numbers and tests/reference/alfnet.py."""
import importlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.alfnet import alfnet_config
from lla_jax import nonfinite, priors
from lla_jax.evaluation import cityjson
from lla_jax.methods import alfnet as alf_method
from lla_jax.models import alfnet as alf_model
from lla_jax.types import Targets
from tests.models import KEY, TinyBackbone
from tests.reference import alfnet as ref


# ------------------------------------------------------------------------------------------------
# Losses (upstream keras_alfnet/losses.py).

def test_losses_hand_checked():
  p = jnp.array([[0.8, 0.3, 0.1, 0.6]])
  pos = jnp.array([[True, False, True, False]])
  neg = jnp.array([[0.0, 1.0, 1.0, 0.0]])          # anchor 2 double-flagged; anchor 3 unlabelled
  pred = jnp.array([[[0.5, -0.5, 2.0, 0.0], [9, 9, 9, 9], [0, 0, 0, 0], [9, 9, 9, 9]]], jnp.float32)
  tgt = jnp.array([[[0, 0, 0, 0.3], [0, 0, 0, 0], [1.5, 0, 0, 0], [0, 0, 0, 0]]], jnp.float32)
  t = Targets(matched_gt=jnp.zeros((1, 4), jnp.int32), fg=pos, valid=pos | (neg > 0), box_targets=tgt,
              aux_target=neg, num_fg=jnp.array([2.0]))
  cls = alf_method.alf_cls_loss(p, t, 2.0)
  reg = alf_method.alf_reg_loss(pred, t, 2.0)
  # By hand: -ln .8 * .25 * .2^2 + -ln .7 * .75 * .3^2 + 2 * -ln .1 * (.25 * .9^2 + .75 * .1^2), / 2
  by_hand = (-math.log(0.8) * 0.01 + -math.log(0.7) * 0.0675 + 2 * -math.log(0.1) * 0.21) / 2
  assert float(cls) == pytest.approx(by_hand, rel=1e-6)
  assert float(cls) == pytest.approx(0.49669637, rel=1e-6)
  assert float(reg) == pytest.approx((0.125 + 0.125 + 1.5 + 0.045 + 1.0) / 2, rel=1e-6)
  want = ref.losses(np.asarray(p), np.asarray(pred), np.asarray(pos), np.asarray(neg), np.asarray(tgt))
  assert (float(cls), float(reg)) == pytest.approx(want, rel=1e-6)
  # No positives in the batch: normalised by 1, not 0.
  zero = Targets(t.matched_gt, jnp.zeros_like(pos), neg > 0, tgt, neg, jnp.array([0.0]))
  assert float(alf_method.alf_cls_loss(p, zero, 0.0)) == pytest.approx(
      -math.log(0.7) * 0.0675 + -math.log(0.9) * 0.75 * 0.01, rel=1e-6)


# ------------------------------------------------------------------------------------------------
# Training step and inference.

def _init(method, seed, shape=(2, 64, 128, 3)):
  return jax.jit(method.init, static_argnums=1)(jax.random.fold_in(KEY, seed), shape)


def _tiny_config(num_steps=2, resnet=False):
  c = alfnet_config(num_steps)
  c.alfnet.cpb_channels, c.alfnet.p3_channels, c.alfnet.p6_channels = 8, 8, 8
  if resnet:
    c.model.backbone.depth, c.model.backbone.width = 18, 8
  return c


def _batch(rng, b=2, height=64, width=128):
  gt = np.zeros((b, 4, 4), np.float32)
  cls = np.zeros((b, 4), np.int32)
  val = np.zeros((b, 4), bool)
  gt[0, :3] = [[10, 4, 30, 55], [40, 10, 62, 60], [90, 5, 120, 40]]
  cls[0, 2] = -1
  val[0, :3] = True
  return dict(image=jnp.asarray(rng.normal(size=(b, height, width, 3)), jnp.float32),
              image_size=jnp.array([[height, width]] * b, jnp.int32),
              orig_size=jnp.array([[2 * height, 2 * width]] * b, jnp.int32),
              scale=jnp.full((b,), 0.5, jnp.float32), gt_boxes=jnp.asarray(gt), gt_classes=jnp.asarray(cls),
              gt_valid=jnp.asarray(val), image_id=jnp.arange(b, dtype=jnp.int32))


def test_jit_forward_loss_grad_resnet():
  c = _tiny_config(2, resnet=True)
  method = alf_method.build(c)
  v = _init(method, 0)
  params, state = alf_method._split(v)
  batch = _batch(np.random.default_rng(0))
  (loss, (metrics, _)), grads = jax.jit(jax.value_and_grad(method.loss, has_aux=True))(params, state, batch, None)
  assert np.isfinite(float(loss)) and float(metrics["num_pos_1"]) >= 6
  assert float(loss) == pytest.approx(sum(float(metrics[k]) for k in ("cls_1", "reg_1", "cls_2", "reg_2")), rel=1e-5)
  g = jax.tree_util.tree_leaves(grads)
  assert all(np.isfinite(np.asarray(x)).all() for x in g)
  assert float(jnp.abs(grads["pred0_1"]["rpn_regress"]["kernel"]).sum()) > 0
  assert float(jnp.abs(grads["backbone"]["res3"]["block0"]["conv1"]["kernel"]).sum()) > 0
  assert float(jnp.abs(grads["backbone"]["res2"]["block0"]["conv1"]["kernel"]).sum()) == 0   # freeze_at = 2
  mask = method.trainable(params)
  assert mask["pred0_1"]["conv"]["kernel"] and not mask["backbone"]["stem"]["conv1"]["kernel"]


def test_joint_loss_matches_reference():
  # The second step's targets come from the detached step-1 boxes of the same forward pass.
  c = _tiny_config(2)
  method = alf_method.build(c, backbone=TinyBackbone())
  v = _init(method, 1)
  params, state = alf_method._split(v)
  batch = _batch(np.random.default_rng(1))
  _, (metrics, _) = jax.jit(method.loss)(params, state, batch, None)
  model = alf_model.from_config(c, TinyBackbone())
  out = model.apply(v, batch["image"])
  anchors = priors.alfnet_anchors(64, 128)
  np_batch = {k: np.asarray(x) for k, x in batch.items()}
  refs = [np.broadcast_to(anchors, (2,) + anchors.shape)]
  refs.append(np.array([[ref.decode_clip(r, d, 64, 128) for r, d in zip(refs[0][b], np.asarray(out[0][1][b]))]
                        for b in range(2)]))
  for t, thr in enumerate(c.alfnet.step_thresholds, 1):
    flags = [ref.assign_step(refs[t - 1][b], np_batch["gt_boxes"][b], np_batch["gt_classes"][b],
                             np_batch["gt_valid"][b], t, *thr) for b in range(2)]
    pos = np.stack([f["pos"] for f in flags])
    neg = np.stack([f["neg"] for f in flags])
    tgt = np.stack([f["deltas"] for f in flags])
    want = ref.losses(np.asarray(out[t - 1][0]), np.asarray(out[t - 1][1]), pos, neg, tgt)
    assert float(metrics[f"num_pos_{t}"]) == pos.sum()
    assert (float(metrics[f"cls_{t}"]), float(metrics[f"reg_{t}"])) == pytest.approx(want, rel=2e-4, abs=1e-6)


def test_detect_against_reference():
  rng = np.random.default_rng(3)
  height, width = 64, 128
  anchors = priors.alfnet_anchors(height, width)
  n = len(anchors)
  c = alfnet_config(2)
  c.alfnet.pre_nms_topk = 200
  c.test.max_detections = 20
  outs = tuple((jnp.asarray(rng.uniform(0, 1, (1, n)) ** 0.5, jnp.float32),
                jnp.asarray(rng.normal(0, 0.7, (1, n, 4)), jnp.float32)) for _ in range(2))
  size = jnp.array([[height, width]], jnp.int32)
  det = jax.jit(lambda o: alf_method.detect(o, anchors, size, 2 * size, c.alfnet, c.test))(outs)
  want = ref.detect(anchors, [(np.asarray(s[0], np.float64), np.asarray(d[0], np.float64)) for s, d in outs],
                    height, width, topk=200, max_det=20)
  k = int(det.valid[0].sum())
  assert k == len(want) and k > 3
  np.testing.assert_allclose(det.boxes[0, :k], 2 * np.array([b for b, _ in want]), rtol=1e-5, atol=1e-3)
  np.testing.assert_allclose(det.scores[0, :k], [s for _, s in want], rtol=1e-5)
  assert not bool(det.valid[0, k:].any()) and bool(jnp.all(det.classes == 0))


def test_predict_and_alternating_step():
  c = _tiny_config(2)
  c.alfnet.test_step = 1
  method = alf_method.build(c, backbone=TinyBackbone())
  v = _init(method, 2)
  batch = _batch(np.random.default_rng(2))
  det = jax.jit(method.predict)(v, batch)
  assert det.boxes.shape == (2, 100, 4) and det.valid.dtype == jnp.bool_
  params, state = alf_method._split(v)
  alt = alf_method.make_alternating_step(c, backbone=TinyBackbone())
  opt = alt.init(params)
  new, opt2, _, metrics = jax.jit(alt.step)(params, opt, state, batch, None)
  assert int(opt2.inner_state.iterations) == 2 and set(metrics) >= {"cls_1", "reg_1", "cls_2", "reg_2", "loss"}
  # The step-1 CPBs move only in update 1 (iteration 1): one Keras-Adam step on the step-1 loss alone.
  model = alf_model.from_config(c, TinyBackbone())

  def loss1(p):
    out = model.apply({"params": p}, batch["image"], steps=1)
    cls, reg, _ = alf_method.step_loss(1, *out[0], jnp.asarray(priors.alfnet_anchors(64, 128)), batch, c.alfnet)
    return cls + reg

  g = jax.jit(jax.grad(loss1))(params)["pred0_1"]["rpn_class"]["kernel"]
  p0 = params["pred0_1"]["rpn_class"]["kernel"]
  lr_t = 1e-4 * math.sqrt(1 - 0.999) / (1 - 0.9)
  want = p0 - lr_t * (0.1 * g) / (jnp.sqrt(0.001 * g * g) + 1e-8)
  np.testing.assert_allclose(new["pred0_1"]["rpn_class"]["kernel"], want, rtol=1e-4, atol=1e-9)
  np.testing.assert_allclose(opt2.inner_state.m[0]["pred0_1"]["rpn_class"]["kernel"], 0.1 * g, rtol=1e-4, atol=1e-12)
  # Step-2 CPBs: untouched by update 1 (moments of step model 1 stay zero), moved by update 2.
  assert float(jnp.abs(opt2.inner_state.m[0]["pred0_2"]["conv"]["kernel"]).sum()) == 0
  assert float(jnp.abs(new["pred0_2"]["conv"]["kernel"] - params["pred0_2"]["conv"]["kernel"]).sum()) > 0
  # A batch whose loss is NaN is skipped as a whole: the T updates' parameters, moments and iteration
  # counter are dropped, and the skip is counted (optax.apply_if_finite around the batch's change).
  bad = dict(batch, image=np.full_like(np.asarray(batch["image"]), np.nan))
  new3, opt3, _, metrics3 = jax.jit(alt.step)(new, opt2, state, bad, None)
  assert not np.isfinite(float(metrics3["loss"]))
  jax.tree_util.tree_map(np.testing.assert_array_equal, new3, new)
  jax.tree_util.tree_map(np.testing.assert_array_equal, opt3.inner_state, opt2.inner_state)
  assert {k: int(v) for k, v in nonfinite.counts(opt3).items()} == {"nonfinite_skipped": 1, "nonfinite_consecutive": 1}
  # With the switch on, the joint Method.loss refuses to run instead of silently training the other mode.
  c.alfnet.alternating = True
  with pytest.raises(NotImplementedError, match="Method.update"):
    alf_method.build(c, backbone=TinyBackbone()).loss(params, state, batch, None)


def test_alternating_mode_through_the_train_step():
  # config.alfnet.alternating=True: Method.update replaces the optax step, and one step of lla_jax.train's
  # jitted train step is exactly make_alternating_step on the same batch.
  from lla_jax import sharding, train, train_state
  c = _tiny_config(2)
  c.data.pad_size = (64, 128)
  c.train.base_lr = 1e-3
  assert alf_method.build(c, backbone=TinyBackbone()).update is None          # joint mode: the optax step
  c.alfnet.alternating = True
  method = alf_method.build(c, backbone=TinyBackbone())
  assert method.update is not None and method.update_init is not None
  mesh = sharding.make_mesh(jax.devices()[:1])
  with jax.default_prng_impl("unsafe_rbg"):   # threefry makes the Flax init compile ~8x slower on CPU
    state, tx, schedule = train_state.create_train_state(c, method, mesh)
  params0 = jax.device_get(state.params)
  assert isinstance(state.opt_state.inner_state, alf_method.AlternatingState)
  batch = {k: np.asarray(v) for k, v in _batch(np.random.default_rng(5)).items()}
  alt = alf_method.make_alternating_step(c, backbone=TinyBackbone())
  want, want_opt, _, want_metrics = jax.jit(alt.step)(params0, alt.init(params0), {}, batch, None)
  step = train.make_train_step(method, tx, schedule, mesh)
  new_state, metrics = step(state, sharding.shard_batch(batch, mesh), jax.random.key(0))
  assert int(new_state.step) == 1
  assert int(new_state.opt_state.inner_state.iterations) == int(want_opt.inner_state.iterations) == 2
  assert float(metrics["loss"]) == pytest.approx(float(want_metrics["loss"]), rel=1e-6)
  got = jax.device_get(new_state.params)
  moved = jax.tree_util.tree_map(lambda a, b: float(np.abs(a - b).max()), got, params0)
  assert min(moved["pred1_1"]["conv"]["kernel"], moved["pred1_2"]["conv"]["kernel"]) > 1e-4
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), got, jax.device_get(want))
  # The alternating mode is Keras Adam at a constant rate: optimiser settings it would ignore are refused.
  c.train.optimizer = "sgd"
  with pytest.raises(ValueError, match="train.optimizer='sgd'"):
    alf_method.build(c, backbone=TinyBackbone())


# ------------------------------------------------------------------------------------------------
# Configs and the CityPersons json writers.

@pytest.mark.parametrize("name,steps,thr", [
    ("alfnet_r50_1s", 1, ((0.3, 0.5),)), ("alfnet_r50_2s", 2, ((0.3, 0.5), (0.5, 0.7))),
    ("alfnet_r50_3s", 3, ((0.3, 0.5), (0.4, 0.65), (0.5, 0.75))), ("alfnet_mobilenet_1s", 1, ((0.3, 0.5),)),
    ("alfnet_mobilenet_2s", 2, ((0.3, 0.5), (0.5, 0.7))), ("alfnet_quickstart", 2, None)])
def test_configs(name, steps, thr):
  c = importlib.import_module(f"configs.{name}").get_config()
  assert c.method == "alfnet" and c.alfnet.num_steps == steps and c.train.optimizer == "adam"
  assert alf_method.step_thresholds(c.alfnet) == (thr or alf_method.step_thresholds(c.alfnet))
  if name != "alfnet_quickstart":
    assert c.data.name == "citypersons" and c.data.pad_size == (640, 1280) and c.train.base_lr == 1e-4
    assert (c.test.score_thresh, c.test.nms_thresh, c.test.max_detections, c.alfnet.pre_nms_topk) == \
        (0.1, 0.5, 100, 6000)
  with pytest.raises(ValueError, match="step_thresholds"):
    c.alfnet.step_thresholds = c.alfnet.step_thresholds + ((0.5, 0.7),)
    alf_method.step_thresholds(c.alfnet)


def test_citypersons_json():
  recs = [dict(height=100, width=200, boxes=np.array([[10, 20, 30, 70], [50, 50, 80, 60]], np.float32),
               classes=np.array([0, -1]), vis_boxes=np.array([[10, 20, 30, 45], [50, 50, 80, 60]], np.float32)),
          dict(height=100, width=200, boxes=np.array([[100, 20, 130, 90]], np.float32), classes=np.array([0])),
          dict(height=100, width=200, boxes=np.zeros((0, 4)), classes=np.zeros(0, np.int32))]
  gt = cityjson.citypersons_gt(recs)
  assert [im["id"] for im in gt["images"]] == [1, 2, 3]
  a0, a1, a2 = gt["annotations"]
  assert a0["bbox"] == [10, 20, 20, 50] and a0["height"] == 50 and a0["vis_ratio"] == pytest.approx(0.5)
  assert a0["ignore"] == 0 and a1["ignore"] == 1 and (a0["id"], a1["id"], a2["id"]) == (1, 2, 3)
  assert a2["image_id"] == 2 and a2["vis_ratio"] == 1.0 and a2["height"] == 70
  det = alf_method.Detections(boxes=jnp.array([[[10.0, 20, 30, 70], [0, 0, 0, 0]], [[100, 20, 130, 90], [0, 0, 0, 0]],
                                               [[0, 0, 0, 0], [0, 0, 0, 0]]]),
                              scores=jnp.array([[0.9, 0.0], [0.5, 0.0], [0.0, 0.0]]),
                              classes=jnp.zeros((3, 2), jnp.int32),
                              valid=jnp.array([[True, False], [True, False], [False, False]]))
  dt = cityjson.citypersons_dt(det, np.array([0, 1, -1]))
  assert dt == [{"image_id": 1, "category_id": 1, "bbox": [10.0, 20.0, 20.0, 50.0], "score": pytest.approx(0.9)},
                {"image_id": 2, "category_id": 1, "bbox": [100.0, 20.0, 30.0, 70.0], "score": pytest.approx(0.5)}]
  with pytest.raises(ValueError, match="record 0"):
    cityjson.citypersons_gt([dict(height=1, width=1, boxes=np.zeros((1, 4)), classes=np.zeros(1))])
  citypersons = pytest.importorskip("lla_jax.evaluation.citypersons")
  # Reasonable: the only regular GT (vis 1, h 70) is found at fppi 0 -> every recall sample is 1 -> MR 0.
  res = citypersons.evaluate(gt, dt)
  assert res["Reasonable"]["MR"] == pytest.approx(0.0, abs=1e-12)


def test_citypersons_gt_from_odgt():
  lines = [{"ID": "b", "height": 100, "width": 200, "gtboxes": [
               {"tag": "person", "fbox": [10, 20, 20, 50], "vbox": [10, 20, 20, 25], "extra": {"ignore": 0}},
               {"tag": "mask", "fbox": [50, 50, 30, 10], "extra": {"ignore": 1}}]},
           {"ID": "a", "height": 100, "width": 200, "gtboxes": []}]
  gt = cityjson.citypersons_gt_from_odgt(lines, ids=["a", "b"])
  assert [(im["id"], im["im_name"]) for im in gt["images"]] == [(1, "a"), (2, "b")]
  a0, a1 = gt["annotations"]
  assert a0["image_id"] == 2 and a0["bbox"] == [10, 20, 20, 50] and a0["vis_ratio"] == pytest.approx(0.5)
  assert (a0["ignore"], a1["ignore"], a1["vis_ratio"]) == (0, 1, 1.0)
  with pytest.raises(ValueError, match="no GT line"):
    cityjson.citypersons_gt_from_odgt(lines, ids=["c"])


@pytest.mark.slow
def test_mobilenet_batch_stats_and_alternating():
  # Trainable BN: the loss updates batch_stats; the alternating step builds step-2 references in inference mode.
  c = alfnet_config(2, backbone="mobilenet")
  c.model.backbone.alpha = 0.125
  c.alfnet.cpb_channels, c.alfnet.p3_channels, c.alfnet.p6_channels = 8, 8, 8
  method = alf_method.build(c)
  v = _init(method, 4)
  params, state = alf_method._split(v)
  assert set(state) == {"batch_stats"}
  mask = method.trainable(params)
  assert not mask["backbone"]["conv_dw_1"]["kernel"] and mask["backbone"]["conv_dw_2"]["kernel"]
  batch = _batch(np.random.default_rng(4))
  alt = alf_method.make_alternating_step(c)
  new, opt, new_state, metrics = jax.jit(alt.step)(params, alt.init(params), state, batch, None)
  assert int(opt.inner_state.iterations) == 2 and np.isfinite(float(metrics["loss"]))
  moved = jax.tree_util.tree_map(lambda a, b: float(jnp.abs(a - b).sum()), state, new_state)
  assert sum(jax.tree_util.tree_leaves(moved)) > 0
  np.testing.assert_array_equal(new["backbone"]["conv1"]["kernel"], params["backbone"]["conv1"]["kernel"])


def test_parameterised_config():
  """configs/alfnet.py:<backbone>[,steps=N] is the one ALFNet recipe; the earlier file names give the same."""
  from configs import alfnet as alfnet_cfg
  for old, arg in (("alfnet_r50_1s", "r50,steps=1"), ("alfnet_r50_2s", "r50"), ("alfnet_r50_3s", "r50,steps=3"),
                   ("alfnet_mobilenet_1s", "mobilenet,steps=1"), ("alfnet_mobilenet_2s", "mobilenet,steps=2")):
    assert importlib.import_module(f"configs.{old}").get_config().to_dict() == alfnet_cfg.get_config(arg).to_dict()
  c = alfnet_cfg.get_config("mobilenet,steps=1")
  assert c.model.backbone.name == "mobilenet" and c.alfnet.num_steps == 1
  assert not {"assigner", "loss"} & set(c) and not {"fpn", "head"} & set(c.model)   # no FCOS-family sections
  for bad in ("r101", "r50,steps=4", "r50,step=2"):
    with pytest.raises(ValueError, match="configs/alfnet.py"):
      alfnet_cfg.get_config(bad)
