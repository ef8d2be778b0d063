"""MetricWriter images: arrays and PNG files to TensorBoard (the contact sheet and the MR-FPPI curve)."""
import os

import numpy as np
import pytest
from PIL import Image

from lla_jax import writers


class Recorder:
  """A stand-in SummaryWriter recording add_image calls."""

  def __init__(self):
    self.calls, self.flushed = [], False

  def add_image(self, tag, image, step, dataformats):
    self.calls.append((tag, image.shape, image.dtype, step, dataformats, int(image[0, 0, 0])))

  def flush(self):
    self.flushed = True


def test_tensorboard_images(tmp_path):
  r = Recorder()
  writers.tensorboard_images(r, 3, {"sheet": np.zeros((4, 6, 3), np.uint8)}, prefix="eval/")
  assert r.calls == [("eval/sheet", (4, 6, 3), np.uint8, 3, "HWC", 0)] and r.flushed
  tensorboardx = pytest.importorskip("tensorboardX")
  w = tensorboardx.SummaryWriter(str(tmp_path))
  writers.tensorboard_images(w, 1, {"sheet": np.full((8, 8, 3), 200, np.uint8)})
  w.close()
  events = [f for f in os.listdir(tmp_path) if f.startswith("events")]
  assert events and os.path.getsize(os.path.join(tmp_path, events[0])) > 100


def test_metric_writer_images_from_arrays_and_png_files(tmp_path):
  """write_images takes (H, W, 3) uint8 arrays or PNG paths (an RGBA PNG arrives as RGB)."""
  pytest.importorskip("tensorboardX")
  png = str(tmp_path / "curve.png")
  Image.new("RGBA", (5, 3), (10, 20, 30, 255)).save(png)
  w = writers.MetricWriter(str(tmp_path / "run"))
  r = Recorder()
  w._tb = r
  w.write_images(7, {"pictures": np.full((2, 4, 3), 9, np.uint8), "mr_fppi": png}, prefix="eval/")
  assert r.calls == [("eval/pictures", (2, 4, 3), np.uint8, 7, "HWC", 9),
                     ("eval/mr_fppi", (3, 5, 3), np.uint8, 7, "HWC", 10)]
  w._jsonl.close()
