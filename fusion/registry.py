"""Name -> fuser. Every fuser has the same call: ``fuser(ir, vi) -> fused``.

``ir`` is (H, W) float32 in [0, 1]; ``vi`` is (H, W, 3) RGB float32 in [0, 1] or (H, W) grey
(the conventions of :mod:`fusionbench.images`); ``fused`` is (H, W, 3) uint8 RGB of the same size.
Learned fusers also offer ``fuse_batch([(ir, vi), ...]) -> [fused, ...]`` for batched GPU inference.
The ``external`` importer is the one exception: it is keyed by the pair (see
:mod:`fusion.baselines.external`).

Fusers register themselves with :func:`register`; the classical ones live in
:mod:`fusion.baselines`, the learned S4Fusion family is registered here and imported only when
built, so the registry works without torch models being importable.
"""
from __future__ import annotations

import difflib
import importlib
import inspect
from pathlib import Path
from typing import Any, Callable

from fusionbench.errors import FusionBenchError


class FuserError(FusionBenchError):
    """An unknown method name or options a fuser cannot be built with."""


Factory = Callable[..., Any]
_FACTORIES: dict[str, Factory] = {}

# Modules whose import registers the classical fusers and the external importer.
_BASELINE_MODULES = ("sources", "pixel", "multiscale", "two_scale", "external")

# S4Fusion and its ablations (paper Table V); all are built from a checkpoint.
LEARNED_METHODS = (
    "s4fusion", "s4fusion_wo_pm", "s4fusion_add", "s4fusion_cnn",
    "s4fusion_ca", "s4fusion_sa", "s4fusion_va", "s4fusion_wo_per",
)


def register(name: str) -> Callable[[Factory], Factory]:
    """Decorator: make ``factory(**options) -> fuser`` available as ``name``."""
    def decorate(factory: Factory) -> Factory:
        if name in _FACTORIES and _FACTORIES[name] is not factory:
            raise FuserError(f"fuser {name!r} is registered twice")
        _FACTORIES[name] = factory
        return factory
    return decorate


def _factories() -> dict[str, Factory]:
    for module in _BASELINE_MODULES:
        importlib.import_module(f"fusion.baselines.{module}")
    return _FACTORIES


def available_methods() -> list[str]:
    """Every registered method name, classical and learned (``external`` included)."""
    return sorted(_factories())


def code_identity(name: str, extra_modules: tuple[str, ...] = ()) -> str:
    """Hash of the source code that computes ``name``'s output (:mod:`fusion.code_identity`), plus
    ``extra_modules`` (e.g. the image reader and writer around the fuser)."""
    from fusion.code_identity import fuser_code_identity

    factories = _factories()
    if name not in factories:
        raise FuserError(f"unknown fusion method {name!r}; available: {', '.join(sorted(factories))}")
    return fuser_code_identity(factories[name], extra_modules)


def is_learned(name: str) -> bool:
    return name in LEARNED_METHODS


# Options every method accepts beside its fuser's own: a display name, and an imported fused folder.
DISPLAY_OPTIONS = ("name",)
EXTERNAL_OPTIONS = ("from", "name", "keep_grey")
# What a learned method takes beside its checkpoint (set by the method's training, not here).
LEARNED_OPTIONS = ("weights", "amp", "topology", "name")


def _close(word: str, choices: list[str] | tuple[str, ...]) -> str:
    near = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(n) for n in near)}?)" if near else ""


def validate_method_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Check a method's options before any work: the name is registered (or the options import a
    fused folder with ``from``), and every option is one its fuser takes. Returns the options."""
    if not isinstance(options, dict):
        raise FuserError(f"{name}: options must be a mapping, got {options!r}")
    if options.get("from") is not None:
        allowed: tuple[str, ...] = EXTERNAL_OPTIONS
    else:
        factories = _factories()
        if name not in factories:
            raise FuserError(f"unknown fusion method {name!r}{_close(name, sorted(factories))}; registered: "
                             f"{', '.join(sorted(factories))} (or import a folder of fused images with 'from')")
        if is_learned(name):
            allowed = LEARNED_OPTIONS
        else:
            allowed = (*inspect.signature(factories[name]).parameters, *DISPLAY_OPTIONS)
    for key in options:
        if key not in allowed:
            raise FuserError(f"{name}: unknown option {key!r}{_close(key, allowed)}; it takes: {', '.join(allowed)}")
    return options


def build_fuser(name: str, **options: Any) -> Any:
    """Build the fuser registered as ``name`` with its options (e.g. ``levels=4``, ``weights=path``)."""
    factories = _factories()
    if name not in factories:
        raise FuserError(f"unknown fusion method {name!r}; available: {', '.join(sorted(factories))}")
    factory = factories[name]
    try:
        inspect.signature(factory).bind(**options)
    except TypeError as error:
        raise FuserError(f"fuser {name!r}: bad options {sorted(options)}: {error}") from error
    return factory(**options)


def _learned_factory(weights: str | Path, device: str = "auto", amp: str | None = None, max_batch: int | None = None) -> Any:
    """A trained S4Fusion-family checkpoint (the project's own or the authors' model.pkl); ``amp``:
    None, "bf16" or "fp16" (CUDA only); ``max_batch``: pairs per forward pass."""
    path = Path(weights)
    if not path.is_file():
        raise FuserError(f"{path}: checkpoint not found")
    from fusion.s4fusion.inference import S4FusionFuser

    return S4FusionFuser.from_checkpoint(path, device=device, amp=amp, max_batch=int(max_batch) if max_batch else None)


for _name in LEARNED_METHODS:
    register(_name)(_learned_factory)
