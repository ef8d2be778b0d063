"""python -m lla_jax.evaluation convert: round trips between odgt, CityPersons json, Caltech text and COCO json for
ground truth and detections, on hand-written files with ignore regions, boxes leaving the image and empty images;
hand-checked target content; errors naming file, image and box."""
import itertools
import json
import os

import pytest

from lla_jax.evaluation import InputError, convert
from lla_jax.evaluation.__main__ import main

W, H = 100, 80
NAMES = ("set06_V000_I00029", "set06_V000_I00059", "set07_V001_I00000")


def odgt_gt():
  """Image 0: two positives (one leaving the image left and below), one ignore region leaving it right;
  image 1: empty; image 2: only an ignore region, float coordinates."""
  return [
      {"ID": NAMES[0], "width": W, "height": H, "gtboxes": [
          {"tag": "person", "fbox": [10, 10, 20, 40], "vbox": [10, 10, 20, 30], "hbox": [15, 10, 6, 6],
           "extra": {"box_id": 0, "ignore": 0}},
          {"tag": "person", "fbox": [-5, 30, 20, 60], "vbox": [0, 30, 15, 50], "hbox": [0, 30, 5, 5],
           "extra": {"box_id": 1, "ignore": 0}},
          {"tag": "mask", "fbox": [50, 0, 60, 30], "vbox": [50, 0, 60, 30], "hbox": [50, 0, 60, 30],
           "extra": {"box_id": 2, "ignore": 1}}]},
      {"ID": NAMES[1], "width": W, "height": H, "gtboxes": []},
      {"ID": NAMES[2], "width": W, "height": H, "gtboxes": [
          {"tag": "mask", "fbox": [1.5, 2.25, 30.5, 40.0], "vbox": [1.5, 2.25, 30.5, 40.0],
           "hbox": [1.5, 2.25, 30.5, 40.0], "extra": {"ignore": 1}}]}]


def odgt_dt():
  return [{"ID": NAMES[0], "width": W, "height": H, "dtboxes": [
      {"box": [10, 11, 20, 40], "score": 0.9, "tag": 1}, {"box": [-3, 30, 20, 55.5], "score": 0.75, "tag": 1},
      {"box": [90, 70, 30, 30], "score": 0.125, "tag": 1}]},
      {"ID": NAMES[1], "width": W, "height": H, "dtboxes": []},
      {"ID": NAMES[2], "width": W, "height": H, "dtboxes": [{"box": [2, 2, 30, 40], "score": 0.5, "tag": 1}]}]


def city_ann(i, image_id, bbox, vis, ignore=0, iscrowd=0):
  return {"id": i, "image_id": image_id, "category_id": 1, "iscrowd": iscrowd, "ignore": ignore, "bbox": bbox,
          "vis_bbox": vis, "height": bbox[3], "vis_ratio": vis[2] * vis[3] / (bbox[2] * bbox[3])}


def city_gt():
  """A pedestrian leaving the image, a rider (ignore), a person group (iscrowd, ignore), an image without
  annotations, one stored vis_ratio that is not the box ratio (kept as given)."""
  images = [{"id": k + 1, "im_name": f"{n}.png", "height": H, "width": W} for k, n in enumerate(NAMES)]
  anns = [city_ann(1, 1, [10, 10, 20, 40], [10, 10, 20, 30]), city_ann(2, 1, [-5, 30, 20, 60], [0, 30, 15, 50]),
          city_ann(3, 1, [60, 5, 12, 30], [60, 5, 12, 30], ignore=1),
          city_ann(4, 3, [1.5, 2.25, 30.5, 40.0], [1.5, 2.25, 30.5, 40.0], ignore=1, iscrowd=1)]
  anns[1]["vis_ratio"] = 0.6
  return {"images": images, "categories": [{"id": 1, "name": "pedestrian"}], "annotations": anns}


def city_dt():
  return [{"image_id": 1, "category_id": 1, "bbox": [10, 11, 20, 40], "score": 0.9},
          {"image_id": 1, "category_id": 1, "bbox": [-3, 30, 20, 55.5], "score": 0.75},
          {"image_id": 3, "category_id": 1, "bbox": [2, 2, 30, 40], "score": 0.5}]


