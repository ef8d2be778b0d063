"""Runs several command lines of one entry point in one Python process, each exactly as `python -m MODULE ARGS`
or `python main.py ARGS` would (the module executed as __main__, file descriptors 1 and 2 captured, SystemExit
turned into the exit status Python gives, an uncaught exception printed as Python prints it with status 1), so
that a drill pays for one TensorFlow / JAX start-up per entry point instead of one per case.

  python tests/drill/driver.py CASES.json RESULTS.json
CASES: [{"entry": "main.py" | "-m MODULE", "argv": [...]}]; RESULTS: [{"code", "stdout", "stderr"}] in order.
"""
import json
import os
import runpy
import sys
import tempfile
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _exit_status(e: SystemExit) -> int:
  if e.code is None:
    return 0
  if isinstance(e.code, int):
    return e.code
  print(e.code, file=sys.stderr)   # what the interpreter does with sys.exit("message")
  return 1


def run_one(entry: str, argv: list) -> int:
  """Executes the entry point as __main__ with sys.argv = [entry] + argv; returns its exit status."""
  from absl import app, flags, logging  # noqa: F401  (their own flags stay; main.py's are forgotten between runs)
  before = set(flags.FLAGS)
  sys.argv = [entry] + list(argv)
  try:
    if entry.startswith("-m "):
      runpy.run_module(entry[3:], run_name="__main__", alter_sys=True)
    else:
      runpy.run_path(os.path.join(ROOT, entry), run_name="__main__")
    return 0
  except SystemExit as e:
    return _exit_status(e)
  except BaseException:   # noqa: BLE001  (printed as the interpreter would, status 1)
    traceback.print_exc()
    return 1
  finally:
    for name in set(flags.FLAGS) - before:
      delattr(flags.FLAGS, name)
    if flags.FLAGS.is_parsed():
      flags.FLAGS.unparse_flags()


def main(cases_path: str, results_path: str) -> None:
  with open(cases_path) as f:
    cases = json.load(f)
  results = []
  for case in cases:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
      sys.stdout.flush()
      sys.stderr.flush()
      saved = os.dup(1), os.dup(2)
      os.dup2(out.fileno(), 1)
      os.dup2(err.fileno(), 2)
      try:
        code = run_one(case["entry"], case["argv"])
      finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
      out.seek(0)
      err.seek(0)
      results.append({"code": code, "stdout": out.read().decode("utf-8", "replace"),
                      "stderr": err.read().decode("utf-8", "replace")})
  with open(results_path, "w") as f:
    json.dump(results, f)


if __name__ == "__main__":
  sys.path.insert(0, ROOT)
  main(sys.argv[1], sys.argv[2])
