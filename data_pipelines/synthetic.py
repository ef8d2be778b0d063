"""Synthetic crowds: procedural street scenes with pedestrians, rendered deterministically from a seed.

Pure numpy + PIL (no TensorFlow). A scene is a street (sky, buildings with windows and shop windows,
road with perspective markings, poles, clutter, sensor noise) seen by a camera whose horizon sits at
a random height; people stand on the ground plane, so feet lower in the image means a nearer and
taller person (perspective). People come in clusters that overlap heavily, parked cars, bins and
bushes hide lower bodies, and the image border cuts people off, which makes crowded, occluded scenes
in the spirit of CrowdHuman (Shao et al., arXiv 1805.00123).

Every annotated entity has three boxes in the CrowdHuman convention, float32 [x, y, w, h], pixel
edges, no +1 (a mask covering columns c0..c1 gives x = c0, w = c1 + 1 - c0):
  fbox  full (amodal) box: tight box of the whole silhouette, including parts hidden or outside the image;
  vbox  visible box: tight box of the pixels the entity owns in the final image (occlusion masks);
  hbox  head box: tight box of head and hair (amodal).
visible_fraction = visible silhouette pixels / all silhouette pixels (hidden and off-image parts count
as not visible). People below MIN_VISIBLE_FRACTION are not annotated, as an annotator could not see them.

Ignore regions (tag "mask", ignore True): "groups" (dense far-away blobs of tiny people drawn as a mass)
and "reflections" (a mirrored, faded person in a shop window). Their hbox equals their fbox.
"""
from __future__ import annotations

import collections
import colorsys
import concurrent.futures
import functools
import hashlib
import io
import math
import multiprocessing

import numpy as np
from PIL import Image, ImageDraw

RENDERER_VERSION = "1.1.0"  # bump when the pictures or boxes change: TFDS versions and caches key on it
ASPECT = 0.41               # target mean full-box w/h (CityPersons' standard aspect)
MIN_HEIGHT = 16.0           # smallest person height in pixels at render size
MAX_HEIGHT_FRACTION = 0.8   # largest person height as a fraction of the image height
MIN_VISIBLE_FRACTION = 0.05
JPEG_QUALITY = 90           # stored images are JPEG like CrowdHuman's (~50 KB at 384x512)

# Part labels of a silhouette canvas (0 = empty); each person colours them from its own palette.
_FACE, _HAIR, _SHIRT, _HAND, _PANTS, _SHOE, _BAG = 1, 2, 3, 4, 5, 6, 7
_NUM_PARTS = 8


def image_id(split: str, index: int) -> str:
  """The image ID of synthetic image `index` of `split`, e.g. 'synth_val_000012'."""
  return f"synth_{split}_{index:06d}"


def config_name(num_train: int, num_val: int, height: int, width: int, base_seed: int = 0) -> str:
  """Name of one synthetic data set, encoding everything that changes its data (sizes never collide
  in a data_dir): e.g. 'n2000_200_384x512_s0'."""
  return f"n{num_train}_{num_val}_{height}x{width}_s{base_seed}"


def scene_seed(split: str, index: int, base_seed: int = 0) -> int:
  """Deterministic 63-bit scene seed from (split, index, base seed); stable across processes and runs."""
  digest = hashlib.sha256(f"synthetic_crowds/{base_seed}/{split}/{index}".encode()).digest()
  return int.from_bytes(digest[:8], "little") >> 1


# ---------------------------------------------------------------------------------------------------
# Colours and small drawing helpers.


def _hsv(rng, h=(0.0, 1.0), s=(0.2, 0.8), v=(0.3, 0.9)):
  r, g, b = colorsys.hsv_to_rgb(rng.uniform(*h), rng.uniform(*s), rng.uniform(*v))
  return np.array([r, g, b], np.float32) * 255.0


_SKIN_COLOURS = np.array([[255, 220, 190], [240, 195, 160], [210, 160, 120], [170, 120, 85], [120, 80, 55],
                  [90, 60, 40]], np.float32)
_HAIR_COLOURS = np.array([[20, 15, 10], [60, 40, 25], [110, 75, 40], [200, 170, 110], [150, 150, 150],
                          [35, 30, 30]], np.float32)
_PANTS_COLOURS = np.array([[30, 40, 70], [25, 25, 30], [60, 60, 65], [150, 130, 95], [70, 90, 130],
                   [90, 60, 40]], np.float32)


