"""Synthetic crowd renderer speed: CPU seconds per image for render_scene + encode_jpeg at the
synthetic_crowds storage size (384 x 512), and the mean JPEG size.

The budget the data set was designed for: 2000 train images in at most 60 CPU seconds (30 ms per
image, i.e. 30 s on 2 cores). This was an assert in tests/data_pipelines/test_synthetic.py; a timing
depends on the machine, so it is reported here instead (pass or over budget), never asserted.

  python benchmarks/render_bench.py [--images 50] [--height 384] [--width 512]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from data_pipelines import synthetic  # noqa: E402

BUDGET_CPU_SECONDS_PER_IMAGE = 0.030


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--images", type=int, default=50)
  parser.add_argument("--height", type=int, default=384)
  parser.add_argument("--width", type=int, default=512)
  args = parser.parse_args(argv)
  cpu, wall = time.process_time(), time.perf_counter()
  scenes = [synthetic.render_scene(synthetic.scene_seed("train", i), args.height, args.width)
            for i in range(args.images)]
  render_cpu = time.process_time() - cpu
  jpegs = [synthetic.encode_jpeg(s["image"]) for s in scenes]
  cpu, wall = (time.process_time() - cpu) / args.images, (time.perf_counter() - wall) / args.images
  print(f"{args.images} images {args.height}x{args.width}: render + JPEG {1e3 * cpu:.1f} ms CPU per image "
        f"(render {1e3 * render_cpu / args.images:.1f} ms), {1e3 * wall:.1f} ms wall; "
        f"mean JPEG {np.mean([len(j) for j in jpegs]) / 1e3:.1f} KB; budget {1e3 * BUDGET_CPU_SECONDS_PER_IMAGE:.0f} ms: "
        f"{'within' if cpu <= BUDGET_CPU_SECONDS_PER_IMAGE else 'OVER'}")


if __name__ == "__main__":
  main()
