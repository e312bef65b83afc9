"""``Registry``: the explicit name -> item tables benchctl is extended through.

One class for every table (services, bench kinds, LLM backends, vector stores, executors), so they all
behave alike: explicit registration (no import side effects), a clear error for an unknown name that lists
the known ones, and copies -- an ``App`` works on its own copy of the service and bench-kind tables, so a test
or a plug-in can register something for one session without touching the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownName(LookupError):
    """A name no entry of the registry has; the message lists the known ones."""


class Registry(Generic[T]):
    """An ordered ``name -> item`` table; ``key`` reads an item's name."""

    def __init__(self, what: str, items: Iterable[T] = (), *, key: Callable[[T], str]) -> None:
        self.what = what
        self._key = key
        self._items: dict[str, T] = {}
        for item in items:
            self.register(item)

    def register(self, item: T, *, replace: bool = False) -> T:
        """Add ``item`` (returned, so this works as a class decorator). A second item of one name is an
        error unless ``replace``."""
        name = self._key(item)
        if not name:
            raise ValueError(f"a {self.what} needs a name")
        if name in self._items and not replace:
            raise ValueError(f"{self.what} {name!r} registered twice")
        self._items[name] = item
        return item

    def unregister(self, name: str) -> None:
        self._items.pop(name, None)

    def get(self, name: str, default: T | None = None) -> T | None:
        return self._items.get(name, default)

    def __setitem__(self, name: str, item: T) -> None:
        """Register (or replace) ``item`` under ``name`` -- which must be the item's own name."""
        if self._key(item) != name:
            raise ValueError(f"{self.what} {self._key(item)!r} cannot be registered as {name!r}")
        self.register(item, replace=True)

    def __delitem__(self, name: str) -> None:
        del self._items[name]

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownName(f"unknown {self.what} {name!r} (available: {', '.join(self.names())})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._items.values()))

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> list[str]:
        return list(self._items)

    def items(self) -> list[tuple[str, T]]:
        return list(self._items.items())

    def copy(self) -> Registry[T]:
        return Registry(self.what, self._items.values(), key=self._key)


__all__ = ["Registry", "UnknownName"]