def _palette(rng):
  """(8, 3) float32 colour per part label for one person."""
  pal = np.zeros((_NUM_PARTS, 3), np.float32)
  skin = _SKIN_COLOURS[rng.integers(len(_SKIN_COLOURS))] * rng.uniform(0.9, 1.05)
  pal[_FACE] = skin
  pal[_HAND] = skin * 0.95
  pal[_HAIR] = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))]
  pal[_SHIRT] = _hsv(rng, s=(0.1, 0.9), v=(0.15, 0.95))
  pal[_PANTS] = _PANTS_COLOURS[rng.integers(len(_PANTS_COLOURS))] if rng.random() < 0.7 else _hsv(rng)
  pal[_SHOE] = _hsv(rng, s=(0.0, 0.3), v=(0.05, 0.5))
  pal[_BAG] = _hsv(rng, s=(0.2, 0.7), v=(0.1, 0.6))
  return np.clip(pal, 0, 255)


def _quad(p, q, w0, w1):
  """Polygon of a limb from point p (width w0) to point q (width w1)."""
  dx, dy = q[0] - p[0], q[1] - p[1]
  norm = max(math.hypot(dx, dy), 1e-6)
  nx, ny = -dy / norm, dx / norm
  return [(p[0] + nx * w0 / 2, p[1] + ny * w0 / 2), (p[0] - nx * w0 / 2, p[1] - ny * w0 / 2),
          (q[0] - nx * w1 / 2, q[1] - ny * w1 / 2), (q[0] + nx * w1 / 2, q[1] + ny * w1 / 2)]


def _tight_box(mask, ox=0, oy=0):
  """[x, y, w, h] (pixel edges) of the nonzero pixels of `mask` offset by (ox, oy); None if empty."""
  rows = np.flatnonzero(mask.any(axis=1))
  if rows.size == 0:
    return None
  cols = np.flatnonzero(mask.any(axis=0))
  return [ox + cols[0], oy + rows[0], cols[-1] + 1 - cols[0], rows[-1] + 1 - rows[0]]


# ---------------------------------------------------------------------------------------------------
# Silhouettes: label canvases drawn with PIL, composited with numpy.


