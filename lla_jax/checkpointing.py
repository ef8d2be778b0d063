"""The only place that knows orbax: atomic, keep-N checkpoints of the whole train state under
`workdir/checkpoints`, restorable onto any mesh (the restore target carries the new shardings)."""
from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


class Checkpoints:
  """A CheckpointManager for one workdir. Orbax writes each step to a temporary folder and renames
  it when complete, so an interrupted save never leaves a readable half-written checkpoint."""

  def __init__(self, workdir: str, keep: int = 3):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
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
    """Restores `step` (default latest) shaped and sharded like the pytree `target`."""
    step = self.latest_step() if step is None else step
    if step is None or step not in self.all_steps():
      raise FileNotFoundError(f"no checkpoint for step {step} in {self.directory}; have {self.all_steps()}")
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
                            target)
    return self.manager.restore(step, args=ocp.args.StandardRestore(abstract))

  def close(self):
    self.manager.close()
