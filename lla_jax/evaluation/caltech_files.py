"""Caltech Pedestrian files for the evaluator (numpy only): frame names and lists, bbGt text annotations, and the
two detection layouts of the official dbEval (Dollar et al., code 3.2.1; the new-annotation dbEval of CSP).

  frame names     'set06_V000_I00029' (0-based frame, 5 digits); 'set06_V000_29' is accepted when reading
  bbGt text       '% bbGt version=3' then 'lbl x y w h occ xv yv wv hv ign ang' per object (pdollar toolbox
                  detector/bbGt.m bbLoad / bbSave); V=2 drops 'ang', V=0/1 also 'ign'; numbers are integers
  detections      per video  DET_DIR/setSS/VVVV.txt          rows 'frame+1 x y w h score' (full precision)
                  per frame  DET_DIR/setSS/VVVV/IFFFFF.txt   rows 'x y w h score', one file per listed frame;
                             rounded to 5 significant digits, as dbEval's dlmwrite consolidation does
The layout is chosen per video as dbEval does: the per-video file when it exists, else the per-frame folder.
Every error names the file and line (InputError).
"""
from __future__ import annotations

import os
import re

import numpy as np

from lla_jax.evaluation import InputError

TEST_FRAMES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "caltech_test_frames.txt")
NUM_TEST_FRAMES = 4024
BBGT_FIELDS = {0: 10, 1: 10, 2: 11, 3: 12}  # bbGt version -> fields per object line (label included)
LABELS = ("person", "person?", "people", "ignore")  # the labels dbEval loads (lbls); others are dropped
_NAME = re.compile(r"^set(\d+)_V(\d+)_I?(\d+)(\.[A-Za-z0-9]+)?$")


# ------------------------------------------------------------------------------------------------ frames

def frame_name(set_id: int, video: int, frame: int) -> str:
  """'set06_V000_I00029' for (6, 0, 29); frame is the 0-based video frame."""
  return f"set{set_id:02d}_V{video:03d}_I{frame:05d}"


def parse_frame_name(name: str, where: str = "") -> tuple[int, int, int]:
  """'set06_V000_I00029' (or 'set06_V000_29', an extension or folder allowed) -> (6, 0, 29)."""
  m = _NAME.match(os.path.basename(name.strip()))
  if m is None:
    raise InputError(f"{where or 'frame list'}: {name.strip()!r} is not a Caltech frame name like "
                     "set06_V000_I00029")
  return int(m.group(1)), int(m.group(2)), int(m.group(3))


def load_frames(path=None) -> list[tuple[int, int, int]]:
  """The evaluated frames of a list file (one name per line, blank lines skipped), in file order, which is the
  evaluation order (it decides score ties; dbEval's is sets, videos, frames ascending). Default: the standard
  test list (every 30th frame from frame 29 of set06-set10, 4024 images)."""
  path = TEST_FRAMES_FILE if path is None else os.fspath(path)
  frames, seen = [], set()
  with open(path, encoding="utf-8") as f:
    for n, line in enumerate(f, 1):
      if not line.strip():
        continue
      key = parse_frame_name(line, f"{path}:{n}")
      if key in seen:
        raise InputError(f"{path}:{n}: frame {frame_name(*key)} is listed twice")
      seen.add(key)
      frames.append(key)
  if not frames:
    raise InputError(f"{path}: no frames listed")
  return frames


# ----------------------------------------------------------------------------------------------- bbGt text

def _integer(token: str, where: str, field: str) -> int:
  try:
    return int(token)
  except ValueError:
    pass
  try:
    value = float(token)
  except ValueError:
    value = None
  if value is None or not value.is_integer():
    raise InputError(f"{where}: field '{field}' must be an integer (bbGt reads %d), got {token!r}")
  return int(value)


_FIELD_NAMES = ("x", "y", "w", "h", "occ", "xv", "yv", "wv", "hv", "ign", "ang")


def read_bbgt(path) -> dict:
  """One bbGt text file -> parse_bbgt of its text (errors name the file and line)."""
  path = os.fspath(path)
  with open(path, encoding="utf-8") as f:
    return parse_bbgt(f.read(), path)