def person_silhouette(rng, height):
  """A pedestrian of `height` pixels: (labels uint8 (h, w), feet x within the canvas, head box [x, y, w, h]).

  Head (ellipse, hair cap), torso (trapezoid), two legs in a stride pose, arms, shoes, optional bag or
  skirt; front or side view. Pose ranges are chosen so the tight box has a mean aspect of about ASPECT.
  """
  h = float(height)
  cw, ch = int(np.ceil(0.8 * h)) + 4, int(np.ceil(h)) + 2
  img = Image.new("L", (cw, ch), 0)
  draw = ImageDraw.Draw(img)
  cx = cw / 2.0
  side = rng.random() < 0.4
  lean = rng.uniform(-0.03, 0.03) * h
  stride = rng.uniform(0.12, 0.38) * h if side else rng.uniform(0.06, 0.26) * h
  shoulder = (rng.uniform(0.13, 0.17) if side else rng.uniform(0.22, 0.28)) * h
  hip_w = (0.12 if side else 0.19) * h
  head_w, head_h = rng.uniform(0.095, 0.115) * h, rng.uniform(0.125, 0.14) * h
  hx = cx + lean
  neck_y, hip_y = 0.92 * head_h + 0.015 * h, 0.52 * h
  foot_y = h

  # Legs: the far leg first so the near one overlaps it.
  spread = [-stride / 2, stride / 2] if rng.random() < 0.5 else [stride / 2, -stride / 2]
  leg_w0, leg_w1 = 0.085 * h, 0.055 * h
  for k, dx in enumerate(spread):
    hip_x = cx + (0.0 if side else (-1 if k == 0 else 1) * hip_w / 4)
    foot = (cx + dx, foot_y - 0.035 * h)
    draw.polygon(_quad((hip_x, hip_y), foot, leg_w0, leg_w1), fill=_PANTS)
    toe = 0.06 * h * (np.sign(dx) if side else 0.3)
    draw.ellipse([min(foot[0], foot[0] + toe) - 0.03 * h, foot_y - 0.05 * h,
                  max(foot[0], foot[0] + toe) + 0.03 * h, foot_y - 1e-3], fill=_SHOE)
  if not side and rng.random() < 0.2:  # skirt or coat over the upper legs
    draw.polygon([(cx - hip_w / 2, hip_y - 0.02 * h), (cx + hip_w / 2, hip_y - 0.02 * h),
                  (cx + hip_w * 0.75, 0.72 * h), (cx - hip_w * 0.75, 0.72 * h)], fill=_SHIRT)

  # Torso (trapezoid from the shoulders to the hips) and neck.
  draw.polygon([(hx - shoulder / 2, neck_y + 0.02 * h), (hx + shoulder / 2, neck_y + 0.02 * h),
                (cx + hip_w / 2, hip_y + 0.02 * h), (cx - hip_w / 2, hip_y + 0.02 * h)], fill=_SHIRT)
  draw.rectangle([hx - 0.025 * h, head_h * 0.8, hx + 0.025 * h, neck_y + 0.03 * h], fill=_FACE)
  if rng.random() < 0.3:  # backpack or shoulder bag
    bx = hx + (-1 if rng.random() < 0.5 else 1) * shoulder * 0.45
    draw.rectangle([bx - 0.05 * h, neck_y + 0.06 * h, bx + 0.05 * h, neck_y + 0.22 * h], fill=_BAG)

  # Arms: swing opposite to the legs; sometimes one hand up (phone) or on the hip.
  arm_w0, arm_w1 = 0.06 * h, 0.045 * h
  for k, sgn in enumerate((-1, 1)):
    sx = hx + sgn * (shoulder / 2 - 0.025 * h)
    sy = neck_y + 0.04 * h
    mode = rng.random()
    if mode < 0.1:
      hand = (sx + sgn * 0.02 * h, sy + 0.02 * h - 0.05 * h)  # raised to the face
      elbow = (sx + sgn * 0.09 * h, sy + 0.15 * h)
    elif mode < 0.2:
      elbow = (sx + sgn * 0.13 * h, sy + 0.14 * h)
      hand = (cx + sgn * hip_w / 2, hip_y - 0.04 * h)  # hand on the hip
    else:
      swing = (-spread[k] if side else sgn * rng.uniform(0.0, 0.5) * stride + sgn * 0.03 * h) * 0.9
      hand = (sx + swing, sy + 0.38 * h)
      elbow = ((sx + hand[0]) / 2 + sgn * 0.01 * h, sy + 0.19 * h)
    draw.polygon(_quad((sx, sy), elbow, arm_w0, arm_w1 * 1.1), fill=_SHIRT)
    draw.polygon(_quad(elbow, hand, arm_w1 * 1.1, arm_w1), fill=_SHIRT)
    draw.ellipse([hand[0] - 0.025 * h, hand[1] - 0.02 * h, hand[0] + 0.025 * h, hand[1] + 0.035 * h],
                 fill=_HAND)

  # Head: face ellipse with a hair cap (drawn last: nothing covers a head from behind).
  hb = [hx - head_w / 2, 0.0, hx + head_w / 2, head_h]
  draw.ellipse(hb, fill=_HAIR)
  face_top = head_h * (0.28 if rng.random() < 0.8 else 0.45)
  if side:
    face = [hx - head_w * 0.2 + (head_w * 0.25 if rng.random() < 0.5 else -head_w * 0.25), face_top,
            hx + head_w * 0.45, head_h]
    face = [min(face[0], face[2] - 1), face[1], face[2], face[3]]
  else:
    face = [hx - head_w * 0.42, face_top, hx + head_w * 0.42, head_h]
  draw.ellipse(face, fill=_FACE)
  labels = np.asarray(img)
  head = _tight_box((labels == _FACE) | (labels == _HAIR))
  return labels, cx, head


def group_silhouette(rng, height):
  """A far-away crowd blob of tiny people about `height` px tall: labels uint8 (h, w)."""
  h = float(height)
  n = int(rng.integers(12, 40))
  width = int(h * rng.uniform(2.5, 7.0))
  cw, ch = width + int(h) + 4, int(1.6 * h) + 4
  img = Image.new("L", (cw, ch), 0)
  draw = ImageDraw.Draw(img)
  for _ in range(n):
    th = h * rng.uniform(0.75, 1.2)
    x = rng.uniform(0.2 * h, width + 0.5 * h)
    y1 = ch - 2 - rng.uniform(0, 0.35 * h)
    y0 = y1 - th
    draw.rectangle([x - 0.17 * th, y0 + 0.2 * th, x + 0.17 * th, y1], fill=int(rng.choice([_SHIRT, _PANTS, _BAG])))
    draw.ellipse([x - 0.11 * th, y0, x + 0.11 * th, y0 + 0.23 * th], fill=int(rng.choice([_HAIR, _FACE])))
  return np.asarray(img)


