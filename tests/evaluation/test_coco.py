"""COCO-format detections in the CrowdHuman and CityPersons evaluators (the CLI's --dt hook): the same
detections give the same metrics as in the evaluator's own format, with image ids mapped through the GT
positions, names or a COCO ground truth (--coco-gt); pycocotools reads what `convert --to coco` writes."""
import json

import numpy as np
import pytest

from lla_jax.evaluation import citypersons
from lla_jax.evaluation.__main__ import main


def random_crowdhuman(seed, n_images=25, sizes_in_gt=True):
  """GT odgt and DT odgt records: crowds with ignore regions, boxes leaving the image, images without GT
  boxes and images without detections; detections = jittered GT plus false positives."""
  rng = np.random.default_rng(seed)
  gt, dt = [], []
  for i in range(n_images):
    w, h = int(rng.integers(80, 200)), int(rng.integers(60, 160))
    boxes = []
    for _ in range(int(rng.integers(0, 9)) if i % 7 else 0):
      bw, bh = rng.uniform(8, 50), rng.uniform(20, 90)
      x, y = rng.uniform(-20, w - 5), rng.uniform(-20, h - 10)
      box = [round(float(v), 1) for v in (x, y, bw, bh)]
      ignore = rng.random() < 0.2
      boxes.append({"tag": "mask" if ignore else "person", "fbox": box, "hbox": box, "vbox": box,
                    "extra": {"ignore": int(ignore)}})
    rec = {"ID": f"27{i:04d},c9db{i:03d}", "gtboxes": boxes}
    if sizes_in_gt:
      rec.update(width=w, height=h)
    gt.append(rec)
    if i % 5 == 3:
      continue  # no detection record
    dets = []
    for b in boxes:
      if rng.random() < 0.8:
        x, y, bw, bh = b["fbox"]
        dets.append([x + rng.normal(0, 2), y + rng.normal(0, 2), bw * rng.uniform(.85, 1.15),
                     bh * rng.uniform(.85, 1.15)])
    for _ in range(int(rng.integers(0, 5))):
      dets.append([rng.uniform(-10, w), rng.uniform(-10, h), rng.uniform(5, 40), rng.uniform(10, 80)])
    scores = rng.uniform(0.05, 1, len(dets)).round(3)  # ties on purpose
    dt.append({"ID": rec["ID"], "width": w, "height": h, "dtboxes": [
        {"box": [float(v) for v in d], "score": float(s), "tag": 1} for d, s in zip(dets, scores)]})
  return gt, dt


def write_lines(path, records):
  path.write_text("".join(json.dumps(r) + "\n" for r in records))
  return str(path)


def metrics(capsys, benchmark, *argv):
  code = main([benchmark, *argv, "--json"])
  out, err = capsys.readouterr()
  assert code == 0, err
  return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_crowdhuman_metrics_same_from_coco_detections(tmp_path, capsys, seed):
  gt, dt = random_crowdhuman(seed)
  gt_path, dt_path = write_lines(tmp_path / "gt.odgt", gt), write_lines(tmp_path / "dt.odgt", dt)
  reference = metrics(capsys, "crowdhuman", "--gt", gt_path, "--dt", dt_path)
  assert reference["AP"] > 0.2 and 0 < reference["MR"] < 1 and reference["JI"] > 0.2

  # (a) convert's COCO detections: integer ids = 1-based positions in the GT odgt, sizes from the GT.
  assert main(["convert", dt_path, str(tmp_path / "dt.json"), "--to", "coco", "--gt", gt_path]) == 0
  assert metrics(capsys, "crowdhuman", "--gt", gt_path, "--dt", str(tmp_path / "dt.json")) == reference

  # (b) a GT odgt without sizes (the public files): ids and sizes through a COCO ground truth whose ids are
  # neither positions nor in order.
  gt_plain = write_lines(tmp_path / "gt_plain.odgt", [{k: v for k, v in r.items() if k not in ("width", "height")}
                                                      for r in gt])
  sizes = {r["ID"]: (r["width"], r["height"]) for r in gt}
  ids = {r["ID"]: 1000 - 3 * k for k, r in enumerate(gt)}
  coco_gt = {"images": [{"id": ids[i], "file_name": f"Images/{i}.jpg", "width": sizes[i][0], "height": sizes[i][1]}
                        for i in reversed(list(ids))], "annotations": [], "categories": [{"id": 1, "name": "person"}]}
  (tmp_path / "coco_gt.json").write_text(json.dumps(coco_gt))
  dets = [{"image_id": ids[r["ID"]], "category_id": 1, "bbox": b["box"], "score": b["score"]}
          for r in reversed(dt) for b in r["dtboxes"]]  # any order: the evaluator sorts by score, stably by GT order
  (tmp_path / "dt_ids.json").write_text(json.dumps(dets))
  got = metrics(capsys, "crowdhuman", "--gt", gt_plain, "--dt", str(tmp_path / "dt_ids.json"),
                "--coco-gt", str(tmp_path / "coco_gt.json"))
  # Reversing the file order changes only the order of equal scores across images; compare against the same
  # detections in odgt written in that order.
  dt_rev = write_lines(tmp_path / "dt_rev.odgt", list(reversed(dt)))
  assert got == metrics(capsys, "crowdhuman", "--gt", gt_path, "--dt", dt_rev)

  # (c) string image ids: the odgt IDs themselves.
  (tmp_path / "dt_str.json").write_text(json.dumps(
      [{"image_id": r["ID"], "category_id": 1, "bbox": b["box"], "score": b["score"]} for r in dt
       for b in r["dtboxes"]]))
  assert metrics(capsys, "crowdhuman", "--gt", gt_path, "--dt", str(tmp_path / "dt_str.json")) == reference
  # (d) no sizes anywhere but in the detections' own odgt: images without detections get no record, as in odgt.
  gt_some = write_lines(tmp_path / "gt_some.odgt", [
      r if r["ID"] in {d["ID"] for d in dt if d["dtboxes"]} else {"ID": r["ID"], "gtboxes": r["gtboxes"]} for r in gt])
  assert metrics(capsys, "crowdhuman", "--gt", gt_some, "--dt", str(tmp_path / "dt_str.json")) == \
      metrics(capsys, "crowdhuman", "--gt", gt_some, "--dt", write_lines(tmp_path / "dt_some.odgt",
                                                                         [d for d in dt if d["dtboxes"]]))


