"""featurize: run the heavy encoders once over a dataset and keep their outputs in the cache.

The command line is ``featurize`` (featurize/cli.py); from Python::

    from featurize import featurize_dataset
    paths = featurize_dataset("t17", text="minilm", vision="vit", images=Path("photos"))

The names exported here load on first use (a module ``__getattr__``), so ``import featurize``
and its light submodules stay cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from featurize.api import featurize_dataset

__all__ = ["featurize_dataset"]

# name -> the module that defines it
_LAZY = {"featurize_dataset": "featurize.api"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
