"""FCOS, ATSS and LLA.FCOS: one network (FPN + shared GroupNorm head), one loss path; only the
assigner (config.assigner.name) and the auxiliary branch (config.model.head.aux) differ."""
from __future__ import annotations

import jax.numpy as jnp

from lla_jax import losses, postprocess, priors
from lla_jax.assigners import assign_batch
from lla_jax.methods.base import Method
from lla_jax.models import detector


def fcos_losses(out, targets, gt_classes, cfg):
  """Summed focal / (G)IoU / aux-BCE losses over the batch, each divided by the global num_fg.

  out: cls_logits (B, A, C), ltrb (B, A, 4), aux_logits (B, A); targets: batched Targets;
  gt_classes (B, M). Returns (total, parts dict).
  """
  num_classes = out["cls_logits"].shape[-1]
  cls_of_point = jnp.take_along_axis(gt_classes, jnp.maximum(targets.matched_gt, 0), axis=1)
  onehot = (jnp.arange(num_classes) == cls_of_point[..., None]) & targets.fg[..., None]
  focal = losses.sigmoid_focal_loss(out["cls_logits"], onehot.astype(jnp.float32), cfg.focal_alpha, cfg.focal_gamma)
  loss_cls = jnp.sum(focal.sum(-1) * targets.valid)
  box_w = targets.fg.astype(jnp.float32)
  if cfg.box_weighting == "centerness":
    box_w = box_w * targets.aux_target
  elif cfg.box_weighting != "none":
    raise ValueError(f"config.loss.box_weighting={cfg.box_weighting!r}: expected 'none' or 'centerness'")
  loss_box = cfg.box_weight * jnp.sum(losses.giou_loss(out["ltrb"], targets.box_targets) * box_w)
  loss_aux = cfg.aux_weight * jnp.sum(losses.bce_with_logits(out["aux_logits"], targets.aux_target) * targets.fg)
  # The global batch is one array: this sum is over all devices and hosts (the released fcos.py all-reduces
  # num_fg over GPUs).
  num_fg = jnp.sum(targets.num_fg)
  norm = jnp.maximum(num_fg, cfg.min_num_fg)
  parts = dict(loss_cls=loss_cls / norm, loss_box=loss_box / norm, loss_aux=loss_aux / norm,
               num_fg_per_image=num_fg / gt_classes.shape[0])
  return parts["loss_cls"] + parts["loss_box"] + parts["loss_aux"], parts


def build(config) -> Method:
  model = detector.build_detector(config.model)
  strides = tuple(config.model.head.strides)

  def points_for(images):
    return priors.fpn_points(images.shape[1], images.shape[2], strides)   # static under jit

  def init(rng, input_hw):
    return model.init(rng, jnp.zeros((1, *input_hw, 3), jnp.float32), train=False)

  def apply(params, model_state, images, train):
    variables = {"params": params, **model_state}
    if train and model_state:
      out, new_state = model.apply(variables, images, train=True, mutable=list(model_state))
      return out, new_state
    return model.apply(variables, images, train=train), model_state

  def loss(params, model_state, batch, rng):
    del rng
    out, new_state = apply(params, model_state, batch["image"], True)
    pts = points_for(batch["image"])
    targets = assign_batch(config.assigner, pts.xy, pts.strides, out["cls_logits"], out["ltrb"],
                           batch["gt_boxes"], batch["gt_classes"], batch["gt_valid"])
    total, parts = fcos_losses(out, targets, batch["gt_classes"], config.loss)
    return total, (parts, new_state)

  def predict(variables, batch):
    out = model.apply(variables, batch["image"], train=False)
    pts = points_for(batch["image"])
    sizes = tuple(h * w for h, w in pts.shapes)
    return postprocess.fcos_detections(pts.xy, sizes, out["cls_logits"], out["ltrb"], out["aux_logits"],
                                       batch["image_size"], batch["orig_size"], config.test)

  return Method(init=init, loss=loss, predict=predict,
                trainable=lambda p: detector.trainable_mask(p, config.model), decay=detector.decay_mask)
