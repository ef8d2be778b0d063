"""CrowdHuman evaluator: the hand-worked example of spec §A.9, edge cases, and random cases against the plain
per-image re-statement in tests/reference/evaluation.py."""
import itertools
import math

import numpy as np
import pytest

from lla_jax.evaluation import InputError, crowdhuman
from tests.reference import evaluation as reference


def gt_box(x, y, w, h, tag="person", ignore=None):
  b = {"tag": tag, "fbox": [x, y, w, h], "hbox": [x, y, 5, 5], "vbox": [x, y, w, h]}
  if ignore is not None:
    b["extra"] = {"ignore": ignore}
  return b


def dt_box(x, y, w, h, score):
  return {"box": [x, y, w, h], "score": score, "tag": 1}


def example_a9():
  gt = [{"ID": "a", "gtboxes": [gt_box(10, 10, 20, 40), gt_box(50, 10, 20, 40), gt_box(0, 60, 100, 40, "mask", 1)]},
        {"ID": "b", "gtboxes": [gt_box(10, 10, 20, 40), gt_box(90, 10, 30, 40)]}]
  dt = [{"ID": "a", "width": 100, "height": 100, "dtboxes": [
      dt_box(10, 10, 20, 40, .9), dt_box(52, 12, 20, 40, .8), dt_box(10, 65, 20, 30, .7), dt_box(80, 10, 15, 15, .6)]},
      {"ID": "b", "width": 100, "height": 100, "dtboxes": [
          dt_box(60, 60, 20, 20, .85), dt_box(11, 10, 20, 40, .5), dt_box(90, 10, 10, 40, .4)]}]
  return gt, dt


def test_example_a9():
  gt, dt = example_a9()
  r = crowdhuman.evaluate(gt, dt)
  assert r["AP"] == pytest.approx(0.441667, abs=5e-7)
  assert r["MR"] == pytest.approx(0.685378, abs=5e-7)
  assert r["MR"] == pytest.approx(math.exp((7 * math.log(0.75) + 2 * math.log(0.5)) / 9), rel=1e-15)
  assert r["Recall"] == 1.0
  assert r["JI"] == pytest.approx(0.6666664, abs=5e-8)
  assert r["num_images"] == 2 and r["num_positives"] == 4
  c = r["curve"]
  np.testing.assert_array_equal(c["score"], [.9, .85, .8, .6, .5, .4])
  np.testing.assert_allclose(c["recall"], [.25, .25, .5, .5, .75, 1])
  np.testing.assert_allclose(c["precision"], [1, .5, 2 / 3, .5, .6, 2 / 3])
  np.testing.assert_allclose(c["fppi"], [0, .5, .5, 1, 1, 1])
  # JI per threshold (t = 0.0 .. 0.9): 2/3 up to 0.3, then 0.5, 1/3, 0.5, 0.5, 0.25, 0 (eps-shifted).
  np.testing.assert_allclose(r["JI_per_threshold"], [2 / 3] * 4 + [.5, 1 / 3, .5, .5, .25, 0], atol=1e-6)


def test_example_a9_clipping_matters():
  # d7 only matches P4 because P4 is clipped to the image (unclipped IoU 0.333).
  gt, dt = example_a9()
  dt[1]["width"] = 200
  assert crowdhuman.evaluate(gt, dt)["Recall"] == 0.75


def test_example_a9_matches_reference():
  gt, dt = example_a9()
  fast, slow = crowdhuman.evaluate(gt, dt), reference.crowdhuman(gt, dt)
  for key in ("AP", "MR", "Recall", "JI"):
    assert fast[key] == pytest.approx(slow[key], rel=1e-12)


def _one_image(gt_boxes, dets, size=200):
  return ([{"ID": "x", "gtboxes": gt_boxes}], [{"ID": "x", "width": size, "height": size, "dtboxes": dets}])


def test_tie_goes_to_earlier_gt():
  # DT1 has equal IoU (2/3) with GT1 and GT2 and takes GT1 (strict '>'); DT2 then only overlaps GT1 -> FP.
  gt, dt = _one_image([gt_box(20, 10, 10, 20), gt_box(24, 10, 10, 20)],
                      [dt_box(22, 10, 10, 20, .9), dt_box(19, 10, 10, 20, .8)])
  r = crowdhuman.evaluate(gt, dt)
  assert r["Recall"] == 0.5
  np.testing.assert_array_equal(r["curve"]["precision"], [1.0, 0.5])


