"""What a run writes for people and tools: JSON-lines + TensorBoard metrics, a progress line,
atomic JSON files."""
from __future__ import annotations

import json
import math
import os
import sys
import time

import jax
import numpy as np
from PIL import Image

from lla_jax import atomic


def write_json_atomic(path: str, obj, indent=1) -> None:
  """Writes JSON to a temporary file in the same folder and renames it: never half-written."""
  atomic.write_json(path, obj, indent=indent)


def tensorboard_images(summary_writer, step: int, images: dict, prefix: str = "") -> None:
  """Writes {tag: (H, W, 3) uint8} to TensorBoard through a tensorboardX SummaryWriter (add_image, HWC)."""
  for tag, image in images.items():
    summary_writer.add_image(prefix + tag, np.asarray(image, np.uint8), int(step), dataformats="HWC")
  summary_writer.flush()


class MetricWriter:
  """Scalars to `workdir/metrics.jsonl` and TensorBoard event files, images to TensorBoard (process 0 only)."""

  def __init__(self, workdir: str):
    self.active = jax.process_index() == 0
    if not self.active:
      return
    os.makedirs(workdir, exist_ok=True)
    self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
    from tensorboardX import SummaryWriter  # pure-python event writer: no TensorFlow needed
    self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, scalars: dict, prefix: str = "") -> None:
    if not self.active:
      return
    row = {"step": int(step)}
    for k, v in scalars.items():
      v = float(v)
      row[prefix + k] = v if math.isfinite(v) else None
      self._tb.add_scalar(prefix + k, v, int(step))
    self._jsonl.write(json.dumps(row) + "\n")
    self._jsonl.flush()
    self._tb.flush()

  def write_images(self, step: int, images: dict, prefix: str = "") -> None:
    """{tag: (H, W, 3) uint8 array or the path of a PNG} to TensorBoard (process 0 only)."""
    if not self.active:
      return
    arrays = {tag: np.asarray(Image.open(v).convert("RGB")) if isinstance(v, str) else v for tag, v in images.items()}
    tensorboard_images(self._tb, step, arrays, prefix)

  def close(self):
    if self.active:
      self._jsonl.close()
      self._tb.close()


class Progress:
  """A periodic one-line report: step, loss parts, images/s and ETA."""

  def __init__(self, total_steps: int, batch_size: int, start_step: int = 0, stream=sys.stdout):
    self.total, self.batch, self.stream = total_steps, batch_size, stream
    self.t0, self.s0 = time.time(), start_step

  def line(self, step: int, scalars: dict) -> str:
    dt = max(time.time() - self.t0, 1e-9)
    done = step - self.s0
    parts = " ".join(f"{k} {float(v):.4f}" for k, v in scalars.items())
    if done <= 0:   # the clock has just (re)started: no rate to report yet
      return f"step {step}/{self.total} | {parts} | - img/s | ETA -"
    ips = done * self.batch / dt
    eta = (self.total - step) * dt / done
    return f"step {step}/{self.total} | {parts} | {ips:.1f} img/s | ETA {_hms(eta)}"

  def report(self, step: int, scalars: dict) -> None:
    if jax.process_index() == 0:
      print(self.line(step, scalars), file=self.stream, flush=True)

  def restart_clock(self, step: int) -> None:
    """Excludes compilation from the rate: call after the first step."""
    self.t0, self.s0 = time.time(), step


def _hms(seconds: float) -> str:
  seconds = int(seconds)
  return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