def _paste(canvas, owner, labels, palette, light, ox, oy, owner_value):
  """Composite a label canvas at integer offset (ox, oy): where labels > 0 paint the part colour
  (palette (8, 3)) times a left-right light ramp (fake shading of strength `light`) and set the owner."""
  H, W = owner.shape
  h, w = labels.shape
  x0, y0, x1, y1 = max(ox, 0), max(oy, 0), min(ox + w, W), min(oy + h, H)
  if x0 >= x1 or y0 >= y1:
    return
  lab = labels[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
  yy, xx = np.nonzero(lab)
  ramp = 1.0 + light * ((xx + (x0 - ox)) * (2.0 / max(w - 1, 1)) - 1.0)
  canvas[y0 + yy, x0 + xx] = palette[lab[yy, xx]] * ramp[:, None].astype(np.float32)
  owner[y0 + yy, x0 + xx] = owner_value


# ---------------------------------------------------------------------------------------------------
# Background.


def _background(rng, H, W, horizon):
  """Sky, buildings (windows, shop windows), road with perspective markings, clutter. Returns
  (canvas float32 (H, W, 3), list of shop windows [x0, y0, x1, y1] that can show a reflection)."""
  canvas = np.empty((H, W, 3), np.float32)
  hz = int(horizon)
  t = np.linspace(0.0, 1.0, max(hz, 1), dtype=np.float32)[:, None, None]
  sky_top, sky_low = _hsv(rng, (0.5, 0.7), (0.1, 0.6), (0.5, 1.0)), _hsv(rng, (0.5, 0.7), (0.0, 0.3), (0.7, 1.0))
  canvas[:hz] = sky_top * (1 - t) + sky_low * t
  t = np.linspace(0.0, 1.0, H - hz, dtype=np.float32)[:, None, None]
  ground_far, ground_near = _hsv(rng, (0, 1), (0.0, 0.2), (0.35, 0.6)), _hsv(rng, (0, 1), (0.0, 0.25), (0.2, 0.5))
  canvas[hz:] = ground_far * (1 - t) + ground_near * t

  img = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
  draw = ImageDraw.Draw(img)
  # Road markings converging to a vanishing point on the horizon.
  vx = rng.uniform(0.2, 0.8) * W
  for k in range(int(rng.integers(2, 6))):
    bx = rng.uniform(-0.5, 1.5) * W
    col = tuple(int(c) for c in _hsv(rng, (0.1, 0.17), (0.0, 0.7), (0.6, 0.95)))
    dash = rng.random() < 0.5
    n_seg = 12 if dash else 1
    for s in range(n_seg):
      a, b = (s / n_seg) ** 1.5, ((s + (0.6 if dash else 1.0)) / n_seg) ** 1.5
      p0 = (vx + (bx - vx) * a, hz + (H * 1.2 - hz) * a)
      p1 = (vx + (bx - vx) * b, hz + (H * 1.2 - hz) * b)
      draw.polygon(_quad(p0, p1, 1 + 4 * a, 1 + 4 * b), fill=col)
  # Kerb line.
  ky = hz + rng.uniform(0.02, 0.1) * (H - hz)
  draw.rectangle([0, ky, W, ky + max(2, 0.01 * H)], fill=tuple(int(c) for c in _hsv(rng, v=(0.5, 0.8), s=(0, 0.1))))

  # Buildings standing on the horizon, with window grids and ground-floor shop windows.
  shop_windows = []
  x = -rng.uniform(0, 0.1) * W
  while x < W:
    bw = rng.uniform(0.08, 0.3) * W
    top = hz - rng.uniform(0.3, 1.0) * hz - 0.05 * H
    base = hz + 2
    wall = _hsv(rng, s=(0.05, 0.5), v=(0.25, 0.85))
    draw.rectangle([x, top, x + bw, base], fill=tuple(int(c) for c in wall))
    glass = tuple(int(c) for c in (_hsv(rng, (0.5, 0.7), (0.1, 0.5), (0.1, 0.5))))
    ww, wh = rng.uniform(0.1, 0.2) * bw, rng.uniform(0.03, 0.06) * H
    gap_x, gap_y = ww * rng.uniform(0.4, 1.0), wh * rng.uniform(0.5, 1.2)
    shop_h = rng.uniform(0.12, 0.3) * max(hz - top, 1)
    yy = top + gap_y
    while yy + wh < base - shop_h - gap_y:
      xx = x + gap_x
      while xx + ww < x + bw - gap_x / 2:
        draw.rectangle([xx, yy, xx + ww, yy + wh], fill=glass if rng.random() < 0.8 else (230, 220, 150))
        xx += ww + gap_x
      yy += wh + gap_y
    sx0, sx1 = x + 0.08 * bw, x + 0.92 * bw
    sy0, sy1 = base - shop_h, base - 0.05 * shop_h
    if sx1 - sx0 > 8 and sy1 - sy0 > 12:
      draw.rectangle([sx0, sy0, sx1, sy1], fill=glass)
      shop_windows.append([sx0, sy0, sx1, sy1])
    x += bw + rng.uniform(0.0, 0.04) * W

  # Clutter: signs, lamps, blobs and random shapes on the far side of the street.
  for _ in range(int(rng.integers(4, 12))):
    col = tuple(int(c) for c in _hsv(rng))
    cx, cy = rng.uniform(0, W), rng.uniform(0.2 * hz, hz + 0.15 * (H - hz))
    r = rng.uniform(0.01, 0.05) * H
    kind = rng.integers(4)
    if kind == 0:
      draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=col)
    elif kind == 1:
      draw.rectangle([cx - r, cy - 0.6 * r, cx + r, cy + 0.6 * r], fill=col)
    elif kind == 2:
      pts = [(cx + r * np.cos(a), cy + r * np.sin(a)) for a in np.sort(rng.uniform(0, 2 * np.pi, 5))]
      draw.polygon(pts, fill=col)
    else:  # tree: trunk and crown
      draw.rectangle([cx - 0.15 * r, cy, cx + 0.15 * r, max(cy, hz + 0.02 * (H - hz))], fill=(70, 50, 35))
      draw.ellipse([cx - 1.5 * r, cy - 2 * r, cx + 1.5 * r, cy + r], fill=tuple(int(c) for c in _hsv(
          rng, (0.2, 0.4), (0.4, 0.8), (0.2, 0.6))))
  return np.asarray(img).astype(np.float32), shop_windows


