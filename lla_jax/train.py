"""The training loop: a jitted sharded train step with donated state, orbax checkpoints with
auto-resume, metrics and a progress line, and an optional periodic evaluation (a callback the
caller hands in) that keeps the best checkpoint by val MR, evaluation at the end.

The step runs on the global batch over a `data` mesh of every device of every process
(lla_jax/sharding.py): the same loss, normalisers and BatchNorm statistics on 1 device or 8 x N.
The optimizer and schedule are lla_jax/optim.py's, the state lla_jax/train_state.py's.
"""
from __future__ import annotations

from typing import Callable

import jax
import numpy as np
import optax
from absl import logging
from jax.experimental import multihost_utils

import data_pipelines
from lla_jax import checkpointing, optim, sharding, writers
from lla_jax.methods import get_method
from lla_jax.train_state import TrainState, create_train_state


def make_train_step(method, tx, schedule, mesh, state_sharding=None):
  """jit(train_step) over the mesh: state donated and laid out as `state_sharding` (a pytree of
  NamedShardings like the state, or one for all; default replicated), batch sharded on `data`."""
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
  state_sharding = repl if state_sharding is None else state_sharding
  return jax.jit(train_step, in_shardings=(state_sharding, data, repl), out_shardings=(state_sharding, repl),
                 donate_argnums=(0,))


def train_rng(config, mesh):
  """The replicated base key of the train step (folded with the step inside), a global array."""
  return jax.jit(lambda: jax.random.key(config.seed + 1), out_shardings=sharding.replicated(mesh))()


def global_metric(metrics, key: str) -> float:
  """metrics[key] from process 0 (evaluate returns metrics there only) on every process; nan if absent."""
  value = np.float64(np.nan)
  if metrics is not None and metrics.get(key) is not None:
    value = np.float64(metrics[key])
  if jax.process_count() > 1:
    value = multihost_utils.broadcast_one_to_all(value)
  return float(value)


def train_and_evaluate(config, workdir: str, evaluate_fn: Callable | None = None):
  """Trains `config` in `workdir`, resuming from its latest checkpoint, evaluating every
  train.eval_every steps (keeping the best state by val MR in workdir/best) and at the end
  (train.eval_after_train). Returns the last evaluation's metrics (None without one).

  evaluate_fn(state=, method=, mesh=, writer=) -> metrics dict on process 0 (None elsewhere) with at
  least "MR" (and "AP", "Recall", "JI" for the best checkpoint's record): the evaluation the loop runs,
  e.g. `functools.partial(lla_jax.evaluate.evaluate, config, workdir)` (lla_jax/cli.py wires it).
  Without it the loop only trains.
  """
  method = get_method(config)
  mesh = sharding.make_mesh()
  tr = config.train
  scaled = optim.scaled_train_config(tr)
  total, ckpt_every, eval_every = scaled["steps"], scaled["checkpoint_every"], scaled["eval_every"]
  if evaluate_fn is None:
    eval_every = 0
  state, tx, schedule = create_train_state(config, method, mesh)
  checkpoints = checkpointing.Checkpoints(workdir, tr.keep_checkpoints)
  start = checkpoints.latest_step() or 0
  if start:
    state = checkpoints.restore(state)
    logging.info("resumed from %s at step %d", checkpoints.directory, start)
    if jax.process_index() == 0:
      print(f"Resuming from checkpoint step {start} in {checkpoints.directory}", flush=True)
  train_step = make_train_step(method, tx, schedule, mesh, jax.tree.map(lambda x: x.sharding, state))
  writer = writers.MetricWriter(workdir)
  best = checkpointing.BestCheckpoint(workdir) if eval_every else None

  def evaluate_and_keep_best(step):
    result = evaluate_fn(state=state, method=method, mesh=mesh, writer=writer)
    if best is not None and best.update(step, global_metric(result, "MR"), state,
                                        extra={k: result[k] for k in ("AP", "Recall", "JI")} if result else None):
      if jax.process_index() == 0:
        print(f"New best val MR {100 * best.value:.2f} at step {step}: saved to {best.checkpoints.directory}", flush=True)
    return result

  if start < total:
    # The input order depends on the step we start from, so a resumed run sees fresh batches.
    train_iter, _ = data_pipelines.create_dataset(
        config.data, split=config.data.train_split, batch_size=sharding.local_batch_size(tr.batch_size, mesh),
        train=True, seed=config.seed + start, process_index=jax.process_index(), process_count=jax.process_count())
    progress = writers.Progress(total, tr.batch_size, start)
    rng = train_rng(config, mesh)
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
      if eval_every and step % eval_every == 0 and not (step == total and tr.eval_after_train):
        evaluate_and_keep_best(step)
  checkpoints.close()
  result = evaluate_and_keep_best(total) if tr.eval_after_train and evaluate_fn is not None else None
  if best is not None:
    best.close()
  writer.close()
  return result
