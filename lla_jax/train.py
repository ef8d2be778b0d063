"""The training loop: optax chain, a jitted sharded train step with donated state, orbax
checkpoints with auto-resume, metrics and a progress line, optional periodic evaluation that keeps
the best checkpoint by val MR, evaluation at the end.

The step runs on the global batch over a `data` mesh of every device of every process
(lla_jax/sharding.py): the same loss, normalisers and BatchNorm statistics on 1 device or 8 x N.
"""
from __future__ import annotations

import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from jax.experimental import multihost_utils

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
  steps, lr_steps and the checkpoint and evaluation periods / ratio; warmup unchanged (lla.md §9)."""
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
  """SGD with momentum (or Adam), weight decay on the method's decay mask, frozen params untouched."""
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
  return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels), schedule


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


def state_layout(config, mesh, tree):
  """NamedShardings for a state pytree (arrays or ShapeDtypeStructs): `config.train.param_sharding`
  'replicated' (data parallel) or 'fsdp' (arrays of >= train.fsdp_min_size elements split over `data`)."""
  tr = config.train
  return sharding.tree_sharding(mesh, tree, tr.get("param_sharding", "replicated"), tr.get("fsdp_min_size", 1 << 16))


def train_rng(config, mesh):
  """The replicated base key of the train step (folded with the step inside), a global array."""
  return jax.jit(lambda: jax.random.key(config.seed + 1), out_shardings=sharding.replicated(mesh))()


@functools.lru_cache(maxsize=8)
def _jitted_init(init, input_hw, seed, prng_impl):
  """jit(method.init) for one input shape, seed and PRNG implementation, compiled once per process:
  initialisers compile slowly on CPU, and tests build states on several meshes from one method."""
  return jax.jit(lambda: init(jax.random.key(seed, impl=prng_impl), input_hw))


def create_train_state(config, method, mesh):
  """Initial state laid out on the mesh (state_layout), with pretrained weights if configured. Every
  process computes the same initial values and fills its own devices' slices of the global arrays."""
  # The PRNG implementation in effect (jax.default_prng_impl) is part of the cache key: a cached trace
  # would otherwise keep the implementation of its first call.
  variables = _jitted_init(method.init, tuple(config.data.pad_size), config.seed, jax.config.jax_default_prng_impl)()
  pretrained = config.model.backbone.get("pretrained")
  if pretrained:
    from lla_jax import weights
    # load_variables: BN statistics (MobileNet) as well as params, and the pixel convention checked.
    variables, report = weights.load_variables(variables, pretrained, config.model, data_cfg=config.data)
    logging.info("pretrained weights from %s: %s", pretrained, report)
  params = variables["params"]
  model_state = {k: v for k, v in variables.items() if k != "params"}
  params = sharding.place(params, state_layout(config, mesh, params))
  model_state = sharding.place(model_state, state_layout(config, mesh, model_state))
  tx, schedule = make_optimizer(config, method, params)
  opt_init = method.update_init if method.update is not None else tx.init
  # Optimizer state is built in place, with the layout of the final shardings.
  opt_state = jax.jit(opt_init, out_shardings=state_layout(config, mesh, jax.eval_shape(opt_init, params)))(params)
  step = sharding.place(np.zeros((), np.int32), sharding.replicated(mesh))
  return TrainState(step=step, params=params, opt_state=opt_state, model_state=model_state), tx, schedule


def abstract_train_state(config, method, mesh):
  """The TrainState's shapes, dtypes and shardings on `mesh` without computing anything: the target for
  restoring a checkpoint onto this mesh (Checkpoints.restore), whatever topology wrote it."""
  shapes = jax.eval_shape(lambda: create_train_state(config, method, mesh)[0])   # eval_shape drops shardings
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), shapes,
                      state_layout(config, mesh, shapes))


def global_metric(metrics, key: str) -> float:
  """metrics[key] from process 0 (evaluate returns metrics there only) on every process; nan if absent."""
  value = np.float64(np.nan)
  if metrics is not None and metrics.get(key) is not None:
    value = np.float64(metrics[key])
  if jax.process_count() > 1:
    value = multihost_utils.broadcast_one_to_all(value)
  return float(value)


def train_and_evaluate(config, workdir: str):
  """Trains `config` in `workdir`, resuming from its latest checkpoint, evaluating every
  train.eval_every steps (keeping the best state by val MR in workdir/best), then evaluates."""
  import data_pipelines

  method = get_method(config)
  mesh = sharding.make_mesh()
  tr = config.train
  scaled = scaled_train_config(tr)
  total, ckpt_every, eval_every = scaled["steps"], scaled["checkpoint_every"], scaled["eval_every"]
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
    from lla_jax import evaluate
    result = evaluate.evaluate(config, workdir, state=state, method=method, mesh=mesh, writer=writer)
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
  result = evaluate_and_keep_best(total) if tr.eval_after_train else None
  if best is not None:
    best.close()
  writer.close()
  return result
