"""Data parallelism on 8 virtual CPU devices: the mesh layouts, global loss normalisers, the sharded
train step against one device (replicated and FSDP parameters), and mixed precision dtypes."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from configs import quickstart
from lla_jax import sharding, train, train_state
from lla_jax.methods import fcos_family, get_method
from lla_jax.types import Targets

# One train step on 8 devices vs 1 device, same global batch: the loss parts within LOSS_RTOL, and the new
# state part by part within STATE_RTOL in relative global norm ||a - b|| / ||b|| over all params, all
# optimizer state (momentum = gradient + weight decay) and all BatchNorm statistics. Only the order of
# float32 sums differs (XLA splits the batch reductions over devices). Measured: loss 3.3e-7; params
# 3.8e-9, momentum 7.8e-7, BatchNorm statistics 6.0e-8 (replicated and FSDP alike). Noise images keep
# BatchNorm's one-pass variance well conditioned; see tests/test_multihost.py for synthetic crowds.
LOSS_RTOL, STATE_RTOL = 1e-5, 1e-5


# ---------------------------------------------------------------------------------------------------
# Layouts.


def test_mesh_spans_all_devices():
  mesh = sharding.make_mesh()
  assert mesh.shape == {"data": 8} and jax.device_count() == 8
  assert sharding.data_sharding(mesh).spec == P("data") and sharding.replicated(mesh).spec == P()


@pytest.mark.parametrize("shape,expected", [
    ((3, 3, 256, 512), P(None, None, None, "data")),   # largest divisible axis
    ((1, 1, 1024, 256), P(None, None, "data")),
    ((3, 3, 64, 64), P(None, None, None, "data")),      # tie: the last axis
    ((7, 7, 3, 64), P()),                                # 9408 elements < min_size 16384
    ((257, 255), P()),                                   # nothing divisible by 8
    ((2048, 12), P("data")),
    ((), P()),
])
def test_fsdp_spec(shape, expected):
  assert sharding.fsdp_spec(shape, 8, min_size=1 << 14) == expected


def test_fsdp_spec_single_device_is_replicated():
  assert sharding.fsdp_spec((1024, 1024), 1, min_size=1) == P()


def test_tree_sharding_modes():
  mesh = sharding.make_mesh()
  tree = {"big": jax.ShapeDtypeStruct((64, 128), jnp.float32), "small": jnp.zeros((8,)), "step": np.int32(0)}
  repl = sharding.tree_sharding(mesh, tree, "replicated")
  assert all(s.spec == P() for s in jax.tree.leaves(repl))
  fsdp = sharding.tree_sharding(mesh, tree, "fsdp", min_size=1024)
  assert fsdp["big"].spec == P(None, "data") and fsdp["small"].spec == P() and fsdp["step"].spec == P()
  with pytest.raises(ValueError, match="param_sharding='zero'.*replicated"):
    sharding.tree_sharding(mesh, tree, "zero")


def test_local_batch_size():
  assert sharding.local_batch_size(16) == 16          # one process holds the whole global batch
  assert sharding.local_batch_size(3, sharding.make_mesh(jax.devices()[:1])) == 3
  with pytest.raises(ValueError, match="batch size 12 .* not divisible by the 8 devices"):
    sharding.local_batch_size(12)


def test_shard_batch_and_place():
  mesh = sharding.make_mesh()
  local = {"image": np.arange(8 * 2, dtype=np.float32).reshape(8, 2), "image_id": np.arange(8, dtype=np.int32)}
  batch = sharding.shard_batch(local, mesh)
  assert batch["image"].sharding.spec == P("data")
  assert [s.data.shape for s in batch["image"].addressable_shards] == [(1, 2)] * 8
  np.testing.assert_array_equal(batch["image"], local["image"])
  placed = sharding.place({"w": np.ones((16, 4), np.float32)}, {"w": jax.sharding.NamedSharding(mesh, P("data"))})
  assert placed["w"].addressable_shards[0].data.shape == (2, 4)


# ---------------------------------------------------------------------------------------------------
# Loss normalisation over the global batch (the num_fg normalisation of
# Megvii-BaseDetection/LLA playground/detection/crowdhuman/lla.res50.fpn.crowdhuman.800size.30k/fcos.py).


def _focal_np(x, t, alpha=0.25, gamma=2.0):
  p = 1 / (1 + np.exp(-x))
  ce = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
  p_t = p * t + (1 - p) * (1 - t)
  return (alpha * t + (1 - alpha) * (1 - t)) * ce * (1 - p_t) ** gamma


def _giou_loss_np(p, t):
  area = lambda b: (b[..., 0] + b[..., 2]) * (b[..., 1] + b[..., 3])
  iw = np.minimum(p[..., 0], t[..., 0]) + np.minimum(p[..., 2], t[..., 2])
  ih = np.minimum(p[..., 1], t[..., 1]) + np.minimum(p[..., 3], t[..., 3])
  inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
  union = area(p) + area(t) - inter
  cw = np.maximum(p[..., 0], t[..., 0]) + np.maximum(p[..., 2], t[..., 2])
  ch = np.maximum(p[..., 1], t[..., 1]) + np.maximum(p[..., 3], t[..., 3])
  enclose = cw * ch
  return 1 - (inter / np.maximum(union, 1e-7) - (enclose - union) / np.maximum(enclose, 1e-7))


def _bce_np(x, t):
  return np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))


def test_num_fg_normaliser_is_global_over_devices():
  """8 images on 8 devices with very different numbers of positives: every loss sum is divided by the
  number of positives of the whole batch, not per device (the per-device answer is also computed to
  show it differs)."""
  rng = np.random.default_rng(0)
  b, a = 8, 30
  fg = np.zeros((b, a), bool)
  for i, n in enumerate([0, 1, 2, 3, 5, 8, 13, 21]):
    fg[i, rng.choice(a, n, replace=False)] = True
  valid = rng.random((b, a)) > 0.1
  valid |= fg
  ignore_pairs = (rng.random((b, a)) < 0.1) & ~fg      # matched to an ignore box: counted, no loss (Q2)
  valid &= ~ignore_pairs
  out = {"cls_logits": rng.normal(-2, 1, (b, a, 1)).astype(np.float32),
         "ltrb": rng.uniform(1, 30, (b, a, 4)).astype(np.float32),
         "aux_logits": rng.normal(0, 1, (b, a)).astype(np.float32)}
  box_t = np.where(fg[..., None], rng.uniform(1, 30, (b, a, 4)), 0).astype(np.float32)
  aux_t = np.where(fg, rng.uniform(0, 1, (b, a)), 0).astype(np.float32)
  num_fg = (fg.sum(1) + ignore_pairs.sum(1)).astype(np.float32)
  targets = Targets(matched_gt=np.where(fg | ignore_pairs, 0, -1).astype(np.int32), fg=fg, valid=valid,
                    box_targets=box_t, aux_target=aux_t, num_fg=num_fg)
  gt_classes = np.zeros((b, 4), np.int32)
  cfg = ml_collections.ConfigDict(dict(focal_alpha=0.25, focal_gamma=2.0, box_weight=2.0, box_weighting="none",
                                       aux_weight=0.5, min_num_fg=1.0))
  mesh = sharding.make_mesh()
  data = sharding.data_sharding(mesh)
  step = jax.jit(lambda o, t, g: fcos_family.fcos_losses(o, t, g, cfg), in_shardings=(data, data, data))
  got_total, got_parts = step(out, targets, gt_classes)

  per_image = {"loss_cls": (_focal_np(out["cls_logits"][..., 0], fg.astype(np.float64)) * valid).sum(1),
               "loss_box": 2.0 * (_giou_loss_np(out["ltrb"], box_t) * fg).sum(1),
               "loss_aux": 0.5 * (_bce_np(out["aux_logits"], aux_t) * fg).sum(1)}
  want = {k: v.sum() / num_fg.sum() for k, v in per_image.items()}
  for k, v in want.items():
    assert float(got_parts[k]) == pytest.approx(v, rel=1e-5), k
  assert float(got_total) == pytest.approx(sum(want.values()), rel=1e-5)
  per_device = sum((v / np.maximum(num_fg, 1)).mean() for v in per_image.values())
  assert abs(per_device - float(got_total)) > 0.1 * float(got_total)   # the test would see a local normaliser


# ---------------------------------------------------------------------------------------------------
# The sharded train step against one device.


def tiny_config(**train):
  """The quick start network shrunk further (64 x 96 inputs, 8 boxes) for fast compiles."""
  c = quickstart.get_config()
  c.data.pad_size = (64, 96)
  c.data.max_boxes = 8
  c.model.backbone.width = 8
  c.model.fpn.channels = 32
  c.model.head.channels = 32
  c.model.head.gn_groups = 8
  c.train.warmup_steps = 0         # full lr from the first step: parameters really move
  c.train.update(train)
  return c


def random_batch(seed, b=8, m=8, hw=(64, 96)):
  """A hand-made Batch: noise images, m/2-ish boxes per image, ~10 % ignore regions."""
  rng = np.random.default_rng(seed)
  xy = rng.uniform(0, min(hw) - 8, (b, m, 2))
  boxes = np.concatenate([xy, xy + rng.uniform(8, 40, (b, m, 2))], -1).astype(np.float32)
  valid = rng.random((b, m)) < 0.6
  valid[:, 0] = True
  return dict(image=rng.normal(size=(b, *hw, 3)).astype(np.float32),
              image_size=np.tile(np.array(hw, np.int32), (b, 1)), orig_size=np.tile(np.array(hw, np.int32), (b, 1)),
              scale=np.ones(b, np.float32), gt_boxes=boxes * valid[..., None],
              gt_classes=np.where(rng.random((b, m)) < 0.1, -1, 0).astype(np.int32), gt_valid=valid,
              image_id=np.arange(b, dtype=np.int32))


def initial_state(config, method, mesh):
  # Threefry keys make the Flax initialisation compile ~8x slower on CPU; any random weights will do.
  with jax.default_prng_impl("unsafe_rbg"):
    return train_state.create_train_state(config, method, mesh)


def one_step(config, method, mesh, batch):
  """(state after one train step, its metrics, the state's shardings), state and metrics on the host."""
  state, tx, schedule = initial_state(config, method, mesh)
  step = train.make_train_step(method, tx, schedule, mesh, jax.tree.map(lambda x: x.sharding, state))
  shardings = jax.tree.map(lambda x: x.sharding, state)
  state, metrics = step(state, sharding.shard_batch(batch, mesh), train.train_rng(config, mesh))
  return jax.device_get(state), jax.device_get(metrics), shardings


def assert_states_close(got, want):
  got = {jax.tree_util.keystr(p): np.asarray(v, np.float64) for p, v in jax.tree_util.tree_flatten_with_path(got)[0]}
  want = {jax.tree_util.keystr(p): np.asarray(v, np.float64) for p, v in jax.tree_util.tree_flatten_with_path(want)[0]}
  assert got.keys() == want.keys()
  for part in (".params", ".opt_state", ".model_state"):
    keys = [k for k in want if k.startswith(part) and want[k].size]
    diff = np.sqrt(sum(np.sum((got[k] - want[k]) ** 2) for k in keys))
    assert keys and diff <= STATE_RTOL * np.sqrt(sum(np.sum(want[k] ** 2) for k in keys)), part
  assert got[".step"] == want[".step"]


@pytest.fixture(scope="module")
def reference_step():
  """One step of the tiny detector on a single device (module-scoped: shared by the tests below, which
  reuse its method so that the initialisation compiles once)."""
  config = tiny_config()
  method = get_method(config)
  return method, random_batch(0), one_step(config, method, sharding.make_mesh(jax.devices()[:1]), random_batch(0))


@pytest.mark.slow
def test_sharded_train_step_matches_one_device(reference_step):
  method, batch, (want, want_metrics, _) = reference_step
  config = tiny_config()
  got, metrics, _ = one_step(config, method, sharding.make_mesh(), batch)
  assert float(metrics["loss"]) == pytest.approx(float(want_metrics["loss"]), rel=LOSS_RTOL)
  for k in ("loss_cls", "loss_box", "loss_aux", "num_fg_per_image"):
    assert float(metrics[k]) == pytest.approx(float(want_metrics[k]), rel=LOSS_RTOL), k
  assert int(got.step) == 1
  assert_states_close(got, want)
  # The step did something: parameters and BatchNorm statistics moved.
  init, _, _ = initial_state(config, method, sharding.make_mesh(jax.devices()[:1]))
  moved = jax.tree.map(lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b)))), got.params, init.params)
  assert max(jax.tree.leaves(moved)) > 1e-3
  assert got.model_state["batch_stats"]


