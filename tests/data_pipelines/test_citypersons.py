"""CityPersons: the TFDS build from tiny official-format trees (gtBboxCityPersons JSON and the toolbox
.mat), the ALFNet training rule, the evaluator's GT json, the pipelines, and the bad-input errors."""
import io
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

tf = pytest.importorskip("tensorflow")
tfds = pytest.importorskip("tensorflow_datasets")

import data_pipelines  # noqa: E402
from configs import alfnet_r50_2s  # noqa: E402
from data_pipelines import citypersons, gt_export, input_pipeline, prepare, transforms  # noqa: E402
from lla_jax.evaluation import citypersons as cp_eval  # noqa: E402

from . import fixtures  # noqa: E402


def make_cfg(data_dir, **kw):
  c = alfnet_r50_2s.get_config().data   # the ALFNet data settings, scaled to the 128x256 fixtures
  c.data_dir = str(data_dir)
  c.train_size, c.eval_size, c.pad_size, c.max_boxes = (64, 128), (128, 256), (64, 128), 8
  c.shuffle_buffer, c.num_parallel_calls = 8, 1
  c.update(kw)
  return c


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  root = tmp_path_factory.mktemp("citypersons")
  fixtures.write_citypersons(str(root / "manual"))
  summaries = {src: prepare.main(["citypersons", "--manual_dir", str(root / "manual"), "--data_dir",
                                  str(root / src), "--annotations", src]) for src in ("json", "mat")}
  return root, summaries


def examples(data_dir, split):
  builder = gt_export.prepared_builder("citypersons", str(data_dir))
  ds = builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()})
  return sorted(ds.as_numpy_iterator(), key=lambda e: e["image/index"])


def test_prepare_summary(built):
  _, summaries = built
  s = summaries["json"]
  assert s["images"] == {"train": 4, "val": 2} and s["boxes"] == {"train": 11, "val": 6}
  assert s["ignore"] == {"train": 9, "val": 4} and s["max_boxes"] == 6
  tr = s["statistics"]["train"]
  assert tr["labels"] == {"ignore": 3, "pedestrian": 4, "rider": 1, "sitting person": 1, "person (other)": 1,
                          "person group": 1}
  # GT: aachen_0 boxes 0 and 4; aachen_1's pedestrian covers an ignore region and moves; bochum_313 has no
  # pedestrian -> 2 ALFNet images with 2 GT and 4 + 3 ignore boxes.
  assert (tr["gt"], tr["moved_to_ignore"], tr["alfnet_images"], tr["alfnet_gt"], tr["alfnet_ignore"],
          tr["images_without_boxes"], tr["boxes_past_border"]) == (2, 1, 2, 2, 7, 1, 1)
  assert s["statistics"]["val"]["labels"]["pedestrian"] == 3 and s["statistics"]["val"]["source"] == "json"
  assert any("alfnet_images = 2, the official files give 2112" in w for w in s["warnings"])


def test_json_and_mat_sources_agree(built):
  root, summaries = built
  assert summaries["mat"]["statistics"]["train"]["source"] == "mat"
  for split in ("train", "val"):
    a, b = examples(root / "json", split), examples(root / "mat", split)
    assert len(a) == len(b)
    for x, y in zip(a, b):
      for k in x:
        np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_examples_and_training_rule(built):
  root, _ = built
  ex = examples(root / "json", "train")
  names = [e["image/name"].decode() for e in ex]
  assert names == [n for _, n in sorted(fixtures.CP_TRAIN)]
  with open(os.path.join(root, "manual", "leftImg8bit", "train", "aachen", names[0]), "rb") as f:
    assert ex[0]["image"] == f.read()                                      # original PNG bytes
  first = ex[0]
  assert first["image/id"].decode() == "aachen_000000_000019" and first["image/city"].decode() == "aachen"
  assert first["label"].tolist() == [1, 1, 2, 0, 1, 5] and first["instance_id"][0] == 24000
  np.testing.assert_array_equal(first["fbox"][4], [-10, 50, 20, 130])      # raw, x2 = x + w
  np.testing.assert_array_equal(first["vbox"][0], [22, 30, 42, 80])
  # ALFNet generate_data.py by hand: x1 = max(int(x), 0), w = min(w, 256 - x1 - 1), h = min(h, 128 - y1 - 1).
  np.testing.assert_array_equal(first["train_box"], [[20, 30, 45, 90], [100, 40, 112, 70], [150, 20, 178, 90],
                                                     [200, 10, 240, 50], [0, 50, 30, 127], [60, 20, 90, 60]])
  assert first["ignore"].tolist() == [False, True, True, True, False, True]   # short pedestrian, rider, region, group
  assert ex[1]["ignore"].tolist() == [True, True, True]                    # the covering GT moved to the ignore list
  assert ex[2]["ignore"].tolist() == [True, True] and ex[3]["label"].shape == (0,)


