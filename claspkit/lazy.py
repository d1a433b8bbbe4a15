"""Lazy public APIs for the subpackages.

Why: ``import claspkit.data.brown`` runs ``claspkit/data/__init__.py`` first, and an eager ``__init__`` would
import torch (through tts) and risk import cycles between subpackages. Each name is looked up in its
submodule only when it is first used.
"""
import importlib

__all__ = ["lazy_api"]


def lazy_api(package, api):
    """Module ``__getattr__`` and ``__dir__`` for ``package``, whose names (``api``: name -> submodule) live in
    its submodules. A submodule that is not a name of the API still imports the usual way."""
    clashes = sorted(set(api) & set(api.values()))
    if clashes:  # after ``import pkg.name`` the submodule would shadow the function of the same name
        raise ValueError(f"{package}: API names {clashes} are also submodule names")

    def __getattr__(name):
        module = api.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    def __dir__():
        return sorted(set(api) | set(api.values()))

    return __getattr__, __dir__
