"""Multi-level ROIAlignV2 against the numpy re-statement of ROIAlign_cpu.cpp (and torchvision when installed)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lla_jax.models import roi_align
from tests.reference import rcnn_reference as ref

STRIDES = (4, 8, 16, 32)


def feature_maps(rng, hw=(128, 192), c=3):
  return [rng.normal(size=(hw[0] // s, hw[1] // s, c)).astype(np.float32) for s in STRIDES]


def reference(feats, boxes, max_grid=(8, 8)):
  out, lv = [], []
  for b in boxes:
    l = ref.box_level_np(b)
    lv.append(l)
    out.append(ref.roi_align_np(feats[l], b, 1.0 / STRIDES[l], max_grid=max_grid))
  return np.stack(out), np.asarray(lv)


def test_level_rule_worked_examples():
  sides = np.array([224, 112, 111.99, 448, 447.9, 0, 1000, 50, 300], np.float32)
  boxes = np.stack([np.zeros(9), np.zeros(9), sides, sides], 1).astype(np.float32)
  lv = roi_align.box_levels(boxes, 2, 5)
  np.testing.assert_array_equal(lv + 2, [4, 3, 2, 5, 4, 2, 5, 2, 4])
  np.testing.assert_array_equal(lv, [ref.box_level_np(b) for b in boxes])
  bad = np.array([[10, 10, 5, 20], [0, 0, np.nan, 1]], np.float32)     # negative area, NaN: the lowest level
  np.testing.assert_array_equal(roi_align.box_levels(bad, 2, 5), [0, 0])


def test_hand_example_on_a_ramp():
  """A linear ramp f(y, x) = x is reproduced exactly by bilinear sampling inside the map: the bin average
  is the bin centre's x. Box 150 x 100 (sqrt area 122.5 -> P3): rw = 18.75, rh = 12.5, 2 x 3 samples per bin."""
  h, w = 32, 48
  ramp = np.broadcast_to(np.arange(w, dtype=np.float32)[None, :, None], (h, w, 1))
  feats = [np.zeros((128 // s, 192 // s, 1), np.float32) for s in STRIDES]
  feats[1] = np.ascontiguousarray(ramp[:16, :24])
  box = np.array([[40, 10, 190, 110]], np.float32)
  pooled, lv = roi_align.multilevel_roi_align([jnp.asarray(f) for f in feats], box)
  assert int(lv[0]) == 1
  x0 = 40 / 8 - 0.5
  centres = x0 + (np.arange(7) + 0.5) * 18.75 / 7
  np.testing.assert_allclose(np.asarray(pooled)[0, 3, :, 0], centres, rtol=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_random_rois_match_reference(seed):
  rng = np.random.default_rng(seed)
  feats = feature_maps(rng)
  n = 24
  xy = rng.uniform(-40, 200, (n, 2))
  wh = np.exp(rng.uniform(np.log(2), np.log(400), (n, 2))) * np.array([1.0, 2.5])
  boxes = np.concatenate([xy, xy + wh], 1)
  boxes = np.concatenate([boxes, [[10, 10, 10, 40], [-30, -30, -2, -2], [180, 120, 260, 200], [0, 0, 192, 128],
                                  [3.3, 4.1, 5.2, 9.9], [50, 50, 50.5, 50.5]]]).astype(np.float32)
  got, lv = jax.jit(roi_align.multilevel_roi_align)([jnp.asarray(f) for f in feats], boxes)
  want, wlv = reference(feats, boxes)
  np.testing.assert_array_equal(lv, wlv)
  # bit for bit: products rounded before the adds, IEEE divisions (lla_jax.boxes.rounded / divide)
  np.testing.assert_array_equal(np.asarray(got), want)
  np.testing.assert_array_equal(np.asarray(got)[n], 0)      # zero-width RoI: 0


def test_tall_rois_use_the_adaptive_grid_and_the_bound():
  """A 20 x 400 box on P2 (sqrt area 89): rh = 100 -> 15 rows per bin past the bound 8: exactly the capped grid."""
  rng = np.random.default_rng(4)
  feats = feature_maps(rng, c=2)
  boxes = np.array([[60, 0, 80, 400], [60, 10, 80, 220]], np.float32)    # grids 15 x 1 and 8 x 1 rows
  got, lv = roi_align.multilevel_roi_align([jnp.asarray(f) for f in feats], boxes)
  np.testing.assert_array_equal(lv, [0, 0])
  capped, _ = reference(feats, boxes, max_grid=(8, 8))
  exact, _ = reference(feats, boxes, max_grid=None)
  np.testing.assert_array_equal(np.asarray(got), capped)
  np.testing.assert_array_equal(np.asarray(got)[1], exact[1])                         # within the bound: exact
  assert not np.allclose(capped[0], exact[0], atol=1e-3)                            # past it: documented cap
  big, _ = roi_align.multilevel_roi_align([jnp.asarray(f) for f in feats], boxes, dict(pooler_max_grid=(16, 2)))
  np.testing.assert_array_equal(np.asarray(big), exact)


def test_vmap_gradient_and_dtype():
  rng = np.random.default_rng(5)
  feats = [jnp.asarray(f) for f in feature_maps(rng, c=4)]
  boxes = jnp.asarray([[10, 10, 60, 90], [100, 20, 180, 120]], jnp.float32)
  batch = [jnp.stack([f, 2 * f]) for f in feats]
  got, _ = jax.vmap(roi_align.multilevel_roi_align, in_axes=(0, None))(batch, boxes)
  np.testing.assert_allclose(np.asarray(got[1]), 2 * np.asarray(got[0]), rtol=1e-6)
  g = jax.grad(lambda fs: roi_align.multilevel_roi_align(fs, boxes)[0].sum())(feats)
  assert all(np.all(np.isfinite(np.asarray(x))) for x in g) and float(sum(jnp.abs(x).sum() for x in g)) > 0
  # every RoI's pooled sum is a convex combination: total gradient mass = number of output cells x channels...
  np.testing.assert_allclose(float(sum(x.sum() for x in g)), 2 * 49 * 4, rtol=1e-5)   # (boxes lie inside the maps)
  half, _ = roi_align.multilevel_roi_align([f.astype(jnp.bfloat16) for f in feats], boxes)
  assert half.dtype == jnp.bfloat16


def test_errors():
  feats = [jnp.zeros((8, 8, 2))] * 3
  with pytest.raises(ValueError, match="3 feature maps"):
    roi_align.multilevel_roi_align(feats, jnp.zeros((1, 4)))


def test_against_torchvision():
  torch = pytest.importorskip("torch")
  tv = pytest.importorskip("torchvision")
  rng = np.random.default_rng(6)
  fmap = rng.normal(size=(40, 56, 3)).astype(np.float32)
  xy = rng.uniform(-20, 200, (30, 2))
  boxes = np.concatenate([xy, xy + rng.uniform(1, 150, (30, 2))], 1).astype(np.float32)
  boxes = boxes[[ref.box_level_np(b) == 0 for b in boxes]]      # all on P2 (the level rule is tested above)
  feats = [jnp.asarray(fmap)] + [jnp.zeros((40 // (2 ** k), 56 // (2 ** k), 3)) for k in (1, 2, 3)]
  got, _ = roi_align.multilevel_roi_align(feats, boxes)
  t = tv.ops.roi_align(torch.from_numpy(fmap).permute(2, 0, 1)[None], [torch.from_numpy(boxes)], 7, 0.25, 0, True)
  np.testing.assert_allclose(np.asarray(got), t.permute(0, 2, 3, 1).numpy(), rtol=1e-5, atol=1e-5)
