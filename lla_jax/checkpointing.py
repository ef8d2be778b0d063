"""The only place that knows orbax: atomic, keep-N checkpoints of the whole train state (step,
parameters, optimizer state, model state) under `workdir/checkpoints`, and the best-by-metric
checkpoint under `workdir/best`.

Checkpoints are topology-free: each process writes the slices its devices hold, and a restore
reads them back onto whatever mesh the restore target lives on (its shardings), so a run saved on
8 devices / 2 hosts resumes on 1 device / 1 host and the reverse, replicated or FSDP-sharded.

Crash safety (kill -9 at any moment, a save included): orbax writes step N into
`N.orbax-checkpoint-tmp-<time>` and renames it to `N` only after every file, the step metadata and
`commit_success.txt` are written (orbax _src/path/atomicity.py, AtomicRenameTemporaryPath; a rename
is atomic on a POSIX file system). A folder with the temporary suffix is never listed as a step, so
`latest_step` is the last complete save; the first save of the next run deletes such leftovers (a reader,
e.g. an evaluation beside a running training, leaves them: one may be the training's save). A step folder
that is complete by name but cannot be restored (damaged files, a config that no longer matches)
raises CheckpointError naming it and the newest older checkpoint that does restore.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time

import jax
import orbax.checkpoint as ocp

from lla_jax import sharding, writers

# Test hook: LLA_TEST_PAUSE_IN_SAVE="<step>:<marker path>" makes the save of <step> write <marker path>
# (the temporary folder orbax is writing) and sleep inside the write, after the files are written and
# before orbax renames the folder, so that a test can kill -9 the process there.
PAUSE_IN_SAVE_ENV = "LLA_TEST_PAUSE_IN_SAVE"


class CheckpointError(RuntimeError):
  """A checkpoint folder that cannot be restored. The message names it and the last good checkpoint:
  entry points print it without a stack trace."""


def _pause_in_save_hook(checkpoints: "Checkpoints"):
  """The post-finalization callback of the pause test hook (None when the hook is off). Orbax calls it
  in its writing thread after every file of the step is in the temporary folder, before the rename."""
  value = os.environ.get(PAUSE_IN_SAVE_ENV)
  if not value:
    return None
  step, sep, marker = value.partition(":")
  if not sep or not step.isdigit() or not marker:
    raise ValueError(f"{PAUSE_IN_SAVE_ENV}={value!r}: expected '<step>:<marker path>'")

  def pause():
    if checkpoints.saving_step != int(step):
      return
    pending = sorted(f for f in os.listdir(checkpoints.directory) if ocp.utils.TMP_DIR_SUFFIX in f)
    writers.write_json_atomic(marker, {"step": int(step), "pid": os.getpid(), "temporary": pending})
    while True:        # until the test kills the process
      time.sleep(60)
  return pause


class Checkpoints:
  """A CheckpointManager for `workdir/subdir` (see the module docstring for what survives a crash). Every
  process must call save / restore (they are collective in a multi-host run)."""

  def __init__(self, workdir: str, keep: int = 3, subdir: str = "checkpoints"):
    self.directory = os.path.abspath(os.path.join(workdir, subdir))
    self.saving_step = None
    self._leftovers_removed = False
    pause = _pause_in_save_hook(self)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True,
        **({"async_options": ocp.AsyncOptions(post_finalization_callback=pause)} if pause else {}))
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self):
    """The newest complete checkpoint's step (interrupted saves are not listed), or None."""
    return self.manager.latest_step()

  def all_steps(self):
    return list(self.manager.all_steps())

  def path(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def save(self, step: int, state, wait: bool = True) -> None:
    """Saves `state` as `step`. wait=False returns once the arrays are copied to host memory (the state
    may then be donated or overwritten) and orbax writes in a background thread; the next save, restore,
    wait_until_finished or close waits for it. Either way the step appears on disk only when complete."""
    self.manager.wait_until_finished()
    self._remove_interrupted_saves()
    self.saving_step = int(step)
    self.manager.save(step, args=ocp.args.StandardSave(state), force=True)
    if wait:
      self.manager.wait_until_finished()

  def _remove_interrupted_saves(self) -> None:
    """Deletes the temporary folders that killed saves left (never listed as steps), once, before this
    writer's first save; process 0 does it before orbax's own barriers in save."""
    if self._leftovers_removed:
      return
    self._leftovers_removed = True
    if jax.process_index() == 0:
      for name in os.listdir(self.directory):
        if ocp.utils.TMP_DIR_SUFFIX in name:
          shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)

  def wait_until_finished(self) -> None:
    self.manager.wait_until_finished()

  def restore(self, target, step=None):
    """Restores `step` (default latest) shaped, typed and sharded like the pytree `target` (arrays, or
    ShapeDtypeStructs as from train.abstract_train_state): the target's mesh, not the saving run's,
    decides the layout. A checkpoint that cannot be restored raises CheckpointError naming it and the
    newest older checkpoint that restores into `target` (tried one by one: collective, like restore)."""
    self.manager.wait_until_finished()
    step = self.latest_step() if step is None else step
    if step is None or step not in self.all_steps():
      raise FileNotFoundError(f"no checkpoint for step {step} in {self.directory}; have {self.all_steps()}")
    # A leaf without a sharding (e.g. from jax.eval_shape) is restored replicated on all devices, never in
    # the saving run's layout, which may name devices this process does not have.
    fallback = sharding.replicated(sharding.make_mesh())
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None) or fallback), target)
    try:
      return self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
    except Exception as error:   # orbax / tensorstore raise many types for damaged or mismatched files
      raise CheckpointError(self._unreadable_message(step, abstract, error)) from error

  def _unreadable_message(self, step, abstract, error) -> str:
    reason = " ".join(f"{type(error).__name__}: {error}".split()).split(" [tensorstore_spec=")[0]
    if len(reason) > 600:
      reason = reason[:600] + " ..."
    message = f"checkpoint {self.path(step)} cannot be restored ({reason}). "
    for older in sorted((s for s in self.all_steps() if s < step), reverse=True):
      try:
        self.manager.restore(older, args=ocp.args.StandardRestore(abstract))
      except Exception:   # this one is damaged too: try the next older one
        continue
      return message + (f"The last good checkpoint is {self.path(older)} (step {older}): move {self.path(step)} "
                        f"(and any newer step folder) out of {self.directory} to resume from it.")
    return message + (f"No older checkpoint in {self.directory} restores either (have {self.all_steps()}): if the "
                      "config changed, use the config of the run that wrote them, or move them away to start again.")

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