def parse_bbgt(text: str, source: str = "bbGt text") -> dict:
  """bbGt text -> {"version", "label": list of str, "bb" (N, 4), "occ" (N,), "bbv" (N, 4), "ign" (N,), "ang" (N,)}
  (float64 arrays of integers; ign / ang 0 when the version lacks them), file order. Errors name `source`:line."""
  path = source
  lines = text.splitlines()
  version, start = 0, 0
  if lines and lines[0].lstrip().startswith("%"):
    m = re.match(r"^%\s*bbGt\s+version\s*=\s*(\S+)\s*$", lines[0].strip())
    if m is None or m.group(1) not in ("0", "1", "2", "3"):
      raise InputError(f"{path}:1: expected the header '% bbGt version=V' with V in 0..3, got {lines[0]!r}")
    version, start = int(m.group(1)), 1
  m = BBGT_FIELDS[version]
  labels, rows = [], []
  for n in range(start, len(lines)):
    tokens = lines[n].split()
    if not tokens:
      continue
    where = f"{path}:{n + 1}"
    if len(tokens) != m:
      raise InputError(f"{where}: expected {m} fields for bbGt version {version} "
                       f"('lbl {' '.join(_FIELD_NAMES[:m - 1])}'), got {len(tokens)}")
    labels.append(tokens[0])
    rows.append([_integer(t, where, _FIELD_NAMES[k]) for k, t in enumerate(tokens[1:])] + [0] * (12 - m))
  a = np.asarray(rows, np.float64).reshape(-1, 11)
  return {"version": version, "label": labels, "bb": a[:, 0:4], "occ": a[:, 4], "bbv": a[:, 5:9],
          "ign": a[:, 9], "ang": a[:, 10]}


def bbgt_text(labels, bb, occ=None, bbv=None, ign=None, ang=None) -> str:
  """bbGt version 3 text (bbSave: boxes, visible boxes and angles rounded to integers) of N objects."""
  bb = np.asarray(bb, np.float64).reshape(-1, 4)
  n = len(bb)
  occ = np.zeros(n) if occ is None else np.asarray(occ, np.float64).reshape(-1)
  bbv = np.zeros((n, 4)) if bbv is None else np.asarray(bbv, np.float64).reshape(-1, 4)
  ign = np.zeros(n) if ign is None else np.asarray(ign, np.float64).reshape(-1)
  ang = np.zeros(n) if ang is None else np.asarray(ang, np.float64).reshape(-1)
  if not (len(labels) == len(occ) == len(bbv) == len(ign) == len(ang) == n):
    raise ValueError(f"bbgt_text: {len(labels)} labels, {n} boxes, {len(occ)} occ, {len(bbv)} bbv, {len(ign)} ign, "
                     f"{len(ang)} ang")
  out = ["% bbGt version=3"]
  for k in range(n):
    # MATLAB round(): halves away from zero.
    nums = np.concatenate([bb[k], [occ[k]], bbv[k], [ign[k]], [ang[k]]])
    nums = np.sign(nums) * np.floor(np.abs(nums) + 0.5)
    out.append(" ".join([str(labels[k])] + [str(int(v)) for v in nums]))
  return "\n".join(out) + "\n"


class GroundTruth:
  """The loaded objects of all evaluated images, concatenated in evaluation order (file order within an image);
  objects whose label dbEval does not load (person-fa, ...) are dropped. n_images, image (N,), is_ignore_label
  (N,) bool, bb (N, 4), occ (N,), bbv (N, 4), ign (N,), ang (N,) float64."""

  def __init__(self, n_images, image, is_ignore_label, bb, occ, bbv, ign, ang):
    self.n_images = int(n_images)
    self.image = np.asarray(image, np.int64)
    self.is_ignore_label = np.asarray(is_ignore_label, bool)
    self.bb, self.occ = np.asarray(bb, np.float64).reshape(-1, 4), np.asarray(occ, np.float64)
    self.bbv, self.ign = np.asarray(bbv, np.float64).reshape(-1, 4), np.asarray(ign, np.float64)
    self.ang = np.asarray(ang, np.float64)

  @classmethod
  def from_objects(cls, per_image):
    """per_image: a list (one entry per image, evaluation order) of read_bbgt-like dicts."""
    parts = {k: [] for k in ("image", "ign_lbl", "bb", "occ", "bbv", "ign", "ang")}
    for i, o in enumerate(per_image):
      keep = np.asarray([lbl in LABELS for lbl in o["label"]], bool)
      parts["image"].append(np.full(int(keep.sum()), i, np.int64))
      parts["ign_lbl"].append(np.asarray([lbl == "ignore" for lbl in o["label"]], bool)[keep])
      for k in ("bb", "occ", "bbv", "ign", "ang"):
        parts[k].append(np.asarray(o[k], np.float64)[keep])
    cat = lambda k, shape: np.concatenate(parts[k]) if parts[k] else np.zeros(shape)
    return cls(len(per_image), cat("image", 0).astype(np.int64), cat("ign_lbl", 0).astype(bool), cat("bb", (0, 4)),
               cat("occ", 0), cat("bbv", (0, 4)), cat("ign", 0), cat("ang", 0))


