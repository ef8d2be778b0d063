"""ALFNet: asymptotic localization fitting (Liu et al., ECCV 2018; ALFNet repository keras_alfnet/).

T steps of Convolutional Predictor Blocks share one set of feature maps; step t labels and refines
the boxes of step t - 1: B^0 = anchors, B^t = clip(decode(B^{t-1}, delta^t * std)). Training sums
the per-step focal-weighted BCE and smooth-L1 losses; inference multiplies the step scores and
keeps the last step's boxes.

Training modes (ALFNet train.py):
  joint (default, config.alfnet.alternating = False): one optimiser step per batch on
      sum_t (L_cls^t + L_reg^t); step-t targets come from the step-(t-1) boxes of the same forward
      pass under stop_gradient. This is `Method.loss`.
  alternating (faithful, config.alfnet.alternating = True): T optimiser updates per batch, each on
      one step's loss, re-running the network with the updated weights to build the next step's
      targets, with Keras-Adam moment buffers per step model and a shared iteration counter. It
      cannot be a single loss, so `build` sets `Method.update_init` / `Method.update` and the train
      loop calls them instead of its optax step (`make_alternating_step` gives the same pair).

Normalisation: every loss is divided by N+ = max(1, positives in the whole batch). Upstream
additionally averages the per-image sums over the batch (a factor 1/B, Keras); it is dropped here.
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lla_jax import boxes as box_ops
from lla_jax import losses, nonfinite, optim, postprocess, priors
from lla_jax.assigners import alf as alf_assigner
from lla_jax.methods.base import Method
from lla_jax.models import alfnet as alfnet_model
from lla_jax.models import backbones
from lla_jax.types import Detections


# ---------------------------------------------------------------------------------------------------
# Configuration checks and anchors.


def step_thresholds(cfg) -> tuple:
  """((neg_thr, pos_thr) per step) from config.alfnet, validated against num_steps."""
  th = tuple((float(n), float(p)) for n, p in cfg.step_thresholds)
  if len(th) != cfg.num_steps:
    raise ValueError(f"config.alfnet.step_thresholds has {len(th)} entries, expected num_steps={cfg.num_steps}")
  for t, (n, p) in enumerate(th, 1):
    if not 0.0 <= n <= p <= 1.0:
      raise ValueError(f"config.alfnet.step_thresholds[{t - 1}]=({n}, {p}): expected 0 <= neg <= pos <= 1")
  return th


def anchors_for(cfg, height: int, width: int) -> np.ndarray:
  """(N, 4) clipped anchors for a (height, width) input, from config.alfnet (cached per shape)."""
  return _anchors(height, width, tuple(cfg.strides), tuple(tuple(s) for s in cfg.anchor_scales),
                  float(cfg.anchor_ratio))


@functools.lru_cache(maxsize=16)
def _anchors(height, width, strides, scales, ratio):
  a = priors.alfnet_anchors(height, width, strides, scales, ratio)
  a.setflags(write=False)
  return a


def _check_outputs(outputs, anchors, image_shape):
  n = outputs[0][0].shape[1]
  if n != anchors.shape[0]:
    raise ValueError(f"ALFNet: the network predicts {n} anchors for input {image_shape[1:3]} but the anchor "
                     f"table has {anchors.shape[0]}; backbone strides / feature sizes disagree with config.alfnet")


# ---------------------------------------------------------------------------------------------------
# The ALF pieces: refinement, per-step losses.


def refine(ref, deltas, image_size, cfg):
  """B^t = clip(decode(B^{t-1}, delta^t * std)); ref (B, N, 4) or (N, 4), deltas (B, N, 4),
  image_size (B, 2) true (h, w): clipping uses each image's size (the full input upstream)."""
  clip_hw = (image_size[:, 0, None], image_size[:, 1, None])
  return box_ops.decode_deltas_plus1(jnp.broadcast_to(ref, deltas.shape), deltas, tuple(cfg.std), clip_hw,
                                     cfg.get("max_log_wh", None))


