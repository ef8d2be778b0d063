"""ATSS assigner (Zhang et al. 2020) against the numpy reference and a hand-worked threshold example."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from lla_jax.assigners import atss
from lla_jax.priors import fpn_points
from tests.assigners import as_dict, assert_same, run, run_batch
from tests.reference import assigners as ref

H, W = 256, 320
POINTS = fpn_points(H, W)  # 1706 points; P7 has only 6 (< 9 candidates on that level for every GT)


def reference(gt_boxes, gt_classes, gt_valid, points=POINTS, **kw):
  return ref.atss_np(points.xy, points.strides, gt_boxes, gt_classes, gt_valid, **kw)


def test_threshold_worked_example():
  """IoUs [0.05, 0.10, 0.30, 0.44, 0.46]: mean 0.27 + unbiased std 0.189209 = 0.459209 (ddof 0 would give
  0.439234 and let 0.44 pass); padding slots do not count."""
  iou = jnp.array([[0.05, 0.10, 0.30, 0.44, 0.46, 0.9, 0.0]], jnp.float32)
  ok = jnp.array([[True] * 5 + [False] * 2])
  thr = atss.adaptive_iou_threshold(iou, ok)
  np.testing.assert_allclose(np.asarray(thr), [0.459209], atol=1e-6)
  np.testing.assert_allclose(ref.atss_threshold_np([0.05, 0.10, 0.30, 0.44, 0.46]), 0.459209, atol=1e-6)
  assert np.array_equal(np.asarray(iou[0, :5] >= thr[0]), [False, False, False, False, True])


def test_top_k_puts_equal_values_in_index_order():
  """The tie rule of the candidates rests on lax.top_k listing equal values lowest index first."""
  x = jnp.array([[3.0, 5.0, 5.0, 1.0, 5.0, 5.0, -jnp.inf, 5.0]])
  np.testing.assert_array_equal(np.asarray(jax.lax.top_k(x, 4)[1]), [[1, 2, 4, 5]])
  x = jnp.where(jnp.arange(20000) % 3 == 0, -2.0, -jnp.inf)[None]
  np.testing.assert_array_equal(np.asarray(jax.lax.top_k(x, 9)[1]), 3 * np.arange(9)[None])


def test_candidates_per_level():
  """k nearest per level, equal distances in index order, slots beyond a small level marked not ok."""
  pts = fpn_points(64, 64)  # levels of 64, 16, 4, 1, 1 points
  gt = jnp.array([[20, 20, 52, 52]], jnp.float32)  # centre (36, 36): a midpoint of the P3 grid
  idx, ok = atss.candidates(jnp.asarray(pts.xy), jnp.asarray(pts.strides), gt, (8., 16., 32., 64., 128.), 9)
  idx, ok = np.asarray(idx[0]), np.asarray(ok[0])
  assert ok.sum() == 9 + 9 + 4 + 1 + 1
  p3 = idx[:9]
  d2 = ((pts.xy[:64] - 36.0) ** 2).sum(axis=1)
  assert np.all(d2[p3[:4]] == 32) and np.all(d2[p3[4:]] == 160)
  # 8 points at distance sqrt(160) compete for 5 slots: the 5 lowest indices (row-major) win.
  ring = list(np.flatnonzero(d2 == 160))
  assert len(ring) == 8
  assert sorted(p3[4:]) == ring[:5]
  assert np.all(pts.strides[idx[ok]] == np.repeat([8, 16, 32, 64, 128], [9, 9, 4, 1, 1]))


@pytest.mark.parametrize("seed", range(6))
def test_crowds_match_reference(seed):
  """Crowded boxes, tiny ones, boxes leaving the image, ignore regions, zero-width rows, garbage padding."""
  rng = np.random.default_rng(seed)
  case = ref.crowd_case(rng, H, W, num_boxes=int(rng.integers(20, 45)), max_boxes=48, zero_frac=0.05,
                        padding="garbage", num_clusters=3)
  expected = reference(*case)
  assert_same(run(atss.assign, POINTS, *case, seed=seed), expected, f"seed {seed}")
  assert expected["contested"] > 0 and expected["num_fg"] > 0  # the case exercises the max-IoU rule


@pytest.mark.parametrize("size", [(64, 64), (96, 160), (512, 384)])
def test_other_image_sizes_match_reference(size):
  """Small images (levels with fewer than 9 points), a larger one."""
  pts = fpn_points(*size)
  rng = np.random.default_rng(size[0])
  case = ref.crowd_case(rng, *size, num_boxes=12, max_boxes=16, tiny_frac=0.3, num_clusters=2)
  assert_same(run(atss.assign, pts, *case), reference(*case, points=pts), f"size {size}")


def test_ties_equal_distance_and_equal_iou():
  """Duplicated GTs (equal IoU everywhere) go to the lowest index; GT centres on grid midpoints make
  equal distances decide the 9th candidate."""
  dup = [20, 20, 52, 52]  # centre (36, 36)
  boxes = np.array([[0, 0, 0, 0], dup, [60, 28, 100, 108], dup, [88, 40, 128, 120]], np.float32)
  for classes in ([0, 0, 0, 0, 0], [0, -1, 0, 0, 0], [0, 0, -1, 0, -1]):
    classes = np.array(classes)
    valid = np.array([False, True, True, True, True])
    t = run(atss.assign, POINTS, boxes, classes, valid)
    expected = reference(boxes, classes, valid)
    assert_same(t, expected, f"classes {classes}")
    matched = np.asarray(t.matched_gt)
    assert expected["contested"] > 0 and np.any(matched == 1) and not np.any(matched == 3)
    assert not np.any(matched == 0)
    assert np.array_equal(np.asarray(t.valid), ~np.isin(matched, np.flatnonzero(classes == -1)))


def test_padded_rows_do_not_matter():
  rng = np.random.default_rng(7)
  boxes, classes, valid = ref.crowd_case(rng, H, W, 20, 32, padding="garbage", num_clusters=3)
  full = run(atss.assign, POINTS, boxes, classes, valid)
  short = run(atss.assign, POINTS, boxes[:20], classes[:20], valid[:20])
  assert_same(full, as_dict(short))


def test_zero_gt_images():
  for m in (0, 5):
    t = run(atss.assign, POINTS, np.zeros((m, 4), np.float32), np.zeros(m, np.int32), np.zeros(m, bool))
    assert np.all(np.asarray(t.matched_gt) == -1) and not np.any(t.fg) and np.all(t.valid)
    assert float(t.num_fg) == 0 and not np.any(t.box_targets) and not np.any(t.aux_target)


def test_single_candidate_gives_no_positive():
  """One candidate: std (ddof 1) is NaN, as torch.std, so even a point inside the GT is not positive."""
  one = fpn_points(8, 8, strides=(8,))  # a single point (0, 0)
  box, classes, valid = np.array([[-4, -4, 4, 4]], np.float32), np.array([0]), np.array([True])
  thr = atss.adaptive_iou_threshold(jnp.full((1, 9), 0.5), jnp.arange(9)[None] < 1)
  assert np.isnan(np.asarray(thr)).all()
  t = run(atss.assign, one, box, classes, valid, cfg=dict(strides=(8,)))
  assert float(t.num_fg) == 0
  assert_same(t, reference(box, classes, valid, points=one))
  two = fpn_points(16, 8, strides=(8,))  # (0, 0) and (0, 8): two candidates, a finite threshold
  t = run(atss.assign, two, box, classes, valid, cfg=dict(strides=(8,)))
  assert float(t.num_fg) == 1
  assert_same(t, reference(box, classes, valid, points=two))


def test_jit_vmap_batch_matches_per_image():
  rng = np.random.default_rng(11)
  cases = [ref.crowd_case(rng, H, W, n, 40, zero_frac=0.05, num_clusters=3) for n in (40, 25, 3, 0)]
  batch = [np.stack(x) for x in zip(*cases)]
  out = run_batch(atss.assign, POINTS, *batch)
  for i, case in enumerate(cases):
    assert_same(as_dict(out, i), reference(*case), f"image {i}")
    assert_same(as_dict(out, i), as_dict(run(atss.assign, POINTS, *case, jit=False)), f"image {i} eager")
  assert float(out.num_fg[3]) == 0


@pytest.mark.parametrize("cfg", [
    dict(topk=5),
    ml_collections.ConfigDict(dict(topk=12, anchor_scale=6.0, name="atss")),
])
def test_config_overrides(cfg):
  rng = np.random.default_rng(3)
  case = ref.crowd_case(rng, H, W, 30, 32, num_clusters=3)
  t = run(atss.assign, POINTS, *case, cfg=cfg)
  assert_same(t, reference(*case, topk=cfg.get("topk", 9), anchor_scale=cfg.get("anchor_scale", 8.0)))
  assert not np.array_equal(np.asarray(t.matched_gt), np.asarray(run(atss.assign, POINTS, *case).matched_gt))


def test_bad_inputs_raise():
  boxes, classes, valid = np.zeros((3, 4), np.float32), np.zeros(3, np.int32), np.ones(3, bool)
  a = len(POINTS.xy)
  with pytest.raises(ValueError, match="points must be"):
    atss.assign(POINTS.xy[:, :1], POINTS.strides, np.zeros((a, 1)), np.zeros((a, 4)), boxes, classes, valid)
  with pytest.raises(ValueError, match="gt_classes must be"):
    atss.assign(POINTS.xy, POINTS.strides, np.zeros((a, 1)), np.zeros((a, 4)), boxes, classes[:, None], valid)
  with pytest.raises(ValueError, match=r"strides \[256.0\] are not FPN levels"):
    atss.assign(POINTS.xy, np.where(POINTS.strides == 128, 256, POINTS.strides), np.zeros((a, 1)),
                np.zeros((a, 4)), boxes, classes, valid)
  with pytest.raises(ValueError, match="topk"):
    atss.assign(POINTS.xy, POINTS.strides, np.zeros((a, 1)), np.zeros((a, 4)), boxes, classes, valid, cfg=dict(topk=0))