def coco_gt():
  """COCO as the tool writes it, with folders in file names, a head box on one annotation and a segmentation."""
  images = [{"id": k + 1, "file_name": f"Images/{n}.jpg", "width": W, "height": H} for k, n in enumerate(NAMES)]

  def ann(i, image_id, bbox, vis, ignore=0, **more):
    return {"area": bbox[2] * bbox[3], "id": i, "image_id": image_id, "category_id": 1, "bbox": bbox,
            "iscrowd": ignore, "ignore": ignore, "vis_bbox": vis, **more}
  anns = [ann(1, 1, [10, 10, 20, 40], [10, 10, 20, 30], head_bbox=[15, 10, 6, 6]),
          ann(2, 1, [-5, 30, 20, 60], [0, 30, 15, 50], segmentation=[[0, 30, 15, 30, 15, 80]]),
          ann(3, 1, [50, 0, 60, 30], [50, 0, 60, 30], ignore=1),
          ann(4, 3, [1.5, 2.25, 30.5, 40.0], [1.5, 2.25, 30.5, 40.0], ignore=1, label="people")]
  return {"images": images, "categories": [{"id": 1, "name": "person"}], "annotations": anns}


def coco_dt():
  return city_dt()


CALTECH_GT = {
    NAMES[0]: ["person 10 10 20 40 1 10 10 20 30 0 0", "person -5 30 20 60 1 0 30 15 50 0 0",
               "people 50 0 60 30 0 0 0 0 0 1 0"],
    NAMES[1]: [],
    NAMES[2]: ["mask 1.5 2.25 30.5 40.0 0 0 0 0 0 1 0"]}
CALTECH_DT = {NAMES[0]: ["10 11 20 40 0.9", "-3 30 20 55.5 0.75", "90 70 30 30 0.125"], NAMES[1]: [],
              NAMES[2]: ["2 2 30 40 0.5"]}


def write_fixture(tmp, fmt, kind):
  """The hand-written file (or folder) of `fmt` and `kind` -> its path."""
  if fmt == "caltech":
    folder = tmp / f"caltech_{kind}"
    folder.mkdir()
    for name, lines in (CALTECH_GT if kind == "gt" else CALTECH_DT).items():
      header = [convert.CALTECH_HEADER] if kind == "gt" else []
      (folder / f"{name}.txt").write_text("".join(line + "\n" for line in header + lines))
    return str(folder)
  if fmt == "odgt":
    path = tmp / f"{kind}.odgt"
    path.write_text("".join(json.dumps(r) + "\n" for r in (odgt_gt() if kind == "gt" else odgt_dt())))
    return str(path)
  data = {("citypersons", "gt"): city_gt, ("citypersons", "dt"): city_dt, ("coco", "gt"): coco_gt,
          ("coco", "dt"): coco_dt}[fmt, kind]()
  path = tmp / f"{fmt}_{kind}.json"
  path.write_text(json.dumps(data))
  return str(path)


def run_convert(capsys, *argv):
  code = main(["convert", *argv])
  out, err = capsys.readouterr()
  assert code == 0, err
  return out, err


def summary(path, fmt, kind, ref=None, sizes=True):
  """What every format carries: per image name the size and the sorted (box, ignore, score, visible box)."""
  ann = convert.read(path, fmt, kind, ref=convert.read(ref, kind="gt") if ref else None)
  out = {}
  for im in ann.images:
    boxes = sorted((tuple(map(float, b.box)), b.ignore, b.score, tuple(map(float, b.vis or b.box))) for b in im.boxes)
    if boxes or kind == "gt":
      out[im.name] = ((im.width, im.height) if sizes else None, boxes)
  return out


def ref_for(fmt, tmp):
  """The ground truth detections of `fmt` belong to (the formats naming images by number need one)."""
  return write_fixture(tmp / "ref", fmt, "gt")


