"""The only place that knows orbax: atomic, keep-N checkpoints of the whole train state (step,
parameters, optimizer state, model state) under `workdir/checkpoints`, and the best-by-metric
checkpoint under `workdir/best`.

Checkpoints are topology-free: each process writes the slices its devices hold, and a restore
reads them back onto whatever mesh the restore target lives on (its shardings), so a run saved on
8 devices / 2 hosts resumes on 1 device / 1 host and the reverse, replicated or FSDP-sharded.
"""
from __future__ import annotations

import json
import math
import os

import jax
import orbax.checkpoint as ocp

from lla_jax import sharding, writers


class Checkpoints:
  """A CheckpointManager for `workdir/subdir`. Orbax writes each step to a temporary folder and renames
  it when complete, so an interrupted save never leaves a readable half-written checkpoint. Every
  process must call save / restore (they are collective in a multi-host run)."""

  def __init__(self, workdir: str, keep: int = 3, subdir: str = "checkpoints"):
    self.directory = os.path.abspath(os.path.join(workdir, subdir))
    self.manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

  def latest_step(self):
    return self.manager.latest_step()

  def all_steps(self):
    return list(self.manager.all_steps())

  def save(self, step: int, state) -> None:
    self.manager.save(step, args=ocp.args.StandardSave(state), force=True)
    self.manager.wait_until_finished()

  def restore(self, target, step=None):
    """Restores `step` (default latest) shaped, typed and sharded like the pytree `target` (arrays, or
    ShapeDtypeStructs as from train.abstract_train_state): the target's mesh, not the saving run's,
    decides the layout."""
    step = self.latest_step() if step is None else step
    if step is None or step not in self.all_steps():
      raise FileNotFoundError(f"no checkpoint for step {step} in {self.directory}; have {self.all_steps()}")
    # A leaf without a sharding (e.g. from jax.eval_shape) is restored replicated on all devices, never in
    # the saving run's layout, which may name devices this process does not have.
    fallback = sharding.replicated(sharding.make_mesh())
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None) or fallback), target)
    return self.manager.restore(step, args=ocp.args.StandardRestore(abstract))

  def close(self):
    self.manager.close()


class BestCheckpoint:
  """The state with the lowest `metric` so far (val MR, as ALFNet's released code selects its model):
  one checkpoint in `workdir/best/` and `workdir/best.json` = {"step", metric, ...}. Survives restarts:
  the previous best is read back from best.json."""

  def __init__(self, workdir: str, metric: str = "MR"):
    self.metric = metric
    self.path = os.path.join(workdir, "best.json")
    self.checkpoints = Checkpoints(workdir, keep=1, subdir="best")
    self.step, self.value = None, math.inf
    if os.path.exists(self.path) and self.checkpoints.latest_step() is not None:
      with open(self.path) as f:
        record = json.load(f)
      if record.get("step") == self.checkpoints.latest_step():
        self.step, self.value = int(record["step"]), float(record[metric])

  def update(self, step: int, value: float, state, extra: dict | None = None) -> bool:
    """Saves `state` as the best if `value` (same on every process) is finite and lower than the best so
    far; returns whether it did. Collective: every process must call it with the same value."""
    if not math.isfinite(value) or value >= self.value or step == self.step:
      return False
    self.checkpoints.save(step, state)
    self.step, self.value = int(step), float(value)
    if jax.process_index() == 0:
      writers.write_json_atomic(self.path, {"step": self.step, self.metric: self.value, **(extra or {})})
    return True

  def close(self):
    self.checkpoints.close()
