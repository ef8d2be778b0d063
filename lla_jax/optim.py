"""Optimisation: the linear scaling rule, the learning-rate schedule and the optax chain.

The FCOS-family recipes are cvpods' (SGD with momentum, warmup, step decay; cvpods
cvpods/solver/lr_scheduler.py WarmupMultiStepLR, detectron2 WarmupCosineLR for the cosine switch);
ALFNet's alternating update (lla_jax/methods/alfnet.py) reads the same schedule.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax

from lla_jax import nonfinite


def scaled_train_config(tr: ml_collections.ConfigDict) -> dict:
  """The linear scaling rule for a global batch B (Goyal et al. 2017, as cvpods applies it to its
  16-image recipes): ratio = B / reference batch; lr x ratio; steps, lr_steps and the checkpoint and
  evaluation periods / ratio; warmup unchanged."""
  ratio = tr.batch_size / tr.reference_batch_size if tr.scale_by_batch else 1.0
  eval_every = tr.get("eval_every", 0)
  return dict(lr=tr.base_lr * ratio, steps=int(tr.steps / ratio), lr_steps=tuple(int(s / ratio) for s in tr.lr_steps),
              checkpoint_every=max(1, int(tr.checkpoint_every / ratio)),
              eval_every=max(1, int(eval_every / ratio)) if eval_every else 0)


def learning_rate_schedule(base_lr, warmup_steps, warmup_factor, lr_steps, gamma, kind="step", total_steps=None):
  """lr(it) = base * warmup(it) * decay(it); warmup linear from warmup_factor.

  kind "step" (the released recipes): decay = gamma^(#lr_steps <= it). kind "cosine" (detectron2's
  WarmupCosineLR): decay = (1 + cos(pi * it / total_steps)) / 2, lr_steps and gamma unused.
  """
  if kind not in ("step", "cosine"):
    raise ValueError(f"config.train.lr_schedule={kind!r}: expected 'step' or 'cosine'")
  if kind == "cosine" and not total_steps:
    raise ValueError("a cosine learning-rate schedule needs total_steps > 0")

  def schedule(it):
    it = jnp.asarray(it, jnp.float32)
    alpha = it / max(warmup_steps, 1)
    warm = jnp.where(it < warmup_steps, warmup_factor * (1.0 - alpha) + alpha, 1.0)
    if kind == "cosine":
      decay = 0.5 * (1.0 + jnp.cos(jnp.pi * jnp.minimum(it / total_steps, 1.0)))
    else:
      decay = gamma ** jnp.sum(jnp.asarray(lr_steps, jnp.float32).reshape(-1) <= it)
    return base_lr * warm * decay
  return schedule


def config_schedule(tr: ml_collections.ConfigDict):
  """learning_rate_schedule of config.train, after the linear scaling rule (scaled_train_config)."""
  s = scaled_train_config(tr)
  return learning_rate_schedule(s["lr"], tr.warmup_steps, tr.warmup_factor, s["lr_steps"], tr.lr_gamma,
                                kind=tr.get("lr_schedule", "step"), total_steps=s["steps"])


def make_optimizer(config, method, params):
  """SGD with momentum (or Adam), weight decay on the method's decay mask, frozen params untouched, the
  whole chain inside nonfinite.skip_nonfinite (optax.apply_if_finite: an update with a NaN / Inf gradient
  is skipped and counted). Returns (optax transformation, schedule)."""
  tr = config.train
  schedule = config_schedule(tr)
  kind = tr.get("optimizer", "sgd")
  if kind == "sgd":
    # PyTorch SGD semantics: grad + wd * param, then momentum, then lr.
    tx = optax.chain(optax.masked(optax.add_decayed_weights(tr.weight_decay), method.decay(params)),
                     optax.sgd(schedule, momentum=tr.momentum))
  elif kind == "adam":
    tx = optax.adam(schedule, b1=tr.get("adam_b1", 0.9), b2=tr.get("adam_b2", 0.999), eps=tr.get("adam_eps", 1e-8))
  else:
    raise ValueError(f"config.train.optimizer={kind!r}: expected 'sgd' or 'adam'")
  if tr.get("grad_clip", 0.0):
    tx = optax.chain(optax.clip_by_global_norm(tr.grad_clip), tx)
  labels = jax.tree.map(lambda t: "train" if t else "frozen", method.trainable(params))
  tx = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)
  return skip_nonfinite(tx), schedule


class _SkippingUpdate:
  """The update function of skip_nonfinite(tx): callable as an optax update, plus `apply`."""

  def __init__(self, tx: optax.GradientTransformation):
    self.inner = tx
    # apply_if_finite around a transformation that returns what `apply` computed outside the library's cond.
    self.guard = nonfinite.skip_nonfinite(optax.GradientTransformationExtraArgs(
        init=tx.init, update=lambda updates, state, params=None, computed=None: computed))

  def __call__(self, grads, state, params=None):
    return self.guard.update(grads, state, params, computed=self.inner.update(grads, state.inner_state, params))

  def apply(self, grads, state, params, loss=None):
    """(params, state) after one step: params + the inner update where every gradient and `loss` are finite,
    else the old params; state as __call__ gives it. The loss is checked with the gradients by the same
    apply_if_finite (not by poisoning the gradients with a select, which changes XLA's fusion of the
    backward pass and so the numbers of every finite step)."""
    updates, inner_state = self.inner.update(grads, state.inner_state, params)
    candidate = optax.apply_updates(params, updates)
    checked = (grads, loss)
    _, state = self.guard.update(checked, state, params, computed=(checked, inner_state))
    finite = nonfinite.step_was_finite(state)
    return jax.tree.map(lambda new, old: jnp.where(finite, new, old), candidate, params), state


def skip_nonfinite(tx: optax.GradientTransformation) -> optax.GradientTransformation:
  """nonfinite.skip_nonfinite(tx) (optax.apply_if_finite: the same state, decisions and counts) whose inner
  update is computed outside the library's lax.cond and only selected inside it. With
  `apply_skipping` the new parameters are also computed outside it: XLA then fuses the optimizer
  arithmetic as without the wrapper, and a run without non-finite steps gives bit-identical parameters
  (inside a conditional branch the fusion differs and the parameters drift by float rounding)."""
  update = _SkippingUpdate(tx)
  return optax.GradientTransformation(update.guard.init, update)


def apply_skipping(tx: optax.GradientTransformation, grads, opt_state, params, loss=None):
  """(new params, new opt_state) of one step of skip_nonfinite's `tx`, skipped when a gradient or the scalar
  `loss` is not finite (for any other optax `tx`: a plain step)."""
  if isinstance(tx.update, _SkippingUpdate):
    return tx.update.apply(grads, opt_state, params, loss)
  updates, opt_state = tx.update(nonfinite.poison_if_nonfinite(loss, grads) if loss is not None else grads,
                                 opt_state, params)
  return optax.apply_updates(params, updates), opt_state
