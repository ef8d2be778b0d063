"""--mode=export and lla_jax/serving.py: the exported quick-start detector, run in a fresh process with no
model code, gives --mode=predict's detections, for any batch size, and --mode=predict --exported does too."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from configs import alfnet_quickstart
from data_pipelines import synthetic, transforms
from lla_jax import cli, export, predict, serving
from lla_jax.evaluation import odgt
from lla_jax.methods import get_method
from tests.test_end_to_end import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# (h, w): landscape (the training size), portrait, and an odd size that is resized up (64 / 50).
SIZES = ((64, 96), (96, 64), (50, 70))
# Tolerance against --mode=predict: the artifact compiles the same StableHLO on the same CPU; the only
# freedom left is XLA's fusion of the normalisation and the batch size, so float32 rounding at most.
BOX_ATOL, SCORE_ATOL = 1e-4, 1e-6   # pixels, score units (measured: 7.6e-6 px, 3e-8)

SERVE = """
import json, sys
import numpy as np
from PIL import Image
from lla_jax import serving
artifact, contract = serving.load(sys.argv[1])
images = [Image.open(p) for p in sys.argv[3:]]
single = [serving.detect(artifact, contract, [im]) for im in images]   # batch size 1, three calls
batch = serving.detect(artifact, contract, images)                     # batch size 3, one call
out = {"b1_" + k: np.concatenate([s[k] for s in single]) for k in single[0]}
out.update({"b3_" + k: v for k, v in batch.items()})
np.savez(sys.argv[2], **out)
print(json.dumps(sorted(m for m in sys.modules if m.startswith(("lla_jax.", "flax", "optax", "orbax", "tensorflow")))))
"""


def config(data_dir):
  c = tiny_config(data_dir, 2)
  c.train.eval_after_train = False
  c.test.score_thresh = 0.0   # two training steps leave every probability near the 0.01 prior
  # The artifact pads every image to its one input_size; --mode=predict does the same under 'fixed' padding
  # (its default, 'divisible', pads each image to its own multiple of 32: other GroupNorm statistics).
  c.test.padding = "fixed"
  return c


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  """(config, workdir, image folder, artifact path, predict's odgt lines) of the 2-step quick start."""
  tmp = tmp_path_factory.mktemp("export")
  c, workdir, images = config(tmp / "data"), str(tmp / "w"), tmp / "images"
  images.mkdir()
  for i, (h, w) in enumerate(SIZES):
    Image.fromarray(synthetic.render_scene(i, h, w)["image"]).save(images / f"im{i}.png")
  with jax.default_prng_impl("unsafe_rbg"):   # threefry init compiles ~8x slower on CPU
    cli.train_and_evaluate(c, workdir)
  path = cli.run(c, workdir, "export", config_name="configs/quickstart.py")
  predict.predict_folder(c, workdir, str(images))
  return c, workdir, str(images), path, odgt.load(os.path.join(workdir, "predictions", "detections.odgt"))


def as_arrays(line):
  """(xyxy boxes (N, 4), scores (N,)) of an odgt detection line."""
  boxes = np.array([d["box"] for d in line["dtboxes"]], np.float64).reshape(-1, 4)
  return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], 1), np.array([d["score"] for d in line["dtboxes"]])


def assert_same(lines, dets, where):
  for row, line in enumerate(lines):
    boxes, scores = as_arrays(line)
    v = dets["valid"][row]
    assert len(boxes) == v.sum() > 0, (where, line["ID"])
    np.testing.assert_allclose(dets["boxes"][row][v], boxes, atol=BOX_ATOL, rtol=0, err_msg=f"{where} {line['ID']}")
    np.testing.assert_allclose(dets["scores"][row][v], scores, atol=SCORE_ATOL, rtol=0, err_msg=f"{where} {line['ID']}")
    assert (dets["boxes"][row][~v] == 0).all() and (dets["scores"][row][~v] == 0).all()
    print(where, line["ID"], len(boxes), "detections; max |box diff|", np.abs(dets["boxes"][row][v] - boxes).max(),
          "max |score diff|", np.abs(dets["scores"][row][v] - scores).max())


def test_contract(exported):
  c, workdir, _, path, _ = exported
  assert path == os.path.join(workdir, "export", "detector.jax")
  spec = json.load(open(os.path.join(workdir, "export", "detector.json")))
  assert spec["input_size"] == [96, 96] and spec["step"] == 2 and spec["config"] == "configs/quickstart.py"
  assert spec["platforms"] == ["cpu", "cuda"] and spec["inputs"]["image"]["dtype"] == "uint8"
  assert spec["normalisation"]["pixel_mean"] == list(c.data.pixel_mean) and spec["normalisation"]["bgr"] is False
  assert spec["resize"]["min_size"] == 64 and spec["resize"]["max_size"] == 96
  assert list(spec["outputs"]) == ["boxes", "scores", "classes", "valid"]
  assert spec["outputs"]["boxes"]["shape"] == ["batch", c.test.max_detections, 4]


