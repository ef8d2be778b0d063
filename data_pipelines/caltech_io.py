"""Caltech Pedestrian raw files, numpy only (no TensorFlow): Norpix .seq videos, .vbb video annotations and the
bbGt text annotations of the new-annotation release; the standard frame sampling; synthetic crowds in the Caltech
layout.

  SeqFile(path)      frames by index as their raw JPEG bytes (pdollar toolbox videos/seqReaderPlugin.m): the
                     1024-byte little-endian header is checked (magic 0xFEED, "Norpix seq", header size 1024, 8-bit,
                     JPEG image format 102 / 201), records are 'uint32 n, JPEG (n - 4 bytes), timestamp, padding'
                     with 8 or 16 bytes after the image, found out on the second frame as the toolbox does
  read_vbb(path)     the .vbb MAT-file (Caltech code 3.2.1 vbb.m, version 1.4): nFrame, object labels, per frame
                     the objects' id, pos, posv, occl, lock
  read_bbgt(path)    one bbGt text file (lla_jax.evaluation.caltech_files)
  vbb_frame_bbgt     a .vbb frame as the bbGt text dbExtract / vbbToFiles writes (round(pos), round(posv), occl)
  sampled_frames     the frames dbEval / dbExtract use: skip - 1, 2 skip - 1, ... <= nFrame - 1

Every error names the file and the frame, field or line (ValueError; bbGt errors are InputError, a ValueError).
"""
from __future__ import annotations

import io
import os
import struct

import numpy as np

from lla_jax.evaluation.caltech_files import (InputError, bbgt_text, frame_name, parse_bbgt,  # noqa: F401
                                              parse_frame_name, read_bbgt, write_detections)

TRAIN_SETS = tuple(range(0, 6))   # set00-set05 (UsaTrain)
TEST_SETS = tuple(range(6, 11))   # set06-set10 (UsaTest)
HEADER_SIZE = 1024
JPEG_FORMATS = (102, 201)         # imageFormat of JPEG-compressed .seq files (mono / colour writer codes)
SEQ_MAGIC = 0xFEED
SEQ_NAME = "Norpix seq"
VBB_FIELDS = ("nFrame", "objLists", "objLbl")            # what the readers need from the struct A
VBB_OBJECT_FIELDS = ("id", "pos", "occl", "lock", "posv")


def sampled_frames(num_frames: int, skip: int) -> list[int]:
  """0-based frames skip-1, 2 skip-1, ... <= num_frames-1 (dbEval l.286, dbExtract): skip 30 = test / train 1x,
  skip 3 = train 10x."""
  return list(range(skip - 1, int(num_frames), skip))


# ------------------------------------------------------------------------------------------------------ .seq

class SeqFile:
  """A Norpix .seq video of JPEG frames. Attributes: path, width, height, image_format, num_frames, fps (header
  value), extra (bytes after each image: 8 or 16), offsets (num_frames,) record starts. frame(i) -> JPEG bytes,
  timestamp(i) -> seconds. The seek table is built by one scan at open; a truncated file raises naming the frame."""

  def __init__(self, path):
    self.path = os.fspath(path)
    self.size = os.path.getsize(self.path)
    with open(self.path, "rb") as f:
      header = f.read(HEADER_SIZE)
    self._check_header(header)
    self._scan()

  def _fail(self, message):
    return ValueError(f"{self.path}: {message}")

  def _check_header(self, h):
    if len(h) < HEADER_SIZE:
      raise self._fail(f"truncated header ({len(h)} of {HEADER_SIZE} bytes); not a Norpix .seq file")
    magic = struct.unpack_from("<I", h, 0)[0]
    name = h[4:24].decode("utf-16-le", errors="replace")
    if magic != SEQ_MAGIC or name != SEQ_NAME:
      raise self._fail(f"not a Norpix .seq file (magic {magic:#x}, name {name!r}; expected {SEQ_MAGIC:#x}, "
                       f"{SEQ_NAME!r})")
    self.version, header_size = struct.unpack_from("<iI", h, 28)
    if header_size != HEADER_SIZE:
      raise self._fail(f"header size {header_size}, expected {HEADER_SIZE}")
    (self.width, self.height, depth, depth_real, self.image_size_bytes, self.image_format, self.header_frames,
     _, self.true_image_size) = struct.unpack_from("<9I", h, 548)
    self.fps = struct.unpack_from("<d", h, 584)[0]
    if depth_real != 8:
      raise self._fail(f"imageBitDepthReal {depth_real}, expected 8")
    if self.image_format not in JPEG_FORMATS:
      raise self._fail(f"imageFormat {self.image_format}: only JPEG videos ({' or '.join(map(str, JPEG_FORMATS))}) "
                       "are read, as Caltech ships")

  def _scan(self):
    offsets, lengths = [], []
    pos, extra = HEADER_SIZE, 8
    with open(self.path, "rb") as f:
      while self.header_frames == 0 or len(offsets) < self.header_frames:
        i = len(offsets)
        if self.header_frames == 0 and pos + 4 > self.size:
          break
        f.seek(pos)
        raw = f.read(4)
        if len(raw) < 4:
          raise self._fail(f"truncated at frame {i} (the header says {self.header_frames} frames, the file ends "
                           f"at byte {self.size})")
        n = struct.unpack("<I", raw)[0]
        if n < 4 or pos + n + 6 > self.size:
          raise self._fail(f"truncated or corrupt at frame {i}: a record of {n} bytes at byte {pos} does not fit "
                           f"in the file ({self.size} bytes)")
        offsets.append(pos)
        lengths.append(n)
        if i == 0 and pos + n + 12 <= self.size:
          # seqReaderPlugin: assume 8 bytes after the image; a zero there means the 16-byte layout.
          f.seek(pos + n + 8)
          extra = 16 if struct.unpack("<I", f.read(4))[0] == 0 else 8
        pos += n + extra
    if not offsets:
      raise self._fail("no frames")
    self.extra = extra
    self.offsets = np.asarray(offsets, np.int64)
    self.lengths = np.asarray(lengths, np.int64)
    self.num_frames = len(offsets)

  def __len__(self):
    return self.num_frames

  def _index(self, i):
    if not 0 <= i < self.num_frames:
      raise IndexError(f"{self.path}: frame {i} out of range (0..{self.num_frames - 1})")
    return int(self.offsets[i]), int(self.lengths[i])

  def frame(self, i: int) -> bytes:
    """The raw JPEG bytes of 0-based frame i (dbExtract writes these unchanged); not a JPEG raises."""
    pos, n = self._index(i)
    with open(self.path, "rb") as f:
      f.seek(pos + 4)
      data = f.read(n - 4)
    if not (data[:2] == b"\xff\xd8" and data.rstrip(b"\x00")[-2:] == b"\xff\xd9"):
      raise self._fail(f"frame {i} is not a JPEG (starts {data[:4].hex()}, ends {data[-4:].hex()})")
    return data

  def timestamp(self, i: int) -> float:
    """Seconds of frame i: int32 seconds + uint16 milliseconds / 1000 after the image."""
    pos, n = self._index(i)
    with open(self.path, "rb") as f:
      f.seek(pos + n)
      sec, ms = struct.unpack("<iH", f.read(6))
    return sec + ms / 1000


