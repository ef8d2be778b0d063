"""ALFNet augmentation (liuwei16/ALFNet keras_alfnet/data_augment.py): numpy against hand-worked numbers,
TensorFlow against numpy."""
import colorsys

import numpy as np
import pytest

from data_pipelines import transforms

H, W = 128, 256
TRAIN_SIZE = (64, 128)
# GT A, GT B, GT C, ignore I1, ignore I2 (integer xyxy, the ALFNet training boxes).
BOXES = np.array([[20, 30, 45, 90], [100, 10, 130, 70], [150, 40, 175, 100], [40, 60, 80, 100], [160, 0, 200, 15]],
                 np.float32)
CLASSES = np.array([0, 0, 0, -1, -1], np.int32)


def picture(seed=0, h=H, w=W):
  return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_brightness_scales_value_only():
  img = np.array([[[100, 50, 20], [200, 80, 0], [0, 0, 0], [10, 4, 2]]], np.uint8)
  np.testing.assert_array_equal(transforms.brightness(img, 1.5)[0, :3], [[150, 75, 30], [255, 102, 0], [0, 0, 0]])
  np.testing.assert_array_equal(transforms.brightness(img, 0.55)[0, 3], [5, 2, 1])  # V' = int(5.5) = 5, gain 1/2
  out = transforms.brightness(picture(1, 16, 16), 0.8)
  for a, b in zip(picture(1, 16, 16).reshape(-1, 3)[:50] / 255.0, out.reshape(-1, 3)[:50] / 255.0):
    ha, sa, va = colorsys.rgb_to_hsv(*a)
    hb, sb, vb = colorsys.rgb_to_hsv(*b)
    assert vb == pytest.approx(np.floor(va * 255 * np.float32(0.8)) / 255, abs=1e-6)
    if vb > 0.1 and sa > 0.2:  # hue and saturation survive up to the 8-bit rounding
      assert sb == pytest.approx(sa, abs=0.03) and min(abs(hb - ha), 1 - abs(hb - ha)) < 0.03


def test_crop_window_hand():
  # ratio 0.65 -> crop int(83.2) x int(166.4) = 83 x 166.
  gt = BOXES[:1]
  assert transforms.crop_window(H, W, gt, 0.65, 0.0, 0.0) == (0, 19, 83, 166)       # centre (32, 60); x clamped at 0
  far = np.array([[230, 100, 250, 128]], np.float32)                                # centre (240, 114)
  assert transforms.crop_window(H, W, far, 0.65, 0.0, 0.0) == (90, 45, 83, 166)     # shifted back inside
  # No GT: offsets int(0.5 * 90) = 45 and int(0.25 * 45) = 11, centre = offset + half crop.
  assert transforms.crop_window(H, W, np.zeros((0, 4), np.float32), 0.65, 0.5, 0.25) == (45, 11, 83, 166)
  # The picked GT is int(u * num_gt).
  three = np.array([[0, 0, 10, 10], [100, 40, 120, 80], [200, 0, 210, 10]], np.float32)
  assert transforms.crop_window(H, W, three, 0.65, 0.5, 0.0)[:2] == (110 - 83, 60 - 41)


def test_crop_boxes_clamp():
  b = np.array([[-5, 10, 300, 50], [10, -20, 20, 200]], np.float32)
  np.testing.assert_array_equal(transforms.crop_boxes(b, 0, 0, 83, 166), [[0, 10, 165, 50], [10, 0, 20, 82]])


