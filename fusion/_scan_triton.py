"""Triton kernels of the selective scan (the GPU path when mamba-ssm's compiled kernel is absent).

Same recurrence as ``fusion.scan``: h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t, y_t = C_t . h_t + D u_t,
dt_t = softplus(delta_t + delta_bias) (softplus and bias optional); the gate z stays a torch op.

One program scans ``BLOCK_D`` channels of one batch item over the whole sequence, ``BLOCK_L``
steps at a time: inside a chunk the linear recurrence is a ``tl.associative_scan`` over
(BLOCK_D, N, BLOCK_L) tiles, and the state at the chunk's end carries into the next chunk. The
forward keeps only the state at every chunk start; the backward walks the chunks from last to first,
recomputes a chunk's states from its stored start and runs the adjoint recurrence
lambda_t = C_t g_t + exp(dt_{t+1} A) lambda_{t+1} as a reverse associative scan. Every channel of a
program lies in one B group and one C group, so dB and dC are reduced over the block before an
atomic add into the (batch, G, N, L) gradient.

States and sums are float32 (as in mamba-ssm). Triton decides at import whether the kernels are
compiled for the GPU or interpreted on CPU tensors: ``TRITON_INTERPRET=1`` must be set before
triton itself is imported for the latter (``INTERPRETED`` records which).
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from triton import knobs

INTERPRETED: bool = bool(knobs.runtime.interpret)

BLOCK_L = 32  # steps per chunk: the length of the associative scans, and the spacing of stored states
# BLOCK_D * BLOCK_N * BLOCK_L elements per tile, per kernel: bounds the registers a program needs
# (see launch_config, and the compile report of bench/gpu_check.py --compile-only)
TILES = {"forward": 4096, "backward": 1024}
NUM_WARPS = 4  # warps per program at these tiles (more where one channel's tile is larger)
MIN_PROGRAMS = 264  # two programs per SM of a 132-SM H100


@triton.jit
def _linear_combine(a_left, b_left, a_right, b_right):
    """Composition of two steps h -> a h + b (left first): the associative operator of the scans."""
    return a_left * a_right, a_right * b_left + b_right


@triton.jit
def _softplus(x):
    """log(1 + exp(x)) without overflow and without losing small values: for w = 1 + e,
    log1p(e) = log(w) * e / (w - 1) (Goldberg's correction; exact when w rounds to 1)."""
    e = tl.exp(-tl.abs(x))
    w = 1.0 + e
    exact = w == 1.0
    log1p = tl.where(exact, e, tl.log(w) * e / tl.where(exact, 1.0, w - 1.0))
    return tl.maximum(x, 0.0) + log1p


@triton.jit
def _step_sizes(delta_ptr, bias, rows, t, mask, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """(raw, dt): delta + bias and the step size; 0 where ``mask`` is off (a step that keeps h)."""
    raw = tl.load(delta_ptr + rows[:, None] + t[None, :], mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        raw = raw + bias[:, None]
    dt = _softplus(raw) if SOFTPLUS else raw
    return raw, tl.where(mask, dt, 0.0)


@triton.jit
def _chunk_states(dt, u, A, b_tile, h_start):
    """States h_t of one chunk (BLOCK_D, BLOCK_N, BLOCK_L) from the state before it, and the
    inputs dt_t B_t u_t that entered them."""
    decay = tl.exp(dt[:, None, :] * A[:, :, None])
    inputs = (dt * u)[:, None, :] * b_tile[None, :, :]
    decay_prod, h = tl.associative_scan((decay, inputs), 2, _linear_combine)
    return h + decay_prod * h_start[:, :, None], inputs


@triton.jit
def _at(tile, index, position, axis: tl.constexpr):
    """tile[..., position, ...] along ``axis`` (registers cannot be indexed dynamically)."""
    return tl.sum(tl.where(index == position, tile, 0.0), axis)


@triton.jit
def _scan_forward_kernel(
        u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, out_ptr, starts_ptr, last_ptr,
        n_dim, length, n_state, n_chunks, b_groups, c_groups,
        HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
        STORE_STARTS: tl.constexpr,
        BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr):
    batch = tl.program_id(0)
    first = tl.program_id(1) * BLOCK_D
    d = first + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    steps = tl.arange(0, BLOCK_L)
    d_ok, n_ok = d < n_dim, n < n_state
    A = tl.load(A_ptr + d[:, None] * n_state + n[None, :], mask=d_ok[:, None] & n_ok[None, :],
                other=0.0).to(tl.float32)
    skip = tl.load(D_ptr + d, mask=d_ok, other=0.0).to(tl.float32) if HAS_D else None
    bias = tl.load(bias_ptr + d, mask=d_ok, other=0.0).to(tl.float32) if HAS_BIAS else None
    rows = (batch * n_dim + d) * length  # (BLOCK_D,) offsets of u, delta and out rows
    b_rows = ((batch * b_groups + first // (n_dim // b_groups)) * n_state + n) * length
    c_rows = ((batch * c_groups + first // (n_dim // c_groups)) * n_state + n) * length
    h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    for chunk in range(n_chunks):
        t = chunk * BLOCK_L + steps
        mask = d_ok[:, None] & (t < length)[None, :]
        bc_mask = n_ok[:, None] & (t < length)[None, :]
        if STORE_STARTS:
            starts = ((batch * n_dim + d[:, None]) * n_chunks + chunk) * n_state + n[None, :]
            tl.store(starts_ptr + starts, h, mask=d_ok[:, None] & n_ok[None, :])
        u = tl.load(u_ptr + rows[:, None] + t[None, :], mask=mask, other=0.0).to(tl.float32)
        _, dt = _step_sizes(delta_ptr, bias, rows, t, mask, HAS_BIAS, SOFTPLUS)
        b_tile = tl.load(B_ptr + b_rows[:, None] + t[None, :], mask=bc_mask, other=0.0).to(tl.float32)
        c_tile = tl.load(C_ptr + c_rows[:, None] + t[None, :], mask=bc_mask, other=0.0).to(tl.float32)
        states, _ = _chunk_states(dt, u, A, b_tile, h)
        y = tl.sum(states * c_tile[None, :, :], 1)
        if HAS_D:
            y = y + skip[:, None] * u
        tl.store(out_ptr + rows[:, None] + t[None, :], y, mask=mask)
        h = _at(states, steps[None, None, :], BLOCK_L - 1, 2)  # masked steps keep the state
    tl.store(last_ptr + (batch * n_dim + d[:, None]) * n_state + n[None, :], h,
             mask=d_ok[:, None] & n_ok[None, :])


@triton.jit
def _scan_backward_kernel(
        u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, starts_ptr, dy_ptr, dlast_ptr,
        du_ptr, ddelta_ptr, dA_ptr, dB_ptr, dC_ptr,
        n_dim, length, n_state, n_chunks, b_groups, c_groups,
        HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
        HAS_DLAST: tl.constexpr,
        BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr):
    batch = tl.program_id(0)
    first = tl.program_id(1) * BLOCK_D
    d = first + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    steps = tl.arange(0, BLOCK_L)
    d_ok, n_ok = d < n_dim, n < n_state
    dn_mask = d_ok[:, None] & n_ok[None, :]
    A = tl.load(A_ptr + d[:, None] * n_state + n[None, :], mask=dn_mask, other=0.0).to(tl.float32)
    skip = tl.load(D_ptr + d, mask=d_ok, other=0.0).to(tl.float32) if HAS_D else None
    bias = tl.load(bias_ptr + d, mask=d_ok, other=0.0).to(tl.float32) if HAS_BIAS else None
    rows = (batch * n_dim + d) * length
    b_group = batch * b_groups + first // (n_dim // b_groups)
    c_group = batch * c_groups + first // (n_dim // c_groups)
    b_rows = (b_group * n_state + n) * length
    c_rows = (c_group * n_state + n) * length
    state_rows = (batch * n_dim + d[:, None]) * n_state + n[None, :]
    if HAS_DLAST:  # the adjoint of the state after the last step
        adjoint = tl.load(dlast_ptr + state_rows, mask=dn_mask, other=0.0).to(tl.float32)
    else:
        adjoint = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    dA = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    for back in range(n_chunks):
        chunk = n_chunks - 1 - back
        t = chunk * BLOCK_L + steps
        mask = d_ok[:, None] & (t < length)[None, :]
        bc_mask = n_ok[:, None] & (t < length)[None, :]
        u = tl.load(u_ptr + rows[:, None] + t[None, :], mask=mask, other=0.0).to(tl.float32)
        raw, dt = _step_sizes(delta_ptr, bias, rows, t, mask, HAS_BIAS, SOFTPLUS)
        next_mask = d_ok[:, None] & (t + 1 < length)[None, :]
        _, dt_next = _step_sizes(delta_ptr, bias, rows, t + 1, next_mask, HAS_BIAS, SOFTPLUS)
        b_tile = tl.load(B_ptr + b_rows[:, None] + t[None, :], mask=bc_mask, other=0.0).to(tl.float32)
        c_tile = tl.load(C_ptr + c_rows[:, None] + t[None, :], mask=bc_mask, other=0.0).to(tl.float32)
        dy = tl.load(dy_ptr + rows[:, None] + t[None, :], mask=mask, other=0.0).to(tl.float32)
        starts = ((batch * n_dim + d[:, None]) * n_chunks + chunk) * n_state + n[None, :]
        h_start = tl.load(starts_ptr + starts, mask=dn_mask, other=0.0)
        states, inputs = _chunk_states(dt, u, A, b_tile, h_start)
        # lambda_t = C_t dy_t + exp(dt_{t+1} A) lambda_{t+1}; dt past the end is 0 (factor 1), so
        # the last step's lambda picks up the adjoint of the last state
        decay_next = tl.exp(dt_next[:, None, :] * A[:, :, None])
        decay_prod, lam = tl.associative_scan((decay_next, c_tile[None, :, :] * dy[:, None, :]), 2,
                                              _linear_combine, reverse=True)
        lam = lam + decay_prod * adjoint[:, :, None]
        decayed = states - inputs  # exp(dt_t A) h_{t-1}
        ddt = tl.sum(lam * (A[:, :, None] * decayed + b_tile[None, :, :] * u[:, None, :]), 1)
        du = tl.sum(lam * b_tile[None, :, :], 1) * dt
        if HAS_D:
            du = du + skip[:, None] * dy
        if SOFTPLUS:
            ddt = ddt * tl.sigmoid(raw)
        tl.store(du_ptr + rows[:, None] + t[None, :], du, mask=mask)
        tl.store(ddelta_ptr + rows[:, None] + t[None, :], ddt, mask=mask)
        dA += tl.sum(lam * dt[:, None, :] * decayed, 2)
        dB = tl.sum(lam * (dt * u)[:, None, :], 0)
        dC = tl.sum(states * dy[:, None, :], 0)
        tl.atomic_add(dB_ptr + b_rows[:, None] + t[None, :], dB, mask=bc_mask)
        tl.atomic_add(dC_ptr + c_rows[:, None] + t[None, :], dC, mask=bc_mask)
        adjoint = _at(lam, steps[None, None, :], 0, 2)  # lambda at this chunk's first step
    tl.atomic_add(dA_ptr + d[:, None] * n_state + n[None, :], dA, mask=dn_mask)


def launch_config(kernel: str, n_batch: int, n_dim: int, b_groups: int, c_groups: int,
                  n_state: int) -> tuple[int, int, int]:
    """(BLOCK_D, BLOCK_N, num_warps) of ``kernel`` ("forward" or "backward") for these sizes.

    BLOCK_N is N rounded up to a power of two. BLOCK_D is a power of two that divides the
    channels of one B group and of one C group (a program never straddles groups), at most
    TILES[kernel] // (BLOCK_N * BLOCK_L): the largest tiles whose programs ptxas compiles without
    spills at NUM_WARPS warps on sm_80 and sm_90 (``bench/gpu_check.py --compile-only`` prints the
    report: the backward at 2048 elements still spills on sm_80 at BLOCK_N 64, at 4096 on both).
    Where one channel's tile alone is larger, the warps grow with it instead. Within the tile,
    BLOCK_D is halved while the grid has fewer than MIN_PROGRAMS programs: each program walks the
    whole sequence, so a small batch x channel product would otherwise leave most SMs idle.
    """
    block_n = triton.next_power_of_2(n_state)
    common = math.gcd(n_dim // b_groups, n_dim // c_groups)
    block_d = max(1, TILES[kernel] // (block_n * BLOCK_L))
    while common % block_d:
        block_d //= 2
    while block_d > 1 and n_batch * (n_dim // block_d) < MIN_PROGRAMS:
        block_d //= 2
    return block_d, block_n, NUM_WARPS * max(1, block_n * BLOCK_L // TILES[kernel])


def scan_forward(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                 C: torch.Tensor, D: torch.Tensor | None, delta_bias: torch.Tensor | None,
                 softplus: bool, for_backward: bool
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(out, last state, chunk-start states or None) in float32; B and C are (batch, G, N, L)."""
    n_batch, n_dim, length = u.shape
    n_state = A.shape[1]
    block_d, block_n, num_warps = launch_config("forward", n_batch, n_dim, B.shape[1], C.shape[1],
                                                n_state)
    n_chunks = triton.cdiv(length, BLOCK_L)
    out = torch.empty(u.shape, dtype=torch.float32, device=u.device)
    last = torch.empty(n_batch, n_dim, n_state, dtype=torch.float32, device=u.device)
    starts = (torch.empty(n_batch, n_dim, n_chunks, n_state, dtype=torch.float32, device=u.device)
              if for_backward else None)
    _scan_forward_kernel[(n_batch, triton.cdiv(n_dim, block_d))](
        u, delta, A, B, C, D, delta_bias, out, starts, last,
        n_dim, length, n_state, n_chunks, B.shape[1], C.shape[1],
        HAS_D=D is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=softplus,
        STORE_STARTS=for_backward, BLOCK_D=block_d, BLOCK_N=block_n, BLOCK_L=BLOCK_L,
        num_warps=num_warps)
    return out, last, starts


def scan_backward(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                  C: torch.Tensor, D: torch.Tensor | None, delta_bias: torch.Tensor | None,
                  softplus: bool, starts: torch.Tensor, dy: torch.Tensor, dlast: torch.Tensor | None
                  ) -> tuple[torch.Tensor, ...]:
    """float32 (du, ddelta, dA, dB, dC) of the scan without its skip term's dD and bias's sum."""
    n_batch, n_dim, length = u.shape
    n_state = A.shape[1]
    block_d, block_n, num_warps = launch_config("backward", n_batch, n_dim, B.shape[1], C.shape[1],
                                                n_state)
    du = torch.empty(u.shape, dtype=torch.float32, device=u.device)
    ddelta = torch.empty(u.shape, dtype=torch.float32, device=u.device)
    dA = torch.zeros(A.shape, dtype=torch.float32, device=u.device)
    dB = torch.zeros(B.shape, dtype=torch.float32, device=u.device)
    dC = torch.zeros(C.shape, dtype=torch.float32, device=u.device)
    _scan_backward_kernel[(n_batch, triton.cdiv(n_dim, block_d))](
        u, delta, A, B, C, D, delta_bias, starts, dy, dlast, du, ddelta, dA, dB, dC,
        n_dim, length, n_state, starts.shape[2], B.shape[1], C.shape[1],
        HAS_D=D is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=softplus,
        HAS_DLAST=dlast is not None, BLOCK_D=block_d, BLOCK_N=block_n, BLOCK_L=BLOCK_L,
        num_warps=num_warps)
    return du, ddelta, dA, dB, dC


class TritonScan(torch.autograd.Function):
    """The scan without the gate z, differentiable in every input (last state included)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, delta_bias, softplus, for_backward):
        shapes = {"B": B.shape, "C": C.shape}
        B, C = (x.unsqueeze(1) if x.dim() == 3 else x for x in (B, C))
        u, delta, A, B, C = (x.contiguous() for x in (u, delta, A, B, C))
        D, delta_bias = (None if x is None else x.contiguous() for x in (D, delta_bias))
        out, last, starts = scan_forward(u, delta, A, B, C, D, delta_bias, softplus, for_backward)
        ctx.set_materialize_grads(False)
        ctx.softplus, ctx.shapes = softplus, shapes
        ctx.dtypes = [None if x is None else x.dtype for x in (u, delta, A, B, C, D, delta_bias)]
        ctx.has = (D is not None, delta_bias is not None)
        ctx.save_for_backward(u, delta, A, B, C, D, delta_bias, starts)
        return out.to(u.dtype), last.to(u.dtype)

    @staticmethod
    def backward(ctx, dy, dlast):
        u, delta, A, B, C, D, delta_bias, starts = ctx.saved_tensors
        if dy is None:
            dy = torch.zeros_like(u)
        du, ddelta, dA, dB, dC = scan_backward(
            u, delta, A, B, C, D, delta_bias, ctx.softplus, starts, dy.contiguous(),
            None if dlast is None else dlast.contiguous())
        dD = (dy.double() * u.double()).sum((0, 2)) if ctx.has[0] else None
        dbias = ddelta.double().sum((0, 2)) if ctx.has[1] else None
        grads = (du, ddelta, dA, dB.reshape(ctx.shapes["B"]), dC.reshape(ctx.shapes["C"]), dD, dbias)
        return (*(None if g is None else g.to(dtype) for g, dtype in zip(grads, ctx.dtypes)),
                None, None)
