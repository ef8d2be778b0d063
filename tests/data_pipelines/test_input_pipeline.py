"""The tf.data pipeline on a tiny synthetic TFDS build, held against the numpy transforms and source.

Build: 8 train / 4 val images of 128x160 in a temporary data_dir (a few seconds, once per module).
"""
import os
import shutil

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("tensorflow_datasets")

import data_pipelines  # noqa: E402
from configs import base  # noqa: E402
from data_pipelines import input_pipeline, numpy_source, records, synthetic, transforms  # noqa: E402
from lla_jax.types import BATCH_KEYS  # noqa: E402

H, W = 128, 160
# Bilinear resizing: PIL (fixed point) and tf.image.resize (float, rounded) differ by at most one grey
# level on some pixels; without resizing the two sources are bit-identical.
RESIZE_MAX_DIFF, RESIZE_MEAN_DIFF = 1.0, 0.35


def make_cfg(data_dir, **kw):
  c = base.get_base_config().data
  c.name, c.data_dir = "synthetic_crowds", str(data_dir)
  c.num_train_images, c.num_val_images, c.render_size = 8, 4, (H, W)
  c.min_size, c.max_size, c.pad_size, c.max_boxes = 192, 320, (256, 256), 64
  c.shuffle_buffer, c.num_parallel_calls = 16, 1
  c.update(kw)
  return c


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp("tfds")
  from data_pipelines import synthetic_crowds
  synthetic_crowds.prepare(8, 4, H, W, data_dir=str(d))
  return d


def rendered_gt(split, index):
  ex = synthetic.render_example(split, index, 0, H, W)
  f = ex["fbox"]
  return ex, np.concatenate([f[:, :2], f[:, :2] + f[:, 2:]], 1), np.where(ex["ignore"], -1, 0)


def test_gt_odgt_and_records(data_dir):
  _, info = data_pipelines.create_dataset(make_cfg(data_dir), "val", 2, False, 0)
  assert info["num_images"] == 4
  assert info["records"] == [{"ID": f"synth_val_{i:06d}", "width": W, "height": H, "index": i} for i in range(4)]
  assert info["gt_odgt"].startswith(os.path.join(str(data_dir), "lla_cache", "synthetic_crowds"))
  lines = records.read_odgt(info["gt_odgt"])
  for i, line in enumerate(lines):  # the GT written from the TFDS examples equals a fresh rendering
    ex = synthetic.render_example("val", i, 0, H, W)
    want = records.odgt_line(ex["id"], ex["fbox"], ex["vbox"], ex["hbox"], ex["tag"], ex["ignore"], H, W)
    assert line == want


def test_eval_batch_contract(data_dir):
  cfg = make_cfg(data_dir)
  it, info = data_pipelines.create_dataset(cfg, "val", 3, False, 0)
  batches = list(it)
  assert len(batches) == 2
  for b in batches:
    assert tuple(b) == BATCH_KEYS
    assert b["image"].shape == (3, 256, 256, 3) and b["image"].dtype == np.float32
    assert b["image_size"].dtype == np.int32 and b["orig_size"].dtype == np.int32 and b["scale"].dtype == np.float32
    assert b["gt_boxes"].shape == (3, 64, 4) and b["gt_boxes"].dtype == np.float32
    assert b["gt_classes"].dtype == np.int32 and b["gt_valid"].dtype == bool and b["image_id"].dtype == np.int32
  np.testing.assert_array_equal(batches[0]["image_id"], [0, 1, 2])
  last = batches[1]
  np.testing.assert_array_equal(last["image_id"], [3, -1, -1])       # eval tail padded to a full batch
  assert not last["gt_valid"][1:].any() and (last["gt_boxes"][1:] == 0).all() and (last["image"][1:] == 0).all()
  b = batches[0]
  np.testing.assert_array_equal(b["image_size"], [[192, 240]] * 3)   # 128x160 * 1.5
  np.testing.assert_array_equal(b["orig_size"], [[H, W]] * 3)
  np.testing.assert_allclose(b["scale"], 1.5)
  assert (b["image"][:, 192:] == 0).all() and (b["image"][:, :, 240:] == 0).all()  # zero after normalisation
  for row in range(3):  # boxes: hand scaling of the rendered GT (no box of these images leaves the image fully)
    _, boxes, classes = rendered_gt("val", row)
    want = np.clip(boxes * np.float32(1.5), 0, [240, 192, 240, 192])
    keep = (want[:, 2] > want[:, 0]) & (want[:, 3] > want[:, 1])
    n = int(keep.sum())
    np.testing.assert_array_equal(b["gt_boxes"][row, :n], want[keep])
    np.testing.assert_array_equal(b["gt_classes"][row, :n], classes[keep])
    assert b["gt_valid"][row].sum() == n and (b["gt_boxes"][row, n:] == 0).all()
  assert info["stats"].as_dict()["images"] == 4


