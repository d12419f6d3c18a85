"""Mean Delta per modality and layer (paper Table VIII): recorded on the real scans, IR and VI kept apart."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fusion.s4fusion.interpret import mean_delta_rows, recording_delta
from fusion.s4fusion.model import S4Fusion


def test_delta_is_recorded_per_layer_and_modality_and_recording_stops():
    torch.manual_seed(0)
    model = S4Fusion().eval()
    cmsa = model.fusion_layers[1].layers[0]
    with torch.no_grad():
        cmsa.x_proj_weight.zero_()  # IR tokens: dt = 0, so Delta = softplus(bias) exactly
        cmsa.y_proj_weight.mul_(40.0)  # VI tokens: large input-dependent dt
    ir = torch.rand(1, 1, 49, 49)
    with torch.no_grad(), recording_delta(model) as records:
        model(ir, 1.0 - ir)
    rows = {(r["layer"], r["stream"]): r["mean_delta"] for r in mean_delta_rows(records)}
    expected_ir = F.softplus(cmsa.dt_projs_bias.detach()).mean().item()
    assert abs(rows[("fusion_layers.1.layers.0", "ir")] - expected_ir) < 1e-6
    assert abs(rows[("fusion_layers.1.layers.0", "vi")] - expected_ir) > 1e-3
    streams = {stream for _, stream in rows}
    assert streams == {"ir", "vi", "fused"}
    assert all(value > 0 for value in rows.values())
    assert "fusion_layers.0.layers.0" not in {layer for layer, _ in rows}  # released topology never runs it
    assert all(m.delta_record is None for m in model.modules() if hasattr(m, "delta_record"))
