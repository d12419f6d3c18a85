"""One YAML config per run; every value can be overridden from the command line.

Overrides are ``dotted.key=value`` strings whose value is parsed as YAML
(``detect.epochs=2``, ``fusion.methods=[ir,vi]``, ``data.raw=null``).
"""
from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import yaml

BUILTIN_CONFIGS = ("paper", "sample")


class ConfigError(ValueError):
    """A config file or override that cannot be used."""


def builtin_config_path(name: str) -> Path:
    return Path(str(resources.files("pipelines") / "configs" / f"{name}.yaml"))


def load_config(source: str | Path, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """Read a config (a path, or the name of a built-in one) and apply overrides."""
    path = Path(source)
    if not path.is_file() and str(source) in BUILTIN_CONFIGS:
        path = builtin_config_path(str(source))
    if not path.is_file():
        raise ConfigError(f"{source}: config file not found (built-in: {', '.join(BUILTIN_CONFIGS)})")
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    config = apply_overrides(config, overrides)
    config.setdefault("run", {})["config_file"] = str(path.resolve())
    return config


def apply_overrides(config: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    config = copy.deepcopy(config)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key.sub=value")
        set_value(config, key.strip(), yaml.safe_load(raw) if raw.strip() else None)
    return config


def set_value(config: dict[str, Any], dotted: str, value: Any) -> None:
    node = config
    *parents, last = dotted.split(".")
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted!r}: {part!r} is not a section")
        node = child
    node[last] = value


def get_value(config: dict[str, Any], dotted: str, default: Any = None) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def run_dir(config: dict[str, Any]) -> Path:
    """Folder holding everything a run produces: ``<run.root>/<run.name>``."""
    run = config.get("run", {})
    return Path(run.get("root", "runs")).resolve() / str(run.get("name", "default"))


def benchmark_dir(config: dict[str, Any]) -> Path:
    """The prepared benchmark: ``data.benchmark`` or ``<run dir>/benchmark``."""
    explicit = get_value(config, "data.benchmark")
    return Path(explicit).resolve() if explicit else run_dir(config) / "benchmark"


def dump_config(config: dict[str, Any]) -> str:
    return yaml.safe_dump(config, sort_keys=False)


def stage_dir(config: dict[str, Any], stage: str, method: str | None = None) -> Path:
    """Where a stage keeps its outputs: ``<run dir>/<stage>[/<method>]`` (stage: fusion, detect, metrics)."""
    path = run_dir(config) / stage
    return path / method if method else path


def report_dir(config: dict[str, Any]) -> Path:
    """Generated report folder: ``report.dir`` or ``reports/<run name>``."""
    explicit = get_value(config, "report.dir")
    name = str(get_value(config, "run.name", "default"))
    return Path(explicit).resolve() if explicit else Path("reports").resolve() / name
