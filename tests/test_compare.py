"""lla_jax.compare: the spread summary over seeds (hand-worked numbers), the preset's resolution, and a
smoke run of --preset=paper shrunk to two steps on a tiny synthetic set (numpy source, no TensorFlow)."""
import json

import jax
import numpy as np
import pytest
from jax._src import compilation_cache  # no public reset of the persistent cache in jax 0.10

from lla_jax import compare


@pytest.fixture(autouse=True)
def _no_lasting_compile_cache():
  """compare.main points XLA's persistent cache into its workdir for several seeds; undo it after."""
  yield
  jax.config.update("jax_compilation_cache_dir", None)
  compilation_cache.reset_cache()


def test_summarise_mean_and_sample_std():
  per_seed = {0: {"MR": 0.5, "AP": 0.7, "Recall": 0.9, "JI": 0.6},
              1: {"MR": 0.6, "AP": 0.8, "Recall": 0.8, "JI": None},
              2: {"MR": 0.7, "AP": 0.9, "Recall": 0.7, "JI": 0.4}}
  s = compare.summarise(per_seed)
  assert s["mean"]["MR"] == pytest.approx(0.6)
  assert s["std"]["MR"] == pytest.approx(0.1)          # sqrt(((-.1)^2 + 0 + .1^2) / (3 - 1))
  assert s["min"]["AP"] == pytest.approx(0.7) and s["max"]["AP"] == pytest.approx(0.9)
  assert s["mean"]["JI"] == pytest.approx(0.5)         # the missing seed is left out
  assert s["std"]["JI"] == pytest.approx(np.sqrt(0.02))
  assert s["seeds"]["1"]["JI"] is None
  table = compare.format_spread_table({"LLA": s}, 3000, (0, 1, 2), 500)
  assert "| LLA | 60.00 ± 10.00 | 80.00 ± 10.00 |" in table
  assert "50.00, 60.00, 70.00" in table and "500 images" in table


def test_summarise_one_seed_has_zero_spread():
  s = compare.summarise({3: {"MR": 0.25, "AP": 0.5, "Recall": 0.75, "JI": 0.5}})
  assert s["std"] == {"MR": 0.0, "AP": 0.0, "Recall": 0.0, "JI": 0.0}


def test_preset_paper_covers_every_method(monkeypatch, tmp_path):
  calls = []

  def fake_train(config, workdir):
    calls.append((workdir, config.seed, config.train.steps, config.data.num_val_images))
    return {"MR": 0.5 + 0.01 * config.seed, "AP": 0.7, "Recall": 0.9, "JI": 0.6}

  monkeypatch.setattr(compare.cli, "train_and_evaluate", fake_train)
  monkeypatch.setattr(compare, "assignment_picture", lambda configs, workdirs, path: path)
  compare.main(["--workdir", str(tmp_path), "--preset", "paper"])
  preset = compare.PRESETS["paper"]
  assert len(calls) == len(compare.METHODS) * len(preset["seeds"])
  assert {c[1] for c in calls} == set(preset["seeds"])
  assert all(c[2] == preset["steps"] and c[3] == 500 for c in calls)
  assert len({c[0] for c in calls}) == len(calls)      # one workdir per method and seed
  result = json.loads((tmp_path / "comparison.json").read_text())
  assert set(result["results"]) == set(compare.ROWS)
  assert result["results"]["LLA"]["mean"]["MR"] == pytest.approx(0.51)
  assert result["results"]["LLA"]["std"]["MR"] == pytest.approx(0.01)
  assert "±" in (tmp_path / "comparison.md").read_text()


@pytest.mark.slow
def test_preset_paper_smoke(tmp_path):
  """Two real methods x two seeds, two steps each, on 16 train / 8 val images: every file is written."""
  compare.main(["--workdir", str(tmp_path), "--preset", "paper", "--methods", "LLA,FCOS", "--seeds", "0,1",
                "--steps", "2", "--set", "data.source=numpy", "--set", f"data.data_dir={tmp_path / 'data'}",
                "--set", "data.num_train_images=16", "--set", "data.num_val_images=8",
                "--set", "data.num_parallel_calls=1"])
  result = json.loads((tmp_path / "comparison.json").read_text())
  assert result["steps"] == 2 and result["seeds"] == [0, 1] and result["num_val_images"] == 8
  for name in ("LLA", "FCOS"):
    assert set(result["results"][name]["seeds"]) == {"0", "1"}
    assert result["results"][name]["mean"]["AP"] is not None   # MR^-2 is undefined (None) with no detections yet
    assert "MR" in result["results"][name]["mean"]
    assert (tmp_path / name.lower() / "seed1" / "eval_metrics.json").exists()
  assert (tmp_path / "assignment.png").exists()
