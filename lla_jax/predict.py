"""--mode=predict: detections drawn on every image of a folder, from a checkpoint of the workdir or, with
--exported=FILE, from an artifact of --mode=export run through lla_jax/serving.py."""
from __future__ import annotations

import os

import jax
import numpy as np
from PIL import Image

from data_pipelines import registry as datasets
from data_pipelines import transforms
from lla_jax import pictures, serving, sharding
from lla_jax.evaluate import eval_data_config
from lla_jax.evaluation import odgt
from lla_jax.image_folder import image_files
from lla_jax.methods import get_method
from lla_jax.train_state import restore_train_state

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def predict_data_config(config, sizes):
  """The data config of --mode=predict for images of `sizes` [(h, w)]: the evaluation padding of
  config.test (`eval_data_config`). Under 'fixed' padding (and for ALFNet, whose anchors want its own
  padded sizes) every image is padded to one square of the longest resized side (at least
  data.pad_size), so images of any orientation fit."""
  data_cfg = eval_data_config(config)
  with data_cfg.unlocked():
    if datasets.augment(data_cfg) == "alfnet":
      data_cfg.eval_padding = "fixed"
    if data_cfg.eval_padding == "fixed":
      longest = max([int(config.data.max_size)] + [max(transforms.resized_size(h, w, data_cfg.min_size,
                                                                               data_cfg.max_size)[:2]) for h, w in sizes])
      side = transforms.round_up(longest, 32)
      data_cfg.pad_size = (max(side, config.data.pad_size[0]), max(side, config.data.pad_size[1]))
  return data_cfg


def predict_folder(config, workdir: str, images: str, step=None, score_thresh: float | None = None, exported=None):
  """Writes workdir/predictions/<name>.png and detections.odgt (every detection: one line per image, ID = the
  file name without extension, boxes in original-image pixels, in file order). The pictures
  (pictures.draw_predictions) show the detections with score >= score_thresh; None: config.test.draw_score_thresh,
  else the threshold the workdir's last evaluation drew with (pictures.predict_threshold).

  Each image is resized and padded as --mode=eval does (test.padding: 'divisible' = to its own size
  rounded up to test.size_divisibility, as the released code tests), batched with images of the same
  padded shape (one compilation per shape; short batches filled with image_id -1 examples). With `exported` (a
  --mode=export artifact) the detections come from it, not from a checkpoint (predict_exported)."""
  if not images or not os.path.isdir(images):
    raise FileNotFoundError(f"--mode=predict needs --images=FOLDER of {'/'.join(IMAGE_SUFFIXES)} files; got {images!r}")
  files = image_files(images, IMAGE_SUFFIXES)   # every image decoded once here: a bad file stops before the restore
  if not files:
    raise FileNotFoundError(f"--images={images}: no {'/'.join(IMAGE_SUFFIXES)} files in it")
  threshold = pictures.predict_threshold(config.test.get("draw_score_thresh", None) if score_thresh is None
                                         else score_thresh, workdir)
  if exported:
    return predict_exported(config, workdir, images, files, exported, step, threshold)
  method = get_method(config)
  mesh = sharding.make_mesh()
  state = restore_train_state(config, workdir, method, mesh, step, mode="predict")
  variables = {"params": state.params, **state.model_state}
  predict = jax.jit(method.predict)
  out_dir = os.path.join(workdir, "predictions")
  os.makedirs(out_dir, exist_ok=True)
  sizes = []
  for f in files:
    with Image.open(os.path.join(images, f)) as im:   # the header only
      sizes.append((im.height, im.width))
  data_cfg = predict_data_config(config, sizes)
  schedule = transforms.eval_schedule([transforms.eval_pad_shape(h, w, data_cfg) for h, w in sizes],
                                      jax.device_count(), 0, 1)
  lines = {}
  for shape, indices in schedule:
    originals = {i: np.asarray(Image.open(os.path.join(images, files[i])).convert("RGB")) for i in indices
                 if i is not None}
    examples = [transforms.padding_example(data_cfg, shape) if i is None else transforms.preprocess(
        originals[i], np.zeros((0, 4)), np.zeros((0,)), i, files[i], data_cfg, flip=False, pad_size=shape)
        for i in indices]
    batch = {k: v for k, v in transforms.stack_examples(examples).items() if k not in transforms.EXTRA_KEYS}
    dets = jax.device_get(predict(variables, sharding.shard_batch(batch, mesh)))
    for row, i in enumerate(indices):
      if i is None:
        continue
      name, image = os.path.splitext(files[i])[0], originals[i]
      v = np.asarray(dets.valid[row])
      boxes, scores = np.asarray(dets.boxes[row])[v], np.asarray(dets.scores[row])[v]
      lines[i] = draw_and_record(out_dir, name, image, boxes, scores, threshold)
  odgt.write(os.path.join(out_dir, "detections.odgt"), [lines[i] for i in sorted(lines)])
  shapes = sorted({s for s, _ in schedule})
  print(f"Drew detections ({threshold.note}) on {len(files)} images into {out_dir}; test.padding "
        f"{data_cfg.eval_padding!r}: {len(shapes)} padded shapes = {len(shapes)} predict compilations "
        f"({', '.join(f'{h}x{w}' for h, w in shapes)})", flush=True)
  return out_dir


def predict_exported(config, workdir: str, images: str, files, exported: str, step, threshold):
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
      lines.append(draw_and_record(out_dir, os.path.splitext(name)[0], image, boxes, scores, threshold))
  odgt.write(os.path.join(out_dir, "detections.odgt"), lines)
  print(f"Drew detections of {exported} ({threshold.note}) on {len(files)} images into {out_dir}", flush=True)
  return out_dir


def draw_and_record(out_dir, name, image, boxes, scores, threshold) -> dict:
  """Draws one image's detections (pictures.draw_predictions, at `threshold`) into out_dir/<name>.png and
  returns its odgt line (every detection, original-image pixels, unrounded)."""
  pictures.save_png(pictures.draw_predictions(image, boxes, scores, threshold, name), os.path.join(out_dir, name + ".png"))
  return odgt.detection_line(name, image.shape[1], image.shape[0], boxes, scores, rounded=False)
