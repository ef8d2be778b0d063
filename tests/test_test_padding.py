"""Test-time padding: a converted cvpods LLA.FCOS R-50 checkpoint run through --mode=predict gives the
detections of the released test input (each image resized, mean-subtracted in BGR and zero-padded to its
own size rounded up to 32: cvpods ImageList with SIZE_DIVISIBILITY 32), and different ones under
test.padding='fixed' (the head's GroupNorm takes its statistics over the padding too).

The checkpoint is a cvpods-named state dict with random weights of the real R-50 shapes, scaled so
that activations stay of order one (tests/test_weights.py cvpods_state_dict(scaled=True)); images are
small (short side 160) so that R-50 runs on a CPU (marked slow); a thin copy of the model runs by default.
"""
import os
import pickle

import jax
import numpy as np
import pytest
from PIL import Image

from configs import base
from lla_jax import cli, sharding
from lla_jax.evaluation import odgt
from lla_jax.methods import get_method
from lla_jax.train_state import restore_train_state
from tests.cvpods_weights import cvpods_state_dict, tiny_model_cfg

# Name -> (height, width): landscape, portrait and an odd size (no side a multiple of 32 after resizing).
SIZES = {"landscape": (150, 230), "portrait": (230, 150), "odd": (97, 131)}
MIN_SIZE, MAX_SIZE = 160, 256
CAFFE_MEAN_BGR = (103.530, 116.280, 123.675)


def draw(path, height, width, seed):
  """A smooth random picture with a few bright upright rectangles, saved losslessly."""
  rng = np.random.default_rng(seed)
  small = rng.integers(0, 256, (max(height // 16, 2), max(width // 16, 2), 3), dtype=np.uint8)
  image = np.asarray(Image.fromarray(small).resize((width, height), Image.BILINEAR)).copy()
  for _ in range(4):
    h = int(rng.integers(height // 4, height // 2))
    w = max(h // 3, 4)
    y, x = int(rng.integers(0, height - h)), int(rng.integers(0, width - w))
    image[y:y + h, x:x + w] = rng.integers(180, 256, 3)
  Image.fromarray(image).save(path)


def released_input(path) -> dict:
  """The released test input of one image, restated from cvpods (ResizeShortestEdge: short side
  MIN_SIZE, long side <= MAX_SIZE, size int(x * scale + 0.5), PIL bilinear; BGR minus the caffe mean;
  zero padding bottom/right to the next multiple of 32): a batch of one."""
  im = Image.open(path).convert("RGB")
  h, w = im.height, im.width
  scale = MIN_SIZE / min(h, w)
  if max(h, w) * scale > MAX_SIZE:
    scale = MAX_SIZE / max(h, w)
  nh, nw = int(h * scale + 0.5), int(w * scale + 0.5)
  pixels = np.asarray(im.resize((nw, nh), Image.BILINEAR), np.float32)[..., ::-1] - np.float32(CAFFE_MEAN_BGR)
  padded = np.zeros((1, -(-nh // 32) * 32, -(-nw // 32) * 32, 3), np.float32)
  padded[0, :nh, :nw] = pixels
  return {"image": padded, "image_size": np.array([[nh, nw]], np.int32), "orig_size": np.array([[h, w]], np.int32)}


def predicted(workdir) -> dict:
  """ID -> (boxes (N, 4) xywh, scores (N,)) of workdir/predictions/detections.odgt."""
  out = {}
  for line in odgt.load(os.path.join(workdir, "predictions", "detections.odgt")):
    dt = line["dtboxes"]
    out[line["ID"]] = (np.array([d["box"] for d in dt]).reshape(-1, 4), np.array([d["score"] for d in dt]))
  return out


@pytest.mark.parametrize("model", [pytest.param("r50", marks=pytest.mark.slow), "tiny"])
def test_converted_checkpoint_predicts_like_the_released_test(tmp_path, capsys, model):
  c = base.get_base_config()                       # LLA.FCOS R-50: the released model's shapes
  if model == "tiny":                              # the same R-50 layout, 8x thinner, 16-channel FPN and head
    c.model = tiny_model_cfg()
  c.data.min_size, c.data.max_size, c.data.pad_size = MIN_SIZE, MAX_SIZE, (256, 256)
  c.convert.source = str(tmp_path / "model_final.pkl")
  with open(c.convert.source, "wb") as f:
    pickle.dump({"model": cvpods_state_dict(np.random.default_rng(0), c.model, scaled=True)}, f)
  images = tmp_path / "images"
  images.mkdir()
  for k, (name, (h, w)) in enumerate(SIZES.items()):
    draw(images / f"{name}.png", h, w, seed=k)
  workdir = str(tmp_path / "w")
  with jax.default_prng_impl("unsafe_rbg"):      # threefry makes the Flax init compile ~8x slower on CPU
    cli.run(c, workdir, "convert")
  assert c.test.padding == "divisible"             # the default
  cli.run(c, workdir, "predict", images=str(images))
  out = capsys.readouterr().out
  # 160x245 -> 160x256, 245x160 -> 256x160, 160x216 -> 160x224: three shapes, one compilation each.
  assert "3 padded shapes = 3 predict compilations (160x224, 160x256, 256x160)" in out
  suite = predicted(workdir)
  assert sorted(suite) == sorted(SIZES)

  method = get_method(c)
  state = restore_train_state(c, workdir, method, sharding.make_mesh(), mode="predict")
  variables = {"params": state.params, **state.model_state}
  predict = jax.jit(method.predict)
  for name in SIZES:
    dets = jax.device_get(predict(variables, released_input(images / f"{name}.png")))
    v = np.asarray(dets.valid[0])
    boxes = np.array([odgt.xywh(b, None) for b in np.asarray(dets.boxes[0])[v]]).reshape(-1, 4)
    scores = np.asarray(dets.scores[0])[v]
    assert len(scores) >= 20, (name, len(scores))
    np.testing.assert_array_equal(suite[name][0], boxes, err_msg=name)
    np.testing.assert_array_equal(suite[name][1], scores.astype(np.float64), err_msg=name)

  # Padded to data.pad_size instead, every image's detections change.
  c.test.padding = "fixed"
  cli.run(c, workdir, "predict", images=str(images))
  assert "test.padding 'fixed': 1 padded shapes = 1 predict compilations (256x256)" in capsys.readouterr().out
  fixed = predicted(workdir)
  for name in SIZES:
    (b0, s0), (b1, s1) = suite[name], fixed[name]
    assert len(s1) > 0
    same = len(s0) == len(s1) and np.allclose(b0, b1, atol=0.5) and np.allclose(s0, s1, atol=1e-3)
    assert not same, name
