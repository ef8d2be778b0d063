"""--mode=predict: detections drawn on every image of a folder, from a checkpoint of the workdir."""
from __future__ import annotations

import os

import jax
import numpy as np
from PIL import Image

from data_pipelines import transforms
from lla_jax import sharding, visualize
from lla_jax.evaluation import odgt
from lla_jax.image_folder import image_files
from lla_jax.methods import get_method
from lla_jax.train_state import restore_train_state

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def predict_folder(config, workdir: str, images: str, step=None, score_thresh: float = 0.3):
  """Writes workdir/predictions/<name>.png (boxes with score >= score_thresh) and detections.odgt."""
  if not images or not os.path.isdir(images):
    raise FileNotFoundError(f"--mode=predict needs --images=FOLDER of {'/'.join(IMAGE_SUFFIXES)} files; got {images!r}")
  files = image_files(images, IMAGE_SUFFIXES)   # every image decoded once here: a bad file stops before the restore
  if not files:
    raise FileNotFoundError(f"--images={images}: no {'/'.join(IMAGE_SUFFIXES)} files in it")
  method = get_method(config)
  mesh = sharding.make_mesh()
  state = restore_train_state(config, workdir, method, mesh, step, mode="predict")
  variables = {"params": state.params, **state.model_state}
  predict = jax.jit(method.predict)
  out_dir = os.path.join(workdir, "predictions")
  os.makedirs(out_dir, exist_ok=True)
  data_cfg = config.data.copy_and_resolve_references()
  # Images of any orientation fit a square of the longest resized side.
  side = -(-int(config.data.max_size) // 32) * 32
  data_cfg.unlock().pad_size = (max(side, config.data.pad_size[0]), max(side, config.data.pad_size[1]))
  batch_size = jax.device_count()
  lines = []
  for start in range(0, len(files), batch_size):
    chunk = files[start:start + batch_size]
    originals = [np.asarray(Image.open(os.path.join(images, f)).convert("RGB")) for f in chunk]
    examples = [transforms.preprocess(im, np.zeros((0, 4)), np.zeros((0,)), i, f, data_cfg, flip=False)
                for i, (im, f) in enumerate(zip(originals, chunk))]
    examples += [transforms.padding_example(data_cfg)] * (batch_size - len(examples))
    batch = {k: v for k, v in transforms.stack_examples(examples).items() if k not in transforms.EXTRA_KEYS}
    dets = jax.device_get(predict(variables, sharding.shard_batch(batch, mesh)))
    for row, (name, image) in enumerate(zip(chunk, originals)):
      v = np.asarray(dets.valid[row])
      boxes, scores = np.asarray(dets.boxes[row])[v], np.asarray(dets.scores[row])[v]
      keep = scores >= score_thresh
      visualize.draw_boxes(image, boxes[keep], scores[keep], path=os.path.join(out_dir, os.path.splitext(name)[0] + ".png"))
      lines.append(odgt.detection_line(os.path.splitext(name)[0], image.shape[1], image.shape[0], boxes, scores,
                                       rounded=False))
  odgt.write(os.path.join(out_dir, "detections.odgt"), lines)
  print(f"Drew detections (score >= {score_thresh}) on {len(files)} images into {out_dir}", flush=True)
  return out_dir