def test_ignore_coverage_sums_regions():
  gt = np.array([[0, 0, 9, 3]], np.float32)                                # 10 x 4 pixels (+1 widths)
  regions = np.array([[0, 0, 9, 9], [0, 0, 4, 1]], np.float32)             # areas 100 and 10
  np.testing.assert_allclose(citypersons.ignore_coverage(gt, regions), [40 / 100 + 10 / 10])
  rows = np.array([[1, 0, 0, 10, 60, 1, 0, 0, 10, 60], [0, 0, 0, 100, 100, 0, 0, 0, 100, 100]], np.float64)
  # coverage of the region: 11 * 61 / (101 * 101) = 0.066 -> stays GT; a region inside the GT -> moves.
  assert citypersons.alfnet_training_boxes(rows, 128, 256)[1].tolist() == [False, True]
  rows[1, 1:5] = [2, 2, 4, 4]
  box, ignore, has_gt, moved = citypersons.alfnet_training_boxes(rows, 128, 256)
  assert ignore.tolist() == [True, True] and has_gt and moved == 1


@pytest.fixture(scope="module")
def val_batches(built):
  root, _ = built
  it, info = data_pipelines.create_dataset(make_cfg(root / "json"), "val", 2, False, 0)
  return list(it), info


def test_evaluation_json(val_batches):
  _, info = val_batches
  assert info["gt_odgt"] is None
  with open(info["gt_json"]) as f:
    gt = json.load(f)
  assert gt["images"] == [{"id": 1, "im_name": "frankfurt_000000_000294_leftImg8bit.png", "height": 128, "width": 256},
                          {"id": 2, "im_name": "munster_000000_000019_leftImg8bit.png", "height": 128, "width": 256}]
  ann = lambda i, im, crowd, ign, bbox, vis, ratio: {"id": i, "image_id": im, "category_id": 1, "iscrowd": crowd,
                                                     "ignore": ign, "bbox": bbox, "vis_bbox": vis, "height": bbox[3],
                                                     "vis_ratio": ratio}
  assert gt["annotations"] == [
      ann(1, 1, 0, 0, [30, 20, 30, 73], [30, 30, 30, 50], 1500 / 2190),
      ann(2, 1, 0, 0, [120, 40, 10, 24], [120, 40, 10, 24], 1.0),         # pedestrian of any height: not ignored
      ann(3, 1, 1, 1, [180, 30, 60, 50], [180, 30, 60, 50], 1.0),         # group: iscrowd
      ann(4, 1, 0, 1, [0, 0, 20, 20], [0, 0, 20, 20], 1.0),
      ann(5, 2, 0, 0, [240, 50, 30, 74], [240, 50, 16, 70], 1120 / 2220),  # raw box past the border
      ann(6, 2, 0, 1, [100, 30, 20, 50], [100, 35, 20, 40], 0.8)]
  assert [c["id"] for c in gt["categories"]] == [1, 2, 3, 4, 5, 0]
  assert [r["eval_image_id"] for r in info["records"]] == [1, 2]
  # The evaluator reads it: the one Reasonable GT (h 73, vis 0.68) found -> MR 0; nothing found -> MR 1.
  loaded = cp_eval.load_gt(info["gt_json"])
  hit = [{"image_id": 1, "category_id": 1, "bbox": [30, 20, 30, 73], "score": 0.9}]
  assert cp_eval.evaluate(loaded, hit, ["Reasonable"])["Reasonable"]["MR"] < 1e-6
  assert cp_eval.evaluate(loaded, [], ["Reasonable"])["Reasonable"]["MR"] == pytest.approx(1.0)


