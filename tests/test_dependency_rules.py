"""The dependency rules of DESIGN.md, checked on the source tree itself.

- ``fusionbench/`` (neutral) imports no other package of the project;
- ``fusion/`` knows nothing of detection, reports or the CLI, and its messages name no CLI flag or
  config key (the layer that reads the config says which key to change);
- ``detection/`` works on image folders and label files: it imports nothing from ``fusion/``;
- nothing imports ``reports/`` except ``pipelines/``;
- no two modules of ``fusion/`` import each other, even in a roundabout way; the fuser registry is a
  leaf of the learned framework: not even a function of it imports ``fusion.learned`` (issue #24).
"""
from __future__ import annotations

import ast
import graphlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("fusionbench", "fusion", "detection", "pipelines", "reports")
FORBIDDEN = {
    "fusionbench": {"fusion", "detection", "pipelines", "reports"},
    "fusion": {"detection", "pipelines", "reports"},
    "detection": {"fusion", "pipelines", "reports"},
    "reports": {"pipelines"},
    "pipelines": set(),
}
CONFIG_SECTIONS = ("run", "data", "sample", "perception", "fusion", "methods", "detect", "metrics", "report",
                   "stats")
CONFIG_KEY = re.compile(rf"\b({'|'.join(CONFIG_SECTIONS)})\.[a-z_]+\b")
CLI_FLAG = re.compile(r"(^|\s)--[a-z][a-z-]+")


def _sources(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_follow_the_layering(package: str):
    broken = {str(path.relative_to(REPO)): sorted(_imported_packages(path) & FORBIDDEN[package])
              for path in _sources(package)}
    assert not {path: names for path, names in broken.items() if names}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_nodes(tree: ast.AST, lazy: bool) -> list[ast.AST]:
    """The nodes that run when the module is imported (module level, ``if``/``try`` and class bodies
    included), or with ``lazy`` every node, function bodies too."""
    if lazy:
        return list(ast.walk(tree))
    found, todo = [], [tree]
    while todo:
        node = todo.pop()
        found.append(node)
        todo += [child for child in ast.iter_child_nodes(node)
                 if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))]
    return found


def _imported_names(path: Path, module: str, lazy: bool) -> set[str]:
    """What ``module`` (the source ``path``) imports, as absolute names: ``import a.b`` and ``from a import b``
    (relative or not; ``b`` a module or not) give ``a.b``, so does ``importlib.import_module("a.b")``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in _import_nodes(ast.parse(path.read_text(), filename=str(path)), lazy):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0]
                base = f"{parent}.{base}" if base else parent
            found |= {f"{base}.{alias.name}" for alias in node.names}
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and (getattr(node.func, "attr", None) or getattr(node.func, "id", None)) in {"import_module", "__import__"}):
            found.add(node.args[0].value)
    return found


def _learned_imports(names: set[str]) -> list[str]:
    return sorted(n for n in names if n == "fusion.learned" or n.startswith("fusion.learned."))


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` (module -> the modules it imports), each module importing the next,
    or [] when there is none."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        return error.args[1][::-1]  # graphlib lists each module before one that imports it
    return []


def test_the_registry_imports_nothing_of_the_learned_framework():
    """fusion.learned registers its methods in the registry; the registry must not reach back, not even
    lazily, or the two are one tangle again (issue #24)."""
    registry = REPO / "fusion" / "registry.py"
    assert not _learned_imports(_imported_names(registry, "fusion.registry", lazy=True))


def test_fusion_modules_import_no_cycle():
    """Edges are the imports that run when a module is imported; the registry's lazy ones count too."""
    modules = {_module_name(path): path for path in _sources("fusion")}
    graph = {}
    for name, path in modules.items():
        imported = _imported_names(path, name, lazy=name == "fusion.registry")
        # ``from a import b``: the module a.b, else a (a name defined there)
        graph[name] = {n if n in modules else n.rpartition(".")[0] for n in imported} & modules.keys() - {name}
    assert not _cycle(graph), " -> ".join(_cycle(graph))


def _message_texts(node: ast.AST) -> list[str]:
    """The literal text of a raised exception's or a log call's message (f-strings: their literal parts)."""
    texts = []
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            texts.append(sub.value)
    return texts


def _messages(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            found += [(node.lineno, text) for text in _message_texts(node.exc)]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in {"debug", "info", "warning", "error", "exception", "critical", "warn"}):
            found += [(node.lineno, text) for arg in node.args for text in _message_texts(arg)]
    return found


def test_fusion_messages_name_no_config_key_or_cli_flag():
    offending = [f"{path.relative_to(REPO)}:{line}: {text!r}"
                 for path in _sources("fusion") for line, text in _messages(path)
                 if CONFIG_KEY.search(text) or CLI_FLAG.search(text)]
    assert not offending, "\n".join(offending)


def test_the_rule_checks_would_catch_a_violation(tmp_path: Path):
    """The checks above are not vacuous: a file breaking each rule is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("from pipelines.config import load_config\nimport reports.builder\n"
                   "raise ValueError(f'set detect.epochs or pass --force ({1})')\n")
    assert _imported_packages(bad) == {"pipelines", "reports"}
    texts = [text for _, text in _messages(bad)]
    assert any(CONFIG_KEY.search(t) for t in texts) and any(CLI_FLAG.search(t) for t in texts)

    registry = tmp_path / "registry.py"
    registry.write_text("import importlib\nfrom fusion import learned\n\n\ndef f():\n"
                        "    from .learned.architecture import learned_methods\n"
                        "    importlib.import_module('fusion.learned.trainer')\n")
    assert _learned_imports(_imported_names(registry, "fusion.registry", lazy=False)) == ["fusion.learned"]
    assert _learned_imports(_imported_names(registry, "fusion.registry", lazy=True)) == [
        "fusion.learned", "fusion.learned.architecture.learned_methods", "fusion.learned.trainer"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) in (["a", "b", "c", "a"], ["b", "c", "a", "b"],
                                                                       ["c", "a", "b", "c"])
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) == []