def jpeg_size(data: bytes, where: str) -> tuple[int, int]:
  """(height, width) of JPEG bytes after a full decode (PIL); a corrupt image raises naming `where`."""
  from PIL import Image
  try:
    with Image.open(io.BytesIO(data)) as im:
      if im.format != "JPEG":
        raise OSError(f"format {im.format}")
      im.load()
      return im.height, im.width
  except (OSError, SyntaxError, ValueError) as e:
    raise ValueError(f"{where}: the JPEG cannot be decoded ({e})") from None


# ------------------------------------------------------------------------------------------------------ .vbb

def _text(value) -> str:
  a = np.asarray(value).reshape(-1)
  return "".join(str(x) for x in a) if a.dtype.kind == "U" else str(a[0]) if a.size else ""


def read_vbb(path) -> dict:
  """A .vbb annotation file -> {"num_frames", "labels": [str] per object id (1-based ids index labels[id - 1]),
  "frames": list of num_frames dicts {"id" (k,) int, "label" [str], "pos" (k, 4), "posv" (k, 4), "occl" (k,),
  "lock" (k,)} in list order}. A missing variable or field raises naming the file and the field."""
  from scipy.io import loadmat
  from scipy.io.matlab import MatReadError
  path = os.fspath(path)
  try:
    mat = loadmat(path)
  except (MatReadError, ValueError, OSError) as e:
    raise ValueError(f"{path}: not a MATLAB MAT-file ({e})") from None
  if "A" not in mat:
    raise ValueError(f"{path}: no variable 'A' (a .vbb file holds the struct A and vers)")
  a = mat["A"]
  names = a.dtype.names or ()
  for field in VBB_FIELDS:
    if field not in names:
      raise ValueError(f"{path}: the struct A has no field '{field}' (fields: {', '.join(names) or 'none'})")
  a = a[0, 0]
  n_frame = int(np.asarray(a["nFrame"]).reshape(-1)[0])
  labels = [_text(v) for v in np.asarray(a["objLbl"]).reshape(-1)]
  lists = np.asarray(a["objLists"]).reshape(-1)
  if len(lists) != n_frame:
    raise ValueError(f"{path}: objLists has {len(lists)} entries, nFrame is {n_frame}")
  frames = []
  for f, objs in enumerate(lists):
    objs = np.asarray(objs)
    if objs.size == 0:
      frames.append({"id": np.zeros(0, np.int64), "label": [], "pos": np.zeros((0, 4)), "posv": np.zeros((0, 4)),
                     "occl": np.zeros(0), "lock": np.zeros(0)})
      continue
    onames = objs.dtype.names or ()
    for field in VBB_OBJECT_FIELDS:
      if field not in onames:
        raise ValueError(f"{path}: frame {f} (objLists{{{f + 1}}}) has no field '{field}' (fields: "
                         f"{', '.join(onames) or 'none'})")
    objs = objs.reshape(-1)
    ids = np.asarray([int(np.asarray(o["id"]).reshape(-1)[0]) for o in objs], np.int64)
    if ids.min() < 1 or ids.max() > len(labels):
      raise ValueError(f"{path}: frame {f}: object id {int(ids.max() if ids.max() > len(labels) else ids.min())} "
                       f"has no label (objLbl holds {len(labels)})")
    box = lambda key: np.asarray([np.asarray(o[key], np.float64).reshape(-1) for o in objs]).reshape(-1, 4)
    try:
      pos, posv = box("pos"), box("posv")
    except ValueError:
      raise ValueError(f"{path}: frame {f}: pos / posv must be [l t w h] per object") from None
    frames.append({"id": ids, "label": [labels[i - 1] for i in ids], "pos": pos, "posv": posv,
                   "occl": np.asarray([float(np.asarray(o["occl"]).reshape(-1)[0]) for o in objs]),
                   "lock": np.asarray([float(np.asarray(o["lock"]).reshape(-1)[0]) for o in objs])})
  return {"num_frames": n_frame, "labels": labels, "frames": frames}


