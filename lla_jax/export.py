"""--mode=export: the trained detector's inference as a serialized `jax.export` artifact and its input contract.

Writes W/export/detector.jax (StableHLO with the weights inside, a symbolic batch size, lowered for
every platform of `config.export.platforms`, CPU and CUDA by default, so one file serves both) and
W/export/detector.json (the contract below). `lla_jax/serving.py` runs it with no model code.

The exported function (shapes for batch size B, fixed input size (H, W), D = test.max_detections):

  inputs   image      (B, H, W, 3) uint8  RGB, the image resized by the caller (contract "resize"),
                                          top-left aligned; what lies outside image_size is ignored
           image_size (B, 2) int32        (h, w) of the resized image inside the (H, W) input
           orig_size  (B, 2) int32        (h, w) of the original image
  outputs  boxes (B, D, 4) float32 xyxy in original-image pixels, scores (B, D) float32,
           classes (B, D) int32, valid (B, D) bool; invalid slots are zero.

Inside: uint8 -> float32, BGR if data.bgr, (x - pixel_mean) / pixel_std, then zero outside image_size
(the pipeline normalises before zero-padding, data_pipelines/transforms.py), the method's predict.
"""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from lla_jax import atomic, sharding
from lla_jax.methods import get_method
from lla_jax.train_state import restore_train_state

OUTPUTS = ("boxes", "scores", "classes", "valid")


def input_size(config) -> tuple[int, int]:
  """(H, W) of the artifact's input: `config.export.input_size`, or the square --mode=predict pads to
  (the long side cap data.max_size rounded up to 32, at least data.pad_size), which fits any orientation."""
  size = config.export.input_size
  if size:
    return int(size[0]), int(size[1])
  side = -(-int(config.data.max_size) // 32) * 32
  return max(side, int(config.data.pad_size[0])), max(side, int(config.data.pad_size[1]))


def inference_fn(config, method, variables, size):
  """fn(image uint8 (B, H, W, 3), image_size (B, 2), orig_size (B, 2)) -> dict of OUTPUTS; the module
  docstring states the contract. `variables` become constants of the traced function."""
  d = config.data
  mean, std = np.asarray(d.pixel_mean, np.float32), np.asarray(d.pixel_std, np.float32)

  def fn(image, image_size, orig_size):
    x = image.astype(jnp.float32)
    if d.bgr:
      x = x[..., ::-1]
    x = (x - mean) / std
    rows = jnp.arange(size[0])[None, :, None] < image_size[:, 0, None, None]
    cols = jnp.arange(size[1])[None, None, :] < image_size[:, 1, None, None]
    x = jnp.where((rows & cols)[..., None], x, 0.0)
    dets = method.predict(variables, {"image": x, "image_size": image_size, "orig_size": orig_size})
    return {k: getattr(dets, k) for k in OUTPUTS}

  return fn


def export_inference(fn, size, platforms=("cpu", "cuda")):
  """jax.export.Exported of `fn` (inference_fn) for a symbolic batch size `batch` and `platforms`."""
  batch, = jax.export.symbolic_shape("batch")
  specs = (jax.ShapeDtypeStruct((batch, *size, 3), jnp.uint8), jax.ShapeDtypeStruct((batch, 2), jnp.int32),
           jax.ShapeDtypeStruct((batch, 2), jnp.int32))
  return jax.export.export(jax.jit(fn), platforms=tuple(platforms))(*specs)


def contract(config, size, step: int, exported, config_name=None) -> dict:
  """The JSON next to the artifact: everything a caller needs to feed it, and what comes out."""
  d, t = config.data, config.test
  return {
      "artifact": "detector.jax", "config": config_name, "method": config.method, "step": int(step),
      "platforms": list(exported.platforms), "batch": "symbolic (any size >= 1)",
      "input_size": list(size),
      "inputs": {
          "image": {"shape": ["batch", *size, 3], "dtype": "uint8", "channels": "RGB",
                    "layout": "the resized image at the top-left; the rest (padding) may hold anything, "
                              "it is set to zero after normalisation"},
          "image_size": {"shape": ["batch", 2], "dtype": "int32", "meaning": "(h, w) of the resized image"},
          "orig_size": {"shape": ["batch", 2], "dtype": "int32", "meaning": "(h, w) of the original image"}},
      "resize": {"by": "caller", "rule": "shortest edge", "min_size": int(d.min_size), "max_size": int(d.max_size),
                 "scale": "s = min_size / short side; if long side * s > max_size: s = max_size / long side",
                 "new_size": "int(h * s + 0.5), int(w * s + 0.5)",
                 "interpolation": "bilinear, antialiased when shrinking (PIL Image.BILINEAR)"},
      "normalisation": {"by": "artifact", "bgr": bool(d.bgr), "pixel_mean": list(d.pixel_mean),
                        "pixel_std": list(d.pixel_std),
                        "formula": "float32, channels reversed to BGR if bgr, (x - pixel_mean) / pixel_std"},
      "padding": {"where": "bottom / right, to input_size", "value": "0 after normalisation",
                  "note": "every image is padded to input_size (test.padding 'fixed'): GroupNorm heads see it"},
      "outputs": {
          "boxes": {"shape": ["batch", int(t.max_detections), 4], "dtype": "float32",
                    "meaning": "xyxy in original-image pixels (orig_size), clipped to the image"},
          "scores": {"shape": ["batch", int(t.max_detections)], "dtype": "float32"},
          "classes": {"shape": ["batch", int(t.max_detections)], "dtype": "int32"},
          "valid": {"shape": ["batch", int(t.max_detections)], "dtype": "bool",
                    "meaning": "False on empty slots (their boxes, scores and classes are zero)"}},
      "postprocess": {"score_thresh": float(t.score_thresh), "nms_thresh": float(t.nms_thresh),
                      "max_detections": int(t.max_detections)},
  }


def export_detector(config, workdir: str, step=None, config_name=None) -> str:
  """--mode=export: restores checkpoint `step` (default latest) of `workdir` and writes
  workdir/export/detector.jax and detector.json. Returns the artifact's path."""
  method = get_method(config)
  state = restore_train_state(config, workdir, method, sharding.make_mesh(), step, mode="export")
  variables = jax.device_get({"params": state.params, **state.model_state})   # host copies, no shardings
  size = input_size(config)
  platforms = tuple(config.export.platforms)
  exported = export_inference(inference_fn(config, method, variables, size), size, platforms)
  out_dir = os.path.join(workdir, "export")
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, "detector.jax")
  if jax.process_index() == 0:
    atomic.write_bytes(path, bytes(exported.serialize()))
    atomic.write_json(os.path.join(out_dir, "detector.json"),
                      contract(config, size, int(jax.device_get(state.step)), exported, config_name))
    print(f"Exported the step-{int(jax.device_get(state.step))} detector for {'/'.join(platforms)}, input "
          f"{size[0]}x{size[1]} uint8 RGB, symbolic batch: {path} (+ detector.json)", flush=True)
  return path