def test_eval_pipeline_full_size(built, val_batches):
  root, _ = built
  (b,), _ = val_batches
  assert b["image"].shape == (2, 128, 256, 3)                              # data.eval_size, no resize
  np.testing.assert_array_equal(b["image_size"], [[128, 256]] * 2)
  np.testing.assert_array_equal(b["scale"], [1, 1])
  np.testing.assert_array_equal(b["gt_boxes"][0, :4], [[30, 20, 60, 93], [120, 40, 130, 64], [180, 30, 240, 80],
                                                       [0, 0, 20, 20]])
  np.testing.assert_array_equal(b["gt_classes"][0, :4], [0, -1, -1, -1])
  np.testing.assert_array_equal(b["gt_boxes"][1, :2], [[240, 50, 255, 124], [100, 30, 120, 80]])
  png = np.asarray(Image.open(os.path.join(root, "manual", "leftImg8bit", "val", "frankfurt",
                                           "frankfurt_000000_000294_leftImg8bit.png")).convert("RGB"), np.float32)
  np.testing.assert_allclose(b["image"][0], png[..., ::-1] - np.float32([103.939, 116.779, 123.68]))


def test_train_pipeline_is_the_alfnet_augmentation(built):
  """Batch rows equal transforms.preprocess_alfnet of the decoded image with the draws of the stream
  position (stateless, keyed by (seed, position)); only images with a pedestrian >= 50 px appear."""
  root, _ = built
  cfg = make_cfg(root / "json")
  it, info = data_pipelines.create_dataset(cfg, "train", 2, True, 7)
  assert info["num_train_images"] == 2
  exs = {int(e["image/index"]): e for e in examples(root / "json", "train")}
  for step in range(2):
    b = next(it)
    assert set(b["image_id"].tolist()) <= {0, 1} and b["image"].shape == (2, 64, 128, 3)
    for row in range(2):
      ex = exs[int(b["image_id"][row])]
      u = tf.random.stateless_uniform([transforms.NUM_DRAWS], seed=[7, 2 * step + row], dtype=tf.float64).numpy()
      img = np.asarray(Image.open(io.BytesIO(ex["image"])).convert("RGB"))
      want = transforms.preprocess_alfnet(img, ex["train_box"], np.where(ex["ignore"], -1, 0), 0, "x", cfg, u)
      for k in ("image", "image_size", "orig_size", "scale", "gt_boxes", "gt_classes", "gt_valid"):
        np.testing.assert_array_equal(b[k][row], want[k], err_msg=k)


# ---------------------------------------------------------------------------------------------------
# Bad input.


def build(manual, out, **kw):
  return prepare.build("citypersons", str(manual), str(out), **kw)


def test_missing_files_print_the_layout(tmp_path):
  fixtures.write_citypersons(str(tmp_path / "m"), json_source=False)
  with pytest.raises(FileNotFoundError, match=r"gtBboxCityPersons/\{train,val\} not found.*\n.*Expected CityPersons"):
    build(tmp_path / "m", tmp_path / "o", annotations="json")
  shutil.rmtree(tmp_path / "m" / "leftImg8bit" / "val")
  with pytest.raises(FileNotFoundError, match="no image folder leftImg8bit/val") as e:
    build(tmp_path / "m", tmp_path / "o")
  assert "DIR/anno_train.mat" in str(e.value)


