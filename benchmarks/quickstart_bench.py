"""Where the quick start's time goes: the CPU time (user + system, every thread, worker processes
included) of each phase of `python main.py --config=configs/quickstart.py` from an empty data folder,
measured phase by phase in one process, and each phase's share of the whole.

CPU time, not wall time: on a shared machine the wall clock measures the neighbours, while the CPU
seconds a phase burns are nearly the same idle or busy. On an idle machine with C cores the run's wall
time is roughly (CPU seconds) / (cores the phase keeps busy).

Phases (the order of a real run):
  imports     jax, flax, optax, orbax, TensorFlow + TFDS and the suite's modules
  data build  rendering and writing the synthetic crowds TFDS data set (worker processes included)
  setup       the train state, the input pipeline's creation (GT export, record list)
  compile     the first train step less a steady one
  step        the jitted train step alone on one device-resident batch, x train.steps
  input       the input pipeline alone (next batch + host-to-device copy), x train.steps
  checkpoint  one save, x the number of saves
  evaluation  prediction on the val split, the evaluator, table, curve and pictures

Steady phases are timed over --steps steps and scaled to the config's train.steps. A last "together"
measurement runs step and input as the loop does, to show how much the two overlap.

  python benchmarks/quickstart_bench.py [--steps 40] [--data-dir DIR (default: a fresh temporary one)]
  LLA_MALLOC=default python benchmarks/quickstart_bench.py   # glibc's default malloc (before/after)
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def cpu_now() -> tuple[float, float, int]:
  """(CPU seconds of this process and its waited-for children, wall seconds, minor page faults)."""
  t = os.times()
  faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt + resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt
  return t.user + t.system + t.children_user + t.children_system, time.perf_counter(), faults


class Phases:
  """Accumulates (cpu s, wall s, page faults) per named phase."""

  def __init__(self):
    self.rows = {}

  def measure(self, name, fn, scale=1.0):
    c0, w0, f0 = cpu_now()
    out = fn()
    c1, w1, f1 = cpu_now()
    self.add(name, (c1 - c0) * scale, (w1 - w0) * scale, (f1 - f0) * scale)
    return out

  def add(self, name, cpu, wall, faults):
    old = self.rows.get(name, (0.0, 0.0, 0.0))
    self.rows[name] = (old[0] + cpu, old[1] + wall, old[2] + faults)

  def table(self) -> str:
    total = sum(r[0] for r in self.rows.values())
    lines = ["| phase | CPU s | share | wall s (this run) | minor page faults |", "|---|---|---|---|---|"]
    for name, (cpu, wall, faults) in self.rows.items():
      lines.append(f"| {name} | {cpu:.1f} | {100 * cpu / total:.1f} % | {wall:.1f} | {faults / 1e3:.0f} k |")
    lines.append(f"| total | {total:.1f} | 100 % | {sum(r[1] for r in self.rows.values()):.1f} | "
                 f"{sum(r[2] for r in self.rows.values()) / 1e3:.0f} k |")
    return "\n".join(lines)


def main(argv=None):
  from lla_jax import host_memory   # as main.py: first, before any library starts threads
  applied = host_memory.keep_freed_memory()
  start = cpu_now()
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--steps", type=int, default=40, help="steady steps / batches timed per phase")
  p.add_argument("--data-dir", default=None, help="TFDS data dir (default: a fresh temporary folder)")
  p.add_argument("--config", default="configs/quickstart.py")
  args = p.parse_args(argv)
  phases = Phases()

  def imports():
    import jax  # noqa: F401
    import tensorflow  # noqa: F401
    import tensorflow_datasets  # noqa: F401
    from data_pipelines import input_pipeline, synthetic_crowds  # noqa: F401
    from lla_jax import cli, evaluate, train  # noqa: F401
  phases.measure("imports", imports)
  c, w, f = cpu_now()
  phases.add("imports", c - start[0], 0.0, f - start[2])   # interpreter start-up and argparse before the timer

  import jax
  import numpy as np

  import data_pipelines
  from data_pipelines import settings, synthetic_crowds
  from lla_jax import checkpointing, cli, evaluate, sharding, train, train_state
  from lla_jax.methods import get_method

  root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
  config = cli.load_config_file(os.path.join(root, args.config))
  tmp = tempfile.mkdtemp(prefix="qs_bench_")
  config.data.data_dir = args.data_dir or os.path.join(tmp, "tfds")
  workdir = os.path.join(tmp, "work")
  total_steps = config.train.steps
  scale = total_steps / args.steps
  print(f"quickstart_bench: {args.config}, {total_steps} steps (steady phases timed over {args.steps}), "
        f"{os.cpu_count()} CPU cores, jax {jax.__version__}, data in {config.data.data_dir}, "
        f"host_memory.keep_freed_memory {'on' if applied else 'off'}", flush=True)

  phases.measure("data build", lambda: synthetic_crowds.SyntheticCrowds.from_data_config(
      config.data, settings.resolve_data_dir(config.data)))

  method = get_method(config)
  mesh = sharding.make_mesh()

  def setup():
    state, tx, schedule = train_state.create_train_state(config, method, mesh)
    it, _ = data_pipelines.create_dataset(config.data, split=config.data.train_split,
                                          batch_size=config.train.batch_size, train=True, seed=config.seed)
    return state, tx, schedule, it
  state, tx, schedule, it = phases.measure("setup", setup)
  step_fn = train.make_train_step(method, tx, schedule, mesh, jax.tree.map(lambda x: x.sharding, state))
  rng = train.train_rng(config, mesh)
  holder = {"state": state}
  batch = sharding.shard_batch(next(it), mesh)

  def one_step():
    holder["state"], metrics = step_fn(holder["state"], batch, rng)
    jax.block_until_ready(metrics)

  first = cpu_now()
  one_step()
  after_first = cpu_now()
  one_step()   # second call: steady, but the first after compilation may still warm caches
  steady = phases.measure("step", lambda: [one_step() for _ in range(args.steps)], scale=scale)
  del steady
  step_cpu = phases.rows["step"][0] / total_steps
  phases.add("compile", after_first[0] - first[0] - step_cpu, after_first[1] - first[1], after_first[2] - first[2])

  def inputs():
    for _ in range(args.steps):
      jax.block_until_ready(sharding.shard_batch(next(it), mesh))
  phases.measure("input", inputs, scale=scale)

  def together():
    for _ in range(args.steps):
      holder["state"], metrics = step_fn(holder["state"], sharding.shard_batch(next(it), mesh), rng)
    jax.block_until_ready(metrics)
  c0, w0, f0 = cpu_now()
  together()
  c1, w1, f1 = cpu_now()

  saves = len({s for s in range(1, total_steps + 1) if s % config.train.checkpoint_every == 0 or s == total_steps})
  ckpt = checkpointing.Checkpoints(workdir, config.train.keep_checkpoints)

  def save():
    ckpt.save(int(jax.device_get(holder["state"].step)), holder["state"])
    ckpt.close()
  phases.measure("checkpoint", save, scale=saves)

  phases.measure("evaluation", lambda: evaluate.evaluate(config, workdir, state=holder["state"], method=method,
                                                         mesh=mesh))
  print()
  print(phases.table())
  step_s, input_s = phases.rows["step"][0] / total_steps, phases.rows["input"][0] / total_steps
  print(f"\nper step: train step {1e3 * step_s:.0f} ms CPU, input {1e3 * input_s:.0f} ms CPU; both in the loop's order: "
        f"{1e3 * (c1 - c0) / args.steps:.0f} ms CPU, {1e3 * (w1 - w0) / args.steps:.0f} ms wall, "
        f"{(f1 - f0) / args.steps / 1e3:.1f} k page faults per step")
  print(f"{config.train.batch_size * args.steps / (w1 - w0):.1f} img/s in the loop's order (this machine, now)")
  del np
  return phases


if __name__ == "__main__":
  main()
