"""cvpods names of a whole LLA / FCOS / ATSS detector (model_final.pth 'model'; cvpods
cvpods/modeling/backbone/fpn.py and the playground's fcos.py): the detectron2 backbone under
'backbone.bottom_up.', backbone.fpn_lateral{l}, backbone.fpn_output{l}, backbone.top_block.p{6,7},
head.{cls,bbox}_subnet.{3i} (conv) / .{3i+1} (GroupNorm), head.cls_score, head.bbox_pred,
head.ious_pred | head.centerness, head.scales.{l}.scale; onto lla_jax/models/detector.py's tree."""
from __future__ import annotations

import re
from typing import Mapping

import numpy as np

from lla_jax.weights.engine import apply_entries, flatten, from_ours, Entry
from lla_jax.weights.files import read_weights, to_numpy
from lla_jax.weights.resnet import TORCH_LEAVES, resnet_entries


def fpn_entries(tree: Mapping, prefix: str = "backbone.", path: tuple = ("params", "fpn")) -> list:
  """cvpods FPN names: fpn_lateral{l}, fpn_output{l}, top_block.p6, top_block.p7."""
  out = []
  for mod in tree:
    m = re.fullmatch(r"(lateral|output)(\d)", mod)
    name = f"fpn_{m.group(1)}{m.group(2)}" if m else f"top_block.{mod}"
    for leaf in tree[mod]:
      suffix, kind = TORCH_LEAVES["conv"][leaf]
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


def detector_entries(params: Mapping) -> list:
  """All cvpods names of an FCOSDetector param tree (backbone, FPN, head)."""
  return (resnet_entries(params["backbone"], "detectron2", "backbone.bottom_up.", ("params", "backbone"))
          + fpn_entries(params["fpn"]) + head_entries(params["head"]))


def convert_cvpods(params: Mapping, state_dict: Mapping, *, source_name: str = "<dict>", strict: bool = True) -> tuple:
  """FCOSDetector params from a cvpods LLA/FCOS/ATSS state dict (name -> array). -> (params, LoadReport)."""
  for key in ("backbone", "fpn", "head"):
    if key not in params:
      raise ValueError(f"not a detector param tree: missing {key!r} (top-level keys {sorted(params)})")
  source = {k: to_numpy(v) for k, v in state_dict.items()}
  variables, report = apply_entries({"params": params}, source, detector_entries(params),
                                    scope=lambda n: n.startswith(("backbone.", "head."))
                                    and not n.endswith("num_batches_tracked"), source_name=source_name,
                                    fmt="cvpods", strict=strict)
  return variables["params"], report


def export_cvpods(params: Mapping) -> dict:
  """The inverse of `convert_cvpods`: cvpods name -> numpy array (PyTorch layouts)."""
  flat = flatten({"params": params})
  return {e.name: from_ours(np.asarray(flat[e.path]), e) for e in detector_entries(params)}


def load_cvpods(params: Mapping, path: str, strict: bool = True) -> tuple:
  """A cvpods checkpoint file (model_final.pth; or .pkl/.npz of the same names) into FCOSDetector params."""
  source, _ = read_weights(path)
  return convert_cvpods(params, source, source_name=path, strict=strict)
