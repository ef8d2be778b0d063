"""Caltech evaluator: the spec's worked example E.10, the dbEval quirks one by one, and random cases against the
plain re-statement in tests/reference/caltech_reference.py (all 19 setups, both bounds, both detection layouts)."""
import math
import os

import numpy as np
import pytest

from lla_jax.evaluation import InputError, caltech, caltech_files
from tests.evaluation import caltech_fixtures as fx
from tests.reference import caltech_reference as reference


@pytest.fixture
def example(tmp_path):
  return fx.write_gt(tmp_path / "anno"), tmp_path


def same(a, b):
  return (math.isnan(a) and math.isnan(b)) or a == b


def check_against_reference(anno, dt, frames, bounds=caltech.DEFAULT_BOUNDS):
  fast = caltech.evaluate_dirs(anno, dt, frames, bounds=bounds)
  slow = reference.evaluate(anno, dt, frames, bounds=bounds)
  assert list(fast) == list(caltech.SETUPS) and len(fast) == 19
  for name in caltech.SETUPS:
    assert same(fast[name]["MR"], slow[name]["MR"]), (name, fast[name]["MR"], slow[name]["MR"])
    np.testing.assert_array_equal(fast[name]["recall_at"], slow[name]["recall_at"], err_msg=name)
  return fast


@pytest.mark.parametrize("layout", ["video", "frame"])
def test_example_e10(example, layout):
  anno, tmp = example
  dt = fx.write_dt(tmp / "dt", layout=layout)
  r = check_against_reference(anno, dt, fx.FRAMES)
  for name, mr in fx.EXPECTED.items():
    assert r[name]["MR"] == mr, name
  assert r["Reasonable"]["MR"] == 0.5 ** (11 / 9)
  assert f"{100 * r['Reasonable']['MR']:f}" == "42.862199"
  np.testing.assert_array_equal(r["Reasonable"]["fppi"], [0, 0, .25, .5, .5])
  np.testing.assert_array_equal(1 - r["Reasonable"]["miss"], [.25, .5, .5, .5, .75])
  np.testing.assert_array_equal(r["Reasonable"]["recall_at"], [.5] * 7 + [.75] * 2)
  assert r["Reasonable"]["num_positives"] == 4 and r["All"]["num_positives"] == 5
  np.testing.assert_array_equal(r["All"]["fppi"], [.25] * 4 + [.5, .75, .75])
  np.testing.assert_array_equal(r["All"]["recall_at"], [0] * 6 + [.6, .6, .8])
  assert r["Occ=partial"]["MR"] == r["Reasonable"]["MR"]  # unoccluded people have v = 1
  for name in ("Scale=large", "Scale=near", "Scale=medium", "Scale=far", "Occ=none", "Ar=all"):
    assert math.isnan(r[name]["MR"]), name


def test_e10_standardised_boxes():
  gt = caltech_files.GroundTruth.from_objects([{
      "label": ["person", "people", "person"], "bb": [[50, 200, 25, 62], [400, 200, 60, 80], [200, 150, 30, 80]],
      "occ": [0, 0, 0], "bbv": np.zeros((3, 4)), "ign": [0, 0, 0], "ang": [0, 0, 0]}])
  np.testing.assert_allclose(caltech.standardised(gt.bb), [[49.79, 200, 25.42, 62], [413.6, 200, 32.8, 80],
                                                           [198.6, 150, 32.8, 80]], rtol=1e-12)


def gt_lines(*rows):
  return {29: list(rows)}


def mr(tmp_path, gt, dt, setup="Reasonable", bounds=caltech.DEFAULT_BOUNDS, frames=((6, 0, 29),), layout="video"):
  anno = fx.write_gt(tmp_path / "anno", gt)
  det = fx.write_dt(tmp_path / "dt", dt, layout=layout)
  fast = caltech.evaluate_dirs(anno, det, list(frames), [setup], bounds)[setup]
  slow = reference.evaluate(anno, det, list(frames), [setup], bounds)[setup]
  assert same(fast["MR"], slow["MR"])
  return fast


def test_no_kept_detection_gives_one_and_no_positive_gives_nan(tmp_path):
  assert mr(tmp_path, gt_lines(), {29: []})["MR"] == 1.0  # even without positives (compRoc returns ref 0)
  assert math.isnan(mr(tmp_path, gt_lines(), {29: [(10, 10, 40, 100, .5)]})["MR"])


