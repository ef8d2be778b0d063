"""Evaluation padding of data.augment 'flip' (test.padding): 'divisible' pads each image to its own
resized size rounded up to data.eval_size_divisibility and batches images by that shape; 'fixed' pads
to data.pad_size. Both sources, the schedule across processes, hand-worked numbers. Also the
upstream-like training buckets (data.buckets with data.bucket_by 'shape')."""
import numpy as np
import pytest

import data_pipelines
from configs import base
from data_pipelines import transforms
from lla_jax.types import BATCH_KEYS

from . import fixtures


def test_eval_pad_shape_hand_worked():
  d = base.get_base_config().data
  d.eval_padding, d.eval_size_divisibility = "divisible", 32
  # CrowdHuman at 800 / 1400: 1080x1920 -> 788x1400 -> 800x1408; 1333x750 -> 1400x788 -> 1408x800;
  # 600x800 -> 800x1067 -> 800x1088.
  assert transforms.eval_pad_shape(1080, 1920, d) == (800, 1408)
  assert transforms.eval_pad_shape(1333, 750, d) == (1408, 800)
  assert transforms.eval_pad_shape(600, 800, d) == (800, 1088)
  d.eval_padding = "fixed"
  assert transforms.eval_pad_shape(600, 800, d) == (1408, 1408)
  d.eval_padding = "square"
  with pytest.raises(ValueError, match="test.padding must be one of 'divisible', 'fixed'; got 'square'"):
    transforms.eval_pad_shape(600, 800, d)


def test_eval_schedule_groups_by_shape_and_agrees_across_processes():
  a, b = (800, 1408), (1408, 800)
  shapes = [a, b, a, a, b, a, a]   # shards of 2 processes: records 0..3 and 4..6
  s0 = transforms.eval_schedule(shapes, 2, 0, 2)
  s1 = transforms.eval_schedule(shapes, 2, 1, 2)
  # Shape a: 3 images in shard 0 (0, 2, 3), 2 in shard 1 (5, 6) -> 2 batches each; shape b: 1 and 1 -> 1 batch.
  assert s0 == [(a, [0, 2]), (a, [3, None]), (b, [1, None])]
  assert s1 == [(a, [5, 6]), (a, [None, None]), (b, [4, None])]
  assert [s for s, _ in s0] == [s for s, _ in s1]
  # A single shape is the plain contiguous order with eval_num_batches batches.
  one = transforms.eval_schedule([a] * 5, 3, 0, 1)
  assert one == [(a, [0, 1, 2]), (a, [3, 4, None])] and len(one) == transforms.eval_num_batches(5, 3, 1)


