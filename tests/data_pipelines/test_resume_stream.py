"""A resumed tf.data training stream (skip_batches=k) is the full stream from batch k on: same images, same
order, same augmentation draws; with data.buckets as well (the bucket choice stream and each bucket's own
stream skip what the first k batches took)."""
import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tensorflow_datasets")

import data_pipelines  # noqa: E402
from tests.data_pipelines.test_crowdhuman import built, make_cfg as crowdhuman_cfg  # noqa: E402,F401
from tests.data_pipelines.test_input_pipeline import data_dir, make_cfg  # noqa: E402,F401


def assert_tail(cfg, batch_size, total, skip):
  full = data_pipelines.create_dataset(cfg, "train", batch_size, True, 5)[0]
  want = [next(full) for _ in range(total)]
  resumed = data_pipelines.create_dataset(cfg, "train", batch_size, True, 5, skip_batches=skip)[0]
  for w in want[skip:]:
    got = next(resumed)
    for k in w:
      np.testing.assert_array_equal(got[k], w[k], err_msg=k)


def test_tfds_stream_resumes_where_it_stopped(data_dir):   # 8 images, batches of 3: epochs straddled
  assert_tail(make_cfg(data_dir), 3, 6, 4)


def test_bucketed_stream_resumes_where_it_stopped(built):
  root, _ = built
  assert_tail(crowdhuman_cfg(root / "out", buckets=True, size_divisibility=32), 1, 9, 5)