def test_fresh_process_without_model_code_matches_predict(exported, tmp_path):
  _, _, images, path, lines = exported
  files = [os.path.join(images, f"im{i}.png") for i in range(len(SIZES))]
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)   # one CPU device, as a server would have
  out = subprocess.run([sys.executable, "-c", SERVE, path, str(tmp_path / "dets.npz"), *files], env=env, cwd=tmp_path,
                       capture_output=True, text=True, check=True)
  assert json.loads(out.stdout.strip().splitlines()[-1]) == ["lla_jax.serving"]   # no models, flax, optax, ...
  got = np.load(tmp_path / "dets.npz")
  for batch in ("b1", "b3"):   # the symbolic batch size: one artifact, batches of 1 and 3
    assert got[f"{batch}_boxes"].shape == (3, 300, 4) and got[f"{batch}_classes"].dtype == np.int32
    assert_same(lines, {k: got[f"{batch}_{k}"] for k in ("boxes", "scores", "valid")}, batch)


def test_predict_exported_writes_the_same_detections(exported, tmp_path):
  c, _, images, path, lines = exported
  out_dir = predict.predict_folder(c, str(tmp_path), images, exported=path)
  served = odgt.load(os.path.join(out_dir, "detections.odgt"))
  assert [l["ID"] for l in served] == [l["ID"] for l in lines] == ["im0", "im1", "im2"]
  assert sorted(os.listdir(out_dir)) == ["detections.odgt", "im0.png", "im1.png", "im2.png"]
  for mine, theirs in zip(served, lines):
    (b1, s1), (b2, s2) = as_arrays(mine), as_arrays(theirs)
    assert (mine["width"], mine["height"]) == (theirs["width"], theirs["height"])
    np.testing.assert_allclose(b1, b2, atol=BOX_ATOL, rtol=0)
    np.testing.assert_allclose(s1, s2, atol=SCORE_ATOL, rtol=0)


def test_padding_content_is_ignored(exported):
  """The artifact zeroes what lies outside image_size after normalising, as the pipeline pads."""
  artifact, _ = serving.load(exported[3])
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (2, 96, 96, 3), dtype=np.uint8)
  filled = image.copy()
  filled[:, 64:], filled[:, :, 90:] = 255, 7
  sizes = np.array([[64, 90], [64, 90]], np.int32)
  a = artifact.call(image, sizes, sizes * 2)
  b = artifact.call(filled, sizes, sizes * 2)
  for k in a:
    np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))


def test_bad_inputs(exported, tmp_path):
  c, _, images, path, _ = exported
  with pytest.raises(FileNotFoundError, match=r"--exported=.*nope.jax: no such file; write one with --mode=export"):
    predict.predict_folder(c, str(tmp_path), images, exported=str(tmp_path / "nope.jax"))
  with pytest.raises(ValueError, match=r"--step=2 picks a checkpoint; --exported=.* holds its own weights"):
    predict.predict_folder(c, str(tmp_path), images, step=2, exported=path)
  artifact, spec = serving.load(path)
  spec = dict(spec, input_size=[48, 48])   # a contract whose input size does not hold max_size
  with pytest.raises(ValueError, match=r"image 0: resized to 64x96, larger than the artifact's input_size 48x48"):
    serving.detect(artifact, spec, [np.zeros((64, 96, 3), np.uint8)])


def test_alfnet_exports_with_a_symbolic_batch():
  """The export goes through Method.predict only: ALFNet (untrained) exports too, and its artifact gives
  jit(predict)'s detections on the pipeline's normalised, zero-padded input, at batch sizes 1 and 2."""
  c = alfnet_quickstart.get_config()
  c.data.render_size = c.data.train_size = c.data.eval_size = c.data.pad_size = (64, 96)
  c.data.min_size, c.data.max_size = 64, 96
  c.test.score_thresh = 0.0   # untrained: keep detections to compare
  method = get_method(c)
  with jax.default_prng_impl("unsafe_rbg"):
    variables = method.init(jax.random.key(0), (64, 96))
  size = export.input_size(c)
  artifact = jax.export.deserialize(export.export_inference(export.inference_fn(c, method, variables, size), size).serialize())
  image = np.random.default_rng(0).integers(0, 256, (2, 64, 90, 3), dtype=np.uint8)
  padded = np.zeros((2, *size, 3), np.uint8)
  padded[:, :64, :90] = image
  normalised = np.zeros((2, *size, 3), np.float32)
  normalised[:, :64, :90] = transforms.normalize_image(image, c.data.pixel_mean, c.data.pixel_std, c.data.bgr)
  sizes, orig = np.tile([[64, 90]], (2, 1)).astype(np.int32), np.tile([[128, 180]], (2, 1)).astype(np.int32)
  want = jax.jit(method.predict)(variables, {"image": normalised, "image_size": sizes, "orig_size": orig})
  assert np.asarray(want.valid).sum(1).min() > 0
  for b in (1, 2):
    got = artifact.call(padded[:b], sizes[:b], orig[:b])
    for k in export.OUTPUTS:
      np.testing.assert_allclose(np.asarray(got[k]), np.asarray(getattr(want, k))[:b], atol=BOX_ATOL, rtol=0, err_msg=k)
