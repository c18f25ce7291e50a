"""Named, versioned components (datasets, readers, encoders, heads), found by name, with their traits.

A new component is one file plus one ``@REGISTRY.register("name", trait=value, ...)`` line, as in
spaCy's registry. The traits are what other modules need to know about a component without
testing its name (a text encoder's default pooling and cost, whether it is a decoder; a head's
kind of trainer, its cost in the grid): code asks ``REGISTRY.trait(name, "pooling")`` instead of
testing the component's name. A plain dict keeps it small and import-order free.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from featurize.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Components of one kind by name; ``defaults`` are the traits a component has unless its
    registration line says otherwise (so every trait a caller reads is declared here, once)."""

    def __init__(
        self, kind: str, defaults: Mapping[str, Any] | None = None, registrations: str | None = None
    ) -> None:
        self.kind = kind
        self.defaults: Mapping[str, Any] = MappingProxyType(dict(defaults or {}))
        self._items: dict[str, T] = {}
        self._traits: dict[str, dict[str, Any]] = {}
        # the module whose import registers the components (imported on the first lookup, so
        # no caller has to remember to import the registering package first)
        self._registrations = registrations

    def _load(self) -> None:
        if self._registrations is not None:
            module, self._registrations = self._registrations, None
            import importlib

            importlib.import_module(module)

    def register(self, name: str, **traits: Any) -> Callable[[T], T]:
        unknown = sorted(set(traits) - set(self.defaults))
        if unknown:
            raise ValueError(
                f"{self.kind} {name!r}: unknown trait(s) {', '.join(unknown)}; "
                f"declared: {', '.join(sorted(self.defaults)) or 'none'}"
            )

        def add(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = item
            self._traits[name] = dict(self.defaults) | traits
            return item

        return add

    def get(self, name: str) -> T:
        self._load()
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise ConfigError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def traits(self, name: str) -> Mapping[str, Any]:
        """Every trait of ``name`` (its registration's, else the registry's defaults)."""
        self.get(name)  # an unknown name is the same clear error as for get
        return MappingProxyType(self._traits[name])

    def trait(self, name: str, trait: str, default: Any = None) -> Any:
        """One trait of ``name``; ``default`` for a name that is not registered (a user's
        ``hf:...`` encoder, say), so callers need no name tests of their own."""
        if trait not in self.defaults:
            raise KeyError(f"{self.kind} registry declares no trait {trait!r}")
        self._load()
        if name not in self._items:
            return self.defaults[trait] if default is None else default
        return self._traits[name][trait]

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(sorted(self._items))

    def items(self) -> list[tuple[str, T]]:
        self._load()
        return sorted(self._items.items())