def load_gt_dir(anno_dir, frames) -> GroundTruth:
  """ANNO_DIR/setSS_VVVV_IFFFFF.txt of every frame (a missing file is an error, as in bbGt bbLoad)."""
  anno_dir = os.fspath(anno_dir)
  per_image = []
  for key in frames:
    path = os.path.join(anno_dir, frame_name(*key) + ".txt")
    if not os.path.isfile(path):
      raise InputError(f"{path}: no annotation file for frame {frame_name(*key)} (every evaluated frame needs "
                       "one; an image without people has a file with the header line only)")
    per_image.append(read_bbgt(path))
  return GroundTruth.from_objects(per_image)


# ------------------------------------------------------------------------------------------------ detections

class Detections:
  """Detections of the evaluated images in file order: image (M,) int64, bbox (M, 4) [x y w h], score (M,)."""

  def __init__(self, image, bbox, score):
    self.image = np.asarray(image, np.int64).reshape(-1)
    self.bbox = np.asarray(bbox, np.float64).reshape(-1, 4)
    self.score = np.asarray(score, np.float64).reshape(-1)


def round_significant(values, digits: int = 5) -> np.ndarray:
  """float(f'{v:.{digits}g}') elementwise (MATLAB dlmwrite's default '%.5g' written and read back), vectorised:
  scaled integer rounding, half to even on the exact binary value; entries near a decimal half-way point or a
  power of ten go through the string conversion itself."""
  v = np.asarray(values, np.float64)
  out = v.copy()
  nz = np.isfinite(v) & (v != 0)
  with np.errstate(divide="ignore"):
    lg = np.log10(np.abs(v), where=nz, out=np.zeros_like(v))
  e = np.floor(lg)
  p = (digits - 1 - e).astype(np.int64)
  safe = nz & (np.abs(lg - np.round(lg)) > 1e-9) & (np.abs(p) <= 22)
  scale = 10.0 ** np.abs(p)
  scaled = np.where(p >= 0, v * scale, v / scale)
  frac = np.abs(scaled - np.floor(scaled) - 0.5)
  safe &= frac > 1e-6  # |scaled| < 1e5: its rounding error is ~1e-11
  n = np.round(scaled)
  out = np.where(safe, np.where(p >= 0, n / scale, n * scale), out)
  for k in np.flatnonzero(nz & ~safe):
    out.flat[k] = float(f"{v.flat[k]:.{digits}g}")
  return out


def _numbers(path, columns):
  """Rows of a numeric text file (whitespace or comma separated; blank lines skipped) -> (rows (K, columns),
  line numbers (K,)); a row with another field count or a non-number names the line."""
  with open(path, encoding="utf-8") as f:
    lines = f.read().replace(",", " ").splitlines()
  tokens, numbers = [], []
  for n, line in enumerate(lines, 1):
    t = line.split()
    if not t:
      continue
    if len(t) != columns:
      form = "frame+1 x y w h score" if columns == 6 else "x y w h score"
      raise InputError(f"{path}:{n}: expected {columns} numbers ({form}), got {len(t)} fields")
    tokens.extend(t)
    numbers.append(n)
  try:
    rows = np.asarray(tokens, np.float64).reshape(-1, columns)
  except ValueError:
    rows = None
  if rows is None or not np.isfinite(rows).all():
    for n in numbers:
      for t in lines[n - 1].split():
        try:
          ok = np.isfinite(float(t))
        except ValueError:
          ok = False
        if not ok:
          raise InputError(f"{path}:{n}: {t!r} is not a finite number")
  return rows, np.asarray(numbers, np.int64)


