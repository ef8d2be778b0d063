"""Text input files (odgt, json, bbGt, detection lists) are UTF-8. A UTF-8 byte-order mark (what Windows
editors and PowerShell write) is accepted and dropped; UTF-16 / UTF-32 text or bytes that are not UTF-8
(latin-1, Windows-1252) stop with an InputError naming the file, the line and the expected encoding.
"""
from __future__ import annotations

import codecs
import os

from lla_jax.evaluation import InputError

_WIDE_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
              (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))


def decode(data: bytes, path, lineno: int = 1) -> str:
  """UTF-8 bytes of `path` (starting at line `lineno`) -> str, a leading UTF-8 BOM dropped when lineno == 1."""
  if lineno == 1:
    for bom, name in _WIDE_BOMS:
      if data.startswith(bom):
        raise InputError(f"{path}: {name} text (byte-order mark {bom.hex(' ').upper()}); expected UTF-8: "
                         "re-save the file as UTF-8")
    if data.startswith(codecs.BOM_UTF8):
      data = data[len(codecs.BOM_UTF8):]
  nul = data.find(b"\x00")   # valid UTF-8 in principle, but never in a text file: UTF-16 without a BOM
  if nul >= 0:
    line = lineno + data.count(b"\n", 0, nul)
    raise InputError(f"{path}:{line}: NUL bytes (UTF-16 text without a byte-order "
                     "mark?); expected UTF-8: re-save the file as UTF-8")
  try:
    return data.decode("utf-8")
  except UnicodeDecodeError as e:
    line = lineno + data.count(b"\n", 0, e.start)
    column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
    raise InputError(f"{path}:{line}: byte 0x{data[e.start]:02X} at column {column} is not UTF-8 (latin-1 or "
                     "Windows-1252 text?); expected UTF-8: re-save the file as UTF-8") from None


def read_text(path) -> str:
  """The whole text of a UTF-8 file (see `decode`)."""
  with open(path, "rb") as f:
    return decode(f.read(), os.fspath(path))


def lines(path):
  """Streams (1-based line number, text) of a UTF-8 file, one line in memory at a time (see `decode`)."""
  path = os.fspath(path)
  with open(path, "rb") as f:
    for n, raw in enumerate(f, 1):
      yield n, decode(raw, path, n)
