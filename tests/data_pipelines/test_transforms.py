"""Numpy transforms against hand-computed values (cvpods cvpods/data/transforms/transform_gen.py), and the
batch bookkeeping."""
import ml_collections
import numpy as np
import pytest

from data_pipelines import records, transforms
from lla_jax.types import BATCH_KEYS


def data_cfg(**kw):
  c = ml_collections.ConfigDict(dict(name="crowdhuman", min_size=800, max_size=1400, pad_size=(1408, 1408), max_boxes=8, bgr=True,
                                     pixel_mean=(103.530, 116.280, 123.675), pixel_std=(1.0, 1.0, 1.0)))
  c.update(kw)
  return c


@pytest.mark.parametrize("h, w, short, long, expected", [
    (1000, 1500, 800, 1400, (800, 1200, 0.8)),           # short side rules
    (600, 2000, 800, 1400, (420, 1400, 0.7)),            # long side cap: 2000 * 4/3 > 1400
    (2000, 600, 800, 1400, (1400, 420, 0.7)),            # portrait
    (2, 5, 1, 100, (1, 3, 0.5)),                         # 2.5 + 0.5 -> 3: half rounds up (round() gives 2)
    (3, 7, 2, 100, (2, 5, 2 / 3)),                       # 4.667 + 0.5 -> 5 (truncation alone gives 4)
    (384, 512, 384, 640, (384, 512, 1.0)),               # identity
])
def test_resized_size(h, w, short, long, expected):
  new_h, new_w, scale = transforms.resized_size(h, w, short, long)
  assert (new_h, new_w) == expected[:2]
  assert scale == pytest.approx(expected[2], rel=1e-12)


def test_resize_image_pil_bilinear():
  img = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
  assert transforms.resize_image(img, 4, 6) is img
  out = transforms.resize_image(img, 8, 12)
  assert out.shape == (8, 12, 3) and out.dtype == np.uint8
  # Upsampling x2 with half-pixel centres: output pixel 1 sits at input coordinate 0.25 -> 3/4 * p0 + 1/4 * p1.
  expected = 0.75 * img[0, 0, 0] + 0.25 * img[0, 1, 0]
  assert abs(int(out[0, 1, 0]) - expected) <= 1


def test_box_scale_and_flip():
  f = transforms.box_scale_factors(2, 5, 1, 3)
  np.testing.assert_allclose(f, [0.6, 0.5, 0.6, 0.5], rtol=1e-7)
  assert f.dtype == np.float32
  boxes = np.array([[10, 20, 30, 40], [0, 0, 100, 5]], np.float32)
  np.testing.assert_array_equal(transforms.flip_boxes(boxes, 100), [[70, 20, 90, 40], [0, 0, 100, 5]])


def test_clip_and_drop():
  boxes = np.array([[-10, -5, 20, 30],     # clipped to [0, 0, 20, 30]
                    [90, 10, 120, 60],     # clipped to [90, 10, 100, 50]
                    [120, 0, 130, 10],     # right of the image: zero width after clipping -> dropped
                    [5, 5, 5, 20],         # zero width -> dropped
                    [0, 50, 10, 60],       # below the image: zero height -> dropped
                    [30, 20, 40, 45]], np.float32)
  classes = np.array([0, -1, 0, 0, -1, -1], np.int32)
  out, cls, dropped = transforms.clip_and_drop(boxes, classes, 50, 100)
  np.testing.assert_array_equal(out, [[0, 0, 20, 30], [90, 10, 100, 50], [30, 20, 40, 45]])
  np.testing.assert_array_equal(cls, [0, -1, -1])
  assert dropped == 3


def test_normalize_and_pad():
  img = np.zeros((2, 3, 3), np.uint8)
  img[..., 0], img[..., 1], img[..., 2] = 10, 20, 30      # R, G, B
  bgr = transforms.normalize_image(img, (1, 2, 3), (1, 2, 4), True)
  np.testing.assert_allclose(bgr[0, 0], [(30 - 1) / 1, (20 - 2) / 2, (10 - 3) / 4])
  rgb = transforms.normalize_image(img, (1, 2, 3), (1, 1, 1), False)
  np.testing.assert_allclose(rgb[0, 0], [9, 18, 27])
  padded = transforms.pad_image(rgb, (4, 5), "x")
  assert padded.shape == (4, 5, 3) and (padded[2:] == 0).all() and (padded[:, 3:] == 0).all()
  np.testing.assert_array_equal(padded[:2, :3], rgb)
  with pytest.raises(ValueError, match="image img9: resized size 2x3 exceeds data.pad_size 2x2"):
    transforms.pad_image(rgb, (2, 2), "img9")


