"""The only place that knows meshes: a 1-D `data` mesh over all devices of all processes, the batch
sharded along it, parameters replicated (data parallelism) or, for large backbones, split along
their largest axis over the same devices (FSDP / ZeRO-3 style: XLA gathers them for the forward
pass and reduce-scatters the gradients).

Arrays are global: `jnp.sum` over the batch axis of a sharded array is the sum over every device
and host, so loss normalisers (num_fg) and batch statistics (BatchNorm) are global without any
collective code, and a step gives the same answer on any number of devices.
"""
from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA = "data"
PARAM_SHARDINGS = ("replicated", "fsdp")


def make_mesh(devices=None) -> Mesh:
  """A mesh with one `data` axis over `devices` (default: every device of every process)."""
  return Mesh(np.asarray(devices if devices is not None else jax.devices()), (DATA,))


def data_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over `data`."""
  return NamedSharding(mesh, P(DATA))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def fsdp_spec(shape, num_shards: int, min_size: int) -> P:
  """The FSDP partition of one array: its largest axis divisible by `num_shards` (the last such axis on
  a tie) split over `data`, for arrays of at least `min_size` elements; smaller arrays, scalars and
  arrays with no divisible axis stay replicated."""
  if num_shards == 1 or not shape or math.prod(shape) < min_size:
    return P()
  divisible = [a for a in range(len(shape)) if shape[a] % num_shards == 0]
  if not divisible:
    return P()
  axis = max(divisible, key=lambda a: (shape[a], a))
  return P(*([None] * axis), DATA)


def tree_sharding(mesh: Mesh, tree, mode: str = "replicated", min_size: int = 1 << 16):
  """NamedShardings for every array leaf of `tree` (arrays or ShapeDtypeStructs): all replicated, or
  `mode='fsdp'` (fsdp_spec per leaf; optimizer moments get the layout of their parameter because the rule
  depends only on the shape)."""
  if mode not in PARAM_SHARDINGS:
    raise ValueError(f"config.train.param_sharding={mode!r}: expected one of {PARAM_SHARDINGS}")
  n = mesh.shape[DATA]

  def leaf(x):
    if mode == "replicated":
      return replicated(mesh)
    return NamedSharding(mesh, fsdp_spec(tuple(np.shape(x)), n, min_size))

  return jax.tree.map(leaf, tree)


def place(tree, shardings):
  """Puts a pytree of host or single-device values that every process holds in full (initial or loaded
  weights) onto global arrays with `shardings` (a pytree like `tree`, or one sharding for all). In a
  multi-host run each process fills only its own devices' slices, from its own copy."""
  if jax.process_count() == 1:
    return jax.device_put(tree, shardings)
  if isinstance(shardings, jax.sharding.Sharding):
    shardings = jax.tree.map(lambda _: shardings, tree)

  def leaf(value, sharding):
    if isinstance(value, jax.core.Tracer):   # under jax.eval_shape (abstract restore templates)
      return jax.device_put(value, sharding)
    value = np.asarray(value)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

  return jax.tree.map(leaf, tree, shardings)


def shard_batch(batch: dict, mesh: Mesh) -> dict:
  """Assembles global arrays from this process's numpy batch (its share of the global batch)."""
  sharding = data_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()}


def local_batch_size(global_batch: int, mesh: Mesh | None = None) -> int:
  """This process's share of a global batch; the batch must split evenly over the devices of `mesh`
  (default: every device)."""
  n = mesh.size if mesh is not None else jax.device_count()
  if global_batch % n:
    raise ValueError(f"batch size {global_batch} (config.train.batch_size / config.test.batch_size) is not "
                     f"divisible by the {n} devices; use a multiple of {n}")
  return global_batch // jax.process_count()
