"""Data pipelines: TFDS builders, the tf.data input pipeline and a TensorFlow-free numpy source.

Builders: synthetic_crowds.py (built on first use), crowdhuman.py, citypersons.py and caltech.py (from the
official files, once: `python -m data_pipelines.prepare crowdhuman|citypersons|caltech --manual_dir DIR
--data_dir OUT`).

`create_dataset(data_cfg, split, batch_size, train, seed, process_index, process_count)` returns
`(iterator, info)`: the iterator yields numpy Batch dicts (lla_jax/types.py); info holds "num_images",
"records" ([{"ID", "width", "height", "index"}] in image_id order; CityPersons records add "eval_image_id"
(the image id of the GT json, index + 1) and "im_name"), "gt_odgt" (CrowdHuman-format GT of the split,
for evaluation; None for CityPersons), "gt_json" (CityPersons: the GT in the evaluator's val_gt.json
layout, for lla_jax.evaluation.citypersons.load_gt; None otherwise), Caltech also "gt_caltech" (the folder of
per-frame bbGt files) and "gt_caltech_frames" (the frame list in evaluation order), "max_boxes" (most boxes of one
image in the split) and "stats" (live counters of the iterator).

This module imports neither TensorFlow nor TFDS; `data_cfg.source` picks the implementation:
"tfds" (input_pipeline.py, tf.data) or "numpy" (numpy_source.py, synthetic data only, no TensorFlow).
The data sets themselves are entries of registry.py; data.augment picks the training augmentation
('flip' or 'alfnet'; None: the data set's default).
"""
from __future__ import annotations


def create_dataset(data_cfg, split: str, batch_size: int, train: bool, seed: int, process_index: int = 0,
                   process_count: int = 1, skip_batches: int = 0):
  """(iterator of Batch dicts, info) for `split`; batch_size is the per-process batch. See the module doc.
  Training: skip_batches > 0 starts the stream after that many batches (a resumed run continues the stream
  of the run it resumes: same batches, same augmentation draws), without reading the skipped images.
  The sources are imported here, not at the top, so that importing the package loads no TFDS."""
  if data_cfg.source == "tfds":
    from data_pipelines import input_pipeline
    return input_pipeline.create_dataset(data_cfg, split, batch_size, train, seed, process_index, process_count,
                                         skip_batches)
  if data_cfg.source == "numpy":
    from data_pipelines import numpy_source
    return numpy_source.create_dataset(data_cfg, split, batch_size, train, seed, process_index, process_count,
                                       skip_batches)
  raise ValueError(f"data.source must be 'tfds' or 'numpy', got {data_cfg.source!r}")
