"""The training loop: a jitted sharded train step with donated state, orbax checkpoints with
auto-resume, metrics and a progress line, and an optional periodic evaluation (a callback the
caller hands in) that keeps the best checkpoint by val MR, evaluation at the end.

The step runs on the global batch over a `data` mesh of every device of every process
(lla_jax/sharding.py): the same loss, normalisers and BatchNorm statistics on 1 device or 8 x N.
The optimizer and schedule are lla_jax/optim.py's, the state lla_jax/train_state.py's.

Safe to interrupt:
  * Non-finite losses (lla_jax/nonfinite.py): the update of a step whose loss or gradients are NaN / Inf
    is skipped (optax.apply_if_finite around the optimizer), the BatchNorm statistics of that step are
    dropped too, the metrics count the skipped steps (train/nonfinite_skipped, .._consecutive) and the
    progress line shows them; after train.max_nonfinite_steps in a row the run stops with NonfiniteError.
    No checkpoint is written while the last step was skipped, so the keep-N rotation never evicts the
    last good one.
  * SIGTERM / SIGINT (lla_jax/preemption.py): the loop finishes the step, writes a checkpoint, prints
    where it is and returns; the same command resumes from it. Multi-host: the processes agree on the
    stop step every train.log_every steps.
  * Resuming continues the input stream: the pipeline skips the batches the checkpoint has seen, so an
    interrupted and resumed run trains on the same batches, in the same order, as an uninterrupted one.

Throughput: the next batches are already on the device while a step runs (prefetch_to_device, depth 2);
the host reads a step's metrics one step late, while the next step runs (the non-finite guard and the
log line of step s come after step s + 1 is dispatched); checkpoints are written asynchronously (orbax's
thread, atomic as ever) and awaited before an evaluation, a pre-emption exit and the end;
train.profile_steps = (first, last) writes a jax.profiler trace of those steps into workdir/profile.
"""
from __future__ import annotations

import collections
import os
from typing import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

import data_pipelines
from lla_jax import checkpointing, nonfinite, optim, preemption, sharding, writers
from lla_jax.methods import get_method
from lla_jax.train_state import TrainState, create_train_state

# The progress line shows the loss and every loss part a method reports ("loss_*"), these first.
PROGRESS_KEYS = ("loss", "loss_cls", "loss_box", "loss_aux")


def make_train_step(method, tx, schedule, mesh, state_sharding=None, nan_at_steps=()):
  """jit(train_step) over the mesh: state donated and laid out as `state_sharding` (a pytree of
  NamedShardings like the state, or one for all; default replicated), batch sharded on `data`.

  `tx` is make_optimizer's transformation (optim.skip_nonfinite: optax.apply_if_finite): a step whose loss or
  gradients are not finite leaves the parameters, the optimizer state and the model state (BatchNorm
  statistics) as they were, and only the step counter and the skip counts move. The metrics hold the
  method's losses, "lr" and nonfinite.counts. `nan_at_steps` (config.train.test_nan_at_steps, for tests
  only): 1-based steps whose loss is replaced by NaN."""
  nan_at = tuple(int(s) for s in nan_at_steps)

  def train_step(state: TrainState, batch: dict, rng):
    rng = jax.random.fold_in(rng, state.step)
    if method.update is not None:   # e.g. ALFNet's alternating update: it skips non-finite batches itself
      params, opt_state, model_state, metrics = method.update(state.params, state.opt_state, state.model_state, batch,
                                                              rng)
    else:
      grad_fn = jax.value_and_grad(method.loss, has_aux=True)
      (loss, (metrics, model_state)), grads = grad_fn(state.params, state.model_state, batch, rng)
      if nan_at:   # test-only switch: a NaN loss at the chosen steps
        loss = jnp.where(jnp.any(jnp.asarray(nan_at) == state.step + 1), jnp.nan, loss)
      params, opt_state = optim.apply_skipping(tx, grads, state.opt_state, state.params, loss)
      metrics = dict(metrics, loss=loss, lr=schedule(state.step))
    finite = nonfinite.step_was_finite(opt_state)
    model_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), model_state, state.model_state)
    metrics = dict(metrics, **nonfinite.counts(opt_state))
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state, model_state=model_state), metrics

  repl, data = sharding.replicated(mesh), sharding.data_sharding(mesh)
  state_sharding = repl if state_sharding is None else state_sharding
  return jax.jit(train_step, in_shardings=(state_sharding, data, repl), out_shardings=(state_sharding, repl),
                 donate_argnums=(0,))


def train_rng(config, mesh):
  """The replicated base key of the train step (folded with the step inside), a global array."""
  return jax.jit(lambda: jax.random.key(config.seed + 1), out_shardings=sharding.replicated(mesh))()


