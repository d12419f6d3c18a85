"""Fusers that need no training, one module per family, plus the importer of external results.

- :mod:`.sources`    the source images themselves (the paper's IR and VI columns)
- :mod:`.pixel`      pixel-wise rules: average, choose-max
- :mod:`.multiscale` Laplacian pyramid and discrete wavelet transform
- :mod:`.two_scale`  base/detail decompositions with saliency weights: GFF, TIF
- :mod:`.external`   fused images produced by any published method's own code

The classical methods are grey-level rules ``rule(ir, y) -> fused_y`` on the infrared image and the
visible luminance; :class:`LuminanceFuser` applies one and puts the visible chroma back.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

import numpy as np

from fusion.color import fuse_luminance

Rule = Callable[..., np.ndarray]


@dataclass(frozen=True)
class LuminanceFuser:
    """``fuser(ir, vi)`` for a grey-level rule with fixed options; picklable, so workers can run it."""

    rule: Rule
    options: dict[str, Any] = field(default_factory=dict)

    def __call__(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        return fuse_luminance(ir, vi, partial(self.rule, **self.options))
