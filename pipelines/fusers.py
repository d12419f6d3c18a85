"""Which fuser a config asks for, with which options, and the fingerprint of the set it makes.

Shared glue: the fuse stage builds its fuser here, and every stage that reads a fused set asks
:func:`fingerprint_reasons` whether the set on disk is the one this config makes (with a shared
``data.benchmark``, another run may have fused the same method with other options).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from fusion.engine import FUSE_IO_MODULES
from fusion.learned.architecture import learned_methods
from fusion.learned.checkpoint import checkpoint_identity
from fusion.registry import build_fuser, code_identity, is_learned
from fusionbench.benchmark import Benchmark
from fusionbench.errors import FusionBenchError
from fusionbench.fused_set import check_method_name, manifest_path, read_manifest
from fusionbench.identity import stale_reasons
from pipelines.config import run_layout
from pipelines.devices import apply_scan_backend, runtime_identity, torch_device
from pipelines.schema import Config

LEARNED_FUSER_OPTIONS = ("amp", "output", "max_batch")  # methods.<learned method> keys the fuser takes


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
        options = {**_learned_options(section, path),
                   "runtime": {**runtime_identity(device), "scan_backend": scan_backend}}
        info["network"] = {"parameters": sum(p.numel() for p in fuser.model.parameters()),
                           "changed": learned_methods()[method].changed_model(fuser.config)}
    else:
        options = {k: v for k, v in section.items() if k != "name"}  # `name` is the display name, not an option
        fuser = build_fuser(method, **options)
    return fuser, _fingerprint(method, options, external=bool(source)), info


def _learned_options(section: dict[str, Any], weights: Path) -> dict[str, Any]:
    """What identifies a learned set's images besides the runtime it was fused on: the weights by identity
    and the options that change the images (amp, output; max_batch does not)."""
    return {"weights": checkpoint_identity(weights),
            **{k: section[k] for k in LEARNED_FUSER_OPTIONS if k in section and k != "max_batch"}}


def _fingerprint(method: str, options: dict[str, Any], external: bool) -> dict[str, Any]:
    return {"method": method, "options": options,
            "code": code_identity("external" if external else method, extra_modules=FUSE_IO_MODULES)}


def fingerprint_reasons(config: Config, method: str) -> list[str]:
    """Why ``method``'s fused set (its manifest's fingerprint) is not the set this config makes: one line
    per differing option, weights or code (empty: it is). Cheap where it can be: a learned set's weights
    are compared by identity without building the network, and its runtime (known only to the device that
    fused it) is left out."""
    path = manifest_path(Benchmark(run_layout(config).benchmark), method)
    recorded = (read_manifest(path) or {}).get("fingerprint")
    what = f"fused set {method!r} ({path})"
    section = config.method_options(method)
    try:
        if is_learned(method) and not section.get("from"):
            expected = _fingerprint(method, _learned_options(section, resolve_weights(config, method)), external=False)
            if recorded is not None:
                recorded = {**recorded, "options": {k: v for k, v in (recorded.get("options") or {}).items()
                                                    if k != "runtime"}}
        else:
            expected = build_method(config, method)[1]
    except (FileNotFoundError, FusionBenchError) as error:
        return [f"{what}: this config's fuser cannot be built ({error})"]
    return stale_reasons(recorded, expected, what)
