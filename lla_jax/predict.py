"""--mode=predict: detections drawn on every image of a folder, from a checkpoint of the workdir."""
from __future__ import annotations

import os

import jax
import numpy as np
from PIL import Image

from data_pipelines import transforms
from lla_jax import pictures, sharding
from lla_jax.evaluation import odgt
from lla_jax.methods import get_method
from lla_jax.train_state import restore_train_state

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def predict_folder(config, workdir: str, images: str, step=None, score_thresh: float | None = None):
  """Writes workdir/predictions/<name>.png and detections.odgt (every detection). The pictures
  (pictures.draw_predictions) show the detections with score >= score_thresh, None: config.test.draw_score_thresh,
  else the threshold the workdir's last evaluation drew with (pictures.predict_threshold)."""
  if not images or not os.path.isdir(images):
    raise FileNotFoundError(f"--mode=predict needs --images=FOLDER of {'/'.join(IMAGE_SUFFIXES)} files; got {images!r}")
  files = sorted(f for f in os.listdir(images) if f.lower().endswith(IMAGE_SUFFIXES))
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
  threshold = pictures.predict_threshold(config.test.get("draw_score_thresh", None) if score_thresh is None
                                         else score_thresh, workdir)
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
      picture = pictures.draw_predictions(image, boxes, scores, threshold, os.path.splitext(name)[0])
      pictures.save_png(picture, os.path.join(out_dir, os.path.splitext(name)[0] + ".png"))
      lines.append(odgt.detection_line(os.path.splitext(name)[0], image.shape[1], image.shape[0], boxes, scores,
                                       rounded=False))
  odgt.write(os.path.join(out_dir, "detections.odgt"), lines)
  print(f"Drew detections ({threshold.note}) on {len(files)} images into {out_dir}", flush=True)
  return out_dir