def alf_cls_loss(scores, targets, num_pos, alpha=0.25, gamma=2.0):
  """Focal-weighted BCE on probabilities (keras_alfnet/losses.py), summed and divided by max(1, N+).

  scores (B, N) sigmoid probabilities; targets.fg = y+, targets.aux_target = y- (both may be 1).
  L = sum (y+ + y-) BCE(p, y+) [alpha y+ (1 - p)^gamma + (1 - alpha) y- p^gamma] / max(1, N+).
  """
  pos = targets.fg.astype(jnp.float32)
  neg = targets.aux_target
  p = scores.astype(jnp.float32)
  weight = alpha * pos * (1.0 - p) ** gamma + (1.0 - alpha) * neg * p ** gamma
  return jnp.sum((pos + neg) * losses.bce_on_probs(p, pos) * weight) / jnp.maximum(1.0, num_pos)


def alf_reg_loss(deltas, targets, num_pos):
  """Smooth-L1 (beta 1) over the 4 std-normalised deltas of positives / max(1, N+). deltas (B, N, 4)."""
  pos = targets.fg.astype(jnp.float32)
  per_box = jnp.sum(losses.smooth_l1(deltas, targets.box_targets, 1.0), axis=-1)
  return jnp.sum(pos * per_box) / jnp.maximum(1.0, num_pos)


def step_loss(t, scores, deltas, ref, batch, cfg):
  """Targets and losses of ALF step t (1-based) on reference boxes `ref` ((N, 4) anchors or (B, N, 4)).

  Returns (cls, reg, num_pos) with num_pos the batch N+.
  """
  neg_thr, pos_thr = step_thresholds(cfg)[t - 1]
  targets = alf_assigner.assign_batch(ref, batch["gt_boxes"], batch["gt_classes"], batch["gt_valid"],
                                      first_step=(t == 1), neg_thr=neg_thr, pos_thr=pos_thr, cfg=_assigner_cfg(cfg))
  num_pos = jnp.sum(targets.num_fg)
  cls = alf_cls_loss(scores, targets, num_pos, cfg.focal_alpha, cfg.focal_gamma)
  reg = alf_reg_loss(deltas, targets, num_pos)
  return cls, reg, num_pos


def _assigner_cfg(cfg):
  return dict(ignore_thr=cfg.ignore_thr, top_n=cfg.top_n, min_size=cfg.min_train_size, std=tuple(cfg.std))


def joint_loss(outputs, anchors, batch, cfg):
  """sum over steps of (L_cls^t + L_reg^t); step-t reference = detached boxes of step t-1.

  outputs: tuple over steps of (scores (B, N), deltas (B, N, 4)). Returns (loss, metrics).
  """
  ref = jnp.asarray(anchors)
  total, metrics = 0.0, {}
  for t, (scores, deltas) in enumerate(outputs, 1):
    cls, reg, num_pos = step_loss(t, scores, deltas, ref, batch, cfg)
    total = total + cls + reg
    metrics.update({f"cls_{t}": cls, f"reg_{t}": reg, f"num_pos_{t}": num_pos})
    ref = jax.lax.stop_gradient(refine(ref, deltas, batch["image_size"], cfg))
  metrics["loss"] = total
  return total, metrics


# ---------------------------------------------------------------------------------------------------
# Inference.


