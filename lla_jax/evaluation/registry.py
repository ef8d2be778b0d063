"""Evaluators by name, in the manner of big_vision's `config.evals`: `config.evals` lists which run on
which split, e.g.

  config.evals.citypersons = dict(split="val")              # type defaults to the entry's name
  config.evals.val_crowd = dict(type="crowdhuman", split="val")

An empty `config.evals` runs the data set's own evaluators (data_pipelines/registry.py) on
`data.eval_split`. A new protocol is a module with a `run(EvalInput) -> (metrics, curves)` and a
`table(metrics) -> lines` function (protocols.py shows both) and one `register` line below.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from lla_jax.evaluation import protocols
from lla_jax.registry import Registry


@dataclasses.dataclass(frozen=True)
class Evaluator:
  """run(EvalInput) -> (metrics dict, {curve label: (fppi, miss, MR)}); table(metrics) -> the protocol's
  lines of the printed metric table; boxes: the box types (data.box) it evaluates. metrics holds at least "MR" (the best-checkpoint criterion) and may
  set "AP", "Recall", "JI" (None where undefined), "setups" ({iou: {setup: MR}}) and file paths."""
  name: str
  run: Callable
  table: Callable
  boxes: tuple = ("full",)   # the data.box types run() evaluates (EvalInput.box)


_EVALUATORS = Registry("evaluator")


def register(evaluator: Evaluator) -> Evaluator:
  """Adds `evaluator` under its name (an error when the name is taken)."""
  return _EVALUATORS.register(evaluator.name, evaluator)


def names() -> tuple:
  """The registered evaluator names, sorted."""
  return _EVALUATORS.names()


def get(name: str) -> Evaluator:
  """The evaluator `name`; a ValueError listing the registered ones when there is none."""
  return _EVALUATORS.get(name)


register(Evaluator("crowdhuman", protocols.crowdhuman, protocols.crowdhuman_table, boxes=("full", "visible", "head")))
register(Evaluator("citypersons", protocols.citypersons, protocols.citypersons_table, boxes=("full", "visible")))
register(Evaluator("caltech", protocols.caltech, protocols.caltech_table))
