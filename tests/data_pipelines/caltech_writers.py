"""Writers of the official Caltech formats for tests (as the pdollar toolbox writes them): Norpix .seq files of JPEG
frames (videos/seqWriterPlugin.m) and .vbb annotation MAT-files (vbb.m, version 1.4, saved as -v6)."""
import io
import struct

import numpy as np
from PIL import Image
from scipy.io import savemat


def jpeg(height=48, width=64, value=0, seed=0):
  """JFIF JPEG bytes of a small noisy picture."""
  rng = np.random.default_rng(seed)
  a = np.clip(rng.normal(value, 40, (height, width, 3)), 0, 255).astype(np.uint8)
  buf = io.BytesIO()
  Image.fromarray(a).save(buf, format="JPEG", quality=85)
  return buf.getvalue()


def seq_bytes(frames, width=64, height=48, fps=30.0, extra=16, image_format=201, num_frames=None,
              magic=0xFEED, header_size=1024, depth_real=8):
  """A .seq file: 1024-byte header, then per frame uint32 (len + 4), the JPEG, int32 s + uint16 ms, zero padding
  up to `extra` bytes after the image. num_frames: the header count (default len(frames); 0 = scan)."""
  h = bytearray(1024)
  struct.pack_into("<I", h, 0, magic)
  h[4:24] = "Norpix seq".encode("utf-16-le")
  struct.pack_into("<iI", h, 28, 3, header_size)
  h[36:36 + len("Caltech test".encode("utf-16-le"))] = "Caltech test".encode("utf-16-le")
  n = len(frames) if num_frames is None else num_frames
  struct.pack_into("<9I", h, 548, width, height, 8, depth_real, width * height * 3, image_format, n, 0,
                   width * height * 3)
  struct.pack_into("<d", h, 584, fps)
  out = bytearray(h)
  for i, data in enumerate(frames):
    t = i / fps
    out += struct.pack("<I", len(data) + 4) + data
    out += struct.pack("<iH", int(t), int(round((t - int(t)) * 1000))) + bytes(extra - 6)
  return bytes(out)


def write_seq(path, frames, **kwargs):
  with open(path, "wb") as f:
    f.write(seq_bytes(frames, **kwargs))
  return str(path)


OBJ_DTYPE = [("id", "O"), ("pos", "O"), ("occl", "O"), ("lock", "O"), ("posv", "O")]


def write_vbb(path, num_frames, labels, objects, drop_field=None):
  """A .vbb file. labels: objLbl (one per object id); objects: {frame (0-based): [(id, pos, posv, occl)]}."""
  lists = np.empty((1, num_frames), dtype=object)
  for f in range(num_frames):
    objs = objects.get(f, [])
    if not objs:
      lists[0, f] = np.zeros((0, 0))
      continue
    fields = [(k, t) for k, t in OBJ_DTYPE if k != drop_field]
    s = np.empty((1, len(objs)), dtype=fields)
    for k, (i, pos, posv, occl) in enumerate(objs):
      values = {"id": float(i), "pos": np.asarray(pos, float).reshape(1, 4), "occl": float(occl), "lock": 0.0,
                "posv": np.asarray(posv, float).reshape(1, 4)}
      for name, _ in fields:
        s[0, k][name] = values[name]
    lists[0, f] = s
  n = len(labels)
  lbl = np.empty((1, n), dtype=object)
  for k, name in enumerate(labels):
    lbl[0, k] = name
  starts = np.full((1, n), -1.0)
  a = {"nFrame": float(num_frames), "objLists": lists, "maxObj": float(n), "objInit": np.ones((1, n)),
       "objLbl": lbl, "objStr": starts, "objEnd": starts, "objHide": np.zeros((1, n)), "altered": False,
       "log": np.zeros((1, 0)), "logLen": 0.0}
  if drop_field in a:
    del a[drop_field]
  savemat(str(path), {"A": a, "vers": 1.4}, format="5")
  return str(path)
