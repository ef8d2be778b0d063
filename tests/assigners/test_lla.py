"""LLA assignment against the spec's worked examples and the plain numpy re-statement."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lla_jax import priors
from lla_jax.assigners import assign_batch, lla
from tests.reference.lla import assign_np


def test_cost_entry_worked_example():
  # By hand: point (16, 16), GT (0, 0, 40, 80), exact prediction, logit 0 -> 0.25 * 0.25 * ln 2.
  pts = jnp.array([[16.0, 16.0], [48.0, 16.0]])
  logits = jnp.zeros((2, 1))
  ltrb = jnp.array([[16.0, 16.0, 24.0, 64.0], [16.0, 16.0, 24.0, 64.0]])
  cost, iou = lla.cost_matrix(pts, logits, ltrb, jnp.array([[0.0, 0, 40, 80]]), jnp.array([0]), jnp.array([True]))
  assert cost[0, 0] == pytest.approx(0.25 * 0.25 * math.log(2), abs=1e-6)
  assert float(iou[0, 0]) == pytest.approx(1.0)
  assert float(cost[0, 1]) > 1000.0
  # At initialisation (p = 0.01) the class cost is 1.128382 everywhere.
  cost0, _ = lla.cost_matrix(pts, jnp.full((2, 1), -math.log(99.0)), ltrb, jnp.array([[0.0, 0, 40, 80]]),
                                jnp.array([0]), jnp.array([True]))
  assert float(cost0[0, 0]) == pytest.approx(1.128382, abs=1e-5)


def test_reg_cost_clamp():
  # By hand: IoU 0 -> reg cost 15.942385, x 1.5 = 23.913578 (plus the focal cost at logit 0).
  cost, _ = lla.cost_matrix(jnp.array([[16.0, 16.0]]), jnp.zeros((1, 1)), jnp.zeros((1, 4)),
                               jnp.array([[0.0, 0, 40, 80]]), jnp.array([0]), jnp.array([True]))
  assert float(cost[0, 0]) - 0.25 * 0.25 * math.log(2) == pytest.approx(23.913578, abs=1e-4)


@pytest.mark.parametrize("cost,k,expected", [
    ([[0.5, 0.2, 1000.3, 0.9], [0.4, 0.6, 0.1, 1000.7]], 2, [1, 0, 1, -1]),
    ([[0.5, 0.9, 0.9], [0.6, 0.9, 0.9], [0.3, 0.2, 0.9]], 1, [2, 2, -1]),   # argmin over all rows
    ([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]], 2, [0, 0, -1]),                    # ties -> lowest index
])
def test_selection_worked_examples(cost, k, expected):
  np.testing.assert_array_equal(lla.select_positives(jnp.array(cost), k), expected)


def _random_image(rng, height, width, m, n_valid, n_ignore):
  pts = priors.fpn_points(height, width)
  a = len(pts.xy)
  # Crowded GT: clusters of overlapping tall boxes, tiny boxes, boxes leaving the image.
  boxes = np.zeros((m, 4), np.float32)
  centre = rng.uniform([0, 0], [width, height])
  for i in range(n_valid):
    h = rng.choice([4.0, 12.0, rng.uniform(20, height)])
    w = 0.41 * h
    c = centre + rng.normal(0, 30, 2) if rng.random() < 0.7 else rng.uniform([-20, -20], [width + 20, height + 20])
    boxes[i] = [c[0] - w / 2, c[1] - h / 2, c[0] + w / 2, c[1] + h / 2]
  classes = np.zeros(m, np.int32)
  classes[max(n_valid - n_ignore, 0):n_valid] = -1
  valid = np.arange(m) < n_valid
  logits = rng.normal(-3, 2, (a, 1)).astype(np.float32)
  ltrb = np.abs(rng.normal(20, 15, (a, 4))).astype(np.float32)
  return pts, logits, ltrb, boxes, classes, valid


@pytest.mark.parametrize("seed,m,n_valid,n_ignore", [(0, 12, 9, 2), (1, 8, 8, 0), (2, 6, 0, 0), (3, 10, 4, 4),
                                                      (4, 16, 15, 3)])
def test_against_numpy_reference(seed, m, n_valid, n_ignore):
  rng = np.random.default_rng(seed)
  pts, logits, ltrb, boxes, classes, valid = _random_image(rng, 96, 128, m, n_valid, n_ignore)
  got = jax.jit(lla.assign)(pts.xy, pts.strides, logits, ltrb, boxes, classes, valid)
  ref = assign_np(pts.xy, pts.strides, logits, ltrb, boxes, classes, valid)
  np.testing.assert_array_equal(got.matched_gt, ref["matched_gt"])
  np.testing.assert_array_equal(got.fg, ref["fg"])
  np.testing.assert_array_equal(got.valid, ref["valid"])
  np.testing.assert_allclose(got.box_targets, ref["box_targets"], atol=1e-4)
  np.testing.assert_allclose(got.aux_target, ref["aux_target"], atol=1e-5)
  assert float(got.num_fg) == ref["num_fg"]
  if n_valid:
    assert ref["num_fg"] > 0


def test_tiny_box_gets_k_points_outside_and_ignore_counts():
  # Q1: a GT covering fewer than K points still gets K positives; Q2: ignore matches count in num_fg.
  pts = priors.fpn_points(64, 64)
  a = len(pts.xy)
  boxes = np.array([[1.0, 1.0, 5.0, 9.0], [30.0, 10.0, 50.0, 60.0]], np.float32)
  t = lla.assign(pts.xy, pts.strides, np.zeros((a, 1), np.float32), np.full((a, 4), 5.0, np.float32), boxes,
                 np.array([0, -1]), np.array([True, True]))
  assert int((t.matched_gt == 0).sum()) == 10 and int((t.matched_gt == 1).sum()) == 10
  assert float(t.num_fg) == 20.0
  assert int(t.fg.sum()) == 10 and int((~t.valid).sum()) == 10
  assert float(t.box_targets[t.fg].min()) < 0   # targets of outside points have negative components


def test_hard_inside_switch_never_picks_outside_points():
  pts = priors.fpn_points(64, 64)
  a = len(pts.xy)
  boxes = np.array([[1.0, 1.0, 10.0, 12.0]], np.float32)
  t = lla.assign(pts.xy, pts.strides, np.zeros((a, 1), np.float32), np.full((a, 4), 5.0, np.float32), boxes,
                 np.array([0]), np.array([True]), cfg=dict(hard_inside=True))
  np.testing.assert_array_equal(pts.xy[np.asarray(t.fg)], [[8.0, 8.0]])
  assert int(t.fg.sum()) == 1   # only the point (8, 8) lies inside


def test_batched_under_jit_matches_per_image():
  rng = np.random.default_rng(7)
  imgs = [_random_image(rng, 64, 96, 6, n, 1) for n in (5, 0, 3)]
  pts = imgs[0][0]
  stack = lambda i: np.stack([im[i] for im in imgs])
  cfg = dict(name="lla", topk=10)
  from ml_collections import ConfigDict
  f = jax.jit(lambda *x: assign_batch(ConfigDict(cfg), pts.xy, pts.strides, *x))
  got = f(stack(1), stack(2), stack(3), stack(4), stack(5))
  for i, im in enumerate(imgs):
    ref = assign_np(pts.xy, pts.strides, *im[1:])
    np.testing.assert_array_equal(got.matched_gt[i], ref["matched_gt"])
    assert float(got.num_fg[i]) == ref["num_fg"]


@pytest.mark.parametrize("seed", range(4))
def test_select_positives_ties_and_inf_rows(seed):
  """Quantised costs (many exact ties, also at the K-th value), +inf rows and entries: the K cheapest per row by
  stable sort, contested points to the first all-rows minimum; with column_cost recomputing the columns too."""
  rng = np.random.default_rng(seed)
  m, a, k = 40, 300, int(rng.integers(1, 12))
  cost = np.round(rng.uniform(0, 3, (m, a)), 1).astype(np.float32)
  cost[rng.random((m, a)) < 0.05] = np.inf
  cost[rng.random(m) < 0.2] = np.inf
  want = np.full(a, -1)
  claims = np.zeros((m, a), int)
  for g in range(m):
    for p in np.argsort(cost[g], kind="stable")[:k]:
      claims[g, p] += np.isfinite(cost[g, p])
  for p in range(a):
    who = np.flatnonzero(claims[:, p])
    if len(who):
      want[p] = who[0] if len(who) == 1 else int(np.argmin(cost[:, p]))
  c = jnp.array(cost)
  np.testing.assert_array_equal(np.asarray(jax.jit(lla.select_positives, static_argnums=1)(c, k)), want)
  got = lla.select_positives(c, k, column_cost=lambda cols: c[:, cols])
  np.testing.assert_array_equal(np.asarray(got), want)


@pytest.mark.parametrize("seed", [0, 1])
def test_cost_matrix_bitwise_equal_to_the_jnp_minimum_form(seed, monkeypatch):
  # The cost with compare-and-select min / max is the cost with jnp.minimum / maximum bit for bit, on points
  # lying exactly on box edges, zero-size boxes, zero predicted distances and GTs leaving the image.
  from lla_jax import boxes
  rng = np.random.default_rng(seed)
  pts = priors.fpn_points(128, 192)
  a = len(pts.xy)
  gt = np.round(rng.uniform(-20, 200, (24, 4)) / 8) * 8                     # edges on the stride-8 grid
  gt = np.concatenate([np.minimum(gt[:, :2], gt[:, 2:]), np.maximum(gt[:, :2], gt[:, 2:])], 1).astype(np.float32)
  gt[3, 2:] = gt[3, :2]                                                     # zero-size box
  ltrb = np.where(rng.random((a, 4)) < 0.2, 0.0, rng.uniform(0, 90, (a, 4))).astype(np.float32)
  logits = rng.normal(-3, 2, (a, 1)).astype(np.float32)
  classes = np.where(rng.random(24) < 0.15, -1, 0).astype(np.int32)
  valid = rng.random(24) < 0.9
  args = (jnp.asarray(pts.xy), logits, ltrb, gt, classes, valid)
  got = np.asarray(jax.jit(lambda *x: lla.cost_matrix(*x)[0])(*args))
  monkeypatch.setattr(boxes, "select_min", jnp.minimum)
  monkeypatch.setattr(boxes, "select_max", jnp.maximum)
  want = np.asarray(jax.jit(lambda *x: lla.cost_matrix(*x)[0])(*args))
  np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))
