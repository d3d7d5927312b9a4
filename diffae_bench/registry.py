"""Name -> factory registries with typo suggestions (lm-eval-harness style)."""

from __future__ import annotations

import difflib
from importlib.metadata import entry_points
from typing import Callable, Generic, Iterator, TypeVar

from .errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping of names to objects; unknown names raise with close matches."""

    def __init__(self, kind: str):
        self.kind = kind  # e.g. "data set", used in error messages
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            self.add(name, obj)
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self._items[name] = obj

    def get(self, name: str) -> T:
        if name in self._items:
            return self._items[name]
        raise UnknownNameError(self.unknown_message(name))

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._items), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        known = ", ".join(sorted(self._items))
        return f"unknown {self.kind} '{name}'{hint} (known: {known})"

    def add_entry_points(self, group: str) -> None:
        """Register what other packages export in an entry-point group (each object has a .name)."""
        for ep in entry_points(group=group):
            obj = ep.load()
            if obj.name not in self._items:  # a built-in of the same name wins
                self.add(obj.name, obj)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
