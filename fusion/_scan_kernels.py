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


@njit(parallel=True, cache=True)
def scan_forward(u, delta, A, B, C, D, delta_bias, z, softplus, has_z, chunk):
    """Returns out (batch, D, L) float32, chunk start states (batch, D, n_chunks, N) and the last state."""
    n_batch, n_dim, length = u.shape
    n_state = A.shape[1]
    b_per_group = n_dim // B.shape[1]
    c_per_group = n_dim // C.shape[1]
    n_chunks = (length + chunk - 1) // chunk
    out = np.empty((n_batch, n_dim, length), np.float32)
    starts = np.empty((n_batch, n_dim, n_chunks, n_state), np.float64)
    last = np.empty((n_batch, n_dim, n_state), np.float64)
    for item in prange(n_batch * n_dim):
        b, d = item // n_dim, item % n_dim
        gb, gc = d // b_per_group, d // c_per_group
        h = np.zeros(n_state)
        for t in range(length):
            if t % chunk == 0:
                starts[b, d, t // chunk] = h
            dt = _step_size(delta[b, d, t] + delta_bias[d], softplus)
            dt_u = dt * u[b, d, t]
            y = 0.0
            for n in range(n_state):
                h[n] = math.exp(dt * A[d, n]) * h[n] + dt_u * B[b, gb, t, n]
                y += C[b, gc, t, n] * h[n]
            y += D[d] * u[b, d, t]
            if has_z:
                y *= z[b, d, t] * _sigmoid(z[b, d, t])
            out[b, d, t] = y
        last[b, d] = h
    return out, starts, last


@njit(parallel=True, cache=True)
def scan_backward(u, delta, A, B, C, D, delta_bias, z, softplus, has_z, chunk, starts,
                  dout, dlast, n_parts):
    """Gradients of out (and of the last state) with respect to every input.

    Work items are (batch, part of the channels). Channels of one group share B_t and C_t, so
    their gradients are summed: each part sums into its own slice of dB/dC (n_parts of them,
    added up by the caller) and no two threads ever write the same element.
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
    for item in prange(n_batch * n_parts):
        b, part = item // n_parts, item % n_parts
        states = np.empty((chunk + 1, n_state))  # states[k + 1] = h at step t0 + k
        decay = np.empty((chunk, n_state))  # exp(dt * A) at step t0 + k
        dts = np.empty(chunk)
        ys = np.empty(chunk)  # C.h + D u, before the z gate
        adj = np.empty(n_state)  # dLoss/dh, carried backwards in time
        for d in range(part * n_dim // n_parts, (part + 1) * n_dim // n_parts):
            gb, gc = d // b_per_group, d // c_per_group
            adj[:] = dlast[b, d]
            for c in range(n_chunks - 1, -1, -1):
                t0 = c * chunk
                t1 = min(length, t0 + chunk)
                states[0] = starts[b, d, c]
                for t in range(t0, t1):
                    k = t - t0
                    dt = _step_size(delta[b, d, t] + delta_bias[d], softplus)
                    dt_u = dt * u[b, d, t]
                    y = 0.0
                    for n in range(n_state):
                        e = math.exp(dt * A[d, n])
                        decay[k, n] = e
                        states[k + 1, n] = e * states[k, n] + dt_u * B[b, gb, t, n]
                        y += C[b, gc, t, n] * states[k + 1, n]
                    dts[k] = dt
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
                        w = adj[n] * states[k, n] * decay[k, n]
                        d_exponent += w * A[d, n]
                        dA[b, d, n] += w * dt
                        adj[n] *= decay[k, n]
                    du[b, d, t] = g * D[d] + d_input * dt
                    d_dt = d_input * u_t + d_exponent
                    d_raw = d_dt * _step_size_grad(delta[b, d, t] + delta_bias[d], softplus)
                    ddelta[b, d, t] = d_raw
                    dbias[b, d] += d_raw
    return du, ddelta, dz, dA, dD, dbias, dB, dC
