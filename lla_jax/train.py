"""The training loop: optax chain, a jitted sharded train step with donated state, orbax
checkpoints with auto-resume, metrics and a progress line, evaluation at the end."""
from __future__ import annotations

import functools
import os
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax
from absl import logging

from lla_jax import checkpointing, sharding, writers
from lla_jax.methods import get_method


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  model_state: Any   # non-trainable variables, e.g. {'batch_stats': ...}; {} for frozen-BN models


def scaled_train_config(tr: ml_collections.ConfigDict) -> dict:
  """The cvpods linear scaling rule for a global batch B: ratio = B / reference batch; lr x ratio;
  steps, lr_steps and the checkpoint period / ratio; warmup unchanged (lla.md §9)."""
  ratio = tr.batch_size / tr.reference_batch_size if tr.scale_by_batch else 1.0
  return dict(lr=tr.base_lr * ratio, steps=int(tr.steps / ratio), lr_steps=tuple(int(s / ratio) for s in tr.lr_steps),
              checkpoint_every=max(1, int(tr.checkpoint_every / ratio)))


def learning_rate_schedule(base_lr, warmup_steps, warmup_factor, lr_steps, gamma):
  """lr(it) = base * warmup(it) * gamma^(#lr_steps <= it); warmup linear from warmup_factor."""
  def schedule(it):
    it = jnp.asarray(it, jnp.float32)
    alpha = it / max(warmup_steps, 1)
    warm = jnp.where(it < warmup_steps, warmup_factor * (1.0 - alpha) + alpha, 1.0)
    decay = gamma ** jnp.sum(jnp.asarray(lr_steps, jnp.float32).reshape(-1) <= it)
    return base_lr * warm * decay
  return schedule


def make_optimizer(config, method, params):
  """SGD with momentum (or Adam), weight decay on the method's decay mask, frozen params untouched."""
  tr = config.train
  s = scaled_train_config(tr)
  schedule = learning_rate_schedule(s["lr"], tr.warmup_steps, tr.warmup_factor, s["lr_steps"], tr.lr_gamma)
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
  return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels), schedule


def make_train_step(method, tx, schedule, mesh):
  """jit(train_step) over the mesh: state replicated and donated, batch sharded on `data`."""
  def train_step(state: TrainState, batch: dict, rng):
    rng = jax.random.fold_in(rng, state.step)
    if method.update is not None:
      params, opt_state, model_state, metrics = method.update(state.params, state.opt_state, state.model_state, batch, rng)
      return state.replace(step=state.step + 1, params=params, opt_state=opt_state, model_state=model_state), metrics
    grad_fn = jax.value_and_grad(method.loss, has_aux=True)
    (loss, (metrics, model_state)), grads = grad_fn(state.params, state.model_state, batch, rng)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(metrics, loss=loss, lr=schedule(state.step))
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state, model_state=model_state), metrics

  repl, data = sharding.replicated(mesh), sharding.data_sharding(mesh)
  return jax.jit(train_step, in_shardings=(repl, data, repl), out_shardings=(repl, repl), donate_argnums=(0,))


def create_train_state(config, method, mesh):
  """Initial state on the mesh (parameters replicated), with pretrained weights if configured."""
  variables = method.init(jax.random.key(config.seed), tuple(config.data.pad_size))
  params = variables["params"]
  model_state = {k: v for k, v in variables.items() if k != "params"}
  pretrained = config.model.backbone.get("pretrained")
  if pretrained:
    from lla_jax import weights
    params, report = weights.load_pretrained(params, pretrained, config.model)
    logging.info("pretrained weights from %s: %s", pretrained, report)
  tx, schedule = make_optimizer(config, method, params)
  opt_state = method.update_init(params) if method.update is not None else tx.init(params)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state, model_state=model_state)
  return jax.device_put(state, sharding.replicated(mesh)), tx, schedule


def train_and_evaluate(config, workdir: str):
  """Trains `config` in `workdir`, resuming from its latest checkpoint, then evaluates."""
  import data_pipelines

  method = get_method(config)
  mesh = sharding.make_mesh()
  tr = config.train
  total = scaled_train_config(tr)["steps"]
  ckpt_every = scaled_train_config(tr)["checkpoint_every"]
  state, tx, schedule = create_train_state(config, method, mesh)
  checkpoints = checkpointing.Checkpoints(workdir, tr.keep_checkpoints)
  start = checkpoints.latest_step() or 0
  if start:
    state = checkpoints.restore(state)
    logging.info("resumed from %s at step %d", checkpoints.directory, start)
    print(f"Resuming from checkpoint step {start} in {checkpoints.directory}", flush=True)
  train_step = make_train_step(method, tx, schedule, mesh)
  writer = writers.MetricWriter(workdir)
  if start < total:
    # The input order depends on the step we start from, so a resumed run sees fresh batches.
    train_iter, _ = data_pipelines.create_dataset(
        config.data, split=config.data.train_split, batch_size=sharding.local_batch_size(tr.batch_size), train=True,
        seed=config.seed + start, process_index=jax.process_index(), process_count=jax.process_count())
    progress = writers.Progress(total, tr.batch_size, start)
    rng = jax.random.key(config.seed + 1)
    for step in range(start + 1, total + 1):
      batch = sharding.shard_batch(next(train_iter), mesh)
      state, metrics = train_step(state, batch, rng)
      if step == start + 1:
        progress.restart_clock(step)   # exclude compilation from images/s
      if step % tr.log_every == 0 or step == total:
        metrics = jax.device_get(metrics)
        writer.write(step, metrics, prefix="train/")
        progress.report(step, {k: metrics[k] for k in ("loss", "loss_cls", "loss_box", "loss_aux") if k in metrics})
      if step % ckpt_every == 0 or step == total:
        checkpoints.save(step, state)
  checkpoints.close()
  result = None
  if tr.eval_after_train:
    from lla_jax import evaluate
    result = evaluate.evaluate(config, workdir, state=state, method=method, mesh=mesh, writer=writer)
  writer.close()
  return result
