"""The authors' checkpoint layout (``models/model_VIF.pth`` of the release): a dict of five state dicts
saved through ``nn.DataParallel`` (every key starts ``module.``), one per module:
``DIDF_Encoder``, ``DIDF_Decoder``, ``GraphModel``, ``BaseFuseLayer``, ``DetailFuseLayer``.

Keys are renamed onto :class:`~fusion.smfnet.model.SMFNet` by ordered regular-expression rules;
:data:`fusion.smfnet.architecture.SMFNET` registers the conversion, so
``fusion.learned.checkpoint.load_model("model_VIF.pth")`` reads the file.
The release also builds modules its forward pass never calls (498,720 parameters at default sizes:
the base branch's ``reduce_channel``/``norm``/``conv_after_body``, the base fusion's
``reduce_channel``, the graph's ``C_ca``, ``C_cat[2:]`` and inner ``C_cls``); their keys are
recognised, checked against their released shapes and dropped; any other missing, unexpected or
mis-shaped key is listed by the loader's error.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from fusion.smfnet.config import SMFNetConfig
from fusionbench.errors import FusionBenchError

DATA_PARALLEL_PREFIX = "module."
RELEASED_MODULES = {
    "DIDF_Encoder": "encoder",
    "DIDF_Decoder": "decoder",
    "GraphModel": "graph",
    "BaseFuseLayer": "base_fusion",
    "DetailFuseLayer": "detail_fusion",
}
_LISTED = 12  # keys shown per category in an error

_GRDB = (
    (r"grdb\.conv\.conv\.", "grdb.conv."),
    (r"grdb\.GRDB\.dense\.conv1\.conv\.", "grdb.dense1."),
    (r"grdb\.GRDB\.dense\.conv2\.conv\.", "grdb.dense2."),
    (r"grdb\.GRDB\.convdown\.conv\.", "grdb.dense_out."),
    (r"grdb\.GRDB\.sobelconv\.convx\.", "grdb.sobel_x."),
    (r"grdb\.GRDB\.sobelconv\.convy\.", "grdb.sobel_y."),
    (r"grdb\.GRDB\.convup\.conv\.", "grdb.gradient_out."),
)
_MODULE_RULES: dict[str, tuple[tuple[str, str], ...]] = {
    "DIDF_Encoder": (
        (r"^patch_embed\.proj\.", "stem."),
        (r"^encoder_level1\.", "shallow."),
        (r"^GRDB_module\.", "detail.grdb."),
        *_GRDB,
        (r"^detailFeature\.TCA\.", "detail.cross_attention."),
        (r"^detailFeature\.layer\.theta_(phi|rho|eta)\.", r"detail.node.\1."),
        (r"^detailFeature\.layer\.", "detail.node."),
        (r"^baseFeature\.conv_first\.", "base.stem."),
        (r"^baseFeature\.layers\.(\d+)\.residual_group\.", r"base.groups.\1.pairs."),
        (r"^baseFeature\.layers\.(\d+)\.conv\.", r"base.groups.\1.tail."),
    ),
    "DIDF_Decoder": ((r"^encoder_level1\.", "transformer."), (r"^output\.", "head.")),
    "BaseFuseLayer": ((r"^", "block."),),
    "DetailFuseLayer": ((r"^net\.", "blocks."), (r"^GRDB\.", "grdb."), *_GRDB),
    "GraphModel": (
        (r"^graph\.graph\.ppm_rgb\.convs\.", "nodes_ir."),
        (r"^graph\.graph\.ppm_dep\.convs\.", "nodes_vi."),
        (r"^graph\.graph\.graph_rgb\.", "propagate_ir."),
        (r"^graph\.graph\.graph_dep\.", "propagate_vi."),
        (r"\.C_wgt\.", ".edge."),
        (r"\.ConvGRU\.ConvGates\.", ".gru.gates."),
        (r"\.ConvGRU\.Conv_ct\.", ".gru.candidate."),
        (r"^graph\.graph\.C_pa\.0\.", "edge_to_vi."),
        (r"^graph\.graph\.C_pa\.1\.", "edge_to_ir."),
        (r"^graph\.C_cat\.0\.", "readout_ir."),
        (r"^graph\.C_cat\.1\.", "readout_vi."),
        (r"^C_cls\.", "merge_conv."),
    ),
}
# Renames shared by every module's blocks (after the module's own rules).
_BLOCK_RULES = (
    (r"\.body\.", "."),  # the release's LayerNorm wrapper
    (r"\.ffn_leff\.", ".ffn."),
    (r"\.mlp\.", ".ffn."),
    (r"\.linear1\.0\.", ".expand."),
    (r"\.dwconv\.0\.", ".depthwise."),
    (r"\.linear2\.0\.", ".project."),
    (r"\.ffn\.project_in\.", ".ffn.expand."),
    (r"\.ffn\.project_out\.", ".ffn.project."),
    (r"\.attn\.scale$", ".attn.temperature"),
    (r"\.attn\.qkv1\.", ".attn.qkv."),
    (r"\.attn\.qkv2\.", ".attn.qkv_conv."),
    (r"\.attn\.proj\.", ".attn.project_out."),
    (r"\.bottleneckBlock\.0\.", ".expand."),
    (r"\.bottleneckBlock\.3\.", ".depthwise."),
    (r"\.bottleneckBlock\.5\.", ".project."),
    (r"\.shffleconv\.", ".mix."),
)
# Modules the release builds but never calls (matched on the key without ``module.``).
_UNUSED = {
    "DIDF_Encoder": r"^baseFeature\.(reduce_channel|norm|conv_after_body)\.",
    "BaseFuseLayer": r"^reduce_channel\.",
    "GraphModel": r"^graph\.(graph\.C_ca\.|C_cat\.([2-9]|\d{2,})\.|C_cls\.)",
}


BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def released_unused_shapes(config: SMFNetConfig = SMFNetConfig()) -> dict[str, tuple[int, ...]]:
    """Released key (``<module>.module.<name>``) -> shape of every tensor of the built-but-unused modules."""
    c, r, n = config.channels, config.channels // 4, len(config.dilations)
    shapes: dict[str, tuple[int, ...]] = {
        "DIDF_Encoder.module.baseFeature.reduce_channel.weight": (c, 2 * c, 1, 1),
        "DIDF_Encoder.module.baseFeature.norm.weight": (c,),
        "DIDF_Encoder.module.baseFeature.norm.bias": (c,),
        "BaseFuseLayer.module.reduce_channel.weight": (c, 2 * c, 1, 1),
        "GraphModel.module.graph.C_cls.weight": (c, 2 * c, 1, 1),
        "GraphModel.module.graph.C_cls.bias": (c,),
    }
    for index, (c_in, c_out, k) in zip((0, 2, 4), ((c, r, 3), (r, r, 1), (r, c, 3))):
        shapes[f"DIDF_Encoder.module.baseFeature.conv_after_body.{index}.weight"] = (c_out, c_in, k, k)
        shapes[f"DIDF_Encoder.module.baseFeature.conv_after_body.{index}.bias"] = (c_out,)
    for i in range(2):
        shapes[f"GraphModel.module.graph.graph.C_ca.{i}.1.weight"] = (c // 2, 2 * c, 1, 1)
        shapes[f"GraphModel.module.graph.graph.C_ca.{i}.3.weight"] = (c, c // 2, 1, 1)
    for i in range(2, 2 * n):  # the release builds one read-out per entry of (chnn + chnn), uses two
        prefix = f"GraphModel.module.graph.C_cat.{i}"
        shapes[f"{prefix}.0.weight"] = (c, n * c, 3, 3)
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.1.{name}"] = (c,)
        shapes[f"{prefix}.1.num_batches_tracked"] = ()
    return shapes


def released_unused_parameters(config: SMFNetConfig = SMFNetConfig()) -> int:
    """Parameters (BatchNorm statistics excluded) the release builds but never uses: 498,720 by default."""
    total = 0
    for key, shape in released_unused_shapes(config).items():
        if not key.endswith(BN_BUFFERS):
            total += int(torch.Size(shape).numel())
    return total


class SMFNetCheckpointError(FusionBenchError):
    """A file that is not the authors' SMFNet checkpoint, or does not fit the model."""


