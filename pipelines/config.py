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
    return key.strip(), value


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
    """The typed config for ``tree``, or one :class:`ConfigError` listing every bad key."""
    try:
        config = Config.model_validate(tree)
    except ValidationError as error:
        problems = [_describe(item, tree) for item in error.errors()]
        raise ConfigError(f"{where}: " + ("; ".join(problems) if len(problems) < 2
                                           else f"{len(problems)} problems:\n  " + "\n  ".join(problems))) from None
    named = [(f"methods.{name}", name) for name in config.methods]
    named += [(f"{key} = {names}", name) for key, names in (("fusion.methods", config.fusion.methods),
                                                           ("metrics.methods", config.metrics.methods or []))
              for name in names if name not in config.methods]
    for key, name in named:
        try:
            validate_method_options(name, config.method_options(name))
        except FuserError as error:
            raise ConfigError(f"{where}: {key}: {error}") from None
    if config.run.executor == "inline":  # a SLURM job computes on the GPUs it gets, not on this machine's
        check_device(config.run.device, where)
    return config


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


def _describe(item: Mapping[str, Any], tree: Mapping[str, Any]) -> str:
    """One line per pydantic error: the dotted key, the value and what is wrong, with suggestions."""
    loc = [str(part) for part in item["loc"]]
    key = ".".join(loc)
    if item["type"] == "extra_forbidden":
        known = _fields_at(loc[:-1])
        near = difflib.get_close_matches(loc[-1], known, n=3, cutoff=0.5)
        hint = (f"; did you mean {' or '.join('.'.join([*loc[:-1], n]) for n in near)}?" if near
                else f"; known keys here: {', '.join(known)}")
        return f"{key}: unknown key{hint}"
    value = _value_at(tree, loc)
    shown = f" = {value!r}" if value is not _MISSING else ""
    return f"{key}{shown}: {item['msg'].removeprefix('Value error, ')}"


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


def _fields_at(loc: list[str]) -> list[str]:
    """The declared keys of the section at ``loc`` (for suggestions)."""
    model: Any = Config
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
    """(key, type, default, description) for every declared key, for ``pipelines config --keys``."""
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
