"""Conventions: the choices each toolkit makes when it computes the "same" metric, as data.

One set of metric implementations (the other modules of this package) reads these fields, so a
convention is a row of choices, never a copy of the code. Each convention says which toolkit it
reproduces and which metrics exist in it (a toolkit without a metric has no convention for it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from fusionbench.errors import FusionBenchError


class ConventionError(FusionBenchError, ValueError):
    """An unknown convention, or a metric that does not exist in the chosen convention."""


@dataclass(frozen=True)
class Convention:
    """Every choice on which the toolkits disagree (README: "Fusion metric conventions")."""

    name: str
    toolkit: str
    """What it reproduces, and where."""
    metrics: tuple[str, ...]
    """The metrics that exist in this convention, in table order."""
    dtype: type
    """Float type of every computation (CDDFuse's evaluator works in float32 on what it reads)."""
    integer_levels: bool
    """Inputs must be 8-bit grey levels (integers in [0, 255]); False accepts any value in [0, 255]."""
    colour: Literal["grey", "per_channel"]
    """``grey``: colour images are converted to grey first; ``per_channel``: a colour fused image is
    scored channel by channel against the matching source channels and the values are averaged."""
    grey: Literal["opencv_float32_round", "matlab_rgb2gray", "pil_L", "luma_float64"]
    """How colour becomes grey: OpenCV ``cvtColor`` on float32 then ``np.round`` (half to even);
    MATLAB ``rgb2gray`` on uint8 (its coefficients, rounded half away from zero); Pillow's
    ``convert('L')`` (``(19595 R + 38470 G + 7471 B + 2^15) >> 16``); or BT.601 luma in float64,
    not rounded."""
    mi_log: float
    """Base of the logarithm of MI (e: nats, 2: bits)."""
    mi_minmax: bool
    """MI bins min-max normalised images (``round(255 (x - min) / (max - min))``) instead of grey levels."""
    ssim_window: Literal["uniform7", "gaussian11_valid"]
    """scikit-image's 7x7 uniform window with sample covariance, or Wang's 11x11 Gaussian (sigma 1.5)
    over the 'valid' part of the image."""
    ssim_data_range: float
    """L in SSIM's constants; CDDFuse passes float images without one, which scikit-image 0.19 took
    as the float dtype's range 1 - (-1) = 2."""
    psnr: Literal["fused_peak", "peak_255", "vifb"]
    """``10 log10(P^2 / MSE)`` with P = max(F) or 255 and MSE the mean of the two sources' MSEs; or
    VIFB's ``20 log10(255 / sqrt(m))`` with its per-source ``m = sqrt(sum (S - F)^2) / (H W)``."""
    qabf_equal_strength: Literal["strength", "one"]
    """Strength ratio G where a source and F have equal (non-zero) gradient strength: the toolkits'
    ``G = g_F`` (so Q_g saturates) or the definition's ``G = 1``."""
    qabf_scale: float
    """Images are multiplied by this before Qabf (VIFB: 255 * im2double of double data); it only
    matters through the ``strength`` quirk."""
    sf_normalisation: Literal["per_difference", "per_pixel"]
    """Row/column frequencies divided by their own number of differences, or both by H * W (VIFB,
    which also lays colour channels side by side, seams included)."""
    ag_normalisation: Literal["all_pixels", "interior"]
    """Average gradient divided by H * W, or by (H - 1)(W - 1) (VIFB)."""

    @property
    def mi_unit(self) -> str:
        return "nats" if self.mi_log == math.e else "bits"


CDDFUSE = Convention(
    name="cddfuse",
    toolkit="utils/Evaluator.py of Zhaozixiang1228/MMIF-CDDFuse (also EMMA), its pinned versions",
    metrics=("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM", "PSNR", "CC", "MSE"),
    dtype=np.float32, integer_levels=True, colour="grey", grey="opencv_float32_round",
    mi_log=math.e, mi_minmax=False, ssim_window="uniform7", ssim_data_range=2.0, psnr="fused_peak",
    qabf_equal_strength="strength", qabf_scale=1.0, sf_normalisation="per_difference",
    ag_normalisation="all_pixels",
)

VIFB = Convention(
    name="vifb",
    toolkit="metrics/*.m of xingchenzhang/VIFB (MATLAB), called as its compute_metrics.m calls them",
    metrics=("EN", "SD", "SF", "AG", "MI", "CE", "EI", "Qabf", "Qcb", "Qcv", "SSIM", "PSNR", "RMSE"),
    dtype=np.float64, integer_levels=True, colour="per_channel", grey="matlab_rgb2gray",
    mi_log=math.e, mi_minmax=True, ssim_window="gaussian11_valid", ssim_data_range=255.0, psnr="vifb",
    qabf_equal_strength="strength", qabf_scale=255.0, sf_normalisation="per_pixel",
    ag_normalisation="interior",
)

EXACT = Convention(
    name="exact",
    toolkit="this project: the definitions of the papers, float64, no quirks; every metric",
    metrics=("EN", "SD", "SF", "AG", "EI", "MI", "NMI", "CE", "TE", "QNCIE", "SCD", "CC", "VIF",
             "Qabf", "Nabf", "SSIM", "MS-SSIM", "Qy", "Qcb", "Qcv", "PSNR", "MSE", "RMSE",
             "FMI_pixel", "FMI_dct", "FMI_w"),
    dtype=np.float64, integer_levels=False, colour="grey", grey="luma_float64",
    mi_log=math.e, mi_minmax=False, ssim_window="gaussian11_valid", ssim_data_range=255.0,
    psnr="peak_255", qabf_equal_strength="one", qabf_scale=1.0, sf_normalisation="per_difference",
    ag_normalisation="all_pixels",
)

IVIF_ZOO = Convention(
    name="ivif_zoo",
    toolkit="Metric/eval_torch.py + Metric_torch.py of RollingPlain/IVIF_ZOO (images read by Pillow as 'L'); "
            "only the metrics whose definition is reproduced (README: its EN adds 1e-7 inside log2, its "
            "PSNR/MSE work on [0, 1] with peak 255, its VIF pads with zeros: not reproduced)",
    metrics=("SD", "SF", "AG", "MI", "CC", "SCD"),
    dtype=np.float32, integer_levels=True, colour="grey", grey="pil_L",
    mi_log=2.0, mi_minmax=False, ssim_window="gaussian11_valid", ssim_data_range=255.0, psnr="peak_255",
    qabf_equal_strength="strength", qabf_scale=1.0, sf_normalisation="per_difference",
    ag_normalisation="all_pixels",
)

TANG = Convention(
    name="tang",
    toolkit="'General Evaluation Metric/Evaluation' MATLAB kit of Linfeng-Tang/Image-Fusion "
            "(analysis_Reference.m, rgb2gray, im2double where it passes it); only the metrics whose "
            "definition is reproduced (README: its MI saturates grey level 255 + 1 in uint8, its SD "
            "subtracts in uint8, SF/PSNR/MSE on [0, 1], SSIM is MEF-SSIM, FMI_pixel is fmi.m's "
            "default 'edge' feature, FMI_w uses MATLAB's 102-tap dmey: not reproduced)",
    metrics=("EN", "AG", "CC", "SCD", "VIF", "Qabf", "FMI_dct"),
    dtype=np.float64, integer_levels=True, colour="grey", grey="matlab_rgb2gray",
    mi_log=2.0, mi_minmax=False, ssim_window="gaussian11_valid", ssim_data_range=255.0, psnr="peak_255",
    qabf_equal_strength="strength", qabf_scale=1.0 / 255.0, sf_normalisation="per_difference",
    ag_normalisation="interior",
)

CONVENTIONS: dict[str, Convention] = {c.name: c for c in (CDDFUSE, VIFB, IVIF_ZOO, TANG, EXACT)}
DEFAULT_CONVENTION = "cddfuse"


def get_convention(name: str | Convention) -> Convention:
    """The convention called ``name``; an unknown name is an error listing the known ones."""
    if isinstance(name, Convention):
        return name
    try:
        return CONVENTIONS[name]
    except KeyError:
        raise ConventionError(
            f"unknown metric convention {name!r}; known: {', '.join(CONVENTIONS)}") from None
