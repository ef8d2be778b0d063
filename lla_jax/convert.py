"""--mode=convert: a released or pretrained weights file into a checkpoint that --mode=eval restores."""
from __future__ import annotations

import os

import jax
import numpy as np
from jax.experimental import multihost_utils

from lla_jax import checkpointing, sharding, train_state, weights, writers
from lla_jax.errors import BadInputError
from lla_jax.methods import get_method
from lla_jax.models import backbones
from lla_jax.weights import engine


def convert(config, workdir: str):
  """--mode=convert: `config.convert.source` -> a checkpoint of the method's train state in `workdir`.

  Builds the initial train state (lla_jax/train_state.py), checks the pixel convention of the
  weights against config.data (config.convert.check_pixels), loads the file (cvpods checkpoints fill
  the whole detector; the other formats the backbone), prints the loaded / missing / unused report,
  writes it to workdir/convert_report.json and saves the state as checkpoint `config.convert.step` so
  that `--mode=eval` with the same config evaluates it. Refuses a workdir that holds checkpoints
  already (a later step would shadow the converted one). Returns the LoadReport.
  """
  cv = config.get("convert", None)
  if cv is None or not cv.get("source", None):
    raise BadInputError("--mode=convert needs --config.convert.source=FILE (.pkl, .pth, .npz or .h5 weights)")
  path = os.path.abspath(os.path.expanduser(cv.source))
  source, names = weights.read_weights(path)
  pixels = None
  # The file's model before its pixels: a MobileNet file for a ResNet config is the wrong file, not wrong pixels.
  fmt = weights.check_backbone(weights.detect_format(source, path), config.model.backbone, path)
  if cv.get("check_pixels", True):
    pixels = weights.check_pixel_convention(config.data, fmt, backbones.resnet_layout(config.model.backbone), path)

  checkpoints = checkpointing.Checkpoints(workdir, config.train.keep_checkpoints)
  if checkpoints.latest_step() is not None:
    raise FileExistsError(f"--mode=convert: {checkpoints.directory} already holds checkpoints "
                          f"{checkpoints.all_steps()}; convert into a fresh --workdir")
  method = get_method(config)
  mesh = sharding.make_mesh()
  state, _, _ = train_state.create_train_state(config, method, mesh)
  variables = multihost_utils.process_allgather({"params": state.params, **state.model_state}, tiled=True)
  variables, report = weights.load_source(variables, source, names, path, config.model, cv.get("strict", True))
  placed = sharding.place(variables, jax.tree.map(lambda x: x.sharding, {"params": state.params, **state.model_state}))
  state = state.replace(params=placed.pop("params"), model_state=placed,
                        step=sharding.place(np.asarray(int(cv.get("step", 0)), np.int32), state.step.sharding))
  checkpoints.save(int(cv.get("step", 0)), state)
  checkpoints.close()
  written = {p.split("[")[0] for p in report.loaded + report.defaulted}
  initialised = sorted(p for p in map(engine.path_name, engine.flatten(variables)) if p not in written)
  if jax.process_index() == 0:
    writers.write_json_atomic(os.path.join(workdir, "convert_report.json"), {
        "source": path, "format": report.format, "pixel_convention": pixels, "step": int(cv.get("step", 0)),
        "loaded": report.loaded, "missing": report.missing, "defaulted": report.defaulted, "unused": report.unused,
        "initialised": initialised})
    print(weights.format_report(report), flush=True)
    if initialised:
      groups = sorted({"/".join(p.split("/")[:2]) for p in initialised})
      print(f"  kept at initialisation (not in this format): {len(initialised)} variables under "
            f"{', '.join(groups)}", flush=True)
    print(f"Saved checkpoint step {int(cv.get('step', 0))} in {checkpoints.directory}; evaluate it with "
          f"python main.py --mode=eval --config=<same config> --workdir={workdir}", flush=True)
  return report
