"""ResNet-18/34/50/101 backbones in the three layouts of the released weights (cvpods
cvpods/modeling/backbone/resnet.py, ALFNet keras_alfnet/model/resnet50.py).

  caffe        detectron2 MSRA: stride on the first 1×1 of a down-sampling bottleneck (STRIDE_IN_1X1) and
               on the 1×1 shortcut, convs without bias, FrozenBN eps 1e-5, stem 7×7/2 pad 3 → norm → ReLU
               → 3×3/2 max-pool with PyTorch symmetric pad 1.
  torchvision  as caffe but the stride sits on the 3×3.
  keras        Keras-v1 ResNet-50 (ALFNet): stride on the first 1×1, every conv with bias, BN eps 1e-3,
               3×3 convs TF "same", stem zero-pad 3 + valid 7×7/2 (= pad 3), max-pool TF "same".
               keras.applications' current ResNet50 differs in BN eps (1.001e-5) and pools with a
               symmetric pad 1: `bn_eps` and `stem_pool` override the layout defaults.
Basic blocks (18/34) put the stride on their first 3×3 in every layout.

Parameter tree: stem/{conv1, norm1}, res2..res5/block{i}/{conv1, norm1, conv2, norm2, [conv3, norm3],
[shortcut, shortcut_norm]}. Stage names follow detectron2 so freeze_at reads as there:
0 nothing frozen, 1 stem, 2 stem + res2, ... 5 everything.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from lla_jax.models import layers

STAGE_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
STAGES = ("res2", "res3", "res4", "res5")
FEATURES = ("C2", "C3", "C4", "C5")

# Per layout: stride in the 1×1, conv bias, 3×3 padding style, stem max-pool padding, BN eps.
LAYOUTS = {
    "caffe": dict(stride_in_1x1=True, conv_bias=False, padding="torch", stem_pool="symmetric", bn_eps=1e-5),
    "torchvision": dict(stride_in_1x1=False, conv_bias=False, padding="torch", stem_pool="symmetric", bn_eps=1e-5),
    "keras": dict(stride_in_1x1=True, conv_bias=True, padding="same", stem_pool="same", bn_eps=1e-3),
}
STEM_POOLS = ("symmetric", "same")


def frozen_stages(freeze_at: int) -> tuple:
  """Names of the frozen parts for detectron2's FREEZE_AT: 0 -> (), 1 -> ('stem',), 2 -> ('stem', 'res2'), ..."""
  if not 0 <= freeze_at <= 5:
    raise ValueError(f"model.backbone.freeze_at={freeze_at}: expected 0..5 (0 none, 1 stem, 2 stem+res2, ...)")
  return (("stem",) + STAGES)[:freeze_at]


def stage_widths(depth: int, width: int) -> tuple:
  """((bottleneck channels, out channels) per stage) for a stem width (64 standard)."""
  if depth not in STAGE_BLOCKS:
    raise ValueError(f"model.backbone.depth={depth}: expected one of {sorted(STAGE_BLOCKS)}")
  expansion = 1 if depth < 50 else 4
  return tuple((width * 2 ** i, width * 2 ** i * expansion) for i in range(4))


def max_pool_3x3_s2(x, style: str):
  """3×3/2 max-pool: 'symmetric' pads 1 on each side with −inf (PyTorch); 'same' is TF "SAME"."""
  if style == "symmetric":
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
  if style == "same":
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
  raise ValueError(f"stem_pool={style!r}: expected one of {STEM_POOLS}")


class Bottleneck(nn.Module):
  """1×1 → 3×3 → 1×1 residual block (expansion 4). x (B,H,W,Cin) -> (B,H/s,W/s,out_channels)."""
  bottleneck_channels: int
  out_channels: int
  stride: int
  stride_in_1x1: bool
  conv_bias: bool
  padding: str
  norm: layers.NormSpec
  frozen: bool
  dtype: Any

  @nn.compact
  def __call__(self, x, train: bool):
    s1, s3 = (self.stride, 1) if self.stride_in_1x1 else (1, self.stride)
    kw = dict(use_bias=self.conv_bias, dtype=self.dtype)
    nkw = dict(frozen=self.frozen, train=train, dtype=self.dtype)
    shortcut = x
    if x.shape[-1] != self.out_channels or self.stride != 1:
      shortcut = layers.conv(self.out_channels, 1, self.stride, name="shortcut", **kw)(x)
      shortcut = layers.norm_layer(self.norm, self.out_channels, name="shortcut_norm", **nkw)(shortcut)
    y = layers.conv(self.bottleneck_channels, 1, s1, name="conv1", **kw)(x)
    y = nn.relu(layers.norm_layer(self.norm, self.bottleneck_channels, name="norm1", **nkw)(y))
    y = layers.conv(self.bottleneck_channels, 3, s3, style=self.padding, name="conv2", **kw)(y)
    y = nn.relu(layers.norm_layer(self.norm, self.bottleneck_channels, name="norm2", **nkw)(y))
    y = layers.conv(self.out_channels, 1, 1, name="conv3", **kw)(y)
    y = layers.norm_layer(self.norm, self.out_channels, name="norm3", **nkw)(y)
    return nn.relu(y + shortcut)