def test_crowdhuman_coco_errors(tmp_path, capsys):
  gt, dt = random_crowdhuman(3, n_images=4)
  gt_path = write_lines(tmp_path / "gt.odgt", gt)
  (tmp_path / "d.json").write_text(json.dumps([{"image_id": 5, "category_id": 1, "bbox": [1, 2, 3, 4], "score": .5}]))
  assert main(["crowdhuman", "--gt", gt_path, "--dt", str(tmp_path / "d.json")]) == 2
  assert "d.json: detection [0]: image_id 5 matches no image of the ground truth" in capsys.readouterr().err
  gt_plain = write_lines(tmp_path / "gt_plain.odgt", [{"ID": r["ID"], "gtboxes": r["gtboxes"]} for r in gt])
  (tmp_path / "d.json").write_text(json.dumps([{"image_id": 2, "category_id": 1, "bbox": [1, 2, 3, 4], "score": .5}]))
  assert main(["crowdhuman", "--gt", gt_plain, "--dt", str(tmp_path / "d.json")]) == 2
  assert f"image {gt[1]['ID']!r} has detections but no width / height" in capsys.readouterr().err
  (tmp_path / "d.json").write_text(json.dumps([{"image_id": 1, "category_id": 3, "bbox": [1, 2, 3, 4], "score": .5}]))
  assert main(["crowdhuman", "--gt", gt_path, "--dt", str(tmp_path / "d.json")]) == 2
  assert "category_id 3 is not the person category" in capsys.readouterr().err


def random_citypersons(seed, n_images=30):
  rng = np.random.default_rng(seed)
  images = [{"id": k + 1, "im_name": f"city_{k:03d}_leftImg8bit.png", "height": 1024, "width": 2048}
            for k in range(n_images)]
  anns, dets = [], []
  for im in images:
    for _ in range(int(rng.integers(0, 8))):
      h = float(rng.uniform(15, 300))
      box = [float(rng.uniform(-30, 2000)), float(rng.uniform(-30, 800)), round(0.41 * h, 2), h]
      vis = float(rng.uniform(0.1, 1))
      anns.append({"id": len(anns) + 1, "image_id": im["id"], "category_id": 1, "iscrowd": 0,
                   "ignore": int(rng.random() < 0.25), "bbox": box, "vis_bbox": box, "height": h, "vis_ratio": vis})
      if rng.random() < 0.8:
        dets.append({"image_id": im["id"], "category_id": 1, "score": float(rng.uniform(0.05, 1)),
                     "bbox": [box[0] + float(rng.normal(0, 3)), box[1] + float(rng.normal(0, 3)), box[2], box[3]]})
    for _ in range(int(rng.integers(0, 4))):
      dets.append({"image_id": im["id"], "category_id": 1, "score": float(rng.uniform(0.05, 1)),
                   "bbox": [float(rng.uniform(0, 2000)), float(rng.uniform(0, 900)), 30.0, 75.0]})
  return {"images": images, "categories": [{"id": 1, "name": "pedestrian"}], "annotations": anns}, dets