def test_bounds_are_inclusive_and_switchable(tmp_path):
  touching = gt_lines("person 5 5 41 100 0 0 0 0 0 0 0", "person 594 375 41 100 0 0 0 0 0 0 0")
  r = mr(tmp_path, touching, {29: []})
  assert r["num_positives"] == 2
  outside = gt_lines("person 4 5 41 100 0 0 0 0 0 0 0", "person 595 376 41 100 0 0 0 0 0 0 0")
  assert mr(tmp_path, outside, {29: []})["num_positives"] == 0
  assert mr(tmp_path, outside, {29: []}, bounds=caltech.NO_BOUNDS)["num_positives"] == 2


def test_height_inclusive_for_gt_half_open_for_detections(tmp_path):
  gt = gt_lines("person 100 100 20 50 0 0 0 0 0 0 0", "person 300 100 20 49 0 0 0 0 0 0 0")
  assert mr(tmp_path, gt, {29: []})["num_positives"] == 1  # h = 50 is Reasonable, 49 is not
  # Detection heights: Scale=far keeps 16 <= h < 37.5 (every GT ignored there, so a kept detection is an FP).
  assert math.isnan(mr(tmp_path, gt_lines(), {29: [(0, 0, 10, 16, .5)]}, "Scale=far")["MR"])
  assert mr(tmp_path, gt_lines(), {29: [(0, 0, 10, 37.5, .5)]}, "Scale=far")["MR"] == 1.0
  assert mr(tmp_path, gt_lines(), {29: [(0, 0, 10, 15.99, .5)]}, "Scale=far")["MR"] == 1.0


def test_visibility_quirks(tmp_path):
  # bbv == bb means v = 0 (ignored in Reasonable and Occ=heavy); a shifted bbv of equal area gives v = 1.
  same_box = gt_lines("person 100 100 41 100 1 100 100 41 100 0 0")
  assert mr(tmp_path, same_box, {29: []})["num_positives"] == 0
  assert mr(tmp_path, same_box, {29: []}, "Occ=heavy")["num_positives"] == 0
  shifted = gt_lines("person 100 100 41 100 1 101 100 41 100 0 0")
  assert mr(tmp_path, shifted, {29: []})["num_positives"] == 1
  assert mr(tmp_path, gt_lines("person 100 100 41 100 1 0 0 0 0 0 0"), {29: []})["num_positives"] == 1
  assert mr(tmp_path, gt_lines("person 100 100 40 100 1 100 100 40 65 0 0"), {29: []})["num_positives"] == 1
  assert mr(tmp_path, gt_lines("person 100 100 40 100 1 100 100 40 64 0 0"), {29: []})["num_positives"] == 0


def test_labels(tmp_path):
  gt = gt_lines("person? 100 100 41 100 0 0 0 0 0 0 0", "people 200 100 41 100 0 0 0 0 0 0 0",
                "person-fa 300 100 41 100 0 0 0 0 0 0 0", "ignore 400 100 41 100 0 0 0 0 0 0 0",
                "person 500 100 41 100 0 0 0 0 0 1 0")
  assert mr(tmp_path, gt, {29: []})["num_positives"] == 2


def test_iou_exactly_at_threshold_and_ties_to_later_gt(tmp_path):
  # Two identical GT; detection [x y 2w h] has IoU exactly 0.5 with both: matched (>=), to the later one, so
  # the second detection (identical, lower score) takes the earlier GT.
  gt = gt_lines("person 100 100 41 100 0 0 0 0 0 0 0", "person 100 100 41 100 0 0 0 0 0 0 0")
  r = mr(tmp_path, gt, {29: [(100, 100, 82, 100, .9), (100, 100, 82, 100, .8)]})
  assert r["MR"] == 0.0 and r["num_positives"] == 2
  r = mr(tmp_path, gt_lines("person 100 100 41 100 0 0 0 0 0 0 0"), {29: [(100, 100, 82.01, 100, .9)]})
  assert r["MR"] == 1.0  # IoU just below 0.5: an FP, no TP
  # IoA exactly 0.5 with an ignore region: ignored.
  r = mr(tmp_path, gt_lines("ignore 100 100 20 100 0 0 0 0 0 1 0"), {29: [(100, 100, 40, 100, .9)]})
  assert r["MR"] == 1.0 and len(r["fppi"]) == 0


