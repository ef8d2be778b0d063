"""Faster R-CNN training targets of one image (the cvpods CrowdHuman baseline of the LLA study,
cvpods playground detection/crowdhuman/rcnn/faster_rcnn.res50.fpn.crowdhuman.800size.1x):
RPN anchor labels before sampling, RoI candidate classes before sampling (proposals with every GT
appended, ignore regions handled by intersection over the candidate's area), and the samplers they feed.
Pure jnp, static shapes; vmap over a batch."""
from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from lla_jax import boxes
from lla_jax.assigners import matcher, sampler
from lla_jax.assigners.common import option
from lla_jax.types import IGNORE_CLASS

DEFAULTS = dict(
    rpn_iou_thresholds=(0.3, 0.7),       # cvpods rcnn_config.py MODEL.RPN.IOU_THRESHOLDS
    rpn_iou_labels=(0, -1, 1),
    rpn_allow_low_quality=True,          # proposal_generator/rpn.py builds its Matcher with True
    rpn_match_chunk=32768,               # anchors per IoU block (memory only; None = one (M, A) matrix)
    rpn_batch_size_per_image=256,
    rpn_positive_fraction=0.5,
    rpn_box_weights=(1.0, 1.0, 1.0, 1.0),
    roi_iou_threshold=0.5,               # MODEL.ROI_HEADS.IOU_THRESHOLDS [0.5], labels [0, 1]
    roi_ignore_ioa=True,                 # playground roi_heads.py MatcherIgnore (False: plain Matcher)
    roi_batch_size_per_image=512,
    roi_positive_fraction=0.5,           # the playground config; the library default is 0.25
    roi_box_weights=(10.0, 10.0, 5.0, 5.0),
    num_classes=1,
)


@flax.struct.dataclass
class RPNTargets:
  """Anchor targets of one image before sampling.

  labels      (A,) int32    1 positive, 0 negative, -1 ignored (between the IoU thresholds)
  matched_gt  (A,) int32    row of gt_boxes of maximum IoU (ignore and padding rows excluded); 0 without GT
  box_targets (A, 4) float32 encode(anchor, gt[matched_gt], rpn_box_weights); zeros without GT
  """
  labels: jax.Array
  matched_gt: jax.Array
  box_targets: jax.Array


@flax.struct.dataclass
class ROITargets:
  """RoI-head targets of the K proposals followed by the M GT rows (N = K + M candidates), before sampling.

  boxes       (N, 4) float32 the candidates: proposals, then gt_boxes in row order
  valid       (N,) bool     a real candidate (proposal_valid, then gt_valid)
  matched_gt  (N,) int32    GT row matched by IoU, or the ignore row re-matched by IoA; 0 without GT
  classes     (N,) int32    0..C-1 foreground class, C background, -1 ignored (also every invalid slot)
  box_targets (N, 4) float32 encode(candidate, gt[matched_gt], roi_box_weights) where foreground, else 0
  """
  boxes: jax.Array
  valid: jax.Array
  matched_gt: jax.Array
  classes: jax.Array
  box_targets: jax.Array


def _gt_arrays(gt_boxes, gt_classes, gt_valid, fn):
  gt_boxes = jnp.asarray(gt_boxes, jnp.float32)
  gt_classes, gt_valid = jnp.asarray(gt_classes, jnp.int32), jnp.asarray(gt_valid, bool)
  m = gt_boxes.shape[0] if gt_boxes.ndim == 2 else -1
  if gt_boxes.ndim != 2 or gt_boxes.shape[1] != 4 or gt_classes.shape != (m,) or gt_valid.shape != (m,):
    raise ValueError(f"lla_jax.assigners.rcnn.{fn}: expected gt_boxes (M, 4), gt_classes (M,), gt_valid (M,); "
                     f"got {tuple(gt_boxes.shape)}, {tuple(gt_classes.shape)}, {tuple(gt_valid.shape)}")
  return gt_boxes, gt_classes, gt_valid


def _gather_rows(x, idx):
  """x[idx] that also works for M = 0 rows (reads zeros)."""
  if x.shape[0] == 0:
    return jnp.zeros(idx.shape + x.shape[1:], x.dtype)
  return x[idx]


def rpn_assign(anchors, gt_boxes, gt_classes, gt_valid, cfg=None) -> RPNTargets:
  """RPN labels of one image before sampling.

  anchors (A, 4) xyxy (lla_jax.priors.rcnn_anchors); gt_boxes (M, 4) xyxy; gt_classes (M,) with -1 =
  ignore region; gt_valid (M,) False on padding rows. Ignore regions are removed first (the playground
  rpn.py drops class -1 before matching): anchors on them are ordinary negatives/ignored/positives w.r.t.
  the other boxes. Matcher: IoU < 0.3 -> 0, [0.3, 0.7) -> -1, >= 0.7 -> 1, then every anchor tied at a
  GT's best IoU -> 1 (lla_jax.assigners.matcher.match). No boundary filtering.
  """
  anchors = jnp.asarray(anchors, jnp.float32)
  gt_boxes, gt_classes, gt_valid = _gt_arrays(gt_boxes, gt_classes, gt_valid, "rpn_assign")
  opt = lambda name: option(cfg, name, DEFAULTS)
  use = gt_valid & (gt_classes != IGNORE_CLASS)
  chunk = opt("rpn_match_chunk")
  matched, labels = matcher.match_boxes(gt_boxes, anchors, boxes.pairwise_iou_exact, opt("rpn_iou_thresholds"),
                                        opt("rpn_iou_labels"), bool(opt("rpn_allow_low_quality")), valid=use,
                                        chunk=None if chunk is None else int(chunk))
  targets = boxes.encode_deltas(anchors, _gather_rows(gt_boxes, matched), opt("rpn_box_weights"))
  targets = jnp.where(jnp.any(use), targets, 0.0)
  return RPNTargets(labels=labels, matched_gt=matched, box_targets=targets)


