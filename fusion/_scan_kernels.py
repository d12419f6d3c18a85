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
float64 (K*U, N), D and delta_bias float64 (K*U,). The forward also takes Delta as low-rank
factors: delta (batch, K*R, S) and delta_weight (K*U, R) float64 (R = 0: delta is Delta).

Precision: states and every sum are float64. The decays are applied as h + (exp(dt A) - 1) h
with exp(dt A) - 1 computed in float32 (_expm1_f32, 8 lanes per AVX2 vector instead of 4): its
error is relative to the state's leak, so slow channels lose nothing, and outputs stay within
~1e-7 (relative to the largest) of float64 decays.

Memory stays linear in L without any (D, L, N) tensor: the forward pass keeps the hidden state only
at the start of every chunk of ``chunk`` steps; the backward pass walks the chunks from last to
first, recomputes one chunk's states into a small (chunk + 1, N, block) buffer and runs the
reverse scan over it.
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
# Adding 1.5 * 2**52 rounds any |v| < 2**51 to an integer (the spacing of doubles there is 1),
# and that integer is then the low bits of the sum's IEEE-754 pattern.
ROUNDER = 6755399441055744.0
ROUNDER_BITS = 0x4338000000000000
EXPONENT_ONE = 1023 << 52


def _bit_cast(source, target, doc: str):
    """A numba intrinsic that reinterprets a ``source`` value's IEEE-754 bits as ``target`` (a
    register move, which vectorises; numpy's view needs an array in memory)."""
    ir_target = {types.float64: ir.DoubleType(), types.float32: ir.FloatType(),
                 types.int64: ir.IntType(64), types.int32: ir.IntType(32)}[target]

    def typer(typingctx, value):
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir_target)
        return target(source), codegen

    typer.__doc__ = doc
    return intrinsic(typer)


_float_from_bits = _bit_cast(types.int64, types.float64, "The float64 with the int64's bit pattern.")
_bits_from_float = _bit_cast(types.float64, types.int64, "The float64's bit pattern as an int64.")
_float32_from_bits = _bit_cast(types.int32, types.float32, "The float32 with the int32's bit pattern.")
_bits_from_float32 = _bit_cast(types.float32, types.int32, "The float32's bit pattern as an int32.")


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


# The decays in float32, as exp(x) - 1 (see _expm1_f32). Constants are float32 (a float64 one would
# promote the whole computation). ln 2 in one float32 (error 1.9e-9): r = x - k ln 2 is then off by
# |k| 1.9e-9, i.e. exp(x) by that relatively, which for x <= 0 is below 5e-9 of exp(x) - 1.
F32_LOG2E = np.float32(LOG2E)
F32_LN2 = np.float32(math.log(2.0))
F32_ROUNDER = np.float32(12582912.0)  # 1.5 * 2**23: rounds |v| < 2**22 to an integer, as ROUNDER
F32_ROUNDER_BITS = np.int32(0x4B400000)
F32_EXPONENT_BIAS = np.int32(127)
F32_LOWEST = np.float32(-87.0)  # exp(-87) < 2**-125: below it exp(x) - 1 rounds to -1
F32_HIGHEST = np.float32(88.0)  # exp(88) < 2**127 < float32's largest; above it: inf
F32_ONE = np.float32(1.0)
F32_INF = np.float32(np.inf)
EXPM1_COEFFS = tuple(np.float32(1.0 / math.factorial(i)) for i in range(2, 8))


@njit(cache=True, fastmath={"contract"})
def _expm1_f32(x: np.float32) -> np.float32:
    """exp(x) - 1 in float32 arithmetic, within 1.1e-7 of it relatively for x <= 0 (3.3e-7 up to
    88), in operations that LLVM vectorises 8 to an AVX2 register (twice the lanes of float64,
    and a 7th- instead of a 12th-degree polynomial).

    Why exp(x) - 1 and not exp(x): a scan's slow channels decay by exp(dt A) = 1 - 1e-3 per step
    and remember ~1,000 steps. exp(x) rounded to float32 would err by up to 3e-8 absolute, i.e.
    3e-5 of the 1e-3 that the state leaks per step, and that error would set the state's level. The
    kernels instead update h + (exp(x) - 1) h in float64 with exp(x) - 1 accurate relative to
    itself: the decay's error is then ~1e-7 of its leak, whatever the leak, and the states and
    outputs stay within ~1e-7 of float64 decays. Range reduction as in _exp:
    exp(x) - 1 = 2**k (exp(r) - 1) + (2**k - 1), exact for k = 0 (where |x| is small). x below
    -87 gives -1 (exp(x) < 2**-125), above 88 inf; NaN stays NaN."""
    v = min(max(x, F32_LOWEST), F32_HIGHEST)  # numba's min and max keep NaN
    shifted = v * F32_LOG2E + F32_ROUNDER
    k = shifted - F32_ROUNDER
    r = v - k * F32_LN2
    c2, c3, c4, c5, c6, c7 = EXPM1_COEFFS
    r2 = r * r  # Estrin's scheme: a shorter dependency chain than Horner's, as in _exp_taylor
    poly = (r + r2 * (c2 + r * c3)) + (r2 * r2) * ((c4 + r * c5) + r2 * (c6 + r * c7))
    scale = _float32_from_bits((_bits_from_float32(shifted) - F32_ROUNDER_BITS + F32_EXPONENT_BIAS) << 23)
    out = scale * poly + (scale - F32_ONE)
    return F32_INF if x > F32_HIGHEST else out


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


