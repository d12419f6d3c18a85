"""The identity of a fuser's code: a hash of the source of every module that computes its output.

A fused set records it in its fingerprint, so editing a fuser (or a helper it imports) makes the next
``fuse`` redo the set. The modules are found statically (:func:`fusionbench.identity.code_identity`):
the module that defines the registered factory, then every ``fusion`` or ``fusionbench`` module it
imports (also inside functions), transitively. The registry, which every fuser's module imports to
register itself, is not followed: it merely looks names up, and listing a new method there must not
redo every fused set.
"""
from __future__ import annotations

import inspect

from fusionbench import identity

PACKAGES = ("fusion", "fusionbench")
REGISTRY = "fusion.registry"


def fuser_code_identity(factory: object, extra_modules: tuple[str, ...] = ()) -> str:
    """sha256 over (module name, source) of the modules ``factory``'s output depends on, and of
    ``extra_modules`` with theirs."""
    root = inspect.getmodule(factory)
    if root is None:
        raise ValueError(f"{factory!r}: cannot tell which module defines it")
    return identity.code_identity((root.__name__, *extra_modules), PACKAGES, skip=(REGISTRY,))


def code_modules(root: str) -> list[str]:
    """``root`` and the project modules it imports, transitively, sorted by name."""
    return identity.code_modules(root, PACKAGES, skip=(REGISTRY,))
