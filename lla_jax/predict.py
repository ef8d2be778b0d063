"""--mode=predict: detections drawn on every image of a folder, from a checkpoint of the workdir or, with
--exported=FILE, from an artifact of --mode=export run through lla_jax/serving.py."""
from __future__ import annotations

import os

import jax
import numpy as np
from PIL import Image

from data_pipelines import transforms
from lla_jax import serving, sharding, visualize
from lla_jax.evaluation import odgt
from lla_jax.image_folder import image_files
from lla_jax.methods import get_method
from lla_jax.train_state import restore_train_state

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def predict_folder(config, workdir: str, images: str, step=None, score_thresh: float = 0.3, exported=None):
  """Writes workdir/predictions/<name>.png (boxes with score >= score_thresh) and detections.odgt; with
  `exported` (a --mode=export artifact) the detections come from it, not from a checkpoint."""
  if not images or not os.path.isdir(images):
    raise FileNotFoundError(f"--mode=predict needs --images=FOLDER of {'/'.join(IMAGE_SUFFIXES)} files; got {images!r}")
  files = image_files(images, IMAGE_SUFFIXES)   # every image decoded once here: a bad file stops before the restore
  if not files:
    raise FileNotFoundError(f"--images={images}: no {'/'.join(IMAGE_SUFFIXES)} files in it")
  if exported:
    return predict_exported(config, workdir, images, files, exported, step, score_thresh)
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


def predict_exported(config, workdir: str, images: str, files, exported: str, step, score_thresh: float):
  """predict_folder's outputs from an exported detector (lla_jax/serving.py), config.test.batch_size
  images per call; the artifact's own contract (detector.json) decides the resize and input size."""
  if step is not None:
    raise ValueError(f"--step={step} picks a checkpoint; --exported={exported} holds its own weights (drop --step)")
  if not os.path.isfile(exported):
    raise FileNotFoundError(f"--exported={exported}: no such file; write one with --mode=export "
                            f"(it goes to WORKDIR/export/detector.jax)")
  artifact, contract = serving.load(exported)
  out_dir = os.path.join(workdir, "predictions")
  os.makedirs(out_dir, exist_ok=True)
  lines = []
  for start in range(0, len(files), config.test.batch_size):
    chunk = files[start:start + config.test.batch_size]
    originals = [np.asarray(Image.open(os.path.join(images, f)).convert("RGB")) for f in chunk]
    dets = serving.detect(artifact, contract, originals)
    for row, (name, image) in enumerate(zip(chunk, originals)):
      boxes, scores = dets["boxes"][row][dets["valid"][row]], dets["scores"][row][dets["valid"][row]]
      keep = scores >= score_thresh
      visualize.draw_boxes(image, boxes[keep], scores[keep], path=os.path.join(out_dir, os.path.splitext(name)[0] + ".png"))
      lines.append(odgt.detection_line(os.path.splitext(name)[0], image.shape[1], image.shape[0], boxes, scores,
                                       rounded=False))
  odgt.write(os.path.join(out_dir, "detections.odgt"), lines)
  print(f"Drew detections of {exported} (score >= {score_thresh}) on {len(files)} images into {out_dir}", flush=True)
  return out_dir
