"""The import engine: `Entry` (one file tensor <-> one of our variables), `apply_entries` (write a
name -> array map into a variables tree along a list of entries, checking every shape) and the
`LoadReport` of what it did (loaded / missing / unused / defaulted)."""
from __future__ import annotations

import dataclasses
from typing import Callable, Mapping

import jax.numpy as jnp
import numpy as np

from lla_jax.errors import BadInputError


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


_KERAS_ROLES = {"kernel": ("kernel", "W", "depthwise_kernel"), "bias": ("bias", "b"), "gamma": ("gamma",),
                "beta": ("beta",), "mean": ("moving_mean", "running_mean"),
                "var": ("moving_variance", "running_variance", "running_std")}


def keras_role(weight_name: str):
  """Role of a stored Keras weight from its name ('conv1_conv/kernel:0', 'bn_conv1_gamma:0', ...), or None."""
  token = weight_name.split("/")[-1].split(":")[0]
  for role, aliases in _KERAS_ROLES.items():
    if token in aliases:
      return role
  for role, aliases in _KERAS_ROLES.items():
    if any(token.endswith("_" + a) for a in aliases):
      return role
  return None


def flatten(tree: Mapping, path: tuple = ()) -> dict:
  out = {}
  for k, v in tree.items():
    if isinstance(v, Mapping):
      out.update(flatten(v, path + (k,)))
    else:
      out[path + (k,)] = v
  return out


def unflatten(flat: Mapping) -> dict:
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


def from_ours(value: np.ndarray, e: Entry) -> np.ndarray:
  if e.kind == "oihw":
    return value.transpose(3, 2, 0, 1)
  if e.kind == "dw":
    return value.transpose(0, 1, 3, 2)
  if e.kind == "index":
    return value[e.index:e.index + 1]
  return value


def path_name(path: tuple, e: Entry | None = None) -> str:
  return "/".join(map(str, path)) + (f"[{e.index}]" if e is not None and e.kind == "index" else "")


def apply_entries(variables: Mapping, source: Mapping, entries: list, *, scope: Callable[[str], bool],
                  source_name: str, fmt: str, keras_names: Mapping | None = None, defaults: Mapping | None = None,
                  strict: bool = True) -> tuple:
  """Writes source tensors into `variables` (a {collection: tree} dict) along `entries`.

  scope(name) tells which file names belong to what is being imported; `defaults` maps our paths to values
  used when the file lacks them. Raises ValueError (strict) listing shape mismatches, missing paths and
  unused in-scope names. Returns (new variables, LoadReport).
  """
  flat = flatten(variables)
  new = dict(flat)
  report = LoadReport(source_name, fmt)
  defaults = defaults or {}
  errors, used = [], set()
  for e in entries:
    if e.path not in flat:
      raise KeyError(f"internal: {path_name(e.path)} is not a variable of the model")
    if e.name not in source:
      if e.path in defaults:
        new[e.path] = jnp.asarray(defaults[e.path], flat[e.path].dtype)
        report.defaulted.append(path_name(e.path))
      else:
        report.missing.append(f"{path_name(e.path, e)} (expected {e.name})")
      continue
    used.add(e.name)
    value = np.asarray(source[e.name])
    if keras_names is not None and e.role is not None:
      stored = keras_role(keras_names.get(e.name, ""))
      if stored is not None and stored != e.role:
        errors.append(f"{e.name} is {keras_names[e.name]!r}, expected a {e.role} for {path_name(e.path)}")
        continue
    try:
      converted = _to_ours(value, e, new[e.path])
    except _ShapeError:
      converted = None
    target = flat[e.path]
    if converted is None or tuple(converted.shape) != tuple(target.shape):
      errors.append(f"{e.name} {tuple(value.shape)} -> {path_name(e.path, e)} {tuple(target.shape)}")
      continue
    new[e.path] = jnp.asarray(converted, target.dtype)
    report.loaded.append(path_name(e.path, e))
  unused = sorted(n for n in source if n not in used)
  unexpected = [n for n in unused if scope(n)]
  report.unused = [n for n in unused if not scope(n)]
  if strict and (errors or report.missing or unexpected):
    lines = ([f"shape/name mismatches: {errors}"] if errors else []) + \
            ([f"missing from the file: {report.missing}"] if report.missing else []) + \
            ([f"file names with no place in the model: {unexpected}"] if unexpected else [])
    raise BadInputError(f"{source_name} ({fmt}): " + "; ".join(lines) + "; expected weights of the configured "
                        "model (config.model.backbone depth and layout), or convert.strict=False to load what fits")
  report.unused += unexpected
  return unflatten(new), report


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


def backbone_root(params: Mapping, marker: str, what: str) -> tuple:
  """Path of the backbone subtree: the params themselves or params['backbone']."""
  if marker in params:
    return ()
  if "backbone" in params and marker in params["backbone"]:
    return ("backbone",)
  raise ValueError(f"cannot find a {what} in the param tree (top-level keys {sorted(params)})")


def subtree(tree, path):
  for k in path:
    tree = tree[k]
  return tree
