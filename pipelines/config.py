"""Load a run's config: the defaults of :mod:`pipelines.schema`, an overlay file, then overrides.

Overlays are YAML files naming only the keys they change (``pipelines/configs/paper.yaml``,
``sample.yaml``, or a file of your own; ``extends: paper`` in a file starts from that overlay).
Overrides are ``dotted.key=value`` strings whose value is parsed as YAML (``detect.epochs=2``,
``fusion.methods=[ir,vi]``, ``data.raw=null``). The merged result is validated once, before any
stage runs: an unknown key fails with a close-match suggestion, a bad value names its key.
"""
from __future__ import annotations

import copy
import difflib
import json
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml
from pydantic import BaseModel, ValidationError

from fusion.registry import FuserError, validate_method_options
from fusionbench.errors import FusionBenchError
from fusionbench.layout import RunLayout
from fusionbench.tasks import Task, TaskError, get_model, get_task, tasks
from pipelines.schema import Config

BUILTIN_CONFIGS = ("paper", "sample", "llvip", "m3fd_scene")


class ConfigError(FusionBenchError):
    """A config file, key or value that cannot be used."""


def builtin_config_path(name: str) -> Path:
    return Path(str(resources.files("pipelines") / "configs" / f"{name}.yaml"))


def _overlay_path(source: str | Path) -> Path:
    path = Path(source).expanduser()
    if not path.is_file() and str(source) in BUILTIN_CONFIGS:
        path = builtin_config_path(str(source))
    if not path.is_file():
        raise ConfigError(f"{source}: config file not found (built-in: {', '.join(BUILTIN_CONFIGS)})")
    return path


def read_overlay(source: str | Path, _seen: tuple[Path, ...] = ()) -> tuple[Path, dict[str, Any]]:
    """The overlay file's path and its keys, with what it ``extends`` merged underneath."""
    path = _overlay_path(source).resolve()
    if path in _seen:
        raise ConfigError(f"{path}: 'extends' loops back to itself")
    try:
        overlay = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error
    check_finite_tree(overlay, str(path))
    if not isinstance(overlay, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    base = overlay.pop("extends", None)
    if base is not None:
        overlay = merge(read_overlay(str(base), (*_seen, path))[1], overlay)
    return path, overlay


def merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """``overlay`` on top of ``base``: mappings merge key by key, anything else replaces."""
    merged = copy.deepcopy(dict(base))
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_override(item: str) -> tuple[str, Any]:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r}: expected key.sub=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as error:
        raise ConfigError(f"override {item!r}: the value is not valid YAML: {error}") from error
    check_finite_tree(value, f"override {item!r}")
    return key.strip(), value


def check_finite_tree(node: Any, where: str, key: str = "", parents: tuple[int, ...] = ()) -> None:
    """Refuse a YAML alias that contains itself (``a: &x {b: *x}``): YAML loads it as a cyclic structure,
    which every later step (merging, validating, writing the config into manifests) recurses into forever."""
    if not isinstance(node, (dict, list)):
        return
    if id(node) in parents:
        raise ConfigError(f"{where}: {key or 'the top level'}: a YAML alias refers to a node that contains it "
                          "(a recursive alias); write the values out instead")
    children = node.items() if isinstance(node, dict) else enumerate(node)
    for name, child in children:
        check_finite_tree(child, where, f"{key}.{name}" if key else str(name), (*parents, id(node)))