def test_citypersons_setups_same_from_coco_detections(tmp_path, capsys):
  gt, dt = random_citypersons(0)
  (tmp_path / "gt.json").write_text(json.dumps(gt))
  (tmp_path / "dt.json").write_text(json.dumps(dt))
  reference = metrics(capsys, "citypersons", "--gt", str(tmp_path / "gt.json"), "--dt", str(tmp_path / "dt.json"))
  assert set(reference) == set(citypersons.SETUPS) and 0 < reference["Reasonable"] < 1
  # The same detections numbered by another tool's COCO ground truth (ids 500 - k, file names with folders).
  coco_gt = {"images": [{"id": 500 - im["id"], "file_name": f"leftImg8bit/val/x/{im['im_name']}", "width": 2048,
                         "height": 1024} for im in gt["images"]], "annotations": []}
  (tmp_path / "coco_gt.json").write_text(json.dumps(coco_gt))
  (tmp_path / "dt_coco.json").write_text(json.dumps([{**d, "image_id": 500 - d["image_id"]} for d in dt]))
  assert metrics(capsys, "citypersons", "--gt", str(tmp_path / "gt.json"), "--dt", str(tmp_path / "dt_coco.json"),
                 "--coco-gt", str(tmp_path / "coco_gt.json")) == reference
  # Through convert: CityPersons GT -> COCO GT, detections odgt -> COCO against it.
  assert main(["convert", str(tmp_path / "gt.json"), str(tmp_path / "gt_coco.json"), "--to", "coco"]) == 0
  assert main(["convert", str(tmp_path / "dt.json"), str(tmp_path / "dt.odgt"), "--to", "odgt", "--gt",
               str(tmp_path / "gt.json")]) == 0
  assert main(["convert", str(tmp_path / "dt.odgt"), str(tmp_path / "dt2.json"), "--to", "coco", "--gt",
               str(tmp_path / "gt_coco.json")]) == 0
  capsys.readouterr()
  assert metrics(capsys, "citypersons", "--gt", str(tmp_path / "gt.json"), "--dt", str(tmp_path / "dt2.json"),
                 "--coco-gt", str(tmp_path / "gt_coco.json")) == reference
  # An id the COCO ground truth does not list.
  (tmp_path / "bad.json").write_text(json.dumps([{**dt[0], "image_id": 7}]))
  assert main(["citypersons", "--gt", str(tmp_path / "gt.json"), "--dt", str(tmp_path / "bad.json"),
               "--coco-gt", str(tmp_path / "coco_gt.json")]) == 2
  assert "detection [0]: image_id 7 is not in the COCO ground truth's images" in capsys.readouterr().err


def test_pycocotools_reads_converted_files(tmp_path, capsys):
  """The COCO files convert writes load in pycocotools; ignore regions (iscrowd) swallow detections there too:
  perfect detections plus one inside an ignore region give AP50 = 1."""
  coco = pytest.importorskip("pycocotools.coco")
  cocoeval = pytest.importorskip("pycocotools.cocoeval")
  gt, _ = random_crowdhuman(4, n_images=6)
  dt = []
  for r in gt:
    boxes = [{"box": b["fbox"], "score": 0.9, "tag": 1} for b in r["gtboxes"] if b["tag"] == "person"]
    boxes += [{"box": b["fbox"], "score": 0.95, "tag": 1} for b in r["gtboxes"] if b["tag"] == "mask"]
    dt.append({"ID": r["ID"], "width": r["width"], "height": r["height"], "dtboxes": boxes})
  gt_path, dt_path = write_lines(tmp_path / "gt.odgt", gt), write_lines(tmp_path / "dt.odgt", dt)
  assert main(["convert", gt_path, str(tmp_path / "gt.json"), "--to", "coco"]) == 0
  assert main(["convert", dt_path, str(tmp_path / "dt.json"), "--to", "coco", "--gt", gt_path]) == 0
  capsys.readouterr()
  g = coco.COCO(str(tmp_path / "gt.json"))
  e = cocoeval.COCOeval(g, g.loadRes(str(tmp_path / "dt.json")), "bbox")
  e.params.areaRng = [[0, 1e10]] * 4  # boxes leaving the image have areas of any size
  e.evaluate()
  e.accumulate()
  e.summarize()
  assert e.stats[1] == pytest.approx(1.0)  # AP50
