"""Numba CPU kernels of the selective scan: y_t = C_t . h_t + D u_t with
h_t = exp(dt_t * A) * h_{t-1} + dt_t * B_t * u_t and dt_t = softplus(delta_t + delta_bias)
(softplus optional), and its reverse (adjoint) scan.

The step size and the skip term are computed inside the kernels, chunk by chunk, rather than as
separate whole-tensor torch passes: at S4Fusion's sizes those passes took as long as the scan.

Scan orders: the kernels scan u in K orders at once, each a permutation of its positions (the
four 2-D scan directions of SS2D and CMSA read one input in place instead of flipped and
transposed copies; K = 1 in time order is the plain scan), and sum the K outputs back by position.

Layout (prepared by fusion.scan): u (batch, U, S), delta (batch, K*U, S) and dt (batch, K*U, L,
in time order) are float32; y and dy are float32 (batch, S, U) (channels last, or a transposed
view); B and C are float32 (batch, G, S, N) so that one step reads N contiguous values; A is
float64 (K*U, N), D and delta_bias float64 (K*U,). States and every sum are float64.

Memory stays linear in L without any (D, L, N) tensor: the forward pass keeps the hidden state only
at the start of every chunk of ``chunk`` steps; the backward pass walks the chunks from last to
first, recomputes one chunk's states into a small (chunk + 1, N, block) buffer and runs the
reverse scan over it.
"""
from __future__ import annotations

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
# Adding 1.5 * 2**52 rounds any |v| < 2**51 to an integer (the spacing of doubles there is 1),
# and that integer is then the low bits of the sum's IEEE-754 pattern.
ROUNDER = 6755399441055744.0
ROUNDER_BITS = 0x4338000000000000
EXPONENT_ONE = 1023 << 52