F32_LANES = 8  # float32 values per AVX2 vector: the decays are computed for blocks padded to it


@njit(cache=True, fastmath={"contract"})
def _leaks(dt, A, out):
    """out[n, j] = exp(dt[j] A[n, j]) - 1 (float32, (N, wide)): one step's decays for a block, as
    one loop per state whose length is a whole number of vectors (no scalar remainder)."""
    for n in range(A.shape[0]):
        A_n, out_n = A[n], out[n]
        for j in range(A.shape[1]):
            out_n[j] = _expm1_f32(dt[j] * A_n[j])


@njit(cache=True, fastmath=REASSOCIATE)
def _project_deltas(inputs, positions, weight_T, bias, gathered, raw):
    """raw[k, j] = bias[j] + sum_r weight_T[r, j] * inputs[r, positions[k]]: a chunk's Delta for
    a block from the R low-rank inputs of its order (Mamba's dt projection), read at the chunk's
    positions into ``gathered`` (chunk, R) first. R rows are gathered instead of a block's
    channels, and the (batch, K*U, L) Delta is never written."""
    for r in range(inputs.shape[0]):
        row = inputs[r]
        for k in range(positions.size):
            gathered[k, r] = row[positions[k]]
    for k in range(positions.size):
        raw_k = raw[k]
        raw_k[:] = bias
        for r in range(inputs.shape[0]):
            value, weight_r = gathered[k, r], weight_T[r]
            for j in range(raw_k.size):
                raw_k[j] += weight_r[j] * value


