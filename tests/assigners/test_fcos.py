"""FCOS assigner (Tian et al. 2019) against the numpy reference and a hand-worked example."""
import ml_collections
import numpy as np
import pytest

from lla_jax.assigners import fcos
from lla_jax.priors import fpn_points
from tests.assigners import as_dict, assert_same, run, run_batch
from tests.reference import assigners as ref

H, W = 256, 320
POINTS = fpn_points(H, W)  # 1706 points; P7 has only 6


def reference(gt_boxes, gt_classes, gt_valid, points=POINTS, **kw):
  return ref.fcos_np(points.xy, points.strides, gt_boxes, gt_classes, gt_valid, **kw)


def test_worked_example():
  """GT (0, 0, 100, 200): P3 point (40, 96) is in the centre box but m = 104 > 64; P4 point (48, 96) is
  positive with centerness 0.923077 (worked by hand)."""
  pts = fpn_points(256, 256)
  t = run(fcos.assign, pts, np.array([[0, 0, 100, 200]], np.float32), np.array([0]), np.array([True]))
  at = lambda x, y, s: int(np.flatnonzero((pts.xy[:, 0] == x) & (pts.xy[:, 1] == y) & (pts.strides == s))[0])
  p3, p4 = at(40, 96, 8), at(48, 96, 16)
  assert int(t.matched_gt[p3]) == -1 and not bool(t.fg[p3]) and bool(t.valid[p3])
  assert int(t.matched_gt[p4]) == 0 and bool(t.fg[p4]) and bool(t.valid[p4])
  np.testing.assert_allclose(np.asarray(t.box_targets[p4]), [48, 96, 52, 104])
  np.testing.assert_allclose(float(t.aux_target[p4]), 0.923077, atol=1e-6)
  # P3 needs m <= 64, so no P3 point of this 100 x 200 box is positive.
  assert not np.any(np.asarray(t.fg)[pts.strides == 8])
  assert_same(t, reference(np.array([[0, 0, 100, 200]], np.float32), np.array([0]), np.array([True]), points=pts))


@pytest.mark.parametrize("seed", range(6))
def test_crowds_match_reference(seed):
  """Crowded boxes, tiny ones, boxes leaving the image, ignore regions, zero-width rows, garbage padding."""
  rng = np.random.default_rng(seed)
  case = ref.crowd_case(rng, H, W, num_boxes=int(rng.integers(20, 45)), max_boxes=48, zero_frac=0.05,
                        padding="garbage", num_clusters=3)
  expected = reference(*case)
  assert_same(run(fcos.assign, POINTS, *case, seed=seed), expected, f"seed {seed}")
  assert expected["contested"] > 0 and expected["num_fg"] > 0  # the case exercises the smallest-area rule


def test_ties_smallest_area_lowest_index():
  """Equal areas: the lowest GT index wins, whether it is an ignore box or not."""
  dup = [40, 40, 80, 120]
  boxes = np.array([[0, 0, 0, 0], dup, [50, 30, 90, 110], dup, [44, 60, 124, 100]], np.float32)  # all 40 x 80 / 80 x 40
  for classes in ([0, 0, 0, 0, 0], [0, -1, 0, 0, 0], [0, 0, -1, 0, -1]):
    classes = np.array(classes)
    valid = np.array([False, True, True, True, True])
    t = run(fcos.assign, POINTS, boxes, classes, valid)
    expected = reference(boxes, classes, valid)
    assert_same(t, expected, f"classes {classes}")
    matched = np.asarray(t.matched_gt)
    assert expected["contested"] > 0 and np.any(matched == 1) and not np.any(matched == 3)  # 3 duplicates 1
    assert not np.any(matched == 0)  # padding row
    assert np.array_equal(np.asarray(t.valid), ~np.isin(matched, np.flatnonzero(classes == -1)))


def test_padded_rows_do_not_matter():
  """Garbage padding rows give the same targets as the unpadded GT list."""
  rng = np.random.default_rng(7)
  boxes, classes, valid = ref.crowd_case(rng, H, W, 20, 32, padding="garbage")
  full = run(fcos.assign, POINTS, boxes, classes, valid)
  short = run(fcos.assign, POINTS, boxes[:20], classes[:20], valid[:20])
  assert_same(full, as_dict(short))


