"""The vectorised numpy statements of benchmarks/assign_bench.py (tests/reference/assign_numpy.py) agree with
the jax assigners on crowded images, and ATSS's per-level-slice path (concrete strides) equals its masked path
(traced strides)."""
import functools

import jax
import numpy as np
import pytest

from lla_jax import priors
from lla_jax.assigners import atss, fcos, lla
from tests.reference.assigners import crowd_case
from tests.reference import assign_numpy


def _case(seed, height=384, width=512, num_boxes=60):
  rng = np.random.default_rng(seed)
  pts = priors.fpn_points(height, width)
  boxes, classes, valid = crowd_case(rng, height, width, num_boxes // 2, num_boxes, ignore_frac=0.1,
                                     tiny_frac=0.1, leave_frac=0.1, num_clusters=4)
  logits = rng.normal(-3.0, 1.5, (len(pts.xy), 1)).astype(np.float32)
  ltrb = rng.uniform(0, 80, (len(pts.xy), 4)).astype(np.float32)
  return pts, logits, ltrb, boxes, classes, valid


@pytest.mark.parametrize("seed", [0, 1])
def test_numpy_statements_match_jax(seed):
  pts, logits, ltrb, boxes, classes, valid = _case(seed)
  closed = lambda assign: jax.jit(lambda *a: assign(pts.xy, pts.strides, *a).matched_gt)
  args = (logits, ltrb, boxes, classes, valid)
  np.testing.assert_array_equal(np.asarray(closed(lla.assign)(*args)),
                                assign_numpy.lla_matched(pts.xy, logits, ltrb, boxes, classes, valid))
  np.testing.assert_array_equal(np.asarray(closed(fcos.assign)(*args)),
                                assign_numpy.fcos_matched(pts.xy, pts.strides, boxes, classes, valid))
  np.testing.assert_array_equal(np.asarray(closed(atss.assign)(*args)),
                                assign_numpy.atss_matched(pts.xy, pts.strides, boxes, classes, valid))


def test_atss_level_slices_equal_masked_levels():
  pts, logits, ltrb, boxes, classes, valid = _case(3)
  sliced = jax.jit(lambda *a: atss.assign(pts.xy, pts.strides, *a))(logits, ltrb, boxes, classes, valid)
  masked = jax.jit(functools.partial(atss.assign, cfg=None))(pts.xy, pts.strides, logits, ltrb, boxes, classes, valid)
  assert atss.level_runs(pts.strides, (8.0, 16.0, 32.0, 64.0, 128.0)) is not None
  for f in ("matched_gt", "fg", "valid", "box_targets", "aux_target", "num_fg"):
    np.testing.assert_array_equal(np.asarray(getattr(sliced, f)), np.asarray(getattr(masked, f)))
