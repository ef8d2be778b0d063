"""Inference post-processing on device: decode, per-level top-k, score threshold, fixed-size
batched NMS, and the map back to original-image pixels (lla.md §8). Static shapes throughout."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lla_jax import boxes as box_ops
from lla_jax.assigners.common import option
from lla_jax.types import Detections


NMS_BLOCK = 256  # sorted candidates resolved together per step of the blocked NMS


def _overlaps(a, area_a, b, area_b, iou_thresh, off, inclusive):
  """(len(a), len(b)) bool: IoU of a[i] and b[j] > iou_thresh (>= with `inclusive`).

  a (P, 4), b (Q, 4) xyxy with their areas; the same float operations, in the same order, as a one-box
  greedy step (intersection sides clamped at 0, union = area + area - inter, IoU 0 where union <= 0).
  """
  mn, mx = box_ops.select_min, box_ops.select_max   # compare-and-selects: same values, fewer instructions
  w = mx(mn(a[:, None, 2], b[None, :, 2]) - mx(a[:, None, 0], b[None, :, 0]) + off, 0.0)
  h = mx(mn(a[:, None, 3], b[None, :, 3]) - mx(a[:, None, 1], b[None, :, 1]) + off, 0.0)
  inter = w * h
  union = area_b[None, :] + area_a[:, None] - inter
  iou = jnp.where(union > 0, inter / jnp.where(union > 0, union, 1.0), 0.0)
  return (iou >= iou_thresh) if inclusive else (iou > iou_thresh)


def nms(boxes, scores, valid, iou_thresh, max_out, plus_one=False, inclusive=False):
  """Greedy NMS of one image with a fixed number of output slots.

  boxes (N, 4) xyxy, scores (N,), valid (N,) bool. Greedy: repeatedly take the highest-scoring
  remaining box (ties -> lowest index, as a stable sort would) and suppress the rest whose IoU with it
  is > iou_thresh (>= with `inclusive`); `plus_one` uses pixel-inclusive +1 widths (ALFNet).
  Returns (indices (max_out,) int32, keep (max_out,) bool), in score order; unused slots hold index 0.
  A valid box with score +inf takes a slot (and suppresses) with keep False; -inf counts as not valid.

  Computed in parallel, not one argmax per slot: one stable sort by score, then blocks of NMS_BLOCK
  sorted candidates (as TensorFlow's padded NMS, tf.image.non_max_suppression_padded): a block is first
  cut by the boxes already kept (one (max_out, block) IoU), then resolved inside by iterating
  `alive[j] = candidate[j] and no alive i < j overlaps j` to its fixed point, which is the greedy answer
  (box j depends only on earlier boxes, so after t rounds the first t are final; the loop stops at the
  first unchanged round, usually after a few). Blocks stop once max_out boxes are kept or the valid
  candidates run out. Same outputs as the serial greedy loop, bit for bit (same IoU arithmetic).
  """
  n = boxes.shape[0]
  off = 1.0 if plus_one else 0.0
  if n == 0 or max_out == 0:
    return jnp.zeros((max_out,), jnp.int32), jnp.zeros((max_out,), bool)
  block = min(NMS_BLOCK, n)
  num_blocks = -(-n // block)
  pad = num_blocks * block - n
  capacity = -(-min(max_out, n) // block) * block                       # kept-box slots: never more than n
  score = jnp.where(valid, scores, -jnp.inf)
  order = jnp.argsort(-score, stable=True).astype(jnp.int32)            # descending, ties -> lower index
  sorted_boxes = jnp.pad(boxes[order].astype(jnp.float32), ((0, pad), (0, 0)))
  areas = (sorted_boxes[:, 2] - sorted_boxes[:, 0] + off) * (sorted_boxes[:, 3] - sorted_boxes[:, 1] + off)
  candidate = jnp.pad(score[order] > -jnp.inf, (0, pad))
  order = jnp.pad(order, (0, pad))
  num_candidates = jnp.sum(candidate)
  earlier = jnp.arange(block)[:, None] < jnp.arange(block)[None, :]      # i before j in score order
  limit = min(max_out, n)
  overlaps = lambda a, area_a, b, area_b: _overlaps(a, area_a, b, area_b, iou_thresh, off, inclusive)

  def cut_by_kept(alive, blk, blk_area, count, kept_boxes, kept_areas):
    """alive minus the boxes overlapping one of the `count` kept boxes, compared one filled chunk at a time."""
    def body(c, alive):
      kb = jax.lax.dynamic_slice_in_dim(kept_boxes, c * block, block)
      ka = jax.lax.dynamic_slice_in_dim(kept_areas, c * block, block)
      filled = (c * block + jnp.arange(block)) < count
      return alive & ~jnp.any(overlaps(kb, ka, blk, blk_area) & filled[:, None], axis=0)
    return jax.lax.fori_loop(0, (count + block - 1) // block, body, alive)

  def resolve(alive, within):
    """The greedy fixed point of one block: alive (block,) candidates, within (block, block) i-before-j overlaps."""
    def body(carry):
      a, _ = carry
      b = alive & ~jnp.any(within & a[:, None], axis=0)
      return b, jnp.any(b != a)
    return jax.lax.while_loop(lambda c: c[1], body, (alive, jnp.array(True)))[0]

  def body(carry):
    b, count, kept_boxes, kept_areas, idx = carry
    start = b * block
    blk = jax.lax.dynamic_slice_in_dim(sorted_boxes, start, block)
    blk_area = jax.lax.dynamic_slice_in_dim(areas, start, block)
    alive = jax.lax.dynamic_slice_in_dim(candidate, start, block)
    alive = cut_by_kept(alive, blk, blk_area, count, kept_boxes, kept_areas)
    alive = resolve(alive, overlaps(blk, blk_area, blk, blk_area) & earlier)
    pos = jnp.where(alive, count + jnp.cumsum(alive) - 1, capacity)          # past the slots: dropped
    pos = jnp.where(pos < limit, pos, capacity)
    kept_boxes = kept_boxes.at[pos].set(blk, mode="drop")
    kept_areas = kept_areas.at[pos].set(blk_area, mode="drop")
    idx = idx.at[pos].set(jax.lax.dynamic_slice_in_dim(order, start, block), mode="drop")
    return b + 1, jnp.minimum(count + jnp.sum(alive), limit), kept_boxes, kept_areas, idx

  cond = lambda c: (c[0] < num_blocks) & (c[1] < limit) & (c[0] * block < num_candidates)
  init = (jnp.int32(0), jnp.int32(0), jnp.zeros((capacity, 4), jnp.float32), jnp.zeros((capacity,), jnp.float32),
          jnp.zeros((capacity,), jnp.int32))
  _, count, _, _, idx = jax.lax.while_loop(cond, body, init)
  idx = jnp.pad(idx, (0, max(max_out - capacity, 0)))[:max_out]
  keep = (jnp.arange(max_out) < count) & jnp.isfinite(score[idx])
  return idx, keep


def batched_nms(boxes, scores, valid, iou_thresh, max_out, classes=None, plus_one=False, inclusive=False):
  """NMS per image of a batch, class-aware by offsetting each class to its own region.

  boxes (B, N, 4), scores (B, N), valid (B, N), classes (B, N) or None. Returns (idx, keep) (B, max_out).
  """
  if classes is not None:
    extent = jnp.max(jnp.abs(jnp.where(valid[..., None], boxes, 0.0))) + 1.0
    boxes = boxes + (classes.astype(boxes.dtype) * 2.0 * extent)[..., None]
  f = lambda b, s, v: nms(b, s, v, iou_thresh, max_out, plus_one, inclusive)
  return jax.vmap(f)(boxes, scores, valid)


def level_topk(scores, level_sizes, k):
  """Per-level top-k candidates. scores (B, A, C) flattened per level over (points x classes).

  level_sizes: static point counts per level. Returns (point index (B, N), class (B, N),
  score (B, N)) with N = sum over levels of min(k, A_l * C), in descending order within a level.
  """
  num_classes = scores.shape[-1]
  out_idx, out_cls, out_score = [], [], []
  start = 0
  for n in level_sizes:
    flat = scores[:, start:start + n, :].reshape(scores.shape[0], n * num_classes)
    s, i = jax.lax.top_k(flat, min(k, n * num_classes))
    out_idx.append(start + i // num_classes)
    out_cls.append(i % num_classes)
    out_score.append(s)
    start += n
  return jnp.concatenate(out_idx, 1), jnp.concatenate(out_cls, 1), jnp.concatenate(out_score, 1)


def to_original(boxes, image_size, orig_size):
  """Scale input-pixel boxes (B, D, 4) to original pixels per axis, clip to the original image.

  image_size, orig_size (B, 2) as (h, w). Returns (boxes, nonempty) with nonempty (B, D) bool.
  """
  sy = orig_size[:, 0] / image_size[:, 0]
  sx = orig_size[:, 1] / image_size[:, 1]
  scale = jnp.stack([sx, sy, sx, sy], -1)[:, None, :].astype(jnp.float32)
  b = boxes * scale
  hi = jnp.stack([orig_size[:, 1], orig_size[:, 0]] * 2, -1)[:, None, :].astype(jnp.float32)
  b = jnp.clip(b, 0.0, hi)
  return b, (b[..., 2] > b[..., 0]) & (b[..., 3] > b[..., 1])


def fcos_detections(points, level_sizes, cls_logits, ltrb, aux_logits, image_size, orig_size, cfg) -> Detections:
  """FCOS-family inference (lla.md §8): top-k per level on the raw class probability, keep
  prob > score_thresh, score = sqrt(prob * sigmoid(aux)), NMS, keep max_detections, map back.

  points (A, 2); cls_logits (B, A, C); ltrb (B, A, 4); aux_logits (B, A); sizes (B, 2) (h, w).
  """
  prob = jax.nn.sigmoid(cls_logits.astype(jnp.float32))
  idx, cls, p = level_topk(prob, level_sizes, cfg.topk_per_level)
  keep = p > cfg.score_thresh
  take = lambda x: jnp.take_along_axis(x, idx, axis=1)
  aux = jax.nn.sigmoid(take(aux_logits.astype(jnp.float32)))
  score = jnp.sqrt(p * aux)
  box = box_ops.decode_ltrb(jnp.asarray(points)[idx], jnp.take_along_axis(ltrb.astype(jnp.float32), idx[..., None], 1))
  sel, ok = batched_nms(box, score, keep, cfg.nms_thresh, cfg.max_detections, classes=cls)
  pick = lambda x: jnp.take_along_axis(x, sel if x.ndim == 2 else sel[..., None], axis=1)
  out_boxes, nonempty = to_original(pick(box), image_size, orig_size)
  valid = ok & nonempty
  return Detections(boxes=jnp.where(valid[..., None], out_boxes, 0.0), scores=jnp.where(valid, pick(score), 0.0),
                    classes=jnp.where(valid, pick(cls), 0).astype(jnp.int32), valid=valid)


# Faster R-CNN (cvpods playground detection/crowdhuman/rcnn: rpn.py find_top_rpn_proposals, and
# cvpods/modeling/roi_heads/fast_rcnn.py fast_rcnn_inference_single_image + postprocessing.py).
RCNN_DEFAULTS = dict(
    rpn_pre_nms_topk=(12000, 6000),       # per level, (train, test)
    rpn_post_nms_topk=(2000, 1000),       # per image, (train, test)
    rpn_nms_thresh=0.7,
    rpn_min_size=2.0,                     # keep iff width > 2 and height > 2
    rpn_box_weights=(1.0, 1.0, 1.0, 1.0),
    rpn_clip_proposals=False,             # the playground rpn.py comments the clip out; True = stock detectron2
    roi_box_weights=(10.0, 10.0, 5.0, 5.0),
    num_classes=1,
    test_score_thresh=0.05,
    test_nms_thresh=0.5,
    test_detections_per_image=300,
    scale_clamp=box_ops.SCALE_CLAMP,
)


def _rcnn_option(cfg, name):
  return option(cfg, name, RCNN_DEFAULTS)


def rpn_proposals(anchors, level_start, objectness_logits, anchor_deltas, image_hw, train, cfg=None,
                  with_logits=False):
  """Proposals of one image: (boxes (P, 4) xyxy, valid (P,) bool[, logits (P,)]), P = post-NMS top-k.

  anchors (A, 4) and level_start (L + 1,) from lla_jax.priors.rcnn_anchors (level_start must be concrete:
  it fixes the static per-level sizes); objectness_logits (A,); anchor_deltas (A, 4); image_hw (2,) the
  unpadded (h, w), used only with rpn_clip_proposals; train: Python bool choosing the top-k pair.
  Per level: the min(k_pre, A_l) highest logits (ties: lowest index), decode with rpn_box_weights and the
  clamp, NOT clipped (released config), keep width > min_size and height > min_size, NMS (IoU > 0.7
  suppresses) among the level's survivors. Then all levels' kept boxes by logit, descending; the first P
  are the output (ties: lower level, then the level's own order). Fewer survivors leave invalid slots
  (boxes zero). Scores stay logits throughout (no sigmoid). No gradient flows through proposals.
  """
  opt = lambda name: _rcnn_option(cfg, name)
  try:
    starts = [int(s) for s in np.asarray(level_start)]
  except jax.errors.JAXTypeError as e:
    raise ValueError("rpn_proposals: level_start must be a concrete (numpy) array, not traced") from e
  mode = 0 if train else 1
  k_pre, k_post = int(opt("rpn_pre_nms_topk")[mode]), int(opt("rpn_post_nms_topk")[mode])
  anchors = jnp.asarray(anchors, jnp.float32)
  logits = jax.lax.stop_gradient(jnp.asarray(objectness_logits, jnp.float32))
  deltas = jax.lax.stop_gradient(jnp.asarray(anchor_deltas, jnp.float32))
  if not (anchors.shape[0] == logits.shape[0] == deltas.shape[0] == starts[-1]):
    raise ValueError(f"rpn_proposals: anchors {tuple(anchors.shape)}, objectness_logits {tuple(logits.shape)}, "
                     f"anchor_deltas {tuple(deltas.shape)} and level_start[-1]={starts[-1]} must agree on A")
  min_size = jnp.float32(opt("rpn_min_size"))
  all_boxes, all_scores, all_keep = [], [], []
  for s, e in zip(starts[:-1], starts[1:]):
    k = min(k_pre, e - s)
    if k == 0:
      continue
    score, idx = jax.lax.top_k(logits[s:e], k)
    box = box_ops.decode_deltas(anchors[s:e][idx], deltas[s:e][idx], opt("rpn_box_weights"), opt("scale_clamp"))
    if opt("rpn_clip_proposals"):
      box = box_ops.clip_boxes(box, image_hw)
    ok = ((box[:, 2] - box[:, 0]) > min_size) & ((box[:, 3] - box[:, 1]) > min_size)
    sel, keep = nms(box, score, ok, opt("rpn_nms_thresh"), k)
    all_boxes.append(box[sel])
    all_scores.append(score[sel])
    all_keep.append(keep)
  box, score, keep = (jnp.concatenate(x) for x in (all_boxes, all_scores, all_keep))
  p = min(k_post, box.shape[0])
  _, top = jax.lax.top_k(jnp.where(keep, score, -jnp.inf), p)
  valid = keep[top]
  out = [jnp.where(valid[:, None], box[top], 0.0), valid]
  if with_logits:
    out.append(jnp.where(valid, score[top], -jnp.inf))
  out = [jnp.pad(x, ((0, k_post - p),) + ((0, 0),) * (x.ndim - 1)) for x in out]
  return tuple(out)


def rcnn_detections(proposals, cls_logits, box_deltas, image_hw, orig_hw, cfg=None, proposal_valid=None
                    ) -> Detections:
  """Box-head inference of one image -> Detections with D = test_detections_per_image slots (no batch axis).

  proposals (P, 4) xyxy, proposal_valid (P,) bool or None; cls_logits (P, C + 1), background last;
  box_deltas (P, 4 C) class-specific; image_hw (2,) the resized, unpadded (h, w); orig_hw (2,) the original.
  score = softmax(logits)[:, c]; box = decode(proposal, deltas of c, roi_box_weights) clipped to
  [0, w] x [0, h]; non-finite rows dropped (cvpods at HEAD); keep score > 0.05 (strict, float32); NMS per class (IoU > 0.5 suppresses), descending
  score, equal scores by ascending (proposal, class) index; the first D; then x * orig_w / w,
  y * orig_h / h, clipped to the original image, and only THEN boxes with width or height <= 0 dropped
  (so fewer than D may remain although more candidates passed the threshold).
  """
  opt = lambda name: _rcnn_option(cfg, name)
  c = int(opt("num_classes"))
  proposals = jnp.asarray(proposals, jnp.float32)
  p = proposals.shape[0]
  if cls_logits.shape != (p, c + 1) or box_deltas.shape != (p, 4 * c):
    raise ValueError(f"rcnn_detections: expected cls_logits ({p}, {c + 1}) and box_deltas ({p}, {4 * c}) for "
                     f"{p} proposals and num_classes={c}; got {tuple(cls_logits.shape)}, {tuple(box_deltas.shape)}")
  prob = jax.nn.softmax(jnp.asarray(cls_logits, jnp.float32), axis=-1)[:, :c]             # (P, C)
  deltas = jnp.asarray(box_deltas, jnp.float32).reshape(p, c, 4)
  box = box_ops.decode_deltas(proposals[:, None, :], deltas, opt("roi_box_weights"), opt("scale_clamp"))
  box = box_ops.clip_boxes(box, jnp.asarray(image_hw)).reshape(p * c, 4)
  score = prob.reshape(p * c)
  keep = (score > jnp.float32(opt("test_score_thresh"))) & jnp.all(jnp.isfinite(box), -1) & jnp.isfinite(score)
  if proposal_valid is not None:
    keep = keep & jnp.repeat(jnp.asarray(proposal_valid, bool), c)
  cls = jnp.tile(jnp.arange(c, dtype=jnp.int32), p)
  d = int(opt("test_detections_per_image"))
  sel, ok = batched_nms(box[None], score[None], keep[None], opt("test_nms_thresh"), d,
                        classes=None if c == 1 else cls[None])
  sel, ok = sel[0], ok[0]
  hw = jnp.asarray(image_hw, jnp.float32)[None]
  out, nonempty = to_original(box[sel][None], hw, jnp.asarray(orig_hw, jnp.float32)[None])
  valid = ok & nonempty[0]
  return Detections(boxes=jnp.where(valid[:, None], out[0], 0.0), scores=jnp.where(valid, score[sel], 0.0),
                    classes=jnp.where(valid, cls[sel], 0), valid=valid)
