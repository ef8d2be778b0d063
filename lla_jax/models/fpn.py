"""Feature pyramid (Lin et al., CVPR 2017) as detectron2 / cvpods build it (cvpods
cvpods/modeling/backbone/fpn.py): P3..P7 for RetinaNet / FCOS / LLA, P2..P6 for Faster R-CNN.

lateral{l}: 1×1 conv (bias); output{l}: 3×3 conv (bias, pad 1), for every input level l; top-down
nearest ×2 upsampling and sum fusion; no norm. Output levels above the top input level come from the
top block:
  'conv'     (LastLevelP6P7, RetinaNet / FCOS): p6 = 3×3/2 conv (pad 1) on P5 ('p5', released
             LLA/FCOS/ATSS) or on C5 ('c5'); p7 (and higher) = 3×3/2 conv on ReLU(previous level).
  'maxpool'  (LastLevelMaxPool, Faster R-CNN): P6 = max-pool kernel 1, stride 2 of P5 (no parameters).
All convs c2_xavier (kaiming uniform a = 1), bias 0.
"""
from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import jax.numpy as jnp

from lla_jax.models import layers

P6_SOURCES = ("p5", "c5")
TOP_BLOCKS = ("conv", "maxpool")


def upsample_nearest_2x(x, size):
  """x (B,h,w,C) -> (B,H,W,C) nearest ×2, cropped to size = (H, W) (odd lateral sizes: H = 2h − 1)."""
  x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
  return x[:, :size[0], :size[1]]


def max_pool_1x1_s2(x):
  """detectron2 LastLevelMaxPool: F.max_pool2d(x, kernel_size=1, stride=2, padding=0) = every other pixel."""
  return x[:, ::2, ::2]


def check_levels(in_levels, out_levels) -> None:
  """Both consecutive ascending; outputs start inside the inputs and reach at least the top input."""
  ins, outs = tuple(in_levels), tuple(out_levels)
  consecutive = lambda v: len(v) > 0 and v == tuple(range(v[0], v[0] + len(v)))
  if not consecutive(ins) or not consecutive(outs) or not ins[0] <= outs[0] <= ins[-1] or outs[-1] < ins[-1]:
    raise ValueError(f"model.fpn.in_levels={ins}, out_levels={outs}: expected consecutive ascending levels, the "
                     f"outputs starting within the inputs and reaching at least level {ins[-1] if ins else '?'}")


class FPN(nn.Module):
  """{'C{l}' for l in in_levels} -> [P_l for l in out_levels], each (B, h_l, w_l, channels) in `dtype`."""
  channels: int = 256
  p6_from: str = "p5"
  in_levels: tuple = (3, 4, 5)
  out_levels: tuple = (3, 4, 5, 6, 7)
  top_block: str = "conv"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: Mapping):
    if self.p6_from not in P6_SOURCES:
      raise ValueError(f"model.fpn.p6_from={self.p6_from!r}: expected one of {P6_SOURCES}")
    if self.top_block not in TOP_BLOCKS:
      raise ValueError(f"model.fpn.top_block={self.top_block!r}: expected one of {TOP_BLOCKS}")
    check_levels(self.in_levels, self.out_levels)
    kw = dict(style="torch", use_bias=True, dtype=self.dtype, kernel_init=layers.xavier_fill)
    prev, outs = None, {}
    for level in reversed(tuple(self.in_levels)):  # top-down
      c = features[f"C{level}"].astype(self.dtype)
      lateral = layers.conv(self.channels, 1, name=f"lateral{level}", **kw)(c)
      prev = lateral if prev is None else lateral + upsample_nearest_2x(prev, lateral.shape[1:3])
      outs[level] = layers.conv(self.channels, 3, name=f"output{level}", **kw)(prev)
    top = self.in_levels[-1]
    for level in range(top + 1, self.out_levels[-1] + 1):
      if self.top_block == "maxpool":
        outs[level] = max_pool_1x1_s2(outs[level - 1])
      elif level == top + 1:
        x = outs[top] if self.p6_from == "p5" else features[f"C{top}"].astype(self.dtype)
        outs[level] = layers.conv(self.channels, 3, 2, name=f"p{level}", **kw)(x)
      else:
        outs[level] = layers.conv(self.channels, 3, 2, name=f"p{level}", **kw)(nn.relu(outs[level - 1]))
    return [outs[level] for level in self.out_levels]
