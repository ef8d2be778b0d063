"""Train -> resume -> restore-eval round trip of the quick start, shrunk to seconds."""
import json
import os

import jax
import pytest

from configs import quickstart
from lla_jax import cli, evaluate


def tiny_config(data_dir, steps):
  c = quickstart.get_config()
  c.data.source = "numpy"
  c.data.data_dir = str(data_dir)
  c.data.render_size = (64, 96)
  c.data.min_size, c.data.max_size, c.data.pad_size = 64, 96, (64, 96)
  c.data.num_train_images, c.data.num_val_images = 16, 6
  c.data.num_parallel_calls = 1
  c.model.backbone.width = 8
  c.model.fpn.channels = c.model.head.channels = 16
  c.model.head.gn_groups = 8
  c.train.steps, c.train.warmup_steps, c.train.lr_steps = steps, 2, (100,)
  c.train.log_every = c.train.checkpoint_every = 2
  c.train.max_pictures = 2
  return c


def test_train_resume_and_restore_eval(tmp_path):
  with jax.default_prng_impl("unsafe_rbg"):   # threefry init compiles ~8x slower on CPU
    _round_trip(tmp_path)


def _round_trip(tmp_path):
  workdir = str(tmp_path / "w")
  first = cli.train_and_evaluate(tiny_config(tmp_path / "data", 2), workdir)
  assert set(first) >= {"MR", "AP", "Recall", "step"} and first["step"] == 2
  saved = json.load(open(os.path.join(workdir, "eval_metrics.json")))
  assert saved["step"] == 2 and all(0.0 <= saved[k] <= 1.0 for k in ("AP", "Recall"))
  assert os.listdir(os.path.join(workdir, "pictures"))
  # The same command with more steps resumes at step 2: the log continues with steps 4, not 2 again.
  second = cli.train_and_evaluate(tiny_config(tmp_path / "data", 4), workdir)
  steps = [json.loads(l)["step"] for l in open(os.path.join(workdir, "metrics.jsonl")) if "train/loss" in l]
  assert steps == [2, 4]
  # --mode=eval restores the latest checkpoint and reproduces the final metrics exactly.
  again = evaluate.evaluate(tiny_config(tmp_path / "data", 4), workdir)
  for k in ("MR", "AP", "Recall", "JI", "step"):
    assert again[k] == second[k] or (again[k] != again[k] and second[k] != second[k])  # NaN-safe equality


def test_override_typo_names_valid_keys(tmp_path):
  with pytest.raises(cli.ConfigOverrideError, match=r"Valid keys of config: .*train"):
    cli.check_overrides(["--config=configs/quickstart.py", "--config.trian.steps=1"])
  with pytest.raises(cli.ConfigOverrideError, match=r"config.train has no field 'stpes'.*steps"):
    cli.check_overrides(["--config=configs/quickstart.py", "--config.train.stpes=1"])
  cli.check_overrides(["--config=configs/quickstart.py", "--config.train.steps=1"])


def test_missing_crowdhuman_data_names_expected_path(tmp_path):
  import data_pipelines
  from configs import lla_r50
  c = lla_r50.get_config()
  c.data.data_dir = str(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
    data_pipelines.create_dataset(c.data, "train", 2, True, 0)


def test_method_registry():
  """config.method picks a registered builder; an unknown name lists the registered ones."""
  from lla_jax import methods
  assert {"fcos_family", "alfnet"} <= set(methods.names())
  c = tiny_config("/nonexistent", 1)
  c.method = "faster_rcnn_typo"
  with pytest.raises(ValueError, match="config.method='faster_rcnn_typo': expected one of .*'fcos_family'"):
    methods.get_method(c)