def sample_rpn(labels, rng, cfg=None) -> sampler.Sample:
  """The RPN's fixed-size sample (256 anchors, at most half positive) of RPNTargets.labels."""
  opt = lambda name: option(cfg, name, DEFAULTS)
  return sampler.sample(labels, opt("rpn_batch_size_per_image"), opt("rpn_positive_fraction"), rng, bg_label=0)


def roi_assign(proposals, gt_boxes, gt_classes, gt_valid, cfg=None, proposal_valid=None) -> ROITargets:
  """RoI-head classes of one image before sampling, on the proposals with every GT row appended.

  proposals (K, 4) xyxy (unclipped, lla_jax.postprocess.rpn_proposals) with proposal_valid (K,) bool
  (None: all valid); gt_* as in rpn_assign, ignore regions included. Per candidate (MatcherIgnore of the
  playground roi_heads.py): v, m = max / first argmax of IoU over the valid GTs; u, n = the same for
  IoA (intersection over the candidate's area) over the valid ignore GTs. If u > v and v < 0.5 (strict,
  float32) the candidate takes (u, n). Quality >= 0.5 -> class of the matched GT (0..C-1, or -1 for an
  ignore GT); otherwise background C (so re-matching with IoA < 0.5 gives background). With
  roi_ignore_ioa=False the IoA step is skipped (plain Matcher). No valid GT: every candidate background.
  Invalid candidate slots get class -1 so that no sampler takes them.
  """
  proposals = jnp.asarray(proposals, jnp.float32)
  gt_boxes, gt_classes, gt_valid = _gt_arrays(gt_boxes, gt_classes, gt_valid, "roi_assign")
  opt = lambda name: option(cfg, name, DEFAULTS)
  k, num_classes = proposals.shape[0], int(opt("num_classes"))
  pvalid = jnp.ones((k,), bool) if proposal_valid is None else jnp.asarray(proposal_valid, bool)
  cand = jnp.concatenate([proposals, gt_boxes], axis=0)
  cvalid = jnp.concatenate([pvalid, gt_valid])
  iou = boxes.pairwise_iou_exact(gt_boxes, cand)                                   # (M, N)
  thresh = float(opt("roi_iou_threshold"))
  matched, label = matcher.match(iou, (thresh,), (0, 1), False, valid=gt_valid)
  if opt("roi_ignore_ioa") and gt_boxes.shape[0] > 0:
    q = jnp.where(gt_valid[:, None], iou, -jnp.inf)
    v = jnp.max(q, axis=0)
    ioa = boxes.pairwise_ioa(cand, gt_boxes).T                                  # (M, N) over the candidate area
    ioa = jnp.where((gt_valid & (gt_classes == IGNORE_CLASS))[:, None], ioa, 0.0)
    u, n = jnp.max(ioa, axis=0), jnp.argmax(ioa, axis=0).astype(jnp.int32)
    rematch = (u > v) & (v < jnp.float32(thresh))
    matched = jnp.where(rematch, n, matched)
    label = jnp.where(rematch, (u >= jnp.float32(thresh)).astype(jnp.int32), label)
  has_gt = jnp.any(gt_valid)
  fg_class = _gather_rows(gt_classes, matched)
  classes = jnp.where(has_gt & (label == 1), fg_class, num_classes)
  classes = jnp.where(cvalid, classes, IGNORE_CLASS).astype(jnp.int32)
  fg = (classes >= 0) & (classes < num_classes)
  targets = boxes.encode_deltas(cand, _gather_rows(gt_boxes, matched), opt("roi_box_weights"))
  targets = jnp.where(fg[:, None], targets, 0.0)
  return ROITargets(boxes=cand, valid=cvalid, matched_gt=jnp.where(has_gt, matched, 0), classes=classes,
                    box_targets=targets)


def sample_rois(classes, rng, cfg=None) -> sampler.Sample:
  """The RoI head's fixed-size sample (512 candidates, at most half foreground) of ROITargets.classes."""
  opt = lambda name: option(cfg, name, DEFAULTS)
  return sampler.sample(classes, opt("roi_batch_size_per_image"), opt("roi_positive_fraction"), rng,
                        bg_label=int(opt("num_classes")))