def detect(outputs, anchors, image_size, orig_size, cfg, test_cfg) -> Detections:
  """Detections from the step outputs (keras_alfnet/bbox_process.py, test.py): score = prod_t s_t, box = B^T.

  Drops boxes with a +1 side < test_min_size, keeps the top `pre_nms_topk` by score, score >
  test.score_thresh, greedy NMS with +1 areas suppressing IoU >= test.nms_thresh, first
  test.max_detections; boxes mapped to original-image pixels.
  """
  ref = jnp.asarray(anchors)
  score = 1.0
  for scores, deltas in outputs:
    ref = refine(ref, deltas, image_size, cfg)
    score = score * scores
  w = ref[..., 2] - ref[..., 0] + 1.0
  h = ref[..., 3] - ref[..., 1] + 1.0
  score = jnp.where((w >= cfg.test_min_size) & (h >= cfg.test_min_size), score, -jnp.inf)
  top_score, top = jax.lax.top_k(score, min(int(cfg.pre_nms_topk), score.shape[1]))
  cand = jnp.take_along_axis(ref, top[..., None], axis=1)
  keep = top_score > test_cfg.score_thresh
  sel, ok = postprocess.batched_nms(cand, top_score, keep, test_cfg.nms_thresh, test_cfg.max_detections,
                                    plus_one=True, inclusive=True)
  out_boxes, nonempty = postprocess.to_original(jnp.take_along_axis(cand, sel[..., None], axis=1), image_size,
                                                orig_size)
  valid = ok & nonempty
  return Detections(boxes=jnp.where(valid[..., None], out_boxes, 0.0),
                    scores=jnp.where(valid, jnp.take_along_axis(top_score, sel, axis=1), 0.0),
                    classes=jnp.zeros(valid.shape, jnp.int32), valid=valid)


# ---------------------------------------------------------------------------------------------------
# The Method.


def _apply(model, params, model_state, images, train, steps=None):
  """Forward pass; returns (outputs, new_model_state). Mutable collections only when there are any."""
  variables = {"params": params, **model_state}
  if train and model_state:
    return model.apply(variables, images, train=True, steps=steps, mutable=list(model_state))
  return model.apply(variables, images, train=train, steps=steps), model_state


def _split(variables):
  variables = dict(variables)
  return variables.pop("params"), variables


def build(config, backbone=None) -> Method:
  """The ALFNet Method from config (config.alfnet, config.model, config.test); `backbone`
  replaces the configured backbone module (tests)."""
  cfg = config.alfnet
  step_thresholds(cfg)
  if len({len(s) for s in cfg.anchor_scales}) != 1:
    raise ValueError(f"config.alfnet.anchor_scales={cfg.anchor_scales}: every level needs the same anchor count")
  if not 1 <= cfg.test_step <= cfg.num_steps:
    raise ValueError(f"config.alfnet.test_step={cfg.test_step}: expected 1..num_steps={cfg.num_steps}")
  model = alfnet_model.from_config(config, backbone)

  def init(rng, input_shape):
    """input_shape: (H, W) or (B, H, W, 3) of the padded training input."""
    shape = (1, *input_shape, 3) if len(input_shape) == 2 else tuple(input_shape)
    return dict(model.init(rng, jnp.zeros(shape, jnp.float32), train=False))

  def loss(params, model_state, batch, rng):
    del rng  # no stochastic layers
    if cfg.alternating:
      raise NotImplementedError("config.alfnet.alternating=True trains with T updates per batch: the train loop "
                                "calls Method.update (make_alternating_step), not Method.loss")
    outputs, new_state = _apply(model, params, model_state, batch["image"], train=True)
    anchors = anchors_for(cfg, *batch["image"].shape[1:3])
    _check_outputs(outputs, anchors, batch["image"].shape)
    total, metrics = joint_loss(outputs, anchors, batch, cfg)
    return total, (metrics, new_state)

  def predict(variables, batch):
    params, state = _split(variables)
    outputs, _ = _apply(model, params, state, batch["image"], train=False, steps=cfg.test_step)
    anchors = anchors_for(cfg, *batch["image"].shape[1:3])
    _check_outputs(outputs, anchors, batch["image"].shape)
    orig = batch.get("orig_size", batch["image_size"])
    return detect(outputs, anchors, batch["image_size"], orig, cfg, config.test)

  def trainable(params):
    mask = jax.tree_util.tree_map(lambda _: True, dict(params))
    if "backbone" in params and backbone is None:
      mask["backbone"] = backbones.trainable_mask(params["backbone"], config.model.backbone)
    return mask

  def decay(params):
    # Upstream uses no weight decay (config.train.weight_decay = 0); kernels are marked for completeness.
    return jax.tree_util.tree_map_with_path(lambda path, x: getattr(path[-1], "key", "") == "kernel", params)

  update_init = update = None
  if cfg.alternating:
    update_init, update = alternating_update(config, model, trainable)
  return Method(init=init, loss=loss, predict=predict, trainable=trainable, decay=decay, update_init=update_init,
                update=update)