def test_process_sharding(data_dir):
  cfg = make_cfg(data_dir)
  ids = []
  for p in range(3):
    it, _ = data_pipelines.create_dataset(cfg, "val", 3, False, 0, process_index=p, process_count=3)
    got = [b["image_id"].tolist() for b in it]
    assert len(got) == transforms.eval_num_batches(4, 3, 3) == 1   # same batch count on every process
    ids.append(got[0])
  assert ids == [[0, 1, -1], [2, -1, -1], [3, -1, -1]]               # shards of 2, 1, 1 (tfds rule)


def test_train_determinism_and_flip(data_dir):
  take = lambda it, n: [next(it) for _ in range(n)]
  a = take(data_pipelines.create_dataset(make_cfg(data_dir), "train", 4, True, 7)[0], 3)
  b = take(data_pipelines.create_dataset(make_cfg(data_dir), "train", 4, True, 7)[0], 3)
  c = take(data_pipelines.create_dataset(make_cfg(data_dir), "train", 4, True, 8)[0], 3)
  for x, y in zip(a, b):
    for k in BATCH_KEYS:
      np.testing.assert_array_equal(x[k], y[k])
  assert [x["image_id"].tolist() for x in a] != [x["image_id"].tolist() for x in c]
  ids = np.concatenate([x["image_id"] for x in a[:2]])
  assert sorted(ids.tolist()) == list(range(8))                       # one epoch = every image once

  no = take(data_pipelines.create_dataset(make_cfg(data_dir, flip_prob=0.0), "train", 4, True, 7)[0], 2)
  yes = take(data_pipelines.create_dataset(make_cfg(data_dir, flip_prob=1.0), "train", 4, True, 7)[0], 2)
  for x, y in zip(no, yes):
    np.testing.assert_array_equal(x["image_id"], y["image_id"])      # shuffling does not depend on flips
    w = np.float32(240)
    for row in range(4):
      v = x["gt_valid"][row]
      np.testing.assert_array_equal(y["gt_valid"][row], v)
      bx = x["gt_boxes"][row][v]
      flipped = np.stack([w - bx[:, 2], bx[:, 1], w - bx[:, 0], bx[:, 3]], 1)
      np.testing.assert_array_equal(y["gt_boxes"][row][v], flipped)
      np.testing.assert_array_equal(y["image"][row, :192, :240], x["image"][row, :192, 239::-1])


@pytest.mark.parametrize("min_size", [128, 192, 96])
def test_tfds_and_numpy_sources_agree(data_dir, min_size):
  cfg = make_cfg(data_dir, min_size=min_size, num_parallel_calls=1)
  tf_batches = list(input_pipeline.create_dataset(cfg, "val", 4, False, 0)[0])
  np_batches = list(numpy_source.create_dataset(cfg, "val", 4, False, 0)[0])
  assert len(tf_batches) == len(np_batches) == 1
  x, y = tf_batches[0], np_batches[0]
  for k in ("image_size", "orig_size", "scale", "gt_boxes", "gt_classes", "gt_valid", "image_id"):
    np.testing.assert_array_equal(x[k], y[k], err_msg=k)
  diff = np.abs(x["image"] - y["image"])
  if min_size == H:   # no resizing: identical pixels (same JPEG bytes, same decoder)
    assert diff.max() == 0
  else:
    assert diff.max() <= RESIZE_MAX_DIFF and diff.mean() <= RESIZE_MEAN_DIFF


def test_train_sources_agree_without_flip(data_dir):
  """Same records through both sources in train mode: the orders differ (different shufflers), so
  compare image by image_id."""
  cfg = make_cfg(data_dir, flip_prob=0.0, min_size=H)
  tf_b = next(input_pipeline.create_dataset(cfg, "train", 8, True, 0)[0])
  np_b = next(numpy_source.create_dataset(cfg, "train", 8, True, 0)[0])
  assert sorted(tf_b["image_id"].tolist()) == sorted(np_b["image_id"].tolist()) == list(range(8))
  oi, on = np.argsort(tf_b["image_id"]), np.argsort(np_b["image_id"])
  for k in ("image", "gt_boxes", "gt_classes", "gt_valid", "image_size"):
    np.testing.assert_array_equal(tf_b[k][oi], np_b[k][on], err_msg=k)


