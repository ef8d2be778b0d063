"""benchmarks/gpu_suite.py --smoke on CPU: every section runs and the JSON / markdown report is written."""
import json

import pytest

from benchmarks import gpu_suite


def _run(tmp_path, sections):
  rc = gpu_suite.main(["--smoke", "--out", str(tmp_path), "--sections", *sections])
  report = json.loads((tmp_path / "gpu_suite.json").read_text())
  errors = {k: v["error"] for k, v in report["sections"].items() if "error" in v}
  assert rc == 0 and not errors, errors
  assert set(report["sections"]) == set(sections)
  table = (tmp_path / "gpu_suite.md").read_text()
  assert table.count("\n| ") >= len(sections) + 1
  return report


def test_smoke_assign_nms_evaluate(tmp_path):
  report = _run(tmp_path, ["assign", "nms", "evaluate"])
  assert all(r["identical"] for r in report["sections"]["nms"]["rows"])
  assert report["sections"]["evaluate"]["rows"][0]["images"] == gpu_suite.SMOKE["eval_images"]


@pytest.mark.slow
def test_smoke_all_sections(tmp_path):
  report = _run(tmp_path, list(gpu_suite.SECTIONS))
  assert report["sections"]["train"]["rows"][0]["images_s"] > 0


@pytest.mark.slow
def test_smoke_table(tmp_path):
  """--table alone: lla_jax.compare --preset=paper shrunk to two methods x two seeds x two steps."""
  rc = gpu_suite.main(["--smoke", "--out", str(tmp_path), "--sections", "--table"])
  report = json.loads((tmp_path / "gpu_suite.json").read_text())
  assert rc == 0, report["sections"]["table"].get("error")
  rows = report["sections"]["table"]["rows"]
  assert [r["method"] for r in rows] == ["LLA", "FCOS"] and all(r["seeds"] == [0, 1] for r in rows)
  assert (tmp_path / "gpu_suite.md").read_text().count("| table |") == 2
