"""The TensorFlow-free numpy source: Batch contract, determinism, workers, errors, no TF import."""
import subprocess
import sys

import numpy as np
import pytest

import data_pipelines
from configs import base
from data_pipelines import numpy_source, records, synthetic
from lla_jax.types import BATCH_KEYS

H, W = 96, 128


def make_cfg(data_dir, **kw):
  c = base.get_base_config().data
  c.name, c.source, c.data_dir = "synthetic_crowds", "numpy", str(data_dir)
  c.num_train_images, c.num_val_images, c.render_size = 6, 5, (H, W)
  c.min_size, c.max_size, c.pad_size, c.max_boxes = 96, 200, (128, 128), 64
  c.num_parallel_calls = 1
  c.update(kw)
  return c


def test_no_tensorflow_import():
  code = ("import sys, data_pipelines, data_pipelines.numpy_source, data_pipelines.synthetic, "
          "data_pipelines.records, data_pipelines.transforms; "
          "assert not [m for m in sys.modules if m.startswith(('tensorflow', 'tensorflow_datasets'))]")
  subprocess.run([sys.executable, "-c", code], check=True)


def test_eval_contract_and_gt(tmp_path):
  it, info = data_pipelines.create_dataset(make_cfg(tmp_path), "val", 2, False, 0)
  batches = list(it)
  assert [b["image_id"].tolist() for b in batches] == [[0, 1], [2, 3], [4, -1]]
  for b in batches:
    assert tuple(b) == BATCH_KEYS
    assert b["image"].shape == (2, 128, 128, 3) and b["image"].dtype == np.float32
    assert b["gt_boxes"].shape == (2, 64, 4) and b["gt_valid"].dtype == bool and b["image_id"].dtype == np.int32
  assert not batches[-1]["gt_valid"][1].any() and (batches[-1]["image"][1] == 0).all()
  assert info["num_images"] == 5 and info["records"][4] == {"ID": "synth_val_000004", "width": W, "height": H,
                                                            "index": 4}
  lines = records.read_odgt(info["gt_odgt"])
  ex = synthetic.render_example("val", 2, 0, H, W)
  np.testing.assert_array_equal(np.array([g["fbox"] for g in lines[2]["gtboxes"]], np.float32), ex["fbox"])
  # Boxes of image 2: no resize (min_size = 96), so the rendered full boxes, clipped, in xyxy.
  f = ex["fbox"]
  want = np.clip(np.concatenate([f[:, :2], f[:, :2] + f[:, 2:]], 1), 0, [W, H, W, H])
  n = batches[1]["gt_valid"][0].sum()
  keep = (want[:, 2] > want[:, 0]) & (want[:, 3] > want[:, 1])
  np.testing.assert_array_equal(batches[1]["gt_boxes"][0, :n], want[keep])


def test_train_determinism_epochs_and_workers(tmp_path):
  def take(cfg, seed, n):
    it, _ = data_pipelines.create_dataset(cfg, "train", 4, True, seed)
    return [next(it) for _ in range(n)]

  a = take(make_cfg(tmp_path), 0, 3)
  b = take(make_cfg(tmp_path, num_parallel_calls=2), 0, 3)   # rendered in 2 processes: same batches
  for x, y in zip(a, b):
    for k in BATCH_KEYS:
      np.testing.assert_array_equal(x[k], y[k])
  ids = np.concatenate([x["image_id"] for x in a]).tolist()
  assert sorted(ids[:6]) == list(range(6)) and sorted(ids[6:12]) == list(range(6))  # epochs of 6 images
  c = take(make_cfg(tmp_path), 1, 3)
  assert ids != np.concatenate([x["image_id"] for x in c]).tolist()


def test_process_sharding(tmp_path):
  got = []
  for p in range(2):
    it, _ = data_pipelines.create_dataset(make_cfg(tmp_path), "val", 2, False, 0, process_index=p, process_count=2)
    got.append([b["image_id"].tolist() for b in it])
  assert got == [[[0, 1], [2, -1]], [[3, 4], [-1, -1]]]


def test_errors(tmp_path):
  with pytest.raises(ValueError, match="renders only 'synthetic_crowds'; data set 'crowdhuman' needs data.source"):
    numpy_source.create_dataset(make_cfg(tmp_path, name="crowdhuman"), "val", 2, False, 0)
  with pytest.raises(ValueError, match="synthetic_crowds has splits \\['train', 'val'\\], not 'test'"):
    numpy_source.create_dataset(make_cfg(tmp_path), "test", 2, False, 0)
  with pytest.raises(ValueError, match="data.source must be 'tfds' or 'numpy'"):
    data_pipelines.create_dataset(make_cfg(tmp_path, source="torch"), "val", 2, False, 0)
  with pytest.raises(ValueError, match=r"image synth_val_000000 has \d+ boxes after clipping, more than "):
    data_pipelines.create_dataset(make_cfg(tmp_path, max_boxes=3), "val", 2, False, 0)
