"""Numba CPU kernels of the selective scan: y_t = C_t . h_t + D u_t with
h_t = exp(dt_t * A) * h_{t-1} + dt_t * B_t * u_t and dt_t = softplus(delta_t + delta_bias)
(softplus optional), and its reverse (adjoint) scan.

The step size and the skip term are computed inside the kernels, chunk by chunk, rather than as
separate whole-tensor torch passes: at S4Fusion's sizes those passes took as long as the scan.

Layout (prepared by fusion.scan): u, delta, dt, dy are float32 (batch, D, L); B and C are float32
(batch, G, L, N) so that one time step reads N contiguous values; A is float64 (D, N), D and
delta_bias float64 (D,). States and every sum are float64.

Memory stays linear in L without any (D, L, N) tensor: the forward pass keeps the hidden state only
at the start of every chunk of ``chunk`` steps; the backward pass walks the chunks from last to
first, recomputes one chunk's states into a small (chunk + 1, N) buffer and runs the reverse scan
over it.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

# The scans may reorder float64 sums (so that dot products over N vectorise) and fuse multiply-adds;
# no other fast-math licence: inf, NaN and signed zeros keep their IEEE meaning.
REASSOCIATE = {"reassoc", "contract"}

# exp(x) = 2**k * exp(r) with k = round(x / ln 2) and |r| <= ln(2) / 2 (Cody-Waite reduction with
# ln 2 split in two parts, as in fdlibm); a degree-12 Taylor polynomial then has error < 2e-16.
LOG2E = 1.4426950408889634
LN2_HI = 6.93147180369123816490e-01
LN2_LO = 1.90821492927058770002e-10


@njit(cache=True, inline="always")
def _exp_taylor(r: float) -> float:
    """sum_{i <= 12} r**i / i!, by Horner's rule written out (so that it vectorises)."""
    return 1.0 + r * (1.0 + r * (1 / 2 + r * (1 / 6 + r * (1 / 24 + r * (1 / 120 + r * (
        1 / 720 + r * (1 / 5040 + r * (1 / 40320 + r * (1 / 362880 + r * (1 / 3628800 + r * (
            1 / 39916800 + r * (1 / 479001600))))))))))))


@njit(cache=True, fastmath={"contract"})
def _exp_into(x, out, half, rest):
    """out[i] = exp(x[i]) for 1-D arrays, in loops that LLVM vectorises (calls to libm's exp are
    not vectorised and cost ~3x more). Exact to ~1 ulp over the whole double range: 2**k is built
    from its IEEE-754 bits as two factors 2**(k//2) * 2**(k - k//2), so underflow to 0 and
    overflow to inf happen as in libm; half and rest are int64 work arrays of x's size."""
    for i in range(x.size):
        v = min(max(x[i], -746.0), 710.0)
        k = math.floor(v * LOG2E + 0.5)
        r = v - k * LN2_HI - k * LN2_LO
        out[i] = _exp_taylor(r)
        ki = np.int64(k)
        half[i] = ((ki >> 1) + 1023) << 52
        rest[i] = (ki - (ki >> 1) + 1023) << 52
    half_f, rest_f = half.view(np.float64), rest.view(np.float64)
    for i in range(x.size):
        out[i] = out[i] * half_f[i] * rest_f[i]


@njit(cache=True, inline="always")
def _atanh_over_s(s2: float) -> float:
    """atanh(s) / s = sum_k s**(2k) / (2k + 1) as a function of s**2, to k = 15: for |s| <= 1/3
    the first omitted term is below 2e-17 relative."""
    return 1.0 + s2 * (1 / 3 + s2 * (1 / 5 + s2 * (1 / 7 + s2 * (1 / 9 + s2 * (1 / 11 + s2 * (
        1 / 13 + s2 * (1 / 15 + s2 * (1 / 17 + s2 * (1 / 19 + s2 * (1 / 21 + s2 * (1 / 23 + s2 * (
            1 / 25 + s2 * (1 / 27 + s2 * (1 / 29 + s2 * (1 / 31)))))))))))))))


@njit(cache=True, fastmath={"contract"})
def _softplus_into(x, out, scratch, half, rest):
    """out[i] = softplus(x[i]) = max(x, 0) + log1p(exp(-|x|)) for 1-D arrays, vectorised like
    _exp_into: log1p(e) for 0 <= e <= 1 is 2 atanh(e / (2 + e)), a short even series without
    cancellation, so small values keep full relative precision. NaN stays NaN. scratch is a
    float64 work array of x's size; one loop per stage, as fusing them (or exp in place) stops
    LLVM from vectorising and costs ~3x."""
    for i in range(x.size):
        scratch[i] = -abs(x[i])
    _exp_into(scratch, out, half, rest)
    for i in range(x.size):
        scratch[i] = out[i] / (2.0 + out[i])
    for i in range(x.size):
        s = scratch[i]
        out[i] = (0.0 if x[i] <= 0.0 else x[i]) + 2.0 * s * _atanh_over_s(s * s)


