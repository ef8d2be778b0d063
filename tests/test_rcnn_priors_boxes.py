"""Faster R-CNN anchors and the weighted delta coder against the numpy reference and worked examples."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lla_jax import boxes, priors
from tests.reference import rcnn_reference as ref


def test_released_anchor_count_and_first_anchors():
  a, starts = priors.rcnn_anchors((800, 1408))
  assert a.shape == (281358, 4) and a.dtype == np.float32
  np.testing.assert_array_equal(np.diff(starts), 3 * np.array([200 * 352, 100 * 176, 50 * 88, 25 * 44, 13 * 22]))
  np.testing.assert_array_equal(a[:3], np.array([[-16, -16, 16, 16], [-11.313708, -22.627417, 11.313708, 22.627417],
                                                 [-9.237604, -27.712812, 9.237604, 27.712812]], np.float32))
  # anchor (i, j, r) of P3 is the cell anchor shifted by (8 j, 8 i); all three ratios have area 64^2
  i, j = 5, 7
  cell = a[starts[1] + (i * 176 + j) * 3: starts[1] + (i * 176 + j) * 3 + 3]
  np.testing.assert_allclose((cell[:, 2] - cell[:, 0]) * (cell[:, 3] - cell[:, 1]), 64.0 ** 2, rtol=1e-6)
  np.testing.assert_array_equal(cell[0], [56 - 32, 40 - 32, 56 + 32, 40 + 32])
  np.testing.assert_allclose((cell[:, 3] - cell[:, 1]) / (cell[:, 2] - cell[:, 0]), [1, 2, 3], rtol=1e-6)


@pytest.mark.parametrize("hw", [(128, 192), (96, 32), (256, 320)])
def test_anchors_match_reference(hw):
  a, starts = priors.rcnn_anchors(hw)
  ra, rs = ref.anchors_np(*hw)
  np.testing.assert_array_equal(starts, rs)
  np.testing.assert_array_equal(a, ra)


def test_anchor_input_errors():
  with pytest.raises(ValueError, match="multiples of size_divisibility=32"):
    priors.rcnn_anchors((100, 128))
  with pytest.raises(ValueError, match="same levels"):
    priors.rcnn_anchors((128, 128), dict(anchor_sizes=((32,), (64,))))


def test_anchor_cfg_offset_and_ratios():
  a, _ = priors.rcnn_anchors((64, 64), dict(anchor_offset=0.5, anchor_ratios=((1.0,),)))
  np.testing.assert_array_equal(a[0], [2 - 16, 2 - 16, 2 + 16, 2 + 16])
  assert a.shape[0] == 16 * 16 + 8 * 8 + 4 * 4 + 2 * 2 + 1


def test_coder_worked_examples():
  s = np.array([84, 84, 116, 116], np.float32)
  t = np.array([90, 80, 110, 130], np.float32)
  np.testing.assert_allclose(boxes.encode_deltas(s, t), [0, 0.15625, -0.4700036, 0.4462871], rtol=2e-7)
  np.testing.assert_allclose(boxes.encode_deltas(s, t, (10, 10, 5, 5)), [0, 1.5625, -2.3500183, 2.2314355],
                             rtol=2e-7)
  d = boxes.decode_deltas(s, np.array([0, 0, 8, 0], np.float32))
  np.testing.assert_allclose(d, [-900.00006, 84, 1100, 116], rtol=1e-6)   # dw clamped to log(1000 / 16)
  assert boxes.SCALE_CLAMP == pytest.approx(4.1351666)
  # no lower clamp: a very negative dw shrinks the box towards its centre
  d = np.asarray(boxes.decode_deltas(s, np.array([0, 0, -20, 0], np.float32)))
  assert 100 - 1e-3 < d[0] <= d[2] < 100 + 1e-3 and d[1] == 84


def test_coder_matches_reference_and_round_trips():
  rng = np.random.default_rng(0)
  xy = rng.uniform(-100, 500, (300, 2))
  s = np.concatenate([xy, xy + rng.uniform(10, 300, (300, 2))], 1).astype(np.float32)  # ratios < 62.5: no clamp
  t = np.concatenate([xy + rng.uniform(-50, 50, (300, 2)), xy + rng.uniform(60, 300, (300, 2))], 1).astype(np.float32)
  for w in [(1, 1, 1, 1), (10, 10, 5, 5)]:
    enc = np.asarray(jax.jit(lambda a, b: boxes.encode_deltas(a, b, w))(s, t))
    want = np.stack([ref.encode_np(a, b, w) for a, b in zip(s, t)])
    np.testing.assert_allclose(enc, want, rtol=1e-6, atol=1e-6)  # log: a few ulps (exact elsewhere)
    np.testing.assert_array_equal(enc[:, :2], want[:, :2])      # +, -, *, / only: bit for bit
    dec = np.asarray(jax.jit(lambda a, b: boxes.decode_deltas(a, b, w))(s, enc))
    np.testing.assert_allclose(dec, t, rtol=1e-5, atol=1e-3)
    want = np.stack([ref.decode_np(a, b, w) for a, b in zip(s, enc)])
    np.testing.assert_allclose(dec, want, rtol=1e-6, atol=1e-4)
  big = np.asarray(boxes.decode_deltas(s[:1], np.array([[0, 0, 20, 25]], np.float32), (10, 10, 5, 5)))[0]
  w, h = s[0, 2] - s[0, 0], s[0, 3] - s[0, 1]
  assert big[2] - big[0] == pytest.approx(w * math.exp(4), rel=1e-5)                # 20 / 5 = 4 < clamp
  assert big[3] - big[1] == pytest.approx(h * math.exp(boxes.SCALE_CLAMP), rel=1e-5)  # 25 / 5 = 5: clamped


def test_clip_boxes_no_plus_one():
  b = jnp.array([[-5, -5, 300, 200], [10, 20, 30, 40]], jnp.float32)
  np.testing.assert_array_equal(boxes.clip_boxes(b, (100, 250)), [[0, 0, 250, 100], [10, 20, 30, 40]])


def test_select_min_max_equal_jnp_off_nan():
  # Every ordered pair of edge values: equal to jnp.minimum / maximum in value (the sign of a zero result may
  # differ: -0 == +0), and a clamp against the literal 0.0 gives +0 bit for bit, as jnp.maximum does.
  vals = jnp.array([-jnp.inf, -3.5, -1e-30, -0.0, 0.0, 1e-30, 1.1920929e-07, 2.0, jnp.inf], jnp.float32)
  a, b = jnp.meshgrid(vals, vals)
  np.testing.assert_array_equal(boxes.select_min(a, b), jnp.minimum(a, b))
  np.testing.assert_array_equal(boxes.select_max(a, b), jnp.maximum(a, b))
  clamp = np.asarray(boxes.select_max(vals, 0.0)).view(np.int32)
  np.testing.assert_array_equal(clamp, np.asarray(jnp.maximum(vals, 0.0)).view(np.int32))
