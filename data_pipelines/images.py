"""Image files for the builders and the tf.data pipeline: TensorFlow kept off the accelerators, the one
decoder both use, and the checked read that proves a file decodes before a builder stores it.

TensorFlow is imported inside the functions only (importing this module loads nothing heavy).
"""
from __future__ import annotations

import logging
import re


def tensorflow():
  """TensorFlow, kept off every accelerator (JAX owns them)."""
  import tensorflow as tf
  try:
    tf.config.set_visible_devices([], "GPU")
    tf.config.set_visible_devices([], "TPU")
  except (RuntimeError, ValueError):  # already initialised, or no such device type
    pass
  return tf


def decode_image(tf, data):
  """Encoded JPEG/PNG -> uint8 (h, w, 3) RGB. JPEG with INTEGER_ACCURATE, bit-equal to PIL's decoder."""
  return tf.cond(tf.io.is_jpeg(data),
                 lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
                 lambda: tf.io.decode_png(data, channels=3))


def decoded_size(data: bytes) -> tuple[int, int]:
  """(height, width) of encoded JPEG/PNG bytes after a full decode with the pipeline's decoder; a
  corrupt or unsupported file raises tf.errors.InvalidArgumentError (the builders name the image)."""
  tf = tensorflow()
  shape = decode_image(tf, tf.constant(data)).shape
  return int(shape[0]), int(shape[1])


def read_checked_image(path: str, where: str, image_id: str, skip_corrupt: bool, corrupt_ids: list):
  """(bytes, height, width) of an image file for a builder, fully decoded once to prove it is readable.

  A corrupt file stops with an error naming `where` and the image, or, with `skip_corrupt`, is logged,
  appended to `corrupt_ids` (the build statistics count it) and None is returned.
  """
  tf = tensorflow()
  with open(path, "rb") as f:
    data = f.read()
  try:
    height, width = decoded_size(data)
  except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
    if not skip_corrupt:
      reason = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", e.message).splitlines()[0]   # TF's op prefix
      raise ValueError(f"{where}: image {image_id} ({path}) cannot be decoded ({reason}); expected a whole JPEG "
                       "or PNG: replace the file, or pass --skip_corrupt to leave it out (counted)") from None
    logging.warning("%s: skipping corrupt image %s (%s)", where, image_id, path)
    corrupt_ids.append(image_id)
    return None
  return data, height, width
