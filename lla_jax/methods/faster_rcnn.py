"""Faster R-CNN R50-FPN, the two-stage baseline of the LLA study (cvpods playground
detection/crowdhuman/rcnn/faster_rcnn.res50.fpn.crowdhuman.800size.1x: net.py, rpn.py, roi_heads.py).

Training step on the global batch (B images, every device and host):
  1. network: P2..P6, RPN logits / deltas for every anchor (lla_jax.priors.rcnn_anchors order);
  2. RPN targets (lla_jax.assigners.rcnn.rpn_assign; ignore regions removed) and the random 256-anchor sample;
     loss_rpn_cls / loss_rpn_loc summed over the sampled anchors / (256 B) (rpn_outputs.py);
  3. proposals under stop_gradient (lla_jax.postprocess.rpn_proposals, train top-k);
  4. RoI targets on the proposals with every GT appended (roi_assign, MatcherIgnore) and the random
     512-RoI sample; ROIAlignV2 of the sampled RoIs on P2..P5; the 2-FC box head;
     loss_cls = mean softmax CE over the sampled RoIs, loss_box_reg = smooth-L1 of the foreground RoIs
     / number of sampled RoIs (fast_rcnn.py). Total = plain sum of the four (cvpods base_runner.py).
Randomness: image i of the global batch samples with fold_in(step key, i), so the draw depends on the
image's global index only, not on how the batch is split over devices (1 device and 8 draw the same).

Inference: test top-k proposals, the box head on all of them, then lla_jax.postprocess.rcnn_detections
per image (clip, score > test.score_thresh, NMS test.nms_thresh, test.max_detections, rescale, drop empty).

Options: `config.rcnn` holds the pieces' fields by their names (lla_jax.priors.RCNN_ANCHOR_DEFAULTS,
lla_jax.assigners.rcnn.DEFAULTS, lla_jax.postprocess.RCNN_DEFAULTS, lla_jax.models.roi_align.DEFAULTS);
absent fields take the released values. The test thresholds come from `config.test`, the class count from
`config.model.num_classes`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lla_jax import postprocess, priors
from lla_jax.assigners import rcnn as rcnn_assign
from lla_jax.assigners import sampler
from lla_jax.methods.base import Method
from lla_jax.models import detector, faster_rcnn, roi_align, roi_heads, rpn

NUM_POOLED_LEVELS = 4   # P2..P5 feed the RoI pooler; P6 only the RPN


def piece_options(config) -> dict:
  """The options the Faster R-CNN pieces read (one flat dict): config.rcnn, the class count and the
  test thresholds of config.test."""
  opts = dict(config.rcnn)
  opts.update(num_classes=int(config.model.num_classes), test_score_thresh=float(config.test.score_thresh),
              test_nms_thresh=float(config.test.nms_thresh), test_detections_per_image=int(config.test.max_detections))
  return opts


def image_keys(rng, batch_size: int):
  """(B,) keys, image i's = fold_in(rng, i): a function of the global image index only."""
  return jax.vmap(lambda i: jax.random.fold_in(rng, i))(jnp.arange(batch_size, dtype=jnp.uint32))


def pool(p_levels, boxes, opts):
  """ROIAlignV2 of (B, R, 4) boxes on the P2..P5 maps [(B, h, w, C)] -> (B R, S, S, C)."""
  pooled, _ = jax.vmap(lambda *a: roi_align.multilevel_roi_align(a[:-1], a[-1], opts))(
      *p_levels[:NUM_POOLED_LEVELS], boxes)
  return pooled.reshape(-1, *pooled.shape[2:])


def check_config(config) -> None:
  """Clear errors for configs the network cannot run."""
  f = config.model.fpn
  if tuple(f.in_levels) != (2, 3, 4, 5) or tuple(f.out_levels) != (2, 3, 4, 5, 6) or f.top_block != "maxpool":
    raise ValueError(f"method 'faster_rcnn' needs model.fpn.in_levels=(2, 3, 4, 5), out_levels=(2, 3, 4, 5, 6), "
                     f"top_block='maxpool' (P2..P6 with a max-pooled P6); got in_levels={tuple(f.in_levels)}, "
                     f"out_levels={tuple(f.out_levels)}, top_block={f.top_block!r}")
  div = int(config.rcnn.get("size_divisibility", priors.RCNN_ANCHOR_DEFAULTS["size_divisibility"]))
  if any(int(s) % div for s in config.data.pad_size):
    raise ValueError(f"data.pad_size={tuple(config.data.pad_size)}: method 'faster_rcnn' needs multiples of "
                     f"rcnn.size_divisibility={div}")


