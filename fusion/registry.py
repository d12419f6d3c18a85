"""Name -> fuser, with metadata. Every fuser has the same typed call (:mod:`fusion.fuser`).

Classical fusers and the ``external`` importer register themselves with :func:`register` (modules of
:mod:`fusion.baselines`). Learned methods are data (:class:`fusion.learned.architecture.LearnedMethod`)
registered by their architecture package's ``architecture`` module, listed once in
:data:`LEARNED_PACKAGES`; they are built from a checkpoint. Both lists are imported on first use.

:func:`method_info` gives a method's metadata (learned or not, its architecture, its default training
crop); :func:`validate_method_options` checks a method's options as a config file gives them.
"""
from __future__ import annotations

import difflib
import importlib
import inspect
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Mapping

from pydantic import ConfigDict, ValidationError, validate_call

from fusionbench.errors import FusionBenchError


class FuserError(FusionBenchError, ValueError):
    """An unknown method name or options a fuser cannot be built with."""


Factory = Callable[..., Any]
_FACTORIES: dict[str, Factory] = {}

# Modules whose import registers the classical fusers and the external importer.
_BASELINE_MODULES = ("sources", "pixel", "multiscale", "two_scale", "external")

# One entry per architecture package: importing ``fusion.<package>.architecture`` registers the
# architecture and its methods (fusion.learned.architecture.register_architecture / register_method).
LEARNED_PACKAGES = ("s4fusion", "smfnet")

# Options every method accepts beside its fuser's own: a display name; and those of an imported fused folder.
DISPLAY_OPTIONS = ("name",)
EXTERNAL_OPTIONS = ("from", "name", "keep_grey")
# The sections of a learned method's options besides its fuser's: architecture, loss and training arguments.
LEARNED_SECTIONS = ("model", "loss", "train")


@dataclass(frozen=True)
class MethodInfo:
    """What the rest of the project may know about a method without building it."""

    name: str
    learned: bool
    arch: str | None = None
    default_crop: int | None = None


def register(name: str) -> Callable[[Factory], Factory]:
    """Decorator: make ``factory(**options) -> fuser`` available as ``name``."""
    def decorate(factory: Factory) -> Factory:
        if name in _FACTORIES and _FACTORIES[name] is not factory:
            raise FuserError(f"fuser {name!r} is registered twice")
        _FACTORIES[name] = factory
        return factory
    return decorate


def register_learned(name: str) -> None:
    """Make the learned method ``name`` a fuser built from a checkpoint (called by ``register_method``)."""
    if name not in _FACTORIES:
        register(name)(_learned_factory(name))


def load_learned_packages() -> None:
    for package in LEARNED_PACKAGES:
        importlib.import_module(f"fusion.{package}.architecture")


def _factories() -> dict[str, Factory]:
    for module in _BASELINE_MODULES:
        importlib.import_module(f"fusion.baselines.{module}")
    load_learned_packages()
    return _FACTORIES


def available_methods() -> list[str]:
    """Every registered method name, classical and learned (``external`` included)."""
    return sorted(_factories())


def method_info(name: str) -> MethodInfo:
    """Metadata of the registered method ``name``."""
    from fusion.learned.architecture import learned_methods

    if name not in _factories():
        raise FuserError(f"unknown fusion method {name!r}{_close(name, available_methods())}; available: "
                         f"{', '.join(available_methods())}")
    learned = learned_methods().get(name)
    if learned is None:
        return MethodInfo(name, learned=False)
    return MethodInfo(name, learned=True, arch=learned.arch, default_crop=learned.architecture.default_crop)


def code_identity(name: str, extra_modules: tuple[str, ...] = ()) -> str:
    """Hash of the source code that computes ``name``'s output (:mod:`fusion.code_identity`), plus
    ``extra_modules`` (e.g. the image reader and writer around the fuser). A learned method's code includes
    its architecture's modules (registered by name, so no import statement leads there)."""
    from fusion.code_identity import fuser_code_identity
    from fusion.learned.architecture import learned_methods

    factories = _factories()
    if name not in factories:
        raise FuserError(f"unknown fusion method {name!r}; available: {', '.join(sorted(factories))}")
    method = learned_methods().get(name)
    if method is not None:
        arch = method.architecture
        extra_modules = (*extra_modules, arch.build.__module__, arch.next_valid_size.__module__)
    return fuser_code_identity(factories[name], extra_modules)


