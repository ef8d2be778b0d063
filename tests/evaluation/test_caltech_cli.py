"""python -m lla_jax.evaluation caltech: the spec's example E.10 through the command line, --json last line,
--setups / --bounds / --plot, both detection layouts, and bad input (message naming the file and line, exit 2)."""
import json
import math
import os
import subprocess
import sys

import pytest

from lla_jax.evaluation import caltech
from lla_jax.evaluation.__main__ import main
from tests.evaluation import caltech_fixtures as fx

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def files(tmp_path):
  return (fx.write_gt(tmp_path / "anno"), fx.write_dt(tmp_path / "dt"), fx.write_frames(tmp_path / "frames.txt"),
          tmp_path)


def run(capsys, *argv):
  code = main(list(argv))
  out, err = capsys.readouterr()
  return code, out, err


def test_json_last_line(files, capsys):
  gt, dt, frames, _ = files
  code, out, _ = run(capsys, "caltech", "--gt", gt, "--dt", dt, "--frames", frames, "--json")
  assert code == 0
  metrics = json.loads(out.strip().splitlines()[-1])
  assert list(metrics) == list(caltech.SETUPS)
  for name, value in fx.EXPECTED.items():
    assert metrics[name] == value
  assert metrics["Scale=far"] is None and metrics["Occ=none"] is None


def test_table_setups_bounds_plot(files, capsys):
  gt, dt, frames, tmp = files
  png = tmp / "curves.png"
  code, out, _ = run(capsys, "caltech", "--gt", gt, "--dt", dt, "--frames", frames, "--setups", "Reasonable,All",
                     "--plot", str(png))
  assert code == 0 and png.stat().st_size > 1000
  assert "Reasonable" in out and "42.86%" in out and "68.22%" in out and "Occ=heavy" not in out
  # Without bounds the half-out-of-image person of I00119 is a positive: the .65 detection becomes a TP.
  code, out, _ = run(capsys, "caltech", "--gt", gt, "--dt", dt, "--frames", frames, "--setups", "Reasonable",
                     "--bounds", "none", "--json")
  none = json.loads(out.strip().splitlines()[-1])["Reasonable"]
  assert none != fx.EXPECTED["Reasonable"]
  direct = caltech.evaluate_dirs(gt, dt, fx.FRAMES, ["Reasonable"], caltech.NO_BOUNDS)["Reasonable"]["MR"]
  assert none == direct


def test_per_frame_layout(tmp_path, capsys):
  gt = fx.write_gt(tmp_path / "anno")
  dt = fx.write_dt(tmp_path / "dt", layout="frame")
  frames = fx.write_frames(tmp_path / "frames.txt")
  code, out, _ = run(capsys, "caltech", "--gt", gt, "--dt", dt, "--frames", frames, "--json")
  assert code == 0 and json.loads(out.strip().splitlines()[-1])["Reasonable"] == fx.EXPECTED["Reasonable"]
  assert os.path.isfile(os.path.join(dt, "set06", "V000", "I00029.txt"))  # unlike dbEval, nothing is deleted


def test_bad_input_exit_2(files, capsys):
  gt, dt, frames, tmp = files
  with open(os.path.join(gt, "set06_V000_I00059.txt"), "a") as f:
    f.write("person 1 2 3\n")
  code, out, err = run(capsys, "caltech", "--gt", gt, "--dt", dt, "--frames", frames)
  assert code == 2 and "set06_V000_I00059.txt:4: expected 12 fields" in err
  (tmp / "frames.txt").write_text("set06_V000_I00029\nnot_a_frame\n")
  code, _, err = run(capsys, "caltech", "--gt", gt, "--dt", dt, "--frames", frames)
  assert code == 2 and "frames.txt:2" in err
  code, _, err = run(capsys, "caltech", "--gt", gt, "--dt", dt, "--frames", frames, "--bounds", "1,2")
  assert code == 2 and "bounds" in err


def test_default_frames_need_every_test_annotation(files, capsys):
  gt, dt, _, _ = files
  code, _, err = run(capsys, "caltech", "--gt", gt, "--dt", dt)
  assert code == 2 and "set06_V000_I00089" not in err and "no annotation file" in err


def test_module_entry_point(files):
  gt, dt, frames, _ = files
  p = subprocess.run([sys.executable, "-m", "lla_jax.evaluation", "caltech", "--gt", gt, "--dt", dt, "--frames",
                      frames, "--setups", "Reasonable", "--json"], cwd=ROOT, capture_output=True, text=True,
                     env={**os.environ, "PYTHONPATH": ROOT})
  assert p.returncode == 0, p.stderr
  assert json.loads(p.stdout.strip().splitlines()[-1]) == {"Reasonable": fx.EXPECTED["Reasonable"]}
  assert caltech.main(["--gt", gt, "--dt", dt, "--frames", frames, "--setups", "Small"]) == 0
