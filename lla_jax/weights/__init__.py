"""Importers for pretrained backbones and released checkpoints.

Every importer maps *our* parameter tree onto the names of one upstream format, checks every shape, and
returns the updated tree with a `LoadReport` (loaded / missing / unused / defaulted keys). It raises, listing
the offending keys, when a shape differs, when a parameter of the imported scope is absent from the file, or
when the file holds a name of that scope that our model has no place for (a depth or layout mismatch).

  files.py          reading .pkl / .pth / .pt / .npz / .h5 into {name: array}; which naming a file uses
  engine.py         Entry, apply_entries, LoadReport: writing named arrays into a variables tree
  resnet.py         ResNet names: c2 (MSRA caffe), detectron2, torchvision, keras_v1, keras_v2
  mobilenet.py      keras_mobilenet names (MobileNet v1, BN statistics included)
  fcos_detector.py  cvpods names of a whole LLA / FCOS / ATSS detector (and the export back)
  faster_rcnn.py    cvpods names of a whole Faster R-CNN (and the export back)
  pixels.py         the pixel convention each format expects, checked against config.data

Entry points (here): `load_variables` (any file into any model of the suite, by the file's names),
`load_pretrained` (params only), `load_source` (a file already read); `lla_jax/convert.py` turns a file
into a checkpoint (--mode=convert). torch is imported lazily and only for `.pth`/`.pt` files.
"""
from __future__ import annotations

from typing import Mapping

from lla_jax.errors import BadInputError
from lla_jax.models import backbones
from lla_jax.models import resnet as resnet_lib
from lla_jax.weights.engine import Entry, LoadReport, apply_entries, format_report
from lla_jax.weights.fcos_detector import (convert_cvpods, detector_entries, export_cvpods, fpn_entries, head_entries,
                                           load_cvpods)
from lla_jax.weights.faster_rcnn import convert_cvpods_rcnn, export_cvpods_rcnn, is_rcnn_tree, load_cvpods_rcnn
from lla_jax.weights.files import detect_format, read_keras_h5, read_weights
from lla_jax.weights.mobilenet import load_mobilenet, mobilenet_entries
from lla_jax.weights.pixels import (PIXEL_CONVENTIONS, check_pixel_convention, format_pixel_conventions, override_flags,
                                    pixel_convention)
from lla_jax.weights.resnet import FORMAT_LAYOUTS, load_msra_caffe, load_resnet, load_torchvision, resnet_entries


def load_keras(variables_or_params: Mapping, path: str, strict: bool = True) -> tuple:
  """Keras `.h5` weights by layer name: ResNet-50 (keras_v1 or keras_v2 names) into params, or MobileNet v1
  into variables {'params', 'batch_stats'}."""
  source, names = read_keras_h5(path)
  fmt = detect_format(source, path)
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


def load_variables(variables: Mapping, path: str, model_cfg, strict: bool = True, data_cfg=None) -> tuple:
  """Weights file -> (variables {'params', ...}, LoadReport), for any model of the suite.

  cvpods LLA/FCOS/ATSS checkpoints fill a whole FCOS-family detector, cvpods Faster R-CNN ones a
  FasterRCNN; MSRA caffe, detectron2, torchvision and Keras ResNet files fill a ResNet backbone (bare,
  or under 'backbone' of a detector or ALFNet); Keras MobileNet v1 files fill a MobileNet backbone, BN
  statistics included ('batch_stats').
  With `data_cfg` (config.data) the pixel convention is checked first (check_pixel_convention).
  """
  source, names = read_weights(path)
  if data_cfg is not None:
    fmt = check_backbone(detect_format(source, path), model_cfg.backbone, path)
    check_pixel_convention(data_cfg, fmt, backbones.resnet_layout(model_cfg.backbone), path)
  return load_source(variables, source, names, path, model_cfg, strict)


def check_backbone(fmt: str, backbone_cfg, path: str) -> str:
  """Raises BadInputError when weights of naming scheme `fmt` cannot fill `config.model.backbone` (another
  backbone family, a ResNet layout the format does not use, or a norm without BN statistics); returns fmt."""
  kind = backbones.backbone_kind(backbone_cfg)
  if fmt == "keras_mobilenet":
    if kind != "mobilenet":
      raise BadInputError(f"{path}: MobileNet v1 weights, but config.model.backbone is a {kind}; expected a {kind} "
                          "weights file (or a config with model.backbone.name='mobilenet')")
    return fmt
  if kind != "resnet":
    raise BadInputError(f"{path}: {fmt} (ResNet) weights, but config.model.backbone.name={kind!r}; expected "
                        f"{kind} weights")
  if backbone_cfg.layout not in FORMAT_LAYOUTS[fmt]:
    raise BadInputError(f"{path}: {fmt} weights need model.backbone.layout in {FORMAT_LAYOUTS[fmt]}, got "
                        f"{backbone_cfg.layout!r}")
  if backbone_cfg.norm != "frozen_bn":
    raise BadInputError(f"{path}: pretrained BN weights need model.backbone.norm='frozen_bn', got "
                        f"{backbone_cfg.norm!r}")
  return fmt


def load_source(variables, source, names, path, model_cfg, strict):
  """load_variables on a file already read (read_weights -> source, names); no pixel check."""
  source = {k: v for k, v in source.items() if not k.endswith("_momentum")}  # solver state, as detectron2 drops
  b = model_cfg.backbone
  fmt = check_backbone(detect_format(source, path), b, path)
  if fmt == "keras_mobilenet":
    return load_mobilenet(variables, source, source_name=path, keras_names=names, strict=strict)
  params = variables["params"]
  if fmt == "cvpods":
    convert = convert_cvpods_rcnn if is_rcnn_tree(params) else convert_cvpods
    params, report = convert(params, source, source_name=path, strict=strict)
    return {**variables, "params": params}, report
  eps = b.get("bn_eps", None) or resnet_lib.LAYOUTS[b.layout]["bn_eps"]
  if fmt == "keras_v2" and (eps != 1.001e-5 or b.get("stem_pool", None) != "symmetric"):
    raise ValueError(f"{path}: keras.applications ResNet50 weights were trained with BN eps 1.001e-5 and a "
                     "symmetric stem pool; set model.backbone.bn_eps=1.001e-5 and model.backbone.stem_pool='symmetric'")
  params, report = load_resnet(params, source, fmt, source_name=path, bn_eps=eps, keras_names=names or None,
                               strict=strict)
  return {**variables, "params": params}, report
