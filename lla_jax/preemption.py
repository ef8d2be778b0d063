"""Pre-emption: SIGTERM (what SLURM and Kubernetes send before a kill) or SIGINT (Ctrl-C) during
training asks the loop to finish the step it is on, write a checkpoint, say where it is and exit 0;
the same command then resumes from it.

The handler only records the request. The loop asks `should_stop(step)` after each step; in a
multi-host run all processes must stop after the same step (a checkpoint save is collective), so
the processes agree by an all-gather of their flags (jax.experimental.multihost_utils). To keep
that host synchronisation off the step path, it happens only every `every` steps (the loop passes
its log interval: it synchronises there anyway to read the metrics), at the last step, and never in
a single-process run, which reads its own flag each step. The stop then comes at most `every - 1`
steps after the signal: choose `every` so that this fits the launcher's grace period (SLURM's
KillWait, 30 s by default; Kubernetes' terminationGracePeriodSeconds, 30 s by default).

A second SIGINT aborts at once (KeyboardInterrupt), for a user who does not want to wait.

  with preemption.StopRequest() as stop:
    for step in ...:
      state = train_step(...)
      if stop.should_stop(step, every=log_every, last=step == total):
        save(step); print(stop.message(step, path)); break
"""
from __future__ import annotations

import signal
import sys
import threading

import jax
import numpy as np
from jax.experimental import multihost_utils

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
  """Context manager installing the SIGTERM / SIGINT handlers (restoring the previous ones on exit).
  Handlers can only be installed from the main thread; elsewhere it records nothing and says so in
  `installed`."""

  def __init__(self, signals=SIGNALS):
    self.signals = tuple(signals)
    self.signal_name = None       # the first signal received by this process, e.g. "SIGTERM"
    self.installed = False
    self._previous = {}

  @property
  def requested(self) -> bool:
    """Whether this process received a stop signal (its own flag, not the agreed one)."""
    return self.signal_name is not None

  def _handle(self, signum, frame):
    del frame
    name = signal.Signals(signum).name
    if self.requested and signum == signal.SIGINT:
      raise KeyboardInterrupt      # the second Ctrl-C: stop now, without a checkpoint
    if not self.requested:
      self.signal_name = name
      print(f"{name} received: finishing the current step, then writing a checkpoint and exiting"
            + (" (Ctrl-C again to abort at once)" if signum == signal.SIGINT else ""), file=sys.stderr, flush=True)

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for s in self.signals:
        self._previous[s] = signal.signal(s, self._handle)
      self.installed = True
    return self

  def __exit__(self, *exc):
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    self._previous.clear()
    self.installed = False
    return False

  def should_stop(self, step: int, every: int = 1, last: bool = False) -> bool:
    """Whether to stop after `step`, the same answer on every process. Single process: this process's
    flag. Several: collective (every process must call it with the same step) and, except when `last`,
    False without communicating unless step % every == 0; then True if any process received a signal."""
    if jax.process_count() == 1:
      return self.requested
    if not last and step % max(int(every), 1):
      return False
    flags = multihost_utils.process_allgather(np.asarray(self.requested, np.int32))
    return bool(np.any(flags))

  def message(self, step: int, checkpoint: str) -> str:
    """The line the loop prints after writing the checkpoint it stopped at."""
    by = self.signal_name or "a stop signal on another process"
    return (f"Stopped by {by} after step {step}: checkpoint saved to {checkpoint}. "
            "Run the same command again to resume from it.")