def test_iou_half_is_not_a_match():
  # IoU 0.5 exactly (before eps) fails the strict > 0.5; the toolkit's eps makes it 0.49999...
  gt, dt = _one_image([gt_box(0, 0, 100, 100)], [dt_box(0, 0, 100, 50, .9)])
  assert crowdhuman.evaluate(gt, dt)["Recall"] == 0.0


def test_toolkit_epsilon_decides_near_half():
  # IoU 0.50000000001 without the toolkit's 1e-6 in the denominator, 0.49999999996 with it: no match.
  gt, dt = _one_image([gt_box(10, 10, 100, 100)], [dt_box(10, 10, 100, 50.000000001, .9)])
  assert crowdhuman.evaluate(gt, dt)["Recall"] == 0.0
  assert reference.crowdhuman(gt, dt)["Recall"] == 0.0
  gt, dt = _one_image([gt_box(10, 10, 100, 100)], [dt_box(10, 10, 100, 50.0001, .9)])
  assert crowdhuman.evaluate(gt, dt)["Recall"] == 1.0


def test_ignore_by_ioa_of_detection_and_not_consumed():
  # Three DTs inside one ignore region are all discarded; a positive elsewhere is missed.
  gt, dt = _one_image([gt_box(0, 0, 100, 100, "mask", 1), gt_box(150, 0, 20, 40)],
                      [dt_box(10, 10, 20, 20, .9), dt_box(30, 30, 20, 20, .8), dt_box(40, 40, 50, 50, .7)])
  r = crowdhuman.evaluate(gt, dt)
  assert len(r["curve"]["fppi"]) == 0 and r["Recall"] == 0.0 and math.isnan(r["MR"])
  # A person tagged extra.ignore = 1 is an ignore region too.
  gt[0]["gtboxes"][0] = gt_box(0, 0, 100, 100, "person", 1)
  assert crowdhuman.evaluate(gt, dt)["num_positives"] == 1


def test_images_without_detections():
  gt, dt = example_a9()
  gt.append({"ID": "c", "gtboxes": [gt_box(10, 10, 20, 40), gt_box(30, 10, 20, 40)]})
  gt.append({"ID": "d", "gtboxes": []})  # no boxes at all: crashes upstream, handled here
  dt.append({"ID": "d", "width": 100, "height": 100, "dtboxes": [dt_box(1, 1, 10, 10, .3)]})
  dt[0]["dtboxes"] = []  # empty dtboxes = no detections
  r = crowdhuman.evaluate(gt, dt)
  assert r["num_images"] == 4 and r["num_positives"] == 6
  np.testing.assert_allclose(r["curve"]["fppi"][-1], 2 / 4)  # d5 and the box on "d" are FPs
  for key in ("AP", "MR", "Recall", "JI"):
    assert r[key] == pytest.approx(reference.crowdhuman(gt, dt)[key], rel=1e-12)


def test_no_line_counts_as_empty_detections():
  """Image "e" (100 x 100 from no record, the GT has no size) has no detections; P5 (80,10,40,40) lies in the
  ignore box I2 (70,0,30,60) only when clipped to the image (IoA 800/800 instead of 800/1600 = 0.5, not > 0.5).
  A record with "dtboxes": [] does not size the GT, exactly as no record: "e" keeps m = 1, n = 0 and counts
  in JI with ratio 0 either way, JI(0.0) = (2/3 + 2/3) / 3."""
  gt, dt = example_a9()
  gt.append({"ID": "e", "gtboxes": [gt_box(80, 10, 40, 40), gt_box(70, 0, 30, 60, "mask", 1)]})
  without = crowdhuman.evaluate(gt, dt)
  empty = crowdhuman.evaluate(gt, dt + [{"ID": "e", "width": 100, "height": 100, "dtboxes": []}])
  for key in ("AP", "MR", "Recall", "JI"):
    assert empty[key] == without[key], key
  np.testing.assert_array_equal(empty["JI_per_threshold"], without["JI_per_threshold"])
  assert without["JI"] == pytest.approx(2 * 2 / (3 + 1e-6) / 3, rel=1e-9)
  # A GT line with the size clips "e" in both cases: P5 is in I2, m = n = 0, "e" is not counted.
  gt[-1].update(width=100, height=100)
  assert crowdhuman.evaluate(gt, dt)["JI"] == pytest.approx(2 / (3 + 1e-6), rel=1e-9)