def detection_layout(dt_dir, frames) -> dict:
  """{(set, video): 'video' | 'frame'}: the per-video file when it exists, else the per-frame folder."""
  out = {}
  for s, v, _ in frames:
    if (s, v) not in out:
      base = os.path.join(os.fspath(dt_dir), f"set{s:02d}", f"V{v:03d}")
      if os.path.isfile(base + ".txt"):
        out[(s, v)] = "video"
      elif os.path.isdir(base):
        out[(s, v)] = "frame"
      else:
        raise InputError(f"{base}.txt: no detections for set{s:02d}/V{v:03d} (neither this per-video file nor "
                         f"the per-frame folder {base}/)")
  return out


def load_detections(dt_dir, frames) -> Detections:
  """Detections of the listed frames from DET_DIR in either layout (module doc), in evaluation order of the
  images and file order within an image. Per-frame files are rounded to 5 significant digits."""
  dt_dir = os.fspath(dt_dir)
  index = {key: i for i, key in enumerate(frames)}
  layout = detection_layout(dt_dir, frames)
  images, boxes = [], []
  for (s, v), kind in layout.items():
    base = os.path.join(dt_dir, f"set{s:02d}", f"V{v:03d}")
    if kind == "video":
      rows, _ = _numbers(base + ".txt", 6)
      wanted = {f + 1: index[(s, v, f)] for (s2, v2, f) in frames if (s2, v2) == (s, v)}
      img = np.asarray([wanted.get(x, -1) if float(x).is_integer() else -1 for x in rows[:, 0].tolist()], np.int64)
      keep = img >= 0
      images.append(img[keep])
      boxes.append(rows[keep, 1:6])
      continue
    for (s2, v2, f) in frames:
      if (s2, v2) != (s, v):
        continue
      path = os.path.join(base, f"I{f:05d}.txt")
      if not os.path.isfile(path):
        raise InputError(f"{path}: missing detection file of frame {frame_name(s, v, f)} (the per-frame layout "
                         "needs one file per evaluated frame; an empty file means no detections)")
      rows, _ = _numbers(path, 5)
      images.append(np.full(len(rows), index[(s, v, f)], np.int64))
      boxes.append(round_significant(rows))
  if not images:
    return Detections(np.zeros(0), np.zeros((0, 4)), np.zeros(0))
  image = np.concatenate(images)
  rows = np.concatenate(boxes)
  order = np.argsort(image, kind="stable")
  return Detections(image[order], rows[order, :4], rows[order, 4])


def write_detections(dt_dir, frames, image, bbox, score, layout: str = "video") -> None:
  """Writes detections (image index into `frames`, bbox (M, 4) [x y w h], score (M,)) as DET_DIR in the per-video
  layout (rows 'frame+1 x y w h score', '%.6f' like CSP / Pedestron; every video of the list gets a file) or the
  per-frame layout (every listed frame gets a file, possibly empty)."""
  image = np.asarray(image, np.int64).reshape(-1)
  rows = np.concatenate([np.asarray(bbox, np.float64).reshape(-1, 4),
                         np.asarray(score, np.float64).reshape(-1, 1)], axis=1)
  if layout not in ("video", "frame"):
    raise ValueError(f"layout must be 'video' or 'frame', got {layout!r}")
  by_image = [[] for _ in frames]
  for i, r in zip(image.tolist(), rows):
    by_image[i].append(r)
  texts = {}
  for i, (s, v, f) in enumerate(frames):
    if layout == "video":
      key = os.path.join(f"set{s:02d}", f"V{v:03d}.txt")
      lines = [" ".join(["%d" % (f + 1)] + ["%.6f" % x for x in r]) for r in by_image[i]]
    else:
      key = os.path.join(f"set{s:02d}", f"V{v:03d}", f"I{f:05d}.txt")
      lines = [" ".join(repr(float(x)) for x in r) for r in by_image[i]]
    texts.setdefault(key, []).extend(lines)
  for key, lines in texts.items():
    path = os.path.join(os.fspath(dt_dir), key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
      f.write("".join(line + "\n" for line in lines))
