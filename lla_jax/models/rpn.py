"""Region proposal network of Faster R-CNN (cvpods cvpods/modeling/proposal_generator/rpn.py
StandardRPNHead, rpn_outputs.py losses): the head shared by P2..P6 and its two losses.

Composed in lla_jax/methods/faster_rcnn.py: proposals come from lla_jax.postprocess.rpn_proposals, targets from
lla_jax.assigners.rcnn.rpn_assign + sample_rpn."""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from lla_jax import losses


class RPNHead(nn.Module):
  """features [(B, h_l, w_l, C)] of P2..P6 -> (objectness_logits (B, A) float32, anchor_deltas (B, A, 4) float32).

  3x3 conv C -> C (bias) + ReLU, then 1x1 -> num_anchors logits and 1x1 -> 4 num_anchors deltas, the same
  weights on every level; all N(0, 0.01^2), biases 0. Anchor order = lla_jax.priors.rcnn_anchors: levels,
  row-major cells, the cell's anchors (logit channel a, delta channels 4a..4a+3 = dx, dy, dw, dh).
  """
  num_anchors: int = 3
  channels: int = 256
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: Sequence):
    init = nn.initializers.normal(0.01)
    dense = lambda n, k, name: nn.Conv(n, (k, k), padding=((k // 2, k // 2),) * 2, dtype=self.dtype,
                                       param_dtype=jnp.float32, kernel_init=init, bias_init=nn.initializers.zeros,
                                       name=name)
    conv = dense(self.channels, 3, "conv")
    cls = dense(self.num_anchors, 1, "objectness_logits")
    box = dense(4 * self.num_anchors, 1, "anchor_deltas")
    logits, deltas = [], []
    for f in features:  # modules built once: shared across levels
      t = nn.relu(conv(f))
      b, h, w = f.shape[:3]
      logits.append(cls(t).astype(jnp.float32).reshape(b, h * w * self.num_anchors))
      deltas.append(box(t).astype(jnp.float32).reshape(b, h * w * self.num_anchors, 4))
    return jnp.concatenate(logits, axis=1), jnp.concatenate(deltas, axis=1)


def rpn_losses(objectness_logits, anchor_deltas, sampled_labels, box_targets, batch_size_per_image=256,
               smooth_l1_beta=1.0):
  """(loss_rpn_cls, loss_rpn_loc) of a batch, each a sum over the sampled anchors / (batch_size_per_image B).

  objectness_logits (B, A); anchor_deltas (B, A, 4); sampled_labels (B, A) int: 1 sampled positive,
  0 sampled negative, -1 not sampled (RPNTargets.labels masked by the sample); box_targets (B, A, 4).
  cls: binary cross-entropy with logits over the sampled anchors; loc: smooth-L1 (beta 1) summed over the
  4 coordinates of the sampled positives. The normaliser is 256 B whatever the number sampled (rpn_outputs.py);
  with the global batch this equals the data-parallel mean of per-device losses.
  """
  norm = jnp.float32(batch_size_per_image * sampled_labels.shape[0])
  sampled = sampled_labels >= 0
  pos = sampled_labels == 1
  ce = losses.bce_with_logits(objectness_logits, pos.astype(jnp.float32))
  loss_cls = jnp.sum(jnp.where(sampled, ce, 0.0)) / norm
  l1 = losses.smooth_l1(anchor_deltas, box_targets.astype(jnp.float32), smooth_l1_beta).sum(-1)
  loss_loc = jnp.sum(jnp.where(pos, l1, 0.0)) / norm
  return loss_cls, loss_loc