def test_no_line_counts_as_empty_detections_random():
  """Held-out random case (60 images, GT without sizes like the public files, 9 empty records): dropping the
  records with "dtboxes": [] changes none of the four metrics (it changed JI 0.17022 -> 0.16718 before)."""
  gt, dt = random_case(np.random.default_rng(1000), n_images=60, integer=False)
  for g in gt:
    g.pop("width", None), g.pop("height", None)
  without = [d for d in dt if d["dtboxes"]]
  assert len(dt) - len(without) == 9
  a, b = crowdhuman.evaluate(gt, dt), crowdhuman.evaluate(gt, without)
  for key in ("AP", "MR", "Recall", "JI"):
    assert a[key] == b[key], key
  assert a["JI"] == pytest.approx(reference.crowdhuman(gt, without)["JI"], rel=1e-12)


def test_max_weight_not_max_cardinality():
  # a-A 1.0, b-B 1.0 (weight 2.0) beat the 3-edge matching a-B, b-C, c-A (1.65).
  w = np.array([[1.0, 0.55, 0.0], [0.0, 1.0, 0.55], [0.55, 0.0, 0.0]])
  rows, cols = crowdhuman.max_weight_matching(w)
  assert sorted(zip(rows.tolist(), cols.tolist())) == [(0, 0), (1, 1)]
  # Edges need IoU > 0.5: a 0.5 entry is no edge.
  rows, cols = crowdhuman.max_weight_matching(np.array([[0.5, 0.0], [0.0, 0.7]]))
  assert list(zip(rows.tolist(), cols.tolist())) == [(1, 1)]


def _brute_force_matching_weight(w):
  n, k = w.shape
  best = 0.0
  for perm in itertools.permutations(range(k + n), n):  # column >= k means unmatched
    total = sum(w[i, j] for i, j in enumerate(perm) if j < k and w[i, j] > 0.5)
    best = max(best, total)
  return best


def test_max_weight_matching_brute_force():
  rng = np.random.default_rng(1)
  for _ in range(40):
    n, k = rng.integers(1, 5, size=2)
    w = np.where(rng.random((n, k)) < 0.5, rng.uniform(0.5, 1.0, (n, k)), rng.uniform(0, 0.5, (n, k)))
    rows, cols = crowdhuman.max_weight_matching(w)
    assert len(set(rows.tolist())) == len(rows) and len(set(cols.tolist())) == len(cols)
    assert (w[rows, cols] > 0.5).all()
    assert w[rows, cols].sum() == pytest.approx(_brute_force_matching_weight(w), rel=1e-12)


def random_case(rng, n_images=14, integer=True):
  """Crowds, ignore regions (mask tags and extra.ignore), boxes past the border, tied scores, images without a
  DT record, empty dtboxes, GT images without boxes or with a size; DT records shuffled."""
  gt, dt = [], []
  for i in range(n_images):
    width, height = int(rng.integers(60, 160)), int(rng.integers(60, 160))
    centres = rng.uniform([-10, -10], [width + 10, height + 10], size=(2, 2))
    boxes = []
    for _ in range(int(rng.integers(0, 9))):
      cx, cy = centres[rng.integers(2)] + rng.normal(0, 8, 2)
      w, h = rng.uniform(6, 30), rng.uniform(12, 70)
      box = [cx - w / 2, cy - h / 2, w, h]
      box = [int(round(v)) for v in box] if integer else box
      kind = rng.random()
      if kind < 0.12:
        boxes.append(gt_box(*box, tag="mask", ignore=1))
      elif kind < 0.18:
        boxes.append(gt_box(*box, ignore=1))
      else:
        boxes.append(gt_box(*box, ignore=0 if kind < 0.6 else None))
    ident = f"{1000 + i},{i:06x}"
    gt.append({"ID": ident, "gtboxes": boxes})
    if rng.random() < 0.15:  # a GT line with the image size (it wins over the DT record's)
      gt[-1].update(width=width, height=height)
    if rng.random() < 0.12:
      continue
    dets = []
    for _ in range(int(rng.integers(0, 25)) if rng.random() > 0.08 else 0):
      if boxes and rng.random() < 0.7:
        b = boxes[rng.integers(len(boxes))]["fbox"]
        box = [v + rng.normal(0, 2.5) for v in b]
        box[2:] = [max(v, 0.0) for v in box[2:]]   # a jittered width stays a width (>= 0)
      else:
        box = [rng.uniform(-20, width), rng.uniform(-20, height), rng.uniform(5, 40), rng.uniform(10, 80)]
      box = [int(round(v)) for v in box] if integer else [float(v) for v in box]
      score = float(rng.choice([0.9, 0.75, 0.5, 0.3, 0.1])) if rng.random() < 0.5 else float(rng.random())
      dets.append(dt_box(*box, score))
    dt.append({"ID": ident, "width": width, "height": height, "dtboxes": dets})
  order = rng.permutation(len(dt))
  return gt, [dt[k] for k in order]