@pytest.mark.parametrize("kind", ["gt", "dt"])
@pytest.mark.parametrize("src,dst", [p for p in itertools.permutations(convert.FORMATS, 2)])
def test_round_trip_every_pair(tmp_path, capsys, src, dst, kind):
  (tmp_path / "ref").mkdir()
  original = write_fixture(tmp_path, src, kind)
  gt_args = []
  if kind == "dt":  # the ground truth of the numbered formats, in the format of the numbered side
    gt_args = ["--gt", ref_for(dst if dst in ("coco", "citypersons") else src, tmp_path)]
  size_args = ["--image-size", f"{W}x{H}"]
  middle = str(tmp_path / (f"middle_{dst}" + ("" if dst == "caltech" else ".json" if dst != "odgt" else ".odgt")))
  back = str(tmp_path / (f"back_{src}" + ("" if src == "caltech" else ".json" if src != "odgt" else ".odgt")))
  run_convert(capsys, original, middle, "--to", dst, *gt_args, *size_args)
  run_convert(capsys, middle, back, "--to", src, *gt_args, *size_args)
  ref = gt_args[1] if gt_args else None
  # Caltech text keeps no sizes (--image-size restores them); odgt detections carry them.
  expected = summary(original, src, kind, ref, sizes=src != "caltech")
  assert summary(back, src, kind, ref, sizes=src != "caltech") == expected
  assert summary(middle, dst, kind, ref, sizes=False) == summary(original, src, kind, ref, sizes=False)


@pytest.mark.parametrize("src,dst", [("odgt", "coco"), ("coco", "odgt"), ("odgt", "citypersons"),
                                     ("citypersons", "odgt"), ("citypersons", "coco"), ("coco", "citypersons")])
def test_json_round_trips_are_exact(tmp_path, capsys, src, dst):
  """Between the JSON formats nothing changes: tags, labels, head boxes, box ids, stored vis_ratio, file names."""
  original = write_fixture(tmp_path, src, "gt")
  run_convert(capsys, original, str(tmp_path / "middle"), "--to", dst)
  run_convert(capsys, str(tmp_path / "middle"), str(tmp_path / "back"), "--to", src)
  if src == "odgt":
    back = [json.loads(line) for line in open(tmp_path / "back")]
    for r in back:
      r.pop("image_id")  # the numbered formats' image id, carried along
    assert back == odgt_gt()
  else:
    assert json.load(open(tmp_path / "back")) == json.load(open(original))


def test_caltech_text_round_trip_is_exact(tmp_path, capsys):
  for kind in ("gt", "dt"):
    original = write_fixture(tmp_path, "caltech", kind)
    run_convert(capsys, original, str(tmp_path / f"{kind}.odgt"), "--to", "odgt", "--image-size", "640x480")
    run_convert(capsys, str(tmp_path / f"{kind}.odgt"), str(tmp_path / f"back_{kind}"), "--to", "caltech")
    for name in NAMES:
      assert (tmp_path / f"back_{kind}" / f"{name}.txt").read_text() == \
          open(os.path.join(original, f"{name}.txt")).read()


def test_caltech_per_video_detections(tmp_path, capsys):
  dt = write_fixture(tmp_path, "odgt", "dt")
  run_convert(capsys, dt, str(tmp_path / "video"), "--to", "caltech", "--caltech-layout", "video")
  assert sorted(os.listdir(tmp_path / "video")) == ["set06", "set07"]
  assert (tmp_path / "video/set06/V000.txt").read_text() == "30 10 11 20 40 0.9\n30 -3 30 20 55.5 0.75\n" \
      "30 90 70 30 30 0.125\n"
  assert (tmp_path / "video/set07/V001.txt").read_text() == "1 2 2 30 40 0.5\n"
  gt = write_fixture(tmp_path, "odgt", "gt")
  run_convert(capsys, str(tmp_path / "video"), str(tmp_path / "back.odgt"), "--to", "odgt", "--gt", gt)
  assert [json.loads(line) for line in open(tmp_path / "back.odgt")] == odgt_dt()
  (tmp_path / "bad.odgt").write_text(json.dumps({"ID": "frame_7", "width": 9, "height": 9, "dtboxes": []}) + "\n")
  assert main(["convert", str(tmp_path / "bad.odgt"), str(tmp_path / "v2"), "--to", "caltech",
               "--caltech-layout", "video"]) == 2
  assert "'frame_7'" in capsys.readouterr().err