def is_learned(name: str) -> bool:
    """True for a registered learned method (trained by train-fusion, built from a checkpoint)."""
    from fusion.learned.architecture import learned_methods

    _factories()
    return name in learned_methods()


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


def validate_method_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Check the options a config gives method ``name`` (``methods.<name>``) before any work; returns them.

    Every method takes a display ``name``; ``from`` imports a folder of fused images instead (options
    ``from``, ``name``, ``keep_grey``). Classical fusers: the keyword arguments of their factory. Learned
    methods: the fuser's options (``weights``, ``amp``, ``max_batch``, ``output``) plus ``model``
    (architecture arguments), ``loss`` (loss arguments) and ``train`` (training settings over the shared
    ``fusion.train``), each checked against its dataclass. Raises a :class:`FuserError` naming the bad
    key and its close matches.
    """
    from fusion.learned.architecture import build_options, check_keys, learned_methods

    if not isinstance(options, Mapping):
        raise FuserError(f"{name}: options must be a mapping, got {options!r}")
    if options.get("from") is not None:
        check_keys(options, EXTERNAL_OPTIONS, name)
        return dict(options)
    factories = _factories()
    if name not in factories:
        raise FuserError(f"unknown fusion method {name!r}{_close(name, sorted(factories))}; registered: "
                         f"{', '.join(sorted(factories))} (or import a folder of fused images with 'from')")
    method = learned_methods().get(name)
    accepted = [*inspect.signature(factories[name]).parameters, *DISPLAY_OPTIONS]
    if method is None:
        check_keys(options, accepted, name)
        _check_values(factories[name], {k: v for k, v in options.items() if k not in DISPLAY_OPTIONS})
        return dict(options)
    check_keys(options, [p for p in accepted if p != "device"] + list(LEARNED_SECTIONS), name)  # the device is the run's
    from fusion.learned.trainer import TrainSettings

    arch = method.architecture
    build_options(arch.config, {**method.model, **(options.get("model") or {})}, f"{name}.model")
    build_options(arch.loss, {**method.loss, **(options.get("loss") or {})}, f"{name}.loss")
    check_keys(options.get("train") or {}, [f.name for f in fields(TrainSettings) if f.name != "seed"], f"{name}.train")
    build_options(TrainSettings, {**method.train, **(options.get("train") or {})}, f"{name}.train")
    return dict(options)


def _check_values(factory: Factory, options: Mapping[str, Any]) -> None:
    """Build the fuser once with ``options`` checked against its factory's signature: the types and the
    bounds declared there as data (``r1: Annotated[int, Field(ge=0)]``), finite numbers, then the factory's
    own checks; a bad value is a :class:`FuserError` naming the option and the value."""
    try:
        validate_call(factory, config=ConfigDict(allow_inf_nan=False))(**options)
    except ValidationError as error:
        problem = error.errors()[0]
        raise FuserError(f"{'.'.join(map(str, problem['loc']))} = {problem['input']!r}: {problem['msg']}") from None


def _close(word: str, choices: list[str]) -> str:
    near = difflib.get_close_matches(word, choices, n=3)
    return f" (did you mean {' or '.join(repr(n) for n in near)}?)" if near else ""


def _learned_factory(name: str) -> Factory:
    def learned(weights: str | Path, device: str = "auto", amp: str | None = None, max_batch: int | None = None,
                output: str | None = None) -> Any:
        """A trained checkpoint of this method's architecture (the project's own or a converted foreign file);
        ``amp``: None, "bf16" or "fp16" (CUDA only); ``max_batch``: pairs per forward pass; ``output``:
        "clamp" or "minmax" (per-image min-max normalisation of the fused luminance; None: the method's)."""
        from fusion.learned.architecture import learned_method
        from fusion.learned.inference import LearnedFuser

        fuser = LearnedFuser.from_checkpoint(Path(weights), device=device, amp=amp,
                                             max_batch=int(max_batch) if max_batch else None,
                                             output=output or learned_method(name).output)
        expected = learned_method(name).arch
        if fuser.arch.name != expected:
            raise FuserError(f"{weights}: a {fuser.arch.name} checkpoint, but {name!r} is a {expected} method")
        return fuser

    learned.__name__ = f"learned_{name}"
    return learned