@dataclass(frozen=True)
class ReleasedWeights:
    """The authors' checkpoint in this project's names: ``state_dict`` for :class:`SMFNet` and the
    dropped tensors of the built-but-unused modules (their released names)."""

    state_dict: dict[str, torch.Tensor]
    unused: dict[str, torch.Tensor]


def is_released(payload: Any) -> bool:
    """Whether ``payload`` has the release's five top-level entries."""
    return isinstance(payload, Mapping) and set(RELEASED_MODULES) <= set(payload)


def released_key(module: str, key: str) -> str:
    """One key of the release's ``module`` state dict (``module.`` already stripped) -> this project's."""
    new = key
    for pattern, replacement in _MODULE_RULES[module]:
        new = re.sub(pattern, replacement, new)
    new = "." + new
    for pattern, replacement in _BLOCK_RULES:
        new = re.sub(pattern, replacement, new)
    return f"{RELEASED_MODULES[module]}{new}"


def convert_released(payload: Mapping[str, Any]) -> ReleasedWeights:
    """Rename the five DataParallel state dicts onto SMFNet's keys, setting the unused modules apart."""
    missing = sorted(set(RELEASED_MODULES) - set(payload)) if isinstance(payload, Mapping) else []
    if not isinstance(payload, Mapping) or missing:
        found = sorted(map(str, payload))[:_LISTED] if isinstance(payload, Mapping) else type(payload).__name__
        raise SMFNetCheckpointError(f"not the authors' SMFNet checkpoint: expected the entries "
                                    f"{sorted(RELEASED_MODULES)} (missing {missing}); found {found}")
    state: dict[str, torch.Tensor] = {}
    unused: dict[str, torch.Tensor] = {}
    for module in RELEASED_MODULES:
        for key, value in payload[module].items():
            bare = key[len(DATA_PARALLEL_PREFIX):] if key.startswith(DATA_PARALLEL_PREFIX) else key
            if module in _UNUSED and re.search(_UNUSED[module], bare):
                unused[f"{module}.{key}"] = value
            else:
                state[released_key(module, bare)] = value
    return ReleasedWeights(state, unused)


def released_weights(payload: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The state dict for :class:`SMFNet` at default sizes from the authors' checkpoint, once the
    built-but-unused tensors are checked to be exactly the release's (the framework's loader then lists
    any missing, unexpected or mis-shaped key of the rest, naming the file)."""
    weights = convert_released(payload)
    expected = released_unused_shapes()
    wrong = sorted(set(weights.unused) ^ set(expected)) + sorted(
        f"{k}: file {tuple(v.shape)} vs release {expected[k]}" for k, v in weights.unused.items()
        if k in expected and tuple(v.shape) != expected[k])
    if wrong:
        more = f" ... and {len(wrong) - _LISTED} more" if len(wrong) > _LISTED else ""
        raise SMFNetCheckpointError(f"not the authors' SMFNet checkpoint: the release's unused modules differ "
                                    f"({len(wrong)}): {', '.join(wrong[:_LISTED])}{more}")
    return weights.state_dict
