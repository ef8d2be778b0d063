"""Non-finite losses: skip the update of a step whose loss or gradients are not finite (optax's
`apply_if_finite`), count the skipped steps for the metrics, and stop the run with a message after
`train.max_nonfinite_steps` skipped steps in a row.

A skipped step leaves the parameters and the optimizer's inner state (momentum, Adam moments) as they
were; the step counter and the model state (BatchNorm statistics) are the train step's business
(`step_was_finite`).

  tx = skip_nonfinite(tx)                          # around the whole optax chain (make_optimizer)
  grads = poison_if_nonfinite(loss, grads)         # in the train step: a non-finite loss skips as well
  metrics |= counts(opt_state)                     # nonfinite_skipped, nonfinite_consecutive
  keep = step_was_finite(opt_state)                # a skipped step keeps the old BatchNorm statistics too
  message = guard.check(step, host_metrics)        # on the host: not None -> raise NonfiniteError(message)
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

# apply_if_finite applies a non-finite update after `max_consecutive_errors` skipped ones; the loop stops
# the run itself (NonfiniteGuard), so the library's give-up never comes: the int32 counter saturates below it.
NEVER_APPLY = int(np.iinfo(np.int32).max)

# The metrics `counts` adds; the progress line shows SKIPPED when it is non-zero.
SKIPPED, CONSECUTIVE = "nonfinite_skipped", "nonfinite_consecutive"


def skip_nonfinite(tx: optax.GradientTransformation) -> optax.GradientTransformation:
  """`tx` that turns an update with a NaN or Inf in any gradient leaf into zeros and keeps its inner
  state (optax.apply_if_finite, never giving up). The optimizer state becomes an
  optax.ApplyIfFiniteState(notfinite_count, last_finite, total_notfinite, inner_state)."""
  return optax.apply_if_finite(tx, max_consecutive_errors=NEVER_APPLY)


def poison_if_nonfinite(loss: jax.Array, grads):
  """grads, or NaN everywhere when the scalar `loss` is not finite, so that skip_nonfinite also skips a
  step whose loss is Inf / NaN while its gradients happen to be finite (e.g. an Inf in a stop-gradient
  normaliser)."""
  ok = jnp.isfinite(loss)
  return jax.tree.map(lambda g: jnp.where(ok, g, jnp.asarray(jnp.nan, g.dtype)), grads)


def _find_state(opt_state) -> optax.ApplyIfFiniteState:
  found = [s for s in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, optax.ApplyIfFiniteState))
           if isinstance(s, optax.ApplyIfFiniteState)]
  if len(found) != 1:
    raise ValueError(f"expected one optax.ApplyIfFiniteState in the optimizer state (skip_nonfinite), found "
                     f"{len(found)}")
  return found[0]


def counts(opt_state) -> dict:
  """{nonfinite_skipped: steps skipped so far, nonfinite_consecutive: skipped in a row up to this step},
  int32 scalars read from the skip_nonfinite state inside `opt_state` (works inside jit)."""
  state = _find_state(opt_state)
  return {SKIPPED: state.total_notfinite, CONSECUTIVE: state.notfinite_count}


def step_was_finite(opt_state) -> jax.Array:
  """bool scalar: whether the update that produced `opt_state` was applied (its gradients were finite). The
  train step keeps the old model state (BatchNorm statistics) when it was not (works inside jit)."""
  return _find_state(opt_state).last_finite


def nonfinite_parts(metrics: dict, keys=("loss", "loss_cls", "loss_box", "loss_aux")) -> list[str]:
  """The loss parts among `keys` whose host value in `metrics` is NaN or Inf."""
  return [k for k in keys if k in metrics and not math.isfinite(float(metrics[k]))]


class NonfiniteError(RuntimeError):
  """Raised by the loop with NonfiniteGuard's message: entry points print it without a stack trace."""


class NonfiniteGuard:
  """Host-side stopping rule: `check(step, metrics)` with the host metrics of one train step (after
  jax.device_get) returns the stop message once `max_steps` steps in a row were skipped, else None.
  max_steps <= 0 never stops (the steps are still skipped and counted)."""

  def __init__(self, max_steps: int = 5):
    self.max_steps = int(max_steps)

  def check(self, step: int, metrics: dict) -> str | None:
    consecutive = int(metrics[CONSECUTIVE])
    if self.max_steps <= 0 or consecutive < self.max_steps:
      return None
    parts = nonfinite_parts(metrics)
    which = ", ".join(f"{k}={float(metrics[k])}" for k in parts) if parts else "the loss is finite: a gradient is not"
    return (f"Stopping at step {step}: {consecutive} steps in a row had a non-finite loss or gradient "
            f"({which}; {int(metrics[SKIPPED])} skipped in all); their updates were skipped, so the parameters are "
            f"those of step {step - consecutive} (train.max_nonfinite_steps={self.max_steps}).")
