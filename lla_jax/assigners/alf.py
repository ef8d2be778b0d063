"""ALF: the per-step label assignment of ALFNet (Liu et al. 2018; alfnet.md §7).

Each step labels its own reference boxes (anchors at step 1, the detached, decoded and clipped
boxes of step t - 1 afterwards) with an IoU rule against the GT, using that step's thresholds.
All overlaps use the pixel-inclusive +1 convention. Output is the shared `Targets` type:

  fg          positive flag y+ (rules (i)-(iii))
  aux_target  negative flag y- as float32; at step 1 a positive can carry it too (alfnet.md §7.1)
  valid       y+ or y- (the points any loss looks at)
  matched_gt  the positive's argmax GT row, -1 elsewhere
  box_targets std-normalised +1 deltas (dx, dy, dw, dh) of the reference box to that GT
  num_fg      number of positives of the image (summed over the batch for N+)
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lla_jax import boxes
from lla_jax.types import IGNORE_CLASS, Targets

# Released values; step thresholds come from the config (alfnet.md §7).
DEFAULTS = dict(neg_thr=0.3, pos_thr=0.5, ignore_thr=0.5, top_n=3, min_size=10.0, std=boxes.ALF_STD)


def _get(cfg, name):
  if cfg is None:
    return DEFAULTS[name]
  return cfg.get(name, DEFAULTS[name]) if hasattr(cfg, "get") else getattr(cfg, name, DEFAULTS[name])


def ignore_overlap(ref, gt_boxes, is_ignore):
  """ig(b) = sum over ignore regions r of inter(b, r) / area(r), +1 areas (upstream `box_op`).

  ref (N, 4), gt_boxes (M, 4), is_ignore (M,) bool -> (N,). The fraction of each ignore region a
  box covers, summed over regions; not the evaluator's IoA.
  """
  frac = boxes.pairwise_intersection_plus1(ref, gt_boxes) / boxes.area_plus1(gt_boxes)[None, :]
  return jnp.sum(jnp.where(is_ignore[None, :], frac, 0.0), axis=1)


def positives(iou, candidate, is_gt, top_n=3):
  """The three positive rules over candidate boxes (alfnet.md §7).

  iou (N, M) with -1 wherever the box is not a candidate or the column is not a real GT;
  candidate (N,), is_gt (M,) bool. Returns (N,) bool:
    (i)   boxes whose IoU with some GT equals that GT's maximum over boxes (ties included; a GT
          whose maximum is 0 marks every zero-IoU candidate, the py-faster-rcnn quirk);
    (iii) for each GT, its `top_n` boxes by IoU whatever the value; ties go to the lower box
          index (lax.top_k order).
  Rule (ii) (max IoU >= pos_thr) needs the threshold and is applied by `assign`.
  """
  pair_ok = candidate[:, None] & is_gt[None, :]
  gt_max = jnp.max(iou, axis=0)
  rule_i = jnp.any((iou == gt_max[None, :]) & pair_ok, axis=1)
  k = min(top_n, iou.shape[0])
  _, top = jax.lax.top_k(iou.T, k)                                    # (M, k) box indices
  chosen = is_gt[:, None] & candidate[top]
  rule_iii = jnp.zeros(iou.shape[0], jnp.int32).at[top.ravel()].add(chosen.ravel().astype(jnp.int32)) > 0
  return rule_i | rule_iii


def assign(ref_boxes, gt_boxes, gt_classes, gt_valid, *, first_step, neg_thr, pos_thr,
           cfg=None) -> Targets:
  """Targets of one image at one ALF step.

  ref_boxes (N, 4) xyxy reference boxes of the step (anchors or detached step t-1 boxes);
  gt_boxes (M, 4), gt_classes (M,) (-1 = ignore region), gt_valid (M,). `first_step` (static)
  selects the step-1 rules; neg_thr / pos_thr are the step's thresholds (neg <, pos >=).

  Step 1 (alfnet.md §7.1): every anchor is a candidate positive, ignore does not remove positives;
  negatives are max IoU < neg_thr and ig <= ignore_thr, positives included (double flags); an
  image without GT has every non-ignored anchor negative.
  Step >= 2 (§7.2): candidates are boxes with ig <= ignore_thr and both +1 sides > min_size;
  negatives are candidates, not positive, max IoU < neg_thr; an image without GT gets no labels.
  """
  ref = ref_boxes.astype(jnp.float32)
  gt = gt_boxes.astype(jnp.float32)
  is_gt = gt_valid & (gt_classes != IGNORE_CLASS)
  is_ignore = gt_valid & (gt_classes == IGNORE_CLASS)
  has_gt = jnp.any(is_gt)
  not_ignored = ignore_overlap(ref, gt, is_ignore) <= _get(cfg, "ignore_thr")

  if first_step:
    candidate = jnp.ones(ref.shape[0], bool)
  else:
    min_size = _get(cfg, "min_size")
    w, h = ref[:, 2] - ref[:, 0] + 1.0, ref[:, 3] - ref[:, 1] + 1.0
    candidate = not_ignored & (w > min_size) & (h > min_size)

  iou = jnp.where(candidate[:, None] & is_gt[None, :], boxes.pairwise_iou_plus1(ref, gt), -1.0)
  max_iou = jnp.max(iou, axis=1)                                      # -1 without candidate GT
  argmax = jnp.argmax(iou, axis=1)                                    # first GT on ties (numpy)
  pos = positives(iou, candidate, is_gt, _get(cfg, "top_n")) | (max_iou >= pos_thr)

  if first_step:
    neg = (max_iou < neg_thr) & not_ignored
  else:
    neg = candidate & ~pos & (max_iou < neg_thr) & has_gt

  matched = jnp.where(pos, argmax, -1).astype(jnp.int32)
  deltas = boxes.encode_deltas_plus1(ref, gt[argmax], _get(cfg, "std"))
  return Targets(matched_gt=matched, fg=pos, valid=pos | neg,
                 box_targets=jnp.where(pos[:, None], deltas, 0.0),
                 aux_target=neg.astype(jnp.float32), num_fg=jnp.sum(pos).astype(jnp.float32))


def assign_batch(ref_boxes, gt_boxes, gt_classes, gt_valid, *, first_step, neg_thr, pos_thr, cfg=None) -> Targets:
  """`assign` vmapped over a batch, under stop_gradient.

  ref_boxes (N, 4) shared by all images (step-1 anchors) or (B, N, 4); GT arrays (B, M, ...).
  """
  ref_boxes, gt_boxes = jax.lax.stop_gradient((ref_boxes, gt_boxes))
  per_image = lambda r, b, c, v: assign(r, b, c, v, first_step=first_step, neg_thr=neg_thr, pos_thr=pos_thr,
                                        cfg=cfg)
  in_axes = (None if ref_boxes.ndim == 2 else 0, 0, 0, 0)
  return jax.lax.stop_gradient(jax.vmap(per_image, in_axes=in_axes)(ref_boxes, gt_boxes, gt_classes, gt_valid))