def prefetch_to_device(batches: Iterator[dict], mesh, depth: int = 2) -> Iterator[dict]:
  """The numpy batches of `batches` as global arrays sharded on `data` (sharding.shard_batch), `depth`
  batches ahead: the transfers are started (jax.device_put is asynchronous) before the step that uses
  them is dispatched, so the host copy overlaps the running step. Order and values unchanged."""
  queue = collections.deque()
  while True:
    while len(queue) < depth:
      batch = next(batches, None)
      if batch is None:
        break
      queue.append(sharding.shard_batch(batch, mesh))
    if not queue:
      return
    yield queue.popleft()


def global_metric(metrics, key: str) -> float:
  """metrics[key] from process 0 (evaluate returns metrics there only) on every process; nan if absent."""
  value = np.float64(np.nan)
  if metrics is not None and metrics.get(key) is not None:
    value = np.float64(metrics[key])
  if jax.process_count() > 1:
    value = multihost_utils.broadcast_one_to_all(value)
  return float(value)


class Profiler:
  """A jax.profiler trace of steps first..last (config.train.profile_steps; empty: off) into `directory`."""

  def __init__(self, steps, directory: str):
    steps = tuple(int(s) for s in steps)
    if steps and (len(steps) != 2 or not 1 <= steps[0] <= steps[1]):
      raise ValueError(f"config.train.profile_steps={steps}: expected () or (first, last) with 1 <= first <= last")
    self.steps, self.directory, self.active = steps, directory, False

  def before(self, step: int) -> None:
    if self.steps and step == self.steps[0]:
      options = jax.profiler.ProfileOptions()
      options.python_tracer_level = 0   # XLA and host runtime events only: a Python trace of the loop (the data
      #                                   workers' pipes included) makes stop_trace take minutes
      jax.profiler.start_trace(self.directory, profiler_options=options)
      self.active = True

  def after(self, step: int, state, last: bool = False) -> None:
    if self.active and (step == self.steps[1] or last):
      jax.block_until_ready(state)
      jax.profiler.stop_trace()
      self.active = False
      if jax.process_index() == 0:
        print(f"Profile of steps {self.steps[0]}..{step} written to {self.directory}", flush=True)


def host_metrics(metrics) -> dict:
  """The step's metrics as host floats (waits for that step only)."""
  return {k: float(v) for k, v in jax.device_get(metrics).items()}


def progress_keys(metrics: dict) -> tuple:
  """The loss and its parts in `metrics`: PROGRESS_KEYS' order, then any other "loss_*" part by name."""
  return tuple(k for k in PROGRESS_KEYS if k in metrics) + tuple(
      sorted(k for k in metrics if k.startswith("loss_") and k not in PROGRESS_KEYS))


def progress_scalars(metrics: dict) -> dict:
  return {k: metrics[k] for k in progress_keys(metrics)}


def skipped_suffix(metrics: dict) -> str:
  """' | skipped N (M in a row)' when steps were skipped so far, else ''."""
  n = int(metrics.get(nonfinite.SKIPPED, 0))
  return f" | skipped {n} ({int(metrics[nonfinite.CONSECUTIVE])} in a row)" if n else ""


