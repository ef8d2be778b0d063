"""MobileNet v1 (liuwei16/ALFNet keras_alfnet/model/mobilenet_v1.py) against a numpy re-statement; BN momentum;
freezing mask."""
import jax
import jax.numpy as jnp
import numpy as np

from lla_jax.models import mobilenet
from tests.reference.networks import np_conv2d, np_frozen_bn, randomize

# (pointwise filters, depthwise stride) of blocks 1..13, Howard et al. 2017 Table 1.
SPEC = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]


def np_mobilenet(x, p, stats, alpha, eps=1e-3):
  relu6 = lambda y: np.clip(y, 0.0, 6.0)
  bn = lambda y, name: np_frozen_bn(y, {**p[name], **stats[name]}, eps)
  y = relu6(bn(np_conv2d(x, p["conv1"]["kernel"], None, 2, "same"), "conv1_bn"))
  taps = {}
  for i, (filters, stride) in enumerate(SPEC, start=1):
    y = relu6(bn(np_conv2d(y, p[f"conv_dw_{i}"]["kernel"], None, stride, "same", groups=y.shape[-1]),
                 f"conv_dw_{i}_bn"))
    y = relu6(bn(np_conv2d(y, p[f"conv_pw_{i}"]["kernel"], None, 1, 0), f"conv_pw_{i}_bn"))
    assert y.shape[-1] == int(filters * alpha)
    if i in (5, 11, 13):
      taps[{5: "C3", 11: "C4", 13: "C5"}[i]] = y
  return taps


def _model(alpha, shape):
  model = mobilenet.MobileNetV1(alpha=alpha)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct(shape, jnp.float32))
  return model, {"params": randomize(shapes["params"], 1), "batch_stats": randomize(shapes["batch_stats"], 2)}


def test_matches_numpy_eval_mode():
  model, v = _model(0.25, (1, 67, 45, 3))  # odd sizes exercise TF "same" padding
  x = np.random.default_rng(0).normal(size=(1, 67, 45, 3)).astype(np.float32)
  out = jax.jit(model.apply)(v, x)
  ref = np_mobilenet(x, jax.tree.map(np.asarray, v["params"]), jax.tree.map(np.asarray, v["batch_stats"]), 0.25)
  for k, s, c in [("C3", 8, 64), ("C4", 16, 128), ("C5", 32, 256)]:
    assert out[k].shape == (1, -(-67 // s), -(-45 // s), c)
    np.testing.assert_allclose(np.asarray(out[k]), ref[k], rtol=1e-4, atol=1e-4, err_msg=k)
  assert v["params"]["conv_dw_3"]["kernel"].shape == (3, 3, 1, 32)  # depthwise, no bias anywhere
  assert not any("bias" in m for name, m in v["params"].items() if not name.endswith("_bn"))


def test_train_mode_bn_momentum():
  model, v = _model(0.25, (2, 32, 32, 3))
  x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype(np.float32)
  _, new = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(v, x)
  y = np_conv2d(x, np.asarray(v["params"]["conv1"]["kernel"]), None, 2, "same")
  old = v["batch_stats"]["conv1_bn"]
  np.testing.assert_allclose(new["batch_stats"]["conv1_bn"]["mean"], 0.99 * old["mean"] + 0.01 * y.mean((0, 1, 2)),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(new["batch_stats"]["conv1_bn"]["var"], 0.99 * old["var"] + 0.01 * y.var((0, 1, 2)),
                             rtol=1e-4, atol=1e-6)


def test_full_width_shapes_and_mask():
  model = mobilenet.MobileNetV1()
  x = jax.ShapeDtypeStruct((1, 224, 320, 3), jnp.float32)
  v = jax.eval_shape(model.init, jax.random.key(0), x)
  out = jax.eval_shape(model.apply, v, x)
  assert {k: o.shape for k, o in out.items()} == {"C3": (1, 28, 40, 256), "C4": (1, 14, 20, 512),
                                                 "C5": (1, 7, 10, 1024)}
  mask = mobilenet.trainable_mask(v["params"])
  assert not mask["conv1"]["kernel"] and not mask["conv_dw_1"]["kernel"] and not mask["conv_pw_1"]["kernel"]
  assert mask["conv1_bn"]["scale"] and mask["conv_dw_2"]["kernel"] and mask["conv_pw_1_bn"]["bias"]
  assert sum(not m for m in jax.tree.leaves(mask)) == 3
