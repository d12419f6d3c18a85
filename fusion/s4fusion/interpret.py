"""Reading S4Fusion's step sizes: mean Delta per modality and layer (paper Table VIII).

A larger Delta lets a token overwrite more of the hidden state (it "selects" that input); the paper
compares the infrared and visible means in CMSA to show which modality each scale relies on.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn

from fusion.s4fusion.ssm import DirectionalSSM

# Which stream each part of the network scans (the encoders are per modality, CMSA interleaves both).
STREAMS = {"layers_x": ("ir",), "layers_y": ("vi",), "layers_up": ("fused",), "fusion_layers": ("ir", "vi")}


@contextmanager
def recording_delta(model: nn.Module) -> Iterator[dict[str, list[torch.Tensor]]]:
    """While active, every scan module appends its mean Delta per direction and forward pass."""
    records: dict[str, list[torch.Tensor]] = {}
    model = getattr(model, "module", model)  # a DistributedDataParallel wrapper names its model `module`
    modules = {name: m for name, m in model.named_modules() if isinstance(m, DirectionalSSM)}
    for name, module in modules.items():
        module.delta_record = records.setdefault(name, [])
    try:
        yield records
    finally:
        for module in modules.values():
            module.delta_record = None


def mean_delta_rows(records: dict[str, list[torch.Tensor]]) -> list[dict[str, object]]:
    """One row per (scan module, stream): its mean Delta over directions, passes, tokens and channels."""
    rows = []
    for name, values in records.items():
        if not values:
            continue
        streams = STREAMS.get(name.split(".")[0], ("all",))
        means = torch.stack(values).mean(dim=0)
        rows += [{"layer": name, "stream": stream, "mean_delta": float(value)} for stream, value in zip(streams, means)]
    return rows


class DeltaRecorder:
    """The trainer's recorder of mean Delta on the VAL split (``delta.csv``, one row per layer and stream)."""

    filename = "delta.csv"
    columns = ("layer", "stream", "mean_delta")

    @contextmanager
    def recording(self, model: nn.Module) -> Iterator[Callable[[], list[dict[str, object]]]]:
        with recording_delta(model) as records:
            yield lambda: mean_delta_rows(records)
