"""A name -> entry table, the shape of every registry of the suite (methods, evaluators)."""
from __future__ import annotations

from typing import Any


class Registry:
  """Entries by name. `label` names the setting that chooses one in error messages, e.g. 'config.method'."""

  def __init__(self, label: str):
    self.label = label
    self._entries: dict[str, Any] = {}

  def register(self, name: str, entry: Any) -> Any:
    """Adds `entry` under `name` (an error when the name is taken); returns the entry."""
    if name in self._entries:
      raise ValueError(f"{self.label}: {name!r} is registered already")
    self._entries[name] = entry
    return entry

  def names(self) -> tuple:
    """The registered names, sorted."""
    return tuple(sorted(self._entries))

  def get(self, name: str) -> Any:
    """The entry of `name`; a ValueError listing the registered names when there is none."""
    if name not in self._entries:
      raise ValueError(f"{self.label}={name!r}: expected one of {', '.join(map(repr, self.names()))}")
    return self._entries[name]