@pytest.mark.slow
def test_fsdp_train_step_matches_one_device(reference_step):
  method, batch, (want, want_metrics, _) = reference_step
  config = tiny_config(param_sharding="fsdp", fsdp_min_size=1024)
  got, metrics, shardings = one_step(config, method, sharding.make_mesh(), batch)
  split = [s for s in jax.tree.leaves(shardings.params) if s.spec != P()]
  assert len(split) > 10                                      # the big kernels really are split over devices
  assert any(s.spec != P() for s in jax.tree.leaves(shardings.opt_state))   # and so are their momenta
  assert float(metrics["loss"]) == pytest.approx(float(want_metrics["loss"]), rel=LOSS_RTOL)
  assert_states_close(got, want)


# ---------------------------------------------------------------------------------------------------
# Mixed precision: bf16 compute in the network, float32 parameters, assignment, losses, normalisation.


def test_bfloat16_compute_with_float32_assignment_and_losses(monkeypatch):
  config = tiny_config()
  config.model.dtype = "bfloat16"
  method = get_method(config)
  seen = {}
  assign, losses_fn = fcos_family.assign_batch, fcos_family.fcos_losses

  def spy_assign(cfg, points, strides, cls_logits, ltrb, *gt):
    seen["assign_in"] = (cls_logits.dtype, ltrb.dtype)
    targets = assign(cfg, points, strides, cls_logits, ltrb, *gt)
    seen["targets"] = {targets.box_targets.dtype, targets.aux_target.dtype, targets.num_fg.dtype}
    return targets

  def spy_losses(out, targets, gt_classes, cfg):
    seen["loss_in"] = {v.dtype for v in out.values()}
    return losses_fn(out, targets, gt_classes, cfg)

  monkeypatch.setattr(fcos_family, "assign_batch", spy_assign)
  monkeypatch.setattr(fcos_family, "fcos_losses", spy_losses)
  params_and_state = jax.eval_shape(lambda: method.init(jax.random.key(0), (64, 96)))
  params = params_and_state["params"]
  model_state = {k: v for k, v in params_and_state.items() if k != "params"}
  assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
  batch = {k: jnp.asarray(v) for k, v in random_batch(0).items()}
  grad_fn = jax.value_and_grad(method.loss, has_aux=True)
  jaxpr = jax.make_jaxpr(grad_fn)(params, model_state, batch, jax.random.key(0))
  (loss, (parts, new_state)), grads = jax.eval_shape(grad_fn, params, model_state, batch, jax.random.key(0))
  assert seen["assign_in"] == (jnp.float32, jnp.float32)
  assert seen["targets"] == {jnp.dtype(jnp.float32)}
  assert seen["loss_in"] == {jnp.dtype(jnp.float32)}
  assert loss.dtype == jnp.float32 and all(v.dtype == jnp.float32 for v in parts.values())
  assert {x.dtype for x in jax.tree.leaves(grads)} == {jnp.dtype(jnp.float32)}
  assert {x.dtype for x in jax.tree.leaves(new_state)} == {jnp.dtype(jnp.float32)}   # BN statistics
  convs = [e for e in _equations(jaxpr.jaxpr) if e.primitive.name == "conv_general_dilated"]
  bf16 = [e for e in convs if all(v.aval.dtype == jnp.bfloat16 for v in e.invars)]
  assert convs and len(bf16) == len(convs)                    # every convolution runs in bfloat16


