"""Weight importers (issue 7): Keras numerical parity, MSRA caffe / torchvision / cvpods name tables."""
import os
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import base
from lla_jax import weights
from lla_jax.models import detector, mobilenet, resnet
from tests.cvpods_weights import cvpods_state_dict, tiny_model_cfg

HW = (64, 96)


def _shapes(model, shape=(1, *HW, 3)):
  return jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct(shape, jnp.float32))


def _zeros(tree):
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), tree)


def _flat(tree):
  return {"/".join(str(k.key) for k in p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


# ------------------------------------------------------------------------------------------- Keras parity


def _keras():
  os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
  keras = pytest.importorskip("keras")
  return keras


def _randomize_keras(model, seed):
  """Random kernels (He-scaled), biases, and BN statistics, so every stored weight matters."""
  rng = np.random.default_rng(seed)
  for layer in model.layers:
    ws = layer.get_weights()
    if not ws:
      continue
    if len(ws) == 4:  # BN: gamma, beta, moving_mean, moving_variance
      c = ws[0].shape
      ws = [rng.uniform(0.3, 1.0, c), rng.normal(0, 0.1, c), rng.normal(0, 0.1, c), rng.uniform(0.5, 1.5, c)]
    else:
      k = ws[0]
      fan_in = np.prod(k.shape[:-1]) if k.shape[-1] != 1 or len(k.shape) < 4 else np.prod(k.shape[:2])
      ws = [rng.normal(0, np.sqrt(2.0 / fan_in), k.shape)] + [rng.normal(0, 0.1, w.shape) for w in ws[1:]]
    layer.set_weights([w.astype(np.float32) for w in ws])


def _keras_features(model, taps, x):
  keras = _keras()
  sub = keras.Model(model.input, [model.get_layer(t).output for t in taps])
  return [np.asarray(o) for o in sub(x, training=False)]


def test_keras_resnet50_parity(tmp_path):
  keras = _keras()
  km = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(*HW, 3))
  _randomize_keras(km, 0)
  path = str(tmp_path / "resnet50.h5")
  km.save(path)  # legacy HDF5: model_weights/<layer>/<layer>/{kernel,bias,gamma,...}
  x = np.random.default_rng(1).normal(size=(2, *HW, 3)).astype(np.float32)
  ref = _keras_features(km, ["conv3_block4_out", "conv4_block6_out", "conv5_block3_out"], x)

  ours = resnet.ResNet(depth=50, layout="keras", bn_eps=1.001e-5, stem_pool="symmetric")
  params, report = weights.load_keras(_zeros(_shapes(ours)["params"]), path)
  assert report.format == "keras_v2" and not report.missing and not report.unused
  assert len(report.loaded) == len(jax.tree.leaves(params))
  out = jax.jit(ours.apply)({"params": params}, x)
  for k, r in zip(("C3", "C4", "C5"), ref):  # features of magnitude ~10
    assert out[k].shape == r.shape
    assert float(np.abs(np.asarray(out[k]) - r).max()) <= 1e-4, k

  # The same file with Keras-v1 / ALFNet layer names (res2a_branch2a, bn2a_branch2a, Keras-1 weight names).
  v1 = str(tmp_path / "resnet50_v1.h5")
  _rename_to_keras_v1(path, v1)
  params_v1, report = weights.load_keras(_zeros(_shapes(resnet.ResNet(depth=50, layout="keras"))["params"]), v1)
  assert report.format == "keras_v1" and not report.missing
  a, b = _flat(params), _flat(params_v1)
  assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def _rename_to_keras_v1(src, dst):
  """Rewrites keras.applications names into the Keras-v1 ResNet50 scheme (written from keras-applications v1)."""
  import h5py
  import re
  role_v1 = {"kernel": "W", "bias": "b", "gamma": "gamma", "beta": "beta", "moving_mean": "running_mean",
             "moving_variance": "running_std"}
  with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
    root = f["model_weights"]
    names = []
    for layer in [n.decode() if isinstance(n, bytes) else n for n in root.attrs["layer_names"]]:
      m = re.fullmatch(r"conv(\d)_block(\d+)_(\d)_(conv|bn)", layer)
      if layer in ("conv1_conv", "conv1_bn"):
        new = "conv1" if layer == "conv1_conv" else "bn_conv1"
      elif m:
        stage, block, idx, kind = m.groups()
        branch = "1" if idx == "0" else "2" + "abc"[int(idx) - 1]
        new = f"{'res' if kind == 'conv' else 'bn'}{stage}{'abcdef'[int(block) - 1]}_branch{branch}"
      else:
        continue
      wnames = [w.decode() if isinstance(w, bytes) else w for w in root[layer].attrs["weight_names"]]
      grp = g.create_group(new)
      stored = []
      for w in wnames:
        role = w.split("/")[-1].split(":")[0]
        name = f"{new}_{role_v1[role]}:0"
        grp.create_dataset(name, data=root[layer][w][()])
        stored.append(name.encode())
      grp.attrs["weight_names"] = stored
      names.append(new.encode())
    g.attrs["layer_names"] = names


def test_keras_mobilenet_parity(tmp_path):
  keras = _keras()
  km = keras.applications.MobileNet(weights=None, include_top=False, input_shape=(*HW, 3), alpha=1.0)
  _randomize_keras(km, 2)
  path = str(tmp_path / "mobilenet.h5")
  km.save(path)
  x = np.random.default_rng(3).normal(size=(2, *HW, 3)).astype(np.float32)
  ref = _keras_features(km, ["conv_pw_5_relu", "conv_pw_11_relu", "conv_pw_13_relu"], x)
  ours = mobilenet.MobileNetV1(alpha=1.0)
  variables, report = weights.load_keras(_zeros(_shapes(ours)), path)
  assert report.format == "keras_mobilenet" and not report.missing and not report.unused
  out = jax.jit(ours.apply)(variables, x)
  for k, r in zip(("C3", "C4", "C5"), ref):
    assert out[k].shape == r.shape
    assert float(np.abs(np.asarray(out[k]) - r).max()) <= 1e-4, k
  with pytest.raises(ValueError, match="batch_stats"):
    weights.load_keras(variables["params"], path)


def test_keras3_weights_file_is_refused(tmp_path):
  keras = _keras()
  km = keras.applications.MobileNet(weights=None, include_top=False, input_shape=(32, 32, 3), alpha=0.25)
  path = str(tmp_path / "m.weights.h5")
  km.save_weights(path)
  with pytest.raises(ValueError, match="layer_names"):
    weights.read_keras_h5(path)


# ----------------------------------------------------------------------------------- MSRA caffe (c2) pkl


def c2_blobs(rng, depth=50, width=16, stats=False):
  """Caffe2 blob names and OIHW shapes of an MSRA ResNet (Detectron naming), random values."""
  blobs = {}

  def conv(name, o, i, k):
    blobs[name + "_w"] = rng.normal(size=(o, i, k, k)).astype(np.float32)

  def bn(name, c):
    blobs[name + "_s"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
    blobs[name + "_b"] = rng.normal(size=c).astype(np.float32)
    if stats:
      blobs[name + "_rm"] = rng.normal(size=c).astype(np.float32)
      blobs[name + "_riv"] = rng.uniform(0.5, 1.5, c).astype(np.float32)

  conv("conv1", width, 3, 7)
  bn("res_conv1_bn", width)
  cin = width
  for s, n in zip(range(2, 6), {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}[depth]):
    mid, out = width * 2 ** (s - 2), 4 * width * 2 ** (s - 2)
    for b in range(n):
      p = f"res{s}_{b}_"
      if b == 0:
        conv(p + "branch1", out, cin, 1)
        bn(p + "branch1_bn", out)
      conv(p + "branch2a", mid, cin if b == 0 else out, 1)
      bn(p + "branch2a_bn", mid)
      conv(p + "branch2b", mid, mid, 3)
      bn(p + "branch2b_bn", mid)
      conv(p + "branch2c", out, mid, 1)
      bn(p + "branch2c_bn", out)
    cin = out
  return blobs


def _caffe_r50(width=16):
  return _zeros(_shapes(resnet.ResNet(depth=50, layout="caffe", width=width))["params"])


@pytest.mark.parametrize("wrapper", ["plain", "blobs", "model"])
def test_msra_caffe_pkl(tmp_path, wrapper):
  blobs = c2_blobs(np.random.default_rng(0))
  extra = {"pred_w": np.zeros((1000, 2048), np.float32), "pred_b": np.zeros(1000, np.float32),
           "conv1_w_momentum": np.zeros((16, 3, 7, 7), np.float32)}
  content = {**blobs, **extra}
  content = {"plain": content, "blobs": {"blobs": content}, "model": {"model": content, "__author__": "x"}}[wrapper]
  path = str(tmp_path / "R-50.pkl")
  with open(path, "wb") as f:
    pickle.dump(content, f)
  params, report = weights.load_msra_caffe(_caffe_r50(), path)
  assert sorted(report.unused) == ["pred_b", "pred_w"] and not report.missing
  p = params
  np.testing.assert_array_equal(p["stem"]["conv1"]["kernel"], blobs["conv1_w"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(p["stem"]["norm1"]["scale"], blobs["res_conv1_bn_s"])
  blk = p["res4"]["block0"]
  np.testing.assert_array_equal(blk["shortcut"]["kernel"], blobs["res4_0_branch1_w"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(blk["conv2"]["kernel"], blobs["res4_0_branch2b_w"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(blk["shortcut_norm"]["bias"], blobs["res4_0_branch1_bn_b"])
  np.testing.assert_array_equal(p["res5"]["block2"]["norm3"]["scale"], blobs["res5_2_branch2c_bn_s"])
  # No running statistics in MSRA weights: FrozenBN is y = s·x + b (mean 0, var 1 − eps).
  np.testing.assert_array_equal(blk["norm2"]["mean"], 0.0)
  np.testing.assert_allclose(blk["norm2"]["var"], 1 - 1e-5)
  assert len(report.defaulted) == 2 * sum(1 for k in blobs if k.endswith("_bn_s"))
  assert len(report.loaded) == len(blobs)


def test_msra_caffe_with_stats_and_errors(tmp_path):
  rng = np.random.default_rng(1)
  blobs = c2_blobs(rng, stats=True)
  params, report = weights.load_resnet(_caffe_r50(), blobs, "c2")
  np.testing.assert_array_equal(params["res3"]["block1"]["norm1"]["var"], blobs["res3_1_branch2a_bn_riv"])
  np.testing.assert_array_equal(params["res3"]["block1"]["norm1"]["mean"], blobs["res3_1_branch2a_bn_rm"])
  assert not report.defaulted
  bad = dict(blobs, res3_1_branch2b_w=np.zeros((32, 32, 1, 1), np.float32))
  with pytest.raises(ValueError, match=r"res3_1_branch2b_w \(32, 32, 1, 1\) -> params/res3/block1/conv2/kernel"):
    weights.load_resnet(_caffe_r50(), bad, "c2")
  deeper = c2_blobs(rng, depth=101)  # R-101 weights into R-50: res4_6.. have no place
  with pytest.raises(ValueError, match="res4_22_branch2c_w"):
    weights.load_resnet(_caffe_r50(), deeper, "c2")
  partial = {k: v for k, v in blobs.items() if not k.startswith("res5_2_")}
  with pytest.raises(ValueError, match="params/res5/block2/conv1/kernel"):
    weights.load_resnet(_caffe_r50(), partial, "c2")


# ---------------------------------------------------------------------------------------- torchvision


def torchvision_state_dict(rng, width=16):
  """torchvision ResNet-18 names (conv1, bn1, layer{1-4}.{b}.conv{n}/bn{n}/downsample.{0,1}, fc)."""
  sd = {}

  def conv(name, o, i, k):
    sd[name + ".weight"] = rng.normal(size=(o, i, k, k)).astype(np.float32)

  def bn(name, c):
    for leaf, v in [("weight", rng.uniform(0.5, 1.5, c)), ("bias", rng.normal(size=c)),
                    ("running_mean", rng.normal(size=c)), ("running_var", rng.uniform(0.5, 1.5, c))]:
      sd[f"{name}.{leaf}"] = v.astype(np.float32)
    sd[f"{name}.num_batches_tracked"] = np.asarray(7)

  conv("conv1", width, 3, 7)
  bn("bn1", width)
  cin = width
  for layer in range(1, 5):
    out = width * 2 ** (layer - 1)
    for b in range(2):
      p = f"layer{layer}.{b}."
      conv(p + "conv1", out, cin if b == 0 else out, 3)
      bn(p + "bn1", out)
      conv(p + "conv2", out, out, 3)
      bn(p + "bn2", out)
      if b == 0 and layer > 1:
        conv(p + "downsample.0", out, cin, 1)
        bn(p + "downsample.1", out)
    cin = out
  sd["fc.weight"] = rng.normal(size=(1000, cin)).astype(np.float32)
  sd["fc.bias"] = np.zeros(1000, np.float32)
  return sd


def test_torchvision_names(tmp_path):
  sd = torchvision_state_dict(np.random.default_rng(0))
  path = str(tmp_path / "r18.npz")
  np.savez(path, **sd)
  target = _zeros(_shapes(resnet.ResNet(depth=18, layout="torchvision", width=16))["params"])
  params, report = weights.load_torchvision(target, path)
  assert "fc.weight" in report.unused and not report.missing
  blk = params["res3"]["block0"]
  np.testing.assert_array_equal(blk["shortcut"]["kernel"], sd["layer2.0.downsample.0.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(blk["shortcut_norm"]["var"], sd["layer2.0.downsample.1.running_var"])
  np.testing.assert_array_equal(params["res5"]["block1"]["norm2"]["mean"], sd["layer4.1.bn2.running_mean"])
  np.testing.assert_array_equal(params["stem"]["norm1"]["scale"], sd["bn1.weight"])


def torch_resnet(torch, depth, width):
  """A small torch reference of torchvision's ResNet (written from its definition: stride in the 3x3 of
  Bottleneck / first 3x3 of BasicBlock, 1x1 downsample, symmetric pads), returning the layer2..4 outputs."""
  nn = torch.nn
  bottleneck = depth >= 50
  expansion = 4 if bottleneck else 1

  class Block(nn.Module):
    def __init__(self, cin, mid, stride):
      super().__init__()
      out = mid * expansion
      if bottleneck:
        self.conv1, self.bn1 = nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid)
        self.conv2, self.bn2 = nn.Conv2d(mid, mid, 3, stride, 1, bias=False), nn.BatchNorm2d(mid)
        self.conv3, self.bn3 = nn.Conv2d(mid, out, 1, bias=False), nn.BatchNorm2d(out)
      else:
        self.conv1, self.bn1 = nn.Conv2d(cin, mid, 3, stride, 1, bias=False), nn.BatchNorm2d(mid)
        self.conv2, self.bn2 = nn.Conv2d(mid, mid, 3, 1, 1, bias=False), nn.BatchNorm2d(mid)
      self.downsample = (nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False), nn.BatchNorm2d(out))
                         if stride != 1 or cin != out else None)

    def forward(self, x):
      y = torch.relu(self.bn1(self.conv1(x)))
      y = self.bn2(self.conv2(y))
      if bottleneck:
        y = self.bn3(self.conv3(torch.relu(y)))
      return torch.relu(y + (x if self.downsample is None else self.downsample(x)))

  class Net(nn.Module):
    def __init__(self):
      super().__init__()
      self.conv1, self.bn1 = nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width)
      self.pool = nn.MaxPool2d(3, 2, 1)
      cin = width
      for i, n in enumerate(resnet.STAGE_BLOCKS[depth]):
        blocks = []
        for b in range(n):
          blocks.append(Block(cin, width * 2 ** i, 2 if b == 0 and i > 0 else 1))
          cin = width * 2 ** i * expansion
        setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))

    def forward(self, x):
      x = self.pool(torch.relu(self.bn1(self.conv1(x))))
      outs = []
      for i in range(1, 5):
        x = getattr(self, f"layer{i}")(x)
        outs.append(x)
      return outs[1:]

  return Net()


@pytest.mark.parametrize("depth", [18, 50])
def test_torchvision_layout_parity_with_torch(tmp_path, depth):
  """Our torchvision-layout ResNet with converted weights vs a torch reference: max abs diff <= 1e-4."""
  torch = pytest.importorskip("torch")
  torch.manual_seed(depth)
  net = torch_resnet(torch, depth, 8).eval()
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, torch.nn.BatchNorm2d):   # random statistics, so every stored tensor matters
        m.weight.uniform_(0.3, 1.0)
        m.bias.normal_(0, 0.1)
        m.running_mean.normal_(0, 0.1)
        m.running_var.uniform_(0.5, 1.5)
  path = str(tmp_path / "r.pth")
  torch.save(net.state_dict(), path)
  x = np.random.default_rng(depth).normal(size=(2, 70, 90, 3)).astype(np.float32)
  with torch.no_grad():
    ref = [o.permute(0, 2, 3, 1).numpy() for o in net(torch.from_numpy(x).permute(0, 3, 1, 2))]
  ours = resnet.ResNet(depth=depth, layout="torchvision", width=8)
  params, report = weights.load_torchvision(_zeros(_shapes(ours, (1, 70, 90, 3))["params"]), path)
  assert not report.missing and report.unused == sorted(n for n in net.state_dict() if "num_batches" in n)
  out = jax.jit(ours.apply)({"params": params}, x)
  for k, r in zip(("C3", "C4", "C5"), ref):
    assert out[k].shape == r.shape, k
    assert float(np.abs(np.asarray(out[k]) - r).max()) <= 1e-4, k


def test_torchvision_pth(tmp_path):
  torch = pytest.importorskip("torch")
  sd = torchvision_state_dict(np.random.default_rng(0))
  path = str(tmp_path / "r18.pth")
  torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in sd.items()}, path)
  target = _zeros(_shapes(resnet.ResNet(depth=18, layout="torchvision", width=16))["params"])
  params, _ = weights.load_torchvision(target, path)
  np.testing.assert_array_equal(params["res2"]["block1"]["conv2"]["kernel"],
                                sd["layer1.1.conv2.weight"].transpose(2, 3, 1, 0))


# ------------------------------------- cvpods (the state dict written by tests/cvpods_weights.py)
def _detector_params(cfg):
  return _zeros(_shapes(detector.build_detector(cfg), (1, 64, 64, 3))["params"])


def test_pth_without_torch_is_a_clear_error(tmp_path, monkeypatch):
  import sys
  monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
  path = tmp_path / "model_final.pth"
  path.write_bytes(b"not read")
  with pytest.raises(ImportError, match="needs PyTorch"):
    weights.read_weights(str(path))


# ------------------------------------------------------------------------------------------ dispatch
def test_load_pretrained_backbone_and_checks(tmp_path):
  cfg = tiny_model_cfg()
  cfg.backbone.width = 16
  path = str(tmp_path / "R-50.pkl")
  blobs = c2_blobs(np.random.default_rng(4))
  with open(path, "wb") as f:
    pickle.dump(blobs, f)
  params = _detector_params(cfg)
  new, report = weights.load_pretrained(params, path, cfg)
  assert report.format == "c2"
  np.testing.assert_array_equal(new["backbone"]["res2"]["block0"]["conv1"]["kernel"],
                                blobs["res2_0_branch2a_w"].transpose(2, 3, 1, 0))
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(new["head"]), jax.tree.leaves(params["head"])))
  cfg.backbone.layout = "torchvision"
  with pytest.raises(ValueError, match="layout"):
    weights.load_pretrained(params, path, cfg)
  cfg.backbone.layout, cfg.backbone.norm = "caffe", "gn"
  with pytest.raises(ValueError, match="frozen_bn"):
    weights.load_pretrained(params, path, cfg)
  with pytest.raises(FileNotFoundError):
    weights.load_pretrained(params, str(tmp_path / "none.pkl"), cfg)
  bad = tmp_path / "w.bin"
  bad.write_bytes(b"x")
  with pytest.raises(ValueError, match="suffix"):
    weights.read_weights(str(bad))


