"""The only place that knows meshes: a 1-D `data` mesh over all devices of all processes, the batch
sharded along it, parameters replicated. Arrays are global: `jnp.sum` over the batch axis of a
sharded array is the global sum, so loss normalisers (num_fg) are global without collectives."""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def make_mesh(devices=None) -> Mesh:
  """A mesh with one `data` axis over `devices` (default: every device of every process)."""
  return Mesh(np.asarray(devices if devices is not None else jax.devices()), ("data",))


def data_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over `data`."""
  return NamedSharding(mesh, P("data"))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def shard_batch(batch: dict, mesh: Mesh) -> dict:
  """Assembles global arrays from this process's numpy batch (its share of the global batch)."""
  sharding = data_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()}


def local_batch_size(global_batch: int) -> int:
  """This process's share of a global batch; the batch must split evenly over devices."""
  n = jax.device_count()
  if global_batch % n:
    raise ValueError(f"config.train.batch_size={global_batch} is not divisible by the {n} devices; "
                     f"use a multiple of {n}")
  return global_batch // jax.process_count()
