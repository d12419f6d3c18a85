"""Numba CPU kernels of the selective scan: a forward scan and its reverse (adjoint) scan.

Layout (prepared by fusion.scan): u, delta, z, dout are float32 (batch, D, L); B and C are float32
(batch, G, L, N) so that one time step reads N contiguous values; A (D, N), D (D,) and delta_bias
(D,) are float64. Every sum runs in float64.

Memory stays linear in L without any (D, L, N) tensor: the forward pass keeps the hidden state only
at the start of every chunk of ``chunk`` steps; the backward pass walks the chunks from last to
first, recomputes one chunk's states into a small (chunk + 1, N) buffer and runs the reverse scan
over it.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

SOFTPLUS_THRESHOLD = 20.0  # as torch.nn.functional.softplus and mamba-ssm: above it softplus(x) = x

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


@njit(cache=True)
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
def _sigmoid(x: float) -> float:
    """Logistic function without overflow for large |x|."""
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@njit(cache=True, inline="always")
def _step_size(raw: float, softplus: bool) -> float:
    """delta (bias already added) -> the step size dt that enters exp(dt * A)."""
    if softplus and raw <= SOFTPLUS_THRESHOLD:
        return math.log1p(math.exp(raw))
    return raw


@njit(cache=True, inline="always")
def _step_size_grad(raw: float, softplus: bool) -> float:
    """d dt / d delta, matching torch's softplus backward (1 above the threshold)."""
    if softplus and raw <= SOFTPLUS_THRESHOLD:
        return _sigmoid(raw)
    return 1.0


@njit(cache=True)
def _chunk_decay(delta, bias, A, softplus, dts, decay, work):
    """Step sizes and decays of one channel over one chunk: dts[k] = dt_k and
    decay[k * N + n] = exp(dt_k * A[n]) for the len(delta) steps of the chunk.
    ``work`` is a float64 and two int64 scratch arrays of decay's size."""
    n_state = A.size
    exponents, half, rest = work
    for k in range(delta.size):
        dt = _step_size(delta[k] + bias, softplus)
        dts[k] = dt
        for n in range(n_state):
            exponents[k * n_state + n] = dt * A[n]
    used = delta.size * n_state
    _exp_into(exponents[:used], decay[:used], half[:used], rest[:used])


@njit(cache=True)
def _chunk_buffers(chunk, n_state):
    """Per-thread buffers for _chunk_decay: dts, decay and its scratch arrays."""
    size = chunk * n_state
    work = (np.empty(size), np.empty(size, np.int64), np.empty(size, np.int64))
    return np.empty(chunk), np.empty(size), work


