"""The synthetic crowd renderer: determinism, box semantics and crowd statistics."""
import itertools

import numpy as np
import pytest

from data_pipelines import synthetic

H, W = 384, 512


@pytest.fixture(scope="module")
def scenes():
  return [synthetic.render_scene(synthetic.scene_seed("train", i), H, W) for i in range(50)]


def test_jpeg_size(scenes):
  # The stored size stays CrowdHuman-like (~50 KB). The render speed is measured by
  # benchmarks/render_bench.py, not asserted here.
  assert np.mean([len(synthetic.encode_jpeg(s["image"])) for s in scenes]) < 100_000


def test_seed_and_id_helpers():
  assert synthetic.image_id("val", 12) == "synth_val_000012"
  s = synthetic.scene_seed("train", 3, 0)
  assert s == synthetic.scene_seed("train", 3, 0)
  assert len({s, synthetic.scene_seed("val", 3, 0), synthetic.scene_seed("train", 4, 0),
              synthetic.scene_seed("train", 3, 1)}) == 4
  assert 0 <= s < 2**63


def test_render_is_deterministic():
  a, b = synthetic.render_scene(123, 96, 128), synthetic.render_scene(123, 96, 128)
  c = synthetic.render_scene(124, 96, 128)
  np.testing.assert_array_equal(a["image"], b["image"])
  for k in ("fbox", "vbox", "hbox", "ignore", "visible_fraction"):
    np.testing.assert_array_equal(a[k], b[k])
  assert a["tag"] == b["tag"]
  assert not np.array_equal(a["image"], c["image"])


def test_schema(scenes):
  for s in scenes[:5]:
    n = len(s["tag"])
    assert s["image"].dtype == np.uint8 and s["image"].shape == (H, W, 3)
    for k in ("fbox", "vbox", "hbox"):
      assert s[k].dtype == np.float32 and s[k].shape == (n, 4)
    assert s["ignore"].dtype == bool and s["ignore"].shape == (n,)
    assert s["visible_fraction"].dtype == np.float32 and s["visible_fraction"].shape == (n,)
    assert set(s["tag"]) <= {"person", "mask"}
    np.testing.assert_array_equal(s["ignore"], [t == "mask" for t in s["tag"]])


def _inside(inner, outer):
  """xywh boxes, elementwise: inner within outer."""
  return ((inner[:, 0] >= outer[:, 0]) & (inner[:, 1] >= outer[:, 1])
          & (inner[:, 0] + inner[:, 2] <= outer[:, 0] + outer[:, 2])
          & (inner[:, 1] + inner[:, 3] <= outer[:, 1] + outer[:, 3]))


def test_box_semantics(scenes):
  image_box = np.array([[0, 0, W, H]], np.float32)
  for s in scenes:
    f, v, h, vis = s["fbox"], s["vbox"], s["hbox"], s["visible_fraction"]
    assert (f[:, 2:] > 0).all() and (v[:, 2:] > 0).all()
    assert _inside(v, f).all()                                  # the visible part lies in the amodal box
    assert _inside(v, np.repeat(image_box, len(v), 0)).all()    # and in the image
    person = ~s["ignore"]
    assert _inside(h[person], f[person]).all()                  # head inside the body
    assert ((vis >= synthetic.MIN_VISIBLE_FRACTION) & (vis <= 1)).all()
    full = vis == 1.0                                           # unoccluded: visible box = full box
    np.testing.assert_array_equal(v[full], f[full])


