"""Synthetic crowds exported in the Caltech layout (bbGt annotations + per-video detections) and evaluated through
the command line, against the plain re-statement."""
import json

import numpy as np

from data_pipelines import caltech_io
from lla_jax.evaluation import caltech, caltech_files
from lla_jax.evaluation.__main__ import main
from tests.reference import caltech_reference as reference


def test_synthetic_export_runs_the_whole_path(tmp_path, capsys):
  oracle = caltech_io.export_synthetic(tmp_path / "oracle", "val", 6, detections="oracle")
  frames = caltech_files.load_frames(oracle["frames"])
  assert frames == [(6, 0, 29 + 30 * k) for k in range(6)]
  gt = caltech_files.load_gt_dir(oracle["gt"], frames)
  assert len(gt.image) > 0 and gt.is_ignore_label.any() == (gt.ign != 0).any()
  code = main(["caltech", "--gt", oracle["gt"], "--dt", oracle["dt"], "--frames", oracle["frames"], "--json"])
  assert code == 0
  mr = json.loads(capsys.readouterr()[0].strip().splitlines()[-1])
  assert mr["Reasonable"] == 0.0  # the GT boxes themselves (score 1)

  rng = np.random.default_rng(0)
  dets = []
  for i in range(6):
    b = gt.bb[(gt.image == i) & ~gt.is_ignore_label]
    noisy = b + rng.normal(0, 4, b.shape)
    noisy[:, 2:] = np.maximum(noisy[:, 2:], 0.0)   # jittered x y w h: no negative size (the reader refuses it)
    extra = np.column_stack([rng.uniform(0, 600, 5), rng.uniform(0, 400, 5), np.full(5, 30.0), np.full(5, 75.0)])
    boxes = np.concatenate([noisy, extra])
    dets.append((boxes, np.round(rng.random(len(boxes)), 2)))
  noisy = caltech_io.export_synthetic(tmp_path / "noisy", "val", 6, detections=dets)
  fast = caltech.evaluate_dirs(noisy["gt"], noisy["dt"], noisy["frames"])
  slow = reference.evaluate(noisy["gt"], noisy["dt"], frames)
  for name in caltech.SETUPS:
    a, b = fast[name]["MR"], slow[name]["MR"]
    assert a == b or (np.isnan(a) and np.isnan(b)), name
  assert fast["Reasonable"]["MR"] > mr["Reasonable"]
