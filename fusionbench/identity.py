"""The one freshness rule: is a recorded artifact still what today's inputs, settings and code would make?

Every artifact a stage writes records its *identity*, a JSON mapping of

- the content identity of each input: an upstream artifact's own identity, or a file's sha256,
- the settings that change its result (never a performance knob: workers, batch sizes, threads),
- the code identity of the modules that compute it (:func:`code_identity`).

A consumer builds the identity today's config expects from today's settings and today's upstream
identities, and asks :func:`stale_reasons`: an empty list means fresh, else one line per key that
differs (which, recorded value, expected value). What the consumer does then is its own rule, the same
everywhere: a stage the user asked to compute recomputes; a stage that only reads (compare, the report,
``run-all``'s summary) refuses the artifact or shows it as stale with those lines. Nothing is trusted
because it exists or because of its modification time.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Collection, Iterable, Mapping

from fusionbench.files import sha256_file

SHOWN = 40  # characters of a value shown in a reason line (hashes are long)


def stale_reasons(recorded: Mapping[str, Any] | None, expected: Mapping[str, Any], what: str) -> list[str]:
    """Why ``recorded`` (an artifact's identity as written, None when absent or unreadable) is not
    ``expected``: one line per differing key (nested mappings by dotted key), empty when fresh."""
    if recorded is None:
        return [f"{what}: no recorded identity (missing, unreadable, or written by an earlier version)"]
    before, now = _flat(recorded), _flat(expected)
    return [f"{what}: {key} was {_shown(before.get(key))}, now {_shown(now.get(key))}"
            for key in sorted(set(before) | set(now)) if before.get(key) != now.get(key)]


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object file, or None when it is missing or does not parse (then it is redone, never trusted)."""
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def read_identity(path: Path, key: str = "identity") -> dict[str, Any] | None:
    """The identity recorded under ``key`` in the JSON file ``path``; None when the file is missing or
    does not parse (the artifact is then recomputed or refused, never trusted)."""
    found = (read_json(path) or {}).get(key)
    return found if isinstance(found, dict) else None


def file_identity(path: Path) -> str | None:
    """A file's content identity (sha256), None when it is missing."""
    return sha256_file(path) if path.is_file() else None


def weights_source(weights: str | Path | None, without: str) -> str:
    """What a model starts from, for a protocol: ``without`` (e.g. "scratch") or the weights' path *and*
    content (a file's sha256, a folder's over its files), so weights replaced at the same path retrain."""
    if weights is None:
        return without
    path = Path(weights).expanduser().resolve()
    if path.is_dir():
        content = digest([(str(f.relative_to(path)), sha256_file(f)) for f in sorted(path.rglob("*")) if f.is_file()])
    else:
        content = file_identity(path) or "missing"
    return f"pretrained {path} (sha256 {content})"


def digest(content: Any) -> str:
    """sha256 of a JSON-serialisable value (an identity of identities)."""
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _flat(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping):  # an empty mapping adds no key: {} and absent are alike
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _shown(value: Any) -> str:
    text = "absent" if value is None else json.dumps(value)
    return text if len(text) <= SHOWN else f"{text[:SHOWN - 3]}..."


# --- code identity ---------------------------------------------------------------------------------

def code_identity(roots: Iterable[str], packages: Collection[str], skip: Collection[str] = ()) -> str:
    """sha256 over (module name, source) of ``roots`` and the modules of ``packages`` they import,
    transitively (``skip``: modules not followed). Editing any of them changes it; the package version
    alone stayed the same for hundreds of commits."""
    modules = sorted({m for root in roots for m in code_modules(root, packages, skip)})
    hashed = hashlib.sha256()
    for name in modules:
        hashed.update(f"{name}\n".encode())
        hashed.update(_source_file(name).read_bytes())
    return hashed.hexdigest()


def code_modules(root: str, packages: Collection[str], skip: Collection[str] = ()) -> list[str]:
    """``root`` and the modules of ``packages`` it imports (also inside functions), transitively, sorted."""
    seen, todo = set(), [root]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += [m for m in _imported(name, tuple(packages)) if m not in skip]
    return sorted(seen)


@lru_cache(maxsize=None)
def _source_file(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise ValueError(f"{module}: no Python source found")
    return Path(spec.origin)


def _imported(module: str, packages: tuple[str, ...]) -> tuple[str, ...]:
    """Modules of ``packages`` named by the import statements of ``module`` (a package's ``__init__``
    included when a name is imported from it)."""
    path = _source_file(module)
    return _imports_in_source(module, path, path.read_text(), packages)


@lru_cache(maxsize=None)
def _imports_in_source(module: str, path: Path, source: str, packages: tuple[str, ...]) -> tuple[str, ...]:
    """:func:`_imported` for one text of the file, parsed once per process (a report's freshness checks
    follow the same modules for every method and task: 1,550 parses, 11 s of the sample's report)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.append(base)
            found += [f"{base}.{alias.name}" for alias in node.names if _is_module(f"{base}.{alias.name}")]
    return tuple(name for name in found if name.split(".")[0] in packages and _is_module(name))


@lru_cache(maxsize=None)
def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent that is not a package
        return False