def test_per_frame_rounding_changes_the_result(tmp_path):
  # IoU 0.5 needs width 82; 82.000004 rounds to 82 in a per-frame file (5 significant digits), not per video.
  gt = gt_lines("person 100 100 41 100 0 0 0 0 0 0 0")
  det = {29: [(100, 100, 82.000004, 100, .9)]}
  assert mr(tmp_path / "v", gt, det, layout="video")["MR"] == 1.0
  assert mr(tmp_path / "f", gt, det, layout="frame")["MR"] == 0.0


def test_score_ties_follow_evaluation_order(tmp_path):
  frames = [(6, 0, 29), (6, 0, 59)]
  gt = {29: ["person 100 100 41 100 0 0 0 0 0 0 0"], 59: ["person 100 100 41 100 0 0 0 0 0 0 0"]}
  det = {29: [(300, 100, 41, 100, .5)], 59: [(100, 100, 41, 100, .5)]}
  r = mr(tmp_path, gt, det, frames=frames)
  np.testing.assert_array_equal(r["fppi"], [.5, .5])  # image 29's FP comes first
  np.testing.assert_array_equal(1 - r["miss"], [0, .5])


def test_round_significant_matches_printf():
  rng = np.random.default_rng(0)
  v = np.concatenate([rng.uniform(-700, 700, 20000), rng.random(5000), rng.integers(0, 10 ** 6, 5000) / 64,
                      10.0 ** rng.integers(-30, 30, 200), [0.0, 99999.5, 999995, 0.87654321, 123.456, 1.03125]])
  np.testing.assert_array_equal(caltech_files.round_significant(v), [float(f"{x:.5g}") for x in v])
  assert caltech_files.round_significant([0.87654321, 123.456]).tolist() == [0.87654, 123.46]