def test_zero_gt_images():
  for m in (0, 5):
    t = run(fcos.assign, POINTS, np.zeros((m, 4), np.float32), np.zeros(m, np.int32), np.zeros(m, bool))
    assert np.all(np.asarray(t.matched_gt) == -1) and not np.any(t.fg) and np.all(t.valid)
    assert float(t.num_fg) == 0 and not np.any(t.box_targets) and not np.any(t.aux_target)


def test_ignore_points_are_invalid_not_fg_and_not_counted():
  boxes = np.array([[10, 10, 60, 130], [150, 20, 200, 140]], np.float32)
  t = run(fcos.assign, POINTS, boxes, np.array([-1, 0]), np.array([True, True]))
  m = np.asarray(t.matched_gt)
  assert np.any(m == 0) and np.any(m == 1)
  assert np.array_equal(np.asarray(t.valid), m != 0) and np.array_equal(np.asarray(t.fg), m == 1)
  assert float(t.num_fg) == np.sum(m == 1)
  assert not np.any(np.asarray(t.box_targets)[m == 0])


def test_jit_vmap_batch_matches_per_image():
  rng = np.random.default_rng(11)
  cases = [ref.crowd_case(rng, H, W, n, 40, zero_frac=0.05) for n in (40, 25, 3, 0)]
  batch = [np.stack(x) for x in zip(*cases)]
  out = run_batch(fcos.assign, POINTS, *batch)
  for i, case in enumerate(cases):
    assert_same(as_dict(out, i), reference(*case), f"image {i}")
    assert_same(as_dict(out, i), as_dict(run(fcos.assign, POINTS, *case, jit=False)), f"image {i} eager")
  assert float(out.num_fg[3]) == 0


@pytest.mark.parametrize("cfg", [
    dict(center_sampling_radius=2.5),
    ml_collections.ConfigDict(dict(center_sampling_radius=0.0, name="fcos", topk=10)),
    dict(size_ranges=((-1, 32), (32, 96), (96, 160), (160, 300), (300, 1e9))),
])
def test_config_overrides(cfg):
  rng = np.random.default_rng(3)
  case = ref.crowd_case(rng, H, W, 30, 32)
  ranges = cfg.get("size_ranges", None)
  kw = dict(radius=cfg.get("center_sampling_radius", 1.5),
            size_ranges=None if ranges is None else dict(zip((8., 16., 32., 64., 128.), ranges)))
  t = run(fcos.assign, POINTS, *case, cfg=cfg)
  assert_same(t, reference(*case, **kw))
  default = run(fcos.assign, POINTS, *case)
  assert not np.array_equal(np.asarray(t.matched_gt), np.asarray(default.matched_gt))  # the override acts


def test_bad_inputs_raise():
  boxes, classes, valid = np.zeros((3, 4), np.float32), np.zeros(3, np.int32), np.ones(3, bool)
  a = len(POINTS.xy)
  with pytest.raises(ValueError, match="gt_boxes must be"):
    fcos.assign(POINTS.xy, POINTS.strides, np.zeros((a, 1)), np.zeros((a, 4)), boxes[:, :3], classes, valid)
  with pytest.raises(ValueError, match="gt_valid must be"):
    fcos.assign(POINTS.xy, POINTS.strides, np.zeros((a, 1)), np.zeros((a, 4)), boxes, classes, valid[:2])
  with pytest.raises(ValueError, match=r"strides \[4.0\] are not FPN levels"):
    fcos.assign(POINTS.xy, np.where(POINTS.strides == 8, 4, POINTS.strides), np.zeros((a, 1)), np.zeros((a, 4)),
                boxes, classes, valid)
  with pytest.raises(ValueError, match="size_ranges"):
    fcos.assign(POINTS.xy, POINTS.strides, np.zeros((a, 1)), np.zeros((a, 4)), boxes, classes, valid,
                cfg=dict(size_ranges=((0, 1),)))
