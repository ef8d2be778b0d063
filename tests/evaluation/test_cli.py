"""Command line: python -m lla_jax.evaluation {crowdhuman,citypersons} on files, --json last line, errors."""
import json
import os
import subprocess
import sys

import pytest

from lla_jax.evaluation.__main__ import main
from tests.evaluation.test_citypersons import example_b91
from tests.evaluation.test_crowdhuman import example_a9

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write_odgt(path, records, extra_lines=()):
  lines = [json.dumps(r) for r in records] + list(extra_lines)
  path.write_text("\n".join(lines) + "\n")
  return str(path)


@pytest.fixture
def crowdhuman_files(tmp_path):
  gt, dt = example_a9()
  return write_odgt(tmp_path / "gt.odgt", gt), write_odgt(tmp_path / "dt.odgt", dt), tmp_path


@pytest.fixture
def citypersons_files(tmp_path):
  gt, dt = example_b91()
  (tmp_path / "gt.json").write_text(json.dumps(gt))
  (tmp_path / "dt.json").write_text(json.dumps(dt))
  return str(tmp_path / "gt.json"), str(tmp_path / "dt.json"), tmp_path


def run(capsys, *argv):
  code = main(list(argv))
  out, err = capsys.readouterr()
  return code, out, err


def test_crowdhuman_json_last_line(crowdhuman_files, capsys):
  gt, dt, _ = crowdhuman_files
  code, out, _ = run(capsys, "crowdhuman", "--gt", gt, "--dt", dt, "--json")
  assert code == 0
  metrics = json.loads(out.strip().splitlines()[-1])
  assert set(metrics) == {"AP", "MR", "Recall", "JI"}
  assert metrics["AP"] == pytest.approx(0.441667, abs=5e-7)
  assert metrics["MR"] == pytest.approx(0.685378, abs=5e-7)
  assert metrics["Recall"] == 1.0
  assert metrics["JI"] == pytest.approx(0.6666664, abs=5e-8)


def test_crowdhuman_table_and_plot(crowdhuman_files, capsys):
  gt, dt, tmp = crowdhuman_files
  code, out, _ = run(capsys, "crowdhuman", "--gt", gt, "--dt", dt, "--no-ji", "--plot", str(tmp / "mr.png"))
  assert code == 0
  assert "AP50     44.17%" in out and "MR^-2    68.54%" in out and "JI       not computed" in out
  assert (tmp / "mr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("line, message", [
    ('{"ID": "zz", "width": 100, "height": 100, "dtboxes": []}', ":3 (ID 'zz'): ID 'zz' is not in the ground truth"),
    ('{"ID": "b", "width": 100, "height": 100, "dtboxes": [{"box": [1, 2, 3, 4], "score": NaN}]}',
     ":3 (ID 'b'): dtboxes[0].score: expected a finite number, got nan"),
    ('{"ID": "b", "width": 100, "height": 100, "dtboxes": [{"box": [1, 2, 3], "score": 0.5}]}',
     ":3 (ID 'b'): dtboxes[0].box: expected [x, y, w, h]"),
    ('{"ID": "b", "width": 100, "height": 100, "dtboxes": [{"bbox": [1, 2, 3, 4], "score": 0.5}]}',
     ":3 (ID 'b'): dtboxes[0] needs 'box' and 'score'"),
    ('{"ID": "b", "width": 100, "height": 100}', ":3 (ID 'b'): missing 'dtboxes' list"),
    ('{"ID": "b", "width": 100, "height": 100, "dtboxes": [', ":3: not a JSON object"),
])
def test_crowdhuman_errors_name_file_and_line(crowdhuman_files, capsys, line, message):
  gt, _, tmp = crowdhuman_files
  records = [example_a9()[1][0]]
  dt = write_odgt(tmp / "bad.odgt", records, ["", line])  # a blank line 2, the bad record on line 3
  code, out, err = run(capsys, "crowdhuman", "--gt", gt, "--dt", dt, "--json")
  assert code == 2 and out == ""
  assert err.startswith(f"error: {dt}") and message in err


def test_citypersons_json_setups_iou(citypersons_files, capsys):
  gt, dt, tmp = citypersons_files
  code, out, _ = run(capsys, "citypersons", "--gt", gt, "--dt", dt, "--setups", "Reasonable,All,bare", "--json",
                     "--plot", str(tmp / "cp.png"))
  assert code == 0
  mr = json.loads(out.strip().splitlines()[-1])
  assert list(mr) == ["Reasonable", "All", "bare"]
  assert round(100 * mr["Reasonable"], 4) == 57.1496 and round(100 * mr["All"], 4) == 37.0350
  assert (tmp / "cp.png").stat().st_size > 1000
  code, out, _ = run(capsys, "citypersons", "--gt", gt, "--dt", dt, "--iou", "0.75", "--json")
  mr = json.loads(out.strip().splitlines()[-1])
  assert len(mr) == 9 and mr["Reasonable_small"] is None  # no regular GT in that setup: undefined


def test_citypersons_table(citypersons_files, capsys):
  gt, dt, _ = citypersons_files
  code, out, _ = run(capsys, "citypersons", "--gt", gt, "--dt", dt)
  assert code == 0 and "Reasonable             57.15%" in out and "Reasonable_small       n/a" in out


def test_citypersons_errors(citypersons_files, capsys):
  gt, dt, tmp = citypersons_files
  bad = tmp / "bad.json"
  bad.write_text('[{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}, '
                 '{"image_id": 42, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}]')
  code, _, err = run(capsys, "citypersons", "--gt", gt, "--dt", str(bad))
  assert code == 2 and f"{bad}: detection [1]: image_id 42 is not in the ground truth" in err
  code, _, err = run(capsys, "citypersons", "--gt", gt, "--dt", dt, "--setups", "Reasonable,Nope")
  assert code == 2 and "unknown setup 'Nope'" in err
  code, _, err = run(capsys, "citypersons", "--gt", str(tmp / "missing.json"), "--dt", dt)
  assert code == 2 and "missing.json" in err


def test_module_entry_point(crowdhuman_files):
  gt, dt, _ = crowdhuman_files
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  proc = subprocess.run([sys.executable, "-m", "lla_jax.evaluation", "crowdhuman", "--gt", gt, "--dt", dt, "--json"],
                        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
  assert proc.returncode == 0, proc.stderr
  assert json.loads(proc.stdout.strip().splitlines()[-1])["Recall"] == 1.0
