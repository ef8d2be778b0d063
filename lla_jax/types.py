"""The contracts between pipeline, model, assigner, loss, postprocess and evaluator.

Batch (numpy from a pipeline, global jax arrays after sharding), a plain dict, for batch size B
and ``max_boxes`` M fixed by config:

  image       (B, H, W, 3) float32  normalised as the backbone expects, zero-padded bottom/right
  image_size  (B, 2) int32          true (h, w) after resize, before padding
  orig_size   (B, 2) int32          (h, w) of the original image
  scale       (B,) float32          resize factor original -> input
  gt_boxes    (B, M, 4) float32     xyxy in input pixels; padding rows are zeros
  gt_classes  (B, M) int32          0 = person, -1 = ignore region
  gt_valid    (B, M) bool           False on padding rows
  image_id    (B,) int32            index of the image in its split's record list; -1 = padding image
"""
from __future__ import annotations

import flax.struct
import jax

BATCH_KEYS = ("image", "image_size", "orig_size", "scale", "gt_boxes", "gt_classes", "gt_valid", "image_id")
IGNORE_CLASS = -1


@flax.struct.dataclass
class Targets:
  """Per-point training targets of one image (a leading batch axis after vmap).

  matched_gt  (A,) int32    index of the GT row the point was given to (ignore boxes included), -1 = background
  fg          (A,) bool     point is a positive of a non-ignore GT (box and aux losses apply)
  valid       (A,) bool     False where every loss must ignore the point (e.g. matched to an ignore box)
  box_targets (A, 4) float32 ltrb regression target in input pixels (zeros where not fg)
  aux_target  (A,) float32  IoU* (LLA) or centerness (FCOS, ATSS); zeros where not fg
  num_fg      () float32    this image's contribution to the loss normaliser (method-specific)
  """
  matched_gt: jax.Array
  fg: jax.Array
  valid: jax.Array
  box_targets: jax.Array
  aux_target: jax.Array
  num_fg: jax.Array


@flax.struct.dataclass
class Detections:
  """Fixed-size detections in original-image pixels.

  boxes (B, D, 4) xyxy, scores (B, D), classes (B, D) int32, valid (B, D) bool; invalid slots are zero.
  """
  boxes: jax.Array
  scores: jax.Array
  classes: jax.Array
  valid: jax.Array