def random_case(rng, folder, n_frames=12, layout="video"):
  frames = [(6 + k // 6, k % 3, 29 + 30 * (k % 6)) for k in range(n_frames)]
  gt, dt = {}, {}
  labels = ["person"] * 6 + ["person?", "people", "ignore", "person-fa"]
  for key in frames:
    rows, dets = [], []
    for _ in range(int(rng.integers(0, 7))):
      h = int(rng.choice([20, 30, 49, 50, 51, 75, 80, 100, 101, 150, int(rng.integers(10, 200))]))
      w = int(rng.choice([round(0.41 * h), int(rng.integers(5, 80))]))
      x = int(rng.choice([5, 635 - w, 4, 636 - w, int(rng.integers(-20, 640))]))
      y = int(rng.choice([5, 475 - h, int(rng.integers(-20, 480))]))
      occ = int(rng.random() < 0.4)
      kind = rng.integers(0, 4)
      bbv = ([0, 0, 0, 0] if kind == 0 else [x, y, w, h] if kind == 1
             else [x, y, w, int(rng.choice([round(0.65 * h), round(0.2 * h), int(rng.integers(0, h + 1))]))])
      ang = int(rng.choice([0] * 20 + [90, 45, -30]))
      rows.append(f"{rng.choice(labels)} {x} {y} {w} {h} {occ} {' '.join(map(str, bbv))} "
                  f"{int(rng.random() < 0.1)} {ang}")
      sw = 0.41 * h
      for _ in range(int(rng.integers(0, 3))):
        jitter = rng.choice([0.0, 1.0, rng.normal(0, 0.15)])
        bw = rng.choice([sw * 2, sw / 2, w, sw * (1 + jitter)])
        dets.append((x + (w - sw) / 2 + rng.normal(0, 3) * jitter, y + rng.normal(0, 3) * jitter, bw,
                     h * (1 + 0.1 * jitter), round(float(rng.random()), int(rng.integers(1, 8)))))
    for _ in range(int(rng.integers(0, 5))):
      h = float(rng.choice([16, 40, 37.5, 64, 93.75, 100, rng.uniform(10, 200)]))
      dets.append((rng.uniform(0, 600), rng.uniform(0, 400), 0.41 * h, h, float(rng.choice([.3, .5, rng.random()]))))
    gt[key] = rows
    dt[key] = [tuple(float(v) for v in d) for d in rng.permutation(np.array(dets).reshape(-1, 5))]
  anno = os.path.join(folder, "anno")
  os.makedirs(anno, exist_ok=True)
  for (s, v, f), rows in gt.items():
    fx.write_gt(anno, {f: rows}, s, v)
  det = os.path.join(folder, "dt")
  for s, v in sorted({(s, v) for s, v, _ in frames}):
    fx.write_dt(det, {f: dt[(s2, v2, f)] for s2, v2, f in frames if (s2, v2) == (s, v)}, layout, s, v)
  return anno, det, frames


@pytest.mark.parametrize("seed", range(12))
def test_random_cases_match_reference(tmp_path, seed):
  rng = np.random.default_rng(seed)
  layout = "frame" if seed % 3 == 0 else "video"
  anno, det, frames = random_case(rng, str(tmp_path), layout=layout)
  check_against_reference(anno, det, frames)
  check_against_reference(anno, det, frames, bounds=caltech.NO_BOUNDS)


def test_bad_input_names_file_and_line(tmp_path):
  anno = fx.write_gt(tmp_path / "anno", {29: ["person 1 2 3 4 0 0 0 0 0 0"]})
  det = fx.write_dt(tmp_path / "dt", {29: []})
  with pytest.raises(InputError, match=r"set06_V000_I00029.txt:2: expected 12 fields"):
    caltech.evaluate_dirs(anno, det, [(6, 0, 29)])
  fx.write_gt(tmp_path / "anno", {29: ["person 1 2 3.5 4 0 0 0 0 0 0 0"]})
  with pytest.raises(InputError, match=r"I00029.txt:2: field 'w' must be an integer"):
    caltech.evaluate_dirs(anno, det, [(6, 0, 29)])
  fx.write_gt(tmp_path / "anno", {29: []})
  with pytest.raises(InputError, match=r"set06_V000_I00059.txt: no annotation file"):
    caltech.evaluate_dirs(anno, det, [(6, 0, 29), (6, 0, 59)])
  (tmp_path / "dt" / "set06" / "V000.txt").write_text("30 1 2 3 4 0.5\n30 1 2 3 0.5\n")
  with pytest.raises(InputError, match=r"V000.txt:2: expected 6 numbers"):
    caltech.evaluate_dirs(anno, det, [(6, 0, 29)])
  (tmp_path / "dt" / "set06" / "V000.txt").write_text("30 1 2 3 4 nan\n")
  with pytest.raises(InputError, match=r"V000.txt:1: 'nan' is not a finite number"):
    caltech.evaluate_dirs(anno, det, [(6, 0, 29)])
  (tmp_path / "dt" / "set06" / "V000.txt").write_text("")
  fx.write_gt(tmp_path / "anno", {29: []}, 7, 1)
  with pytest.raises(InputError, match=r"set07/V001.txt: no detections"):
    caltech.evaluate_dirs(anno, det, [(6, 0, 29), (7, 1, 29)])
  with pytest.raises(InputError, match="unknown setup"):
    caltech.evaluate_dirs(anno, det, [(6, 0, 29)], ["Resonable"])


def test_standard_test_list():
  frames = caltech_files.load_frames()
  assert len(frames) == caltech_files.NUM_TEST_FRAMES == 4024
  assert frames[0] == (6, 0, 29) and frames[-1] == (10, 11, 29 + 30 * 56)
  assert frames == sorted(frames)
  per_set = {s: sum(1 for f in frames if f[0] == s) for s in range(6, 11)}
  assert per_set == {6: 1155, 7: 746, 8: 657, 9: 738, 10: 728}
  assert all(f % 30 == 29 for _, _, f in frames)
  assert caltech_files.parse_frame_name("set06_V000_29.png") == (6, 0, 29)


def test_larger_random_case_matches_reference(tmp_path):
  # 90 frames over 15 videos: ties across images, several padded buckets, many candidate pairs per image.
  rng = np.random.default_rng(100)
  anno, det, frames = random_case(rng, str(tmp_path), n_frames=90)
  check_against_reference(anno, det, frames)
