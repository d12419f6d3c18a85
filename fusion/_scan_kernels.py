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
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

# The scans may reorder float64 sums (so that dot products over N vectorise) and fuse multiply-adds;
# no other fast-math licence: inf, NaN and signed zeros keep their IEEE meaning.
REASSOCIATE = {"reassoc", "contract"}

# exp(x) = 2**k * exp(r) with k = round(x / ln 2) and |r| <= ln(2) / 2 (Cody-Waite reduction with
# ln 2 split in two parts, as in fdlibm); a degree-12 Taylor polynomial then has error < 2e-16.
LOG2E = 1.4426950408889634
LN2_HI = 6.93147180369123816490e-01
LN2_LO = 1.90821492927058770002e-10


@intrinsic
def _float_from_bits(typingctx, bits):
    """The float64 whose IEEE-754 bit pattern is the int64 ``bits`` (a register move, which
    vectorises; numpy's view needs an array in memory)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


@njit(cache=True, fastmath={"contract"})
def _exp_taylor(r: float) -> float:
    """sum_{i <= 12} r**i / i! for |r| <= ln(2) / 2, by Estrin's scheme: short independent chains
    instead of Horner's twelve dependent multiply-adds (the latency that bounded the scans)."""
    r2 = r * r
    r4 = r2 * r2
    mid = (1 / 24 + r * (1 / 120)) + (1 / 720 + r * (1 / 5040)) * r2
    high = (1 / 40320 + r * (1 / 362880)) + (1 / 3628800 + r * (1 / 39916800)) * r2
    tail = (mid + (high + (1 / 479001600) * r4) * r4) * r4  # below 7e-4: its rounding is lost
    return 1.0 + ((r + (1 / 2 + r * (1 / 6)) * r2) + tail)  # one rounding of the leading 1


@njit(cache=True, fastmath={"contract"})
def _exp(x: float) -> float:
    """exp(x), exact to ~1 ulp over the whole double range, in operations that LLVM vectorises
    when it is called in a loop (libm's exp is a call per value, ~3x slower): 2**k is built from
    its IEEE-754 bits as two factors 2**(k//2) * 2**(k - k//2), so underflow to 0 and overflow to
    inf happen as in libm. Called, not inlined by numba, so the callers' reassociation licence
    cannot touch the reduction."""
    v = min(max(x, -746.0), 710.0)
    k = np.floor(v * LOG2E + 0.5)
    r = v - k * LN2_HI - k * LN2_LO
    ki = np.int64(np.int32(k))  # via int32: AVX2 converts four doubles to int32 at once
    half = ki >> 1
    return (_exp_taylor(r) * _float_from_bits((half + 1023) << 52)
            * _float_from_bits((ki - half + 1023) << 52))


@njit(cache=True, inline="always")
def _atanh_over_s(s2: float) -> float:
    """atanh(s) / s = sum_k s**(2k) / (2k + 1) as a function of s**2, to k = 15: for |s| <= 1/3
    the first omitted term is below 2e-17 relative."""
    return 1.0 + s2 * (1 / 3 + s2 * (1 / 5 + s2 * (1 / 7 + s2 * (1 / 9 + s2 * (1 / 11 + s2 * (
        1 / 13 + s2 * (1 / 15 + s2 * (1 / 17 + s2 * (1 / 19 + s2 * (1 / 21 + s2 * (1 / 23 + s2 * (
            1 / 25 + s2 * (1 / 27 + s2 * (1 / 29 + s2 * (1 / 31)))))))))))))))


@njit(cache=True, fastmath={"contract"}, error_model="numpy")
def _softplus_into(x, out):
    """out[i] = softplus(x[i]) = max(x, 0) + log1p(exp(-|x|)) for 1-D arrays: log1p(e) for
    0 <= e <= 1 is 2 atanh(e / (2 + e)), a short even series without cancellation, so small
    values keep full relative precision. NaN stays NaN. Two loops, each of which LLVM vectorises
    (as one loop it stays scalar, ~5x slower); numpy's error model: no zero-division check."""
    for i in range(x.size):
        out[i] = _exp(-abs(x[i]))
    for i in range(x.size):
        s = out[i] / (2.0 + out[i])
        out[i] = (0.0 if x[i] <= 0.0 else x[i]) + 2.0 * s * _atanh_over_s(s * s)