def test_coco_content_by_hand(tmp_path, capsys):
  """odgt -> COCO: ignore regions iscrowd = ignore = 1, boxes leaving the image kept, empty image listed,
  ids 1-based in file order, area w * h, visible and head boxes as vis_bbox / head_bbox."""
  run_convert(capsys, write_fixture(tmp_path, "odgt", "gt"), str(tmp_path / "c.json"), "--to", "coco")
  c = json.load(open(tmp_path / "c.json"))
  assert c["images"] == [{"id": k + 1, "file_name": f"{n}.jpg", "width": W, "height": H} for k, n in enumerate(NAMES)]
  assert c["categories"] == [{"id": 1, "name": "person"}]
  a = c["annotations"]
  assert [(x["id"], x["image_id"], x["iscrowd"], x["ignore"]) for x in a] == [(1, 1, 0, 0), (2, 1, 0, 0),
                                                                             (3, 1, 1, 1), (4, 3, 1, 1)]
  assert a[1]["bbox"] == [-5, 30, 20, 60] and a[1]["area"] == 1200 and a[1]["vis_bbox"] == [0, 30, 15, 50]
  assert a[0]["head_bbox"] == [15, 10, 6, 6] and "label" not in a[0] and "label" not in a[2]
  run_convert(capsys, write_fixture(tmp_path, "odgt", "dt"), str(tmp_path / "d.json"), "--to", "coco",
              "--gt", str(tmp_path / "c.json"))
  d = json.load(open(tmp_path / "d.json"))
  assert d[1] == {"image_id": 1, "category_id": 1, "bbox": [-3, 30, 20, 55.5], "score": 0.75}
  assert [x["image_id"] for x in d] == [1, 1, 1, 3]


def test_citypersons_content_by_hand(tmp_path, capsys):
  """odgt -> CityPersons: height = h, vis_ratio = visible / full area, ignore flags, groups only from 'people'."""
  run_convert(capsys, write_fixture(tmp_path, "caltech", "gt"), str(tmp_path / "c.json"), "--to", "citypersons",
              "--image-size", "640x480")
  c = json.load(open(tmp_path / "c.json"))
  assert c["images"][1] == {"id": 2, "im_name": f"{NAMES[1]}.jpg", "height": 480, "width": 640}
  a = c["annotations"]
  assert a[0]["height"] == 40 and a[0]["vis_ratio"] == 0.75 and a[0]["ignore"] == 0 and a[0]["iscrowd"] == 0
  assert a[1]["vis_ratio"] == 750 / 1200
  assert (a[2]["ignore"], a[2]["iscrowd"]) == (1, 1) and (a[3]["ignore"], a[3]["iscrowd"]) == (1, 0)
  assert a[3]["vis_bbox"] == a[3]["bbox"] == [1.5, 2.25, 30.5, 40.0] and a[3]["vis_ratio"] == 1.0


def test_caltech_content_by_hand(tmp_path, capsys):
  run_convert(capsys, write_fixture(tmp_path, "coco", "gt"), str(tmp_path / "cal"), "--to", "caltech")
  assert (tmp_path / "cal" / f"{NAMES[0]}.txt").read_text().splitlines() == [
      "% bbGt version=3", "person 10 10 20 40 1 10 10 20 30 0 0", "person -5 30 20 60 1 0 30 15 50 0 0",
      "mask 50 0 60 30 0 50 0 60 30 1 0"]
  assert (tmp_path / "cal" / f"{NAMES[1]}.txt").read_text() == "% bbGt version=3\n"


def test_what_a_target_cannot_hold_is_reported(tmp_path, capsys):
  _, err = run_convert(capsys, write_fixture(tmp_path, "odgt", "gt"), str(tmp_path / "cal"), "--to", "caltech")
  assert "head boxes (no place in Caltech text)" in err and "image fields, file names or sizes" in err
  (tmp_path / "plain.json").write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [
      {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "iscrowd": 1}]}))
  _, err = run_convert(capsys, str(tmp_path / "plain.json"), str(tmp_path / "p.json"), "--to", "citypersons")
  assert "1 boxes without a visible box" in err and "1 images without width / height" in err
  p = json.load(open(tmp_path / "p.json"))
  assert p["annotations"][0]["ignore"] == 1  # iscrowd alone marks a COCO ignore region


