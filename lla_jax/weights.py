"""Importers for pretrained backbones and released checkpoints (issue 7).

Every importer maps *our* parameter tree onto the names of one upstream format, checks every shape, and
returns the updated tree with a `LoadReport` (loaded / missing / unused / defaulted keys). It raises, listing
the offending keys, when a shape differs, when a parameter of the imported scope is absent from the file, or
when the file holds a name of that scope that our model has no place for (a depth or layout mismatch).

Formats (the name tables are written from the upstream model definitions):
  c2           MSRA caffe ResNet `.pkl` (detectron2 `ImageNetPretrained/MSRA/R-50.pkl`): a pickle of Caffe2
               blobs, optionally under 'blobs' or 'model': conv1_w, res_conv1_bn_{s,b}, res2_0_branch2a_w,
               res2_0_branch2a_bn_{s,b[,rm,riv]}, res2_0_branch1_w, ... OIHW. Without _rm/_riv the FrozenBN
               statistics are set to the identity (mean 0, var 1 − eps), as detectron2 leaves them.
  detectron2   detectron2/cvpods backbone names (stem.conv1.weight, stem.conv1.norm.running_var,
               res2.0.conv1.weight, res2.0.shortcut.norm.weight, ...), bare or under 'backbone.bottom_up.'.
  cvpods       a whole LLA/FCOS/ATSS detector (model_final.pth 'model'): the detectron2 backbone under
               'backbone.bottom_up.', backbone.fpn_lateral{3,4,5}, backbone.fpn_output{3,4,5},
               backbone.top_block.p{6,7}, head.{cls,bbox}_subnet.{3i} (conv) / .{3i+1} (GroupNorm),
               head.cls_score, head.bbox_pred, head.ious_pred | head.centerness, head.scales.{l}.scale.
  torchvision  torchvision ResNet state dicts: conv1, bn1, layer{1-4}.{b}.conv{n} / bn{n} / downsample.{0,1}.
  keras_v1     Keras-v1 ResNet-50 `.h5` (fchollet deep-learning-models, ALFNet): conv1, bn_conv1,
               res2a_branch2a, bn2a_branch2a, ..., res5c_branch1.
  keras_v2     keras.applications ResNet50 `.h5`: conv1_conv, conv1_bn, conv2_block1_{0,1,2,3}_{conv,bn}, ...
  keras_mobilenet  keras MobileNet v1 `.h5`: conv1, conv1_bn, conv_dw_{i}[_bn], conv_pw_{i}[_bn].
Keras files are the legacy HDF5 layout (root or 'model_weights' group with a 'layer_names' attribute; one
group per layer, weights in Keras' order: kernel, bias / gamma, beta, moving_mean, moving_variance).
torch is imported lazily and only for `.pth`/`.pt` files; `.pkl` and `.npz` hold the same name → array maps
without it.

Entry points: `load_variables` (any file into any model of the suite, by the file's names),
`load_pretrained` (params only, for a params tree without model state), `convert_command` (--mode=convert:
a file into a step-0 checkpoint that --mode=eval restores). The pixel convention follows the weights
(`format_pixel_conventions`); the config records it in data.bgr / pixel_mean / pixel_std, and
`check_pixel_convention` stops with the override flags when they disagree.
"""
from __future__ import annotations

import dataclasses
import os
import pickle
import re
import string
from typing import Callable, Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from lla_jax.models import resnet as resnet_lib

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

# Which ResNet layout each weight format was trained with (the stride position is invisible in shapes).
FORMAT_LAYOUTS = {"c2": ("caffe",), "detectron2": ("caffe", "torchvision"), "cvpods": ("caffe", "torchvision"),
                  "torchvision": ("torchvision",), "keras_v1": ("keras",), "keras_v2": ("keras",)}


def pixel_convention(kind: str) -> dict:
  """dict(bgr, mean, std) the weights of `kind` expect (caffe | c2 | cvpods | torchvision | keras | keras_tf)."""
  if kind not in PIXEL_CONVENTIONS:
    raise ValueError(f"pixel convention {kind!r}: expected one of {sorted(PIXEL_CONVENTIONS)}")
  return dict(PIXEL_CONVENTIONS[kind])