def test_tf_preprocess_matches_numpy_on_hand_example():
  cfg = make_cfg("/unused", min_size=6, max_size=100, pad_size=(16, 16), max_boxes=4, bgr=True)
  rng = np.random.default_rng(0)
  img = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
  png = tf.io.encode_png(img).numpy()
  boxes = np.array([[1, 0, 3, 2], [-3, 1, -1, 3], [2.5, 1, 7, 4], [0, 3.5, 2, 3.9]], np.float32)
  ignore = np.array([False, False, True, False])
  ex = {"image": tf.constant(png), "image/id": tf.constant("hand"), "image/index": tf.constant(2, tf.int64),
        "fbox": tf.constant(boxes), "ignore": tf.constant(ignore)}
  pre = input_pipeline.make_preprocess(tf, cfg)
  for flip in (False, True):
    got = {k: v.numpy() for k, v in pre(ex, tf.constant(flip)).items()}
    want = transforms.preprocess(img, boxes, np.where(ignore, -1, 0), 2, "hand", cfg, flip)
    assert got["num_dropped"] == want["num_dropped"] == 1 and got["num_boxes"] == want["num_boxes"] == 3
    for k in ("image_size", "orig_size", "scale", "gt_boxes", "gt_classes", "gt_valid", "image_id"):
      np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    assert np.abs(got["image"] - want["image"]).max() <= RESIZE_MAX_DIFF
  # Resize rule with the 0.5 rounding: 4x5 -> scale 1.5 -> 6 x int(7.5 + 0.5) = 6x8.
  np.testing.assert_array_equal(got["image_size"], [6, 8])

  # In-graph backstops: more boxes than max_boxes keep static shapes and are reported through
  # num_boxes (finish_batch raises); an image larger than pad_size fails the assertion, naming it.
  few = input_pipeline.make_preprocess(tf, make_cfg("/unused", min_size=6, max_size=100, pad_size=(16, 16),
                                                    max_boxes=2))(ex, tf.constant(False))
  assert few["num_boxes"].numpy() == 3 and few["gt_boxes"].shape == (2, 4) and few["gt_valid"].numpy().all()
  batch = transforms.stack_examples([{k: v.numpy() for k, v in few.items()}])
  with pytest.raises(ValueError, match="image c has 3 boxes after clipping, more than data.max_boxes = 2"):
    transforms.finish_batch(batch, 2, [{"ID": "a"}, {"ID": "b"}, {"ID": "c"}], transforms.PipelineStats("t"))
  small = input_pipeline.make_preprocess(tf, make_cfg("/unused", min_size=6, max_size=100, pad_size=(4, 8)))
  with pytest.raises(tf.errors.InvalidArgumentError, match="hand"):
    small(ex, tf.constant(False))


def test_max_boxes_error_names_the_image(data_dir):
  with pytest.raises(ValueError, match=r"image synth_val_000000 has \d+ boxes after clipping, more than "
                                       r"data.max_boxes = 5"):
    data_pipelines.create_dataset(make_cfg(data_dir, max_boxes=5), "val", 2, False, 0)


def test_pad_size_error_names_the_image(data_dir):
  with pytest.raises(ValueError, match="image synth_val_000000: resized size 192x240 exceeds data.pad_size 192x192"):
    data_pipelines.create_dataset(make_cfg(data_dir, pad_size=(192, 192)), "val", 2, False, 0)


@pytest.mark.parametrize("name", ["crowdhuman", "citypersons"])
def test_unprepared_data_set_error(tmp_path, name):
  with pytest.raises(FileNotFoundError) as e:
    data_pipelines.create_dataset(make_cfg(tmp_path, name=name), "val", 2, False, 0)
  msg = str(e.value)
  assert os.path.join(str(tmp_path), name) in msg
  assert f"python -m data_pipelines.prepare {name} --manual_dir DIR --data_dir {tmp_path}" in msg