def _equations(jaxpr):
  """Every equation of a jaxpr, nested ones (pjit, custom_jvp, scan bodies) included."""
  for eqn in jaxpr.eqns:
    yield eqn
    for v in eqn.params.values():
      for x in (v if isinstance(v, (list, tuple)) else [v]):
        sub = x.jaxpr if hasattr(x, "jaxpr") and hasattr(x.jaxpr, "eqns") else x
        if hasattr(sub, "eqns"):
          yield from _equations(sub)


@pytest.mark.slow
def test_bfloat16_loss_close_to_float32():
  """Same weights and batch: the bf16 network's loss is within 2 % of the float32 one."""
  batch = {k: jnp.asarray(v) for k, v in random_batch(0).items()}
  losses = {}
  variables = None
  for dtype in ("float32", "bfloat16"):
    config = tiny_config()
    config.model.dtype = dtype
    method = get_method(config)
    variables = variables or jax.jit(lambda: method.init(jax.random.key(0, impl="unsafe_rbg"), (64, 96)))()
    state = {k: v for k, v in variables.items() if k != "params"}
    losses[dtype] = float(jax.jit(method.loss)(variables["params"], state, batch, jax.random.key(0))[0])
  assert losses["bfloat16"] == pytest.approx(losses["float32"], rel=2e-2)
  assert losses["bfloat16"] != losses["float32"]
