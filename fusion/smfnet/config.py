"""SMFNet's configuration: every size is a field, defaults are the authors' release (``net_final.py``)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from fusionbench.errors import FusionBenchError


class SMFNetConfigError(FusionBenchError):
    """Sizes that do not make an SMFNet."""


@dataclass(frozen=True)
class SMFNetConfig:
    """Architecture of one SMFNet (C = ``channels``; all convolutions stride 1, so any H, W >= 2 works).

    heads: heads of every self-attention (MDTA, the base branch's attention); cross_heads: heads of the
        detail branch's cross attention, which works on C/2 channels.
    leff_hidden: hidden width of LeFF; ffn_factor: hidden = ffn_factor * C in TBase's feed-forward.
    irb_expand: hidden = irb_expand * C/2 in every inverted residual block (IRB).
    shallow_blocks / decoder_blocks: transformer blocks after the stem / at the decoder's input.
    base_groups x base_pairs: residual groups of (TB -> TBase) pairs in the base branch, each group
        closed by conv3x3 C -> C/base_reduction, 1x1, conv3x3 back, plus the group's input.
    dilations: one graph node per dilation; graph_iterations: propagation steps (one shared module);
        edge_rounds: cross-modal edge updates per scale (same weights).
    inn_blocks: affine invertible blocks of the detail fusion layer, run in reverse; inn_clamp: their
        scale e(s) = exp(2 * clamp * (sigmoid(s) - 0.5)).
    """

    channels: int = 64
    heads: int = 8
    cross_heads: int = 8
    leff_hidden: int = 64
    ffn_factor: float = 2.0
    irb_expand: int = 2
    shallow_blocks: int = 1
    decoder_blocks: int = 1
    base_groups: int = 2
    base_pairs: int = 2
    base_reduction: int = 4
    dilations: tuple[int, ...] = (4, 8, 16)
    graph_iterations: int = 2
    edge_rounds: int = 2
    inn_blocks: int = 2
    inn_clamp: float = 2.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "dilations", tuple(self.dilations))
        c = self.channels
        problems = []
        if c < 4 or c % 4:
            problems.append(f"channels={c} must be a positive multiple of 4 (split in halves, reduced by 4)")
        if c % self.heads:
            problems.append(f"channels={c} is not divisible by heads={self.heads}")
        if (c // 2) % self.cross_heads:
            problems.append(f"channels/2={c // 2} is not divisible by cross_heads={self.cross_heads}")
        if c % self.base_reduction:
            problems.append(f"channels={c} is not divisible by base_reduction={self.base_reduction}")
        if len(self.dilations) < 2:
            problems.append(f"dilations={self.dilations}: the graph needs at least two nodes")
        for name in ("leff_hidden", "irb_expand", "shallow_blocks", "decoder_blocks", "base_groups",
                     "base_pairs", "graph_iterations", "edge_rounds", "inn_blocks", "heads", "cross_heads"):
            if getattr(self, name) < (0 if name in ("graph_iterations", "edge_rounds") else 1):
                problems.append(f"{name}={getattr(self, name)} is too small")
        if int(c * self.ffn_factor) < 1:
            problems.append(f"ffn_factor={self.ffn_factor} leaves no hidden channel")
        if problems:
            raise SMFNetConfigError("SMFNet sizes: " + "; ".join(problems))

    @property
    def half(self) -> int:
        """Channels of each half of the detail branch's split."""
        return self.channels // 2

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SMFNetConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SMFNetConfigError(f"unknown SMFNet config keys {unknown}; known: {sorted(known)}")
        return cls(**d)