def test_prepared_directory_is_really_checked(data_dir, tmp_path):
  """A prepared TFDS folder under <data_dir>/crowdhuman/<version> is found and read from its files
  alone (here: the synthetic data copied there), so the error above comes from a real check."""
  src = os.path.join(str(data_dir), "synthetic_crowds", "n8_4_128x160_s0", synthetic.RENDERER_VERSION)
  shutil.copytree(src, tmp_path / "crowdhuman" / "1.0.0")
  (tmp_path / "crowdhuman" / "incomplete.abc_1.0.0").mkdir()  # a half-built folder is ignored
  it, info = data_pipelines.create_dataset(make_cfg(tmp_path, name="crowdhuman"), "val", 4, False, 0)
  assert info["num_images"] == 4 and next(it)["image_id"].tolist() == [0, 1, 2, 3]


def test_non_finite_boxes_are_dropped_and_counted_in_both_sources():
  """NaN / infinite boxes (which clipping alone would turn into valid-looking boxes or keep as NaN) never
  reach an assigner: both the numpy and the tf.data preprocessing drop them and count them."""
  cfg = make_cfg("/unused", min_size=4, max_size=100, pad_size=(8, 8), max_boxes=4, bgr=False)
  img = np.full((4, 5, 3), 100, np.uint8)
  boxes = np.array([[1, 0, 3, 2], [np.nan, 0, 2, 2], [0, 0, np.inf, 2], [-np.inf, 1, 2, 3]], np.float32)
  classes = np.array([0, 0, -1, 0], np.int32)
  want = transforms.preprocess(img, boxes, classes, 0, "nan", cfg, False)
  assert want["num_boxes"] == 1 and want["num_dropped"] == 3
  np.testing.assert_array_equal(want["gt_boxes"][0], [1, 0, 3, 2])
  ex = {"image": tf.constant(tf.io.encode_png(img).numpy()), "image/id": tf.constant("nan"),
        "image/index": tf.constant(0, tf.int64), "fbox": tf.constant(boxes), "ignore": tf.constant(classes < 0)}
  for flip in (False, True):
    got = {k: v.numpy() for k, v in input_pipeline.make_preprocess(tf, cfg)(ex, tf.constant(flip)).items()}
    want = transforms.preprocess(img, boxes, classes, 0, "nan", cfg, flip)
    assert got["num_boxes"] == 1 and got["num_dropped"] == 3 and np.isfinite(got["gt_boxes"]).all()
    for k in ("gt_boxes", "gt_classes", "gt_valid"):
      np.testing.assert_array_equal(got[k], want[k], err_msg=k)


# ---------------------------------------------------------------------------------------------------
# data.augment: 'alfnet' on a data set whose default is 'flip'.


def alfnet_cfg(data_dir, **kw):
  return make_cfg(data_dir, augment="alfnet", train_size=(96, 128), eval_size=(H, W), **kw)


def test_alfnet_augment_eval_both_sources_agree(data_dir):
  """Evaluation under 'alfnet' is the full image, not resized, padded to data.eval_size: the tf.data and
  numpy sources give the same pixels and boxes, and the boxes are the rendered full boxes clipped."""
  cfg = alfnet_cfg(data_dir)
  tf_b = list(input_pipeline.create_dataset(cfg, "val", 4, False, 0)[0])
  np_b, info = numpy_source.create_dataset(cfg, "val", 4, False, 0)
  np_b = list(np_b)
  assert len(tf_b) == len(np_b) == 1 and info["num_train_images"] == 4 and info["gt_json"] is None
  for k in BATCH_KEYS:
    np.testing.assert_array_equal(tf_b[0][k], np_b[0][k], err_msg=k)
  b = np_b[0]
  assert b["image"].shape == (4, H, W, 3) and (b["image_size"] == [H, W]).all() and (b["scale"] == 1).all()
  for i in range(4):
    _, want, classes = rendered_gt("val", i)
    want, classes, _ = transforms.clip_and_drop(want.astype(np.float32), classes, H, W)
    n = int(b["gt_valid"][i].sum())
    np.testing.assert_array_equal(b["gt_boxes"][i, :n], want)
    np.testing.assert_array_equal(b["gt_classes"][i, :n], classes)


