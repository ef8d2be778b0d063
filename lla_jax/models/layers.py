"""Shared building blocks of the backbones: frozen batch norm, the norm factory, convolution padding
styles, and the parameter-tree walks that the optimiser masks are built from.

Padding styles (the two conventions the released weights were trained with):
  'torch'  symmetric k // 2 on each side (PyTorch, detectron2/cvpods, torchvision)
  'same'   TensorFlow "SAME": total max((ceil(n/s) - 1)·s + k - n, 0), the extra pixel after
           (Keras). Both give ceil(n / s) outputs; they differ in which pixels are seen.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

PADDING_STYLES = ("torch", "same")
NORMS = ("frozen_bn", "gn", "bn")

# c2_msra_fill: kaiming normal, fan_out, ReLU gain (detectron2/cvpods backbone init).
msra_fill = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# c2_xavier_fill: kaiming uniform with a = 1, i.e. U(±sqrt(3 / fan_in)) (FPN, P6, P7).
xavier_fill = nn.initializers.variance_scaling(1.0, "fan_in", "uniform")


def compute_dtype(name) -> Any:
  """'float32' | 'bfloat16' (or a dtype) -> jnp dtype; anything else is an error."""
  if not isinstance(name, str):
    return jnp.dtype(name)
  if name not in ("float32", "bfloat16"):
    raise ValueError(f"model.dtype={name!r}: expected 'float32' or 'bfloat16'")
  return jnp.dtype(name)


def conv_padding(kernel: int, style: str):
  """Flax `padding` argument for a square kernel in the given style ('torch' | 'same')."""
  if style == "same":
    return "SAME"
  if style == "torch":
    return ((kernel // 2, kernel // 2), (kernel // 2, kernel // 2))
  raise ValueError(f"padding style {style!r}: expected one of {PADDING_STYLES}")


def conv(features: int, kernel: int, stride: int = 1, *, style: str = "torch", use_bias: bool = False,
         dtype=jnp.float32, kernel_init: Callable = msra_fill, groups: int = 1, name: str | None = None) -> nn.Conv:
  """A k×k convolution with stride and padding style; parameters float32, compute in `dtype`."""
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=conv_padding(kernel, style),
                 use_bias=use_bias, feature_group_count=groups, dtype=dtype, param_dtype=jnp.float32,
                 kernel_init=kernel_init, bias_init=nn.initializers.zeros, name=name)


class FrozenBatchNorm(nn.Module):
  """Batch norm with fixed statistics and affine: y = (x − mean)/sqrt(var + eps)·scale + bias.

  All four per-channel vectors are stored as params (so weight importers write them) and are wrapped
  in stop_gradient here; `trainable_mask`s list them as not trainable. The init is the identity
  (mean 0, var 1 − eps, as detectron2 does), which is also what MSRA caffe weights imply since they
  ship only scale and bias.  x (..., C) -> (..., C) in x's dtype.
  """
  eps: float = 1e-5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
    mean = self.param("mean", nn.initializers.zeros, (c,), jnp.float32)
    var = self.param("var", lambda key, shape, dtype: jnp.full(shape, 1.0 - self.eps, dtype), (c,), jnp.float32)
    scale, bias, mean, var = jax.lax.stop_gradient((scale, bias, mean, var))
    mul = scale * jax.lax.rsqrt(var + self.eps)
    add = bias - mean * mul
    return x * mul.astype(self.dtype) + add.astype(self.dtype)


FROZEN_BN_KEYS = frozenset({"scale", "bias", "mean", "var"})


def is_frozen_bn(module_params: Mapping) -> bool:
  """True if a module's param dict is a FrozenBatchNorm's (exactly scale, bias, mean, var)."""
  return set(module_params.keys()) == FROZEN_BN_KEYS


def group_norm_groups(channels: int, max_groups: int = 32) -> int:
  """Group count of the backbone GroupNorm: 32 (detectron2's GN) where the channels allow it.

  Chosen rule: the largest divisor of `channels` that is ≤ min(max_groups, channels // 2), so a group
  always holds at least 2 channels. Standard widths (64..2048 channels) get exactly 32 groups; the
  tiny CPU variants (width 16: 16/32 channels) get 8/16 groups instead of failing.
  """
  for g in range(max(1, min(max_groups, channels // 2)), 0, -1):
    if channels % g == 0:
      return g
  return 1


@dataclasses.dataclass(frozen=True)
class NormSpec:
  """Which normalisation a backbone uses: kind in NORMS, BN eps/momentum (flax convention:
  running = momentum·running + (1 − momentum)·batch), the GroupNorm group cap."""
  kind: str = "frozen_bn"
  eps: float = 1e-5
  momentum: float = 0.9
  gn_max_groups: int = 32

  def __post_init__(self):
    if self.kind not in NORMS:
      raise ValueError(f"model.backbone.norm={self.kind!r}: expected one of {NORMS}")


def norm_layer(spec: NormSpec, channels: int, *, frozen: bool, train: bool, dtype, name: str) -> nn.Module:
  """The norm module for `channels` features.

  frozen_bn: FrozenBatchNorm. gn: GroupNorm (trainable affine, eps 1e-5 as PyTorch). bn: flax
  BatchNorm with batch_stats; it uses the running averages when not training *or* when the stage is
  frozen (a frozen stage must not change, statistics included).
  """
  if spec.kind == "frozen_bn":
    return FrozenBatchNorm(eps=spec.eps, dtype=dtype, name=name)
  if spec.kind == "gn":
    return nn.GroupNorm(num_groups=group_norm_groups(channels, spec.gn_max_groups), epsilon=1e-5, dtype=dtype,
                        param_dtype=jnp.float32, name=name)
  # Two-pass variance: E[x^2] - E[x]^2 cancels on near-constant channels (as PyTorch computes it).
  return nn.BatchNorm(use_running_average=(not train) or frozen, momentum=spec.momentum, epsilon=spec.eps,
                      use_fast_variance=False,
                      dtype=dtype, param_dtype=jnp.float32, name=name)


def map_params(tree: Mapping, rule: Callable[[tuple, str, Mapping], Any], path: tuple = ()):
  """Maps every leaf of a nested param dict to rule(path_to_module, leaf_name, module_dict).

  Returns a tree of the same structure (plain dicts); used for optimiser masks, where a leaf's
  meaning depends on its siblings (a 'bias' beside a 'kernel' is a conv bias, not a norm shift).
  """
  out = {}
  for key, value in tree.items():
    if isinstance(value, Mapping):
      out[key] = map_params(value, rule, path + (key,))
    else:
      out[key] = rule(path, key, tree)
  return out
