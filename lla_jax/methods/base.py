"""The Method interface. A method bundles what differs between detectors: the network, its training loss and its
inference. The train and eval loops see only this interface.

  init(rng, input_shape) -> variables            {'params': ..., optionally 'batch_stats': ...}
  loss(params, model_state, batch, rng) -> (loss, (metrics, new_model_state))
      training loss of a global Batch (lla_jax/types.py); metrics is a dict of scalars
  predict(variables, batch) -> Detections         fixed-size detections in original-image pixels
  trainable(params) -> pytree of bool             False where a parameter is frozen
  decay(params) -> pytree of bool                 True where weight decay applies

A method whose update is not "one gradient step of `loss`" (ALFNet's faithful alternating mode)
also gives `update_init(params) -> opt_state` and
`update(params, opt_state, model_state, batch, rng) -> (params, opt_state, model_state, metrics)`;
the loop then uses these instead of the optax chain.
"""
from __future__ import annotations

import dataclasses
from typing import Callable


@dataclasses.dataclass(frozen=True)
class Method:
  init: Callable
  loss: Callable
  predict: Callable
  trainable: Callable
  decay: Callable
  update_init: Callable | None = None
  update: Callable | None = None