class BasicBlock(nn.Module):
  """3×3 → 3×3 residual block of ResNet-18/34, stride on the first 3×3."""
  bottleneck_channels: int  # unused (equal to out_channels); kept so both blocks share a constructor
  out_channels: int
  stride: int
  stride_in_1x1: bool
  conv_bias: bool
  padding: str
  norm: layers.NormSpec
  frozen: bool
  dtype: Any

  @nn.compact
  def __call__(self, x, train: bool):
    kw = dict(use_bias=self.conv_bias, dtype=self.dtype)
    nkw = dict(frozen=self.frozen, train=train, dtype=self.dtype)
    shortcut = x
    if x.shape[-1] != self.out_channels or self.stride != 1:
      shortcut = layers.conv(self.out_channels, 1, self.stride, name="shortcut", **kw)(x)
      shortcut = layers.norm_layer(self.norm, self.out_channels, name="shortcut_norm", **nkw)(shortcut)
    y = layers.conv(self.out_channels, 3, self.stride, style=self.padding, name="conv1", **kw)(x)
    y = nn.relu(layers.norm_layer(self.norm, self.out_channels, name="norm1", **nkw)(y))
    y = layers.conv(self.out_channels, 3, 1, style=self.padding, name="conv2", **kw)(y)
    y = layers.norm_layer(self.norm, self.out_channels, name="norm2", **nkw)(y)
    return nn.relu(y + shortcut)


class Stage(nn.Module):
  """`num_blocks` residual blocks; the first one carries the stride. Blocks are named block0, block1, ..."""
  block: Any
  num_blocks: int
  stride: int
  block_kwargs: Mapping

  @nn.compact
  def __call__(self, x, train: bool):
    for i in range(self.num_blocks):
      x = self.block(stride=self.stride if i == 0 else 1, name=f"block{i}", **self.block_kwargs)(x, train)
    return x


class Stem(nn.Module):
  """7×7/2 conv (pad 3) → norm → ReLU → 3×3/2 max-pool: stride 4, `width` channels."""
  width: int
  conv_bias: bool
  pool: str
  norm: layers.NormSpec
  frozen: bool
  dtype: Any

  @nn.compact
  def __call__(self, x, train: bool):
    x = layers.conv(self.width, 7, 2, style="torch", use_bias=self.conv_bias, dtype=self.dtype, name="conv1")(x)
    x = layers.norm_layer(self.norm, self.width, frozen=self.frozen, train=train, dtype=self.dtype, name="norm1")(x)
    return max_pool_3x3_s2(nn.relu(x), self.pool)


class ResNet(nn.Module):
  """ResNet trunk. images (B,H,W,3) -> {'C2','C3','C4','C5'} at strides 4, 8, 16, 32 in `dtype`.

  Spatial sizes are ceil(n / 2) per stride-2 step in every layout (priors.feature_shape).
  `freeze_at` stages sit under stop_gradient (no backward pass through them); `trainable_mask`
  gives the optimiser mask for the same parameters.
  """
  depth: int = 50
  layout: str = "caffe"
  norm: str = "frozen_bn"
  freeze_at: int = 0
  width: int = 64
  dtype: Any = jnp.float32
  bn_eps: Optional[float] = None      # None: the layout's default
  stem_pool: Optional[str] = None     # None: the layout's default ('symmetric' | 'same')
  bn_momentum: float = 0.9            # norm 'bn' only (PyTorch momentum 0.1)
  gn_max_groups: int = 32             # norm 'gn' only, see layers.group_norm_groups

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.layout not in LAYOUTS:
      raise ValueError(f"model.backbone.layout={self.layout!r}: expected one of {tuple(LAYOUTS)}")
    lay = LAYOUTS[self.layout]
    frozen = frozen_stages(self.freeze_at)
    widths = stage_widths(self.depth, self.width)
    norm = layers.NormSpec(self.norm, lay["bn_eps"] if self.bn_eps is None else self.bn_eps, self.bn_momentum,
                           self.gn_max_groups)
    x = x.astype(self.dtype)
    x = Stem(self.width, lay["conv_bias"], self.stem_pool or lay["stem_pool"], norm, "stem" in frozen, self.dtype,
             name="stem")(x, train)
    if "stem" in frozen:
      x = jax.lax.stop_gradient(x)
    block = BasicBlock if self.depth < 50 else Bottleneck
    out = {}
    for i, (name, feature) in enumerate(zip(STAGES, FEATURES)):
      kwargs = dict(bottleneck_channels=widths[i][0], out_channels=widths[i][1], stride_in_1x1=lay["stride_in_1x1"],
                    conv_bias=lay["conv_bias"], padding=lay["padding"], norm=norm, frozen=name in frozen,
                    dtype=self.dtype)
      x = Stage(block, STAGE_BLOCKS[self.depth][i], 1 if i == 0 else 2, kwargs, name=name)(x, train)
      if name in frozen:
        x = jax.lax.stop_gradient(x)
      out[feature] = x
    return out


def trainable_mask(params: Mapping, freeze_at: int) -> dict:
  """Optimiser mask of a ResNet param tree: False for the frozen stages and for every FrozenBN."""
  frozen = set(frozen_stages(freeze_at))
  unknown = set(params) - {"stem", *STAGES}
  if unknown:
    raise ValueError(f"not a ResNet param tree: unexpected top-level keys {sorted(unknown)}")

  def rule(path, name, module):
    return not (path[0] in frozen or layers.is_frozen_bn(module))

  return layers.map_params(params, rule)
