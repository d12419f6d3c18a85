"""The run layout owns every artifact's file name: no other source of the stages or the report spells one.

A producer and a consumer that each wrote ``"results.json"`` could drift apart in silence; with the names
in :mod:`fusionbench.layout` only, they cannot. Docstrings and comments may mention names (they explain);
any other string literal may not.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

from fusionbench.layout import RunLayout, UnitFiles
from fusionbench.tasks import tasks

REPO = Path(__file__).resolve().parents[1]
SCANNED = ("pipelines", "reports", "detection", "fusion")
FILE_NAME = re.compile(r"^[\w-]+(\.[\w-]+)*\.(json|csv|pt|npz|png|html|yaml|log)$")

# (source, name) -> why that literal is not a run artifact of the layout's. A listed pair that no longer
# occurs fails too, so the list cannot outlive its reason.
ALLOWED = {
    ("detection/yolo.py", "results.csv"): "ultralytics' own log in its training folder (detection.yolo.TRAIN_LOG)",
    ("detection/yolo.py", "last.pt"): "ultralytics' own checkpoint in its training folder's weights/",
    ("detection/yolo.py", "best.pt"): "ultralytics' own checkpoint in its training folder's weights/",
    ("detection/task.py", "best.pt"): "describes ultralytics' own checkpoint (detect.select_by)",
}


def _properties(obj: object) -> list[Path]:
    """The paths an object's properties give (its class's and its bases')."""
    paths = []
    for klass in type(obj).__mro__:
        for name, member in vars(klass).items():
            if isinstance(member, property):
                value = getattr(obj, name)
                paths += [p for p in (value if isinstance(value, tuple) else (value,)) if isinstance(p, Path)]
    return paths


def _layout_paths() -> list[Path]:
    """Every path the layout gives for one method and seed (properties of each of its file objects)."""
    layout = RunLayout(Path("run"), Path("bench"), Path("report"))
    runs = layout.task("t").model("m")
    objects = [layout, layout.fusion("m"), layout.task("t"), runs, runs.method("m"), runs.method("m").seed(0),
               layout.metrics, layout.metrics.method("m"), layout.compare, layout.compare.task("t"), layout.pages,
               layout.grid]
    return [layout.log("stage"), *(path for obj in objects for path in _properties(obj))]


def owned_names() -> set[str]:
    return {path.name for path in _layout_paths() if FILE_NAME.match(path.name)}


def task_names() -> dict[str, set[str]]:
    """Per task module: the file names its unit files class adds to the layout's (a task owns its own names)."""
    found: dict[str, set[str]] = {}
    for task in tasks().values():
        module = type(task.files(Path("u"))).__module__
        source = str(Path(*module.split("."))) + ".py"
        found.setdefault(source, set()).update(
            p.name for p in _properties(task.files(Path("u"))) if FILE_NAME.match(p.name))
    return {source: names - owned_names() for source, names in found.items()}


def _string_literals(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string literal that is not a docstring or other bare string statement."""
    tree = ast.parse(path.read_text(), filename=str(path))
    bare = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in bare]


def _mentions(text: str, name: str) -> bool:
    return re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w-])", text) is not None


def literal_uses(names: set[str], packages: tuple[str, ...] = SCANNED,
                 root: Path = REPO) -> dict[tuple[str, str], list[int]]:
    """(source, name) -> lines where a string literal spells an owned artifact name."""
    found: dict[tuple[str, str], list[int]] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            source = str(path.relative_to(root))
            for line, text in _string_literals(path):
                for name in names:
                    if _mentions(text, name):
                        found.setdefault((source, name), []).append(line)
    return found


def test_the_layout_lists_every_name_it_spells():
    """The walk over the layout's objects sees every file name written in fusionbench/layout.py, so a name
    added there is scanned for below."""
    spelled = {text for _, text in _string_literals(REPO / "fusionbench" / "layout.py") if FILE_NAME.match(text)}
    owned = owned_names()
    assert spelled and all(any(name.endswith(text) for name in owned) for text in spelled)  # f-string tails too
    assert {"results.json", "protocol.json", "summary.json", "summary.csv", "metrics.csv", "entropy.csv",
            "t.csv", "t_intervals.csv", "manifest.json", "best.pt", "loss.csv", "index.html"} <= owned_names()
    assert {"test_predictions.json", "matches.npz", "data.yaml"} <= task_names()["detection/task.py"]


def test_no_artifact_name_outside_the_layout():
    """The layout's names appear nowhere else; a task's own names only in the module that declares them."""
    owners = {name: source for source, names in task_names().items() for name in names}
    uses = literal_uses(owned_names() | set(owners))
    offending = [f"{source}:{lines}: {name!r}" for (source, name), lines in sorted(uses.items())
                 if (source, name) not in ALLOWED and owners.get(name) != source]
    assert not offending, "artifact names belong in fusionbench/layout.py:\n" + "\n".join(offending)
    stale = sorted(key for key in ALLOWED if key not in uses)
    assert not stale, f"allowed literals that no longer occur (remove them from ALLOWED): {stale}"


def test_the_scan_catches_a_literal_and_ignores_docstrings(tmp_path: Path):
    (tmp_path / "stage").mkdir()
    (tmp_path / "stage" / "bad.py").write_text(
        '"""Writes results.json."""\n'
        "def f(out):\n"
        '    """Reads summary.csv."""\n'
        '    return out / "results.json", f"{out}/matches.npz", "my_summary.csv"\n')
    assert literal_uses({"results.json", "matches.npz", "summary.csv"}, ("stage",), tmp_path) == {
        ("stage/bad.py", "results.json"): [4], ("stage/bad.py", "matches.npz"): [4]}


def test_run_layout_of_a_config(tmp_path: Path):
    from pipelines.config import load_config, run_layout

    config = load_config("sample", [f"run.root={tmp_path}", "run.name=r1"])
    layout = run_layout(config)
    seed = layout.task("detection").model("yolov5s").method("vi").seed(2)
    assert seed == UnitFiles(tmp_path / "r1" / "detection" / "yolov5s" / "vi" / "seed2")
    assert seed.results == tmp_path / "r1" / "detection" / "yolov5s" / "vi" / "seed2" / "results.json"
    assert layout.fusion("s4fusion").best == tmp_path / "r1" / "fusion" / "s4fusion" / "best.pt"
    assert layout.log("detect") == tmp_path / "r1" / "logs" / "detect.log"
    explicit = run_layout(load_config("sample", [f"run.root={tmp_path}", f"data.benchmark={tmp_path / 'b'}",
                                                 f"report.dir={tmp_path / 'rep'}"]))
    assert explicit.benchmark == tmp_path / "b" and explicit.pages.index == tmp_path / "rep" / "index.html"