@pytest.mark.parametrize("seed", range(12))
def test_random_against_reference(seed):
  rng = np.random.default_rng(seed)
  integer = seed % 2 == 0
  gt, dt = random_case(rng, integer=integer)
  fast = crowdhuman.evaluate(gt, dt, compute_ji=not integer)
  slow = reference.crowdhuman(gt, dt, compute_ji=not integer)
  for key in ("AP", "MR", "Recall"):
    assert fast[key] == pytest.approx(slow[key], rel=1e-12, nan_ok=True), key
  if not integer:  # float boxes: no equal-weight alternative matchings, so JI is unique
    np.testing.assert_allclose(fast["JI_per_threshold"], slow["JI_per_threshold"], rtol=1e-12)
    assert fast["JI"] == pytest.approx(slow["JI"], rel=1e-12)


def test_random_bucketing_does_not_change_numbers(monkeypatch):
  gt, dt = random_case(np.random.default_rng(99), n_images=40, integer=False)
  a = crowdhuman.evaluate(gt, dt)
  monkeypatch.setattr(crowdhuman, "_BUCKET_ELEMENTS", 1)  # one image per bucket
  b = crowdhuman.evaluate(gt, dt)
  for key in ("AP", "MR", "Recall", "JI"):
    assert a[key] == b[key]


def test_input_errors():
  gt, dt = example_a9()
  with pytest.raises(InputError, match="'zz' is not in the ground truth"):
    crowdhuman.evaluate(gt, dt + [{"ID": "zz", "width": 10, "height": 10, "dtboxes": []}])
  bad = [dict(dt[0]), dt[1]]
  bad[0]["dtboxes"] = [dt_box(1, 2, 3, 4, float("nan"))]
  with pytest.raises(InputError, match=r"DT record 0 \(ID 'a'\): dtboxes\[0\]\.score"):
    crowdhuman.evaluate(gt, bad)
  bad[0]["dtboxes"] = [{"box": [1, 2, 3], "score": 0.5}]
  with pytest.raises(InputError, match=r"dtboxes\[0\]\.box: expected \[x, y, w, h\]"):
    crowdhuman.evaluate(gt, bad)
  bad[0]["dtboxes"] = [{"box": [1, 2, 3, 4]}]
  with pytest.raises(InputError, match="needs 'box' and 'score'"):
    crowdhuman.evaluate(gt, bad)
  with pytest.raises(InputError, match="needs 'width' and 'height'"):
    crowdhuman.evaluate(gt, [{"ID": "a", "dtboxes": []}])
  with pytest.raises(InputError, match="a second detection record"):
    crowdhuman.evaluate(gt, [dt[0], dt[0]])
  with pytest.raises(InputError, match="duplicate ID"):
    crowdhuman.evaluate(gt + [gt[0]], dt)
  with pytest.raises(InputError, match=r"gtboxes\[0\] needs 'fbox' and 'tag'"):
    crowdhuman.evaluate([{"ID": "a", "gtboxes": [{"tag": "person"}]}], [])


def test_load_odgt_names_file_and_line(tmp_path):
  path = tmp_path / "dt.odgt"
  path.write_text('{"ID": "a", "width": 10, "height": 10, "dtboxes": []}\n\n{"ID": "b", "dtboxes": [}\n')
  with pytest.raises(InputError, match=f"{path}:3: not a JSON object"):
    crowdhuman.load_odgt(path)
  path.write_text('{"ID": "a", "gtboxes": []}\n\n{"ID": "b", "gtboxes": [{"tag": "person", "fbox": [1, 2, 3]}]}\n')
  with pytest.raises(InputError, match=rf"{path}:3 \(ID 'b'\): gtboxes\[0\]\.fbox"):
    crowdhuman.evaluate(crowdhuman.load_odgt(path), [])

