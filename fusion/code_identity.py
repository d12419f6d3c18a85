"""The identity of a fuser's code: a hash of the source of every module that computes its output.

A fused set records it in its fingerprint, so editing a fuser (or a helper it imports) makes the next
``fuse`` redo the set; the package version alone stayed 0.1.0 for over a hundred commits. The modules
are found statically: the module that defines the registered factory, then every ``fusion`` or
``fusionbench`` module it imports (also inside functions), transitively. The registry, which every
fuser's module imports to register itself, is not followed: it merely looks names up, and listing a new
method there must not redo every fused set.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
from functools import lru_cache
from pathlib import Path

PACKAGES = ("fusion", "fusionbench")
REGISTRY = "fusion.registry"


def fuser_code_identity(factory: object, extra_modules: tuple[str, ...] = ()) -> str:
    """sha256 over (module name, source) of the modules ``factory``'s output depends on, and of
    ``extra_modules`` with theirs."""
    root = inspect.getmodule(factory)
    if root is None:
        raise ValueError(f"{factory!r}: cannot tell which module defines it")
    modules = sorted({m for name in (root.__name__, *extra_modules) for m in code_modules(name)})
    digest = hashlib.sha256()
    for name in modules:
        digest.update(f"{name}\n".encode())
        digest.update(_source_file(name).read_bytes())
    return digest.hexdigest()


def code_modules(root: str) -> list[str]:
    """``root`` and the project modules it imports, transitively, sorted by name."""
    seen, todo = set(), [root]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += [m for m in _imported(name) if m != REGISTRY]
    return sorted(seen)


@lru_cache(maxsize=None)
def _source_file(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise ValueError(f"{module}: no Python source found")
    return Path(spec.origin)


def _imported(module: str) -> list[str]:
    """Project modules named by the import statements of ``module`` (a package's ``__init__``
    included when a name is imported from it)."""
    path = _source_file(module)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.append(base)
            found += [f"{base}.{alias.name}" for alias in node.names if _is_module(f"{base}.{alias.name}")]
    return [name for name in found if name.split(".")[0] in PACKAGES and _is_module(name)]


@lru_cache(maxsize=None)
def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent that is not a package
        return False
