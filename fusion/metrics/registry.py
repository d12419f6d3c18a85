"""Every metric with its metadata: direction, reference, conventions, smallest image, degenerate input.

The report and the statistics read :data:`REGISTRY` (``direction``) to rank methods; adding a metric
is one function in a module of this package and one entry here (and its name in the conventions
that have it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np

from fusion.metrics import contrast, difference, feature_mi, gradients, information, intensity, structure, vif
from fusion.metrics.conventions import CONVENTIONS, Convention

MetricFunction = Callable[[np.ndarray, np.ndarray, np.ndarray, Convention], float]


@dataclass(frozen=True)
class MetricInfo:
    name: str
    function: MetricFunction
    direction: Literal["higher", "lower"]
    """Which way is better."""
    reference: str
    """The paper, and the toolkit file the implementation follows."""
    degenerate: str
    """Value on degenerate input (flat images, F equal to a source), tested."""
    min_size: int = 2
    """Smallest height and width the metric is defined for; smaller images give NaN."""

    @property
    def conventions(self) -> tuple[str, ...]:
        """The conventions in which this metric exists."""
        return tuple(name for name, c in CONVENTIONS.items() if self.name in c.metrics)


_ENTRIES = (
    MetricInfo("EN", intensity.en, "higher", "Roberts et al., J. Appl. Remote Sens. 2008; Evaluator.EN, "
               "metricsEntropy.m", "0 for a flat F"),
    MetricInfo("SD", intensity.sd, "higher", "Rao, 1997; Evaluator.SD, metricsVariance.m", "0 for a flat F"),
    MetricInfo("SF", intensity.sf, "higher", "Eskicioglu & Fisher, IEEE TCOM 1995; Evaluator.SF, "
               "metricsSpatial_frequency.m", "0 for a flat F"),
    MetricInfo("AG", intensity.ag, "higher", "Cui et al., Opt. Commun. 2015; Evaluator.AG, "
               "metricsAvg_gradient.m", "0 for a flat F"),
    MetricInfo("EI", intensity.ei, "higher", "Rajalingam & Priya, 2018; metricsEdge_intensity.m",
               "0 for a flat F", min_size=1),
    MetricInfo("MI", information.mi, "higher", "Qu et al., Electron. Lett. 2002; Evaluator.MI "
               "(sklearn mutual_info_score), metricsMutinf.m", "0 for a flat F; EN(F) ln 2 + MI(F, VI) "
               "(nats) when F = IR", min_size=1),
    MetricInfo("NMI", information.nmi, "higher", "Hossny et al., Electron. Lett. 2008",
               "NaN when F and a source are both flat; 2 when F = IR = VI", min_size=1),
    MetricInfo("CE", information.ce, "lower", "metricsCross_entropy.m (VIFB)",
               "0 when F has both sources' histogram (F = IR = VI)", min_size=1),
    MetricInfo("TE", information.te, "higher", "Cvejic et al., Electron. Lett. 2006 (Tsallis, q = 1.85)",
               "0 for a flat F", min_size=1),
    MetricInfo("QNCIE", information.qncie, "higher", "Wang, Shen & Zhang, 2005 (NCIE)",
               "1 - log_256(3), its minimum, when the images share nothing (all flat)", min_size=1),
    MetricInfo("SCD", difference.scd, "higher", "Aslantas & Bendes, AEU 2015; Evaluator.SCD",
               "NaN when F equals a source (a difference image is flat)"),
    MetricInfo("CC", difference.cc, "higher", "Evaluator.CC (Pearson's r, averaged over the sources)",
               "NaN when F or a source is flat; 1 when F = IR = VI", min_size=1),
    MetricInfo("VIF", vif.vif, "higher", "Sheikh & Bovik, IEEE TIP 2006 (VIFp); Evaluator.VIFF",
               "1 + VIFp(VI, F) when F = IR; 2 for three flat images (0/0 -> 1 per source)",
               min_size=vif.VIF_MIN_SIZE),
    MetricInfo("Qabf", gradients.qabf, "higher", "Xydeas & Petrovic, Electron. Lett. 2000; Evaluator.Qabf, "
               "metricsQabf.m", "NaN when both sources are 0 (a flat non-zero image has edges at its zero-padded "
               "border, as in the toolkits); Q_perfect = 0.9994 Qa(1)/(1 + e^-7.5) when F = IR = VI", min_size=3),
    MetricInfo("Nabf", gradients.nabf, "lower", "Shreyamsha Kumar, SIViP 2013 (modified Petrovic N^AB/F)",
               "0 when F adds no edge (F = IR); NaN when no source edge reaches strength 2", min_size=3),
    MetricInfo("SSIM", structure.ssim, "higher", "Wang et al., IEEE TIP 2004; Evaluator.SSIM (skimage), "
               "metricsSsim.m", "2 when F = IR = VI", min_size=11),
    MetricInfo("MS-SSIM", structure.ms_ssim, "higher", "Wang, Simoncelli & Bovik, Asilomar 2003",
               "2 when F = IR = VI", min_size=structure.MS_SSIM_MIN_SIZE),
    MetricInfo("Qy", structure.qy, "higher", "Yang et al., Inf. Fusion 2008",
               "1 when F = IR = VI", min_size=7),
    MetricInfo("Qcb", contrast.qcb, "higher", "Chen & Blum, Image Vis. Comput. 2009; metricsQcb.m",
               "NaN when an image is flat (its stretch divides by 0)", min_size=31),
    MetricInfo("Qcv", contrast.qcv, "lower", "Chen & Varshney, Inf. Fusion 2007; metricsQcv.m",
               "0 when F = IR = VI; NaN when an image is flat", min_size=3),
    MetricInfo("PSNR", difference.psnr, "higher", "Evaluator.PSNR (peak max F), metricsPsnr.m",
               "+inf when F = IR = VI", min_size=1),
    MetricInfo("MSE", difference.mse, "lower", "Evaluator.MSE", "0 when F = IR = VI", min_size=1),
    MetricInfo("FMI_pixel", feature_mi.fmi_pixel, "higher", "Haghighat et al., Comput. Electr. Eng. 2011; "
               "Fast-FMI (2014), fmi.m feature 'none', 3x3 windows", "1 when F = IR = VI (every window equals "
               "its source's)", min_size=feature_mi.FMI_WINDOW),
    MetricInfo("FMI_dct", feature_mi.fmi_dct, "higher", "Haghighat et al., 2011; fmi.m feature 'dct' (dct2), "
               "as analysis_fmi.m of Linfeng-Tang's kit", "1 when F = IR = VI", min_size=feature_mi.FMI_WINDOW),
    MetricInfo("FMI_w", feature_mi.fmi_w, "higher", "Haghighat et al., 2011; fmi.m feature 'wavelet' (dmey "
               "DWT, PyWavelets' 62-tap filter)", "1 when F = IR = VI", min_size=feature_mi.FMI_WINDOW),
    MetricInfo("RMSE", difference.rmse, "lower", "metricsRmse.m (VIFB: its sqrt(SSE) / (H W))",
               "0 when F = IR = VI", min_size=1),
)

REGISTRY: dict[str, MetricInfo] = {info.name: info for info in _ENTRIES}
"""Metric name -> :class:`MetricInfo`."""


def direction(name: str) -> Literal["higher", "lower"]:
    """'higher' or 'lower': which way metric ``name`` is better."""
    return REGISTRY[name].direction