def _occluder(rng, kind, height):
  """Label canvas of a street object `height` px tall standing on the ground: car, bin/bush or pole."""
  h = float(height)
  if kind == "car":
    w = h * rng.uniform(2.0, 2.6)
    img = Image.new("L", (int(w) + 2, int(h) + 2), 0)
    d = ImageDraw.Draw(img)
    d.rectangle([0, 0.42 * h, w, 0.85 * h], fill=1)                                 # body
    d.polygon([(0.2 * w, 0.44 * h), (0.32 * w, 0.05 * h), (0.75 * w, 0.05 * h), (0.88 * w, 0.44 * h)], fill=1)
    d.polygon([(0.26 * w, 0.42 * h), (0.35 * w, 0.12 * h), (0.72 * w, 0.12 * h), (0.8 * w, 0.42 * h)], fill=2)
    for wx in (0.2 * w, 0.8 * w):                                                    # wheels
      d.ellipse([wx - 0.17 * h, 0.66 * h, wx + 0.17 * h, h], fill=3)
  elif kind == "bush":
    w = h * rng.uniform(1.0, 2.5)
    img = Image.new("L", (int(w) + 2, int(h) + 2), 0)
    d = ImageDraw.Draw(img)
    for _ in range(5):
      cx, r = rng.uniform(0.25, 0.75) * w, rng.uniform(0.3, 0.5) * h
      d.ellipse([cx - r * w / h * 0.6, h - 2 * r, cx + r * w / h * 0.6, h], fill=1)
  else:  # pole with a sign
    w = max(2.0, 0.035 * h)
    img = Image.new("L", (int(w * 8) + 2, int(h) + 2), 0)
    d = ImageDraw.Draw(img)
    c = w * 4
    d.rectangle([c - w / 2, 0, c + w / 2, h], fill=1)
    if rng.random() < 0.6:
      d.rectangle([c - 3.5 * w, 0.05 * h, c + 3.5 * w, 0.05 * h + 5 * w], fill=2)
  return np.asarray(img)


# ---------------------------------------------------------------------------------------------------
# The scene.


