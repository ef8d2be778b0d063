"""Host memory reuse for the CPU backend: freed buffers stay in the process instead of going back to the
kernel, so that a train step does not pay page faults for its temporaries on every call.

With glibc's default malloc, XLA:CPU's per-execution temporary buffer (about 92 MiB at the quick start's
shapes) is larger than the mmap threshold (at most 32 MiB), so every step maps it fresh, faults in each of
its pages (zeroed by the kernel) and unmaps it afterwards: about 44 k page faults and a fifth of the step's
CPU time in the kernel. `keep_freed_memory()` asks glibc (mallopt(3)) to serve every allocation from one
arena's heap (M_ARENA_MAX 1, M_MMAP_MAX 0: a thread's own arena cannot grow past 64 MiB and would fall back
to mmap) and never to give the heap's free top back (M_TRIM_THRESHOLD). The numbers a step computes do not
change; the process keeps its peak heap size until it exits.

It only affects allocations made after the call and arenas not yet created, so entry points call it first,
before JAX or TensorFlow start their threads. A no-op off glibc (macOS, musl) and with LLA_MALLOC=default.
"""
from __future__ import annotations

import ctypes
import os
import sys

# mallopt(3) parameters (glibc malloc/malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
ENV = "LLA_MALLOC"


def keep_freed_memory() -> bool:
  """Applies the settings of the module docstring; True when glibc accepted all of them."""
  if os.environ.get(ENV, "") == "default" or not sys.platform.startswith("linux"):
    return False
  try:
    libc = ctypes.CDLL("libc.so.6")
    mallopt = libc.mallopt
  except (OSError, AttributeError):   # not glibc
    return False
  mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
  return all(mallopt(param, value) == 1
             for param, value in ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1)))
