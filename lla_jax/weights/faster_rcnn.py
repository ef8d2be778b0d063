"""cvpods names of a whole Faster R-CNN (model_final.pth 'model' of the playground
detection/crowdhuman/rcnn/faster_rcnn.res50.fpn.crowdhuman.800size.1x; cvpods cvpods/modeling/meta_arch/rcnn.py):
the detectron2 backbone under 'backbone.bottom_up.', backbone.fpn_lateral{2..5} / fpn_output{2..5} (the
max-pooled P6 has no parameters), proposal_generator.rpn_head.{conv, objectness_logits, anchor_deltas}
(rpn.py StandardRPNHead), roi_heads.box_head.fc{1,2} (box_head.py FastRCNNConvFCHead) and
roi_heads.box_predictor.{cls_score, bbox_pred} (fast_rcnn.py FastRCNNOutputLayers); onto
lla_jax/models/faster_rcnn.py's tree.

torch Linear weights are (out, in), ours (in, out): they are transposed on the way in and out. fc1 reads
the RoI feature flattened channel-major (C, S, S) in both, because lla_jax/models/roi_heads.py flattens
the NHWC pooled features after moving channels first, so a plain transpose is the whole conversion.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from lla_jax.weights.engine import Entry, apply_entries, flatten, from_ours
from lla_jax.weights.fcos_detector import fpn_entries
from lla_jax.weights.files import read_weights, to_numpy
from lla_jax.weights.resnet import TORCH_LEAVES, resnet_entries

RPN_PREFIX = "proposal_generator.rpn_head."
BOX_HEAD = {"fc1": "roi_heads.box_head.fc1", "fc2": "roi_heads.box_head.fc2",
            "cls_score": "roi_heads.box_predictor.cls_score", "bbox_pred": "roi_heads.box_predictor.bbox_pred"}
SCOPES = ("backbone.", "proposal_generator.", "roi_heads.")


def is_rcnn_tree(params: Mapping) -> bool:
  """True for a lla_jax/models/faster_rcnn.py param tree."""
  return "rpn" in params and "head" in params and "fc1" in params["head"]


def rcnn_entries(params: Mapping) -> list:
  """All cvpods names of a FasterRCNN param tree: backbone, FPN, RPN head, box head."""
  out = (resnet_entries(params["backbone"], "detectron2", "backbone.bottom_up.", ("params", "backbone"))
         + fpn_entries(params["fpn"]))
  for mod in params["rpn"]:
    for leaf in params["rpn"][mod]:
      suffix, kind = TORCH_LEAVES["conv"][leaf]
      out.append(Entry(RPN_PREFIX + mod + suffix, ("params", "rpn", mod, leaf), kind))
  for mod in params["head"]:
    if mod not in BOX_HEAD:
      raise ValueError(f"box head module {mod!r} has no cvpods name (known: {sorted(BOX_HEAD)})")
    out += [Entry(f"{BOX_HEAD[mod]}.{leaf.replace('kernel', 'weight')}", ("params", "head", mod, leaf))
            for leaf in params["head"][mod]]
  return out


def _linear_weight(name: str) -> bool:
  return name.startswith("roi_heads.") and name.endswith(".weight")


def convert_cvpods_rcnn(params: Mapping, state_dict: Mapping, *, source_name: str = "<dict>",
                        strict: bool = True) -> tuple:
  """FasterRCNN params from a cvpods Faster R-CNN state dict (name -> array). -> (params, LoadReport)."""
  if not is_rcnn_tree(params):
    raise ValueError(f"{source_name}: a cvpods Faster R-CNN checkpoint needs config.method='faster_rcnn' "
                     f"(the param tree has top-level keys {sorted(params)})")
  source = {k: to_numpy(v) for k, v in state_dict.items()}
  source = {k: (v.T if _linear_weight(k) and v.ndim == 2 else v) for k, v in source.items()}
  variables, report = apply_entries({"params": params}, source, rcnn_entries(params),
                                    scope=lambda n: n.startswith(SCOPES) and not n.endswith("num_batches_tracked"),
                                    source_name=source_name, fmt="cvpods", strict=strict)
  return variables["params"], report


def export_cvpods_rcnn(params: Mapping) -> dict:
  """The inverse of `convert_cvpods_rcnn`: cvpods name -> numpy array (PyTorch layouts)."""
  flat = flatten({"params": params})
  out = {e.name: from_ours(np.asarray(flat[e.path]), e) for e in rcnn_entries(params)}
  return {k: (v.T.copy() if _linear_weight(k) and v.ndim == 2 else v) for k, v in out.items()}


def load_cvpods_rcnn(params: Mapping, path: str, strict: bool = True) -> tuple:
  """A cvpods Faster R-CNN checkpoint file (model_final.pth | .pkl | .npz) into FasterRCNN params."""
  source, _ = read_weights(path)
  return convert_cvpods_rcnn(params, source, source_name=path, strict=strict)
