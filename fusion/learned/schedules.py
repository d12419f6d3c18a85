"""Learning-rate schedules as factors of the peak rate, per optimisation step (``LambdaLR``)."""
from __future__ import annotations

import math

SCHEDULES = ("warmup_cosine", "step")


def warmup_cosine(step: int, total: int, warmup: int, start: float, peak: float, end: float) -> float:
    """Learning rate at ``step``: linear ``start -> peak`` over ``warmup`` steps, then a half cosine
    ``peak -> end`` reaching ``end`` at step ``total`` (S4Fusion's schedule)."""
    if step < warmup:
        return start + (peak - start) * step / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return end + (peak - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def step_decay(step: int, every: int, gamma: float, peak: float) -> float:
    """``peak * gamma ** (step // every)`` (``StepLR``; SMFNet's release: every 20 epochs, gamma 0.5)."""
    return peak * gamma ** (step // max(1, every))
