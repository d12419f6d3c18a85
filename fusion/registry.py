"""Name -> fuser, with metadata. Every fuser has the same typed call (:mod:`fusion.fuser`).

One table holds an :class:`Entry` per method. Classical fusers and the ``external`` importer register
themselves with :func:`register` (modules of :mod:`fusion.baselines`). Learned methods are data
(:class:`fusion.learned.architecture.LearnedMethod`) registered by their architecture package's
``architecture`` module, listed once in :data:`LEARNED_PACKAGES`; ``register_method`` there builds their
entry (a fuser built from a checkpoint, its options check) and hands it to :func:`register_entry`. Both
lists of modules are imported by name on first use, so this module imports nothing of
:mod:`fusion.learned`: the learned framework depends on the registry, never the reverse.

:func:`method_info` gives a method's metadata (learned or not, its architecture, its default training
crop); :func:`validate_method_options` checks a method's options as a config file gives them.
"""
from __future__ import annotations

import difflib
import importlib
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from pydantic import ConfigDict, ValidationError, validate_call

from fusion.code_identity import fuser_code_identity
from fusionbench.errors import FusionBenchError


class FuserError(FusionBenchError, ValueError):
    """An unknown method name or options a fuser cannot be built with."""


class OptionsError(FuserError):
    """Options (a fuser's, or a learned method's architecture, loss or training arguments) that do not fit."""


Factory = Callable[..., Any]
Validator = Callable[[Mapping[str, Any]], None]

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


@dataclass(frozen=True)
class Entry:
    """One registered method. ``validate(options)`` raises an :class:`OptionsError` for options the
    method does not take (the shared ``name`` and ``from`` handling is :func:`validate_method_options`'s);
    ``code_modules``: modules its output depends on that no import statement of the factory's module
    reaches (a learned method's network, registered by name)."""

    factory: Factory
    validate: Validator
    learned: bool = False
    arch: str | None = None
    default_crop: int | None = None
    code_modules: tuple[str, ...] = ()


_ENTRIES: dict[str, Entry] = {}


def register_entry(name: str, entry: Entry) -> None:
    """Make ``entry`` available as ``name`` (registering the same factory again keeps the first entry)."""
    if _ENTRIES.setdefault(name, entry).factory is not entry.factory:
        raise FuserError(f"fuser {name!r} is registered twice")


def register(name: str) -> Callable[[Factory], Factory]:
    """Decorator: make ``factory(**options) -> fuser`` available as ``name``; its options are the
    factory's keyword arguments."""
    def decorate(factory: Factory) -> Factory:
        def validate(options: Mapping[str, Any]) -> None:
            check_keys(options, accepted_options(factory), name)
            _check_values(factory, {k: v for k, v in options.items() if k not in DISPLAY_OPTIONS})

        register_entry(name, Entry(factory, validate))
        return factory
    return decorate


def accepted_options(factory: Factory) -> list[str]:
    """The option keys a config may give a method built by ``factory``: its arguments and the display name."""
    return [*inspect.signature(factory).parameters, *DISPLAY_OPTIONS]


def check_keys(options: Mapping[str, Any], known: Sequence[str], what: str) -> None:
    """An :class:`OptionsError` naming the first unknown key, its close matches and the known keys."""
    if not isinstance(options, Mapping):
        raise OptionsError(f"{what}: options must be a mapping, got {options!r}")
    for key in options:
        if key not in known:
            raise OptionsError(f"{what}: unknown option {key!r}{_close(str(key), list(known))}; "
                               f"it takes: {', '.join(known)}")


def load_learned_packages() -> None:
    for package in LEARNED_PACKAGES:
        importlib.import_module(f"fusion.{package}.architecture")


def _entries() -> dict[str, Entry]:
    for module in _BASELINE_MODULES:
        importlib.import_module(f"fusion.baselines.{module}")
    load_learned_packages()
    return _ENTRIES


def available_methods() -> list[str]:
    """Every registered method name, classical and learned (``external`` included)."""
    return sorted(_entries())


def method_info(name: str) -> MethodInfo:
    """Metadata of the registered method ``name``."""
    entries = _entries()
    if name not in entries:
        raise FuserError(f"unknown fusion method {name!r}{_close(name, available_methods())}; available: "
                         f"{', '.join(available_methods())}")
    entry = entries[name]
    return MethodInfo(name, learned=entry.learned, arch=entry.arch, default_crop=entry.default_crop)


def code_identity(name: str, extra_modules: tuple[str, ...] = ()) -> str:
    """Hash of the source code that computes ``name``'s output (:mod:`fusion.code_identity`), plus
    ``extra_modules`` (e.g. the image reader and writer around the fuser). A learned method's code includes
    its architecture's modules (its entry's ``code_modules``: registered by name, so no import statement
    leads there)."""
    entries = _entries()
    if name not in entries:
        raise FuserError(f"unknown fusion method {name!r}; available: {', '.join(sorted(entries))}")
    entry = entries[name]
    return fuser_code_identity(entry.factory, (*extra_modules, *entry.code_modules))


def is_learned(name: str) -> bool:
    """True for a registered learned method (trained by train-fusion, built from a checkpoint)."""
    entry = _entries().get(name)
    return entry is not None and entry.learned


def build_fuser(name: str, **options: Any) -> Any:
    """Build the fuser registered as ``name`` with its options (e.g. ``levels=4``, ``weights=path``)."""
    entries = _entries()
    if name not in entries:
        raise FuserError(f"unknown fusion method {name!r}; available: {', '.join(sorted(entries))}")
    factory = entries[name].factory
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
    if not isinstance(options, Mapping):
        raise FuserError(f"{name}: options must be a mapping, got {options!r}")
    if options.get("from") is not None:
        check_keys(options, EXTERNAL_OPTIONS, name)
        return dict(options)
    entries = _entries()
    if name not in entries:
        raise FuserError(f"unknown fusion method {name!r}{_close(name, sorted(entries))}; registered: "
                         f"{', '.join(sorted(entries))} (or import a folder of fused images with 'from')")
    entries[name].validate(options)
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
