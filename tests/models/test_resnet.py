"""ResNet layouts against a numpy re-statement of cvpods cvpods/modeling/backbone/resnet.py
and liuwei16/ALFNet keras_alfnet/model/resnet50.py, freezing and norms."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lla_jax.models import layers, resnet
from tests.reference.networks import np_conv2d, np_frozen_bn, np_max_pool, randomize, relu, same_pads

BLOCKS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}


def np_resnet(x, p, depth, layout, eps, stem_pool):
  """Numpy ResNet: stem 7x7/2 pad 3 -> FrozenBN -> ReLU -> 3x3/2 max-pool, then res2..res5."""
  keras = layout == "keras"
  stride_in_1x1 = layout in ("caffe", "keras")
  pad3 = "same" if keras else 1

  def cbn(x, block, conv, norm, stride, pad):
    c = block[conv]
    return np_frozen_bn(np_conv2d(x, c["kernel"], c.get("bias"), stride, pad), block[norm], eps)

  x = relu(cbn(x, p["stem"], "conv1", "norm1", 2, 3))
  pool_pad = ((same_pads(x.shape[1], 3, 2), same_pads(x.shape[2], 3, 2)) if stem_pool == "same"
              else ((1, 1), (1, 1)))
  x = np_max_pool(x, 3, 2, pool_pad)
  feats = {}
  for s, n in enumerate(BLOCKS[depth]):
    for i in range(n):
      blk = p[f"res{s + 2}"][f"block{i}"]
      stride = 2 if (i == 0 and s > 0) else 1
      # detectron2: a projection shortcut wherever channels change (first block of a stage; not res2 of R-18/34).
      needs_proj = i == 0 and (s > 0 or depth >= 50)
      assert ("shortcut" in blk) == needs_proj, (s, i)
      sc = cbn(x, blk, "shortcut", "shortcut_norm", stride, 0) if needs_proj else x
      if depth >= 50:
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        y = relu(cbn(x, blk, "conv1", "norm1", s1, 0))
        y = relu(cbn(y, blk, "conv2", "norm2", s3, pad3))
        y = cbn(y, blk, "conv3", "norm3", 1, 0)
      else:
        y = relu(cbn(x, blk, "conv1", "norm1", stride, pad3))
        y = cbn(y, blk, "conv2", "norm2", 1, pad3)
      x = relu(y + sc)
    feats[f"C{s + 2}"] = x
  return feats


def _model(depth, layout="caffe", norm="frozen_bn", freeze_at=0, width=8, **kw):
  """Model and its variable shapes (eval_shape: no init compile; tests draw params with `randomize`)."""
  model = resnet.ResNet(depth=depth, layout=layout, norm=norm, freeze_at=freeze_at, width=width, **kw)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 37, 53, 3), jnp.float32))
  return model, shapes


def _x(shape=(1, 37, 53, 3), seed=1):
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def np_block(x, blk, depth, layout, eps, stride):
  """One residual block with a projection shortcut, numpy."""
  pad3 = "same" if layout == "keras" else 1

  def cbn(x, conv, norm, stride, pad):
    c = blk[conv]
    return np_frozen_bn(np_conv2d(x, c["kernel"], c.get("bias"), stride, pad), blk[norm], eps)

  sc = cbn(x, "shortcut", "shortcut_norm", stride, 0)
  if depth >= 50:
    s1, s3 = (stride, 1) if layout in ("caffe", "keras") else (1, stride)
    y = relu(cbn(x, "conv1", "norm1", s1, 0))
    y = relu(cbn(y, "conv2", "norm2", s3, pad3))
    y = cbn(y, "conv3", "norm3", 1, 0)
  else:
    y = relu(cbn(x, "conv1", "norm1", stride, pad3))
    y = cbn(y, "conv2", "norm2", 1, pad3)
  return relu(y + sc)


@pytest.mark.parametrize("layout,depth", [("caffe", 50), ("torchvision", 50), ("keras", 50), ("caffe", 18),
                                          ("keras", 18)])
def test_block_matches_numpy(layout, depth):
  """A down-sampling block (stride 2, projection shortcut) per layout, odd input, against numpy."""
  lay = resnet.LAYOUTS[layout]
  block = (resnet.Bottleneck if depth >= 50 else resnet.BasicBlock)(
      bottleneck_channels=4, out_channels=16 if depth >= 50 else 8, stride=2, stride_in_1x1=lay["stride_in_1x1"],
      conv_bias=lay["conv_bias"], padding=lay["padding"], norm=layers.NormSpec("frozen_bn", lay["bn_eps"]),
      frozen=False, dtype=jnp.float32)
  x = _x((1, 11, 14, 6))
  apply = functools.partial(block.apply, train=False)
  params = randomize(jax.eval_shape(functools.partial(block.init, train=False), jax.random.key(0), x)["params"])
  out = apply({"params": params}, x)
  ref = np_block(x, jax.tree.map(np.asarray, params), depth, layout, lay["bn_eps"], stride=2)
  np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("pool", ["symmetric", "same"])
def test_stem_matches_numpy(pool):
  stem = resnet.Stem(width=4, conv_bias=pool == "same", pool=pool, norm=layers.NormSpec("frozen_bn", 1e-3),
                     frozen=False, dtype=jnp.float32)
  for shape in [(1, 20, 26, 3), (1, 21, 27, 3)]:
    x = _x(shape)
    params = randomize(jax.eval_shape(functools.partial(stem.init, train=False), jax.random.key(0), x)["params"])
    out = stem.apply({"params": params}, x, train=False)
    p = jax.tree.map(np.asarray, params)
    y = relu(np_frozen_bn(np_conv2d(x, p["conv1"]["kernel"], p["conv1"].get("bias"), 2, 3), p["norm1"], 1e-3))
    pad = ((same_pads(y.shape[1], 3, 2), same_pads(y.shape[2], 3, 2)) if pool == "same" else ((1, 1), (1, 1)))
    np.testing.assert_allclose(np.asarray(out), np_max_pool(y, 3, 2, pad), rtol=1e-4, atol=1e-5)


def test_resnet18_matches_numpy():
  """Whole-network composition (stem, stages, shortcuts, taps) on an odd-sized input."""
  model, shapes = _model(18, "caffe")
  params = randomize(shapes["params"], seed=18)
  x = _x()
  out = jax.jit(model.apply)({"params": params}, x)
  ref = np_resnet(x, jax.tree.map(np.asarray, params), 18, "caffe", 1e-5, "symmetric")
  for k in ("C2", "C3", "C4", "C5"):
    np.testing.assert_allclose(np.asarray(out[k]), ref[k], rtol=1e-4, atol=1e-4 * np.abs(ref[k]).max(), err_msg=k)


def test_layout_params():
  _, v = _model(50, "keras")
  assert set(v["params"]["res3"]["block0"]["conv1"]) == {"kernel", "bias"}
  assert "shortcut" in v["params"]["res2"]["block0"] and "shortcut" not in v["params"]["res2"]["block1"]
  _, v = _model(50, "caffe")
  assert set(v["params"]["res3"]["block0"]["conv1"]) == {"kernel"}
  assert set(v["params"]["stem"]["norm1"]) == {"scale", "bias", "mean", "var"}
  _, v = _model(18, "caffe")
  assert "shortcut" not in v["params"]["res2"]["block0"] and "shortcut" in v["params"]["res3"]["block0"]


def test_frozen_bn():
  for eps in (1e-5, 1e-3):
    bn = layers.FrozenBatchNorm(eps=eps)
    x = _x((2, 3, 4, 5))
    v = bn.init(jax.random.key(0), x)
    np.testing.assert_allclose(v["params"]["var"], 1 - eps)  # identity at init, as detectron2
    np.testing.assert_allclose(bn.apply(v, x), x, rtol=1e-6, atol=1e-6)
    p = randomize(v["params"])
    np.testing.assert_allclose(bn.apply({"params": p}, x), np_frozen_bn(x, jax.tree.map(np.asarray, p), eps),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("depth,width,channels", [(18, 64, (64, 128, 256, 512)), (34, 64, (64, 128, 256, 512)),
                                                  (50, 64, (256, 512, 1024, 2048)), (101, 64, (256, 512, 1024, 2048)),
                                                  (18, 16, (16, 32, 64, 128)), (50, 16, (64, 128, 256, 512))])
def test_shapes(depth, width, channels):
  for layout, (h, w) in [("caffe", (800, 1216)), ("torchvision", (130, 201)), ("keras", (129, 200))]:
    model = resnet.ResNet(depth=depth, width=width, layout=layout)
    x = jax.ShapeDtypeStruct((2, h, w, 3), jnp.float32)
    v = jax.eval_shape(model.init, jax.random.key(0), x)
    out = jax.eval_shape(model.apply, v, x)
    for i, k in enumerate(("C2", "C3", "C4", "C5")):
      s = 4 * 2 ** i
      assert out[k].shape == (2, -(-h // s), -(-w // s), channels[i]), (k, out[k].shape)
    assert [len(v["params"][f"res{s}"]) for s in range(2, 6)] == BLOCKS[depth]


def test_trainable_mask():
  _, v = _model(50, "caffe", "gn", 2)
  flat = {"/".join(k.key for k in p): m
          for p, m in jax.tree_util.tree_flatten_with_path(resnet.trainable_mask(v["params"], 2))[0]}
  assert flat and all(not m for k, m in flat.items() if k.startswith(("stem/", "res2/")))
  assert all(m for k, m in flat.items() if k.startswith(("res3/", "res4/", "res5/")))
  _, v = _model(50, "caffe", "frozen_bn", 0)
  flat = {"/".join(k.key for k in p): m
          for p, m in jax.tree_util.tree_flatten_with_path(resnet.trainable_mask(v["params"], 0))[0]}
  for k, m in flat.items():
    assert m == k.endswith("kernel"), k  # FrozenBN vectors never train, convs (no bias in caffe) do
  with pytest.raises(ValueError, match="freeze_at"):
    resnet.frozen_stages(6)


def test_freeze_at_stops_gradients():
  model, v = _model(18, "caffe", "frozen_bn", 2)
  params = randomize(v["params"])
  loss = lambda p: jnp.sum(model.apply({"params": p}, _x())["C5"] ** 2)
  g = jax.jit(jax.grad(loss))(params)
  for stage, tree in g.items():
    for path, a in jax.tree_util.tree_flatten_with_path(tree)[0]:
      zero = float(jnp.abs(a).max()) == 0.0
      # Frozen stages (stop_gradient) and FrozenBN vectors (everywhere) get no gradient.
      assert zero == (stage in ("stem", "res2") or path[-1].key != "kernel"), (stage, path)


def test_bn_updates_only_trainable_stages():
  model, shapes = _model(18, "torchvision", "bn", 2)
  stats = jax.tree_util.tree_map_with_path(lambda p, a: jnp.full(a.shape, 1.0 if p[-1].key == "var" else 0.0),
                                           shapes["batch_stats"])
  v = {"params": randomize(shapes["params"]), "batch_stats": stats}
  x = _x((2, 37, 53, 3))
  _, new = model.apply(v, x, train=True, mutable=["batch_stats"])
  for name in ("stem", "res2", "res3"):
    changed = any(not np.array_equal(a, b) for a, b in
                  zip(jax.tree.leaves(v["batch_stats"][name]), jax.tree.leaves(new["batch_stats"][name])))
    assert changed == (name == "res3"), name
  # Eval mode uses the running statistics: an image's output does not depend on the rest of the batch.
  np.testing.assert_allclose(model.apply(v, x)["C5"][:1], model.apply(v, x[:1])["C5"], rtol=1e-4, atol=1e-5)


def test_group_norm_groups():
  assert [layers.group_norm_groups(c) for c in (16, 32, 64, 256, 2048, 24, 48)] == [8, 16, 32, 32, 32, 12, 24]
  _, v = _model(18, "caffe", "gn", 0, width=16)
  assert set(v["params"]["stem"]["norm1"]) == {"scale", "bias"}
  assert v["params"]["res2"]["block0"]["norm1"]["scale"].shape == (16,)


def test_bf16_dtypes():
  model, v = _model(18, dtype=jnp.bfloat16)
  assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(v))
  out = jax.eval_shape(model.apply, v, jax.ShapeDtypeStruct((1, 37, 53, 3), jnp.float32))
  assert out["C5"].dtype == jnp.bfloat16


def test_bad_config():
  x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
  for kw, msg in [(dict(layout="tf"), "layout"), (dict(depth=42), "depth"), (dict(norm="ln"), "norm"),
                  (dict(stem_pool="valid"), "stem_pool")]:
    with pytest.raises(ValueError, match=msg):
      jax.eval_shape(resnet.ResNet(**kw).init, jax.random.key(0), x)