def test_annotate_uses_the_occlusion_masks():
  """Hand-built scene: A (rectangle 20x40 at (10, 10)), then B (20x40 at (20, 10)) in front of it, then an
  occluder (owner -1) over B's lower half, and C cut by the right border (40x10 at (70, 50), image 64x100)."""
  owner = np.full((64, 100), -1, np.int32)
  rect = lambda h, w: np.ones((h, w), np.uint8)
  ents = [{"tag": "person", "labels": rect(40, 20), "ox": 10, "oy": 10, "head": [5, 0, 10, 8]},
          {"tag": "person", "labels": rect(40, 20), "ox": 20, "oy": 10, "head": None},
          {"tag": "mask", "labels": rect(10, 40), "ox": 70, "oy": 50, "head": None},
          {"tag": "person", "labels": rect(20, 20), "ox": 0, "oy": 0, "head": None}]  # fully covered below
  owner[10:50, 10:30] = 0
  owner[10:50, 20:40] = 1
  owner[30:50, 20:40] = -1        # occluder in front of B's lower half
  owner[50:60, 70:100] = 2
  # entity 3 owns nothing: never visible -> not annotated
  out = synthetic.annotate(ents, owner)
  np.testing.assert_array_equal(out["fbox"], [[10, 10, 20, 40], [20, 10, 20, 40], [70, 50, 40, 10]])
  np.testing.assert_array_equal(out["vbox"], [[10, 10, 10, 40], [20, 10, 20, 20], [70, 50, 30, 10]])
  np.testing.assert_array_equal(out["hbox"], [[15, 10, 10, 8], [20, 10, 20, 40], [70, 50, 40, 10]])
  np.testing.assert_allclose(out["visible_fraction"], [0.5, 0.5, 0.75])
  assert out["tag"] == ["person", "person", "mask"]
  np.testing.assert_array_equal(out["ignore"], [False, False, True])


def _iou(a, b):
  ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
  iw = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
  ih = max(0.0, min(ay2, by2) - max(a[1], b[1]))
  inter = iw * ih
  return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_crowd_statistics(scenes):
  # Independent restatement with plain Python loops.
  people = [s["fbox"][~s["ignore"]] for s in scenes]
  n_people = sum(len(p) for p in people)
  vis = np.concatenate([s["visible_fraction"][~s["ignore"]] for s in scenes])
  pairs = [sum(_iou(a, b) > 0.5 for a, b in itertools.combinations(p.tolist(), 2)) for p in people]
  heights = np.concatenate([p[:, 3] for p in people])
  aspects = np.concatenate([p[:, 2] / p[:, 3] for p in people])
  outside = sum(int(((p[:, 0] < 0) | (p[:, 1] < 0) | (p[:, 0] + p[:, 2] > W) | (p[:, 1] + p[:, 3] > H)).sum())
                for p in people)

  stats = synthetic.dataset_statistics(scenes)
  assert stats["num_images"] == 50
  assert stats["people_per_image"] == pytest.approx(n_people / 50)
  assert stats["frac_visible_below_0.65"] == pytest.approx(float((vis < 0.65).mean()))
  assert stats["pairs_iou_above_0.5_per_image"] == pytest.approx(sum(pairs) / 50)
  assert stats["frac_images_with_pair_iou_above_0.5"] == pytest.approx(np.mean([p > 0 for p in pairs]))

  # The crowd properties the data set promises.
  assert n_people / 50 >= 8
  assert (vis < 0.65).mean() >= 0.30
  assert sum(pairs) / 50 >= 1.0 and np.mean([p > 0 for p in pairs]) >= 0.5
  assert 0.36 <= aspects.mean() <= 0.46
  assert heights.min() <= 24 and heights.max() >= 0.6 * H and heights.max() <= 0.85 * H
  assert outside > 0
  assert sum(s["ignore"].sum() for s in scenes) > 0
  assert stats["ignore_per_image"] > 0.5


def test_render_example_and_jpeg_round_trip():
  ex = synthetic.render_example("val", 3, 0, 96, 128)
  scene = synthetic.render_scene(synthetic.scene_seed("val", 3, 0), 96, 128)
  assert ex["id"] == "synth_val_000003" and ex["index"] == 3 and (ex["height"], ex["width"]) == (96, 128)
  np.testing.assert_array_equal(ex["fbox"], scene["fbox"])
  img = synthetic.decode_image(ex["jpeg"])
  assert img.shape == (96, 128, 3) and img.dtype == np.uint8
  err = np.abs(img.astype(int) - scene["image"]).mean()   # JPEG (quality 90) loss, noise included
  other = np.abs(img.astype(int) - synthetic.render_scene(1, 96, 128)["image"]).mean()
  assert err < 8 and err < other / 3


def test_ordered_map_in_process():
  assert list(synthetic.ordered_map(lambda x: x * x, range(5))) == [0, 1, 4, 9, 16]
