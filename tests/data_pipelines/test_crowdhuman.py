"""CrowdHuman: the TFDS build from a tiny official-format tree, the prepare command, the pipeline on it,
and the bad-input errors."""
import json
import os
import shutil

import numpy as np
import pytest

pytest.importorskip("tensorflow")
tfds = pytest.importorskip("tensorflow_datasets")

import data_pipelines  # noqa: E402
from configs import base  # noqa: E402
from data_pipelines import gt_export, input_pipeline, prepare  # noqa: E402

from . import fixtures  # noqa: E402


def make_cfg(data_dir, **kw):
  c = base.get_base_config().data
  c.data_dir = str(data_dir)
  c.min_size, c.max_size, c.pad_size, c.max_boxes = 120, 200, (192, 192), 8
  c.shuffle_buffer, c.num_parallel_calls = 8, 1
  c.update(kw)
  return c


def run_prepare(capsys, *args):
  summary = prepare.main(["crowdhuman", *map(str, args)])
  out = capsys.readouterr().out.strip().splitlines()
  assert json.loads(out[-1]) == json.loads(json.dumps(summary))  # the last line is the summary JSON
  return summary, "\n".join(out)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  root = tmp_path_factory.mktemp("crowdhuman")
  fixtures.write_crowdhuman(str(root / "manual"))
  summary = prepare.main(["crowdhuman", "--manual_dir", str(root / "manual"), "--data_dir", str(root / "out")])
  return root, summary


def test_prepare_summary(built, capsys):
  root, _ = built
  summary, text = run_prepare(capsys, "--manual_dir", root / "manual", "--data_dir", root / "out")  # reuses the build
  assert "already prepared" in text and "crowdhuman statistics" in text and "no_area_boxes" in text
  assert summary["images"] == {"train": 4, "val": 2}
  assert summary["boxes"] == {"train": 7, "val": 4}
  assert summary["ignore"] == {"train": 3, "val": 1}          # the mask boxes and the extra.ignore person
  assert summary["max_boxes"] == 4 and summary["max_boxes_image"] == {"ID": "273271,c9db000d5146c15", "split": "train"}
  tr = summary["statistics"]["train"]
  assert (tr["no_area_boxes"], tr["boxes_past_border"], tr["images_only_ignore"], tr["images_without_boxes"],
          tr["person"], tr["mean_boxes"]) == (1, 2, 1, 1, 4, 1.75)
  assert summary["statistics"]["val"]["boxes_past_border"] == 1
  assert any("images = 4, the official files give 15000" in w for w in summary["warnings"])
  for split in ("train", "val"):
    assert summary["gt"][split] == os.path.join(str(root / "out"), "lla_cache", "crowdhuman", "1.0.0",
                                                f"{split}_gt.odgt")


def test_examples_keep_bytes_boxes_and_attributes(built):
  root, _ = built
  builder = gt_export.prepared_builder("crowdhuman", str(root / "out"))
  assert builder.info.metadata["statistics"]["val"]["images"] == 2     # statistics live in the metadata
  ds = builder.as_dataset(split="train", decoders={"image": tfds.decode.SkipDecoding()})
  exs = sorted(ds.as_numpy_iterator(), key=lambda e: e["image/index"])
  for i, (ex, (image_id, (h, w), boxes)) in enumerate(zip(exs, fixtures.CH_TRAIN)):
    assert ex["image/index"] == i and ex["image/id"].decode() == image_id and ex["size"].tolist() == [h, w]
    with open(fixtures.ch_image_path(str(root / "manual"), image_id), "rb") as f:
      assert ex["image"] == f.read()                                   # the original JPEG bytes
    for key in ("fbox", "vbox", "hbox"):
      want = [[b[key][0], b[key][1], b[key][0] + b[key][2], b[key][1] + b[key][3]] for b in boxes]
      np.testing.assert_array_equal(ex[key], np.asarray(want, np.float32).reshape(-1, 4))
    assert ex["ignore"].tolist() == [b["tag"] != "person" or bool(b.get("extra", {}).get("ignore")) for b in boxes]
    assert [t.decode() for t in ex["tag"]] == [b["tag"] for b in boxes]
    assert json.loads(ex["annotation"]) == {"ID": image_id, "gtboxes": boxes}
  first = exs[0]
  assert first["extra/box_id"].tolist() == [0, 1, 2, 3] and first["extra/occ"].tolist() == [1, 0, -1, -1]
  assert first["extra/ignore"].tolist() == [-1, -1, 1, -1] and first["head_attr/unsure"].tolist() == [0, -1, -1, -1]


@pytest.fixture(scope="module")
def val_batches(built):
  root, _ = built
  it, info = data_pipelines.create_dataset(make_cfg(root / "out"), "val", 2, False, 0)
  return list(it), info


