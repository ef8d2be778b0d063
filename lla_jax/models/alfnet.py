"""ALFNet network (ALFNet keras_alfnet/model/model_alf.py, base_model.py): a backbone, four detection levels and one Convolutional
Predictor Block (CPB) per (level, step).

Levels: P3 = ReLU(3x3 conv 512) on the stride-8 tap, P4 / P5 = the raw stride-16 / stride-32 taps,
P6 = ReLU(3x3/2 conv 256, TF "same") on the stride-32 tap. No FPN. Every step reads the same four
maps through its own CPBs; the box refinement between steps (decode, clip) lives in the method.
Parameter names follow the Keras model (P3, P6, pred{level}_{step}) so released weights map by name.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lla_jax.models import backbones, layers

# Keras 2.0 glorot_normal: a normal truncated at 2 std with std sqrt(1 / fan_avg) *not* corrected for
# the truncation; jax's "truncated_normal" divides by 0.87962566, so scale the variance back down.
keras_glorot_normal = nn.initializers.variance_scaling(0.87962566103423978 ** 2, "fan_avg", "truncated_normal")


def prior_bias(prior_prob: float):
  """Constant bias init -log((1 - p) / p): every anchor starts at score p (-4.5951 for p = 0.01)."""
  return nn.initializers.constant(-math.log((1.0 - prior_prob) / prior_prob))


class CPB(nn.Module):
  """Convolutional Predictor Block: 3x3 conv + ReLU, then a 1x1 sigmoid score and 1x1 linear offsets.

  (B, h, w, C) -> scores (B, h w A) float32 probabilities, deltas (B, h w A, 4) float32, index
  (y w + x) A + a, offsets per anchor in (dx, dy, dw, dh) order (std-normalised).
  """
  num_anchors: int = 2
  channels: int = 256
  prior_prob: float = 0.01
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    conv = lambda n, k, name, **kw: nn.Conv(n, (k, k), padding="SAME", dtype=self.dtype, name=name,
                                              kernel_init=keras_glorot_normal, **kw)
    x = nn.relu(conv(self.channels, 3, "conv")(x))
    logits = conv(self.num_anchors, 1, "rpn_class", bias_init=prior_bias(self.prior_prob))(x)
    deltas = conv(4 * self.num_anchors, 1, "rpn_regress")(x)
    b = x.shape[0]
    scores = jax.nn.sigmoid(logits.astype(jnp.float32)).reshape(b, -1)
    return scores, deltas.astype(jnp.float32).reshape(b, -1, 4)


class ALFNet(nn.Module):
  """Backbone + extra layers + num_steps x 4 CPBs.

  __call__(images (B, H, W, 3), train, steps=None) -> tuple over steps of (scores (B, N), deltas
  (B, N, 4)), levels concatenated P3..P6; `steps` < num_steps runs only the first CPB sets
  (inference at an earlier step, the alternating update). The backbone returns a dict with keys
  'C3', 'C4', 'C5' (strides 8, 16, 32) and takes `train`.
  """
  backbone: nn.Module
  num_steps: int = 2
  num_anchors: int = 2
  cpb_channels: int = 256
  p3_channels: int = 512
  p6_channels: int = 256
  prior_prob: float = 0.01
  dtype: Any = jnp.float32

  def levels(self, images, train):
    """The four detection maps (P3, P4, P5, P6) of keras_alfnet/model/model_alf.py."""
    feats = self.backbone(images.astype(self.dtype), train=train)
    conv = lambda n, s, name: nn.Conv(n, (3, 3), strides=(s, s), padding="SAME", dtype=self.dtype, name=name,
                                      kernel_init=keras_glorot_normal)
    p3 = nn.relu(conv(self.p3_channels, 1, "P3")(feats["C3"]))
    p6 = nn.relu(conv(self.p6_channels, 2, "P6")(feats["C5"]))   # lax "SAME" is TF "same": extra pad after
    return p3, feats["C4"], feats["C5"], p6

  @nn.compact
  def __call__(self, images, train: bool = False, steps: int | None = None):
    steps = self.num_steps if steps is None else steps
    if not 1 <= steps <= self.num_steps:
      raise ValueError(f"ALFNet: steps={steps} outside 1..num_steps={self.num_steps}")
    maps = self.levels(images, train)
    if self.is_initializing():
      steps = self.num_steps  # create every CPB whatever the caller asks for
    out = []
    for t in range(1, steps + 1):
      per_level = [CPB(self.num_anchors, self.cpb_channels, self.prior_prob, self.dtype, name=f"pred{l}_{t}")(m)
                   for l, m in enumerate(maps)]
      out.append((jnp.concatenate([s for s, _ in per_level], 1), jnp.concatenate([d for _, d in per_level], 1)))
    return tuple(out)


def head_step(path: Sequence[str]) -> int | None:
  """The ALF step (1-based) owning a parameter path, or None for backbone / extra layers."""
  for name in path:
    if name.startswith("pred") and "_" in name:
      return int(name.rsplit("_", 1)[1])
  return None


def from_config(config, backbone: nn.Module | None = None) -> ALFNet:
  """ALFNet from config.alfnet / config.model; `backbone` overrides the configured one (tests)."""
  a = config.alfnet
  return ALFNet(backbone=backbone if backbone is not None else backbones.build_backbone(
                    config.model.backbone, layers.compute_dtype(config.model.dtype)),
                num_steps=a.num_steps, num_anchors=len(a.anchor_scales[0]), cpb_channels=a.cpb_channels,
                p3_channels=a.p3_channels, p6_channels=a.p6_channels, prior_prob=a.prior_prob,
                dtype=layers.compute_dtype(config.model.dtype))