@njit(parallel=True, cache=True)
def scan_forward(u, delta, A, B, C, D, delta_bias, z, softplus, has_z, chunk, n_parts):
    """Returns out (batch, D, L) float32, chunk start states (batch, D, n_chunks, N) and the last state.

    Work items are (batch, part of the channels); an item walks the chunks in time order and,
    within a chunk, its channels, so the chunk's B and C stay in cache while they are reused.
    """
    n_batch, n_dim, length = u.shape
    n_state = A.shape[1]
    b_per_group = n_dim // B.shape[1]
    c_per_group = n_dim // C.shape[1]
    n_chunks = (length + chunk - 1) // chunk
    out = np.empty((n_batch, n_dim, length), np.float32)
    starts = np.empty((n_batch, n_dim, n_chunks, n_state), np.float64)
    last = np.zeros((n_batch, n_dim, n_state), np.float64)  # the running state
    for item in prange(n_batch * n_parts):
        b, part = item // n_parts, item % n_parts
        dts, decay, work = _chunk_buffers(chunk, n_state)
        for c in range(n_chunks):
            t0 = c * chunk
            t1 = min(length, t0 + chunk)
            for d in range(part * n_dim // n_parts, (part + 1) * n_dim // n_parts):
                gb, gc = d // b_per_group, d // c_per_group
                h = last[b, d]
                starts[b, d, c] = h
                _chunk_decay(delta[b, d, t0:t1], delta_bias[d], A[d], softplus, dts, decay, work)
                for t in range(t0, t1):
                    k = t - t0
                    dt_u = dts[k] * u[b, d, t]
                    y = 0.0
                    for n in range(n_state):
                        h[n] = decay[k * n_state + n] * h[n] + dt_u * B[b, gb, t, n]
                        y += C[b, gc, t, n] * h[n]
                    y += D[d] * u[b, d, t]
                    if has_z:
                        y *= z[b, d, t] * _sigmoid(z[b, d, t])
                    out[b, d, t] = y
    return out, starts, last


@njit(parallel=True, cache=True)
def scan_backward(u, delta, A, B, C, D, delta_bias, z, softplus, has_z, chunk, starts,
                  dout, dlast, n_parts):
    """Gradients of out (and of the last state) with respect to every input.

    Same work items as scan_forward, chunks in reverse order. Channels of one group share B_t and
    C_t, so their gradients are summed: each part sums into its own slice of dB/dC (n_parts of
    them, added up by the caller) and no two threads ever write the same element.
    Returns du, ddelta, dz (float32, batch x D x L), dA and dD and ddelta_bias per batch (float64),
    and dB, dC per part (float64, n_parts x batch x G x L x N).
    """
    n_batch, n_dim, length = u.shape
    n_state = A.shape[1]
    b_per_group = n_dim // B.shape[1]
    c_per_group = n_dim // C.shape[1]
    n_chunks = starts.shape[2]
    du = np.empty((n_batch, n_dim, length), np.float32)
    ddelta = np.empty((n_batch, n_dim, length), np.float32)
    dz = np.zeros(z.shape, np.float32)
    dA = np.zeros((n_batch, n_dim, n_state))
    dD = np.zeros((n_batch, n_dim))
    dbias = np.zeros((n_batch, n_dim))
    dB = np.zeros((n_parts, n_batch, B.shape[1], length, n_state))
    dC = np.zeros((n_parts, n_batch, C.shape[1], length, n_state))
    adjoint = dlast.copy()  # dLoss/dh per channel, carried backwards in time
    for item in prange(n_batch * n_parts):
        b, part = item // n_parts, item % n_parts
        dts, decay, work = _chunk_buffers(chunk, n_state)
        states = np.empty((chunk + 1, n_state))  # states[k + 1] = h at step t0 + k
        ys = np.empty(chunk)  # C.h + D u, before the z gate
        for c in range(n_chunks - 1, -1, -1):
            t0 = c * chunk
            t1 = min(length, t0 + chunk)
            for d in range(part * n_dim // n_parts, (part + 1) * n_dim // n_parts):
                gb, gc = d // b_per_group, d // c_per_group
                adj = adjoint[b, d]
                _chunk_decay(delta[b, d, t0:t1], delta_bias[d], A[d], softplus, dts, decay, work)
                states[0] = starts[b, d, c]
                for t in range(t0, t1):
                    k = t - t0
                    dt_u = dts[k] * u[b, d, t]
                    y = 0.0
                    for n in range(n_state):
                        states[k + 1, n] = (decay[k * n_state + n] * states[k, n]
                                            + dt_u * B[b, gb, t, n])
                        y += C[b, gc, t, n] * states[k + 1, n]
                    ys[k] = y + D[d] * u[b, d, t]
                for t in range(t1 - 1, t0 - 1, -1):
                    k = t - t0
                    dt, u_t, g = dts[k], u[b, d, t], dout[b, d, t]
                    if has_z:
                        sig = _sigmoid(z[b, d, t])
                        dz[b, d, t] = g * ys[k] * sig * (1.0 + z[b, d, t] * (1.0 - sig))
                        g *= z[b, d, t] * sig
                    dD[b, d] += g * u_t
                    d_input = 0.0  # dLoss/d(dt * u_t)
                    d_exponent = 0.0  # sum_n dLoss/d(dt * A_n) * A_n
                    for n in range(n_state):
                        adj[n] += g * C[b, gc, t, n]
                        dC[part, b, gc, t, n] += g * states[k + 1, n]
                        dB[part, b, gb, t, n] += adj[n] * dt * u_t
                        d_input += adj[n] * B[b, gb, t, n]
                        w = adj[n] * states[k, n] * decay[k * n_state + n]
                        d_exponent += w * A[d, n]
                        dA[b, d, n] += w * dt
                        adj[n] *= decay[k * n_state + n]
                    du[b, d, t] = g * D[d] + d_input * dt
                    d_dt = d_input * u_t + d_exponent
                    d_raw = d_dt * _step_size_grad(delta[b, d, t] + delta_bias[d], softplus)
                    ddelta[b, d, t] = d_raw
                    dbias[b, d] += d_raw
    return du, ddelta, dz, dA, dD, dbias, dB, dC
