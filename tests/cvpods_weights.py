"""A cvpods LLA / FCOS / ATSS R-50-FPN state dict written from scratch (the names and shapes cvpods saves
in model_final.pth 'model'), for the weight importer and --mode=convert / --mode=predict tests."""
import numpy as np

from configs import base


def tiny_model_cfg(aux="iou"):
  cfg = base.get_base_config().model
  cfg.backbone.width = 8
  cfg.fpn.channels = cfg.head.channels = 16
  cfg.head.gn_groups = 8
  cfg.head.aux = aux
  return cfg


def cvpods_state_dict(rng, cfg, scaled=False):
  """Names and shapes as cvpods writes an FCOS/LLA R-50-FPN model (backbone.bottom_up = detectron2 ResNet).

  scaled: weights a network can run on real pixels with activations of order one (He-scaled convs by
  fan-in, the stem also over the ~100 range of mean-subtracted pixels, residual branches damped, frozen
  BN near identity, cls_score bias -2 and bbox_pred bias 1.5 so that many candidates pass the score
  threshold with boxes of a few strides); otherwise unscaled N(0, 1) values (name/shape tests)."""
  sd = {}
  w, fch, hch = cfg.backbone.width, cfg.fpn.channels, cfg.head.channels
  gains = {"stem.conv1": 2.0 / 100 ** 2, "conv3": 0.1, "shortcut": 1.0, "fpn": 1.0, "cls_score": 1.0,
           "bbox_pred": 0.1}

  def conv(name, o, i, k, bias=False):
    gain = next((g for key, g in gains.items() if key in name), 2.0)
    sd[name + ".weight"] = (rng.normal(size=(o, i, k, k)) * (np.sqrt(gain / (i * k * k)) if scaled else 1.0)
                            ).astype(np.float32)
    if bias:
      b = rng.normal(size=o) * (0.1 if scaled else 1.0)
      if scaled and name.endswith(("cls_score", "bbox_pred")):
        b = b + (-2.0 if name.endswith("cls_score") else 1.5)
      sd[name + ".bias"] = b.astype(np.float32)

  def frozen_bn(name, c):
    for leaf in ("weight", "bias", "running_mean", "running_var"):
      if scaled:
        v = rng.normal(0, 0.1, c) if leaf in ("bias", "running_mean") else rng.uniform(0.8, 1.2, c)
      else:
        v = rng.uniform(0.5, 1.5, c)
      sd[f"{name}.{leaf}"] = v.astype(np.float32)

  bu = "backbone.bottom_up."
  conv(bu + "stem.conv1", w, 3, 7)
  frozen_bn(bu + "stem.conv1.norm", w)
  cin = w
  outs = {}
  for s, n in zip(range(2, 6), (3, 4, 6, 3)):
    mid, out = w * 2 ** (s - 2), 4 * w * 2 ** (s - 2)
    for b in range(n):
      p = f"{bu}res{s}.{b}."
      if b == 0:
        conv(p + "shortcut", out, cin, 1)
        frozen_bn(p + "shortcut.norm", out)
      for name, o, i, k in [("conv1", mid, cin if b == 0 else out, 1), ("conv2", mid, mid, 3), ("conv3", out, mid, 1)]:
        conv(p + name, o, i, k)
        frozen_bn(p + name + ".norm", o)
    cin = outs[s] = out
  for level in (3, 4, 5):
    conv(f"backbone.fpn_lateral{level}", fch, outs[level], 1, bias=True)
    conv(f"backbone.fpn_output{level}", fch, fch, 3, bias=True)
  conv("backbone.top_block.p6", fch, fch, 3, bias=True)
  conv("backbone.top_block.p7", fch, fch, 3, bias=True)
  for i in range(cfg.head.num_convs):  # nn.Sequential(conv, GroupNorm, ReLU) x num_convs
    for sub in ("cls_subnet", "bbox_subnet"):
      conv(f"head.{sub}.{3 * i}", hch, fch if i == 0 else hch, 3, bias=True)
      sd[f"head.{sub}.{3 * i + 1}.weight"] = rng.uniform(0.5, 1.5, hch).astype(np.float32)
      sd[f"head.{sub}.{3 * i + 1}.bias"] = rng.normal(size=hch).astype(np.float32)
  conv("head.cls_score", cfg.num_classes, hch, 3, bias=True)
  conv("head.bbox_pred", 4, hch, 3, bias=True)
  conv("head.ious_pred" if cfg.head.aux == "iou" else "head.centerness", 1, hch, 3, bias=True)
  for level in range(5):
    sd[f"head.scales.{level}.scale"] = rng.uniform(0.5, 1.5, 1).astype(np.float32)
  return sd
