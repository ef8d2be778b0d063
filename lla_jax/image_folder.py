"""The --images folder of --mode=predict: which files are images, each decoded whole before any model work, so
that a truncated or non-image file stops the run at once with its name (BadInputError) instead of a stack trace
half-way through the folder."""
from __future__ import annotations

import os
import sys

import numpy as np
from PIL import Image

from lla_jax.errors import BadInputError


def read_image(path: str, suffixes) -> np.ndarray:
  """uint8 (h, w, 3) RGB of an image file, decoded whole; BadInputError naming the file when it cannot be
  (truncated, not an image, an unsupported format). PIL does not accept truncated files by default."""
  try:
    with Image.open(path) as im:
      return np.asarray(im.convert("RGB"))
  except (OSError, ValueError, Image.DecompressionBombError) as e:   # UnidentifiedImageError is an OSError
    raise BadInputError(f"{path}: cannot be read as an image ({e}); expected a whole {'/'.join(suffixes)} "
                        "file") from None


def image_files(images: str, suffixes) -> list:
  """The sorted names of the files in folder `images` ending in one of `suffixes` (lower-cased), each checked to
  decode whole; other entries are named in a note on stderr (a folder of photos often holds notes or
  thumbnails), never dropped silently. Raises BadInputError listing every file that does not decode."""
  names = sorted(os.listdir(images))
  files = [f for f in names if f.lower().endswith(tuple(suffixes)) and os.path.isfile(os.path.join(images, f))]
  others = [f for f in names if f not in files]
  if others:
    entries = "1 entry that is" if len(others) == 1 else f"{len(others)} entries that are"
    print(f"note: --images={images}: skipping {entries} not {'/'.join(suffixes)} files: "
          f"{', '.join(others[:10])}{' ...' if len(others) > 10 else ''}", file=sys.stderr, flush=True)
  bad = []
  for f in files:
    try:
      read_image(os.path.join(images, f), suffixes)
    except BadInputError as e:
      bad.append(str(e))
  if bad:
    raise BadInputError(f"--images={images}: {len(bad)} of {len(files)} image files cannot be read: " + "; ".join(bad))
  return files
