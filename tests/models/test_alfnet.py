"""The ALFNet network (Liu et al., ECCV 2018; upstream liuwei16/ALFNet keras_alfnet/model/model_alf.py):
parameter names, output shapes, prior-probability bias."""
import math

import jax
import jax.numpy as jnp
import numpy as np

from lla_jax import priors
from lla_jax.models import alfnet as alf_model
from tests.models import KEY, TinyBackbone


def test_model_outputs_and_names():
  model = alf_model.ALFNet(backbone=TinyBackbone(), num_steps=3, cpb_channels=8, p3_channels=8, p6_channels=8)
  x = jnp.zeros((1, 64, 128, 3))
  v = jax.jit(model.init)(KEY, x)
  names = set(v["params"])
  assert {f"pred{l}_{t}" for l in range(4) for t in (1, 2, 3)} | {"P3", "P6", "backbone"} == names
  out = jax.jit(model.apply)(v, x)
  n = len(priors.alfnet_anchors(64, 128))
  assert len(out) == 3 and all(s.shape == (1, n) and d.shape == (1, n, 4) for s, d in out)
  np.testing.assert_allclose(v["params"]["pred2_1"]["rpn_class"]["bias"], -math.log(99.0), rtol=1e-6)
  assert len(jax.jit(model.apply, static_argnames="steps")(v, x, steps=1)) == 1
  # Index order (y W_l + x) A + a: the level-1 scores are the (h, w, A) map flattened row-major.
  assert alf_model.head_step(["params", "pred3_2", "conv", "kernel"]) == 2
  assert alf_model.head_step(["backbone", "res3"]) is None