def render_scene(seed: int, height: int, width: int) -> dict:
  """Render one crowded street scene of size (height, width) from `seed`.

  Returns {"image": uint8 (H, W, 3) RGB, "fbox", "vbox", "hbox": float32 (N, 4) [x, y, w, h],
  "tag": list of N "person" | "mask", "ignore": (N,) bool, "visible_fraction": (N,) float32}.
  The same (seed, height, width) always gives the same scene.
  """
  rng = np.random.default_rng(seed)
  H, W = int(height), int(width)
  horizon = rng.uniform(0.28, 0.45) * H
  # Perspective: height = k * (feet_y - horizon); a person with feet 12% below the image bottom is
  # MAX_HEIGHT_FRACTION * H tall.
  k = MAX_HEIGHT_FRACTION * H / (1.12 * H - horizon)
  canvas, shop_windows = _background(rng, H, W, horizon)
  owner = np.full((H, W), -1, np.int32)

  entities = []  # dicts: tag, labels canvas, offset, head box (people), owner id = list position

  # Reflections in shop windows: part of the background (everything on the street is in front).
  for win in shop_windows:
    if rng.random() > 0.35:
      continue
    x0, y0, x1, y1 = (int(round(v)) for v in win)
    ph = (y1 - y0) * rng.uniform(0.7, 1.1)
    labels, feet_x, _ = person_silhouette(rng, ph)
    labels = labels[:, ::-1]  # mirrored
    ox = int(round(rng.uniform(x0, x1) - (labels.shape[1] - feet_x)))
    oy = int(round(y1 - ph + rng.uniform(0, 0.15) * ph))
    # Clip the reflection to the window: it exists only on the glass.
    sub = np.zeros_like(labels)
    wy0, wy1 = max(y0 - oy, 0), max(min(y1 - oy, labels.shape[0]), 0)
    wx0, wx1 = max(x0 - ox, 0), max(min(x1 - ox, labels.shape[1]), 0)
    sub[wy0:wy1, wx0:wx1] = labels[wy0:wy1, wx0:wx1]
    if not sub.any():
      continue
    glass = canvas[min(max(y0, 0), H - 1), min(max((x0 + x1) // 2, 0), W - 1)]
    faded = 0.6 * glass + 0.4 * _palette(rng)  # a faded mirror image tinted by the glass
    _paste(canvas, owner, sub, faded, 0.0, ox, oy, len(entities))
    entities.append({"tag": "mask", "labels": sub, "ox": ox, "oy": oy, "head": None})

  # Items on the street, drawn far to near: (feet y, kind, x).
  items = []
  h_lo, h_hi = np.log(MIN_HEIGHT), np.log(MAX_HEIGHT_FRACTION * H * 0.95)
  for _ in range(int(rng.integers(2, 5))):  # clusters of people
    size = int(rng.choice([1, 2, 2, 3, 3, 4, 5, 6]))
    h0 = np.exp(rng.uniform(h_lo, h_hi) if rng.random() < 0.7 else rng.uniform((h_lo + h_hi) / 2, h_hi))
    feet = horizon + h0 / k
    x = rng.uniform(-0.05, 1.05) * W
    step = rng.choice([-1, 1])
    for _ in range(size):
      f = feet + rng.normal(0, 0.04) * h0 / k * 3
      items.append((f, "person", x))
      x += step * rng.uniform(0.2, 0.8) * ASPECT * h0
  for _ in range(int(rng.integers(2, 6))):  # single people
    h0 = np.exp(rng.uniform(h_lo, h_hi))
    items.append((horizon + h0 / k, "person", rng.uniform(-0.05, 1.05) * W))
  for _ in range(int(rng.integers(0, 3))):  # far-away crowds (ignore regions)
    items.append((horizon + rng.uniform(6, 14) / k, "group", rng.uniform(0, 0.9) * W))
  for _ in range(int(rng.integers(1, 5))):  # occluders
    kind = str(rng.choice(["car", "car", "bush", "pole"]))
    h0 = np.exp(rng.uniform(np.log(20), h_hi))
    items.append((horizon + h0 / k, kind, rng.uniform(-0.1, 1.0) * W))
  items.sort(key=lambda it: it[0])

  light = rng.uniform(-0.15, 0.15)
  max_h = MAX_HEIGHT_FRACTION * H
  for feet, kind, x in items:
    ph = k * (feet - horizon)  # height a person would have here
    if kind == "person":
      labels, feet_x, head = person_silhouette(rng, np.clip(ph * rng.uniform(0.9, 1.08), MIN_HEIGHT, max_h))
      ox, oy = int(round(x - feet_x)), int(round(feet - labels.shape[0] + 2))
      _paste(canvas, owner, labels, _palette(rng), light, ox, oy, len(entities))
      entities.append({"tag": "person", "labels": labels, "ox": ox, "oy": oy, "head": head})
    elif kind == "group":
      labels = group_silhouette(rng, ph)
      pal = np.stack([_palette(rng) for _ in range(3)]).mean(0)
      ox, oy = int(round(x)), int(round(feet - labels.shape[0] + 2))
      _paste(canvas, owner, labels, pal, 0.0, ox, oy, len(entities))
      entities.append({"tag": "mask", "labels": labels, "ox": ox, "oy": oy, "head": None})
    else:
      size = {"car": 0.75, "bush": rng.uniform(0.3, 0.55), "pole": rng.uniform(1.6, 2.4)}[kind]
      labels = _occluder(rng, kind, ph * size)
      pal = np.zeros((_NUM_PARTS, 3), np.float32)
      pal[1], pal[2], pal[3] = _hsv(rng), _hsv(rng, (0.5, 0.7), (0.1, 0.4), (0.1, 0.4)), (25, 25, 25)
      if kind == "bush":
        pal[1] = _hsv(rng, (0.2, 0.4), (0.4, 0.8), (0.2, 0.5))
      ox, oy = int(round(x)), int(round(feet - labels.shape[0] + 2))
      _paste(canvas, owner, labels, pal, light, ox, oy, -1)

  # Sensor noise, then annotations from the final ownership map.
  canvas += 3.0 * rng.standard_normal((H, W, 1), dtype=np.float32)
  image = (np.clip(canvas, 0.0, 255.0, out=canvas) + 0.5).astype(np.uint8)
  return {"image": image, **annotate(entities, owner)}


def annotate(entities, owner: np.ndarray) -> dict:
  """Boxes of the rendered entities from the final ownership map.

  entities: list of {"tag", "labels" (h, w) silhouette canvas (> 0 on the entity), "ox", "oy" (canvas
  offset in the image), "head" ([x, y, w, h] in the canvas or None)}; owner (H, W) int: index of the
  entity that owns each pixel (-1 none). Entities below MIN_VISIBLE_FRACTION are left out.
  Returns {"fbox", "vbox", "hbox", "tag", "ignore", "visible_fraction"} as render_scene.
  """
  H, W = owner.shape
  fbox, vbox, hbox, tags, vis = [], [], [], [], []
  for i, e in enumerate(entities):
    labels, ox, oy = e["labels"], e["ox"], e["oy"]
    h, w = labels.shape
    x0, y0, x1, y1 = max(ox, 0), max(oy, 0), min(ox + w, W), min(oy + h, H)
    if x0 >= x1 or y0 >= y1:
      continue
    visible = owner[y0:y1, x0:x1] == i
    frac = np.count_nonzero(visible) / max(np.count_nonzero(labels), 1)
    if frac < MIN_VISIBLE_FRACTION:
      continue
    fb = _tight_box(labels > 0, ox, oy)
    fbox.append(fb)
    vbox.append(_tight_box(visible, x0, y0))
    hbox.append([e["head"][0] + ox, e["head"][1] + oy, e["head"][2], e["head"][3]] if e["head"] else fb)
    tags.append(e["tag"])
    vis.append(frac)
  as_boxes = lambda b: np.asarray(b, np.float32).reshape(-1, 4)
  return {"fbox": as_boxes(fbox), "vbox": as_boxes(vbox), "hbox": as_boxes(hbox), "tag": tags,
          "ignore": np.array([t != "person" for t in tags], bool), "visible_fraction": np.asarray(vis, np.float32)}


def encode_jpeg(image: np.ndarray) -> bytes:
  """uint8 (H, W, 3) RGB -> JPEG bytes (PIL, quality JPEG_QUALITY): the stored form of a synthetic image."""
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format="JPEG", quality=JPEG_QUALITY)
  return buf.getvalue()


def decode_image(data: bytes) -> np.ndarray:
  """Encoded image bytes -> uint8 (H, W, 3) RGB (PIL; matches tf.io.decode_jpeg with INTEGER_ACCURATE)."""
  return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def render_example(split: str, index: int, base_seed: int, height: int, width: int) -> dict:
  """Synthetic image `index` of `split` as stored: {"id", "index", "jpeg": bytes, "height", "width",
  "fbox", "vbox", "hbox" (N, 4) xywh, "tag", "ignore", "visible_fraction"}. Both data sources use it."""
  scene = render_scene(scene_seed(split, index, base_seed), height, width)
  out = {k: v for k, v in scene.items() if k != "image"}
  out.update({"id": image_id(split, index), "index": index, "jpeg": encode_jpeg(scene["image"]),
              "height": int(height), "width": int(width)})
  return out


def ordered_map(fn, items, workers: int = 1, window: int = 64):
  """Yield fn(item) for each item of the (possibly endless) iterable, in order. With workers > 1 the
  calls run in that many spawned processes, at most `window` ahead of the consumer. A worker that
  dies raises BrokenProcessPool here instead of hanging (e.g. a script without a __main__ guard)."""
  if workers <= 1:
    yield from map(fn, items)
    return
  with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
    pending = collections.deque()
    for item in items:
      pending.append(pool.submit(fn, item))
      if len(pending) >= window:
        yield pending.popleft().result()
    while pending:
      yield pending.popleft().result()


def render_examples(split: str, indices, base_seed: int, height: int, width: int, workers: int = 1):
  """Yield render_example(split, i, ...) for i in `indices`, in order, in `workers` processes."""
  render = functools.partial(render_example, split, base_seed=base_seed, height=height, width=width)
  yield from ordered_map(render, indices, workers)


def load_example(job):
  """Numpy-source worker: (split, index, base_seed, height, width[, box key]) -> (index, uint8 (H, W, 3)
  image as stored (JPEG round trip), the boxes of the key ("fbox" (default), "vbox" or "hbox") as xyxy
  float32 (N, 4), classes int32 (N,) with -1 = ignore); None -> None."""
  if job is None:
    return None
  split, index, base_seed, height, width, *key = job
  ex = render_example(split, index, base_seed, height, width)
  xywh = np.asarray(ex[key[0] if key else "fbox"], np.float32).reshape(-1, 4)
  boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
  return index, decode_image(ex["jpeg"]), boxes, np.where(ex["ignore"], -1, 0).astype(np.int32)


# ---------------------------------------------------------------------------------------------------
# Statistics.


def _iou_xywh(b):
  """(N, 4) xywh -> (N, N) IoU."""
  x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
  iw = np.clip(np.minimum(x2[:, None], x2[None]) - np.maximum(x1[:, None], x1[None]), 0, None)
  ih = np.clip(np.minimum(y2[:, None], y2[None]) - np.maximum(y1[:, None], y1[None]), 0, None)
  inter = iw * ih
  area = b[:, 2] * b[:, 3]
  union = area[:, None] + area[None] - inter
  return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def dataset_statistics(records) -> dict:
  """Crowd statistics of rendered scenes (render_scene outputs; image size from "image" or
  "height"/"width"): people and ignore regions per image, occlusion, pairwise overlap, sizes."""
  n_img = len(records)
  people, ignores, pairs, imgs_with_pair, outside = 0, 0, 0, 0, 0
  vis, heights, aspects = [], [], []
  for r in records:
    H, W = (r["image"].shape[:2] if "image" in r else (r["height"], r["width"]))
    person = ~np.asarray(r["ignore"], bool)
    fb = np.asarray(r["fbox"], np.float32)[person]
    people += len(fb)
    ignores += int((~person).sum())
    vis.append(np.asarray(r["visible_fraction"])[person])
    heights.append(fb[:, 3])
    aspects.append(fb[:, 2] / fb[:, 3])
    iou = np.triu(_iou_xywh(fb), 1)
    p = int((iou > 0.5).sum())
    pairs += p
    imgs_with_pair += p > 0
    outside += int(((fb[:, 0] < 0) | (fb[:, 1] < 0) | (fb[:, 0] + fb[:, 2] > W) | (fb[:, 1] + fb[:, 3] > H)).sum())
  vis, heights, aspects = np.concatenate(vis), np.concatenate(heights), np.concatenate(aspects)
  rel_h = heights / float(H) if n_img else heights
  return {
      "num_images": n_img,
      "people_per_image": people / max(n_img, 1),
      "ignore_per_image": ignores / max(n_img, 1),
      "frac_visible_below_0.65": float((vis < 0.65).mean()) if vis.size else 0.0,
      "mean_visible_fraction": float(vis.mean()) if vis.size else 0.0,
      "pairs_iou_above_0.5_per_image": pairs / max(n_img, 1),
      "frac_images_with_pair_iou_above_0.5": imgs_with_pair / max(n_img, 1),
      "frac_people_outside_image": outside / max(people, 1),
      "mean_aspect": float(aspects.mean()) if aspects.size else 0.0,
      "height_min": float(heights.min()) if heights.size else 0.0,
      "height_median": float(np.median(heights)) if heights.size else 0.0,
      "height_max_fraction": float(rel_h.max()) if heights.size else 0.0,
  }
