"""Box head of Faster R-CNN (cvpods cvpods/modeling/roi_heads/box_head.py FastRCNNConvFCHead with 0 conv and
2 FC, fast_rcnn.py FastRCNNOutputLayers and its losses). Composed in lla_jax/methods/faster_rcnn.py: RoIs come from
lla_jax.assigners.rcnn.roi_assign + sample_rois, features from lla_jax.models.roi_align."""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lla_jax import losses


class FastRCNNHead(nn.Module):
  """pooled (R, S, S, C) -> (cls_logits (R, num_classes + 1) float32, box_deltas (R, 4 num_classes) float32).

  The RoI feature is flattened CHANNEL-MAJOR, (C, S, S) as torch lays it out, so cvpods' fc1 weight
  (1024, C S S) converts by a plain transpose; then FC 1024 + ReLU, FC 1024 + ReLU (kaiming-uniform a = 1,
  i.e. variance 1 / fan_in, bias 0); cls_score (background last) N(0, 0.01^2); bbox_pred class-specific
  N(0, 0.001^2); biases 0.
  """
  num_classes: int = 1
  fc_dim: int = 1024
  num_fc: int = 2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, pooled):
    r = pooled.shape[0]
    x = jnp.transpose(pooled, (0, 3, 1, 2)).reshape(r, -1)
    fc_init = nn.initializers.variance_scaling(1.0, "fan_in", "uniform")
    for i in range(self.num_fc):
      x = nn.relu(nn.Dense(self.fc_dim, dtype=self.dtype, param_dtype=jnp.float32, kernel_init=fc_init,
                           name=f"fc{i + 1}")(x))
    dense = lambda n, std, name: nn.Dense(n, dtype=self.dtype, param_dtype=jnp.float32,
                                          kernel_init=nn.initializers.normal(std), name=name)
    cls = dense(self.num_classes + 1, 0.01, "cls_score")(x).astype(jnp.float32)
    box = dense(4 * self.num_classes, 0.001, "bbox_pred")(x).astype(jnp.float32)
    return cls, box


def fast_rcnn_losses(cls_logits, box_deltas, classes, box_targets, valid, smooth_l1_beta=1.0):
  """(loss_cls, loss_box_reg) over the sampled RoIs of a batch (any leading shape, flattened to R slots).

  cls_logits (..., C + 1), background last; box_deltas (..., 4 C); classes (...) int in 0..C (C background);
  box_targets (..., 4); valid (...) bool marks the sampled slots. loss_cls = mean over the sampled RoIs of the
  softmax cross-entropy; loss_box_reg = sum over foreground RoIs of smooth-L1 (beta 1) of the deltas of
  their class minus the target, summed over 4 coordinates, divided by the number of sampled RoIs (not the
  foreground count). With the global batch this is the data-parallel mean whenever every device samples
  the same number of RoIs (cvpods averages per-device means).
  """
  c = box_deltas.shape[-1] // 4
  logits = cls_logits.reshape(-1, c + 1).astype(jnp.float32)
  cls = classes.reshape(-1).astype(jnp.int32)
  ok = valid.reshape(-1)
  n = jnp.maximum(jnp.sum(ok), 1).astype(jnp.float32)
  safe = jnp.clip(cls, 0, c)
  ce = -jnp.take_along_axis(jax.nn.log_softmax(logits, -1), safe[:, None], axis=1)[:, 0]
  loss_cls = jnp.sum(jnp.where(ok, ce, 0.0)) / n
  fg = ok & (cls >= 0) & (cls < c)
  deltas = box_deltas.reshape(-1, c, 4).astype(jnp.float32)
  pred = jnp.take_along_axis(deltas, jnp.clip(cls, 0, c - 1)[:, None, None], axis=1)[:, 0]
  l1 = losses.smooth_l1(pred, box_targets.reshape(-1, 4).astype(jnp.float32), smooth_l1_beta).sum(-1)
  loss_box = jnp.sum(jnp.where(fg, l1, 0.0)) / n
  return loss_cls, loss_box
