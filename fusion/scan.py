"""Selective scan (the S6 recurrence of Mamba), with mamba-ssm's ``selective_scan_fn`` signature.

Per batch b, channel d and state index n::

    dt_t    = softplus(delta_t + delta_bias)        (softplus and bias optional)
    h_t     = exp(dt_t * A[d, n]) * h_{t-1} + dt_t * B_t[n] * u_t
    y_t     = sum_n C_t[n] * h_t[n] + D[d] * u_t
    out_t   = y_t * silu(z_t)                        (z optional)

B and C are (batch, N, L) or (batch, G, N, L); with G groups channel d reads group d // (D / G).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def _grouped(x: Tensor) -> Tensor:
    """View (batch, N, L) as (batch, 1, N, L) so that every code path sees the grouped form."""
    return x.unsqueeze(1) if x.dim() == 3 else x


def selective_scan_ref(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                       D: Tensor | None = None, z: Tensor | None = None,
                       delta_bias: Tensor | None = None, delta_softplus: bool = False,
                       return_last_state: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Plain sequential float64 scan, for tests: slow, short, differentiable through autograd."""
    dtype_in = u.dtype
    u, delta, A = u.double(), delta.double(), A.double()
    B, C = _grouped(B).double(), _grouped(C).double()
    if delta_bias is not None:
        delta = delta + delta_bias.double()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    channels = A.shape[0]
    B = B.repeat_interleave(channels // B.shape[1], dim=1)  # (batch, D, N, L)
    C = C.repeat_interleave(channels // C.shape[1], dim=1)
    h = u.new_zeros(u.shape[0], channels, A.shape[1])
    ys = []
    for t in range(u.shape[-1]):
        dt = delta[:, :, t, None]
        h = torch.exp(dt * A) * h + dt * B[..., t] * u[:, :, t, None]
        ys.append((h * C[..., t]).sum(-1))
    out = torch.stack(ys, dim=-1)
    if D is not None:
        out = out + D.double()[:, None] * u
    if z is not None:
        out = out * F.silu(z.double())
    out = out.to(dtype_in)
    return (out, h) if return_last_state else out


def selective_scan_fn(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                      D: Tensor | None = None, z: Tensor | None = None,
                      delta_bias: Tensor | None = None, delta_softplus: bool = False,
                      return_last_state: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Selective scan: out (batch, D, L) in u's dtype, plus last_state (batch, D, N) on request."""
    out = selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                             return_last_state)
    if return_last_state:
        return out[0].to(u.dtype), out[1].to(u.dtype)
    return out.to(u.dtype)
