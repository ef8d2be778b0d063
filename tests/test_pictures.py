"""Pictures: the per-image matching against the CrowdHuman evaluator (its hand-worked two-image example, its
totals, the plain per-image re-statement) and the drawing, checked pixel by pixel on tiny known cases."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from lla_jax import pictures
from lla_jax.evaluation import crowdhuman, plots
from tests.reference import evaluation as reference
from tests.evaluation.test_crowdhuman import dt_box, example_a9, gt_box  # two images: a: d1 TP P1, d2 TP
# P2, d3 in the ignore region, d4 FP; b: d5 FP, d6 TP P3, d7 TP P4 (only because P4 is clipped)

BACKGROUND = 100   # uniform grey test images


# ------------------------------------------------------------------------------------------------ matching

def test_match_image_worked_example():
  gt, dt = example_a9()
  a = pictures.match_image(gt[0], dt[0])
  np.testing.assert_array_equal(a.tp, [True, True, False, False])
  np.testing.assert_array_equal(a.ignored, [False, False, True, False])
  np.testing.assert_array_equal(a.matched_gt, [0, 1, -1, -1])
  assert a.gt_boxes.shape == (2, 4) and a.ignore_boxes.shape == (1, 4)
  assert a.at(0.0)["counts"] == {"TP": 2, "FP": 1, "missed": 0, "ignored": 1}
  assert a.at(0.85)["counts"] == {"TP": 1, "FP": 0, "missed": 1, "ignored": 0}
  np.testing.assert_array_equal(a.at(0.85)["missed"], [False, True])
  b = pictures.match_image(gt[1], dt[1])
  np.testing.assert_array_equal(b.tp, [False, True, True])
  np.testing.assert_array_equal(b.matched_gt, [-1, 0, 1])
  np.testing.assert_array_equal(b.gt_boxes[1], [90, 10, 100, 50])    # clipped as evaluated
  assert b.at(0.45)["counts"] == {"TP": 1, "FP": 1, "missed": 1, "ignored": 0}
  np.testing.assert_array_equal(b.at(0.45)["found_at"], [0.5, 0.4])   # P4 would be found at 0.4
  assert b.at(0.5)["counts"]["TP"] == 1       # a score equal to the threshold is drawn
  # No detection record: every person is missed, the size comes from the caller.
  c = pictures.match_image(gt[1], None, width=100, height=100)
  assert c.at(0.0)["counts"] == {"TP": 0, "FP": 0, "missed": 2, "ignored": 0}
  with pytest.raises(ValueError, match="width and height"):
    pictures.match_image(gt[1])


def random_case(rng, n_images=12):
  """Crowded images with ties in the scores, ignore regions, boxes past the border and images without DT."""
  gt, dt = [], []
  for i in range(n_images):
    width, height = int(rng.integers(60, 160)), int(rng.integers(60, 160))
    boxes = []
    for _ in range(int(rng.integers(0, 9))):
      cx, cy = rng.uniform(-5, width + 5), rng.uniform(-5, height + 5)
      w, h = rng.uniform(6, 30), rng.uniform(12, 70)
      kind = rng.random()
      tag, ignore = ("mask", 1) if kind < 0.15 else (("person", 1) if kind < 0.2 else ("person", None))
      boxes.append(gt_box(float(cx - w / 2), float(cy - h / 2), float(w), float(h), tag, ignore))
    gt.append({"ID": f"im{i}", "gtboxes": boxes})
    if rng.random() < 0.1:
      continue
    dets = []
    for _ in range(int(rng.integers(0, 20))):
      if boxes and rng.random() < 0.7:
        box = [v + rng.normal(0, 2.5) for v in boxes[rng.integers(len(boxes))]["fbox"]]
      else:
        box = [rng.uniform(-20, width), rng.uniform(-20, height), rng.uniform(5, 40), rng.uniform(10, 80)]
      score = float(rng.choice([0.9, 0.75, 0.5, 0.3])) if rng.random() < 0.5 else round(float(rng.random()), 5)
      dets.append(dt_box(*[float(v) for v in box], score))
    dt.append({"ID": f"im{i}", "width": width, "height": height, "dtboxes": dets})
  return gt, dt


@pytest.mark.parametrize("seed", range(4))
def test_matching_agrees_with_the_evaluator(seed):
  """Over all images, the TP / FP / missed counts above any threshold are what the evaluator's curve says there;
  per image, the (score, TP) list equals the plain re-statement in tests/reference/evaluation.py."""
  gt, dt = random_case(np.random.default_rng(seed))
  result = crowdhuman.evaluate(gt, dt, compute_ji=False)
  dt_by_id = {r["ID"]: r for r in dt}
  sizes = {r["ID"]: (r["width"], r["height"]) for r in dt}
  matches = [pictures.match_image(g, dt_by_id.get(g["ID"]), *sizes.get(g["ID"], (100, 100))) for g in gt]
  assert sum(len(m.gt_boxes) for m in matches) == result["num_positives"]
  curve = result["curve"]
  for t in [1.1, 0.9, 0.75, 0.6, 0.5, 0.3, 0.0] + list(curve["score"][::3]):
    counts = [m.at(t)["counts"] for m in matches]
    k = int(np.searchsorted(-curve["score"], -t, side="right"))   # curve entries with score >= t
    tp = int(round((1 - curve["miss"][k - 1]) * result["num_positives"])) if k else 0
    fp = int(round(curve["fppi"][k - 1] * result["num_images"])) if k else 0
    assert sum(c["TP"] for c in counts) == tp
    assert sum(c["FP"] for c in counts) == fp
    assert sum(c["missed"] for c in counts) == result["num_positives"] - tp
  images = reference._crowdhuman_images(gt, dt)
  for m in matches:
    order = np.argsort(-m.scores, kind="stable")
    mine = [(float(m.scores[i]), int(m.tp[i])) for i in order if not m.ignored[i]]
    assert mine == reference._crowdhuman_match(images[m.image_id])
    taken = m.matched_gt[m.tp]
    assert len(set(taken.tolist())) == len(taken)      # a person is matched at most once


def test_operating_point_and_threshold():
  gt, dt = example_a9()
  result = crowdhuman.evaluate(gt, dt, compute_ji=False)   # fppi 0 .5 .5 1 1 1, scores .9 .85 .8 .6 .5 .4
  assert pictures.operating_point(result) == {"score": 0.85, "fppi": 0.5, "miss": 0.75}
  assert pictures.operating_point(result, fppi=1.0) == {"score": 0.6, "fppi": 1.0, "miss": 0.5}
  assert pictures.operating_point(result, fppi=5.0)["score"] == 0.4     # never reached: the last entry
  t = pictures.resolve_threshold(None, result, split="val")
  assert t.score == 0.85 and "FPPI 0.1 on val" in t.note and "miss rate 75.0%" in t.note
  t = pictures.resolve_threshold(0.7, result)
  assert t.score == 0.7 and "draw_score_thresh" in t.note and "FPPI 0.50" in t.note
  empty = crowdhuman.evaluate(gt, [], compute_ji=False)
  assert pictures.operating_point(empty) is None
  assert pictures.resolve_threshold(None, empty).score == pictures.DEFAULT_SCORE_THRESH
  assert pictures.resolve_threshold(None, None).score == pictures.DEFAULT_SCORE_THRESH


def test_predict_threshold(tmp_path):
  assert pictures.predict_threshold(0.6, str(tmp_path)).score == 0.6
  default = pictures.predict_threshold(None, str(tmp_path))
  assert default.score == pictures.DEFAULT_SCORE_THRESH and "no evaluation" in default.note
  with open(tmp_path / "eval_metrics.json", "w") as f:
    json.dump({"MR": 0.5, "pictures": {"threshold": 0.43, "threshold_note": "score >= 0.43: operating point"}}, f)
  t = pictures.predict_threshold(None, str(tmp_path))
  assert t.score == 0.43 and t.note.startswith("score >= 0.43: operating point")


# ------------------------------------------------------------------------------------------------ drawing

def tiny_case():
  """A 50 x 40 image: P1 found (TP 0.9), P2 missed, an FP (0.8), an ignore region holding a detection (0.7),
  and an FP below the threshold (0.2)."""
  gt = {"ID": "tiny", "gtboxes": [gt_box(2, 10, 10, 25), gt_box(16, 10, 10, 25), gt_box(40, 5, 9, 30, "mask", 1)]}
  dt = {"ID": "tiny", "width": 50, "height": 40, "dtboxes": [
      dt_box(2, 10, 10, 25, 0.9), dt_box(30, 10, 8, 20, 0.8), dt_box(41, 10, 6, 20, 0.7), dt_box(30, 32, 5, 6, 0.2)]}
  return gt, dt


def pixel(picture, x, y):
  return tuple(np.asarray(picture)[int(y), int(x)])


def test_draw_match_colours_at_known_places():
  gt, dt = tiny_case()
  match = pictures.match_image(gt, dt)
  assert match.at(0.5)["counts"] == {"TP": 1, "FP": 1, "missed": 1, "ignored": 1}
  image = np.full((40, 50, 3), BACKGROUND, np.uint8)
  picture = pictures.draw_match(image, match, pictures.Threshold(0.5, "score >= 0.50: test"))
  f = pictures.upscale_factor(40, 50)
  assert f == 16 and picture.width == 50 * f and picture.height > 40 * f     # upscaled, caption band below
  line = max(2, round(800 / 320))
  mid = (10 + 35) / 2 * f
  assert pixel(picture, 2 * f + line // 2, mid) == pictures.TP_COLOUR             # P1's detection: TP
  assert pixel(picture, 12 * f - 1 - line // 2, mid) == pictures.TP_COLOUR
  assert pixel(picture, 2 * f - 1, mid) == pictures.BLACK                         # halo outside the line
  assert pixel(picture, 30 * f + line // 2, 20 * f) == pictures.FP_COLOUR         # FP
  assert pixel(picture, 16 * f + line // 2, 10 * f + 2 * line) == pictures.MISSED_COLOUR   # a dash of P2
  assert pixel(picture, 16 * f + line // 2, 10 * f + 5 * line) != pictures.MISSED_COLOUR   # the gap after it
  assert pixel(picture, 41 * f, 20 * f) == pictures.IGNORED_DT_COLOUR             # thin line, in the region
  shade = pictures.IGNORE_SHADE[3] / 255
  expected = round(BACKGROUND * (1 - shade) + 255 * shade)
  assert all(abs(v - expected) <= 1 for v in pixel(picture, 45 * f, 32 * f))     # ignore region washed out
  assert pixel(picture, 32 * f, 35 * f) == (BACKGROUND,) * 3                     # the 0.2 FP is not drawn
  assert pixel(picture, 14 * f, 38 * f) == (BACKGROUND,) * 3
  # Score tags above the boxes: box-coloured with ink in them.
  tag = np.asarray(picture)[10 * f - 12:10 * f - 2, 2 * f:2 * f + 30]
  assert (tag == pictures.TP_COLOUR).all(axis=2).any() and (tag == pictures.WHITE).all(axis=2).any()
  # Caption band: dark background with text.
  band = np.asarray(picture)[40 * f:]
  assert (band == pictures.CAPTION_BACKGROUND).all(axis=2).mean() > 0.5
  assert (band.max(axis=2) > 200).sum() > 500


def test_draw_match_scales_a_smaller_image_to_the_original_boxes():
  """The picture of a half-size image (as evaluate draws the resized input) puts the boxes where the
  full-size one does: the factor doubles and the boxes are scaled by image size / record size."""
  gt, dt = tiny_case()
  match = pictures.match_image(gt, dt)
  t = pictures.Threshold(0.5, "score >= 0.50")
  full = pictures.draw_match(np.full((40, 50, 3), BACKGROUND, np.uint8), match, t)
  half = pictures.draw_match(np.full((20, 25, 3), BACKGROUND, np.uint8), match, t)
  np.testing.assert_array_equal(np.asarray(full), np.asarray(half))


def test_upscale_factor():
  assert pictures.upscale_factor(256, 320) == 3
  assert pictures.upscale_factor(800, 600) == 1
  assert pictures.upscale_factor(1024, 2048) == 1
  assert pictures.upscale_factor(40, 50, min_long_side=100) == 2


def test_draw_predictions():
  image = np.full((64, 80, 3), BACKGROUND, np.uint8)
  t = pictures.Threshold(0.3, "score >= 0.30")
  picture = pictures.draw_predictions(image, [[10, 20, 30, 60], [50, 20, 70, 60]], [0.8, 0.1], t, "street")
  f = pictures.upscale_factor(64, 80)
  assert f == 10 and picture.width == 800
  assert pixel(picture, 10 * f + 1, 40 * f) == pictures.PREDICTION_COLOUR
  assert pixel(picture, 50 * f + 1, 40 * f) == (BACKGROUND,) * 3
  assert (np.asarray(picture)[64 * f:].max(axis=2) > 200).sum() > 200


def test_draw_assignment():
  image = np.full((64, 80, 3), BACKGROUND, np.uint8)
  gt_boxes = np.array([[10, 10, 30, 60], [45, 5, 75, 40], [0, 0, 0, 0]], np.float32)
  points = np.array([[20, 30], [60, 20], [70, 50], [4, 4]], np.float32)
  picture = pictures.draw_assignment(image, points, np.array([8, 16, 8, 8]), np.array([0, 1, -1, -1]), gt_boxes,
                                     np.array([0, -1, 0]), np.array([True, True, False]), title="LLA")
  f = pictures.upscale_factor(64, 80)
  assert picture.width == 80 * f and picture.height > 64 * f
  assert pixel(picture, 20 * f, 30 * f) == pictures.PERSON_COLOURS[0]       # dot in its person's colour
  assert pixel(picture, 60 * f, 20 * f) == pictures.GREY                     # a point on the ignore region
  assert pixel(picture, 10 * f, 40 * f) == pictures.PERSON_COLOURS[0]        # the person's box (1 px)
  assert pixel(picture, 70 * f, 50 * f) == (BACKGROUND,) * 3                 # a negative point: nothing


# ------------------------------------------------------------------------------------------------ sheets

def test_contact_sheet_grid(tmp_path):
  tiles = [Image.new("RGB", (120, 90), (10 * k, 0, 0)) for k in range(8)]
  curve = os.path.join(tmp_path, "curve.png")
  plots.plot_mr_fppi({"x": (np.array([0.01, 0.1, 1.0]), np.array([0.6, 0.4, 0.2]), 0.4)}, curve)
  sheet = pictures.contact_sheet(tiles, curve, note="Pictures: score >= 0.40")
  assert sheet.size == (3 * 120 + 2 * 8, 3 * 90 + 2 * 8)     # 8 pictures + the curve: 3 x 3
  a = np.asarray(sheet)
  assert (a[:90, :120] == (0, 0, 0)).all() and (a[98:188, 128:248] == (40, 0, 0)).all()   # tiles 0 and 4
  curve_tile = a[2 * 98:, 2 * 128:]
  assert (curve_tile != 255).any()                           # the curve was drawn into the last cell
  titled = pictures.contact_sheet(tiles, curve, title="step 5")
  assert titled.width == sheet.width and titled.height > sheet.height
  assert pictures.contact_sheet(tiles[:2]).size == (2 * 120 + 8, 90)
  with pytest.raises(ValueError):
    pictures.contact_sheet([])


def test_score_text():
  assert [pictures.score_text(v) for v in (0.856, 0.5, 0.0123, 0.00123, 0.0)] == ["0.86", "0.50", "0.01", "0.0012",
                                                                                    "0.00"]


def test_sheet_title():
  m = {"MR": 0.5888, "AP": 0.7745, "Recall": None, "JI": float("nan"), "num_images": 100}
  expected = "qs val, step 5: MR^-2 58.88%  AP50 77.45% | first 8 of 100 images"
  assert pictures.sheet_title("qs val, step 5", m, 8) == expected
  assert pictures.sheet_title("x", {}, 2) == "x | 2 images"


def test_evaluation_pictures(tmp_path):
  gt, dt = example_a9()
  result = crowdhuman.evaluate(gt, dt, compute_ji=False)
  images = {"a": np.full((50, 50, 3), BACKGROUND, np.uint8), "b": np.full((100, 100, 3), BACKGROUND, np.uint8)}
  curve = os.path.join(tmp_path, "mr_fppi_step7.png")
  plots.plot_mr_fppi({"step 7": (result["curve"]["fppi"], result["curve"]["miss"], result["MR"])}, curve)
  out = pictures.evaluation_pictures(images, gt, dt, result, str(tmp_path / "pictures"), 7, curve=curve,
                                     title="test, step 7", split="val")
  assert out["threshold"] == 0.85 and "FPPI 0.1 on val" in out["threshold_note"]
  assert [os.path.basename(p) for p in out["pictures"]] == ["a_step7.png", "b_step7.png"]
  assert os.path.basename(out["sheet"]) == "sheet_step7.png"
  with Image.open(out["sheet"]) as im:
    assert im.size == (out["sheet_image"].shape[1], out["sheet_image"].shape[0])
  assert out["sheet_image"].dtype == np.uint8 and out["sheet_image"].shape[2] == 3
  # Image b: P3 and P4 are missed at 0.85 (dashed), each tagged with the score that finds it lower down.
  with Image.open(out["pictures"][1]) as im:
    f = pictures.upscale_factor(100, 100)
    assert pixel(im, 10 * f + 1, 30 * f) == pictures.MISSED_COLOUR
    tag = np.asarray(im)[10 * f - 12:10 * f - 2, 10 * f:10 * f + 30]
    assert (tag == pictures.MISSED_COLOUR).all(axis=2).any() and (tag == pictures.BLACK).all(axis=2).any()
  # Image a at half resolution: the TP d1 (10, 10, 20, 40) lands at 16 x its original pixels.
  with Image.open(out["pictures"][0]) as im:
    assert pixel(im, 10 * 8 + 1, 30 * 8) == pictures.TP_COLOUR
  # Without CrowdHuman GT: detections only.
  images["c"] = np.full((30, 30, 3), BACKGROUND, np.uint8)     # no detection record
  out = pictures.evaluation_pictures(images, None, dt, None, str(tmp_path / "plain"), 7, draw_score_thresh=0.5)
  assert out["threshold"] == 0.5 and len(out["pictures"]) == 3
  with Image.open(out["pictures"][0]) as im:   # a's d1 (0.9) at 16 x; d4 (0.6, FP elsewhere) drawn too
    assert pixel(im, 10 * 8 + 1, 30 * 8) == pictures.PREDICTION_COLOUR
    assert pixel(im, 80 * 8 + 1, 15 * 8) == pictures.PREDICTION_COLOUR


def test_save_png_palette_when_too_big(tmp_path):
  rng = np.random.default_rng(0)
  image = Image.fromarray(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8))
  path = pictures.save_png(image, str(tmp_path / "x.png"), max_bytes=50_000)
  with Image.open(path) as im:
    assert im.mode == "P" and im.size == (200, 200)
  # The drawing colours survive the palette exactly.
  gt, dt = tiny_case()
  picture = pictures.draw_match(np.asarray(image.resize((50, 40))), pictures.match_image(gt, dt),
                                pictures.Threshold(0.5, "score >= 0.50"))
  path = pictures.save_png(picture, str(tmp_path / "y.png"), max_bytes=1000)
  with Image.open(path) as im:
    assert im.mode == "P"
    f = pictures.upscale_factor(40, 50)
    assert pixel(im.convert("RGB"), 30 * f + 1, 20 * f) == pictures.FP_COLOUR
    assert pixel(im.convert("RGB"), 2 * f + 1, 20 * f) == pictures.TP_COLOUR
