"""The drill's runner: a list of cases of one entry point, run in one subprocess by tests/drill/driver.py."""
import json
import os
import subprocess
import sys

import pytest

from tests.drill.driver import ROOT


def run_cases(tmp_path, entry: str, cases: dict, timeout: int = 600) -> dict:
  """{name: argv} -> {name: (exit status, stdout, stderr)}, every case run as `entry` would run it."""
  names = list(cases)
  spec, out = tmp_path / "cases.json", tmp_path / "results.json"
  spec.write_text(json.dumps([{"entry": entry, "argv": [str(a) for a in cases[n]]} for n in names]))
  env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
         "TF_CPP_MIN_LOG_LEVEL": "2", "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "drill", "driver.py"), str(spec), str(out)],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads(out.read_text())
  return {n: (r["code"], r["stdout"], r["stderr"]) for n, r in zip(names, results)}


def first_error(stderr: str) -> str:
  """The first line of stderr that starts with 'error:' or 'FATAL' (the message a user reads)."""
  for line in stderr.splitlines():
    if line.startswith(("error:", "FATAL")):
      return line
  raise AssertionError(f"no error line in stderr:\n{stderr[-3000:]}")


def check_errors(cases: dict, results: dict, status: int) -> list:
  """The cases {name: (argv, [substrings])} whose result is not exit `status`, no stack trace, and a first error
  line holding every substring: [(name, what went wrong, the first error line or stderr)]."""
  failures = []
  for name, (_, expected) in cases.items():
    code, _, stderr = results[name]
    if code != status or "Traceback" in stderr:
      failures.append((name, f"exit status {code}", stderr[-2000:]))
      continue
    try:
      line = first_error(stderr)
    except AssertionError as e:
      failures.append((name, "no error line", str(e)))
      continue
    missing = [part for part in expected if part not in line]
    if missing:
      failures.append((name, f"missing {missing}", line))
  return failures


def module_drill(entry: str, build):
  """A module-scoped fixture -> (cases, results): build(tmp) gives {name: (argv, [substrings of the first error
  line] or None for a case that must succeed)}, all run as `entry` in one subprocess."""
  @pytest.fixture(scope="module")
  def drill(tmp_path_factory):
    tmp = tmp_path_factory.mktemp(build.__module__.rsplit(".", 1)[-1])
    cases = build(tmp)
    return cases, run_cases(tmp, entry, {name: case[0] for name, case in cases.items()})
  return drill