def test_gt_odgt_is_the_official_content(val_batches):
  _, info = val_batches
  with open(info["gt_odgt"]) as f:
    lines = [json.loads(t) for t in f]
  assert lines == [{"ID": i, "gtboxes": b, "height": h, "width": w} for i, (h, w), b in fixtures.CH_VAL]
  assert info["gt_json"] is None and info["max_boxes"] == 3
  assert info["records"] == [{"ID": i, "width": w, "height": h, "index": k}
                             for k, (i, (h, w), _) in enumerate(fixtures.CH_VAL)]


def test_eval_batch_boxes_after_resize(val_batches):
  (b,), _ = val_batches
  # 60x90 -> x2 (short side 120) = 120x180; 64x48 -> x2.5 = 160x120.
  np.testing.assert_array_equal(b["image_size"], [[120, 180], [160, 120]])
  np.testing.assert_array_equal(b["orig_size"], [[60, 90], [64, 48]])
  np.testing.assert_allclose(b["scale"], [2.0, 2.5])
  np.testing.assert_array_equal(b["gt_boxes"][0, :3], [[40, 20, 72, 92], [160, 0, 180, 60], [0, 60, 20, 80]])
  np.testing.assert_array_equal(b["gt_classes"][0, :3], [0, 0, -1])
  np.testing.assert_array_equal(b["gt_boxes"][1, :1], [[10, 10, 60, 135]])
  np.testing.assert_array_equal(b["gt_valid"].sum(1), [3, 1])
  assert b["image"].shape == (2, 192, 192, 3) and (b["image"][1, 160:] == 0).all()


def test_train_flip_clip_and_drop(built):
  root, _ = built
  it, info = data_pipelines.create_dataset(make_cfg(root / "out", flip_prob=1.0), "train", 4, True, 3)
  b = next(it)
  assert sorted(b["image_id"].tolist()) == [0, 1, 2, 3]               # one epoch: every image, incl. no boxes
  row = {int(i): r for r, i in enumerate(b["image_id"])}
  expect = {  # (boxes, classes) after x2 / x2.5 scaling, flip (x' = W - x) and clipping; the no-area box dropped
      0: ([[120, 10, 160, 90], [164, 40, 180, 120], [10, 20, 60, 80]], [0, 0, -1]),
      1: ([[50, 20, 110, 160], [0, 80, 20, 180]], [0, -1]),
      2: ([[85, 0, 160, 50]], [-1]),
      3: (np.zeros((0, 4)), []),
  }
  for image_id, (boxes, classes) in expect.items():
    r = row[image_id]
    n = len(classes)
    np.testing.assert_array_equal(b["gt_boxes"][r, :n], boxes)
    np.testing.assert_array_equal(b["gt_classes"][r, :n], classes)
    assert b["gt_valid"][r].sum() == n
  assert info["stats"].as_dict()["dropped_boxes"] == 1


def test_per_process_shards(built):
  root, _ = built
  a = next(data_pipelines.create_dataset(make_cfg(root / "out"), "train", 2, True, 5, 1, 2)[0])
  assert sorted(a["image_id"].tolist()) == [2, 3]                       # a process trains on its shard only


def test_max_boxes_errors_state_the_needed_value(built, capsys):
  root, _ = built
  with pytest.raises(ValueError, match=r"image 273275,cadd90003bfe3c8 has 3 boxes after clipping, more than "
                                       r"data.max_boxes = 2; the statistics of crowdhuman/1.0.0/val call for "
                                       r"data.max_boxes >= 3"):
    data_pipelines.create_dataset(make_cfg(root / "out", max_boxes=2), "val", 2, False, 0)
  with pytest.raises(ValueError, match=r"image 273271,c9db000d5146c15 of crowdhuman/train has 4 boxes .*more than "
                                       r"max_boxes = 3; the statistics call for data.max_boxes >= 4"):
    prepare.main(["crowdhuman", "--manual_dir", str(root / "manual"), "--data_dir", str(root / "out"),
                  "--max_boxes", "3"])
  assert "crowdhuman statistics" in capsys.readouterr().out           # printed before stopping


def test_archive_layout(tmp_path):
  """One Images/ folder per archive and the odgt files under annotations/ build the same data."""
  fixtures.write_crowdhuman(str(tmp_path / "m"), layout="archives")
  assert os.path.isdir(tmp_path / "m" / "CrowdHuman_train02" / "Images")
  summary = prepare.main(["crowdhuman", "--manual_dir", str(tmp_path / "m"), "--data_dir", str(tmp_path / "o")])
  assert summary["images"] == {"train": 4, "val": 2} and summary["boxes"] == {"train": 7, "val": 4}


# ---------------------------------------------------------------------------------------------------
# Bad input.


def build(manual, out, **kw):
  return prepare.build("crowdhuman", str(manual), str(out), **kw)