def test_alfnet_augment_train_rows(data_dir):
  """Training under 'alfnet' (both sources): every row is a data.train_size crop padded to data.pad_size,
  scale = train height / crop height; the numpy rows equal transforms.preprocess_alfnet with the stream's
  draws (rng keyed (seed, process, 1), NUM_DRAWS uniforms per image)."""
  cfg = alfnet_cfg(data_dir)
  tf_b = next(input_pipeline.create_dataset(cfg, "train", 4, True, 0)[0])
  np_it, info = numpy_source.create_dataset(cfg, "train", 4, True, 0)
  np_b = next(np_it)
  usable = np.flatnonzero(records.odgt_split(info["gt_odgt"], records.read_odgt(info["gt_odgt"])).has_gt)
  assert info["num_train_images"] == len(usable) > 4
  for b in (tf_b, np_b):
    assert b["image"].shape == (4, 256, 256, 3) and (b["image_size"] == [96, 128]).all()
    assert (b["scale"] >= 96 / H - 1e-6).all() and (b["scale"] <= 96 / int(0.3 * H) + 1e-6).all()
    assert (b["image"][:, 96:] == 0).all() and (b["image"][:, :, 128:] == 0).all()
    assert set(b["image_id"].tolist()) <= set(usable.tolist())
  rng = np.random.default_rng([0, 0, 1])
  order = np.random.default_rng([0, 0, 0, 0]).permutation(usable)[:4]
  np.testing.assert_array_equal(np_b["image_id"], order)
  for row, index in enumerate(order):
    _, image, boxes, classes = synthetic.load_example(("train", int(index), 0, H, W))
    want = transforms.preprocess_alfnet(image, boxes, classes, int(index), f"synth_train_{index:06d}", cfg,
                                        rng.random(transforms.NUM_DRAWS))
    for k in BATCH_KEYS:
      np.testing.assert_array_equal(np_b[k][row], want[k], err_msg=k)


def test_augment_default_and_bad_choice(data_dir):
  """data.augment None is the registry default (synthetic crowds: 'flip'): the same batches as 'flip'."""
  a = next(numpy_source.create_dataset(make_cfg(data_dir, augment=None), "train", 4, True, 0)[0])
  b = next(numpy_source.create_dataset(make_cfg(data_dir, augment="flip"), "train", 4, True, 0)[0])
  for k in BATCH_KEYS:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  with pytest.raises(ValueError, match=r"data.augment must be one of \('flip', 'alfnet'\).*got 'mosaic'"):
    data_pipelines.create_dataset(make_cfg(data_dir, augment="mosaic"), "val", 2, False, 0)
  with pytest.raises(ValueError, match=r"data.augment 'alfnet' \(data set 'synthetic_crowds'\) needs data.train_size"):
    numpy_source.create_dataset(make_cfg(data_dir, augment="alfnet"), "val", 2, False, 0)


@pytest.mark.parametrize("box,key", [("visible", "vbox"), ("head", "hbox")])
def test_box_choice_both_sources(data_dir, box, key):
  """data.box serves the builder's vbox / hbox in both sources, identically, scaled like the full boxes;
  'full' (the default) is the fbox of before."""
  cfg = make_cfg(data_dir, min_size=H, box=box)
  x = next(input_pipeline.create_dataset(cfg, "val", 4, False, 0)[0])
  y = next(numpy_source.create_dataset(cfg, "val", 4, False, 0)[0])
  full = next(numpy_source.create_dataset(make_cfg(data_dir, min_size=H), "val", 4, False, 0)[0])
  for k in ("gt_boxes", "gt_classes", "gt_valid"):
    np.testing.assert_array_equal(x[k], y[k], err_msg=k)
  for row in range(4):
    ex, fbox, classes = rendered_gt("val", row)
    want = ex[key][:, :2], ex[key][:, :2] + ex[key][:, 2:]
    boxes, keep, _ = transforms.clip_and_drop(np.concatenate(want, 1).astype(np.float32), classes, H, W)
    v = y["gt_valid"][row]
    np.testing.assert_allclose(y["gt_boxes"][row][v], boxes, atol=1e-4)
    kept_full, _, _ = transforms.clip_and_drop(fbox.astype(np.float32), classes, H, W)
    np.testing.assert_allclose(full["gt_boxes"][row][full["gt_valid"][row]], kept_full, atol=1e-4)


def test_box_choice_errors(data_dir):
  """A box type the data set does not have is an error naming the data set and its choices."""
  with pytest.raises(ValueError, match=r"data.box='torso': data set 'synthetic_crowds' has the box types "
                                       r"'full', 'visible', 'head'"):
    data_pipelines.create_dataset(make_cfg(data_dir, box="torso"), "val", 2, False, 0)
  from data_pipelines import registry
  cfg = make_cfg(data_dir, box="head")
  cfg.name = "citypersons"
  with pytest.raises(ValueError, match=r"data set 'citypersons' has the box types 'full', 'visible'$"):
    registry.box_key(cfg)
  cfg.box = None
  assert registry.box_key(cfg) == "fbox"
