"""Pixel conventions: the channel order, mean and std each family of weights was trained with, and
the check that config.data agrees with the weights it loads (with the override flags when not)."""
from __future__ import annotations

import numpy as np


PIXEL_CONVENTIONS = {
    # MSRA caffe weights (and every cvpods model built on them): BGR, mean only (std absorbed in conv1).
    "caffe": dict(bgr=True, mean=(103.530, 116.280, 123.675), std=(1.0, 1.0, 1.0)),
    # torchvision ImageNet weights: RGB, ImageNet mean/std in 0-255 units.
    "torchvision": dict(bgr=False, mean=(123.675, 116.280, 103.530), std=(58.395, 57.120, 57.375)),
    # Keras-v1 ResNet-50 'caffe' preprocessing, used by ALFNet for both backbones: BGR minus mean.
    "keras": dict(bgr=True, mean=(103.939, 116.779, 123.68), std=(1.0, 1.0, 1.0)),
    # keras.applications MobileNet's own 'tf' preprocessing (x / 127.5 − 1), RGB.
    "keras_tf": dict(bgr=False, mean=(127.5, 127.5, 127.5), std=(127.5, 127.5, 127.5)),
}
PIXEL_CONVENTIONS["cvpods"] = PIXEL_CONVENTIONS["c2"] = PIXEL_CONVENTIONS["caffe"]


def pixel_convention(kind: str) -> dict:
  """dict(bgr, mean, std) the weights of `kind` expect (caffe | c2 | cvpods | torchvision | keras | keras_tf)."""
  if kind not in PIXEL_CONVENTIONS:
    raise ValueError(f"pixel convention {kind!r}: expected one of {sorted(PIXEL_CONVENTIONS)}")
  return dict(PIXEL_CONVENTIONS[kind])


def format_pixel_conventions(fmt: str, layout: str | None = None) -> tuple:
  """The pixel conventions (PIXEL_CONVENTIONS keys, preferred first) that weights of format `fmt` accept.

  detectron2 / cvpods names carry no hint of their origin: caffe layout -> MSRA caffe pixels,
  torchvision layout -> torchvision pixels. Keras MobileNet v1 was trained on 'tf' pixels (x / 127.5 - 1)
  but ALFNet's released code feeds it caffe-style BGR minus mean (keras_alfnet/config.py
  img_channel_mean): both are accepted.
  """
  table = {"c2": ("caffe",), "torchvision": ("torchvision",), "keras_v1": ("keras",), "keras_v2": ("keras",),
           "keras_mobilenet": ("keras_tf", "keras")}
  if fmt in ("detectron2", "cvpods"):
    return ("torchvision",) if layout == "torchvision" else ("caffe",)
  if fmt not in table:
    raise ValueError(f"no pixel convention known for weight format {fmt!r}")
  return table[fmt]


def _same_pixels(data_cfg, conv: dict, tol: float = 1e-3) -> bool:
  return (bool(data_cfg.bgr) == conv["bgr"]
          and np.allclose(np.asarray(data_cfg.pixel_mean, np.float64), conv["mean"], atol=tol, rtol=0)
          and np.allclose(np.asarray(data_cfg.pixel_std, np.float64), conv["std"], atol=tol, rtol=0))


def override_flags(kind: str) -> str:
  """The command-line overrides that set config.data to pixel convention `kind`."""
  c = PIXEL_CONVENTIONS[kind]
  vec = lambda v: "'(" + ", ".join(f"{x:g}" for x in v) + ")'"
  return f"--config.data.bgr={c['bgr']} --config.data.pixel_mean={vec(c['mean'])} --config.data.pixel_std={vec(c['std'])}"


def check_pixel_convention(data_cfg, fmt: str, layout: str | None, source: str) -> str:
  """Raises ValueError naming the config fields (and the exact override flags) when config.data's
  bgr / pixel_mean / pixel_std are not a convention the weights accept; returns the matching kind."""
  kinds = format_pixel_conventions(fmt, layout)
  for kind in kinds:
    if _same_pixels(data_cfg, PIXEL_CONVENTIONS[kind]):
      return kind
  want = PIXEL_CONVENTIONS[kinds[0]]
  raise ValueError(
      f"{source}: {fmt} weights expect '{kinds[0]}' pixels (bgr={want['bgr']}, mean={want['mean']}, "
      f"std={want['std']}{'; or ' + ', '.join(repr(k) for k in kinds[1:]) if kinds[1:] else ''}) but the config has "
      f"data.bgr={data_cfg.bgr}, data.pixel_mean={tuple(data_cfg.pixel_mean)}, "
      f"data.pixel_std={tuple(data_cfg.pixel_std)}. Set data.bgr, data.pixel_mean and data.pixel_std: "
      f"{override_flags(kinds[0])} (or --config.convert.check_pixels=False to keep yours)")