# ---------------------------------------------------------------------------------------------------
# Faithful alternating training (ALFNet train.py): T Keras-Adam updates per batch.


class AlternatingState(NamedTuple):
  """Optimiser state of the alternating mode: one (m, v) pair per step model, a shared counter."""
  iterations: jax.Array   # () int32, Keras `optimizer.iterations`, incremented by every update
  m: tuple                # per step: pytree like params
  v: tuple


class AlternatingStep(NamedTuple):
  init: Callable          # init(params) -> optax.ApplyIfFiniteState around an AlternatingState
  step: Callable          # step(params, opt_state, model_state, batch, rng)
  #                         -> (params, opt_state, model_state, metrics)


def keras_adam(params, grads, m, v, mask, iteration, lr, b1, b2, eps):
  """One Keras-2.0 Adam update where `mask` is True: lr_t = lr sqrt(1 - b2^i) / (1 - b1^i) with the
  1-based iteration i, m/v moving averages, p -= lr_t m / (sqrt(v) + eps). Returns (params, m, v)."""
  i = jnp.asarray(iteration, jnp.float32)
  lr_t = lr * jnp.sqrt(1.0 - b2 ** i) / (1.0 - b1 ** i)
  m = jax.tree_util.tree_map(lambda ok, m_, g: b1 * m_ + (1.0 - b1) * g if ok else m_, mask, m, grads)
  v = jax.tree_util.tree_map(lambda ok, v_, g: b2 * v_ + (1.0 - b2) * g * g if ok else v_, mask, v, grads)
  params = jax.tree_util.tree_map(lambda ok, p, m_, v_: p - lr_t * m_ / (jnp.sqrt(v_) + eps) if ok else p,
                                  mask, params, m, v)
  return params, m, v


def check_alternating_config(tr) -> None:
  """The alternating mode is Keras Adam (ALFNet train.py): refuse optimiser settings it would ignore."""
  problems = []
  if tr.get("optimizer", "sgd") != "adam":
    problems.append(f"train.optimizer={tr.get('optimizer', 'sgd')!r} (expected 'adam')")
  if tr.get("weight_decay", 0.0):
    problems.append(f"train.weight_decay={tr.weight_decay} (expected 0)")
  if tr.get("grad_clip", 0.0):
    problems.append(f"train.grad_clip={tr.grad_clip} (expected 0)")
  if problems:
    raise ValueError("config.alfnet.alternating=True updates with Keras Adam; unsupported settings: "
                     + ", ".join(problems))


def make_alternating_step(config, backbone=None) -> AlternatingStep:
  """The faithful per-step update of ALFNet train.py (whatever config.alfnet.alternating says), to be
  jitted by the caller; `build` installs the same pair as Method.update_init / Method.update."""
  method = build(config, backbone)
  return alternating_update(config, alfnet_model.from_config(config, backbone), method.trainable)