def test_pixel_convention():
  assert weights.pixel_convention("caffe") == dict(bgr=True, mean=(103.530, 116.280, 123.675), std=(1.0, 1.0, 1.0))
  assert weights.pixel_convention("torchvision")["bgr"] is False
  assert weights.pixel_convention("keras")["mean"] == (103.939, 116.779, 123.68)
  with pytest.raises(ValueError, match="pixel convention"):
    weights.pixel_convention("rgb")


# ---------------------------------------------------------------------------------------- --mode=convert


def tiny_lla_config(source):
  """A tiny LLA.FCOS config whose detector matches `tiny_model_cfg`, converting `source`."""
  c = base.get_base_config()
  c.model = tiny_model_cfg()
  c.data.pad_size = (64, 64)
  c.convert.source = str(source)
  return c


def test_train_state_from_pretrained_file(tmp_path):
  """config.model.backbone.pretrained goes through load_variables: the file's values land in the initial
  train state, and a pixel convention that disagrees with the file stops before anything is built."""
  from lla_jax import sharding, train_state
  from lla_jax.methods import get_method
  c = tiny_lla_config(tmp_path / "unused.npz")
  sd = cvpods_state_dict(np.random.default_rng(7), c.model)
  c.model.backbone.pretrained = str(tmp_path / "model_final.npz")
  np.savez(c.model.backbone.pretrained, **sd)
  with jax.default_prng_impl("unsafe_rbg"):
    state, _, _ = train_state.create_train_state(c, get_method(c), sharding.make_mesh())
  exported = weights.export_cvpods(jax.device_get(state.params))
  for k in sd:
    np.testing.assert_array_equal(exported[k], sd[k], err_msg=k)
  c.data.bgr = False
  with pytest.raises(ValueError, match="data.bgr=False"):
    train_state.create_train_state(c, get_method(c), sharding.make_mesh())


