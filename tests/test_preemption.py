"""Pre-emption requests (lla_jax/preemption.py): a signal to the own process is recorded, not acted
on; the loop's stop step is the same on every process of a multi-host run (2 processes on loopback,
only one of them signalled). This file is also the worker:
`python tests/test_preemption.py OUT PROCESS_ID NUM_PROCESSES PORT SIGNALLED_PROCESS`."""
import json
import os
import signal
import socket
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVERY, SIGNAL_AT, STEPS = 4, 5, 20


def test_signal_is_recorded_and_handlers_restored():
  from lla_jax import preemption
  before = {s: signal.getsignal(s) for s in preemption.SIGNALS}
  with preemption.StopRequest() as stop:
    assert stop.installed and not stop.requested and not stop.should_stop(1)
    os.kill(os.getpid(), signal.SIGTERM)        # the handler runs before the next bytecode: no exit
    assert stop.requested and stop.signal_name == "SIGTERM"
    assert stop.should_stop(2, every=EVERY)      # one process: its own flag, any step
    os.kill(os.getpid(), signal.SIGTERM)         # a repeated SIGTERM changes nothing
    assert stop.signal_name == "SIGTERM"
    assert stop.message(7, "/w/checkpoints/7") == (
        "Stopped by SIGTERM after step 7: checkpoint saved to /w/checkpoints/7. "
        "Run the same command again to resume from it.")
  assert {s: signal.getsignal(s) for s in preemption.SIGNALS} == before


def test_second_sigint_aborts():
  from lla_jax import preemption
  with preemption.StopRequest() as stop:
    os.kill(os.getpid(), signal.SIGINT)
    assert stop.signal_name == "SIGINT"
    with pytest.raises(KeyboardInterrupt):
      os.kill(os.getpid(), signal.SIGINT)
      signal.getsignal(signal.SIGINT)           # a bytecode boundary for the handler to run at


def worker(out, process_id, num_processes, port, signalled):
  from lla_jax import distributed, preemption
  distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=num_processes,
                         process_id=process_id)
  import jax
  assert jax.process_count() == num_processes
  stopped = None
  with preemption.StopRequest() as stop:
    for step in range(1, STEPS + 1):
      if step == SIGNAL_AT and process_id == signalled:
        os.kill(os.getpid(), signal.SIGTERM)
      if stop.should_stop(step, every=EVERY, last=step == STEPS):
        stopped = step
        break
  with open(os.path.join(out, f"process_{process_id}.json"), "w") as f:
    json.dump({"stopped": stopped, "signal": stop.signal_name, "message": stop.message(stopped, "CKPT")}, f)


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_processes_agree_on_the_stop_step(tmp_path):
  """Process 1 gets SIGTERM at step 5; both stop after step 8, the first agreement point (every 4 steps)."""
  port = free_port()
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3",
             XLA_FLAGS="--xla_force_host_platform_device_count=1")
  procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), str(tmp_path), str(i), "2", str(port), "1"],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  try:
    logs = [p.communicate(timeout=300)[0] for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  assert [p.returncode for p in procs] == [0, 0], "\n".join(log[-2000:] for log in logs)
  got = [json.loads((tmp_path / f"process_{i}.json").read_text()) for i in range(2)]
  assert [g["stopped"] for g in got] == [8, 8]
  assert [g["signal"] for g in got] == [None, "SIGTERM"]
  assert got[0]["message"].startswith("Stopped by a stop signal on another process after step 8")
  assert "SIGTERM received: finishing the current step" in logs[1]


if __name__ == "__main__":
  sys.path[0] = ROOT     # not tests/: its data_pipelines/ test package would shadow the real one
  worker(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
