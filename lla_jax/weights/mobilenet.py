"""MobileNet v1 name table (keras.applications MobileNet `.h5`: conv1, conv1_bn, conv_dw_{i}[_bn],
conv_pw_{i}[_bn]; our module names are the Keras layer names) and its importer, BN statistics included."""
from __future__ import annotations

import re
from typing import Mapping

from lla_jax.weights.engine import Entry, apply_entries, backbone_root, subtree


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


def load_mobilenet(variables: Mapping, source: Mapping, *, source_name: str = "<dict>",
                   keras_names: Mapping | None = None, strict: bool = True) -> tuple:
  """MobileNet v1 variables ({'params', 'batch_stats'}, bare or under 'backbone') from Keras layer names."""
  if "batch_stats" not in variables:
    raise ValueError("MobileNet import needs the full variables {'params', 'batch_stats'} (BN statistics)")
  root = backbone_root(variables["params"], "conv_dw_1", "MobileNet v1")
  entries = mobilenet_entries(subtree(variables["params"], root), ("params",) + root)
  scope_re = re.compile(r"conv(1|_dw_\d+|_pw_\d+)(_bn)?/")
  return apply_entries(variables, source, entries, scope=lambda n: bool(scope_re.match(n)), source_name=source_name,
                       fmt="keras_mobilenet", keras_names=keras_names, strict=strict)
