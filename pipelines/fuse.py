"""The fuse stage: which fuser a config asks for, with which options, and its fused set.

The engine that writes a set resumably is :mod:`fusion.engine`; what a complete set is, for every
stage that reads one, is :mod:`fusionbench.fused_set`. This module only turns a config (and the
command's flags) into a fuser, its fingerprint and manifest info.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from fusion.engine import FUSE_IO_MODULES, Shard, fuse_set
from fusion.learned.architecture import learned_methods
from fusion.learned.checkpoint import checkpoint_identity
from fusion.registry import build_fuser, code_identity, is_learned
from fusionbench.benchmark import Benchmark, BenchmarkError
from fusionbench.errors import FusionBenchError
from fusionbench.fused_set import check_method_name, is_complete, manifest_path, read_manifest
from pipelines.config import run_layout
from pipelines.devices import apply_scan_backend, runtime_identity, torch_device
from pipelines.schema import Config

LEARNED_FUSER_OPTIONS = ("amp", "output", "max_batch")  # methods.<learned method> keys the fuser takes

# --- from a config: which fuser, with which options ---------------------------------------------

def resolve_weights(config: Config, method: str, weights: str | Path | None = None) -> Path:
    """A learned method's checkpoint: ``weights``, else ``methods.<method>.weights``, else the one
    ``train-fusion`` wrote (``<run>/fusion/<method>/best.pt``); missing files are a clear error."""
    explicit = weights or config.method_options(method).get("weights")
    path = Path(explicit).expanduser() if explicit else run_layout(config).fusion(method).best
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint for {method}; run `pipelines train-fusion --method "
                                f"{method}` or give --weights (the authors' model.pkl works for s4fusion)")
    return path.resolve()


def build_method(config: Config, method: str, *, weights: str | Path | None = None,
                 source: str | Path | None = None, keep_grey: bool | None = None
                 ) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """The fuser for ``method`` plus its fingerprint (what identifies its output) and manifest info.

    ``source`` (or ``methods.<method>.from``) makes it an imported external set; learned methods load
    their checkpoint; classical ones take their options from ``methods.<method>``.
    """
    check_method_name(method)
    section = config.method_options(method)
    source = source or section.get("from")
    # This method's own settings only: another method's options, the method list or a performance knob
    # (fusion.workers, fusion.batch_size) would rewrite the manifest, and so redo what depends on the set.
    info: dict[str, Any] = {"display_name": section.get("name", method),
                            "config": {"file": str(config.source) if config.source else None, "options": section}}
    if source:
        keep = bool(section.get("keep_grey", False)) if keep_grey is None else keep_grey
        fuser = build_fuser("external", folder=source, keep_grey=keep)
        options: dict[str, Any] = {"from": str(fuser.folder), "keep_grey": keep}
    elif is_learned(method):
        path, device = resolve_weights(config, method, weights), torch_device(config)
        given = {k: section[k] for k in LEARNED_FUSER_OPTIONS if k in section}
        info["weights"] = str(path)
        scan_backend = apply_scan_backend(config, device)
        fuser = build_fuser(method, weights=path, device=str(device), **{"max_batch": config.fusion.batch_size, **given})
        options = {"weights": checkpoint_identity(path),  # amp and output change the images, max_batch does not
                   **{k: v for k, v in given.items() if k != "max_batch"},
                   "runtime": {**runtime_identity(device), "scan_backend": scan_backend}}
        info["network"] = {"parameters": sum(p.numel() for p in fuser.model.parameters()),
                           "changed": learned_methods()[method].changed_model(fuser.config)}
    else:
        options = {k: v for k, v in section.items() if k != "name"}  # `name` is the display name, not an option
        fuser = build_fuser(method, **options)
    fingerprint = {"method": method, "options": options,
                   "code": code_identity("external" if source else method, extra_modules=FUSE_IO_MODULES)}
    return fuser, fingerprint, info


def is_current(config: Config, method: str) -> bool:
    """True when ``method``'s fused set is complete and was made with what the config asks for now: a
    submitter skips its job then. Cheap where it can be: a learned set's weights are compared by identity
    (its runtime is known only to the device of its job, which checks it again)."""
    try:
        benchmark = Benchmark(run_layout(config).benchmark)
    except BenchmarkError:
        return False
    manifest = read_manifest(manifest_path(benchmark, method)) or {}
    recorded = manifest.get("fingerprint") or {}
    if not manifest.get("complete"):
        return False
    section = config.method_options(method)
    if is_learned(method) and not section.get("from"):
        try:
            weights = checkpoint_identity(resolve_weights(config, method))
        except (FileNotFoundError, FusionBenchError):
            return False
        options = {k: v for k, v in (recorded.get("options") or {}).items() if k != "runtime"}
        wanted = {"weights": weights, **{k: section[k] for k in LEARNED_FUSER_OPTIONS if k in section}}
        if options != wanted or recorded.get("code") != code_identity(method, extra_modules=FUSE_IO_MODULES):
            return False
    elif recorded != build_method(config, method)[1]:
        return False
    return is_complete(benchmark, method)


def fuse_method(config: Config, method: str, *, weights: str | Path | None = None,
                source: str | Path | None = None, display_name: str | None = None,
                keep_grey: bool | None = None, shard: Shard = Shard(), force: bool = False,
                progress: bool = True) -> Path:
    """The whole stage for one method of a config: build its fuser and write its fused set."""
    benchmark = Benchmark(run_layout(config).benchmark)
    fuser, fingerprint, info = build_method(config, method, weights=weights, source=source, keep_grey=keep_grey)
    if display_name:
        info["display_name"] = display_name
    return fuse_set(benchmark, method, fuser, fingerprint=fingerprint, info=info,
                    workers=config.fusion.workers,
                    batch_size=config.fusion.batch_size or 8,
                    shard=shard, force=force, progress=progress)