@pytest.mark.parametrize("flip, expected_crop, expected_boxes", [
    # No flip: crop (0, 19, 83, 166) around GT A. Cropped: A [20,11,45,71] B [100,0,130,51] (1530/1800)
    # C [150,21,165,81] (900/1500) I1 [40,41,80,81], I2 area 0 -> out. Divided by 83/64 = 1.296875 and
    # truncated: A [15,8,34,54] B [77,0,100,39] C [115,16,127,62] (w 12 < 16 -> out) I1 [30,31,61,62].
    (False, (0, 19, 83, 166), [[15, 8, 34, 54], [77, 0, 100, 39], [30, 31, 61, 62]]),
    # Flip (x' = 256 - x2, 256 - x1): A [211,30,236,90] is picked; crop (90, 19, 83, 166). Cropped: A [121,11,
    # 146,71] B [36,0,66,51] C [0,21,16,81] (960/1500) I1 [86,41,126,81]; resized: A [93,8,112,54] B [27,0,50,39]
    # C w 12 -> out, I1 [66,31,97,62].
    (True, (90, 19, 83, 166), [[93, 8, 112, 54], [27, 0, 50, 39], [66, 31, 97, 62]]),
])
def test_alfnet_augment_hand(flip, expected_crop, expected_boxes):
  img = picture()
  u = [0.9, 0.3, 0.1 if flip else 0.9, 0.5, 0.1, 0.0]   # no brightness, ratio 0.65, GT int(0.1 * 3) = 0 (A)
  out = transforms.alfnet_augment(img, BOXES, CLASSES, u, TRAIN_SIZE, 0.5)
  assert out["flip"] == flip and out["factor"] is None and out["crop"] == expected_crop and out["dropped"] == 0
  np.testing.assert_array_equal(out["boxes"], expected_boxes)
  np.testing.assert_array_equal(out["classes"], [0, 0, -1])
  x0, y0, ch, cw = expected_crop
  src = img[:, ::-1] if flip else img
  np.testing.assert_array_equal(out["image"], transforms.resize_bilinear(src[y0:y0 + ch, x0:x0 + cw], *TRAIN_SIZE))


def test_alfnet_augment_brightness_and_scale():
  img = picture(2)
  u = [0.2, 0.5, 0.9, 0.5, 0.1, 0.0]   # brightness x (0.5 + 1.5 * 0.5) = 1.25
  out = transforms.alfnet_augment(img, BOXES, CLASSES, u, TRAIN_SIZE, 0.5)
  assert out["factor"] == np.float32(1.25)
  crop = transforms.brightness(img, 1.25)[19:102, 0:166]
  np.testing.assert_array_equal(out["image"], transforms.resize_bilinear(crop, *TRAIN_SIZE))
  cfg = _cfg()
  ex = transforms.preprocess_alfnet(img, BOXES, CLASSES, 3, "x", cfg, u)
  assert ex["image_size"].tolist() == [64, 128] and ex["orig_size"].tolist() == [H, W]
  assert ex["scale"] == np.float32(64 / 83) and ex["num_boxes"] == 3 and ex["gt_valid"].sum() == 3


def test_degenerate_boxes_never_survive():
  """A NaN box is dropped first; a zero-height GT wide enough to pass the width rule is dropped last."""
  boxes = np.array([[20, 30, 45, 90], [np.nan, 0, 10, 10], [60, 40, 100, 40]], np.float32)
  out = transforms.alfnet_augment(picture(), boxes, np.array([0, 0, 0]), [0.9, 0, 0.9, 0.5, 0.0, 0.0], TRAIN_SIZE, 0.5)
  np.testing.assert_array_equal(out["boxes"], [[15, 8, 34, 54]])
  assert out["dropped"] == 2


def _cfg(**kw):
  import ml_collections
  c = ml_collections.ConfigDict(dict(train_size=TRAIN_SIZE, flip_prob=0.5, pad_size=TRAIN_SIZE, max_boxes=8, bgr=True,
                                     pixel_mean=(103.939, 116.779, 123.68), pixel_std=(1.0, 1.0, 1.0)))
  c.update(kw)
  return c


@pytest.mark.parametrize("case", range(6))
def test_tf_matches_numpy(case):
  tf = pytest.importorskip("tensorflow")
  from data_pipelines import input_pipeline
  rng = np.random.default_rng(case)
  img = picture(case)
  boxes, classes = BOXES.copy(), CLASSES.copy()
  if case == 4:                 # no GT: the crop goes anywhere
    classes[:] = -1
  if case == 5:                 # a NaN box and one outside everything
    boxes = np.concatenate([boxes, [[np.nan, 1, 2, 3], [300, 200, 320, 260]]]).astype(np.float32)
    classes = np.concatenate([classes, [0, -1]]).astype(np.int32)
  u = rng.random(transforms.NUM_DRAWS)
  want = transforms.alfnet_augment(img, boxes, classes, u, TRAIN_SIZE, 0.5)
  image, got_b, got_c, crop_h, dropped = input_pipeline.alfnet_augment(
      tf, tf.constant(img), tf.constant(boxes), tf.constant(classes), tf.constant(u, tf.float64), TRAIN_SIZE, 0.5)
  np.testing.assert_array_equal(got_b.numpy(), want["boxes"])
  np.testing.assert_array_equal(got_c.numpy(), want["classes"])
  assert int(crop_h) == want["crop"][2] and int(dropped) == want["dropped"]
  np.testing.assert_array_equal(image.numpy(), want["image"])   # same bilinear arithmetic: bit-equal