def _edit_json(root, fn):
  path = os.path.join(root, "gtBboxCityPersons", "train", "aachen", "aachen_000000_000019_gtBboxCityPersons.json")
  with open(path) as f:
    doc = json.load(f)
  fn(doc)
  with open(path, "w") as f:
    json.dump(doc, f)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["objects"][1].update(label="cyclist"), r"aachen_000000_000019_gtBboxCityPersons.json: objects\[1\]: "
                                                          r"label 'cyclist' is not one of"),
    (lambda d: d["objects"][0].update(bbox=[1, 2, float("nan"), 4]), r"objects\[0\]: expected 10 finite numbers"),
    (lambda d: d.update(imgHeight=100), r"imgHeight x imgWidth 100x256 disagrees with the image"),
])
def test_bad_json_annotations(tmp_path, edit, message):
  fixtures.write_citypersons(str(tmp_path / "m"), mat_source=False)
  _edit_json(str(tmp_path / "m"), edit)
  with pytest.raises(ValueError, match=message):
    build(tmp_path / "m", tmp_path / "o")


def test_bad_mat_annotations(tmp_path):
  import scipy.io
  bad = {k: [r[:] for r in v] for k, v in fixtures.CP_TRAIN.items()}
  bad[("aachen", "aachen_000001_000019_leftImg8bit.png")][2][0] = 7
  fixtures.write_citypersons(str(tmp_path / "m"), train=bad, json_source=False)
  with pytest.raises(ValueError, match=r"anno_train_aligned\[1\] \(aachen_000001_000019_leftImg8bit.png\) row 2: "
                                       r"class_label 7 is not one of 0..5"):
    build(tmp_path / "m", tmp_path / "o")
  scipy.io.savemat(str(tmp_path / "m" / "anno_train.mat"), {"something": np.zeros(3)})
  with pytest.raises(ValueError, match=r"no variable 'anno_train_aligned' \(found \['something'\]\)"):
    build(tmp_path / "m", tmp_path / "o2")


def test_corrupt_image_stops_or_is_skipped(tmp_path):
  fixtures.write_citypersons(str(tmp_path / "m"), mat_source=False)
  path = tmp_path / "m" / "leftImg8bit" / "val" / "munster" / "munster_000000_000019_leftImg8bit.png"
  path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
  with pytest.raises(ValueError, match=r"image munster_000000_000019 \(.*\) cannot be decoded"):
    build(tmp_path / "m", tmp_path / "o")
  build(tmp_path / "m", tmp_path / "o2", skip_corrupt=True)
  summary = prepare.validate("citypersons", str(tmp_path / "o2"))
  assert summary["images"]["val"] == 1 and summary["statistics"]["val"]["corrupt_ids"] == ["munster_000000_000019"]


def test_max_boxes_error_states_the_needed_value(built):
  root, _ = built
  with pytest.raises(ValueError, match=r"image aachen_000000_000019 has 6 boxes .*more than data.max_boxes = 5; the "
                                       r"statistics of citypersons/1.0.0/train call for data.max_boxes >= 6"):
    data_pipelines.create_dataset(make_cfg(root / "json", max_boxes=5), "train", 2, True, 0)
  with pytest.raises(ValueError, match=r"data.augment 'alfnet' \(data set 'citypersons'\) needs data.train_size"):
    data_pipelines.create_dataset(make_cfg(root / "json", train_size=None), "train", 2, True, 0)


def test_flip_augment_needs_per_image_boxes(built):
  """data.augment 'flip' checks every image's resized boxes against data.max_boxes, which the CityPersons
  json export does not carry: a clear error naming the choice that works."""
  root, _ = built
  c = make_cfg(root / "json")
  c.augment = "flip"
  with pytest.raises(ValueError, match=r"data.augment 'flip' needs the boxes of every image .* use "
                                       r"data.augment='alfnet'"):
    data_pipelines.create_dataset(c, "val", 2, False, 0)