@dataclasses.dataclass
class LoadReport:
  """What an import did. Paths are '/'-joined variable paths (collection first), names are the file's."""
  source: str
  format: str
  loaded: list = dataclasses.field(default_factory=list)     # our paths written from the file
  missing: list = dataclasses.field(default_factory=list)    # our paths of the scope the file did not provide
  unused: list = dataclasses.field(default_factory=list)     # file names not loaded (outside the scope)
  defaulted: list = dataclasses.field(default_factory=list)  # our paths set to a documented default

  def __str__(self):
    return (f"{self.source} ({self.format}): loaded {len(self.loaded)}, missing {len(self.missing)}, "
            f"defaulted {len(self.defaulted)}, unused {len(self.unused)}"
            + (f"; unused: {', '.join(self.unused)}" if self.unused else ""))


@dataclasses.dataclass(frozen=True)
class Entry:
  """One file tensor <-> one of our variables. kind: 'oihw' (torch conv, transposed to HWIO), 'keep',
  'dw' (Keras depthwise (k,k,C,1) -> (k,k,1,C)), 'index' (element `index` of a vector: head scales).
  role: the Keras weight role expected at this position (checked against the stored weight name)."""
  name: str
  path: tuple
  kind: str = "keep"
  index: int = 0
  role: str | None = None


# ----------------------------------------------------------------------------------------------- reading


def _to_numpy(value):
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
    raise ValueError(f"{path}: expected a dict of named tensors, got {type(obj).__name__}")
  for key in ("model", "blobs", "state_dict"):
    if key in obj and isinstance(obj[key], Mapping):
      obj = obj[key]
      break
  if not obj:
    raise ValueError(f"{path}: no named tensors found")
  return {str(k): _to_numpy(v) for k, v in obj.items()}


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
      raise ValueError(f"{path}: not a legacy Keras weights file, no 'layer_names' attribute{hint}")
    for layer in layer_names:
      group = root[layer]
      for i, wname in enumerate(_attr_list(group, "weight_names")):
        arrays[f"{layer}/{i}"] = np.asarray(group[wname])
        names[f"{layer}/{i}"] = wname
  return arrays, names