def train_and_evaluate(config, workdir: str, evaluate_fn: Callable | None = None):
  """Trains `config` in `workdir`, resuming from its latest checkpoint, evaluating every
  train.eval_every steps (keeping the best state by val MR in workdir/best) and at the end
  (train.eval_after_train). Returns the last evaluation's metrics (None without one, and None when
  a SIGTERM / SIGINT stopped the run: its checkpoint is written, the same call resumes).
  Raises nonfinite.NonfiniteError after train.max_nonfinite_steps skipped steps in a row (the message
  names the step, the loss parts and the last good checkpoint).

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
  profiler = Profiler(tr.get("profile_steps", ()), os.path.join(os.path.abspath(workdir), "profile"))
  state, tx, schedule = create_train_state(config, method, mesh)
  checkpoints = checkpointing.Checkpoints(workdir, tr.keep_checkpoints)
  start = checkpoints.latest_step() or 0
  if start:
    state = checkpoints.restore(state)
    logging.info("resumed from %s at step %d", checkpoints.directory, start)
    if jax.process_index() == 0:
      print(f"Resuming from checkpoint step {start} in {checkpoints.directory}", flush=True)
  train_step = make_train_step(method, tx, schedule, mesh, jax.tree.map(lambda x: x.sharding, state),
                               nan_at_steps=tr.get("test_nan_at_steps", ()))
  writer = writers.MetricWriter(workdir)
  best = checkpointing.BestCheckpoint(workdir) if eval_every else None

  def evaluate_and_keep_best(step, state):
    checkpoints.wait_until_finished()   # an asynchronous save reads the state the evaluation reads
    result = evaluate_fn(state=state, method=method, mesh=mesh, writer=writer)
    if best is not None and best.update(step, global_metric(result, "MR"), state,
                                        extra={k: result[k] for k in ("AP", "Recall", "JI")} if result else None):
      if jax.process_index() == 0:
        print(f"New best val MR {100 * best.value:.2f} at step {step}: saved to {best.checkpoints.directory}",
              flush=True)
    return result

  try:
    if start < total:
      # The stream continues where the checkpoint left it: the first `start` batches are skipped.
      train_iter, _ = data_pipelines.create_dataset(
          config.data, split=config.data.train_split, batch_size=sharding.local_batch_size(tr.batch_size, mesh),
          train=True, seed=config.seed, process_index=jax.process_index(), process_count=jax.process_count(),
          skip_batches=start)
      batches = prefetch_to_device(train_iter, mesh)
      state, stopped = _train_steps(tr, state, train_step, train_rng(config, mesh), batches, start, total, ckpt_every,
                                    eval_every, checkpoints, writer, profiler, evaluate_and_keep_best)
      if stopped:
        return None
    return evaluate_and_keep_best(total, state) if tr.eval_after_train and evaluate_fn is not None else None
  except nonfinite.NonfiniteError as error:
    checkpoints.wait_until_finished()
    last = checkpoints.latest_step()
    good = (f"The last good checkpoint is {checkpoints.path(last)} (step {last}); nothing was saved after it."
            if last is not None else f"No checkpoint was written to {checkpoints.directory} before it.")
    raise nonfinite.NonfiniteError(f"{error} {good}") from None
  finally:
    checkpoints.close()   # waits for an asynchronous save
    if best is not None:
      best.close()
    writer.close()



def _train_steps(tr, state, train_step, rng, batches, start, total, ckpt_every, eval_every, checkpoints, writer,
                 profiler, evaluate):
  """Steps start + 1 .. total of train_and_evaluate. Returns (state, whether a signal stopped the run).

  Step s is dispatched, then the host reads step s - 1's metrics (already done or nearly: no stall) for the
  log and the non-finite guard. A checkpoint due at step s waits for step s (its skip count decides:
  never a save right after a skipped step; it is postponed to the next finite one)."""
  progress = writers.Progress(total, tr.batch_size, start)
  guard = nonfinite.NonfiniteGuard(tr.get("max_nonfinite_steps", 5))
  chief = jax.process_index() == 0

  def report(step, metrics):
    host = host_metrics(metrics)
    if host[nonfinite.CONSECUTIVE] > 0 and chief:
      parts = ", ".join(nonfinite.nonfinite_parts(host, progress_keys(host))) or "a gradient"
      print(f"step {step}: non-finite {parts}; update skipped ({int(host[nonfinite.CONSECUTIVE])} in a row, "
            f"{int(host[nonfinite.SKIPPED])} in all)", flush=True)
    if step % tr.log_every == 0 or step == total:
      writer.write(step, host, prefix="train/")
      if chief:
        print(progress.line(step, progress_scalars(host)) + skipped_suffix(host), flush=True)
    message = guard.check(step, host)
    if message:
      raise nonfinite.NonfiniteError(message)

  pending, save_due = None, False
  with preemption.StopRequest() as stop:
    for step in range(start + 1, total + 1):
      last = step == total
      profiler.before(step)
      state, metrics = train_step(state, next(batches), rng)
      if step == start + 1:
        progress.restart_clock(step)   # exclude compilation from images/s
      if pending is not None:
        report(*pending)
      pending = (step, metrics)
      profiler.after(step, state, last)
      save_due = save_due or step % ckpt_every == 0 or last
      stopping = stop.should_stop(step, every=tr.log_every, last=last)
      evaluating = eval_every and step % eval_every == 0 and not (last and tr.eval_after_train)
      if stopping or evaluating:
        report(*pending)
        pending = None
      consecutive = int(jax.device_get(metrics[nonfinite.CONSECUTIVE])) if save_due or stopping else 0
      if (save_due or stopping) and consecutive == 0:
        checkpoints.save(step, state, wait=False)   # atomic: the step folder appears when complete
        save_due = False
      if stopping:
        profiler.after(step, state, last=True)
        checkpoints.wait_until_finished()
        if chief:
          if consecutive:
            latest = checkpoints.latest_step()
            print(f"Stopped by {stop.signal_name or 'a stop signal on another process'} after step {step} without "
                  f"a checkpoint: its last {consecutive} steps were skipped (non-finite). The last good checkpoint is "
                  f"{checkpoints.path(latest) if latest is not None else 'none'}; run the same command again to "
                  "resume from it.", flush=True)
          else:
            print(stop.message(step, checkpoints.path(step)), flush=True)
        return state, True
      if evaluating:
        evaluate(step, state)
  if pending is not None:
    report(*pending)
  if save_due and chief:
    latest = checkpoints.latest_step()
    print(f"No checkpoint at step {total}: its update was skipped (non-finite); the last good one is "
          f"{checkpoints.path(latest) if latest is not None else 'none'}", flush=True)
  return state, False
