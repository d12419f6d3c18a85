"""Selective-state-space pieces shared by the VSS block (SS2D) and the CMSA block (Cross SS2D).

* the four 2-D scan orders (row-major, column-major, and both reversed) and their inverses;
* the per-direction input-dependent projections x -> (Delta, B, C);
* Mamba's initialisation of Delta's bias, A (S4D-real) and D.

Parameters are stored stacked over the K = 4 directions, in the layout of the authors' released
weights (``x_proj_weight`` (K, R + 2N, D), ``dt_projs_weight`` (K, D, R), ``dt_projs_bias`` (K, D),
``A_logs`` (K * D, N), ``Ds`` (K * D)).
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fusion.scan import backend_for, directional_scan, selective_scan_fn

DIRECTIONS = 4


def to_direction(x: torch.Tensor, k: int) -> torch.Tensor:
    """(B, C, H, W, *pair) -> (B, C, H * W * pair) in scan order ``k``.

    k = 0 rows, 1 columns, 2 rows reversed, 3 columns reversed. Trailing ``pair`` dims travel with
    their token, so an interleaved (IR, VI) pair keeps its order in the reversed scans too.
    """
    x = x.transpose(2, 3) if k % 2 else x
    return (x.flip(2, 3) if k >= 2 else x).flatten(2)


def from_direction(seq: torch.Tensor, k: int, shape: torch.Size) -> torch.Tensor:
    """Inverse of :func:`to_direction`: (B, C, L') -> (B, C, H, W, *pair) (a view where possible)."""
    height, width, *pair = shape[2:]
    x = seq.unflatten(2, ((width, height) if k % 2 else (height, width)) + tuple(pair))
    x = x.flip(2, 3) if k >= 2 else x
    return x.transpose(2, 3) if k % 2 else x


def dt_rank_for(d_model: int) -> int:
    """Mamba's 'auto' rank of the low-rank Delta projection."""
    return math.ceil(d_model / 16)


def init_dt_bias(d_inner: int, dt_min: float = 1e-3, dt_max: float = 0.1, floor: float = 1e-4) -> torch.Tensor:
    """Bias such that softplus(bias) is log-uniform in [dt_min, dt_max] (Mamba's initialisation)."""
    dt = torch.exp(torch.rand(d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(min=floor)
    return dt + torch.log(-torch.expm1(-dt))


class DirectionalSSM(nn.Module):
    """Owns the scan parameters of the K directions and runs the four directional scans.

    ``proj_names`` lists the input-dependent x -> (Delta, B, C) projections: one for SS2D
    (``x_proj_weight``); one per modality for Cross SS2D (``x_proj_weight``, ``y_proj_weight``),
    which share A, D and the Delta up-projection, as in the released code.
    """

    def __init__(self, d_inner: int, d_state: int, dt_rank: int, proj_names: tuple[str, ...] = ("x_proj_weight",)):
        super().__init__()
        self.d_inner, self.d_state, self.dt_rank = d_inner, d_state, dt_rank
        bound = d_inner ** -0.5
        for name in proj_names:
            weight = torch.empty(DIRECTIONS, dt_rank + 2 * d_state, d_inner).uniform_(-bound, bound)
            self.register_parameter(name, nn.Parameter(weight))
        std = dt_rank ** -0.5
        self.dt_projs_weight = nn.Parameter(torch.empty(DIRECTIONS, d_inner, dt_rank).uniform_(-std, std))
        self.dt_projs_bias = nn.Parameter(torch.stack([init_dt_bias(d_inner) for _ in range(DIRECTIONS)]))
        a = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(DIRECTIONS * d_inner, 1)
        self.A_logs = nn.Parameter(torch.log(a))
        self.Ds = nn.Parameter(torch.ones(DIRECTIONS * d_inner))
        self.delta_record: list[torch.Tensor] | None = None  # set by interpret.recording_delta

    def project_all(self, x: torch.Tensor, proj_name: str = "x_proj_weight") -> torch.Tensor:
        """(B, D, H, W) -> (B, K * (R + 2N), H, W): every direction's x -> (dt, B, C) projection at once."""
        return torch.einsum("bdhw,cd->bchw", x, getattr(self, proj_name).flatten(0, 1))

    def scan_2d(self, u: torch.Tensor, dbl: torch.Tensor) -> torch.Tensor:
        """Scan ``u`` (B, D, H, W, *pair) in the four directions and sum the results mapped back to 2-D.

        ``dbl`` (B, K * (R + 2N), H, W, *pair) holds the per-token projections from
        :meth:`project_all`. The four directions are one grouped scan (as in the released code):
        (B, K * D, L) sequences whose B and C are K groups, so channel block k reads direction k's
        B and C, and A, D and the Delta biases are the stacked parameters as stored.

        On the CPU that scan reads u, B, C and the dt projection's low-rank inputs where they lie,
        each direction in its own order (:func:`fusion.scan.directional_scan`; its kernel forms
        Delta = dt_projs_weight . dts chunk by chunk), and writes its sum channels last: the
        result is a (B, D, H, W, *pair) view of (B, *pair, H, W, D) storage, so the callers'
        move to channels last is free. Inputs whose pair dimension lies outermost in memory
        (stacked at dim 2, then moved last) are read without a copy.
        """
        if self.delta_record is not None:
            self.delta_record.extend(self._mean_delta(dbl))
        if backend_for(u.device) != "cpu":
            return self._scan_2d_reordered(u, dbl)
        stored = pair_major(u).shape[2:]  # (pair, H, W)
        seqs = pair_major(dbl).flatten(2).unflatten(1, (DIRECTIONS, -1))  # (B, K, R + 2N, S)
        dts, b, c = torch.split(seqs, [self.dt_rank, self.d_state, self.d_state], dim=2)
        out = directional_scan(
            pair_major(u).flatten(2).float().contiguous(), dts.flatten(1, 2).float(),
            -torch.exp(self.A_logs.float()), b.float(), c.float(), self.Ds.float(),
            self.dt_projs_bias.flatten().float(), True, scan_orders(*u.shape[2:]),
            delta_proj_weight=self.dt_projs_weight.flatten(0, 1).float())
        out = out.unflatten(1, stored).movedim(-1, 1)  # (B, D, pair, H, W)
        return out.movedim(2, -1) if u.dim() == 5 else out.squeeze(2)

    def _scan_2d_reordered(self, u: torch.Tensor, dbl: torch.Tensor) -> torch.Tensor:
        """:meth:`scan_2d` by reordered copies of the inputs, one selective_scan_fn call and the
        outputs mapped back: the GPU backends take their steps in memory order."""
        width = self.dt_rank + 2 * self.d_state
        seqs = torch.stack([to_direction(dbl[:, k * width:(k + 1) * width], k)
                            for k in range(DIRECTIONS)], dim=1)  # (B, K, R + 2N, L)
        dts, b, c = torch.split(seqs, [self.dt_rank, self.d_state, self.d_state], dim=2)
        delta = torch.einsum("bkrl,kdr->bkdl", dts, self.dt_projs_weight)
        xs = torch.cat([to_direction(u, k) for k in range(DIRECTIONS)], dim=1)
        ys = selective_scan_fn(
            xs.float(), delta.flatten(1, 2).float(), -torch.exp(self.A_logs.float()),
            b.float().contiguous(), c.float().contiguous(), self.Ds.float(),
            delta_bias=self.dt_projs_bias.flatten().float(), delta_softplus=True,
        ).unflatten(1, (DIRECTIONS, self.d_inner))
        total = from_direction(ys[:, 0], 0, u.shape)
        for k in range(1, DIRECTIONS):
            total = total + from_direction(ys[:, k], k, u.shape)
        return total

    def _mean_delta(self, dbl: torch.Tensor) -> list[torch.Tensor]:
        """Mean step size Delta = softplus(dt + bias) per direction and interleaved token kind:
        K tensors of shape (pair,), e.g. (IR, VI)."""
        seqs = pair_major(dbl.detach().float()).flatten(3).unflatten(1, (DIRECTIONS, -1))  # (B, K, R + 2N, pair, HW)
        delta = torch.einsum("bkrps,kdr->bkdps", seqs[:, :, :self.dt_rank], self.dt_projs_weight.detach().float())
        dt = F.softplus(delta + self.dt_projs_bias.detach().float()[:, :, None, None])
        return list(dt.mean(dim=(0, 2, 4)))


def pair_major(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W, pair) -> (B, C, pair, H, W); (B, C, H, W) -> (B, C, 1, H, W) (views)."""
    return x.movedim(-1, 2) if x.dim() == 5 else x.unsqueeze(2)


@functools.lru_cache(maxsize=16)  # a forward uses at most two shapes per scale
def scan_orders(height: int, width: int, pair: int = 1) -> np.ndarray:
    """(K, pair * H * W) int64: the positions, in pair-major storage (pair, H, W), that direction
    k visits at its steps 0, 1, ...: :func:`to_direction` applied to the positions themselves."""
    positions = torch.arange(pair * height * width).view(1, 1, pair, height, width).movedim(2, -1)
    return torch.cat([to_direction(positions, k) for k in range(DIRECTIONS)]).flatten(1).numpy()