def alternating_update(config, model, trainable) -> AlternatingStep:
  """(init, step) of the alternating mode for `model` with optimiser mask `trainable(params)`.

  Per batch, for t = 1..T: run the network with the current weights; the step-t reference boxes
  are the anchors (t = 1) or B^{t-1} = decode(B^{t-2} of the previous update's run, the step-(t-1)
  deltas of this run); update backbone, extra layers and the step-t CPBs on L^t with step t's own
  Adam moments (the Keras step models share the optimiser object, hence `iterations`, so the t-th
  update of batch k uses iteration T k + t). With batch statistics (MobileNet BN) the reference
  deltas come from an inference-mode run, as Keras' `predict_on_batch`, the loss from a training run.
  Reads config.train adam_b1, adam_b2, adam_eps and the learning rate schedule of lla_jax/optim.py
  (base_lr, warmup, lr_steps; constant in the released recipe), indexed by the batch, not the update.
  """
  cfg = config.alfnet
  tr = config.train
  check_alternating_config(tr)
  num_steps = cfg.num_steps
  schedule = optim.config_schedule(tr)
  b1, b2, eps = float(tr.get("adam_b1", 0.9)), float(tr.get("adam_b2", 0.999)), float(tr.get("adam_eps", 1e-8))

  def step_mask(params, t):
    """Parameters of the step-t model: trainable, and not a CPB of another step."""
    owner = jax.tree_util.tree_map_with_path(
        lambda path, _: alfnet_model.head_step([getattr(k, "key", str(k)) for k in path]) or 0, params)
    return jax.tree_util.tree_map(lambda ok, s: bool(ok) and s in (0, t), trainable(params), owner)

  def inner_init(params):
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    return AlternatingState(jnp.zeros((), jnp.int32), (zeros,) * num_steps, (zeros,) * num_steps)

  # The batch's T updates are one skippable update: optax.apply_if_finite (nonfinite.skip_nonfinite) sees
  # the whole change of the parameters and the summed loss (NaN when any step loss was not finite), keeps the old
  # AlternatingState (moments, iteration counter) and counts the skip when it is not finite.
  guard = nonfinite.skip_nonfinite(optax.GradientTransformationExtraArgs(
      init=inner_init, update=lambda updates, state, params=None, new_state=None: (updates, new_state)))

  def step(params, opt_state, model_state, batch, rng):
    """opt_state: ApplyIfFiniteState around the AlternatingState."""
    del rng
    new_params, inner, model_state, metrics = alternating_updates(params, opt_state.inner_state, model_state, batch)
    change = jax.tree_util.tree_map(jnp.subtract, new_params, params)
    _, opt_state = guard.update((change, metrics["loss"]), opt_state, params, new_state=inner)
    finite = nonfinite.step_was_finite(opt_state)
    params = jax.tree_util.tree_map(lambda new, old: jnp.where(finite, new, old), new_params, params)
    return params, opt_state, model_state, metrics

  def alternating_updates(params, opt_state, model_state, batch):
    images, image_size = batch["image"], batch["image_size"]
    anchors = jnp.asarray(anchors_for(cfg, *images.shape[1:3]))
    base = anchors                                       # B^{t-2}, refined by the step-(t-1) deltas
    iterations, ms, vs = opt_state.iterations, list(opt_state.m), list(opt_state.v)
    lr = schedule(iterations // num_steps)              # the batch index: T updates per batch
    metrics = {"lr": lr}
    for t in range(1, num_steps + 1):
      fixed_ref = anchors if t == 1 else None
      if t > 1 and model_state:
        eval_out, _ = _apply(model, params, model_state, images, train=False, steps=t - 1)
        fixed_ref = jax.lax.stop_gradient(refine(base, eval_out[t - 2][1], image_size, cfg))

      def loss_fn(p, state, t=t, base=base, fixed_ref=fixed_ref):
        outputs, new_state = _apply(model, p, state, images, train=True, steps=t)
        ref = fixed_ref
        if ref is None:
          ref = jax.lax.stop_gradient(refine(base, outputs[t - 2][1], image_size, cfg))
        cls, reg, num_pos = step_loss(t, *outputs[t - 1], ref, batch, cfg)
        return cls + reg, (cls, reg, num_pos, new_state, ref)

      (_, (cls, reg, num_pos, model_state, base)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
          params, model_state)
      iterations = iterations + 1
      params, ms[t - 1], vs[t - 1] = keras_adam(params, grads, ms[t - 1], vs[t - 1], step_mask(params, t),
                                                iterations, lr, b1, b2, eps)
      metrics.update({f"cls_{t}": cls, f"reg_{t}": reg, f"num_pos_{t}": num_pos})
    metrics["loss"] = sum(metrics[f"cls_{t}"] + metrics[f"reg_{t}"] for t in range(1, num_steps + 1))
    return params, AlternatingState(iterations, tuple(ms), tuple(vs)), model_state, metrics

  return AlternatingStep(init=guard.init, step=step)
