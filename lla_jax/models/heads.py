"""The FCOS-family head shared across pyramid levels (the LLA playground fcos.py, FCOSHead).

cls tower and box tower: `num_convs` × [3×3 conv (bias) → GroupNorm(gn_groups) → ReLU] each;
cls_score 3×3 → num_classes (bias −log((1 − p)/p)); bbox_pred 3×3 → 4; the auxiliary 3×3 → 1 branch
('iou_pred' for LLA, 'centerness' for FCOS/ATSS) is fed by the BOX tower. One learnable scale per
level (`scales`, init 1). Box output ltrb = ReLU(scale_l · bbox_pred) · stride_l, in input pixels
(NORM_REG_TARGETS). Conv weights N(0, 0.01²), biases 0 except cls_score; GN weight 1, bias 0.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp


AUX_BRANCHES = {"iou": "iou_pred", "centerness": "centerness"}


def prior_bias(prior_prob: float) -> float:
  """Focal-loss prior: the cls bias making sigmoid(bias) = prior_prob (0.01 -> −4.59512)."""
  return -math.log((1.0 - prior_prob) / prior_prob)


class FCOSHead(nn.Module):
  """features [P3..P7] (B, h_l, w_l, Cin) -> per-level lists, float32:

  'cls_logits' [(B, h_l, w_l, num_classes)], 'ltrb' [(B, h_l, w_l, 4)] (≥ 0, pixels),
  'aux_logits' [(B, h_l, w_l)].
  """
  num_classes: int = 1
  channels: int = 256
  num_convs: int = 4
  gn_groups: int = 32
  prior_prob: float = 0.01
  aux: str = "iou"
  strides: Sequence[int] = (8, 16, 32, 64, 128)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features):
    if self.aux not in AUX_BRANCHES:
      raise ValueError(f"model.head.aux={self.aux!r}: expected one of {tuple(AUX_BRANCHES)}")
    if self.channels % self.gn_groups:
      raise ValueError(f"model.head.gn_groups={self.gn_groups} does not divide model.head.channels={self.channels}")
    if len(features) != len(self.strides):
      raise ValueError(f"{len(features)} feature levels but model.head.strides={tuple(self.strides)}")
    init = nn.initializers.normal(0.01)

    def conv3x3(features, name, bias_init=nn.initializers.zeros):
      return nn.Conv(features, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype, param_dtype=jnp.float32,
                     kernel_init=init, bias_init=bias_init, name=name)

    def gn(name):
      return nn.GroupNorm(num_groups=self.gn_groups, epsilon=1e-5, dtype=self.dtype, param_dtype=jnp.float32,
                          name=name)

    # Modules are built once and applied to every level: the head's weights are shared.
    towers = {t: [(conv3x3(self.channels, f"{t}_tower{i}"), gn(f"{t}_norm{i}")) for i in range(self.num_convs)]
              for t in ("cls", "box")}
    cls_score = conv3x3(self.num_classes, "cls_score", nn.initializers.constant(prior_bias(self.prior_prob)))
    bbox_pred = conv3x3(4, "bbox_pred")
    aux_pred = conv3x3(1, AUX_BRANCHES[self.aux])
    scales = self.param("scales", nn.initializers.ones, (len(self.strides),), jnp.float32)

    out = {"cls_logits": [], "ltrb": [], "aux_logits": []}
    for level, (x, stride) in enumerate(zip(features, self.strides)):
      x = x.astype(self.dtype)
      tower = {}
      for t, blocks in towers.items():
        y = x
        for conv, norm in blocks:
          y = nn.relu(norm(conv(y)))
        tower[t] = y
      out["cls_logits"].append(cls_score(tower["cls"]).astype(jnp.float32))
      box = bbox_pred(tower["box"]).astype(jnp.float32)
      out["ltrb"].append(nn.relu(scales[level] * box) * float(stride))
      out["aux_logits"].append(aux_pred(tower["box"]).astype(jnp.float32)[..., 0])
    return out
