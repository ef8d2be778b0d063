"""The train state: what it holds, how it is laid out on the mesh, how it is created (with
pretrained weights when configured) and its abstract shape (the restore target of a checkpoint)."""
from __future__ import annotations

import functools
from typing import Any

import flax.struct
import jax
import numpy as np
from absl import logging

from lla_jax import checkpointing, optim, sharding, weights


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  model_state: Any   # non-trainable variables, e.g. {'batch_stats': ...}; {} for frozen-BN models


def state_layout(config, mesh, tree):
  """NamedShardings for a state pytree (arrays or ShapeDtypeStructs): `config.train.param_sharding`
  'replicated' (data parallel) or 'fsdp' (arrays of >= train.fsdp_min_size elements split over `data`)."""
  tr = config.train
  return sharding.tree_sharding(mesh, tree, tr.get("param_sharding", "replicated"), tr.get("fsdp_min_size", 1 << 16))


@functools.lru_cache(maxsize=8)
def _jitted_init(init, input_hw, seed, prng_impl):
  """jit(method.init) for one input shape, seed and PRNG implementation, compiled once per process:
  initialisers compile slowly on CPU, and tests build states on several meshes from one method."""
  return jax.jit(lambda: init(jax.random.key(seed, impl=prng_impl), input_hw))


def create_train_state(config, method, mesh):
  """(TrainState, optax transformation, schedule): the initial state laid out on the mesh
  (state_layout), with pretrained weights if configured. Every process computes the same initial
  values and fills its own devices' slices of the global arrays."""
  # The PRNG implementation in effect (jax.default_prng_impl) is part of the cache key: a cached trace
  # would otherwise keep the implementation of its first call.
  variables = _jitted_init(method.init, tuple(config.data.pad_size), config.seed, jax.config.jax_default_prng_impl)()
  pretrained = config.model.backbone.get("pretrained")
  if pretrained:
    # load_variables: BN statistics (MobileNet) as well as params, and the pixel convention checked.
    variables, report = weights.load_variables(variables, pretrained, config.model, data_cfg=config.data)
    logging.info("pretrained weights from %s: %s", pretrained, report)
  params = variables["params"]
  model_state = {k: v for k, v in variables.items() if k != "params"}
  params = sharding.place(params, state_layout(config, mesh, params))
  model_state = sharding.place(model_state, state_layout(config, mesh, model_state))
  tx, schedule = optim.make_optimizer(config, method, params)
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


def restore_train_state(config, workdir: str, method, mesh, step=None, mode: str = "eval"):
  """The checkpoint `step` (default latest) of `workdir`, restored onto `mesh` (--mode=eval / predict)."""
  state = abstract_train_state(config, method, mesh)   # restore target; nothing computed
  checkpoints = checkpointing.Checkpoints(workdir, config.train.keep_checkpoints)
  if checkpoints.latest_step() is None:
    raise FileNotFoundError(f"--mode={mode}: no checkpoint in {checkpoints.directory}; train first "
                            f"(python main.py --config=... --workdir={workdir}) or convert released weights "
                            f"(--mode=convert --config.convert.source=FILE)")
  state = checkpoints.restore(state, step)
  checkpoints.close()
  return state