@intrinsic
def _float_from_bits(typingctx, bits):
    """The float64 whose IEEE-754 bit pattern is the int64 ``bits`` (a register move, which
    vectorises; numpy's view needs an array in memory)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


@intrinsic
def _bits_from_float(typingctx, value):
    """The int64 IEEE-754 bit pattern of the float64 ``value`` (the inverse register move)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.int64(types.float64), codegen


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
    when it is called in a loop (libm's exp is a call per value, ~3x slower). k is rounded by
    the 1.5 * 2**52 addition and read back from the sum's bits (no rounding or conversion
    instructions); 2**k is applied as two factors 2**(k//2) * 2**(k - k//2), the first added to
    the polynomial's exponent bits, so underflow to 0 and overflow to inf happen as in libm.
    Called, not inlined by numba, so the callers' reassociation licence cannot touch the
    reduction."""
    v = min(max(x, -746.0), 710.0)
    shifted = v * LOG2E + ROUNDER
    k = shifted - ROUNDER
    r = v - k * LN2_HI - k * LN2_LO
    ki = _bits_from_float(shifted) - ROUNDER_BITS
    half = ki >> 1
    scaled = _float_from_bits(_bits_from_float(_exp_taylor(r)) + (half << 52))  # exact: stays normal
    return scaled * _float_from_bits(((ki - half) << 52) + EXPONENT_ONE)


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
def scan_forward(u, delta, delta_bias, softplus, A, B, C, D, orders, chunk, n_parts, block, y,
                 for_backward):
    """Scans u in each of K orders and writes the sum of the K outputs, position by position,
    into y (batch, S, U) float32 (a transposed view of the caller's tensor where it wants
    channels first). Returns the step sizes dt (batch, K*U, L) float32 in time order (the
    forward rounds them to float32 and backward reuses them), the states at every chunk start
    (batch, K*U, n_chunks, N) and the last state (batch, K*U, N). Without ``for_backward`` dt
    and the chunk states are empty arrays: inference writes (and page-faults) a third less.

    Channel k*U + i (delta, A, D, delta_bias and the B and C groups) is the scan of u's channel i
    that takes its step t at position orders[k, t]: the four 2-D scan directions read the same
    u, delta, B and C in place of flipped and transposed copies. K = 1 with orders [0 .. L-1] is
    the plain scan. The K outputs are summed in float32 in the order k = 0, 1, ...

    Vectorised across channels: ``block`` consecutive channels read the same B_t and C_t (block
    divides both group sizes), so one step updates an (N, block) state in contiguous inner loops
    that compute each decay exp(dt A) in place. Work items are (batch, part of u's channel
    blocks); an item scans each of its blocks in every order, chunk by chunk in time order,
    gathering the chunk's u and delta into small (chunk, block) buffers (delta becomes dt there).
    """
    n_batch, n_inputs, length = u.shape
    n_orders = orders.shape[0]
    n_dim, n_state = A.shape
    b_per_group = n_dim // B.shape[1]
    c_per_group = n_dim // C.shape[1]
    n_chunks = (length + chunk - 1) // chunk
    n_blocks = n_inputs // block
    A_T = np.ascontiguousarray(A.T)
    kept = n_batch if for_backward else 0
    dt = np.empty((kept, n_dim, length), np.float32)
    starts = np.empty((kept, n_dim, n_chunks, n_state), np.float64)
    last = np.empty((n_batch, n_dim, n_state), np.float64)
    for item in prange(n_batch * n_parts):
        b, part = item // n_parts, item % n_parts
        h = np.empty((n_state, block))  # the running state of one block
        # one block's chunk, time-major so that a step reads `block` contiguous values
        raw_chunk, u_chunk = np.empty((chunk, block)), np.empty((chunk, block))
        dt_chunk, dtu_chunk = np.empty((chunk, block)), np.empty((chunk, block))
        y_chunk = np.empty((chunk, block))
        for blk in range(part * n_blocks // n_parts, (part + 1) * n_blocks // n_parts):
            i0 = blk * block  # u's (and y's) channels
            for o in range(n_orders):
                order, d0 = orders[o], o * n_inputs + i0
                gb, gc = d0 // b_per_group, d0 // c_per_group
                h[:] = 0.0
                for c in range(n_chunks):
                    t0 = c * chunk
                    steps = min(length, t0 + chunk) - t0
                    for j in range(block):
                        if for_backward:
                            for n in range(n_state):
                                starts[b, d0 + j, c, n] = h[n, j]
                        for k in range(steps):
                            raw_chunk[k, j] = delta[b, d0 + j, order[t0 + k]] + delta_bias[d0 + j]
                            u_chunk[k, j] = u[b, i0 + j, order[t0 + k]]
                    used = steps * block
                    _step_sizes(raw_chunk.ravel()[:used], softplus, dt_chunk.ravel()[:used],
                                u_chunk.ravel()[:used], dtu_chunk.ravel()[:used])
                    for k in range(steps):
                        s = order[t0 + k]
                        dt_k, dtu_k, y_k = dt_chunk[k], dtu_chunk[k], y_chunk[k]
                        y_k[:] = 0.0
                        for n in range(n_state):
                            B_sn, C_sn = B[b, gb, s, n], C[b, gc, s, n]
                            h_n, A_n = h[n], A_T[n, d0:d0 + block]
                            for j in range(block):
                                h_n[j] = _exp(dt_k[j] * A_n[j]) * h_n[j] + dtu_k[j] * B_sn
                                y_k[j] += C_sn * h_n[j]
                    for k in range(steps):
                        y_s = y[b, order[t0 + k]]
                        for j in range(block):
                            out = np.float32(y_chunk[k, j] + D[d0 + j] * u_chunk[k, j])
                            y_s[i0 + j] = out if o == 0 else y_s[i0 + j] + out
                    if for_backward:
                        for j in range(block):
                            for k in range(steps):
                                dt[b, d0 + j, t0 + k] = dt_chunk[k, j]
                for j in range(block):
                    for n in range(n_state):
                        last[b, d0 + j, n] = h[n, j]
    return dt, starts, last


@njit(parallel=True, cache=True, fastmath=REASSOCIATE)
def scan_backward(u, dt, softplus, A, B, C, D, orders, chunk, starts, dy, dlast, n_parts, block):
    """Gradients of y (and of the last states) with respect to u, delta, A, B, C and D, for
    :func:`scan_forward`'s layout: dy (batch, S, U) like y.

    Vectorised across channels like the forward: ``block`` consecutive channels share B_t and
    C_t, so every inner loop runs over the block (contiguous, no reductions over N). Work items
    are (batch, part of u's channel blocks); an item takes each block in every order and walks
    its chunks in reverse: the block's states over a chunk are recomputed from the chunk's start
    state into a (chunk + 1, N, block) buffer (the decays into another), then the adjoint
    dLoss/dh runs backwards through them. u's gradient sums the K orders' (float32, k = 0, 1,
    ...). Channels of one group share B_t and C_t, so their gradients are summed: each part sums
    into its own slice of dB/dC (added up by the caller) and no two threads write the same
    element. The step size's gradient goes through softplus as sigmoid(x) = 1 - exp(-dt).
    Returns du (float32, batch x U x S), ddelta (float32, batch x K*U x S), dA per batch
    (float64, batch x K*U x N), dB and dC per part (float64, n_parts x batch x G x S x N) and dD
    per batch (float64, batch x K*U).
    """
    n_batch, n_inputs, length = u.shape
    n_orders = orders.shape[0]
    n_dim, n_state = A.shape
    b_per_group = n_dim // B.shape[1]
    c_per_group = n_dim // C.shape[1]
    n_chunks = starts.shape[2]
    n_blocks = n_inputs // block
    A_T = np.ascontiguousarray(A.T)
    du = np.empty((n_batch, n_inputs, length), np.float32)
    ddelta = np.empty((n_batch, n_dim, length), np.float32)
    dA = np.empty((n_batch, n_dim, n_state))
    dD = np.empty((n_batch, n_dim))
    dB = np.zeros((n_parts, n_batch, B.shape[1], length, n_state))
    dC = np.zeros((n_parts, n_batch, C.shape[1], length, n_state))
    for item in prange(n_batch * n_parts):
        b, part = item // n_parts, item % n_parts
        adj = np.empty((n_state, block))  # dLoss/dh of one block, carried backwards in time
        dA_sum, dD_sum = np.empty((n_state, block)), np.empty(block)
        states = np.empty((chunk + 1, n_state, block))  # states[k + 1] = h at step t0 + k
        decay = np.empty((chunk, n_state, block))  # exp(dt_t * A_n) over the chunk
        # one block's chunk, time-major so that a step reads `block` contiguous values
        dt_chunk, u_chunk = np.empty((chunk, block)), np.empty((chunk, block))
        dtu_chunk, g_chunk = np.empty((chunk, block)), np.empty((chunk, block))
        du_chunk, ddelta_chunk = np.empty((chunk, block)), np.empty((chunk, block))
        d_input = np.empty(block)  # dLoss/d(dt_t * u_t)
        d_exponent = np.empty(block)  # sum_n dLoss/d(dt_t * A_n) * A_n
        for blk in range(part * n_blocks // n_parts, (part + 1) * n_blocks // n_parts):
            i0 = blk * block  # u's (and dy's) channels
            for o in range(n_orders):
                order, d0 = orders[o], o * n_inputs + i0
                gb, gc = d0 // b_per_group, d0 // c_per_group
                for j in range(block):
                    for n in range(n_state):
                        adj[n, j] = dlast[b, d0 + j, n]
                dA_sum[:] = 0.0
                dD_sum[:] = 0.0
                for c in range(n_chunks - 1, -1, -1):
                    t0 = c * chunk
                    steps = min(length, t0 + chunk) - t0
                    for j in range(block):
                        for n in range(n_state):
                            states[0, n, j] = starts[b, d0 + j, c, n]
                        for k in range(steps):
                            dt_chunk[k, j] = dt[b, d0 + j, t0 + k]
                            u_chunk[k, j] = u[b, i0 + j, order[t0 + k]]
                    for k in range(steps):
                        g_chunk[k] = dy[b, order[t0 + k], i0:i0 + block]
                        for j in range(block):
                            dtu_chunk[k, j] = dt_chunk[k, j] * u_chunk[k, j]  # as the forward
                        for n in range(n_state):
                            B_sn, A_n = B[b, gb, order[t0 + k], n], A_T[n, d0:d0 + block]
                            decay_n, before, after = decay[k, n], states[k, n], states[k + 1, n]
                            for j in range(block):
                                decay_n[j] = _exp(dt_chunk[k, j] * A_n[j])
                                after[j] = decay_n[j] * before[j] + dtu_chunk[k, j] * B_sn
                    for k in range(steps - 1, -1, -1):
                        s = order[t0 + k]
                        dt_k, dtu_k, g_k = dt_chunk[k], dtu_chunk[k], g_chunk[k]
                        d_input[:] = 0.0
                        d_exponent[:] = 0.0
                        for n in range(n_state):
                            B_sn, C_sn = B[b, gb, s, n], C[b, gc, s, n]
                            adj_n, dA_n, A_n = adj[n], dA_sum[n], A_T[n, d0:d0 + block]
                            decay_n, before, after = decay[k, n], states[k, n], states[k + 1, n]
                            dB_sn = 0.0
                            dC_sn = 0.0
                            for j in range(block):
                                a = adj_n[j] + g_k[j] * C_sn
                                dC_sn += g_k[j] * after[j]
                                dB_sn += a * dtu_k[j]
                                d_input[j] += a * B_sn
                                w = a * before[j] * decay_n[j]  # dLoss/d(dt_t * A_n)
                                d_exponent[j] += w * A_n[j]
                                dA_n[j] += w * dt_k[j]
                                adj_n[j] = a * decay_n[j]
                            dB[part, b, gb, s, n] += dB_sn
                            dC[part, b, gc, s, n] += dC_sn
                        for j in range(block):
                            du_chunk[k, j] = d_input[j] * dt_k[j] + g_k[j] * D[d0 + j]
                            dD_sum[j] += g_k[j] * u_chunk[k, j]
                            ddelta_chunk[k, j] = d_input[j] * u_chunk[k, j] + d_exponent[j]
                    if softplus:
                        for k in range(steps):
                            for j in range(block):
                                ddelta_chunk[k, j] *= 1.0 - _exp(-dt_chunk[k, j])
                    for j in range(block):
                        for k in range(steps):
                            s = order[t0 + k]
                            ddelta[b, d0 + j, s] = ddelta_chunk[k, j]
                            du_sj = np.float32(du_chunk[k, j])
                            du[b, i0 + j, s] = du_sj if o == 0 else du[b, i0 + j, s] + du_sj
                for j in range(block):
                    dD[b, d0 + j] = dD_sum[j]
                    for n in range(n_state):
                        dA[b, d0 + j, n] = dA_sum[n, j]
    return du, ddelta, dA, dB, dC, dD
