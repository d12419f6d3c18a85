"""The architecture registry and learned methods as data.

An :class:`Architecture` says everything the generic machinery needs to train, save, load and run
one network family; a :class:`LearnedMethod` is a benchmark method name bound to an architecture with
its architecture, loss and training arguments (S4Fusion's Table V ablations are entries, not code).
Both registries are plain dicts filled by :func:`register_architecture` / :func:`register_method`,
called when an architecture package's ``architecture`` module is imported (see
:data:`fusion.registry.LEARNED_PACKAGES`) or from anywhere else, e.g. a test file.

Options given as mappings (from a config file) become the architecture's own dataclasses through
:func:`build_options`: an unknown key is an :class:`OptionsError` naming the close matches.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Mapping, Protocol, Sequence

import torch
from pydantic import TypeAdapter, ValidationError
from torch import nn

from fusion.registry import (
    LEARNED_SECTIONS,
    Entry,
    Factory,
    FuserError,
    OptionsError,
    Validator,
    accepted_options,
    check_keys,
    load_learned_packages,
    register_entry,
)
from fusionbench.errors import FusionBenchError


class UnknownArchitectureError(FusionBenchError, KeyError):
    """A name that is no registered architecture or learned method."""

    def __str__(self) -> str:
        return str(self.args[0])


class Objective(Protocol):
    """The training loss of one architecture: ``objective(net, ir, vi, stage) -> terms``.

    ``net`` is the (possibly DDP-wrapped) model, so the objective decides how to call it (S4Fusion:
    ``net(ir, vi)``; a staged network may pass ``stage=...``). ``terms`` maps each name of
    :attr:`terms` to a scalar tensor (``"total"`` first, the one that is back-propagated) and each name
    of :attr:`diagnostics` to a tensor whose mean is logged (e.g. per-image adaptive weights).
    """

    terms: tuple[str, ...]
    diagnostics: tuple[str, ...]

    def __call__(self, net: nn.Module, ir: torch.Tensor, vi: torch.Tensor, stage: str) -> dict[str, torch.Tensor]: ...

    def train(self, mode: bool = True) -> Any: ...

    def to(self, device: torch.device) -> Any: ...


class Recorder(Protocol):
    """Something measured on the VAL split every epoch and appended to ``<out>/<filename>``
    (S4Fusion: mean Delta per scan layer, paper Table VIII). The trainer adds the ``epoch`` column."""

    filename: str
    columns: tuple[str, ...]

    def recording(self, model: nn.Module) -> ContextManager[Callable[[], list[dict[str, Any]]]]:
        """While active, forward passes of ``model`` are recorded; the yielded function gives the rows."""
        ...


@dataclass(frozen=True)
class Stage:
    """One training stage. ``groups``: the parameter groups (see :attr:`Architecture.param_groups`)
    updated in this stage (None: all); ``share``: its fraction of the epochs when the training settings
    give no explicit ``stage_epochs`` (the last stage takes the rest)."""

    name: str
    groups: tuple[str, ...] | None = None
    share: float = 1.0


@dataclass(frozen=True)
class Converter:
    """A foreign checkpoint layout (the authors' release, an older project format) this architecture reads.

    ``matches(payload)`` says whether a loaded file is in this layout; ``convert(payload)`` returns the
    architecture config as a mapping and the state dict in this project's names."""

    description: str
    matches: Callable[[dict[str, Any]], bool]
    convert: Callable[[dict[str, Any]], tuple[Mapping[str, Any], dict[str, torch.Tensor]]]


@dataclass(frozen=True)
class Architecture:
    """One network family.

    config / loss: the dataclasses of the architecture and loss arguments (defaults: the release).
    build(config) -> model with ``model(ir, vi) -> fused`` on (B, 1, H, W) tensors in [0, 1] at valid
        sizes, fused luminance (B, 1, H, W), unclipped.
    next_valid_size(config, side) -> the smallest side >= ``side`` the network accepts.
    build_objective(loss, perception) -> the :class:`Objective`; ``perception`` is the frozen ImageNet
        ResNet50 when ``needs_perception`` (else None).
    default_crop: the training crop side when the settings give none (must be valid for the default config).
    stages: the training stages in order; param_groups(model) -> {group: parameter-name prefixes}
        (None: one group "all"); each group has its own learning-rate schedule (starting with the first
        stage that trains it) and gradient clipping.
    recorders(config) -> the :class:`Recorder` objects run on every validation.
    converters: foreign checkpoint layouts :func:`~fusion.learned.checkpoint.load_model` understands.
    """

    name: str
    config: type
    build: Callable[[Any], nn.Module]
    next_valid_size: Callable[[Any, int], int]
    loss: type
    build_objective: Callable[[Any, nn.Module | None], Objective]
    default_crop: int
    needs_perception: bool = False
    stages: tuple[Stage, ...] = (Stage("all"),)
    param_groups: Callable[[nn.Module], Mapping[str, Sequence[str]]] | None = None
    recorders: Callable[[Any], Sequence[Recorder]] = lambda config: ()
    converters: tuple[Converter, ...] = ()
    description: str = ""

    def valid_size(self, config: Any, side: int) -> bool:
        return self.next_valid_size(config, side) == side

    def make_config(self, options: Mapping[str, Any] | None = None) -> Any:
        return build_options(self.config, options or {}, f"{self.name} architecture")

    def make_loss(self, options: Mapping[str, Any] | None = None) -> Any:
        return build_options(self.loss, options or {}, f"{self.name} loss")


@dataclass(frozen=True)
class LearnedMethod:
    """A benchmark method trained and run through an architecture; ``model``, ``loss`` and ``train``
    are the method's own arguments over the architecture's and the shared training defaults; ``output``
    is its default inference output ("clamp" or "minmax", see :class:`~fusion.learned.inference.LearnedFuser`)."""

    name: str
    arch: str
    model: Mapping[str, Any] = field(default_factory=dict)
    loss: Mapping[str, Any] = field(default_factory=dict)
    train: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    output: str = "clamp"

    def changed_model(self, config: Any) -> dict[str, dict[str, Any]]:
        """The architecture arguments of ``config`` that differ from this method's own (a smaller model
        for a CPU run, say): ``{argument: {"used": value, "method": value}}``."""
        own = config_dict(build_options(self.architecture.config, self.model, f"{self.name}.model"))
        used = config_dict(config)
        return {key: {"used": used[key], "method": own[key]} for key in used if used[key] != own[key]}

    @property
    def architecture(self) -> Architecture:
        return get_architecture(self.arch)

    def make_config(self, **overrides: Any) -> Any:
        """The method's architecture config, with ``overrides`` over its own arguments."""
        return self.architecture.make_config({**self.model, **overrides})

    def make_loss(self, **overrides: Any) -> Any:
        """The method's loss settings, with ``overrides`` over its own arguments."""
        return self.architecture.make_loss({**self.loss, **overrides})


_ARCHITECTURES: dict[str, Architecture] = {}
_METHODS: dict[str, LearnedMethod] = {}


def register_architecture(arch: Architecture) -> Architecture:
    """Add ``arch`` (a second registration under the same name must be the same object)."""
    if _ARCHITECTURES.setdefault(arch.name, arch) is not arch:
        raise ValueError(f"architecture {arch.name!r} is registered twice")
    return arch


def register_method(method: LearnedMethod) -> LearnedMethod:
    """Add ``method`` to the learned methods and make it a fuser of :mod:`fusion.registry`."""
    get_architecture(method.arch)
    new = method.name not in _METHODS
    if _METHODS.setdefault(method.name, method) != method:
        raise ValueError(f"learned method {method.name!r} is registered twice")
    method.architecture.make_config(method.model)  # a bad entry fails where it is written
    method.architecture.make_loss(method.loss)
    if new:  # an equal method registered again (its module run twice) keeps its entry
        register_entry(method.name, _registry_entry(method))
    return method


def _registry_entry(method: LearnedMethod) -> Entry:
    """``method`` as a fuser built from a checkpoint; its output also depends on its architecture's
    modules, which no import statement of this module reaches."""
    arch = method.architecture
    factory = _learned_factory(method)
    return Entry(factory, validate=_options_check(method, factory), learned=True, arch=method.arch,
                 default_crop=arch.default_crop, code_modules=(arch.build.__module__, arch.next_valid_size.__module__))


def _learned_factory(method: LearnedMethod) -> Factory:
    def learned(weights: str | Path, device: str = "auto", amp: str | None = None, max_batch: int | None = None,
                output: str | None = None) -> Any:
        """A trained checkpoint of this method's architecture (the project's own or a converted foreign file);
        ``amp``: None, "bf16" or "fp16" (CUDA only); ``max_batch``: pairs per forward pass; ``output``:
        "clamp" or "minmax" (per-image min-max normalisation of the fused luminance; None: the method's)."""
        from fusion.learned.inference import LearnedFuser  # imported here: it imports this module

        fuser = LearnedFuser.from_checkpoint(Path(weights), device=device, amp=amp,
                                             max_batch=int(max_batch) if max_batch else None,
                                             output=output or method.output)
        if fuser.arch.name != method.arch:
            raise FuserError(f"{weights}: a {fuser.arch.name} checkpoint, but {method.name!r} is a {method.arch} method")
        return fuser

    learned.__name__ = f"learned_{method.name}"
    return learned


def _options_check(method: LearnedMethod, factory: Factory) -> Validator:
    """The fuser's options but the device (the run's), plus the architecture, loss and training arguments,
    each checked against its dataclass over the method's own."""
    def validate(options: Mapping[str, Any]) -> None:
        from fusion.learned.trainer import TrainSettings  # imported here: it imports this module

        name, arch = method.name, method.architecture
        check_keys(options, [p for p in accepted_options(factory) if p != "device"] + list(LEARNED_SECTIONS), name)
        build_options(arch.config, {**method.model, **(options.get("model") or {})}, f"{name}.model")
        build_options(arch.loss, {**method.loss, **(options.get("loss") or {})}, f"{name}.loss")
        train = options.get("train") or {}
        check_keys(train, [f.name for f in dataclasses.fields(TrainSettings) if f.name != "seed"], f"{name}.train")
        build_options(TrainSettings, {**method.train, **train}, f"{name}.train")
    return validate


def get_architecture(name: str) -> Architecture:
    _load_packages()
    if name not in _ARCHITECTURES:
        raise UnknownArchitectureError(f"unknown architecture {name!r}{_suggest(name, _ARCHITECTURES)}")
    return _ARCHITECTURES[name]


def learned_method(name: str) -> LearnedMethod:
    _load_packages()
    if name not in _METHODS:
        raise UnknownArchitectureError(f"{name!r} is not a learned method{_suggest(name, _METHODS)}")
    return _METHODS[name]


def architectures() -> dict[str, Architecture]:
    _load_packages()
    return dict(_ARCHITECTURES)


def learned_methods() -> dict[str, LearnedMethod]:
    _load_packages()
    return dict(_METHODS)


def _load_packages() -> None:
    load_learned_packages()


def build_options(cls: type, options: Mapping[str, Any], what: str) -> Any:
    """``cls(**options)`` for a dataclass, each value converted to its field's type first (YAML reads
    ``2e-3`` as a string, ``[32]`` as a list); unknown keys and bad values are :class:`OptionsError`."""
    check_keys(options, [f.name for f in dataclasses.fields(cls)], what)
    try:
        return TypeAdapter(cls).validate_python(dict(options))
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'} = {e['input']!r}: {e['msg']}"
                             if e["loc"] else e["msg"] for e in error.errors())
        raise OptionsError(f"{what}: {problems}") from error
    except (TypeError, ValueError) as error:
        raise OptionsError(f"{what}: {dict(options)}: {error}") from error


def config_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as plain types (tuples as lists), for checkpoints and manifests."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def _suggest(name: str, known: Any) -> str:
    close = difflib.get_close_matches(name, list(known), n=3)
    return f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