@njit(cache=True)
def _workspace(size):
    """Per-thread buffers for _exp_into and _softplus_into over up to ``size`` values: inputs,
    outputs and the two int64 scratch arrays."""
    return np.empty(size), np.empty(size), np.empty(size, np.int64), np.empty(size, np.int64)


@njit(cache=True)
def _chunk_decay(dt, A, workspace):
    """workspace[1][k * N + n] = exp(dt[k] * A[n]) for the len(dt) steps of one chunk of one
    channel (a _workspace of at least len(dt) * N values)."""
    n_state = A.size
    exponents, decay, half, rest = workspace
    for k in range(dt.size):
        for n in range(n_state):
            exponents[k * n_state + n] = dt[k] * A[n]
    used = dt.size * n_state
    _exp_into(exponents[:used], decay[:used], half[:used], rest[:used])


@njit(parallel=True, cache=True, fastmath=REASSOCIATE)
def scan_forward(u, delta, delta_bias, softplus, A, B, C, D, chunk, n_parts, block,
                 for_backward):
    """Returns y (batch, D, L) float32, the step sizes dt (batch, D, L) float32 (the forward
    rounds them to float32 and backward reuses them), the states at every chunk start
    (batch, D, n_chunks, N) and the last state (batch, D, N). Without ``for_backward`` dt and
    the chunk states are empty arrays: inference writes (and page-faults) a third less memory.

    Vectorised across channels: ``block`` consecutive channels read the same B_t and C_t (block
    divides both group sizes), so one step updates an (N, block) state with contiguous inner
    loops and one exp call over N * block values. Work items are (batch, part of the blocks); an
    item walks the chunks in time order and, within a chunk, its blocks, gathering each block's
    u and delta of the chunk into small (chunk, block) buffers (delta becomes dt there).
    """
    n_batch, n_dim, length = u.shape
    n_state = A.shape[1]
    b_per_group = n_dim // B.shape[1]
    c_per_group = n_dim // C.shape[1]
    n_chunks = (length + chunk - 1) // chunk
    n_blocks = n_dim // block
    A_T = np.ascontiguousarray(A.T)
    y = np.empty((n_batch, n_dim, length), np.float32)
    kept = n_batch if for_backward else 0
    dt = np.empty((kept, n_dim, length), np.float32)
    starts = np.empty((kept, n_dim, n_chunks, n_state), np.float64)
    last = np.empty((n_batch, n_dim, n_state), np.float64)
    for item in prange(n_batch * n_parts):
        b, part = item // n_parts, item % n_parts
        first, stop = part * n_blocks // n_parts, (part + 1) * n_blocks // n_parts
        states = np.zeros((stop - first, n_state, block))  # running state of each block
        # one block's chunk, time-major so that a step reads `block` contiguous values
        u_chunk, dt_chunk = np.empty((chunk, block)), np.empty((chunk, block))
        dtu_chunk, y_chunk = np.empty((chunk, block)), np.empty((chunk, block))
        exponents, decay, half, rest = _workspace(n_state * block)  # one step of one block
        inputs, step_sizes, chunk_half, chunk_rest = _workspace(chunk * block)  # a block's chunk
        chunk_scratch = np.empty(chunk * block)
        for c in range(n_chunks):
            t0 = c * chunk
            steps = min(length, t0 + chunk) - t0
            for blk in range(first, stop):
                d0 = blk * block
                gb, gc = d0 // b_per_group, d0 // c_per_group
                h = states[blk - first]
                used = steps * block
                for j in range(block):
                    if for_backward:
                        for n in range(n_state):
                            starts[b, d0 + j, c, n] = h[n, j]
                    for k in range(steps):
                        inputs[k * block + j] = delta[b, d0 + j, t0 + k] + delta_bias[d0 + j]
                        u_chunk[k, j] = u[b, d0 + j, t0 + k]
                if softplus:
                    _softplus_into(inputs[:used], step_sizes[:used], chunk_scratch[:used],
                                   chunk_half[:used], chunk_rest[:used])
                else:
                    step_sizes[:used] = inputs[:used]
                for k in range(steps):
                    for j in range(block):
                        dt_chunk[k, j] = np.float32(step_sizes[k * block + j])
                        dtu_chunk[k, j] = dt_chunk[k, j] * u_chunk[k, j]
                for k in range(steps):
                    t = t0 + k
                    dt_k, dtu_k, y_k = dt_chunk[k], dtu_chunk[k], y_chunk[k]
                    for n in range(n_state):
                        A_n = A_T[n, d0:d0 + block]
                        for j in range(block):
                            exponents[n * block + j] = dt_k[j] * A_n[j]
                    _exp_into(exponents, decay, half, rest)
                    y_k[:] = 0.0
                    for n in range(n_state):
                        B_tn, C_tn = B[b, gb, t, n], C[b, gc, t, n]
                        h_n, decay_n = h[n], decay[n * block:(n + 1) * block]
                        for j in range(block):
                            h_n[j] = decay_n[j] * h_n[j] + dtu_k[j] * B_tn
                            y_k[j] += C_tn * h_n[j]
                for j in range(block):
                    for k in range(steps):
                        y[b, d0 + j, t0 + k] = y_chunk[k, j] + D[d0 + j] * u_chunk[k, j]
                    if for_backward:
                        for k in range(steps):
                            dt[b, d0 + j, t0 + k] = dt_chunk[k, j]
        for blk in range(first, stop):
            for j in range(block):
                for n in range(n_state):
                    last[b, blk * block + j, n] = states[blk - first, n, j]
    return y, dt, starts, last


