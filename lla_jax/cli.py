"""What main.py dispatches to: override checking, the resolved config in the workdir, and modes."""
from __future__ import annotations

import functools
import importlib.util
import json
import os
import sys

import ml_collections

from lla_jax import atomic
from lla_jax.errors import BadInputError


class ConfigOverrideError(BadInputError):
  pass


def load_config_file(spec: str) -> ml_collections.ConfigDict:
  """Loads `path.py[:arg]` the way ml_collections' config flag does: get_config([arg])."""
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"--config={spec}: no such config file {os.path.abspath(path)}")
  module_spec = importlib.util.spec_from_file_location("_lla_config", path)
  module = importlib.util.module_from_spec(module_spec)
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(path))))
  try:
    module_spec.loader.exec_module(module)
  finally:
    sys.path.pop(0)
  return module.get_config(arg) if arg else module.get_config()


def check_overrides(argv) -> None:
  """Raises ConfigOverrideError for a --config file that does not load, and for any `--config.a.b=VALUE` that
  names no field (listing the valid keys) or whose VALUE does not parse as the field's int / float type;
  FileNotFoundError for a missing --config file."""
  spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
  overrides = [a[len("--config."):].partition("=") for a in argv if a.startswith("--config.")]
  if spec is None:
    return
  try:
    config = load_config_file(spec)
  except FileNotFoundError:
    raise
  except Exception as e:  # noqa: BLE001  (whatever the user's config file raises, named with the file)
    raise ConfigOverrideError(f"--config={spec}: the config file does not load ({type(e).__name__}: {e}); "
                              "expected a Python file defining get_config()") from None
  for key, has_value, value in overrides:
    node, walked = config, []
    for part in key.split("."):
      where = "config" + "".join("." + w for w in walked)
      if not isinstance(node, ml_collections.ConfigDict):
        raise ConfigOverrideError(f"--config.{key}: {where} is a value ({node!r}), not a section; expected "
                                  f"--config.{where[len('config.'):]}=VALUE")
      if part not in node:
        valid = ", ".join(sorted(node.keys()))
        raise ConfigOverrideError(f"--config.{key}: {where} has no field {part!r}. Valid keys of {where}: {valid}")
      node = node[part]
      walked.append(part)
    if has_value:
      _check_value_type(key, node, value)


def _check_value_type(key: str, current, value: str) -> None:
  """`--config.key=value` must parse as the type of the field's current value (int and float fields)."""
  kind = {int: ("an integer", int), float: ("a number", float)}.get(type(current))
  if kind is None:
    return
  try:
    kind[1](value)
  except ValueError:
    raise ConfigOverrideError(f"--config.{key}={value}: config.{key} takes {kind[0]} (it is {current!r} now), "
                              f"got {value!r}") from None


def save_config(config, workdir: str) -> None:
  """The resolved config, as the run used it, into workdir/config.json (atomic)."""
  atomic.write_json(os.path.join(workdir, "config.json"), json.loads(config.to_json_best_effort()))


def train_and_evaluate(config, workdir: str):
  """The training loop with the checkpoint evaluation of lla_jax/evaluate.py as its periodic and final
  evaluation. Returns the final evaluation's metrics (process 0)."""
  from lla_jax import evaluate, train   # see run(): nothing that may touch a device before distributed init
  return train.train_and_evaluate(config, workdir, evaluate_fn=functools.partial(evaluate.evaluate, config, workdir))


def run(config, workdir: str, mode: str, step=None, images=None, exported=None, config_name=None):
  """Runs `mode` (train | eval | predict | convert | export). The mode modules are imported here, after
  main.py has initialised the distributed runtime, which must precede anything that touches a device.
  exported: --mode=predict from this artifact of --mode=export; config_name: the --config file (export)."""
  import jax
  from absl import logging
  logging.set_verbosity(logging.WARNING)
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:   # one banner per job, not one per host
    print(f"lla-jax {mode}: {jax.device_count()} {jax.default_backend()} device(s), workdir {os.path.abspath(workdir)}",
          flush=True)
  if mode == "train":
    save_config(config, workdir)
    return train_and_evaluate(config, workdir)
  if mode == "eval":
    from lla_jax import evaluate
    return evaluate.evaluate(config, workdir, step=step)
  if mode == "predict":
    from lla_jax import predict
    return predict.predict_folder(config, workdir, images, step=step, exported=exported)
  if mode == "convert":
    from lla_jax import convert
    return convert.convert(config, workdir)
  if mode == "export":
    from lla_jax import export
    return export.export_detector(config, workdir, step=step, config_name=config_name)
  raise ValueError(mode)
