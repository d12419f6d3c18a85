"""S4Fusion's configuration: every size is a field; defaults are the paper's / released code's.
(The benchmark's methods, the model and its ablations, are entries in :mod:`.architecture`.)"""
from __future__ import annotations

from dataclasses import dataclass

TOPOLOGIES = ("released", "paper")
FUSION_BLOCKS = ("cmsa", "cmsa_no_mark", "add", "cnn", "channel_attn", "spatial_attn", "vanilla_attn")


@dataclass(frozen=True)
class S4FusionConfig:
    """Architecture of one S4Fusion model.

    topology: "released" (the authors' code: decoder layer 1 gets I^N + V^N alone, the deeper two
        fused features are added before each patch expanding, the finest-scale fusion is unused) or
        "paper" (Eq. 6: F^(l-1) = D^(l)(UP^(l)(F^(l)) + R^(l)) with every scale's R used).
    fusion_block: "cmsa" or one of the Table V ablations.
    dims / depths / depths_decoder: channels and VSS blocks per scale (encoder; decoder reversed).
    d_state / d_state_fusion: scan state size in VSS blocks / CMSA blocks; expand: d_inner = expand * C.
    fusion_depth: blocks per fusion layer (K). cmsa_input_norm: the paper's LayerNorm in front of
        each CMSA block (the released code has none). attn_head_dim: head width of the attention ablations.
    """

    topology: str = "released"
    fusion_block: str = "cmsa"
    in_chans: int = 1
    out_chans: int = 1
    dims: tuple[int, ...] = (48, 96, 192)
    depths: tuple[int, ...] = (1, 2, 1)
    depths_decoder: tuple[int, ...] = (1, 2, 1)
    d_state: int = 12
    d_state_fusion: int = 18
    expand: float = 1.5
    fusion_depth: int = 3
    cmsa_input_norm: bool = False
    attn_head_dim: int = 16
    drop_path_rate: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "dims", tuple(self.dims))
        object.__setattr__(self, "depths", tuple(self.depths))
        object.__setattr__(self, "depths_decoder", tuple(self.depths_decoder))
        if self.topology not in TOPOLOGIES:
            raise ValueError(f"topology must be one of {TOPOLOGIES}, got {self.topology!r}")
        if self.fusion_block not in FUSION_BLOCKS:
            raise ValueError(f"fusion_block must be one of {FUSION_BLOCKS}, got {self.fusion_block!r}")
        if not len(self.dims) == len(self.depths) == len(self.depths_decoder) >= 1:
            raise ValueError(f"dims, depths and depths_decoder need one entry per scale: {self}")
        if any(b != 2 * a for a, b in zip(self.dims, self.dims[1:])) or self.dims[0] % 4:
            raise ValueError(f"dims must double at each scale (patch merging) and dims[0] be a multiple of 4: {self.dims}")

    @property
    def merges(self) -> int:
        """Number of 2x patch mergings (scales - 1)."""
        return len(self.dims) - 1
