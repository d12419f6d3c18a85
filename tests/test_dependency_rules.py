"""The dependency rules of DESIGN.md, checked on the source tree itself.

- ``fusionbench/`` (neutral) imports no other package of the project;
- ``fusion/`` knows nothing of detection, reports or the CLI, and its messages name no CLI flag or
  config key (the layer that reads the config says which key to change);
- ``detection/`` works on image folders and label files: it imports nothing from ``fusion/``;
- ``segmentation/`` works on image and mask files through ``fusionbench/``: it imports nothing of how
  images were fused (``fusion/``), of the other task, of the stages or of the report, and its messages
  name no CLI flag or config key;
- nothing imports ``reports/`` except ``pipelines/``;
- inside ``pipelines/``, a stage module imports no other stage (only the shared glue: config, schema,
  devices, ...) and nothing of ``pipelines.commands``; ``run_all`` alone calls the stages, and the
  exceptions are listed with their reason;
- no two modules of ``fusion/`` import each other, even in a roundabout way; the fuser registry is a
  leaf of the learned framework: not even a function of it imports ``fusion.learned`` (issue #24);
- no module decides anything by a file's modification time: freshness is the one identity rule
  (:mod:`fusionbench.identity`, issue #22); a date merely shown is listed with its reason.
"""
from __future__ import annotations

import ast
import graphlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("fusionbench", "fusion", "detection", "segmentation", "pipelines", "reports")
# Stages of pipelines/: modules (or packages) whose internals no other stage may import.
STAGES = {"prepare": "pipelines/prepare", "sample": "pipelines/sample.py", "train_fusion": "pipelines/train_fusion.py",
          "fuse": "pipelines/fuse.py", "downstream": "pipelines/downstream.py", "metrics": "pipelines/metrics.py",
          "metric_folders": "pipelines/metric_folders.py", "compare": "pipelines/compare.py",
          "report": "pipelines/report.py", "run_all": "pipelines/run_all.py"}
# (importing stage, imported stage) -> why it is allowed.
STAGE_CALLS = {
    ("prepare", "sample"): "with no data.raw, prepare first generates the synthetic sample (its raw input)",
    ("metric_folders", "metrics"): "`metrics --fused DIR` scores any folders with the metrics stage's own functions",
    **{("run_all", stage): "run-all calls every stage" for stage in STAGES if stage != "run_all"},
}
FORBIDDEN = {
    "fusionbench": {"fusion", "detection", "segmentation", "pipelines", "reports"},
    "fusion": {"detection", "segmentation", "pipelines", "reports"},
    "detection": {"fusion", "segmentation", "pipelines", "reports"},
    "segmentation": {"fusion", "detection", "pipelines", "reports"},
    "reports": {"pipelines", "detection", "segmentation"},  # tasks reach the report only through what they declare
    "pipelines": set(),
}
CONFIG_SECTIONS = ("run", "data", "sample", "perception", "fusion", "methods", "detect", "segment", "metrics",
                   "report", "stats")
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


def _imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` or ``from ... import`` names (anywhere in the file, lazy imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return found


def _stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "pipelines" and parts[1] in STAGES else None


def _stage_violations(root: Path = REPO) -> list[str]:
    found = []
    for stage, where in STAGES.items():
        paths = sorted((root / where).rglob("*.py")) if (root / where).is_dir() else [root / where]
        for path in paths:
            for module in _imported_modules(path):
                other = _stage_of(module)
                if module.startswith("pipelines.commands"):
                    found.append(f"{path.relative_to(root)}: imports {module} (the CLI layer)")
                elif other and other != stage and (stage, other) not in STAGE_CALLS:
                    found.append(f"{path.relative_to(root)}: imports {module} (stage {other})")
    return found


def test_stages_import_no_other_stage_nor_the_cli_layer():
    violations = _stage_violations()
    assert not violations, "\n".join(violations)


def test_the_stage_rule_would_catch_a_violation(tmp_path: Path):
    (tmp_path / "pipelines").mkdir()
    for stage, where in STAGES.items():
        target = tmp_path / where
        if target.suffix == ".py":
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("")
        else:
            target.mkdir(parents=True, exist_ok=True)
    (tmp_path / "pipelines" / "compare.py").write_text("def f():\n    from pipelines.fuse import fuse_method\n")
    (tmp_path / "pipelines" / "report.py").write_text("from pipelines.commands.report import command\n")
    assert sorted(_stage_violations(tmp_path)) == [
        "pipelines/compare.py: imports pipelines.fuse (stage fuse)",
        "pipelines/compare.py: imports pipelines.fuse.fuse_method (stage fuse)",
        "pipelines/report.py: imports pipelines.commands.report (the CLI layer)",
        "pipelines/report.py: imports pipelines.commands.report.command (the CLI layer)"]


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


@pytest.mark.parametrize("package", ["fusion", "segmentation"])
def test_messages_name_no_config_key_or_cli_flag(package: str):
    offending = [f"{path.relative_to(REPO)}:{line}: {text!r}"
                 for path in _sources(package) for line, text in _messages(path)
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


MTIME = re.compile(r"\bst_mtime(_ns)?\b|\bgetmtime\b|\bst_ctime(_ns)?\b")
# path -> why its use of a modification time decides nothing
MTIME_DISPLAY = {"reports/builder.py": "shows on the page when the benchmark and the metrics summary were written"}


def _mtime_uses(root: Path, packages: tuple[str, ...]) -> list[str]:
    return [f"{path.relative_to(root)}:{number}: {line.strip()}"
            for package in packages for path in sorted((root / package).rglob("*.py"))
            for number, line in enumerate(path.read_text().splitlines(), 1)
            if MTIME.search(line) and str(path.relative_to(root)) not in MTIME_DISPLAY]


def test_no_stage_decides_by_modification_time():
    """Observation (issue #22, high 4): metrics were reused when newer than their fused set's manifest, so
    edited metric code or a fused set restored from a backup kept old numbers."""
    found = _mtime_uses(REPO, PACKAGES)
    assert not found, "\n".join(found)
    assert all(MTIME.search((REPO / path).read_text()) for path in MTIME_DISPLAY)  # no stale exception


def test_the_modification_time_rule_would_catch_a_use(tmp_path: Path):
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "metrics.py").write_text("fresh = out.stat().st_mtime >= source.stat().st_mtime\n"
                                                       "import os\nold = os.path.getmtime(out)\n")
    assert [line.split(":")[1] for line in _mtime_uses(tmp_path, ("pipelines",))] == ["1", "3"]
