"""Schedule, linear scaling rule, optimiser masking, and the loop (periodic evaluation, best checkpoint,
resume)."""
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import base
from lla_jax import cli, optim, train
from lla_jax.methods import Method


def test_released_schedule():
  lr = optim.learning_rate_schedule(0.01, 1000, 0.001, (18750, 24735), 0.1)
  assert float(lr(0)) == pytest.approx(1e-5)
  assert float(lr(500)) == pytest.approx(0.01 * (0.001 * 0.5 + 0.5))
  assert float(lr(1000)) == pytest.approx(0.01)
  assert float(lr(18749)) == pytest.approx(0.01)
  assert float(lr(18750)) == pytest.approx(0.001)
  assert float(lr(24735)) == pytest.approx(0.0001)


def test_cosine_schedule():
  """detectron2 WarmupCosineLR: base * warmup * (1 + cos(pi it / T)) / 2, lr_steps ignored, 0 from T on."""
  lr = optim.learning_rate_schedule(0.02, 100, 0.001, (5,), 0.1, kind="cosine", total_steps=1000)
  warm = 0.001 * 0.5 + 0.5
  assert float(lr(50)) == pytest.approx(0.02 * warm * (1 + np.cos(np.pi * 0.05)) / 2)
  assert float(lr(500)) == pytest.approx(0.01)
  assert float(lr(750)) == pytest.approx(0.02 * (1 + np.cos(np.pi * 0.75)) / 2)
  assert float(lr(1000)) == pytest.approx(0.0, abs=1e-9)
  assert float(lr(1500)) == pytest.approx(0.0, abs=1e-9)
  with pytest.raises(ValueError, match="lr_schedule='linear'"):
    optim.learning_rate_schedule(0.02, 100, 0.001, (), 0.1, kind="linear", total_steps=1000)


def test_linear_scaling_rule_batch_8():
  tr = base.get_base_config().train
  tr.batch_size = 8
  s = optim.scaled_train_config(tr)
  assert s["lr"] == pytest.approx(0.005)
  assert s["steps"] == 56250 and s["lr_steps"] == (37500, 49470) and s["checkpoint_every"] == 10000


def test_frozen_params_untouched_and_decay_masked():
  config = base.get_base_config()
  config.train.warmup_steps = 0
  params = {"frozen": jnp.ones(3), "conv": jnp.ones(3), "gn": jnp.ones(3)}
  method = Method(init=None, loss=None, predict=None,
                  trainable=lambda p: {"frozen": False, "conv": True, "gn": True},
                  decay=lambda p: {"frozen": False, "conv": True, "gn": False})
  tx, _ = optim.make_optimizer(config, method, params)
  grads = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["frozen"], 0.0)
  np.testing.assert_allclose(updates["gn"], 0.0)                     # no decay on GroupNorm
  np.testing.assert_allclose(updates["conv"], -0.01 * 1e-4, rtol=1e-5)  # lr * wd * param


def test_linear_scaling_rule_scales_eval_period():
  tr = base.get_base_config().train
  tr.batch_size, tr.eval_every = 8, 2500
  assert optim.scaled_train_config(tr)["eval_every"] == 5000
  tr.eval_every = 0
  assert optim.scaled_train_config(tr)["eval_every"] == 0    # 0 stays "only at the end"


def test_loop_evaluates_periodically_keeps_best_and_resumes(tmp_path, monkeypatch):
  """The real loop on a toy method and batches: checkpoints, metrics, evaluation every 2 steps with the
  best val MR kept in workdir/best, then a restart that resumes and extends the schedule."""
  import itertools
  import json

  import data_pipelines
  from lla_jax import evaluate
  from tests.test_checkpointing import toy_batch, toy_config, toy_method

  config = toy_config()
  config.train.update(steps=6, eval_every=2, checkpoint_every=2, log_every=1, keep_checkpoints=2)
  monkeypatch.setattr(train, "get_method", lambda c: toy_method())
  monkeypatch.setattr(data_pipelines, "create_dataset",
                      lambda *a, **k: ((toy_batch(i) for i in itertools.count(1)), {}))
  mr = {2: 0.5, 4: 0.3, 6: 0.4, 8: 0.2}
  evaluated = []

  def fake_evaluate(config, workdir, state=None, step=None, method=None, mesh=None, writer=None):
    evaluated.append(int(jax.device_get(state.step)))
    return {"MR": mr[evaluated[-1]], "AP": 0.9, "Recall": 0.95, "JI": 0.7}

  monkeypatch.setattr(evaluate, "evaluate", fake_evaluate)
  result = cli.train_and_evaluate(config, str(tmp_path))
  assert evaluated == [2, 4, 6] and result["MR"] == 0.4
  with open(tmp_path / "best.json") as f:
    assert json.load(f) == {"step": 4, "MR": 0.3, "AP": 0.9, "Recall": 0.95, "JI": 0.7}
  assert sorted(os.listdir(tmp_path / "best")) == ["4"]
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["4", "6"]
  with open(tmp_path / "metrics.jsonl") as f:
    rows = [json.loads(line) for line in f]
  assert [r["step"] for r in rows if "train/loss" in r] == [1, 2, 3, 4, 5, 6]
  assert all(np.isfinite(r["train/loss"]) for r in rows if "train/loss" in r)

  evaluated.clear()
  config.train.steps = 8           # restart with a longer schedule: resumes at 6, trains 7 and 8
  result = cli.train_and_evaluate(config, str(tmp_path))
  assert evaluated == [8] and result["MR"] == 0.2
  with open(tmp_path / "best.json") as f:
    assert json.load(f)["step"] == 8
  assert sorted(os.listdir(tmp_path / "best")) == ["8"]


def test_progress_line(monkeypatch):
  """Step, loss parts, images/s over the steps since the clock started, and the ETA at that rate."""
  from lla_jax import writers
  clock = [100.0]
  monkeypatch.setattr(writers.time, "time", lambda: clock[0])
  progress = writers.Progress(total_steps=1000, batch_size=8, start_step=0)
  progress.restart_clock(1)
  assert progress.line(1, {"loss": 1.5}) == "step 1/1000 | loss 1.5000 | - img/s | ETA -"
  clock[0] += 10.0
  assert progress.line(51, {"loss": 1.25}) == "step 51/1000 | loss 1.2500 | 40.0 img/s | ETA 0:03:09"


def test_progress_shows_every_loss_part_of_a_method():
  from lla_jax import train
  fcos = {"loss": 1.0, "loss_aux": 0.1, "loss_box": 0.2, "loss_cls": 0.3, "lr": 0.01}
  assert list(train.progress_scalars(fcos)) == ["loss", "loss_cls", "loss_box", "loss_aux"]
  rcnn = {"loss": 1.0, "loss_rpn_loc": 0.1, "loss_cls": 0.2, "loss_box_reg": 0.3, "loss_rpn_cls": 0.4, "lr": 0.01,
          "rpn_num_pos": 3.0}
  assert list(train.progress_scalars(rcnn)) == ["loss", "loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"]