def test_errors_name_file_image_and_box(tmp_path, capsys):
  dt = write_fixture(tmp_path, "odgt", "dt")
  assert main(["convert", dt, str(tmp_path / "x.json"), "--to", "coco"]) == 2
  assert "pass the ground truth (--gt FILE)" in capsys.readouterr().err
  # A detection image the ground truth lacks.
  gt = tmp_path / "small.odgt"
  gt.write_text(json.dumps(odgt_gt()[0]) + "\n")
  assert main(["convert", dt, str(tmp_path / "x.json"), "--to", "coco", "--gt", str(gt)]) == 2
  assert f"image {NAMES[1]!r} is not in the ground truth" in capsys.readouterr().err
  # A COCO detection whose image id is in no image.
  bad = tmp_path / "bad.json"
  bad.write_text(json.dumps(city_dt() + [{"image_id": 9, "category_id": 1, "bbox": [0, 0, 1, 1], "score": .1}]))
  assert main(["convert", str(bad), str(tmp_path / "x.odgt"), "--to", "odgt", "--gt",
               write_fixture(tmp_path, "coco", "gt")]) == 2
  err = capsys.readouterr().err
  assert "bad.json: detection [3]: image_id 9 matches no image" in err
  # odgt detections without any size; a label with a blank; a malformed box.
  (tmp_path / "ns.json").write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": []}))
  (tmp_path / "d.json").write_text(json.dumps([{"image_id": 1, "bbox": [1, 2, 3, 4], "score": .5}]))
  assert main(["convert", str(tmp_path / "d.json"), str(tmp_path / "x.odgt"), "--to", "odgt", "--gt",
               str(tmp_path / "ns.json")]) == 2
  assert "image 'a': odgt detections need the image size" in capsys.readouterr().err
  odgt = odgt_gt()
  odgt[0]["gtboxes"][2]["tag"] = "two words"
  (tmp_path / "lbl.odgt").write_text("".join(json.dumps(r) + "\n" for r in odgt))
  assert main(["convert", str(tmp_path / "lbl.odgt"), str(tmp_path / "cal"), "--to", "caltech"]) == 2
  assert f"image {NAMES[0]!r} box 2: label 'two words' cannot be a Caltech label" in capsys.readouterr().err
  odgt[0]["gtboxes"][1]["fbox"] = [1, 2, 3]
  (tmp_path / "box.odgt").write_text("".join(json.dumps(r) + "\n" for r in odgt))
  with pytest.raises(InputError, match=r"box.odgt:1 \(ID 'set06_V000_I00029'\) box 1 fbox: expected \[x, y, w, h\]"):
    convert.read(str(tmp_path / "box.odgt"))


def test_other_categories_need_a_choice(tmp_path, capsys):
  data = coco_gt()
  data["categories"].append({"id": 2, "name": "car"})
  data["annotations"][1]["category_id"] = 2
  (tmp_path / "two.json").write_text(json.dumps(data))
  assert main(["convert", str(tmp_path / "two.json"), str(tmp_path / "x.odgt"), "--to", "odgt",
               "--category", "1"]) == 0
  assert "note: 1 annotations of other categories" in capsys.readouterr().err
  data["categories"][0]["name"] = "pedestrian-ish"
  (tmp_path / "two.json").write_text(json.dumps(data))
  assert main(["convert", str(tmp_path / "two.json"), str(tmp_path / "x.odgt"), "--to", "odgt"]) == 2
  assert "choose one with --category ID" in capsys.readouterr().err


def test_detection_and_atomic_replace(tmp_path, capsys):
  for fmt, kind in itertools.product(convert.FORMATS, ("gt", "dt")):
    assert convert.detect(write_fixture(tmp_path, fmt, kind))[0] == ("coco" if (fmt, kind) == ("citypersons", "dt")
                                                                      else fmt)
  out = tmp_path / "cal_out"
  out.mkdir()
  (out / "stale.txt").write_text("old")
  run_convert(capsys, str(tmp_path / "gt.odgt"), str(out), "--to", "caltech")
  assert sorted(os.listdir(out)) == sorted(f"{n}.txt" for n in NAMES)
  assert not [f for f in os.listdir(tmp_path) if f.startswith((".tmp-", ".old-"))]
