"""Multi-process start-up: `jax.distributed.initialize` from flags or from the launcher's environment,
before anything touches a device. One process per host (or per GPU); each process feeds its own
devices with its own shard of the files, and jit runs one program over the global mesh.

  explicit:  --coordinator_address=HOST:PORT --num_processes=N --process_id=I  (on every process)
  environment: JAX_COORDINATOR_ADDRESS (+ JAX_NUM_PROCESSES, JAX_PROCESS_ID), or a SLURM / Open MPI launch
      with more than one task (srun, mpirun): JAX reads everything from the launcher.
"""
from __future__ import annotations

import os

import jax

MODES = ("auto", "on", "off")


def launcher_processes(environ=None) -> int:
  """How many processes the launcher in `environ` started (1 when there is none), for the launchers
  JAX detects by itself: SLURM (SLURM_NTASKS with a job id and a rank) and Open MPI's mpirun
  (OMPI_COMM_WORLD_SIZE beside OMPI_MCA_orte_hnp_uri). Others: --distributed=on or the flags."""
  env = os.environ if environ is None else environ
  if "SLURM_JOB_ID" in env and "SLURM_PROCID" in env and "SLURM_STEP_NODELIST" in env:
    return int(env.get("SLURM_NTASKS", "1"))
  if "OMPI_MCA_orte_hnp_uri" in env:   # what JAX's own Open MPI detection needs (mpirun of Open MPI 4)
    return int(env.get("OMPI_COMM_WORLD_SIZE", "1"))
  return 1


def distributed_arguments(mode: str = "auto", coordinator_address: str | None = None,
                          num_processes: int | None = None, process_id: int | None = None, environ=None):
  """The keyword arguments for `jax.distributed.initialize`, or None for a single-process run.

  mode 'off': never; 'on': always (missing values detected by JAX, e.g. on Cloud TPU pods or Kubernetes);
  'auto': when a coordinator address is given (flag or JAX_COORDINATOR_ADDRESS) or a SLURM / Open MPI
  launcher started more than one process.
  """
  env = os.environ if environ is None else environ
  if mode not in MODES:
    raise ValueError(f"--distributed={mode!r}: expected one of {MODES}")
  if mode == "off":
    if coordinator_address:
      raise ValueError("--distributed=off contradicts --coordinator_address")
    return None
  address = coordinator_address or env.get("JAX_COORDINATOR_ADDRESS") or None
  if num_processes is None and env.get("JAX_NUM_PROCESSES"):
    num_processes = int(env["JAX_NUM_PROCESSES"])
  if process_id is None and env.get("JAX_PROCESS_ID"):
    process_id = int(env["JAX_PROCESS_ID"])
  if mode == "auto" and address is None and launcher_processes(env) <= 1:
    if num_processes not in (None, 1) or process_id not in (None, 0):
      raise ValueError(f"--num_processes={num_processes} / --process_id={process_id} need --coordinator_address "
                       "(HOST:PORT of process 0) or a SLURM / Open MPI launch")
    return None
  if address is not None and launcher_processes(env) <= 1:
    # Without a launcher JAX cannot guess the rest: both must be given.
    if num_processes is None or process_id is None:
      raise ValueError(f"--coordinator_address={address} needs --num_processes and --process_id "
                       "(or JAX_NUM_PROCESSES / JAX_PROCESS_ID) on every process")
    if not 0 <= process_id < num_processes:
      raise ValueError(f"--process_id={process_id}: expected 0 <= process_id < --num_processes={num_processes}")
  kwargs = dict(coordinator_address=address, num_processes=num_processes, process_id=process_id)
  return {k: v for k, v in kwargs.items() if v is not None}


def initialize(mode: str = "auto", coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> bool:
  """Starts JAX's distributed runtime when `distributed_arguments` says so; True if it did. Must run
  before the first use of a device (jax.devices(), any array)."""
  kwargs = distributed_arguments(mode, coordinator_address, num_processes, process_id)
  if kwargs is None:
    return False
  jax.distributed.initialize(**kwargs)
  return True
