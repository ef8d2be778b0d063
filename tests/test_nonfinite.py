"""Non-finite steps (lla_jax/nonfinite.py): optax.apply_if_finite around the optimizer skips an update
with a NaN / Inf gradient or loss, keeps parameters and Adam moments, counts the skipped steps (in all
and in a row), and the host guard stops after train.max_nonfinite_steps in a row."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lla_jax import nonfinite


def loss_fn(params, x):
  return jnp.sum((params["w"] * x - 1.0) ** 2)


@jax.jit
def step(params, opt_state, x):
  """A train step as lla_jax/train.py has it: value_and_grad, the loss check, the optimizer update."""
  loss, grads = jax.value_and_grad(loss_fn)(params, x)
  grads = nonfinite.poison_if_nonfinite(loss, grads)
  updates, opt_state = TX.update(grads, opt_state, params)
  metrics = dict(nonfinite.counts(opt_state), loss=loss, finite=nonfinite.step_was_finite(opt_state))
  return optax.apply_updates(params, updates), opt_state, metrics


TX = nonfinite.skip_nonfinite(optax.chain(optax.clip_by_global_norm(10.0), optax.adam(0.1)))


def test_nan_gradient_keeps_params_and_moments_and_counts():
  params = {"w": jnp.array([0.5, 2.0])}
  opt_state = TX.init(params)
  good = jnp.array([1.0, 1.0])
  inputs = [good, jnp.array([jnp.nan, 1.0]), jnp.array([1.0, jnp.inf]), good, jnp.array([jnp.nan, 0.0]), good]
  # Expected: the same optimizer without the wrapper, fed the finite steps only.
  plain_tx = optax.chain(optax.clip_by_global_norm(10.0), optax.adam(0.1))
  plain, plain_state = dict(params), plain_tx.init(params)
  want_counts = [(0, 0), (1, 1), (2, 2), (2, 0), (3, 1), (3, 0)]
  for x, (skipped, consecutive) in zip(inputs, want_counts):
    before = params
    params, opt_state, metrics = step(params, opt_state, x)
    assert (int(metrics[nonfinite.SKIPPED]), int(metrics[nonfinite.CONSECUTIVE])) == (skipped, consecutive)
    assert bool(metrics["finite"]) == (consecutive == 0)
    if consecutive:
      np.testing.assert_array_equal(params["w"], before["w"])          # skipped: untouched
    else:
      g = jax.grad(loss_fn)(plain, x)
      updates, plain_state = plain_tx.update(g, plain_state, plain)
      plain = optax.apply_updates(plain, updates)
    np.testing.assert_allclose(params["w"], plain["w"], rtol=1e-6)
    assert np.all(np.isfinite(np.asarray(params["w"])))
  # Adam's moments saw the 3 finite steps only: the same as the plain optimizer's.
  inner = opt_state.inner_state[1][0]
  np.testing.assert_allclose(inner.mu["w"], plain_state[1][0].mu["w"], rtol=1e-6)
  assert int(inner.count) == 3


def test_nonfinite_loss_with_finite_gradients_is_skipped():
  grads = {"w": jnp.ones(3)}
  for loss in (jnp.inf, jnp.nan):
    poisoned = nonfinite.poison_if_nonfinite(jnp.float32(loss), grads)
    assert np.all(np.isnan(np.asarray(poisoned["w"])))
  assert nonfinite.poison_if_nonfinite(jnp.float32(2.0), grads)["w"].tolist() == [1.0, 1.0, 1.0]
  params = {"w": jnp.ones(3)}
  updates, state = TX.update(nonfinite.poison_if_nonfinite(jnp.float32(jnp.inf), grads), TX.init(params), params)
  assert np.all(np.asarray(updates["w"]) == 0) and int(nonfinite.counts(state)[nonfinite.SKIPPED]) == 1


def test_counts_finds_the_state_inside_other_transforms():
  params = {"a": jnp.ones(2), "b": jnp.ones(2)}
  tx = nonfinite.skip_nonfinite(optax.multi_transform({"t": optax.sgd(0.1, momentum=0.9), "f": optax.set_to_zero()},
                                                      {"a": "t", "b": "f"}))
  assert {k: int(v) for k, v in nonfinite.counts(tx.init(params)).items()} == {
      nonfinite.SKIPPED: 0, nonfinite.CONSECUTIVE: 0}
  with pytest.raises(ValueError, match="expected one optax.ApplyIfFiniteState .* found 0"):
    nonfinite.counts(optax.sgd(0.1).init(params))


def test_guard_stops_after_max_consecutive():
  guard = nonfinite.NonfiniteGuard(max_steps=5)
  metrics = {"loss": float("nan"), "loss_cls": 0.5, "loss_box": float("inf"), nonfinite.SKIPPED: 7,
             nonfinite.CONSECUTIVE: 4}
  assert guard.check(40, metrics) is None
  message = guard.check(41, dict(metrics, **{nonfinite.CONSECUTIVE: 5}))
  assert message == ("Stopping at step 41: 5 steps in a row had a non-finite loss or gradient (loss=nan, "
                     "loss_box=inf; 7 skipped in all); their updates were skipped, so the parameters are those of "
                     "step 36 (train.max_nonfinite_steps=5).")
  finite = {"loss": 1.0, nonfinite.SKIPPED: 5, nonfinite.CONSECUTIVE: 5}
  assert "(the loss is finite: a gradient is not; 5 skipped in all)" in guard.check(9, finite)
  assert nonfinite.NonfiniteGuard(0).check(9, finite) is None