def build(config) -> Method:
  check_config(config)
  opts = piece_options(config)
  resolution = int(opts.get("pooler_resolution", roi_align.DEFAULTS["pooler_resolution"]))
  model = faster_rcnn.build(config.model, resolution)

  def anchors_for(images):
    return priors.rcnn_anchors(images.shape[1:3], opts)          # numpy, static under jit

  def init(rng, input_hw):
    return model.init(rng, jnp.zeros((1, *input_hw, 3), jnp.float32), train=False)

  def features(params, model_state, images, train):
    variables = {"params": params, **model_state}
    if train and model_state:
      return model.apply(variables, images, train=True, method="features", mutable=list(model_state))
    return model.apply(variables, images, train=train, method="features"), model_state

  def proposals(anchors, starts, logits, deltas, image_size, train):
    f = lambda lg, d, hw: postprocess.rpn_proposals(anchors, starts, lg, d, hw, train, opts)
    return jax.vmap(f)(jax.lax.stop_gradient(logits), jax.lax.stop_gradient(deltas), image_size)

  def loss(params, model_state, batch, rng):
    images = batch["image"]
    b = images.shape[0]
    (p, logits, deltas), new_state = features(params, model_state, images, True)
    anchors, starts = anchors_for(images)
    keys = jax.vmap(lambda k: jax.random.split(k, 2))(image_keys(rng, b))       # (B, 2): RPN, RoI
    gt = (batch["gt_boxes"], batch["gt_classes"], batch["gt_valid"])

    # RPN: labels before sampling, the fixed-size sample, losses / (256 B).
    t = jax.vmap(lambda *g: rcnn_assign.rpn_assign(anchors, *g, opts))(*gt)
    s = jax.vmap(lambda lab, k: rcnn_assign.sample_rpn(lab, k, opts))(t.labels, keys[:, 0])
    taken = jax.vmap(lambda x: sampler.sampled_mask(x, anchors.shape[0]))(s)
    sampled_labels = jnp.where(taken, t.labels, -1)
    loss_rpn_cls, loss_rpn_loc = rpn.rpn_losses(logits, deltas, sampled_labels, t.box_targets,
                                                int(opts.get("rpn_batch_size_per_image", 256)),
                                                float(opts.get("rpn_smooth_l1_beta", 1.0)))

    # RoI head: proposals (no gradient) + GT, labels, the fixed-size sample, pooled features, box head.
    boxes, valid = proposals(anchors, starts, logits, deltas, batch["image_size"], True)
    r = jax.vmap(lambda bx, v, *g: rcnn_assign.roi_assign(bx, *g, opts, proposal_valid=v))(boxes, valid, *gt)
    rs = jax.vmap(lambda c, k: rcnn_assign.sample_rois(c, k, opts))(r.classes, keys[:, 1])
    take = lambda x: jnp.take_along_axis(x, rs.index.reshape(rs.index.shape + (1,) * (x.ndim - 2)), axis=1)
    roi_boxes = jax.lax.stop_gradient(take(r.boxes))
    cls_logits, box_deltas = model.apply({"params": params}, pool(p, roi_boxes, opts), method="box_head")
    n = rs.index.shape[1]
    loss_cls, loss_box = roi_heads.fast_rcnn_losses(cls_logits.reshape(b, n, -1), box_deltas.reshape(b, n, -1),
                                                    take(r.classes), take(r.box_targets), rs.valid,
                                                    float(opts.get("roi_smooth_l1_beta", 1.0)))
    parts = dict(loss_rpn_cls=loss_rpn_cls, loss_rpn_loc=loss_rpn_loc, loss_cls=loss_cls, loss_box_reg=loss_box,
                 rpn_pos_per_image=jnp.sum(s.positive & s.valid) / b, roi_fg_per_image=jnp.sum(rs.positive & rs.valid) / b,
                 proposals_per_image=jnp.sum(valid) / b)
    return loss_rpn_cls + loss_rpn_loc + loss_cls + loss_box, (parts, new_state)

  def predict(variables, batch):
    images = batch["image"]
    params, model_state = variables["params"], {k: v for k, v in variables.items() if k != "params"}
    (p, logits, deltas), _ = features(params, model_state, images, False)
    anchors, starts = anchors_for(images)
    boxes, valid = proposals(anchors, starts, logits, deltas, batch["image_size"], False)
    cls_logits, box_deltas = model.apply({"params": params}, pool(p, boxes, opts), method="box_head")
    b, k = boxes.shape[:2]
    det = lambda bx, c, d, hw, ohw, v: postprocess.rcnn_detections(bx, c, d, hw, ohw, opts, proposal_valid=v)
    return jax.vmap(det)(boxes, cls_logits.reshape(b, k, -1), box_deltas.reshape(b, k, -1), batch["image_size"],
                         batch["orig_size"], valid)

  return Method(init=init, loss=loss, predict=predict,
                trainable=lambda params: detector.trainable_mask(params, config.model), decay=detector.decay_mask)