def _check_against_fixed(divisible, fixed):
  """Each divisible batch row is the fixed row cropped to the divisible shape, with zeros beyond it."""
  rows = {}
  for batch in fixed:
    for r, i in enumerate(batch["image_id"]):
      if i >= 0:
        rows[int(i)] = {k: batch[k][r] for k in BATCH_KEYS}
  seen = []
  for batch in divisible:
    assert tuple(batch) == BATCH_KEYS
    hh, ww = batch["image"].shape[1:3]
    for r, i in enumerate(batch["image_id"]):
      if i < 0:
        assert (batch["image"][r] == 0).all() and not batch["gt_valid"][r].any()
        continue
      want = rows[int(i)]
      assert (hh, ww) == tuple(-(-int(v) // 32) * 32 for v in want["image_size"])
      np.testing.assert_array_equal(batch["image"][r], want["image"][:hh, :ww])
      assert (want["image"][hh:] == 0).all() and (want["image"][:, ww:] == 0).all()
      for k in BATCH_KEYS[1:]:
        np.testing.assert_array_equal(batch[k][r], want[k], err_msg=k)
      seen.append(int(i))
  assert sorted(seen) == sorted(rows)


def test_tfds_divisible_batches_by_shape(tmp_path):
  pytest.importorskip("tensorflow")
  from data_pipelines import prepare
  fixtures.write_crowdhuman(str(tmp_path / "manual"))
  prepare.main(["crowdhuman", "--manual_dir", str(tmp_path / "manual"), "--data_dir", str(tmp_path / "out")])
  c = base.get_base_config().data
  c.data_dir = str(tmp_path / "out")
  c.min_size, c.max_size, c.pad_size, c.max_boxes, c.num_parallel_calls = 120, 200, (192, 192), 8, 1
  c.eval_padding, c.eval_size_divisibility = "divisible", 32
  divisible = list(data_pipelines.create_dataset(c, "val", 2, False, 0)[0])
  # val: 60x90 -> 120x180 -> 128x192; 64x48 -> 160x120 -> 160x128 (shapes in sorted order).
  assert [b["image"].shape for b in divisible] == [(2, 128, 192, 3), (2, 160, 128, 3)]
  assert [b["image_id"].tolist() for b in divisible] == [[0, -1], [1, -1]]
  c.eval_padding = "fixed"
  fixed = list(data_pipelines.create_dataset(c, "val", 2, False, 0)[0])
  assert [b["image"].shape for b in fixed] == [(2, 192, 192, 3)]
  _check_against_fixed(divisible, fixed)
  # Two processes step through the same shapes, each padding its shard's short batches with image_id -1.
  c.eval_padding = "divisible"
  per = [list(data_pipelines.create_dataset(c, "val", 1, False, 0, p, 2)[0]) for p in range(2)]
  assert [[b["image"].shape for b in bs] for bs in per] == [[(1, 128, 192, 3), (1, 160, 128, 3)]] * 2
  assert [[b["image_id"].tolist() for b in bs] for bs in per] == [[[0], [-1]], [[-1], [1]]]


def test_numpy_source_divisible_matches_fixed(tmp_path):
  c = base.get_base_config().data
  c.name, c.source, c.data_dir = "synthetic_crowds", "numpy", str(tmp_path)
  c.num_train_images, c.num_val_images, c.render_size = 2, 3, (96, 128)
  c.min_size, c.max_size, c.pad_size, c.max_boxes, c.num_parallel_calls = 100, 200, (160, 192), 64, 1
  c.eval_padding, c.eval_size_divisibility = "divisible", 32
  divisible = list(data_pipelines.create_dataset(c, "val", 2, False, 0)[0])
  # 96x128 -> 100x133 -> 128x160.
  assert [b["image"].shape for b in divisible] == [(2, 128, 160, 3)] * 2
  c.eval_padding = "fixed"
  fixed = list(data_pipelines.create_dataset(c, "val", 2, False, 0)[0])
  assert [b["image"].shape for b in fixed] == [(2, 160, 192, 3)] * 2
  _check_against_fixed(divisible, fixed)


def test_shape_buckets_merge_shapes_a_shard_lacks():
  sizes = [(800, 1200), (800, 1190), (800, 1400), (800, 1400), (1400, 800), (1400, 800)]
  # Shapes /32: 800x1216 (only in shard 0), 800x1408 (both shards), 1408x800 (only in shard 1).
  bucket, pads = transforms.shape_buckets(sizes, 32, [(0, 3), (3, 6)])
  assert pads == [(800, 1408), (1408, 800)]     # 800x1216 merged into 800x1408; portrait keeps its own size
  assert bucket.tolist() == [0, 0, 0, 0, 1, 1]
  bucket, pads = transforms.shape_buckets(sizes, 32, [(0, 6)])
  assert pads == [(800, 1216), (800, 1408), (1408, 800)] and bucket.tolist() == [0, 0, 1, 1, 2, 2]


def test_tfds_training_shape_buckets(tmp_path):
  pytest.importorskip("tensorflow")
  from data_pipelines import prepare
  fixtures.write_crowdhuman(str(tmp_path / "manual"))
  prepare.main(["crowdhuman", "--manual_dir", str(tmp_path / "manual"), "--data_dir", str(tmp_path / "out")])
  c = base.get_base_config().data
  c.data_dir = str(tmp_path / "out")
  c.min_size, c.max_size, c.pad_size, c.max_boxes, c.num_parallel_calls = 120, 200, (192, 192), 8, 1
  c.shuffle_buffer, c.buckets, c.bucket_by = 8, True, "shape"
  it, _ = data_pipelines.create_dataset(c, "train", 1, True, 0)
  # train: 60x90 -> 120x180 -> 128x192; 90x60 -> 192x128; 48x64 (twice) -> 120x160 -> 128x160.
  seen = set()
  for _ in range(24):
    b = next(it)
    shape = b["image"].shape[1:3]
    assert shape == tuple(-(-int(v) // 32) * 32 for v in b["image_size"][0])
    seen.add(shape)
  assert seen == {(128, 160), (128, 192), (192, 128)}
