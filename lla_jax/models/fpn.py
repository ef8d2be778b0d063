"""Feature pyramid P3..P7 on C3..C5 (lla.md §3.3): the RetinaNet/FCOS FPN of detectron2/cvpods.

lateral{3,4,5}: 1×1 conv (bias); output{3,4,5}: 3×3 conv (bias, pad 1); top-down nearest ×2 upsampling
and sum fusion; no norm. p6: 3×3/2 conv (pad 1) on P5 ('p5', released LLA/FCOS/ATSS) or on C5 ('c5');
p7: 3×3/2 conv on ReLU(P6). All convs c2_xavier (kaiming uniform a = 1), bias 0.
"""
from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import jax.numpy as jnp

from lla_jax.models import layers

P6_SOURCES = ("p5", "c5")


def upsample_nearest_2x(x, size):
  """x (B,h,w,C) -> (B,H,W,C) nearest ×2, cropped to size = (H, W) (odd lateral sizes: H = 2h − 1)."""
  x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
  return x[:, :size[0], :size[1]]


class FPN(nn.Module):
  """{'C3','C4','C5'} -> [P3, P4, P5, P6, P7], each (B, h_l, w_l, channels) in `dtype`."""
  channels: int = 256
  p6_from: str = "p5"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: Mapping):
    if self.p6_from not in P6_SOURCES:
      raise ValueError(f"model.fpn.p6_from={self.p6_from!r}: expected one of {P6_SOURCES}")
    kw = dict(style="torch", use_bias=True, dtype=self.dtype, kernel_init=layers.xavier_fill)
    prev, outs = None, {}
    for level in (5, 4, 3):  # top-down
      c = features[f"C{level}"].astype(self.dtype)
      lateral = layers.conv(self.channels, 1, name=f"lateral{level}", **kw)(c)
      prev = lateral if prev is None else lateral + upsample_nearest_2x(prev, lateral.shape[1:3])
      outs[level] = layers.conv(self.channels, 3, name=f"output{level}", **kw)(prev)
    p6_in = outs[5] if self.p6_from == "p5" else features["C5"].astype(self.dtype)
    p6 = layers.conv(self.channels, 3, 2, name="p6", **kw)(p6_in)
    p7 = layers.conv(self.channels, 3, 2, name="p7", **kw)(nn.relu(p6))
    return [outs[3], outs[4], outs[5], p6, p7]
