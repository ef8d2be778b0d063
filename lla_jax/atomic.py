"""Files written atomically: a temporary file in the same folder, then a rename, so that a reader never
sees a half-written file. No JAX: the standalone evaluators use it too."""
from __future__ import annotations

import json
import os
import shutil
import tempfile


def write_text(path, text: str) -> str:
  """Writes `text` to `path` (folders created). Returns the path."""
  return _write(path, text, "w")


def write_bytes(path, data: bytes) -> str:
  """Writes `data` to `path` (folders created). Returns the path."""
  return _write(path, data, "wb")


def _write(path, data, mode: str) -> str:
  path = os.fspath(path)
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=".tmp_" + os.path.basename(path) + ".", dir=folder)
  try:
    with os.fdopen(fd, mode) as f:
      f.write(data)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return path


def write_json(path, obj, indent=1) -> str:
  """Writes `obj` as JSON (json.dump with `indent`). Returns the path."""
  return write_text(path, json.dumps(obj, indent=indent))


def write_folder(path, fill) -> str:
  """fill(tmp) writes a fresh folder next to `path`, which then replaces `path` as a whole: a reader never
  sees a half-written folder, and files of an older one do not linger. Returns the path."""
  full = os.path.abspath(os.fspath(path))
  parent = os.path.dirname(full)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".tmp-" + os.path.basename(full) + ".", dir=parent)
  old = None
  try:
    fill(tmp)
    if os.path.exists(full):
      old = tempfile.mkdtemp(prefix=".old-" + os.path.basename(full) + ".", dir=parent)
      os.replace(full, os.path.join(old, "previous"))
    os.replace(tmp, full)
  finally:
    for leftover in (tmp, old):
      if leftover and os.path.exists(leftover):
        shutil.rmtree(leftover)
  return os.fspath(path)