def read_weights(path: str) -> tuple:
  """File -> ({name: np.ndarray}, {name: keras weight name} or {}). By suffix: .pkl .pth .pt .npz .h5."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"weights file {path} does not exist")
  suffix = os.path.splitext(path)[1].lower()
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
  raise ValueError(f"{path}: unknown weights suffix {suffix!r}; expected .pkl, .pth, .pt, .npz or .h5")


def detect_format(names: Iterable[str]) -> str:
  """The naming scheme of a name set: c2 | detectron2 | cvpods | torchvision | keras_v1 | keras_v2 | keras_mobilenet."""
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
  if "backbone.bottom_up.stem.conv1.weight" in names and any(n.startswith("head.") for n in names):
    return "cvpods"
  if any(n.endswith("stem.conv1.weight") for n in names):
    return "detectron2"
  raise ValueError(f"unrecognised weight names (first: {sorted(names)[:8]}); expected MSRA caffe, detectron2/"
                   "cvpods, torchvision or Keras ResNet/MobileNet names")


# ------------------------------------------------------------------------------------------- name tables

_KERAS_ROLES = {"kernel": ("kernel", "W", "depthwise_kernel"), "bias": ("bias", "b"), "gamma": ("gamma",),
                "beta": ("beta",), "mean": ("moving_mean", "running_mean"),
                "var": ("moving_variance", "running_variance", "running_std")}


def _keras_role(weight_name: str):
  """Role of a stored Keras weight from its name ('conv1_conv/kernel:0', 'bn_conv1_gamma:0', ...), or None."""
  token = weight_name.split("/")[-1].split(":")[0]
  for role, aliases in _KERAS_ROLES.items():
    if token in aliases:
      return role
  for role, aliases in _KERAS_ROLES.items():
    if any(token.endswith("_" + a) for a in aliases):
      return role
  return None


def _resnet_modules(tree: Mapping):
  """(stage, block index or None, module name, is_norm) for every module of a ResNet param tree."""
  for mod in tree["stem"]:
    yield "stem", None, mod, mod.startswith("norm")
  for stage in resnet_lib.STAGES:
    blocks = sorted(tree[stage], key=lambda b: int(b[len("block"):]))
    for b in blocks:
      for mod in tree[stage][b]:
        yield stage, int(b[len("block"):]), mod, "norm" in mod


def _d2_module(stage, block, mod):
  if stage == "stem":
    return "stem.conv1" if mod == "conv1" else "stem.conv1.norm"
  base = f"{stage}.{block}."
  if mod == "shortcut_norm":
    return base + "shortcut.norm"
  if mod.startswith("norm"):
    return base + f"conv{mod[len('norm'):]}.norm"
  return base + mod


_C2_BRANCH = {"conv1": "branch2a", "conv2": "branch2b", "conv3": "branch2c", "shortcut": "branch1",
              "norm1": "branch2a_bn", "norm2": "branch2b_bn", "norm3": "branch2c_bn", "shortcut_norm": "branch1_bn"}


def _c2_module(stage, block, mod):
  if stage == "stem":
    return "conv1" if mod == "conv1" else "res_conv1_bn"
  return f"{stage}_{block}_{_C2_BRANCH[mod]}"


def _tv_module(stage, block, mod):
  if stage == "stem":
    return "conv1" if mod == "conv1" else "bn1"
  base = f"layer{int(stage[len('res'):]) - 1}.{block}."
  return base + {"shortcut": "downsample.0", "shortcut_norm": "downsample.1"}.get(mod, mod.replace("norm", "bn"))


def _keras2_module(stage, block, mod):
  if stage == "stem":
    return "conv1_conv" if mod == "conv1" else "conv1_bn"
  idx = 0 if mod.startswith("shortcut") else int(mod[-1])
  return f"conv{stage[len('res'):]}_block{block + 1}_{idx}_{'bn' if 'norm' in mod else 'conv'}"


def _keras1_module(stage, block, mod):
  if stage == "stem":
    return "conv1" if mod == "conv1" else "bn_conv1"
  branch = "1" if mod.startswith("shortcut") else "2" + "abc"[int(mod[-1]) - 1]
  return f"{'bn' if 'norm' in mod else 'res'}{stage[len('res'):]}{string.ascii_lowercase[block]}_branch{branch}"


# leaf -> (suffix, kind, keras role) per family of formats
_TORCH_LEAVES = {"conv": {"kernel": (".weight", "oihw"), "bias": (".bias", "keep")},
                 "norm": {"scale": (".weight", "keep"), "bias": (".bias", "keep"), "mean": (".running_mean", "keep"),
                          "var": (".running_var", "keep")}}
_C2_LEAVES = {"conv": {"kernel": ("_w", "oihw"), "bias": ("_b", "keep")},
              "norm": {"scale": ("_s", "keep"), "bias": ("_b", "keep"), "mean": ("_rm", "keep"),
                       "var": ("_riv", "keep")}}
_KERAS_LEAVES = {"conv": {"kernel": ("/0", "keep", "kernel"), "bias": ("/1", "keep", "bias")},
                 "norm": {"scale": ("/0", "keep", "gamma"), "bias": ("/1", "keep", "beta"),
                          "mean": ("/2", "keep", "mean"), "var": ("/3", "keep", "var")}}
_RESNET_SCHEMES = {"detectron2": (_d2_module, _TORCH_LEAVES), "c2": (_c2_module, _C2_LEAVES),
                   "torchvision": (_tv_module, _TORCH_LEAVES), "keras_v1": (_keras1_module, _KERAS_LEAVES),
                   "keras_v2": (_keras2_module, _KERAS_LEAVES)}
# Names of the ResNet scope of each format (an unused name matching these means a structure mismatch).
_RESNET_SCOPE = {"detectron2": r"(stem|res\d+)\.", "c2": r"(conv1_|res_conv1_|res\d+_\d+_)",
                 "torchvision": r"(conv1\.|bn1\.|layer\d+\.)", "keras_v1": r"(conv1/|bn_conv1/|res\d|bn\d)",
                 "keras_v2": r"(conv\d_)"}


def resnet_entries(tree: Mapping, fmt: str, prefix: str = "", path: tuple = ("params",)) -> list:
  """Entries of a ResNet param tree (at variable path `path`) in format `fmt` (names prefixed by `prefix`)."""
  module_name, leaves = _RESNET_SCHEMES[fmt]
  out = []
  for stage, block, mod, is_norm in _resnet_modules(tree):
    module_path = path + ((stage,) if block is None else (stage, f"block{block}")) + (mod,)
    table = leaves["norm" if is_norm else "conv"]
    module = tree[stage][mod] if block is None else tree[stage][f"block{block}"][mod]
    for leaf in module:
      if leaf not in table:
        raise ValueError(f"{'/'.join(module_path)}/{leaf}: no {fmt} name for this parameter")
      suffix, kind, *role = table[leaf]
      out.append(Entry(prefix + module_name(stage, block, mod) + suffix, module_path + (leaf,), kind,
                       role=role[0] if role else None))
  return out


def mobilenet_entries(tree: Mapping, path: tuple = ("params",)) -> list:
  """Entries of a MobileNetV1 tree (our module names are the Keras layer names); BN stats in batch_stats."""
  stats_path = ("batch_stats",) + path[1:]
  out = []
  for mod in tree:
    if mod.endswith("_bn"):
      out += [Entry(f"{mod}/0", path + (mod, "scale"), role="gamma"),
              Entry(f"{mod}/1", path + (mod, "bias"), role="beta"),
              Entry(f"{mod}/2", stats_path + (mod, "mean"), role="mean"),
              Entry(f"{mod}/3", stats_path + (mod, "var"), role="var")]
    else:
      out.append(Entry(f"{mod}/0", path + (mod, "kernel"), "dw" if mod.startswith("conv_dw") else "keep",
                       role="kernel"))
  return out


def fpn_entries(tree: Mapping, prefix: str = "backbone.", path: tuple = ("params", "fpn")) -> list:
  """cvpods FPN names: fpn_lateral{l}, fpn_output{l}, top_block.p6, top_block.p7."""
  out = []
  for mod in tree:
    m = re.fullmatch(r"(lateral|output)(\d)", mod)
    name = f"fpn_{m.group(1)}{m.group(2)}" if m else f"top_block.{mod}"
    for leaf in tree[mod]:
      suffix, kind = _TORCH_LEAVES["conv"][leaf]
      out.append(Entry(prefix + name + suffix, path + (mod, leaf), kind))
  return out


def head_entries(tree: Mapping, prefix: str = "head.", path: tuple = ("params", "head")) -> list:
  """cvpods FCOS/LLA head names: {cls,bbox}_subnet.{3i} conv / .{3i+1} GroupNorm, cls_score, bbox_pred,
  ious_pred | centerness, scales.{l}.scale."""
  out = []
  for mod in tree:
    if mod == "scales":
      out += [Entry(f"{prefix}scales.{l}.scale", path + ("scales",), "index", l) for l in range(len(tree["scales"]))]
      continue
    m = re.fullmatch(r"(cls|box)_(tower|norm)(\d+)", mod)
    if m:
      subnet = "cls_subnet" if m.group(1) == "cls" else "bbox_subnet"
      name = f"{subnet}.{3 * int(m.group(3)) + (m.group(2) == 'norm')}"
    else:
      name = {"iou_pred": "ious_pred"}.get(mod, mod)
    table = {"kernel": (".weight", "oihw"), "bias": (".bias", "keep"), "scale": (".weight", "keep")}
    for leaf in tree[mod]:
      suffix, kind = table[leaf]
      out.append(Entry(prefix + name + suffix, path + (mod, leaf), kind))
  return out


# ---------------------------------------------------------------------------------------------- applying


def _flatten(tree: Mapping, path: tuple = ()) -> dict:
  out = {}
  for k, v in tree.items():
    if isinstance(v, Mapping):
      out.update(_flatten(v, path + (k,)))
    else:
      out[path + (k,)] = v
  return out


def _unflatten(flat: Mapping) -> dict:
  out = {}
  for path, v in flat.items():
    node = out
    for k in path[:-1]:
      node = node.setdefault(k, {})
    node[path[-1]] = v
  return out


class _ShapeError(Exception):
  pass


def _to_ours(value: np.ndarray, e: Entry, current) -> np.ndarray:
  if e.kind == "oihw":
    return value.transpose(2, 3, 1, 0) if value.ndim == 4 else value
  if e.kind == "dw":
    return value.transpose(0, 1, 3, 2) if value.ndim == 4 else value
  if e.kind == "index":
    if value.size != 1:
      raise _ShapeError
    out = np.array(current, np.float32)
    out[e.index] = value.reshape(())
    return out
  return value


def _from_ours(value: np.ndarray, e: Entry) -> np.ndarray:
  if e.kind == "oihw":
    return value.transpose(3, 2, 0, 1)
  if e.kind == "dw":
    return value.transpose(0, 1, 3, 2)
  if e.kind == "index":
    return value[e.index:e.index + 1]
  return value


def _fmt(path: tuple, e: Entry | None = None) -> str:
  return "/".join(map(str, path)) + (f"[{e.index}]" if e is not None and e.kind == "index" else "")


def apply_entries(variables: Mapping, source: Mapping, entries: list, *, scope: Callable[[str], bool],
                  source_name: str, fmt: str, keras_names: Mapping | None = None, defaults: Mapping | None = None,
                  strict: bool = True) -> tuple:
  """Writes source tensors into `variables` (a {collection: tree} dict) along `entries`.

  scope(name) tells which file names belong to what is being imported; `defaults` maps our paths to values
  used when the file lacks them. Raises ValueError (strict) listing shape mismatches, missing paths and
  unused in-scope names. Returns (new variables, LoadReport).
  """
  flat = _flatten(variables)
  new = dict(flat)
  report = LoadReport(source_name, fmt)
  defaults = defaults or {}
  errors, used = [], set()
  for e in entries:
    if e.path not in flat:
      raise KeyError(f"internal: {_fmt(e.path)} is not a variable of the model")
    if e.name not in source:
      if e.path in defaults:
        new[e.path] = jnp.asarray(defaults[e.path], flat[e.path].dtype)
        report.defaulted.append(_fmt(e.path))
      else:
        report.missing.append(f"{_fmt(e.path, e)} (expected {e.name})")
      continue
    used.add(e.name)
    value = np.asarray(source[e.name])
    if keras_names is not None and e.role is not None:
      stored = _keras_role(keras_names.get(e.name, ""))
      if stored is not None and stored != e.role:
        errors.append(f"{e.name} is {keras_names[e.name]!r}, expected a {e.role} for {_fmt(e.path)}")
        continue
    try:
      converted = _to_ours(value, e, new[e.path])
    except _ShapeError:
      converted = None
    target = flat[e.path]
    if converted is None or tuple(converted.shape) != tuple(target.shape):
      errors.append(f"{e.name} {tuple(value.shape)} -> {_fmt(e.path, e)} {tuple(target.shape)}")
      continue
    new[e.path] = jnp.asarray(converted, target.dtype)
    report.loaded.append(_fmt(e.path, e))
  unused = sorted(n for n in source if n not in used)
  unexpected = [n for n in unused if scope(n)]
  report.unused = [n for n in unused if not scope(n)]
  if strict and (errors or report.missing or unexpected):
    lines = ([f"shape/name mismatches: {errors}"] if errors else []) + \
            ([f"missing from the file: {report.missing}"] if report.missing else []) + \
            ([f"file names with no place in the model: {unexpected}"] if unexpected else [])
    raise ValueError(f"{source_name} ({fmt}): " + "; ".join(lines))
  report.unused += unexpected
  return _unflatten(new), report


# ------------------------------------------------------------------------------------------ public API


def _root(params: Mapping, marker: str, what: str) -> tuple:
  """Path of the backbone subtree: the params themselves or params['backbone']."""
  if marker in params:
    return ()
  if "backbone" in params and marker in params["backbone"]:
    return ("backbone",)
  raise ValueError(f"cannot find a {what} in the param tree (top-level keys {sorted(params)})")


def _subtree(tree, path):
  for k in path:
    tree = tree[k]
  return tree


def load_resnet(params: Mapping, source: Mapping, fmt: str, *, source_name: str = "<dict>", bn_eps: float = 1e-5,
                keras_names: Mapping | None = None, strict: bool = True) -> tuple:
  """A ResNet backbone (params of a ResNet or of a detector) from a name -> array map in `fmt`
  (c2 | detectron2 | torchvision | keras_v1 | keras_v2). -> (params, LoadReport)."""
  root = _root(params, "stem", "ResNet")
  if fmt not in _RESNET_SCHEMES:
    raise ValueError(f"{source_name}: format {fmt!r} is not a ResNet naming ({sorted(_RESNET_SCHEMES)})")
  prefix = ""
  if fmt == "detectron2":
    stems = [n for n in source if n.endswith("stem.conv1.weight")]
    if len(stems) != 1:
      raise ValueError(f"{source_name}: expected one '...stem.conv1.weight' in detectron2 names, found {stems}")
    prefix = stems[0][:-len("stem.conv1.weight")]
  entries = resnet_entries(_subtree(params, root), fmt, prefix, ("params",) + root)
  defaults = {}
  if fmt == "c2" and not any(n.endswith("_bn_rm") for n in source):
    # MSRA caffe ships only scale and bias: FrozenBN keeps detectron2's identity statistics.
    for e in entries:
      if e.path[-1] in ("mean", "var"):
        defaults[e.path] = np.full(_subtree(params, e.path[1:]).shape, 0.0 if e.path[-1] == "mean" else 1.0 - bn_eps)
  scope_re = re.compile(re.escape(prefix) + _RESNET_SCOPE[fmt])
  scope = lambda n: bool(scope_re.match(n)) and not n.endswith("num_batches_tracked")
  variables, report = apply_entries({"params": params}, source, entries, scope=scope,
                                    source_name=source_name, fmt=fmt, keras_names=keras_names, defaults=defaults,
                                    strict=strict)
  return variables["params"], report


def load_mobilenet(variables: Mapping, source: Mapping, *, source_name: str = "<dict>",
                   keras_names: Mapping | None = None, strict: bool = True) -> tuple:
  """MobileNet v1 variables ({'params', 'batch_stats'}, bare or under 'backbone') from Keras layer names."""
  if "batch_stats" not in variables:
    raise ValueError("MobileNet import needs the full variables {'params', 'batch_stats'} (BN statistics)")
  root = _root(variables["params"], "conv_dw_1", "MobileNet v1")
  entries = mobilenet_entries(_subtree(variables["params"], root), ("params",) + root)
  scope_re = re.compile(r"conv(1|_dw_\d+|_pw_\d+)(_bn)?/")
  return apply_entries(variables, source, entries, scope=lambda n: bool(scope_re.match(n)), source_name=source_name,
                       fmt="keras_mobilenet", keras_names=keras_names, strict=strict)


def detector_entries(params: Mapping) -> list:
  """All cvpods names of an FCOSDetector param tree (backbone, FPN, head)."""
  return (resnet_entries(params["backbone"], "detectron2", "backbone.bottom_up.", ("params", "backbone"))
          + fpn_entries(params["fpn"]) + head_entries(params["head"]))


def convert_cvpods(params: Mapping, state_dict: Mapping, *, source_name: str = "<dict>", strict: bool = True) -> tuple:
  """FCOSDetector params from a cvpods LLA/FCOS/ATSS state dict (name -> array). -> (params, LoadReport)."""
  for key in ("backbone", "fpn", "head"):
    if key not in params:
      raise ValueError(f"not a detector param tree: missing {key!r} (top-level keys {sorted(params)})")
  source = {k: _to_numpy(v) for k, v in state_dict.items()}
  variables, report = apply_entries({"params": params}, source, detector_entries(params),
                                    scope=lambda n: n.startswith(("backbone.", "head."))
                                    and not n.endswith("num_batches_tracked"), source_name=source_name,
                                    fmt="cvpods", strict=strict)
  return variables["params"], report


def export_cvpods(params: Mapping) -> dict:
  """The inverse of `convert_cvpods`: cvpods name -> numpy array (PyTorch layouts)."""
  flat = _flatten({"params": params})
  return {e.name: _from_ours(np.asarray(flat[e.path]), e) for e in detector_entries(params)}


def load_cvpods(params: Mapping, path: str, strict: bool = True) -> tuple:
  """A cvpods checkpoint file (model_final.pth; or .pkl/.npz of the same names) into FCOSDetector params."""
  source, _ = read_weights(path)
  return convert_cvpods(params, source, source_name=path, strict=strict)


def load_msra_caffe(params: Mapping, path: str, bn_eps: float = 1e-5, strict: bool = True) -> tuple:
  """MSRA caffe ResNet-50/101 `.pkl` (Caffe2 blob names) into a caffe-layout ResNet (or detector backbone)."""
  source, _ = read_weights(path)
  source = {k: v for k, v in source.items() if not k.endswith("_momentum")}  # solver state, as detectron2 drops
  return load_resnet(params, source, "c2", source_name=path, bn_eps=bn_eps, strict=strict)


def load_torchvision(params: Mapping, path: str, strict: bool = True) -> tuple:
  """A torchvision ResNet state dict (.pth) into a torchvision-layout ResNet (or detector backbone)."""
  source, _ = read_weights(path)
  return load_resnet(params, source, "torchvision", source_name=path, strict=strict)


def load_keras(variables_or_params: Mapping, path: str, strict: bool = True) -> tuple:
  """Keras `.h5` weights by layer name: ResNet-50 (keras_v1 or keras_v2 names) into params, or MobileNet v1
  into variables {'params', 'batch_stats'}."""
  source, names = read_keras_h5(path)
  fmt = detect_format(source)
  if fmt == "keras_mobilenet":
    return load_mobilenet(variables_or_params, source, source_name=path, keras_names=names, strict=strict)
  if fmt not in ("keras_v1", "keras_v2"):
    raise ValueError(f"{path}: Keras file with {fmt} names; expected ResNet-50 or MobileNet v1 layer names")
  return load_resnet(variables_or_params, source, fmt, source_name=path, keras_names=names, strict=strict)


def load_pretrained(params: Mapping, path: str, model_cfg, strict: bool = True) -> tuple:
  """A params tree filled from a weights file -> (params, LoadReport), dispatching on the file's names.
  (`config.model.backbone.pretrained` goes through `load_variables`, which also fills BN statistics and
  checks the pixel convention.)

  A cvpods detector checkpoint fills backbone, FPN and head; any other format fills the backbone only.
  The format must match `model.backbone.layout` (stride placement is invisible in shapes) and the model
  must use FrozenBN (the files carry BN statistics). MobileNet weights need the BN statistics too: use
  `load_variables`.
  """
  variables, report = load_variables({"params": params}, path, model_cfg, strict=strict)
  return variables["params"], report


def backbone_kind(model_cfg) -> str:
  """'resnet' or 'mobilenet' (config.model.backbone.name; the FCOS-family configs have no name: ResNet)."""
  kind = model_cfg.backbone.get("name", "resnet")
  if kind not in ("resnet", "mobilenet"):
    raise ValueError(f"config.model.backbone.name={kind!r}: expected 'resnet' or 'mobilenet'")
  return kind


def load_variables(variables: Mapping, path: str, model_cfg, strict: bool = True, data_cfg=None) -> tuple:
  """Weights file -> (variables {'params', ...}, LoadReport), for any model of the suite.

  cvpods LLA/FCOS/ATSS checkpoints fill a whole FCOS-family detector; MSRA caffe, detectron2,
  torchvision and Keras ResNet files fill a ResNet backbone (bare, or under 'backbone' of a detector or
  ALFNet); Keras MobileNet v1 files fill a MobileNet backbone, BN statistics included ('batch_stats').
  With `data_cfg` (config.data) the pixel convention is checked first (check_pixel_convention).
  """
  source, names = read_weights(path)
  if data_cfg is not None:
    check_pixel_convention(data_cfg, detect_format(source), _layout(model_cfg), path)
  return _load_source(variables, source, names, path, model_cfg, strict)


def _layout(model_cfg):
  return model_cfg.backbone.get("layout", None) if backbone_kind(model_cfg) == "resnet" else None


def _load_source(variables, source, names, path, model_cfg, strict):
  """load_variables on a file already read (read_weights -> source, names)."""
  source = {k: v for k, v in source.items() if not k.endswith("_momentum")}  # solver state, as detectron2 drops
  fmt = detect_format(source)
  b = model_cfg.backbone
  kind = backbone_kind(model_cfg)
  if fmt == "keras_mobilenet":
    if kind != "mobilenet":
      raise ValueError(f"{path}: MobileNet v1 weights, but config.model.backbone is a {kind}")
    return load_mobilenet(variables, source, source_name=path, keras_names=names, strict=strict)
  if kind != "resnet":
    raise ValueError(f"{path}: {fmt} (ResNet) weights, but config.model.backbone.name={kind!r}")
  if b.layout not in FORMAT_LAYOUTS[fmt]:
    raise ValueError(f"{path}: {fmt} weights need model.backbone.layout in {FORMAT_LAYOUTS[fmt]}, got {b.layout!r}")
  if b.norm != "frozen_bn":
    raise ValueError(f"{path}: pretrained BN weights need model.backbone.norm='frozen_bn', got {b.norm!r}")
  params = variables["params"]
  if fmt == "cvpods":
    params, report = convert_cvpods(params, source, source_name=path, strict=strict)
    return {**variables, "params": params}, report
  eps = b.get("bn_eps", None) or resnet_lib.LAYOUTS[b.layout]["bn_eps"]
  if fmt == "keras_v2" and (eps != 1.001e-5 or b.get("stem_pool", None) != "symmetric"):
    raise ValueError(f"{path}: keras.applications ResNet50 weights were trained with BN eps 1.001e-5 and a "
                     "symmetric stem pool; set model.backbone.bn_eps=1.001e-5 and model.backbone.stem_pool='symmetric'")
  params, report = load_resnet(params, source, fmt, source_name=path, bn_eps=eps, keras_names=names or None,
                               strict=strict)
  return {**variables, "params": params}, report


# ------------------------------------------------------------------------------------ pixel conventions


def format_pixel_conventions(fmt: str, layout: str | None = None) -> tuple:
  """The pixel conventions (PIXEL_CONVENTIONS keys, preferred first) that weights of format `fmt` accept.

  detectron2 / cvpods names carry no hint of their origin: caffe layout -> MSRA caffe pixels,
  torchvision layout -> torchvision pixels. Keras MobileNet v1 was trained on 'tf' pixels (x / 127.5 - 1)
  but ALFNet's released code feeds it caffe-style BGR minus mean (alfnet.md §1.2): both are accepted.
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


