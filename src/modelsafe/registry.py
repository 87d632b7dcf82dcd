"""One registry type for every "things by name" table in modelsafe (models, datasets, membership attacks,
compression methods, safety tests, transfer-attack presets, prune and grow rules).

A :class:`Registry` holds entries of one kind under unique names: each entry is whatever object that package
looks up (a data row such as :class:`~modelsafe.data.registry.DatasetEntry`, or a plain function for the
sparse rules). Registering a name twice is refused, lookups of unknown names raise
:class:`~modelsafe.errors.UnknownNameError` with the one message shape ``unknown <kind> 'x'; valid names: ...``,
and :meth:`Registry.names` lists names sorted."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fnmatch import fnmatchcase
from typing import Generic, TypeVar, overload

from modelsafe.errors import ModelsafeError, UnknownNameError

T = TypeVar("T")
F = TypeVar("F")


class Registry(Generic[T]):
    """Entries of type ``T`` by unique name, in registration order.

    ``kind`` names what the entries are in messages ("dataset", "compression method"). ``hints``: extra
    items for the valid-names list of the unknown-name error, for names the caller accepts without
    registering them (e.g. ``"timm:<name>"``)."""

    def __init__(self, kind: str, *, hints: Sequence[str] = ()):
        self.kind = kind
        self.hints = tuple(hints)
        self._entries: dict[str, T] = {}

    @overload
    def register(self, name: str, entry: T) -> T: ...

    @overload
    def register(self, name: str, *, wrap: Callable[[F], T] | None = None) -> Callable[[F], F]: ...

    def register(self, name: str, entry: T | None = None, *, wrap: Callable[[F], T] | None = None):
        """``register(name, entry)`` adds ``entry`` (a data row) and returns it. ``register(name)`` returns a
        decorator that adds the decorated object, or ``wrap(obj)`` when ``wrap`` is given, and returns the
        object unchanged. A name already registered raises :class:`ModelsafeError` at once (before any
        decoration)."""
        self._check_free(name)
        if entry is not None:
            self._entries[name] = entry
            return entry

        def decorate(obj: F) -> F:
            self._check_free(name)
            self._entries[name] = obj if wrap is None else wrap(obj)  # type: ignore[assignment]
            return obj

        return decorate

    def unregister(self, name: str) -> T:
        """Remove ``name`` (e.g. an entry a test added) and return its entry."""
        entry = self.get(name)
        del self._entries[name]
        return entry

    def get(self, name: str) -> T:
        """The entry registered as ``name``; :class:`UnknownNameError` listing the valid names otherwise."""
        if name not in self._entries:
            raise UnknownNameError(self.kind, name, [*self._entries, *self.hints])
        return self._entries[name]

    def names(self, pattern: str | None = None) -> list[str]:
        """Registered names, sorted; only those matching the shell-style ``pattern`` (``"*-fgsm"``,
        case-sensitive) when given."""
        return sorted(n for n in self._entries if pattern is None or fnmatchcase(n, pattern))

    def entries(self) -> list[T]:
        """Every entry, in registration order (the order the package's table lists them in)."""
        return list(self._entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def _check_free(self, name: str) -> None:
        if name in self._entries:
            raise ModelsafeError(f"{self.kind} {name!r} is already registered")
