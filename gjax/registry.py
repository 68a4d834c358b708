"""One name -> thing registry, for every kind gjax looks up by name from a
config: methods (:mod:`gjax.objectives`), heads (:mod:`gjax.models`), data
sets (:mod:`gjax.data.datasets`) and evaluators (:mod:`gjax.eval.registry`).
A name is registered once (again only with an equal entry); an unknown name is
an error that lists the registered ones."""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
  """Entries of one ``kind`` ("method", "head kind", ...) by name."""

  def __init__(self, kind: str, hint: str = ""):
    self.kind, self.hint, self._entries = kind, hint, {}

  def add(self, name: str, entry: T) -> T:
    if name in self._entries and self._entries[name] != entry:
      raise ValueError(f"{self.kind} {name!r} is already registered")
    self._entries[name] = entry
    return entry

  def get(self, name: str) -> T:
    if name not in self._entries:
      raise ValueError(f"unknown {self.kind} {name!r}; registered: {', '.join(self.names())}{self.hint}")
    return self._entries[name]

  def names(self) -> list[str]:
    return sorted(self._entries)

  def __contains__(self, name: str) -> bool:
    return name in self._entries