def test_pad_boxes_and_max_boxes_error():
  b, c, v = transforms.pad_boxes(np.ones((2, 4), np.float32), np.array([0, -1], np.int32), 4, "x")
  assert b.shape == (4, 4) and c.dtype == np.int32
  np.testing.assert_array_equal(v, [True, True, False, False])
  assert (b[2:] == 0).all() and (c[2:] == 0).all()
  with pytest.raises(ValueError, match="image synth_train_000003 has 5 boxes after clipping, more than "
                                       "data.max_boxes = 4"):
    transforms.pad_boxes(np.ones((5, 4), np.float32), np.zeros(5, np.int32), 4, "synth_train_000003")


def test_preprocess_hand_example():
  cfg = data_cfg(min_size=4, max_size=100, pad_size=(8, 8), max_boxes=3, bgr=False, pixel_mean=(0, 0, 0))
  img = np.zeros((2, 4, 3), np.uint8)
  img[:, :2] = 200                         # left half bright
  boxes = np.array([[1, 0, 3, 2], [-2, 1, 0, 2], [3, 0, 6, 1]], np.float32)  # 2nd: left of the image
  for flip in (False, True):
    ex = transforms.preprocess(img, boxes, np.array([0, 0, -1]), 5, "id5", cfg, flip)
    assert ex["image_size"].tolist() == [4, 8] and ex["orig_size"].tolist() == [2, 4]
    assert ex["scale"] == 2.0 and ex["image_id"] == 5 and ex["num_boxes"] == 2 and ex["num_dropped"] == 1
    if not flip:
      np.testing.assert_array_equal(ex["gt_boxes"], [[2, 0, 6, 4], [6, 0, 8, 2], [0, 0, 0, 0]])
      assert ex["image"][0, 0, 0] == 200 and ex["image"][0, 7, 0] == 0
    else:  # x' = 8 - x, then clipped
      np.testing.assert_array_equal(ex["gt_boxes"], [[2, 0, 6, 4], [0, 0, 2, 2], [0, 0, 0, 0]])
      assert ex["image"][0, 0, 0] == 0 and ex["image"][0, 7, 0] == 200
    np.testing.assert_array_equal(ex["gt_classes"], [0, -1, 0])
    np.testing.assert_array_equal(ex["gt_valid"], [True, True, False])


def test_shards_and_eval_batches():
  assert [transforms.shard_range(11, i, 3) for i in range(3)] == [(0, 4), (4, 8), (8, 11)]
  assert transforms.shard_range(5, 0, 1) == (0, 5)
  assert transforms.eval_num_batches(11, 2, 3) == 2     # largest shard 4 -> 2 batches of 2
  assert transforms.eval_num_batches(10, 4, 1) == 3
  assert transforms.eval_num_batches(0, 4, 1) == 1


def test_finish_batch_contract_and_errors():
  cfg = data_cfg(pad_size=(4, 4), max_boxes=2)
  ex = {"image": np.zeros((4, 4, 3), np.float32), "image_size": np.array([4, 4], np.int32),
        "orig_size": np.array([2, 2], np.int32), "scale": np.float32(2), "gt_boxes": np.zeros((2, 4), np.float32),
        "gt_classes": np.zeros(2, np.int32), "gt_valid": np.array([True, False]), "image_id": np.int32(1),
        "num_boxes": np.int32(1), "num_dropped": np.int32(2)}
  batch = transforms.stack_examples([ex, transforms.padding_example(cfg)])
  stats = transforms.PipelineStats("t")
  recs = [{"ID": "a"}, {"ID": "b"}]
  out = transforms.finish_batch(batch, 2, recs, stats)
  assert tuple(out) == BATCH_KEYS
  np.testing.assert_array_equal(out["image_id"], [1, -1])
  assert stats.as_dict() == {"images": 1, "dropped_boxes": 2, "batches": 1}
  batch["num_boxes"][0] = 3
  with pytest.raises(ValueError, match="image b has 3 boxes after clipping, more than data.max_boxes = 2"):
    transforms.finish_batch(batch, 2, recs, stats)


def test_check_split():
  line = records.odgt_line("img0", [[0, 0, 10, 10]] * 3 + [[500, 0, 10, 10]], [[0, 0, 1, 1]] * 4,
                           [[0, 0, 1, 1]] * 4, ["person"] * 4, [False] * 4, height=100, width=200)
  cfg = data_cfg(min_size=100, max_size=1000, pad_size=(128, 256), max_boxes=3)
  assert transforms.check_split([line], cfg, "t") == {"max_boxes": 4, "max_boxes_clipped": 3}
  with pytest.raises(ValueError, match="image img0 has 3 boxes after clipping, more than data.max_boxes = 2"):
    transforms.check_split([line], data_cfg(min_size=100, pad_size=(128, 256), max_boxes=2), "t")
  with pytest.raises(ValueError, match="image img0: resized size 200x400 exceeds data.pad_size 128x256"):
    transforms.check_split([line], data_cfg(min_size=200, pad_size=(128, 256)), "t")
