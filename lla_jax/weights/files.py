"""Weight files -> {name: numpy array}: pickles of Caffe2 blobs or state dicts (.pkl), PyTorch
checkpoints (.pth / .pt, torch imported only for them), .npz, and legacy Keras HDF5 (.h5); and the
naming scheme a set of names follows (detect_format).

Keras files are the legacy HDF5 layout (root or 'model_weights' group with a 'layer_names' attribute;
one group per layer, weights in Keras' order: kernel, bias / gamma, beta, moving_mean, moving_variance),
read as {'layer/i': array} with the stored weight names beside them.
"""
from __future__ import annotations

import os
import pickle
import zipfile
from typing import Iterable, Mapping

import numpy as np

from lla_jax.errors import BadInputError


def to_numpy(value):
  if isinstance(value, np.ndarray):
    return value
  if hasattr(value, "detach"):  # torch tensor (bfloat16 has no numpy dtype)
    value = value.detach().cpu()
    return (value.float() if str(value.dtype) == "torch.bfloat16" else value).numpy()
  # Anything else (counters, strings, nested state) stays visible: it ends up in the report's unused list.
  return np.asarray(value, dtype=object if not isinstance(value, (int, float, np.number)) else None)


def _array_dict(obj, path: str) -> dict:
  """Unwraps {'model': ...} / {'blobs': ...} / {'state_dict': ...} -> {name: np.ndarray}."""
  if not isinstance(obj, Mapping):
    raise BadInputError(f"{path}: expected a dict of named tensors, got {type(obj).__name__}")
  for key in ("model", "blobs", "state_dict"):
    if key in obj and isinstance(obj[key], Mapping):
      obj = obj[key]
      break
  if not obj:
    raise BadInputError(f"{path}: no named tensors found; expected a dict of named arrays")
  return {str(k): to_numpy(v) for k, v in obj.items()}


def _read_torch(path: str) -> dict:
  try:
    import torch  # optional dependency, only for .pth/.pt
  except ImportError as e:
    raise ImportError(f"{path}: reading a .pth/.pt checkpoint needs PyTorch (pip install torch); "
                      "or convert it once to .npz/.pkl of numpy arrays") from e
  return torch.load(path, map_location="cpu", weights_only=True)


def _attr_list(group, name: str) -> list:
  """A Keras string-list attribute, possibly chunked as name0, name1, ..."""
  if name in group.attrs:
    values = list(group.attrs[name])
  else:
    values, i = [], 0
    while f"{name}{i}" in group.attrs:
      values.extend(group.attrs[f"{name}{i}"])
      i += 1
  return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def read_keras_h5(path: str) -> tuple:
  """Legacy Keras HDF5 weights -> ({'layer/i': array}, {'layer/i': stored weight name}), i = Keras order."""
  import h5py
  arrays, names = {}, {}
  with h5py.File(path, "r") as f:
    root = f["model_weights"] if "model_weights" in f else f
    layer_names = _attr_list(root, "layer_names")
    if not layer_names:
      hint = (" (a Keras 3 '.weights.h5' keys layers by class, not by name: save with model.save('x.h5'))"
              if "layers" in root else "")
      raise BadInputError(f"{path}: not a legacy Keras weights file, no 'layer_names' attribute{hint}")
    for layer in layer_names:
      group = root[layer]
      for i, wname in enumerate(_attr_list(group, "weight_names")):
        arrays[f"{layer}/{i}"] = np.asarray(group[wname])
        names[f"{layer}/{i}"] = wname
  return arrays, names


def read_weights(path: str) -> tuple:
  """File -> ({name: np.ndarray}, {name: keras weight name} or {}). By suffix: .pkl .pth .pt .npz .h5.
  A file that cannot be read as its suffix says (truncated, empty, another format) raises BadInputError."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"weights file {path} does not exist")
  suffix = os.path.splitext(path)[1].lower()
  if suffix not in (".pkl", ".pth", ".pt", ".npz", ".h5", ".hdf5"):
    raise BadInputError(f"{path}: unknown weights suffix {suffix!r}; expected .pkl, .pth, .pt, .npz or .h5")
  try:
    return _read_by_suffix(path, suffix)
  except (OSError, EOFError, ValueError, KeyError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
    if isinstance(e, (FileNotFoundError, BadInputError)) or "torch" in str(e):
      raise
    kind = {".pkl": "a pickle of named arrays", ".npz": "a numpy .npz archive of named arrays",
            ".h5": "a legacy Keras HDF5 weights file", ".hdf5": "a legacy Keras HDF5 weights file"}.get(
                suffix, "a PyTorch checkpoint")
    raise BadInputError(f"{path}: cannot be read as {kind} ({type(e).__name__}: {e}); truncated or not a "
                        f"{suffix} file? Expected {kind}") from None


def _read_by_suffix(path: str, suffix: str) -> tuple:
  if suffix == ".pkl":
    with open(path, "rb") as f:
      return _array_dict(pickle.load(f, encoding="latin1"), path), {}
  if suffix in (".pth", ".pt"):
    return _array_dict(_read_torch(path), path), {}
  if suffix == ".npz":
    with np.load(path, allow_pickle=False) as z:
      return {k: z[k] for k in z.files}, {}
  if suffix in (".h5", ".hdf5"):
    return read_keras_h5(path)
  raise AssertionError(suffix)


def detect_format(names: Iterable[str], source: str | None = None) -> str:
  """The naming scheme of a name set: c2 | detectron2 | cvpods | torchvision | keras_v1 | keras_v2 | keras_mobilenet.
  `source` (the file) prefixes the error raised for names of no known scheme."""
  names = set(names)
  if "conv_dw_1/0" in names:
    return "keras_mobilenet"
  if "conv1_conv/0" in names:
    return "keras_v2"
  if "bn_conv1/0" in names:
    return "keras_v1"
  if "conv1_w" in names or "res_conv1_bn_s" in names:
    return "c2"
  if "conv1.weight" in names and any(n.startswith("layer1.") for n in names):
    return "torchvision"
  if "backbone.bottom_up.stem.conv1.weight" in names and any(n.startswith(("head.", "proposal_generator."))
                                                              for n in names):
    return "cvpods"
  if any(n.endswith("stem.conv1.weight") for n in names):
    return "detectron2"
  raise BadInputError(f"{source + ': ' if source else ''}unrecognised weight names (first: {sorted(names)[:8]}); "
                      "expected MSRA caffe, detectron2/cvpods, torchvision or Keras ResNet/MobileNet names")