def test_pixel_conventions_of_formats():
  data = base.get_base_config().data   # MSRA caffe pixels
  assert weights.check_pixel_convention(data, "c2", "caffe", "f") == "caffe"
  assert weights.check_pixel_convention(data, "cvpods", "caffe", "f") == "caffe"
  with pytest.raises(ValueError, match="'torchvision' pixels"):
    weights.check_pixel_convention(data, "cvpods", "torchvision", "f")
  data.update(weights.pixel_convention("keras") | {"pixel_mean": weights.pixel_convention("keras")["mean"],
                                                   "pixel_std": weights.pixel_convention("keras")["std"]})
  # ALFNet feeds MobileNet caffe-style pixels; the Keras 'tf' convention is accepted too.
  assert weights.check_pixel_convention(data, "keras_mobilenet", None, "f") == "keras"
  assert weights.check_pixel_convention(data, "keras_v1", "keras", "f") == "keras"
  assert weights.override_flags("torchvision") == (
      "--config.data.bgr=False --config.data.pixel_mean='(123.675, 116.28, 103.53)' "
      "--config.data.pixel_std='(58.395, 57.12, 57.375)'")


def test_load_variables_mobilenet_alfnet(tmp_path):
  """Keras MobileNet v1 weights into ALFNet's backbone, BN statistics included, through load_variables."""
  keras = _keras()
  from configs.alfnet import alfnet_config
  from lla_jax.methods import alfnet
  km = keras.applications.MobileNet(weights=None, include_top=False, input_shape=(64, 64, 3), alpha=0.25)
  _randomize_keras(km, 7)
  path = str(tmp_path / "mobilenet.h5")
  km.save(path)
  c = alfnet_config(1, backbone="mobilenet")
  c.model.backbone.alpha = 0.25
  c.alfnet.cpb_channels = c.alfnet.p3_channels = c.alfnet.p6_channels = 8
  shapes = jax.eval_shape(lambda: alfnet.build(c).init(jax.random.key(0), (64, 128)))
  variables, report = weights.load_variables(_zeros(shapes), path, c.model)
  assert report.format == "keras_mobilenet" and not report.missing and not report.unused
  by_name = {layer.name: layer.get_weights() for layer in km.layers}
  np.testing.assert_array_equal(variables["batch_stats"]["backbone"]["conv_pw_7_bn"]["var"], by_name["conv_pw_7_bn"][3])
  np.testing.assert_array_equal(variables["params"]["backbone"]["conv_dw_3"]["kernel"],
                                by_name["conv_dw_3"][0].transpose(0, 1, 3, 2))
  assert not np.any(np.asarray(variables["params"]["pred0_1"]["conv"]["kernel"]))   # the head is not in the file
  with pytest.raises(ValueError, match="batch_stats"):
    weights.load_pretrained(_zeros(shapes)["params"], path, c.model)
  c2 = alfnet_config(1)
  with pytest.raises(ValueError, match="MobileNet v1 weights, but config.model.backbone is a resnet"):
    weights.load_variables(_zeros(jax.eval_shape(lambda: alfnet.build(c2).init(jax.random.key(0), (64, 128)))), path,
                           c2.model)
