"""Schedule, linear scaling rule and optimiser masking."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import base
from lla_jax import train
from lla_jax.methods import Method


def test_released_schedule():
  lr = train.learning_rate_schedule(0.01, 1000, 0.001, (18750, 24735), 0.1)
  assert float(lr(0)) == pytest.approx(1e-5)
  assert float(lr(500)) == pytest.approx(0.01 * (0.001 * 0.5 + 0.5))
  assert float(lr(1000)) == pytest.approx(0.01)
  assert float(lr(18749)) == pytest.approx(0.01)
  assert float(lr(18750)) == pytest.approx(0.001)
  assert float(lr(24735)) == pytest.approx(0.0001)


def test_linear_scaling_rule_batch_8():
  tr = base.get_base_config().train
  tr.batch_size = 8
  s = train.scaled_train_config(tr)
  assert s["lr"] == pytest.approx(0.005)
  assert s["steps"] == 56250 and s["lr_steps"] == (37500, 49470) and s["checkpoint_every"] == 10000


def test_frozen_params_untouched_and_decay_masked():
  config = base.get_base_config()
  config.train.warmup_steps = 0
  params = {"frozen": jnp.ones(3), "conv": jnp.ones(3), "gn": jnp.ones(3)}
  method = Method(init=None, loss=None, predict=None,
                  trainable=lambda p: {"frozen": False, "conv": True, "gn": True},
                  decay=lambda p: {"frozen": False, "conv": True, "gn": False})
  tx, _ = train.make_optimizer(config, method, params)
  grads = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["frozen"], 0.0)
  np.testing.assert_allclose(updates["gn"], 0.0)                     # no decay on GroupNorm
  np.testing.assert_allclose(updates["conv"], -0.01 * 1e-4, rtol=1e-5)  # lr * wd * param