# ---------------------------------------------------------------------------------------- --mode=convert


def convert_command(config, workdir: str):
  """--mode=convert: `config.convert.source` -> a checkpoint of the method's train state in `workdir`.

  Builds the initial train state (lla_jax.train.create_train_state), checks the pixel convention of the
  weights against config.data (config.convert.check_pixels), loads the file (cvpods checkpoints fill
  the whole detector; the other formats the backbone), prints the loaded / missing / unused report,
  writes it to workdir/convert_report.json and saves the state as checkpoint `config.convert.step` so
  that `--mode=eval` with the same config evaluates it. Refuses a workdir that holds checkpoints
  already (a later step would shadow the converted one). Returns the LoadReport.
  """
  from jax.experimental import multihost_utils

  from lla_jax import checkpointing, sharding, train, writers
  from lla_jax.methods import get_method

  cv = config.get("convert", None)
  if cv is None or not cv.get("source", None):
    raise ValueError("--mode=convert needs --config.convert.source=FILE (.pkl, .pth, .npz or .h5 weights)")
  path = os.path.abspath(os.path.expanduser(cv.source))
  source, names = read_weights(path)
  pixels = None
  if cv.get("check_pixels", True):
    pixels = check_pixel_convention(config.data, detect_format(source), _layout(config.model), path)

  checkpoints = checkpointing.Checkpoints(workdir, config.train.keep_checkpoints)
  if checkpoints.latest_step() is not None:
    raise FileExistsError(f"--mode=convert: {checkpoints.directory} already holds checkpoints "
                          f"{checkpoints.all_steps()}; convert into a fresh --workdir")
  method = get_method(config)
  mesh = sharding.make_mesh()
  state, _, _ = train.create_train_state(config, method, mesh)
  variables = multihost_utils.process_allgather({"params": state.params, **state.model_state}, tiled=True)
  variables, report = _load_source(variables, source, names, path, config.model, cv.get("strict", True))
  placed = sharding.place(variables, jax.tree.map(lambda x: x.sharding, {"params": state.params, **state.model_state}))
  state = state.replace(params=placed.pop("params"), model_state=placed,
                        step=sharding.place(np.asarray(int(cv.get("step", 0)), np.int32), state.step.sharding))
  checkpoints.save(int(cv.get("step", 0)), state)
  checkpoints.close()
  written = {p.split("[")[0] for p in report.loaded + report.defaulted}
  initialised = sorted(p for p in map(_fmt, _flatten(variables)) if p not in written)
  if jax.process_index() == 0:
    writers.write_json_atomic(os.path.join(workdir, "convert_report.json"), {
        "source": path, "format": report.format, "pixel_convention": pixels, "step": int(cv.get("step", 0)),
        "loaded": report.loaded, "missing": report.missing, "defaulted": report.defaulted, "unused": report.unused,
        "initialised": initialised})
    print(format_report(report), flush=True)
    if initialised:
      groups = sorted({"/".join(p.split("/")[:2]) for p in initialised})
      print(f"  kept at initialisation (not in this format): {len(initialised)} variables under "
            f"{', '.join(groups)}", flush=True)
    print(f"Saved checkpoint step {int(cv.get('step', 0))} in {checkpoints.directory}; evaluate it with "
          f"python main.py --mode=eval --config=<same config> --workdir={workdir}", flush=True)
  return report


def format_report(report: LoadReport, max_names: int = 20) -> str:
  """The loaded / missing / defaulted / unused report, listing up to `max_names` names per group."""
  lines = [f"Converted {report.source} ({report.format} names): loaded {len(report.loaded)}, "
           f"missing {len(report.missing)}, defaulted {len(report.defaulted)}, unused {len(report.unused)}"]
  for title, names in (("missing (kept at initialisation)", report.missing),
                       ("defaulted", report.defaulted), ("unused (in the file, no place in the model)", report.unused)):
    if names:
      shown = names[:max_names]
      more = f" ... and {len(names) - max_names} more" if len(names) > max_names else ""
      lines.append(f"  {title}: {', '.join(shown)}{more}")
  return "\n".join(lines)
