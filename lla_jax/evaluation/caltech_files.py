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

The evaluator reads bbGt numbers as integers (bbGt's %d). The format converter (convert.py) reads and writes the
same text through `bbgt_rows(..., integers=False)`, `read_rows(..., typed=True)`, `bbgt_text(..., rounded=False)`
and `number_text`, which keep each number as written (an int stays an int, a float keeps its digits).
"""
from __future__ import annotations

import os
import re
import warnings

import numpy as np

from lla_jax.evaluation import InputError
from lla_jax.evaluation import text as text_files

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
  for n, line in text_files.lines(path):
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

def number_text(x) -> str:
  """A number as convert.py writes it: an int (Python or numpy) as an int, anything else by float repr."""
  return str(int(x)) if isinstance(x, (int, np.integer)) and not isinstance(x, bool) else repr(float(x))


def _typed_number(token: str, where: str, field: str):
  """A token as written: an int for an integer literal, else a finite float; errors name where and field."""
  if re.fullmatch(r"[-+]?\d+", token):
    return int(token)
  try:
    value = float(token)
  except ValueError:
    value = None
  if value is None or not np.isfinite(value):
    raise InputError(f"{where}: {token!r} is not a finite number (field '{field}')")
  return value


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
  return parse_bbgt(text_files.read_text(path), path)


def bbgt_rows(text: str, path: str, integers: bool = True):
  """(version, labels, rows of 11 numbers 'x y w h occ xv yv wv hv ign ang' (0 for the fields the version lacks),
  1-based line numbers) of bbGt text. integers: every number must be an integer (bbGt reads %d; a float with an
  integer value is taken); else numbers are kept as written (int or float, finite). Errors name path:line."""
  lines = text.splitlines()
  version, start = 0, 0
  if lines and lines[0].lstrip().startswith("%"):
    m = re.match(r"^%\s*bbGt\s+version\s*=\s*(\S+)\s*$", lines[0].strip())
    if m is None or m.group(1) not in ("0", "1", "2", "3"):
      raise InputError(f"{path}:1: expected the header '% bbGt version=V' with V in 0..3, got {lines[0]!r}")
    version, start = int(m.group(1)), 1
  m = BBGT_FIELDS[version]
  labels, rows, numbers, pad = [], [], [], [0] * (12 - m)
  for n in range(start, len(lines)):
    tokens = lines[n].split()
    if not tokens:
      continue
    if len(tokens) != m:
      raise InputError(f"{path}:{n + 1}: expected {m} fields for bbGt version {version} "
                       f"('lbl {' '.join(_FIELD_NAMES[:m - 1])}'), got {len(tokens)}")
    labels.append(tokens[0])
    numbers.append(n + 1)
    if not integers:
      rows.append([_typed_number(t, f"{path}:{n + 1}", _FIELD_NAMES[k]) for k, t in enumerate(tokens[1:])] + pad)
      continue
    try:
      rows.append([int(t) for t in tokens[1:]] + pad)
    except ValueError:
      rows.append([_integer(t, f"{path}:{n + 1}", _FIELD_NAMES[k]) for k, t in enumerate(tokens[1:])] + pad)
  return version, labels, rows, numbers


def _objects(labels, rows) -> dict:
  a = np.asarray(rows, np.float64).reshape(-1, 11)
  return {"label": labels, "bb": a[:, 0:4], "occ": a[:, 4], "bbv": a[:, 5:9], "ign": a[:, 9], "ang": a[:, 10]}


def parse_bbgt(text: str, source: str = "bbGt text") -> dict:
  """bbGt text -> {"version", "label": list of str, "bb" (N, 4), "occ" (N,), "bbv" (N, 4), "ign" (N,), "ang" (N,)}
  (float64 arrays of integers; ign / ang 0 when the version lacks them), file order. Errors name `source`:line."""
  version, labels, rows, _ = bbgt_rows(text, source)
  return {"version": version, **_objects(labels, rows)}


def _per_object(values, width: int) -> list:
  """Per-object numbers -> a list of lists of `width` numbers as given (numpy arrays through tolist)."""
  if isinstance(values, np.ndarray):
    return values.reshape(-1, width).tolist()
  return [np.ravel(v).tolist() if isinstance(v, np.ndarray) else list(v) if width > 1 else [v] for v in values]


def bbgt_text(labels, bb, occ=None, bbv=None, ign=None, ang=None, rounded: bool = True) -> str:
  """bbGt version 3 text of N objects. rounded (bbSave): boxes, visible boxes and angles rounded to integers as
  MATLAB's round() does; else every number written as given (number_text: ints as ints, floats by repr)."""
  n = len(bb)
  cols = [[[0] * w] * n if v is None else _per_object(v, w) for v, w in ((bb, 4), (occ, 1), (bbv, 4), (ign, 1),
                                                                           (ang, 1))]
  if not all(len(c) == n for c in cols) or len(labels) != n:
    raise ValueError(f"bbgt_text: {len(labels)} labels, {n} boxes, {len(cols[1])} occ, {len(cols[2])} bbv, "
                     f"{len(cols[3])} ign, {len(cols[4])} ang")
  out = ["% bbGt version=3"]
  for k in range(n):
    nums = [x for c in cols for x in c[k]]
    if rounded:
      # MATLAB round(): halves away from zero.
      a = np.asarray(nums, np.float64)
      text = [str(int(v)) for v in np.sign(a) * np.floor(np.abs(a) + 0.5)]
    else:
      text = [number_text(v) for v in nums]
    out.append(" ".join([str(labels[k])] + text))
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
    """per_image: a list (one entry per image, evaluation order) of parse_bbgt-like dicts."""
    image, labels, rows = [], [], []
    for i, o in enumerate(per_image):
      n = len(o["label"])
      image += [i] * n
      labels += list(o["label"])
      rows += np.concatenate([np.reshape(o["bb"], (n, 4)), np.reshape(o["occ"], (n, 1)), np.reshape(o["bbv"], (n, 4)),
                              np.reshape(o["ign"], (n, 1)), np.reshape(o["ang"], (n, 1))], axis=1).tolist()
    return cls._from_rows(len(per_image), image, labels, rows)

  @classmethod
  def _from_rows(cls, n_images, image, labels, rows):
    keep = np.asarray([lbl in LABELS for lbl in labels], bool).reshape(-1)
    o = _objects(labels, rows)
    return cls(n_images, np.asarray(image, np.int64).reshape(-1)[keep],
               np.asarray([lbl == "ignore" for lbl in labels], bool).reshape(-1)[keep], o["bb"][keep], o["occ"][keep],
               o["bbv"][keep], o["ign"][keep], o["ang"][keep])


def load_gt_dir(anno_dir, frames) -> GroundTruth:
  """ANNO_DIR/setSS_VVVV_IFFFFF.txt of every frame (a missing file is an error, as in bbGt bbLoad)."""
  anno_dir = os.fspath(anno_dir)
  image, labels, rows = [], [], []
  for i, key in enumerate(frames):
    path = os.path.join(anno_dir, frame_name(*key) + ".txt")
    try:
      text = text_files.read_text(path)
      if not text.strip():   # a truncated or unwritten file, not an image without people
        raise InputError(f"{path}: empty file; expected a bbGt file starting with the line '% bbGt version=3' (an "
                         "image without people has a file with the header line only)")
    except FileNotFoundError:
      raise InputError(f"{path}: no annotation file for frame {frame_name(*key)} (every evaluated frame needs "
                       "one; an image without people has a file with the header line only)") from None
    _, lbl, r, _ = bbgt_rows(text, path)
    image += [i] * len(lbl)
    labels += lbl
    rows += r
  return GroundTruth._from_rows(len(frames), image, labels, rows)


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


def _form(columns: int) -> str:
  return "frame+1 x y w h score" if columns == 6 else "x y w h score"


def read_rows(path, columns: int, typed: bool = False):
  """Rows of a numeric text file (whitespace or comma separated; blank lines skipped). Default: a (K, columns)
  float64 array (the evaluator's fast path); typed: [(1-based line number, [numbers as written: int or float])].
  A row with another field count or a number that is not finite raises naming the line."""
  path = os.fspath(path)
  text = text_files.read_text(path).replace(",", " ")  # UTF-8 (BOM dropped); other encodings refused by name
  lines = text.splitlines()
  if not typed:
    if not text.strip():
      return np.zeros((0, columns))
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      try:
        rows = np.loadtxt(lines, dtype=np.float64, ndmin=2, comments=None)
      except ValueError:
        rows = None
    if rows is not None and rows.shape[1] == columns and np.isfinite(rows).all():
      return rows
  out = []
  for n, line in enumerate(lines, 1):
    t = line.split()
    if not t:
      continue
    if len(t) != columns:
      raise InputError(f"{path}:{n}: expected {columns} numbers ({_form(columns)}), got {len(t)} fields")
    out.append((n, [_typed_number(token, f"{path}:{n}", _form(columns).split()[k]) for k, token in enumerate(t)]))
  if typed:
    return out
  raise InputError(f"{path}: could not be read as rows of {columns} numbers ({_form(columns)})")


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
  videos = {}  # (set, video) -> [(frame, image index)]
  for i, (s, v, f) in enumerate(frames):
    videos.setdefault((s, v), []).append((f, i))
  layout = detection_layout(dt_dir, frames)
  images, boxes, rounded = [], [], []
  for (s, v), kind in layout.items():
    base = os.path.join(dt_dir, f"set{s:02d}", f"V{v:03d}")
    if kind == "video":
      rows = read_rows(base + ".txt", 6)
      lut = np.full(max(f for f, _ in videos[(s, v)]) + 2, -1, np.int64)
      for f, i in videos[(s, v)]:
        lut[f + 1] = i
      col = rows[:, 0]
      known = (col == np.floor(col)) & (col >= 0) & (col < len(lut))  # rows of other frames match nothing
      img = np.where(known, lut[np.where(known, col, 0).astype(np.int64)], -1)
      images.append(img[img >= 0])
      boxes.append(rows[img >= 0, 1:6])
      rounded.append(np.zeros(int((img >= 0).sum()), bool))
      continue
    for f, i in videos[(s, v)]:
      path = os.path.join(base, f"I{f:05d}.txt")
      if not os.path.isfile(path):
        raise InputError(f"{path}: missing detection file of frame {frame_name(s, v, f)} (the per-frame layout "
                         "needs one file per evaluated frame; an empty file means no detections)")
      rows = read_rows(path, 5)
      images.append(np.full(len(rows), i, np.int64))
      boxes.append(rows)
      rounded.append(np.ones(len(rows), bool))
  if not images:
    return Detections(np.zeros(0), np.zeros((0, 4)), np.zeros(0))
  image, rows, rounded = np.concatenate(images), np.concatenate(boxes), np.concatenate(rounded)
  negative = np.flatnonzero((rows[:, 2:4] < 0).any(axis=1))
  if negative.size:   # reversed corners: x2 < x1 written as a negative width
    s, v, f = frames[image[negative[0]]]
    name = f"V{v:03d}.txt" if layout[(s, v)] == "video" else os.path.join(f"V{v:03d}", f"I{f:05d}.txt")
    where = os.path.join(dt_dir, f"set{s:02d}", name)
    raise InputError(f"{where}: a detection of frame {frame_name(s, v, f)} has a negative width or height (x y w h "
                     f"{' '.join(f'{x:g}' for x in rows[negative[0], :4])}); expected x y w h score with w, h >= 0 (a "
                     "box as x y w h, not two corners)")
  rows[rounded] = round_significant(rows[rounded])  # dbEval's dlmwrite consolidation of per-frame files
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
