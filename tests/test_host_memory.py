"""lla_jax/host_memory.py: after keep_freed_memory(), a large buffer freed and allocated again is served
from the process's heap (no fresh pages from the kernel), where glibc's default maps it anew each time.
Each case runs in a fresh interpreter: the settings are process-wide and only apply before threads start."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = """
import ctypes, resource
from lla_jax import host_memory
applied = host_memory.keep_freed_memory()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, (ctypes.c_size_t,), (ctypes.c_void_p,)
def use(n=64 << 20):                        # what XLA:CPU does with a step's temporaries: allocate, write, free
  p = libc.malloc(n)
  ctypes.memset(p, 1, n)
  libc.free(p)
use()                                       # first use: the heap grows once
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
  use()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(applied, faults)
"""


def _run(env_value):
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  env.pop("LLA_MALLOC", None)
  if env_value is not None:
    env["LLA_MALLOC"] = env_value
  out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True).stdout
  applied, faults = out.split()
  return applied == "True", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_freed_buffers_are_reused():
  applied, faults = _run(None)
  default_applied, default_faults = _run("default")
  assert applied and not default_applied
  pages = 5 * (64 << 20) // 4096
  assert default_faults >= pages // 2       # glibc's default: every 64 MiB buffer mapped and faulted afresh
  assert faults < pages // 20               # kept: the pages are already there
