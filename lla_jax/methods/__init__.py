"""Methods by name: `config.method` picks the `build(config) -> Method` registered here (the Method
interface is lla_jax/methods/base.py). A new detector is a new module with a `build` and one
`register` line below.
"""
from __future__ import annotations

from typing import Callable

from lla_jax.methods import alfnet, faster_rcnn, fcos_family
from lla_jax.methods.base import Method
from lla_jax.registry import Registry

_BUILDERS = Registry("config.method")


def register(name: str, build: Callable) -> None:
  """Makes `config.method = name` build its Method with `build(config)`."""
  _BUILDERS.register(name, build)


def names() -> tuple:
  """The registered method names, sorted."""
  return _BUILDERS.names()


def get_method(config) -> Method:
  """Builds the Method named by `config.method`."""
  return _BUILDERS.get(config.method)(config)


register("fcos_family", fcos_family.build)   # FCOS, ATSS, LLA.FCOS
register("alfnet", alfnet.build)             # ALFNet
register("faster_rcnn", faster_rcnn.build)   # Faster R-CNN (the two-stage baseline)
