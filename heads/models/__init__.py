"""Every head: importing this package imports each module in it, and each registers its head
(``@HEADS.register(...)``), so a new head is one file here with its registration line."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