def set_value(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    *parents, last = dotted.split(".")
    for depth, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{'.'.join(parents[:depth + 1])} is a value, not a section: cannot set {dotted}")
        node = child
    node[last] = value


def load_config(source: str | Path | None = "sample", overrides: Iterable[str] = (),
                values: Mapping[str, Any] | None = None) -> Config:
    """Defaults, then the overlay ``source`` (a path or a built-in name; None: defaults alone), then
    ``overrides`` (``key=value`` strings), then ``values`` (dotted key -> value, taken as given)."""
    path, tree = read_overlay(source) if source is not None else (None, {})
    for item in overrides:
        set_value(tree, *parse_override(item))
    for key, value in (values or {}).items():
        set_value(tree, key, value)
    config = validate(tree, where=str(path) if path else "the defaults")
    config._source = path
    return config


def validate(tree: Mapping[str, Any], where: str = "config") -> Config:
    """The typed config for ``tree``, or one :class:`ConfigError` listing every bad key. Each downstream
    task's section is checked against the task's own settings model."""
    sections = task_sections()
    tree = dict(tree)
    given = {name: tree.pop(name) for name in list(tree) if name in sections}
    problems = [_unknown(name, [*Config.model_fields, *sections]) for name in tree if name not in Config.model_fields]
    settings = {}
    for name, model in sections.items():
        try:
            settings[name] = model.model_validate(given.get(name) or {})
        except ValidationError as error:
            problems += [_describe(item, given.get(name) or {}, model, prefix=[name]) for item in error.errors()]
    try:
        config = Config.model_validate(tree)
    except ValidationError as error:
        problems += [_describe(item, tree) for item in error.errors()]
    if problems:
        raise ConfigError(f"{where}: " + ("; ".join(problems) if len(problems) < 2
                                           else f"{len(problems)} problems:\n  " + "\n  ".join(problems))) from None
    config.__pydantic_extra__.update(settings)
    check_tasks(config, where)
    named = [(f"methods.{name}", name) for name in config.methods]
    named += [(f"{key} = {names}", name) for key, names in (("fusion.methods", config.fusion.methods),
                                                           ("metrics.methods", config.metrics.methods or []))
              for name in names if name not in config.methods]
    for key, name in named:
        try:
            validate_method_options(name, config.method_options(name))
        except FuserError as error:
            raise ConfigError(f"{where}: {key}: {error}") from None
    check_references(config, where)
    if config.run.executor != "slurm":  # a SLURM job computes on the GPUs it gets, not on this machine's
        check_device(config.run.device, where)
    return config


def task_sections() -> dict[str, type[BaseModel]]:
    """Config section name -> settings model of every registered downstream task."""
    return {task.section: task.settings for task in tasks().values()}


def check_tasks(config: Config, where: str) -> None:
    """``tasks`` names registered tasks and, for each, distinct registered models its settings accept."""
    for name, models in config.tasks.items():
        try:
            task = get_task(name)
            for model in models:
                get_model(name, model)
        except TaskError as error:
            raise ConfigError(f"{where}: tasks.{name}: {error}") from None
        repeated = sorted({m for m in models if models.count(m) > 1})
        if repeated:
            raise ConfigError(f"{where}: tasks.{name}: listed twice: {', '.join(repeated)}")
        if task.check is not None and models:
            try:
                task.check(config.task_settings(name), models)
            except ValueError as error:
                raise ConfigError(f"{where}: {task.section}: {error}") from None


def configured_methods(config: Config) -> list[str]:
    """``fusion.methods`` of the config: the methods a run fuses, evaluates and reports."""
    return [str(m) for m in config.fusion.methods or []]


def evaluated_tasks(config: Config) -> list[tuple[Task, list[str]]]:
    """Each task the config evaluates (at least one model listed), with its models, in registry order."""
    registered = tasks()
    return [(registered[name], models) for name, models in
            sorted(config.tasks.items(), key=lambda item: list(registered).index(item[0])) if models]


def check_references(config: Config, where: str = "config") -> None:
    """``report.compare_to``, when the config sets it, names configured methods or ``best`` (the default names
    ir and vi, which a run without them simply does not compare with)."""
    if "compare_to" not in config.report.model_fields_set:
        return
    configured = {*config.fusion.methods, *(config.metrics.methods or []), *config.methods}
    unknown = [name for name in config.report.compare_to if name != "best" and name not in configured]
    if unknown:
        raise ConfigError(f"{where}: report.compare_to = {config.report.compare_to}: {unknown[0]!r} is neither a "
                          f"configured method ({', '.join(config.fusion.methods)}) nor best")


def check_device(device: str, where: str = "config") -> None:
    """``run.device`` names a device this machine has (a CUDA request on a CPU-only torch is an error
    here, not a driver traceback in the middle of a stage)."""
    if device in ("auto", "cpu"):
        return
    import torch

    if device == "mps":
        available = torch.backends.mps.is_available()
        count = 1 if available else 0
    else:
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    wanted = [int(part) for part in device.removeprefix("cuda").lstrip(":").split(",") if part.isdigit()] or [0]
    if count == 0:
        raise ConfigError(f"{where}: run.device = {device!r}: no such device here (torch {torch.__version__} "
                          f"sees no {'MPS' if device == 'mps' else 'CUDA'} device); use auto or cpu")
    if max(wanted) >= count:
        raise ConfigError(f"{where}: run.device = {device!r}: this machine has {count} GPU(s) (0..{count - 1})")


def _describe(item: Mapping[str, Any], tree: Mapping[str, Any], model: type[BaseModel] = Config,
              prefix: list[str] = ()) -> str:
    """One line per pydantic error: the dotted key, the value and what is wrong, with suggestions."""
    loc = [str(part) for part in item["loc"]]
    key = ".".join([*prefix, *loc])
    if item["type"] == "extra_forbidden":
        return _unknown(key, _fields_at(loc[:-1], model))
    value = _value_at(tree, loc)
    shown = f" = {value!r}" if value is not _MISSING else ""
    return f"{key}{shown}: {item['msg'].removeprefix('Value error, ')}"


def _unknown(key: str, known: Iterable[str]) -> str:
    """'detect.epoch: unknown key; did you mean detect.epochs?'"""
    *parents, last = key.split(".")
    known = sorted(known)
    near = difflib.get_close_matches(last, known, n=3, cutoff=0.5)
    hint = (f"; did you mean {' or '.join('.'.join([*parents, n]) for n in near)}?" if near
            else f"; known keys here: {', '.join(known)}")
    return f"{key}: unknown key{hint}"


_MISSING = object()


def _value_at(tree: Any, loc: list[str]) -> Any:
    node = tree
    for part in loc:
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def _fields_at(loc: list[str], model: Any = Config) -> list[str]:
    """The declared keys of the section at ``loc`` of ``model`` (for suggestions)."""
    for part in loc:
        if part.isdigit():
            continue
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return []
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [annotation, *args, *(a for arg in args for a in getattr(arg, "__args__", ()))]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return []
    return sorted(model.model_fields)


def dump_config(config: Config) -> str:
    """The resolved config as YAML (every key, defaults included)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def describe_keys(model: type[BaseModel] = Config, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, description) for every declared key, for ``pipelines config --keys`` (the
    config's own sections, then each downstream task's)."""
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows += describe_keys(annotation, f"{key}.")
            continue
        default = field.get_default(call_default_factory=True)
        shown = default.model_dump(mode="json") if isinstance(default, BaseModel) else default
        type_name = annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")
        type_name = type_name.replace("pathlib.", "")
        rows.append((key, type_name, json.dumps(shown, default=str), field.description or ""))
    if model is Config:
        for section, settings in task_sections().items():
            rows += describe_keys(settings, f"{section}.")
    return rows


# --- where a run's files go ---------------------------------------------------------------------

def run_layout(config: Config) -> RunLayout:
    """Every path of the run: ``<run.root>/<run.name>``; the benchmark in ``data.benchmark`` or
    ``<run>/benchmark``; the report in ``report.dir`` or ``reports/<run.name>``."""
    root = config.run.root.expanduser().resolve() / config.run.name
    benchmark, report = config.data.benchmark, config.report.dir
    return RunLayout(root=root,
                     benchmark=benchmark.expanduser().resolve() if benchmark else root / "benchmark",
                     report=report.expanduser().resolve() if report else Path("reports").resolve() / config.run.name)