def vbb_frame_bbgt(frame: dict) -> str:
  """A .vbb frame as vbbToFiles exports it (bbGt v3: bb = round(pos), bbv = round(posv), occ = occl, ign 0, ang 0)."""
  return bbgt_text(frame["label"], frame["pos"], frame["occl"], frame["posv"])


# ------------------------------------------------------------------------------------------- synthetic crowds

def synthetic_frames(num_images: int, per_video: int = 60, set_id: int = 6) -> list[tuple[int, int, int]]:
  """Caltech names for synthetic images 0..n-1: set06 (by default), V000 holding the first per_video images, ...,
  frames 29, 59, ... (the test sampling)."""
  return [(set_id, i // per_video, 29 + 30 * (i % per_video)) for i in range(num_images)]


def synthetic_bbgt(example: dict) -> str:
  """bbGt text of one rendered synthetic image (synthetic.render_example): 'person' with occ = 1 and bbv = the
  visible box where the visible box differs from the full box; ignore regions as 'ignore' with ign = 1."""
  fbox = np.asarray(example["fbox"], np.float64).reshape(-1, 4)
  vbox = np.asarray(example["vbox"], np.float64).reshape(-1, 4)
  ignore = np.asarray(example["ignore"], bool).reshape(-1)
  occluded = ~ignore & (np.abs(vbox - fbox).max(axis=1, initial=0) > 0.5)
  labels = ["ignore" if ig else "person" for ig in ignore]
  return bbgt_text(labels, fbox, occluded, np.where(occluded[:, None], vbox, 0), ignore)


def export_synthetic(out_dir, split: str = "val", num_images: int = 60, height: int = 480, width: int = 640,
                     base_seed: int = 0, detections=None, layout: str = "video") -> dict:
  """Writes a synthetic-crowds split in the Caltech layout: OUT/annotations/setSS_VVVV_IFFFFF.txt (bbGt),
  OUT/frames.txt (evaluation order) and, with `detections` (a list per image of (boxes (K, 4) [x y w h],
  scores (K,)), or "oracle" for the GT person boxes with score 1), OUT/detections/ in `layout`. Returns the
  paths {"gt", "frames", "dt"} for python -m lla_jax.evaluation caltech (use --bounds none or
  5,5,W-5,H-5 for render sizes other than 640x480)."""
  from data_pipelines import synthetic
  out_dir = os.fspath(out_dir)
  frames = synthetic_frames(num_images)
  anno = os.path.join(out_dir, "annotations")
  os.makedirs(anno, exist_ok=True)
  image, boxes, scores = [], [], []
  for i, ex in enumerate(synthetic.render_examples(split, range(num_images), base_seed, height, width)):
    with open(os.path.join(anno, frame_name(*frames[i]) + ".txt"), "w", encoding="utf-8") as f:
      f.write(synthetic_bbgt(ex))
    if detections is not None:
      if isinstance(detections, str) and detections == "oracle":
        keep = ~np.asarray(ex["ignore"], bool)
        b, s = np.asarray(ex["fbox"], np.float64).reshape(-1, 4)[keep], np.ones(int(keep.sum()))
      else:
        b, s = (np.asarray(detections[i][0], np.float64).reshape(-1, 4),
                np.asarray(detections[i][1], np.float64).reshape(-1))
      image.append(np.full(len(b), i))
      boxes.append(b)
      scores.append(s)
  frames_path = os.path.join(out_dir, "frames.txt")
  with open(frames_path, "w", encoding="utf-8") as f:
    f.writelines(frame_name(*key) + "\n" for key in frames)
  out = {"gt": anno, "frames": frames_path, "dt": None}
  if detections is not None:
    out["dt"] = os.path.join(out_dir, "detections")
    write_detections(out["dt"], frames, np.concatenate(image), np.concatenate(boxes), np.concatenate(scores), layout)
  return out
