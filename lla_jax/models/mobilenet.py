"""MobileNet v1 trunk of ALFNet (keras_alfnet/model/mobilenet_v1.py), in Keras' layout and with Keras' layer names.

conv1: 3×3/2 conv (32·α) → BN → ReLU6, then 13 depthwise-separable blocks, each
conv_dw_i 3×3 depthwise (stride s_i) → BN → ReLU6 → conv_pw_i 1×1 (c_i·α) → BN → ReLU6.
TF "same" padding, no conv biases, ordinary trainable BN (batch statistics in training, flax
momentum 0.99 = Keras momentum 0.99, eps 1e-3). Taps after pointwise blocks 5, 11, 13 = strides 8/16/32.
Parameter names equal the Keras layer names (conv1, conv1_bn, conv_dw_1, conv_dw_1_bn, conv_pw_1, ...).
"""
from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import jax.numpy as jnp

from lla_jax.models import layers

# (pointwise filters at α = 1, depthwise stride) of blocks 1..13.
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
          (512, 1), (1024, 2), (1024, 1))
TAPS = {5: "C3", 11: "C4", 13: "C5"}

_glorot = nn.initializers.glorot_uniform()  # the Keras default kernel initialiser


class MobileNetV1(nn.Module):
  """images (B,H,W,3) -> {'C3','C4','C5'} (strides 8, 16, 32; 256·α, 512·α, 1024·α channels) in `dtype`.

  `alpha` is Keras' width multiplier: every conv has int(filters·α) channels.
  """
  alpha: float = 1.0
  dtype: Any = jnp.float32
  bn_eps: float = 1e-3
  bn_momentum: float = 0.99

  @nn.compact
  def __call__(self, x, train: bool = False):
    def bn(name):
      return nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum, epsilon=self.bn_eps,
                          dtype=self.dtype, param_dtype=jnp.float32, name=name)

    x = x.astype(self.dtype)
    x = layers.conv(int(32 * self.alpha), 3, 2, style="same", dtype=self.dtype, kernel_init=_glorot, name="conv1")(x)
    x = nn.relu6(bn("conv1_bn")(x))
    out = {}
    for i, (filters, stride) in enumerate(BLOCKS, start=1):
      c = x.shape[-1]
      x = layers.conv(c, 3, stride, style="same", groups=c, dtype=self.dtype, kernel_init=_glorot,
                      name=f"conv_dw_{i}")(x)
      x = nn.relu6(bn(f"conv_dw_{i}_bn")(x))
      x = layers.conv(int(filters * self.alpha), 1, style="same", dtype=self.dtype, kernel_init=_glorot,
                      name=f"conv_pw_{i}")(x)
      x = nn.relu6(bn(f"conv_pw_{i}_bn")(x))
      if i in TAPS:
        out[TAPS[i]] = x
    return out


def trainable_mask(params: Mapping, frozen_blocks: int = 1) -> dict:
  """Optimiser mask: False for the conv kernels of conv1 and blocks 1..frozen_blocks (ALFNet freezes conv1
  and block 1); their BN layers keep training as in Keras (only the Conv layers are trainable=False)."""
  frozen = {"conv1"} | {f"conv_{kind}_{i}" for kind in ("dw", "pw") for i in range(1, frozen_blocks + 1)}
  return layers.map_params(params, lambda path, name, module: not (path and path[-1] in frozen))
