"""ResNet name tables (written from the upstream model definitions) and importers: MSRA caffe
(Caffe2 blob names, detectron2 ImageNetPretrained/MSRA/R-50.pkl), detectron2 / cvpods backbone names,
torchvision ResNet, Keras-v1 ResNet-50 (fchollet deep-learning-models, ALFNet) and keras.applications
ResNet50, onto the parameter tree of lla_jax/models/resnet.py.

  c2           conv1_w, res_conv1_bn_{s,b}, res2_0_branch2a_w, res2_0_branch2a_bn_{s,b[,rm,riv]},
               res2_0_branch1_w, ... OIHW. Without _rm/_riv the FrozenBN statistics are set to the
               identity (mean 0, var 1 - eps), as detectron2 leaves them.
  detectron2   stem.conv1.weight, stem.conv1.norm.running_var, res2.0.conv1.weight,
               res2.0.shortcut.norm.weight, ..., bare or under a prefix such as 'backbone.bottom_up.'.
  torchvision  conv1, bn1, layer{1-4}.{b}.conv{n} / bn{n} / downsample.{0,1}.
  keras_v1     conv1, bn_conv1, res2a_branch2a, bn2a_branch2a, ..., res5c_branch1.
  keras_v2     conv1_conv, conv1_bn, conv2_block1_{0,1,2,3}_{conv,bn}, ...
"""
from __future__ import annotations

import re
import string
from typing import Mapping

import numpy as np

from lla_jax.models import resnet as resnet_lib
from lla_jax.weights.engine import Entry, apply_entries, backbone_root, subtree
from lla_jax.weights.files import read_weights

# Which ResNet layout each weight format was trained with (the stride position is invisible in shapes).
FORMAT_LAYOUTS = {"c2": ("caffe",), "detectron2": ("caffe", "torchvision"), "cvpods": ("caffe", "torchvision"),
                  "torchvision": ("torchvision",), "keras_v1": ("keras",), "keras_v2": ("keras",)}


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


TORCH_LEAVES = {"conv": {"kernel": (".weight", "oihw"), "bias": (".bias", "keep")},
                 "norm": {"scale": (".weight", "keep"), "bias": (".bias", "keep"), "mean": (".running_mean", "keep"),
                          "var": (".running_var", "keep")}}


_C2_LEAVES = {"conv": {"kernel": ("_w", "oihw"), "bias": ("_b", "keep")},
              "norm": {"scale": ("_s", "keep"), "bias": ("_b", "keep"), "mean": ("_rm", "keep"),
                       "var": ("_riv", "keep")}}


_KERAS_LEAVES = {"conv": {"kernel": ("/0", "keep", "kernel"), "bias": ("/1", "keep", "bias")},
                 "norm": {"scale": ("/0", "keep", "gamma"), "bias": ("/1", "keep", "beta"),
                          "mean": ("/2", "keep", "mean"), "var": ("/3", "keep", "var")}}


_RESNET_SCHEMES = {"detectron2": (_d2_module, TORCH_LEAVES), "c2": (_c2_module, _C2_LEAVES),
                   "torchvision": (_tv_module, TORCH_LEAVES), "keras_v1": (_keras1_module, _KERAS_LEAVES),
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


def load_resnet(params: Mapping, source: Mapping, fmt: str, *, source_name: str = "<dict>", bn_eps: float = 1e-5,
                keras_names: Mapping | None = None, strict: bool = True) -> tuple:
  """A ResNet backbone (params of a ResNet or of a detector) from a name -> array map in `fmt`
  (c2 | detectron2 | torchvision | keras_v1 | keras_v2). -> (params, LoadReport)."""
  root = backbone_root(params, "stem", "ResNet")
  if fmt not in _RESNET_SCHEMES:
    raise ValueError(f"{source_name}: format {fmt!r} is not a ResNet naming ({sorted(_RESNET_SCHEMES)})")
  prefix = ""
  if fmt == "detectron2":
    stems = [n for n in source if n.endswith("stem.conv1.weight")]
    if len(stems) != 1:
      raise ValueError(f"{source_name}: expected one '...stem.conv1.weight' in detectron2 names, found {stems}")
    prefix = stems[0][:-len("stem.conv1.weight")]
  entries = resnet_entries(subtree(params, root), fmt, prefix, ("params",) + root)
  defaults = {}
  if fmt == "c2" and not any(n.endswith("_bn_rm") for n in source):
    # MSRA caffe ships only scale and bias: FrozenBN keeps detectron2's identity statistics.
    for e in entries:
      if e.path[-1] in ("mean", "var"):
        defaults[e.path] = np.full(subtree(params, e.path[1:]).shape, 0.0 if e.path[-1] == "mean" else 1.0 - bn_eps)
  scope_re = re.compile(re.escape(prefix) + _RESNET_SCOPE[fmt])
  scope = lambda n: bool(scope_re.match(n)) and not n.endswith("num_batches_tracked")
  variables, report = apply_entries({"params": params}, source, entries, scope=scope,
                                    source_name=source_name, fmt=fmt, keras_names=keras_names, defaults=defaults,
                                    strict=strict)
  return variables["params"], report


def load_msra_caffe(params: Mapping, path: str, bn_eps: float = 1e-5, strict: bool = True) -> tuple:
  """MSRA caffe ResNet-50/101 `.pkl` (Caffe2 blob names) into a caffe-layout ResNet (or detector backbone)."""
  source, _ = read_weights(path)
  source = {k: v for k, v in source.items() if not k.endswith("_momentum")}  # solver state, as detectron2 drops
  return load_resnet(params, source, "c2", source_name=path, bn_eps=bn_eps, strict=strict)


def load_torchvision(params: Mapping, path: str, strict: bool = True) -> tuple:
  """A torchvision ResNet state dict (.pth) into a torchvision-layout ResNet (or detector backbone)."""
  source, _ = read_weights(path)
  return load_resnet(params, source, "torchvision", source_name=path, strict=strict)
