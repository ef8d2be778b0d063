"""--mode=predict: detections drawn on every image of a folder, from a checkpoint of the workdir."""
from __future__ import annotations

import os
import sys

import jax
import numpy as np
from PIL import Image

from data_pipelines import transforms
from lla_jax import sharding, visualize
from lla_jax.errors import BadInputError
from lla_jax.evaluation import odgt
from lla_jax.methods import get_method
from lla_jax.train_state import restore_train_state

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def read_image(path: str) -> np.ndarray:
  """uint8 (h, w, 3) RGB of an image file, decoded whole; BadInputError naming the file when it cannot be
  (truncated, not an image, an unsupported format). PIL does not accept truncated files by default."""
  try:
    with Image.open(path) as im:
      return np.asarray(im.convert("RGB"))
  except (OSError, ValueError, Image.DecompressionBombError) as e:   # UnidentifiedImageError is an OSError
    raise BadInputError(f"{path}: cannot be read as an image ({e}); expected a whole "
                        f"{'/'.join(IMAGE_SUFFIXES)} file") from None


def image_files(images: str) -> list:
  """The image files of the --images folder, sorted, each checked to decode whole before any model work; other
  files are named on stderr (a folder of photos often holds notes or thumbnails). Raises BadInputError listing
  every file that does not decode."""
  names = sorted(os.listdir(images))
  files = [f for f in names if f.lower().endswith(IMAGE_SUFFIXES) and os.path.isfile(os.path.join(images, f))]
  others = [f for f in names if f not in files]
  if others:
    entries = "1 entry that is" if len(others) == 1 else f"{len(others)} entries that are"
    print(f"note: --images={images}: skipping {entries} not {'/'.join(IMAGE_SUFFIXES)} files: "
          f"{', '.join(others[:10])}{' ...' if len(others) > 10 else ''}", file=sys.stderr, flush=True)
  bad = []
  for f in files:
    try:
      read_image(os.path.join(images, f))
    except BadInputError as e:
      bad.append(str(e))
  if bad:
    raise BadInputError(f"--images={images}: {len(bad)} of {len(files)} image files cannot be read: "
                        + "; ".join(bad))
  return files


def predict_folder(config, workdir: str, images: str, step=None, score_thresh: float = 0.3):
  """Writes workdir/predictions/<name>.png (boxes with score >= score_thresh) and detections.odgt."""
  if not images or not os.path.isdir(images):
    raise FileNotFoundError(f"--mode=predict needs --images=FOLDER of {'/'.join(IMAGE_SUFFIXES)} files; got {images!r}")
  files = image_files(images)
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
    originals = [read_image(os.path.join(images, f)) for f in chunk]
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