@njit(parallel=True, cache=True, fastmath=REASSOCIATE)
def scan_backward(u, dt, softplus, A, B, C, D, chunk, starts, dy, dlast, n_parts):
    """Gradients of y (and of the last state) with respect to u, delta, A, B, C and D.

    Work items are (batch, part of the channels), chunks in reverse order and, within a chunk,
    the item's channels one by one (so the chunk's B, C, dB and dC stay in cache); each
    channel's states over the chunk are recomputed
    from its start state into a (chunk + 1, N) buffer, then the adjoint dLoss/dh runs backwards
    through it. Channels of one group share B_t and C_t, so their gradients are summed: each part
    sums into its own slice of dB/dC (added up by the caller) and no two threads write the same
    element. The step size's gradient goes through softplus as sigmoid(x) = 1 - exp(-dt).
    Returns du, ddelta (float32, batch x D x L), dA per batch (float64, batch x D x N), dB and dC
    per part (float64, n_parts x batch x G x L x N) and dD per batch (float64, batch x D).
    """
    n_batch, n_dim, length = u.shape
    n_state = A.shape[1]
    b_per_group = n_dim // B.shape[1]
    c_per_group = n_dim // C.shape[1]
    n_chunks = starts.shape[2]
    du = np.empty((n_batch, n_dim, length), np.float32)
    ddelta = np.empty((n_batch, n_dim, length), np.float32)
    dA = np.zeros((n_batch, n_dim, n_state))
    dD = np.zeros((n_batch, n_dim))
    dB = np.zeros((n_parts, n_batch, B.shape[1], length, n_state))
    dC = np.zeros((n_parts, n_batch, C.shape[1], length, n_state))
    adjoint = dlast.copy()  # dLoss/dh per channel, carried backwards in time
    for item in prange(n_batch * n_parts):
        b, part = item // n_parts, item % n_parts
        workspace = _workspace(chunk * n_state)
        decay = workspace[1]
        states = np.empty((chunk + 1, n_state))  # states[k + 1] = h at step t0 + k
        for c in range(n_chunks - 1, -1, -1):
            t0 = c * chunk
            t1 = min(length, t0 + chunk)
            for d in range(part * n_dim // n_parts, (part + 1) * n_dim // n_parts):
                gb, gc = d // b_per_group, d // c_per_group
                adj, A_d, dA_d = adjoint[b, d], A[d], dA[b, d]
                _chunk_decay(dt[b, d, t0:t1], A_d, workspace)
                states[0] = starts[b, d, c]
                for t in range(t0, t1):
                    k = t - t0
                    decay_t = decay[k * n_state:(k + 1) * n_state]
                    B_t, before, after = B[b, gb, t], states[k], states[k + 1]
                    dt_u = np.float64(dt[b, d, t]) * u[b, d, t]  # as the forward scan
                    for n in range(n_state):
                        after[n] = decay_t[n] * before[n] + dt_u * B_t[n]
                for t in range(t1 - 1, t0 - 1, -1):
                    k = t - t0
                    decay_t = decay[k * n_state:(k + 1) * n_state]
                    B_t, C_t, before, after = B[b, gb, t], C[b, gc, t], states[k], states[k + 1]
                    dB_t, dC_t = dB[part, b, gb, t], dC[part, b, gc, t]
                    # float64 factors: numba multiplies two float32 values in float32
                    dt_t, u_t = np.float64(dt[b, d, t]), np.float64(u[b, d, t])
                    g = np.float64(dy[b, d, t])
                    d_input = 0.0  # dLoss/d(dt_t * u_t)
                    d_exponent = 0.0  # sum_n dLoss/d(dt_t * A_n) * A_n
                    for n in range(n_state):
                        adj[n] += g * C_t[n]
                        dC_t[n] += g * after[n]
                        dB_t[n] += adj[n] * dt_t * u_t
                        d_input += adj[n] * B_t[n]
                        w = adj[n] * before[n] * decay_t[n]  # dLoss/d(dt_t * A_n)
                        d_exponent += w * A_d[n]
                        dA_d[n] += w * dt_t
                        adj[n] *= decay_t[n]
                    du[b, d, t] = d_input * dt_t + g * D[d]
                    dD[b, d] += g * u_t
                    d_step = d_input * u_t + d_exponent
                    ddelta[b, d, t] = -math.expm1(-dt_t) * d_step if softplus else d_step
    return du, ddelta, dA, dB, dC, dD
