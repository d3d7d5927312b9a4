"""Name -> object registries with typo suggestions (lm-evaluation-harness style), one mechanism for all.

Tasks, models, data sets and presets are registered the same way:
  - built-ins are listed as "module:attribute" strings and imported on first
    use, exactly like plugins, so no core module imports its plugins (and
    there is no import cycle between a registry and what it lists);
  - other packages add theirs through an entry-point group
    (`[project.entry-points."diffae_bench.models"] mymodel = "pkg.mod:KIND"`);
  - code (tests, notebooks) calls `REGISTRY.register(name)(obj)` or `.add(name, obj)`.
A plugin that fails to import is reported by name when asked for (and by
`bench ls`), and does not break other names; a plugin whose name collides with
a built-in is an error for that name.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from importlib.metadata import entry_points
from typing import Callable, Generic, Iterator, TypeVar

from .errors import BenchError, UnknownNameError

T = TypeVar("T")


def load_spec(spec: str):
    """'package.module:attribute' -> the attribute."""
    module, _, attr = spec.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class Registry(Generic[T]):
    """A mapping of names to objects; unknown names raise with close matches."""

    def __init__(self, kind: str, builtins: dict[str, str] | None = None, group: str | None = None):
        self.kind = kind  # e.g. "data set", used in error messages
        self.group = group  # entry-point group of third-party plugins (None: none)
        self._builtins = dict(builtins or {})  # name -> "module:attribute", imported on first use
        self._items: dict[str, T] = {}
        self._plugins: dict[str, object] = {}  # name -> EntryPoint, loaded on first use
        self.errors: dict[str, str] = {}  # name -> why that plugin cannot be used
        self._scanned = False

    # -- registration ----------------------------------------------------------------
    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            self.add(name, obj)
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        if name in self._items or name in self._builtins:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self._items[name] = obj

    def _scan(self) -> None:
        """Find the entry points of the group (their modules are imported only when asked for)."""
        if self._scanned or self.group is None:
            self._scanned = True
            return
        self._scanned = True
        for ep in entry_points(group=self.group):
            if ep.name in self._builtins:
                self.errors[ep.name] = (f"plugin {ep.value} ({ep.group}) uses the built-in {self.kind} "
                                        f"name '{ep.name}'; rename it")
            elif ep.name not in self._items:
                self._plugins[ep.name] = ep

    # -- lookup ------------------------------------------------------------------------
    def get(self, name: str) -> T:
        if name in self._items:
            return self._items[name]
        self._scan()
        if name in self.errors:
            raise BenchError(self.errors[name])
        if name in self._builtins or name in self._plugins:
            where = self._builtins.get(name) or self._plugins[name].value
            try:
                obj = load_spec(where) if name in self._builtins else self._plugins[name].load()
            except Exception as e:  # a broken plugin: say which, keep every other name working
                if name in self._builtins:
                    raise
                self.errors[name] = f"{self.kind} plugin '{name}' ({where}) failed to load: {type(e).__name__}: {e}"
                raise BenchError(self.errors[name]) from None
            self._items[name] = obj
            return obj
        raise UnknownNameError(self.unknown_message(name))

    def load_all(self) -> dict[str, T]:
        """Every usable entry (plugins that fail are left out and listed in .errors)."""
        out = {}
        for name in self.names():
            try:
                out[name] = self.get(name)
            except BenchError:
                if name not in self.errors:
                    raise
        return out

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return f"unknown {self.kind} '{name}'{hint} (known: {', '.join(self.names())})"

    def names(self) -> list[str]:
        self._scan()
        return sorted(set(self._items) | set(self._builtins) | set(self._plugins) - set(self.errors))

    def __contains__(self, name: object) -> bool:
        return name in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def warn_plugin_errors(*registries: Registry) -> None:
    """One stderr line per plugin that cannot be used (for `bench ls`)."""
    for reg in registries:
        for msg in reg.errors.values():
            print(f"warning: {msg}", file=sys.stderr)
