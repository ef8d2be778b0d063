"""Loss primitives, elementwise (no reduction): the callers sum over the points they select and
divide by their normaliser. Always evaluated in float32 (lla.md §1.4)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lla_jax import boxes


def bce_with_logits(logits, targets):
  """Binary cross-entropy of logits against targets in [0, 1], stable form. (...) -> (...)."""
  logits = logits.astype(jnp.float32)
  return jnp.maximum(logits, 0.0) - logits * targets + jnp.log1p(jnp.exp(-jnp.abs(logits)))


def sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2.0):
  """Sigmoid focal loss (Lin et al.), elementwise: (alpha t + (1-alpha)(1-t)) * BCE * (1 - p_t)^gamma."""
  p = jax.nn.sigmoid(logits.astype(jnp.float32))
  ce = bce_with_logits(logits, targets)
  p_t = p * targets + (1.0 - p) * (1.0 - targets)
  loss = ce * (1.0 - p_t) ** gamma
  if alpha >= 0:
    loss = (alpha * targets + (1.0 - alpha) * (1.0 - targets)) * loss
  return loss


def giou_loss(pred_ltrb, target_ltrb):
  """1 - GIoU of point-relative ltrb boxes, (..., 4) -> (...)."""
  return 1.0 - boxes.ltrb_giou(pred_ltrb.astype(jnp.float32), target_ltrb.astype(jnp.float32))


def iou_loss(pred_ltrb, target_ltrb):
  """-log IoU with the float32-eps clamp of the released IoU cost (max 15.942), (..., 4) -> (...)."""
  iou = boxes.ltrb_iou(pred_ltrb.astype(jnp.float32), target_ltrb.astype(jnp.float32))
  return -jnp.log(jnp.maximum(iou, boxes.EPS))


def smooth_l1(pred, target, beta=1.0):
  """Smooth-L1 (Huber / beta), elementwise."""
  d = jnp.abs(pred.astype(jnp.float32) - target)
  return jnp.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta) if beta > 0 else d


def bce_on_probs(probs, targets, eps=1e-7):
  """Keras binary cross-entropy on probabilities clipped to [eps, 1 - eps], elementwise."""
  p = jnp.clip(probs.astype(jnp.float32), eps, 1.0 - eps)
  return -(targets * jnp.log(p) + (1.0 - targets) * jnp.log(1.0 - p))