@njit(cache=True)
def _step_sizes(raw, softplus, dt, u, dtu):
    """dt = softplus(raw) (or raw) rounded to float32, as mamba-ssm computes it, and dt * u."""
    if softplus:
        _softplus_into(raw, dt)
    else:
        dt[:] = raw
    for i in range(raw.size):
        dt[i] = np.float32(dt[i])
        dtu[i] = dt[i] * u[i]


@njit(parallel=True, cache=True, fastmath=REASSOCIATE)
def scan_forward(u, delta, delta_bias, softplus, A, B, C, D, chunk, n_parts, block,
                 for_backward):
    """Returns y (batch, D, L) float32, the step sizes dt (batch, D, L) float32 (the forward
    rounds them to float32 and backward reuses them), the states at every chunk start
    (batch, D, n_chunks, N) and the last state (batch, D, N). Without ``for_backward`` dt and
    the chunk states are empty arrays: inference writes (and page-faults) a third less memory.

    Vectorised across channels: ``block`` consecutive channels read the same B_t and C_t (block
    divides both group sizes), so one step updates an (N, block) state in contiguous inner loops
    that compute each decay exp(dt A) in place (vectorised, no pass over a buffer). Work items are (batch, part of the blocks); an
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
        raw_chunk, u_chunk = np.empty((chunk, block)), np.empty((chunk, block))
        dt_chunk, dtu_chunk = np.empty((chunk, block)), np.empty((chunk, block))
        y_chunk = np.empty((chunk, block))
        for c in range(n_chunks):
            t0 = c * chunk
            steps = min(length, t0 + chunk) - t0
            for blk in range(first, stop):
                d0 = blk * block
                gb, gc = d0 // b_per_group, d0 // c_per_group
                h = states[blk - first]
                for j in range(block):
                    if for_backward:
                        for n in range(n_state):
                            starts[b, d0 + j, c, n] = h[n, j]
                    for k in range(steps):
                        raw_chunk[k, j] = delta[b, d0 + j, t0 + k] + delta_bias[d0 + j]
                        u_chunk[k, j] = u[b, d0 + j, t0 + k]
                used = steps * block
                _step_sizes(raw_chunk.ravel()[:used], softplus, dt_chunk.ravel()[:used],
                            u_chunk.ravel()[:used], dtu_chunk.ravel()[:used])
                for k in range(steps):
                    t = t0 + k
                    dt_k, dtu_k, y_k = dt_chunk[k], dtu_chunk[k], y_chunk[k]
                    y_k[:] = 0.0
                    for n in range(n_state):
                        B_tn, C_tn = B[b, gb, t, n], C[b, gc, t, n]
                        h_n, A_n = h[n], A_T[n, d0:d0 + block]
                        for j in range(block):
                            h_n[j] = _exp(dt_k[j] * A_n[j]) * h_n[j] + dtu_k[j] * B_tn
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
        decay = np.empty((chunk, n_state))  # exp(dt_t * A_n) over the chunk
        states = np.empty((chunk + 1, n_state))  # states[k + 1] = h at step t0 + k
        for c in range(n_chunks - 1, -1, -1):
            t0 = c * chunk
            t1 = min(length, t0 + chunk)
            for d in range(part * n_dim // n_parts, (part + 1) * n_dim // n_parts):
                gb, gc = d // b_per_group, d // c_per_group
                adj, A_d, dA_d = adjoint[b, d], A[d], dA[b, d]
                states[0] = starts[b, d, c]
                for t in range(t0, t1):
                    k = t - t0
                    decay_t = decay[k]
                    for n in range(n_state):
                        decay_t[n] = _exp(dt[b, d, t] * A_d[n])
                    B_t, before, after = B[b, gb, t], states[k], states[k + 1]
                    dt_u = np.float64(dt[b, d, t]) * u[b, d, t]  # as the forward scan
                    for n in range(n_state):
                        after[n] = decay_t[n] * before[n] + dt_u * B_t[n]
                for t in range(t1 - 1, t0 - 1, -1):
                    k = t - t0
                    decay_t = decay[k]
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