@njit(parallel=True, cache=True, fastmath=REASSOCIATE)
def scan_forward(u, delta, delta_weight, delta_bias, softplus, A, B, C, D, orders, chunk, n_parts,
                 block, y, for_backward):
    """Scans u in each of K orders and writes the sum of the K outputs, position by position,
    into y (batch, S, U) float32 (a transposed view of the caller's tensor where it wants
    channels first). Returns the step sizes dt (batch, K*U, L) float32 in time order (the
    forward rounds them to float32 and backward reuses them), the states at every chunk start
    (batch, K*U, n_chunks, N) and the last state (batch, K*U, N). Without ``for_backward`` dt
    and the chunk states are empty arrays: inference writes (and page-faults) a third less.

    Channel k*U + i (delta, A, D, delta_bias and the B and C groups) is the scan of u's channel i
    that takes its step t at position orders[k, t]: the four 2-D scan directions read the same
    u, delta, B and C in place of flipped and transposed copies. K = 1 with orders [0 .. L-1] is
    the plain scan. The K outputs are summed in float32 in the order k = 0, 1, ... With R =
    delta_weight.shape[1] > 0, channel k*U + i's Delta is delta_weight[k*U + i] . delta[k*R:(k+1)*R]
    (see _project_deltas).

    Vectorised across channels: ``block`` consecutive channels read the same B_t and C_t (block
    divides both group sizes), so one step updates an (N, block) state in contiguous inner loops,
    after one loop per state has computed the step's decays (_leaks). Work items are (batch, part
    of u's channel blocks); an item scans each of its blocks in every order, chunk by chunk in
    time order, gathering the chunk's u and delta into small (chunk, block) buffers (delta
    becomes dt there).
    """
    n_batch, n_inputs, length = u.shape
    n_orders = orders.shape[0]
    n_dim, n_state = A.shape
    b_per_group = n_dim // B.shape[1]
    c_per_group = n_dim // C.shape[1]
    n_chunks = (length + chunk - 1) // chunk
    n_blocks = n_inputs // block
    wide = -(-block // F32_LANES) * F32_LANES
    n_rank = delta_weight.shape[1]
    weight_T = np.ascontiguousarray(delta_weight.T)
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
        projections = np.empty((chunk, n_rank))  # one order's low-rank Delta inputs over the chunk
        # the decays' float32 operands and exp(dt A) - 1, padded to whole vectors (zeros)
        dt32_chunk, A32 = np.zeros((chunk, wide), np.float32), np.zeros((n_state, wide), np.float32)
        leak = np.empty((n_state, wide), np.float32)
        for blk in range(part * n_blocks // n_parts, (part + 1) * n_blocks // n_parts):
            i0 = blk * block  # u's (and y's) channels
            for o in range(n_orders):
                order, d0 = orders[o], o * n_inputs + i0
                gb, gc = d0 // b_per_group, d0 // c_per_group
                A32[:, :block] = A_T[:, d0:d0 + block]
                h[:] = 0.0
                for c in range(n_chunks):
                    t0 = c * chunk
                    steps = min(length, t0 + chunk) - t0
                    if n_rank:
                        _project_deltas(delta[b, o * n_rank:(o + 1) * n_rank], order[t0:t0 + steps],
                                        weight_T[:, d0:d0 + block], delta_bias[d0:d0 + block],
                                        projections, raw_chunk)
                    for j in range(block):
                        if for_backward:
                            for n in range(n_state):
                                starts[b, d0 + j, c, n] = h[n, j]
                        for k in range(steps):
                            if not n_rank:
                                raw_chunk[k, j] = delta[b, d0 + j, order[t0 + k]] + delta_bias[d0 + j]
                            u_chunk[k, j] = u[b, i0 + j, order[t0 + k]]
                    used = steps * block
                    _step_sizes(raw_chunk.ravel()[:used], softplus, dt_chunk.ravel()[:used],
                                u_chunk.ravel()[:used], dtu_chunk.ravel()[:used])
                    dt32_chunk[:steps, :block] = dt_chunk[:steps]
                    for k in range(steps):
                        s = order[t0 + k]
                        _leaks(dt32_chunk[k], A32, leak)
                        dtu_k, y_k = dtu_chunk[k], y_chunk[k]
                        y_k[:] = 0.0
                        for n in range(n_state):
                            B_sn, C_sn = B[b, gb, s, n], C[b, gc, s, n]
                            h_n, leak_n = h[n], leak[n]
                            for j in range(block):
                                h_n[j] = (h_n[j] + leak_n[j] * h_n[j]) + dtu_k[j] * B_sn
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
    state into a (chunk + 1, N, block) buffer (exp(dt A) - 1 into another), then the adjoint
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
    wide = -(-block // F32_LANES) * F32_LANES
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
        leak = np.empty((chunk, n_state, wide), np.float32)  # exp(dt_t * A_n) - 1 over the chunk
        dt32_chunk, A32 = np.zeros((chunk, wide), np.float32), np.zeros((n_state, wide), np.float32)
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
                A32[:, :block] = A_T[:, d0:d0 + block]
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
                    dt32_chunk[:steps, :block] = dt_chunk[:steps]
                    for k in range(steps):
                        g_chunk[k] = dy[b, order[t0 + k], i0:i0 + block]
                        for j in range(block):
                            dtu_chunk[k, j] = dt_chunk[k, j] * u_chunk[k, j]  # as the forward
                        _leaks(dt32_chunk[k], A32, leak[k])
                        for n in range(n_state):
                            B_sn, leak_n = B[b, gb, order[t0 + k], n], leak[k, n]
                            before, after = states[k, n], states[k + 1, n]
                            for j in range(block):
                                after[j] = (before[j] + leak_n[j] * before[j]) + dtu_chunk[k, j] * B_sn
                    for k in range(steps - 1, -1, -1):
                        s = order[t0 + k]
                        dt_k, dtu_k, g_k = dt_chunk[k], dtu_chunk[k], g_chunk[k]
                        d_input[:] = 0.0
                        d_exponent[:] = 0.0
                        for n in range(n_state):
                            B_sn, C_sn = B[b, gb, s, n], C[b, gc, s, n]
                            adj_n, dA_n, A_n = adj[n], dA_sum[n], A_T[n, d0:d0 + block]
                            leak_n, before, after = leak[k, n], states[k, n], states[k + 1, n]
                            dB_sn = 0.0
                            dC_sn = 0.0
                            for j in range(block):
                                a = adj_n[j] + g_k[j] * C_sn
                                dC_sn += g_k[j] * after[j]
                                dB_sn += a * dtu_k[j]
                                d_input[j] += a * B_sn
                                w = a * (before[j] + leak_n[j] * before[j])  # dLoss/d(dt_t * A_n)
                                d_exponent[j] += w * A_n[j]
                                dA_n[j] += w * dt_k[j]
                                adj_n[j] = a + a * leak_n[j]
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