@pytest.mark.parametrize("remove", ["folder", "Images", "annotation_val.odgt"])
def test_missing_files_print_the_layout(tmp_path, remove):
  fixtures.write_crowdhuman(str(tmp_path / "m"))
  target = tmp_path / "m" if remove == "folder" else tmp_path / "m" / remove
  shutil.rmtree(target) if target.is_dir() else target.unlink()
  with pytest.raises(FileNotFoundError, match="Expected CrowdHuman layout") as e:
    build(tmp_path / "m", tmp_path / "o")
  assert "DIR/Images/<ID>.jpg" in str(e.value) and "annotation_train.odgt" in str(e.value)


def test_missing_image_names_the_id(tmp_path):
  fixtures.write_crowdhuman(str(tmp_path / "m"))
  os.remove(tmp_path / "m" / "Images" / "284193,faa9000f2678b5e.jpg")
  with pytest.raises(FileNotFoundError, match=r"annotation_train.odgt:2 \(ID 284193,faa9000f2678b5e\): no image"):
    build(tmp_path / "m", tmp_path / "o")


@pytest.mark.parametrize("bad, message", [
    ('{"ID": "x", "gtboxes": [', r"annotation_train.odgt:3: not valid JSON"),
    ('{"ID": "x", "gtboxes": [{"tag": "person", "fbox": [1, 2, NaN, 4]}]}', r"annotation_train.odgt:3: not valid "
                                                                              r"JSON \(non-finite number NaN\)"),
    ('{"ID": "x", "gtboxes": [{"tag": "person", "fbox": [1, 2, 3]}]}', r"annotation_train.odgt:3 \(ID x, gtboxes\[0\]\)"
                                                                      r": 'fbox' must be 4 finite numbers"),
    ('{"ID": "x", "gtboxes": [{"tag": "mask", "fbox": [1, 2, 3, 4]}]}', r"tag 'mask' without extra.ignore = 1"),
    ('{"ID": "273271,c9db000d5146c15", "gtboxes": []}', r"annotation_train.odgt:3 \(ID 273271,c9db000d5146c15\): "
                                                         r"ID 273271,c9db000d5146c15 occurs twice"),
])
def test_bad_odgt_lines(tmp_path, bad, message):
  fixtures.write_crowdhuman(str(tmp_path / "m"))
  path = tmp_path / "m" / "annotation_train.odgt"
  lines = path.read_text().splitlines()
  path.write_text("\n".join(lines[:2] + [bad] + lines[2:]) + "\n")
  with pytest.raises(ValueError, match=message):
    build(tmp_path / "m", tmp_path / "o")


def test_corrupt_image_stops_or_is_skipped(tmp_path, capsys):
  fixtures.write_crowdhuman(str(tmp_path / "m"))
  path = tmp_path / "m" / "Images" / "283554,35288000868e92d2.jpg"
  path.write_bytes(path.read_bytes()[:200])                             # truncated JPEG
  with pytest.raises(ValueError, match=r"image 283554,35288000868e92d2 \(.*\) cannot be decoded .*--skip_corrupt"):
    build(tmp_path / "m", tmp_path / "o")
  summary, _ = run_prepare(capsys, "--manual_dir", tmp_path / "m", "--data_dir", tmp_path / "o2", "--skip_corrupt")
  assert summary["images"]["train"] == 3 and summary["statistics"]["train"]["corrupt_ids"] == ["283554,35288000868e92d2"]
  assert any("1 corrupt images skipped" in w for w in summary["warnings"])
  _, info = data_pipelines.create_dataset(make_cfg(tmp_path / "o2"), "train", 1, False, 0)
  assert [r["ID"] for r in info["records"]] == [fixtures.CH_TRAIN[i][0] for i in (0, 1, 3)]  # contiguous index


def test_orientation_bucket_sizes():
  cfg = base.get_base_config().data                                   # 800 / 1400, pad 1408x1408, multiple of 128
  records = [{"height": 1000, "width": 1500}, {"height": 600, "width": 2000}, {"height": 1500, "width": 1000}]
  landscape, pads = input_pipeline.orientation_buckets(records, cfg)
  assert landscape.tolist() == [True, True, False]
  assert pads == ((896, 1408), (1280, 896))                           # 800x1200, 420x1400 | 1200x800
  records.append({"height": 2000, "width": 600})                       # 1400x420: the portrait bucket grows
  assert input_pipeline.orientation_buckets(records, cfg)[1] == ((896, 1408), (1408, 896))


def test_training_buckets(built):
  root, _ = built
  cfg = make_cfg(root / "out", buckets=True, size_divisibility=32)
  it, _ = data_pipelines.create_dataset(cfg, "train", 1, True, 0)
  seen = set()
  for _ in range(8):
    b = next(it)
    h, w = b["image_size"][0]
    assert b["image"].shape[1:3] == ((128, 192) if w >= h else (192, 128))   # 120x180, 120x160 | 180x120
    seen.add(int(b["image_id"][0]))
  assert seen == {0, 1, 2, 3}
  with pytest.raises(ValueError, match=r"images 2..3 have no portrait one"):   # shard [2, 4) is all landscape
    data_pipelines.create_dataset(cfg, "train", 1, True, 0, process_index=1, process_count=2)
