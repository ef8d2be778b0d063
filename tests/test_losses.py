"""Loss primitives and the FCOS-family loss on hand-checked tiny cases."""
import math

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from lla_jax import losses
from lla_jax.methods.fcos_family import fcos_losses
from lla_jax.types import Targets


def test_focal_hand_values():
  assert float(losses.sigmoid_focal_loss(jnp.array(0.0), jnp.array(1.0))) == pytest.approx(0.25 * 0.25 * math.log(2))
  assert float(losses.sigmoid_focal_loss(jnp.array(0.0), jnp.array(0.0))) == pytest.approx(0.75 * 0.25 * math.log(2))
  # p = 0.01 against target 0: 0.75 * p^2 * -ln(0.99)
  x = -math.log(99.0)
  assert float(losses.sigmoid_focal_loss(jnp.array(x), jnp.array(0.0))) == pytest.approx(
      0.75 * 1e-4 * -math.log(0.99), rel=1e-4)


def test_bce_with_logits_is_stable():
  assert float(losses.bce_with_logits(jnp.array(100.0), jnp.array(0.0))) == pytest.approx(100.0)
  assert float(losses.bce_with_logits(jnp.array(0.0), jnp.array(0.3))) == pytest.approx(math.log(2))


@pytest.mark.parametrize("pred,target,expected", [
    ((2, 2, 2, 2), (2, 2, 2, 2), 0.0),
    ((1, 1, 1, 1), (2, 2, 2, 2), 0.75),              # IoU 4/16, enclosing box = target
    ((1, 1, 0, 1), (-1, 1, 3, 1), 1.25),             # disjoint: IoU 0, enclose 8, union 6
])
def test_giou_loss_hand_values(pred, target, expected):
  got = losses.giou_loss(jnp.array(pred, jnp.float32), jnp.array(target, jnp.float32))
  assert float(got) == pytest.approx(expected, abs=1e-6)


def test_iou_loss_clamp_and_smooth_l1():
  assert float(losses.iou_loss(jnp.zeros(4), jnp.ones(4))) == pytest.approx(15.942385, abs=1e-5)
  np.testing.assert_allclose(losses.smooth_l1(jnp.array([0.5, 2.0, -2.0]), jnp.zeros(3)), [0.125, 1.5, 1.5])
  # Keras clips in float32, where 1 - 1e-7 rounds to 1 - 2^-23.
  expected = -math.log(1.0 - float(np.float32(1.0 - 1e-7)))
  assert float(losses.bce_on_probs(jnp.array(1.0), jnp.array(0.0))) == pytest.approx(expected, rel=1e-4)


def test_fcos_losses_normalise_by_global_num_fg_with_ignore_matches():
  # Two images, three points each. Image 0: point 0 fg (exact box), point 1 matched to an ignore GT,
  # point 2 background. Image 1: all background. LLA: num_fg = 2 (the ignore match counts).
  cfg = ml_collections.ConfigDict(dict(focal_alpha=0.25, focal_gamma=2.0, box_weight=2.0, box_weighting="none",
                                       aux_weight=0.5, min_num_fg=1.0))
  out = dict(cls_logits=jnp.zeros((2, 3, 1)), ltrb=jnp.full((2, 3, 4), 2.0), aux_logits=jnp.zeros((2, 3)))
  t = Targets(matched_gt=jnp.array([[0, 1, -1], [-1, -1, -1]]), fg=jnp.array([[True, False, False], [False] * 3]),
              valid=jnp.array([[True, False, True], [True] * 3]),
              box_targets=jnp.array([[[1.0, 1, 1, 1], [0] * 4, [0] * 4], [[0] * 4] * 3]),
              aux_target=jnp.array([[0.25, 0, 0], [0, 0, 0]]), num_fg=jnp.array([2.0, 0.0]))
  total, parts = fcos_losses(out, t, jnp.array([[0, -1], [0, 0]]), cfg)
  pos, neg = 0.25 * 0.25 * math.log(2), 0.75 * 0.25 * math.log(2)
  assert float(parts["loss_cls"]) == pytest.approx((pos + 4 * neg) / 2, rel=1e-5)      # 5 valid points
  assert float(parts["loss_box"]) == pytest.approx(2.0 * 0.75 / 2, rel=1e-5)          # GIoU 1/4
  assert float(parts["loss_aux"]) == pytest.approx(0.5 * math.log(2) / 2, rel=1e-5)   # BCE(0, 0.25) = ln 2
  assert float(total) == pytest.approx(sum(float(parts[k]) for k in ("loss_cls", "loss_box", "loss_aux")))
  # Centerness weighting (FCOS/ATSS) multiplies the GIoU term by the aux target.
  cfg.box_weighting = "centerness"
  _, parts = fcos_losses(out, t, jnp.array([[0, -1], [0, 0]]), cfg)
  assert float(parts["loss_box"]) == pytest.approx(2.0 * 0.75 * 0.25 / 2, rel=1e-5)
