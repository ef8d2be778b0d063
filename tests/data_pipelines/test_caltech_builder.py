"""TFDS builder `caltech` on a tiny tree written here in the official formats (.seq videos, .vbb annotations, new
test annotations): splits and frame sampling, stored bytes and boxes, statistics, the exported evaluation GT
evaluated end to end, and layout errors."""
import json
import os

import numpy as np
import pytest

from data_pipelines import caltech, caltech_io
from lla_jax.evaluation import caltech as evaluator
from lla_jax.evaluation import caltech_files
from tests.data_pipelines.caltech_writers import jpeg, write_seq, write_vbb

N_TRAIN, N_TEST = 65, 61  # frames of set00/V000 and set06/V000


def make_tree(root, new_annotations=True):
  frames = [jpeg(seed=i % 7, value=30 * (i % 7)) for i in range(max(N_TRAIN, N_TEST))]
  for s, n in (("set00", N_TRAIN), ("set06", N_TEST)):
    os.makedirs(root / s, exist_ok=True)
    os.makedirs(root / "annotations" / s, exist_ok=True)
    write_seq(root / s / "V000.seq", frames[:n], extra=16 if s == "set00" else 8)
  objs = {f: [(1, [10 + f, 5, 20, 40], [0, 0, 0, 0], 0)] for f in range(N_TRAIN)}
  objs[29].append((2, [30, 10, 12, 30], [30, 10, 12, 15], 1))
  write_vbb(root / "annotations" / "set00" / "V000.vbb", N_TRAIN, ["person", "people"], objs)
  write_vbb(root / "annotations" / "set06" / "V000.vbb", N_TEST, ["person"],
            {29: [(1, [1.6, 2, 20, 40], [0, 0, 0, 0], 0)]})
  if new_annotations:
    os.makedirs(root / "anno_test_1xnew")
    (root / "anno_test_1xnew" / "set06_V000_I00029.txt").write_text(
        "% bbGt version=3\nperson 100 100 41 100 0 0 0 0 0 0 0\nignore 300 100 50 50 0 0 0 0 0 1 0\n")
    (root / "anno_test_1xnew" / "set06_V000_I00059.txt").write_text("% bbGt version=3\n")
  return frames


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  import tensorflow_datasets as tfds
  root = tmp_path_factory.mktemp("caltech")
  frames = make_tree(root / "raw")
  builder = caltech.Caltech(data_dir=str(root / "tfds"))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(root / "raw")))
  return builder, frames, root


def examples(builder, split):
  import tensorflow_datasets as tfds
  ds = builder.as_dataset(split=split, shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()})
  return list(tfds.as_numpy(ds))


def test_splits_and_sampling(built):
  builder, frames, _ = built
  ids = {s: [e["image/id"].decode() for e in examples(builder, s)] for s in caltech.SPLITS}
  assert ids["train"] == ["set00_V000_I00029", "set00_V000_I00059"]
  assert ids["train_10x"] == [f"set00_V000_I{f:05d}" for f in range(2, N_TRAIN, 3)]
  assert ids["test"] == ["set06_V000_I00029", "set06_V000_I00059"]
  for s in caltech.SPLITS:
    assert [e["image/index"] for e in examples(builder, s)] == list(range(len(ids[s])))


def test_examples_store_raw_jpeg_and_boxes(built):
  builder, frames, _ = built
  train = examples(builder, "train")
  assert train[0]["image"] == frames[29] and train[1]["image"] == frames[59]
  assert train[0]["size"].tolist() == [48, 64] and train[0]["image/frame"] == 29
  # vbb export: round(pos) (10 + 29 = 39), the second object occluded with its visible box.
  np.testing.assert_array_equal(train[0]["fbox"], [[39, 5, 59, 45], [30, 10, 42, 40]])
  np.testing.assert_array_equal(train[0]["vbox"], [[39, 5, 59, 45], [30, 10, 42, 25]])
  assert train[0]["tag"].tolist() == [b"person", b"people"] and train[0]["ignore"].tolist() == [False, True]
  assert train[0]["occ"].tolist() == [0, 1]
  test = examples(builder, "test")  # from the new annotations, not the vbb
  np.testing.assert_array_equal(test[0]["fbox"], [[100, 100, 141, 200], [300, 100, 350, 150]])
  assert test[0]["ignore"].tolist() == [False, True] and test[1]["fbox"].shape == (0, 4)


def test_statistics(built):
  builder, _, _ = built
  st = builder.info.metadata["statistics"]
  assert st["test"]["source"] == "new" and st["train"]["source"] == "vbb"
  assert st["test"]["images"] == 2 and st["test"]["boxes"] == 2 and st["test"]["ignore"] == 1
  assert st["test"]["images_without_boxes"] == 1 and st["test"]["labels"]["ignore"] == 1
  assert st["train_10x"]["images"] == len(range(2, N_TRAIN, 3)) and st["train"]["labels"]["people"] == 1
  json.dumps(st)


def test_exported_gt_evaluates(built, tmp_path):
  builder, _, _ = built
  out = caltech.export_gt(builder, "test", tmp_path / "gt")
  assert out["images"] == 2
  assert open(out["frames"]).read().split() == ["set06_V000_I00029", "set06_V000_I00059"]
  frames = caltech_files.load_frames(out["frames"])
  dt = tmp_path / "dt"
  caltech_io.write_detections(dt, frames, [0, 0, 1], [[100, 100, 41, 100], [300, 100, 40, 45], [5, 5, 20, 50]],
                              [.9, .8, .7])
  r = evaluator.evaluate_dirs(out["gt"], dt, out["frames"], ["Reasonable"])["Reasonable"]
  # TP at .9, the .8 box inside the ignore region is ignored, .7 an FP on the second image.
  assert r["num_positives"] == 1 and r["fppi"].tolist() == [0, .5] and r["MR"] == 0.0


def test_layout_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="no videos"):
    caltech.find_layout(tmp_path)
  make_tree(tmp_path, new_annotations=False)
  layout = caltech.find_layout(tmp_path)
  assert layout["source"] == {"train": "vbb", "train_10x": "vbb", "test": "vbb"}
  with pytest.raises(FileNotFoundError, match="no new-annotation folder for train_10x"):
    caltech.find_layout(tmp_path, "new")
  os.remove(tmp_path / "annotations" / "set06" / "V000.vbb")
  with pytest.raises(FileNotFoundError, match=r"set06.V000.seq has no annotation file"):
    caltech.find_layout(tmp_path)


def test_missing_new_annotation_names_the_frame(tmp_path):
  make_tree(tmp_path)
  os.remove(tmp_path / "anno_test_1xnew" / "set06_V000_I00059.txt")
  layout = caltech.find_layout(tmp_path)
  stats = caltech.SplitStatistics("new")
  with pytest.raises(FileNotFoundError, match=r"set06_V000_I00059.txt: no new annotation"):
    list(caltech.generate_split(layout, "test", stats))
