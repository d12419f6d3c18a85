"""Selective scan (the S6 recurrence of Mamba), with mamba-ssm's ``selective_scan_fn`` signature.

Per batch b, channel d and state index n::

    dt_t    = softplus(delta_t + delta_bias)        (softplus and bias optional)
    h_t     = exp(dt_t * A[d, n]) * h_{t-1} + dt_t * B_t[n] * u_t
    y_t     = sum_n C_t[n] * h_t[n] + D[d] * u_t
    out_t   = y_t * silu(z_t)                        (z optional)

B and C are (batch, N, L) or (batch, G, N, L); with G groups channel d reads group d // (D / G).

Backends, chosen per call from the tensors' device and the selection of :func:`set_scan_backend`
("auto" by default):

* ``cpu``: numba kernels (fusion._scan_kernels), forward scan and hand-written reverse scan; it
  never materialises (D, L, N) tensors. "auto" uses it for CPU tensors.
* ``mamba``: mamba-ssm's compiled kernel (fusion._scan_mamba). "auto" uses it for CUDA tensors
  when it loads; one that is installed but fails to load is an error, never a detour.
* ``triton``: our Triton kernels (fusion._scan_triton), for CUDA tensors when mamba-ssm's kernel is
  not installed; also on CPU tensors in Triton's interpreter (``TRITON_INTERPRET=1``).

Every call is counted per backend (:func:`scan_calls`), so that a run can prove where it scanned.
``selective_scan_ref`` is the readable float64 definition that the tests hold every backend to.
"""
from __future__ import annotations

import collections
import contextlib
import functools
import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from fusion import _scan_mamba
from fusionbench.errors import FusionBenchError

Tensor = torch.Tensor

CHUNK = 128  # steps between stored states: backward memory ~ B*D*N*L/CHUNK, recompute buffers (CHUNK, N, block)
# widest channel blocks: the forward keeps an (N, block) state, the backward two (CHUNK, N, block)
# float64 buffers (states and decays). Measured at S4Fusion's sizes, one thread: backward blocks of
# 36 channels take 0.6x the time of blocks of 8 (dB and dC are summed over a block, and read and
# written once per block)
FORWARD_BLOCK, BACKWARD_BLOCK = 64, 36


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
    # unbind (not indexing) per step: its backward is one stack, not L full-size scatters
    for dt, u_t, B_t, C_t in zip(delta.unbind(-1), u.unbind(-1), B.unbind(-1), C.unbind(-1)):
        h = torch.exp(dt[..., None] * A) * h + (dt * u_t)[..., None] * B_t
        ys.append((h * C_t).sum(-1))
    out = torch.stack(ys, dim=-1)
    if D is not None:
        out = out + D.double()[:, None] * u
    if z is not None:
        out = out * F.silu(z.double())
    out = out.to(dtype_in)
    return (out, h) if return_last_state else out


def _check_inputs(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None,
                  z: Tensor | None, delta_bias: Tensor | None) -> None:
    """Fail early with a message naming the argument, instead of deep inside a kernel."""
    if u.dim() != 3:
        raise ValueError(f"selective_scan: u must be (batch, D, L), got shape {tuple(u.shape)}")
    n_batch, n_dim, length = u.shape
    if A.dim() != 2 or A.shape[0] != n_dim or A.is_complex():
        raise ValueError(f"selective_scan: A must be real (D={n_dim}, N), got {tuple(A.shape)}")
    for name, x in (("delta", delta), ("z", z)):
        if x is not None and x.shape != u.shape:
            raise ValueError(f"selective_scan: {name} must have u's shape {tuple(u.shape)}, "
                             f"got {tuple(x.shape)}")
    for name, x in (("B", B), ("C", C)):
        g = _grouped(x)
        if (x.dim() not in (3, 4) or g.shape[0] != n_batch or g.shape[2:] != (A.shape[1], length)
                or n_dim % g.shape[1]):
            raise ValueError(f"selective_scan: {name} must be (batch, N, L) or (batch, G, N, L) "
                             f"with G dividing D={n_dim}, N={A.shape[1]}, L={length}; "
                             f"got {tuple(x.shape)}")
    for name, x in (("D", D), ("delta_bias", delta_bias)):
        if x is not None and x.shape != (n_dim,):
            raise ValueError(f"selective_scan: {name} must be ({n_dim},), got {tuple(x.shape)}")
    for name, x in zip(("delta", "A", "B", "C", "D", "z", "delta_bias"), (delta, A, B, C, D, z, delta_bias)):
        if x is not None and x.device != u.device:
            raise ValueError(f"selective_scan: {name} is on {x.device}, u on {u.device}")


def _numpy(x: Tensor, dtype: torch.dtype) -> np.ndarray:
    return x.detach().to(dtype).contiguous().numpy()


@contextlib.contextmanager
def _keeping_torch_threads():
    """numba's OpenMP layer sets the process-wide OpenMP thread count (when its pool starts, at the
    first ``get_num_threads`` or parallel launch, and at every launch), which torch reads as its own:
    put torch's back afterwards. Left changed, a process's CPU results would depend on whether it had
    scanned yet (torch's default is the physical cores, numba's the logical CPUs)."""
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


LANES = 4  # float64 per AVX2 vector: a block of w channels costs ~ceil(w / 4) * 4 (its float32 decays pad to 8)


def _blocking(n_batch: int, n_inputs: int, group: int, widest: int) -> tuple[int, int]:
    """(block, parts): the width of the channel blocks the kernels vectorise across (a divisor
    of ``group``, the channels that share B and C, and of u's ``n_inputs`` channels; at most
    ``widest``) and how many parts each batch item's blocks are split into for the numba
    threads. Chosen so that the busiest thread has the least work (whole blocks, each padded to
    the vector width), then the widest block: 3 blocks of 48 channels on 2 threads leave one
    thread idle a third of the time, 4 blocks of 36 do not."""
    from numba import get_num_threads

    with _keeping_torch_threads():  # the first query starts numba's thread pool
        threads = get_num_threads()
    common = math.gcd(n_inputs, group)

    def busiest(width: int) -> tuple[int, int]:
        blocks = n_inputs // width
        parts = min(blocks, -(-threads // n_batch))
        rounds = -(-n_batch * parts // threads)
        return rounds * -(-blocks // parts) * -(-width // LANES) * LANES, -width

    width = min((w for w in range(1, min(common, widest) + 1) if common % w == 0), key=busiest)
    return width, min(n_inputs // width, -(-threads // n_batch))


class _ScanCore(torch.autograd.Function):
    """out_t = C_t . h_t + D u_t, h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t with
    dt_t = softplus(delta_t + delta_bias), in numba kernels: a forward scan and a reverse scan;
    only the step sizes and the states at chunk starts are kept between the two.

    u (batch, U, S) is scanned in each of the K orders of ``orders`` (K, S) and the K outputs
    summed (see fusion._scan_kernels.scan_forward): delta is (batch, K*U, S), A (K*U, N), B and
    C (batch, G, N, S) in u's position order. With ``delta_weight`` (K*U, R), delta is instead
    (batch, K*R, S), the low-rank inputs that the weight maps to each order's Delta. The output is
    (batch, S, U) with ``channels_last``, else (batch, U, S)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, delta_bias, delta_weight, softplus, orders, channels_last,
                for_backward):
        from fusion import (
            _scan_kernels as kernels,  # numba compiles (or loads its cache) here
        )

        n_batch, n_inputs, length = u.shape
        n_dim = A.shape[0]
        skip, bias = (torch.zeros(n_dim) if x is None else x for x in (D, delta_bias))
        # trailing underscore: the numpy arrays (float32 copies or views) that the kernels read
        u_, A_, D_ = _numpy(u, torch.float32), _numpy(A, torch.float64), _numpy(skip, torch.float64)
        delta_ = _numpy(delta, torch.float32)
        weight_ = np.zeros((n_dim, 0)) if delta_weight is None else _numpy(delta_weight, torch.float64)
        B_, C_ = (_numpy(_grouped(x).transpose(2, 3), torch.float32) for x in (B, C))
        group = math.gcd(n_dim // B_.shape[1], n_dim // C_.shape[1])
        block, parts = _blocking(n_batch, n_inputs, group, FORWARD_BLOCK)
        y = torch.empty((n_batch, length, n_inputs) if channels_last else u.shape)
        with _keeping_torch_threads():
            dt, starts, last = kernels.scan_forward(
                u_, delta_, weight_, _numpy(bias, torch.float64), softplus, A_, B_, C_, D_, orders,
                CHUNK, parts, block, _positions_first(y.numpy(), channels_last), for_backward)
        ctx.arrays = (u_, dt, A_, B_, C_, D_, orders)  # reused by backward
        ctx.softplus, ctx.channels_last = softplus, channels_last
        # what backward needs of the other inputs is their dtype (and B's and C's shape): keeping
        # them alive would hold a full-size delta per scan call until backward
        ctx.dtypes = {name: None if x is None else x.dtype for name, x in
                      zip("delta A B C D bias weight".split(), (delta, A, B, C, D, delta_bias, delta_weight))}
        ctx.shapes = {"B": B.shape, "C": C.shape}
        ctx.blocking = _blocking(n_batch, n_inputs, group, BACKWARD_BLOCK)
        # u: its version check guards u_; low-rank Delta inputs and weight: their gradients need them
        projection = () if delta_weight is None else (delta, delta_weight)
        ctx.save_for_backward(u, torch.from_numpy(starts), *projection)
        return y.to(u.dtype), torch.from_numpy(last).to(u.dtype)

    @staticmethod
    def backward(ctx, dy, dlast):
        from fusion import _scan_kernels as kernels

        u, starts, *projection = ctx.saved_tensors  # dlast is zeros when last_state is unused
        u_, dt, A_, B_, C_, D_, orders = ctx.arrays
        dtypes = ctx.dtypes
        block, parts = ctx.blocking
        dy_ = _positions_first(_numpy(dy, torch.float32), ctx.channels_last)
        with _keeping_torch_threads():
            du, ddelta, dA, dB, dC, dD = kernels.scan_backward(
                u_, dt, ctx.softplus, A_, B_, C_, D_, orders, CHUNK, starts.numpy(), dy_,
                _numpy(dlast, torch.float64), parts, block)

        def grouped_grad(parts: np.ndarray, name: str) -> Tensor:
            grad = torch.from_numpy(parts).sum(0).transpose(2, 3)  # (batch, G, N, L)
            return grad.reshape(ctx.shapes[name]).to(dtypes[name])

        ddelta = torch.from_numpy(ddelta)
        dinputs, dweight = ddelta, None
        if projection:  # Delta = weight . inputs, order by order: the chain rule, in float32
            inputs = projection[0].float().unflatten(1, (len(orders), -1))  # (batch, K, R, L)
            weight = projection[1].float().unflatten(0, (len(orders), -1))  # (K, U, R)
            per_order = ddelta.unflatten(1, (len(orders), -1))  # (batch, K, U, L)
            dweight = torch.einsum("bkul,bkrl->kur", per_order, inputs).flatten(0, 1).to(dtypes["weight"])
            dinputs = torch.einsum("bkul,kur->bkrl", per_order, weight).flatten(1, 2)
        return (torch.from_numpy(du).to(u.dtype), dinputs.to(dtypes["delta"]),
                torch.from_numpy(dA).sum(0).to(dtypes["A"]), grouped_grad(dB, "B"),
                grouped_grad(dC, "C"),
                None if dtypes["D"] is None else torch.from_numpy(dD).sum(0).to(dtypes["D"]),
                None if dtypes["bias"] is None else ddelta.double().sum((0, 2)).to(dtypes["bias"]),
                dweight, None, None, None, None)


def _positions_first(y: np.ndarray, channels_last: bool) -> np.ndarray:
    """The (batch, positions, channels) view of an output (or its gradient) that the kernels
    index by position: the array itself, or a transposed view of a channels-first one."""
    return y if channels_last else y.transpose(0, 2, 1)


def _needs_backward(*inputs: Tensor | None) -> bool:
    """Whether the scan must keep what its backward needs. Decided before autograd.Function.apply:
    inside forward grad mode is always off, and ctx.needs_input_grad ignores no_grad."""
    return torch.is_grad_enabled() and any(x is not None and x.requires_grad for x in inputs)


Core = Callable[..., tuple[Tensor, Tensor]]  # (u, delta, A, B, C, D, delta_bias, softplus) -> (out, last)


def _core_cpu(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None,
              delta_bias: Tensor | None, softplus: bool) -> tuple[Tensor, Tensor]:
    """The numba scan; tensors on another device (an explicit choice of this backend) are scanned
    on the CPU and the results moved back."""
    inputs = (u, delta, A, B, C, D, delta_bias)
    for_backward = _needs_backward(*inputs)
    cpu = [None if x is None else x.cpu() for x in inputs]
    plain = np.arange(u.shape[2])[None]  # one scan, in time order
    out, last = _ScanCore.apply(*cpu, None, softplus, plain, False, for_backward)
    return out.to(u.device), last.to(u.device)


def _core_triton(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None,
                 delta_bias: Tensor | None, softplus: bool) -> tuple[Tensor, Tensor]:
    triton_scan = _triton_module()
    for_backward = _needs_backward(u, delta, A, B, C, D, delta_bias)
    return triton_scan.TritonScan.apply(u, delta, A, B, C, D, delta_bias, softplus, for_backward)


def _core_mamba(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None,
                delta_bias: Tensor | None, softplus: bool) -> tuple[Tensor, Tensor]:
    return _scan_mamba.MambaScan.apply(_scan_mamba.load_kernel().module, u, delta, A, B, C, D,
                                       delta_bias, softplus)


_CORES: dict[str, Core] = {"cpu": _core_cpu, "triton": _core_triton, "mamba": _core_mamba}
BACKENDS = ("auto", *_CORES)


class ScanBackendError(FusionBenchError):
    """The selected scan backend cannot scan these tensors in this installation."""


_selected = "auto"
_calls: collections.Counter[str] = collections.Counter()


def set_scan_backend(name: str) -> None:
    """Select the backend of every later scan: 'auto' (by device), 'mamba', 'triton' or 'cpu'."""
    global _selected
    if name not in BACKENDS:
        raise ScanBackendError(f"unknown scan backend {name!r}; choose one of {', '.join(BACKENDS)}")
    _selected = name


def scan_backend() -> str:
    """The selected backend (possibly 'auto')."""
    return _selected


def scan_calls() -> dict[str, int]:
    """How many scans each backend ran in this process since the last reset."""
    return {name: _calls[name] for name in _CORES}


def reset_scan_calls() -> None:
    _calls.clear()


@functools.cache
def _triton_module():
    """fusion._scan_triton, imported on first use (importing triton costs a second)."""
    try:
        from fusion import _scan_triton
    except ImportError as error:
        raise ScanBackendError(f"the Triton scan backend needs triton, which fails to import "
                               f"({type(error).__name__}: {error})") from error
    return _scan_triton


def _mamba_unavailable(kernel: _scan_mamba.MambaKernel) -> ScanBackendError:
    if kernel.installed:
        return ScanBackendError(
            f"mamba-ssm's scan kernel {_scan_mamba.MODULE} is installed but fails to load "
            f"({kernel.error}); repair or uninstall mamba-ssm, or select the 'triton' scan backend")
    return ScanBackendError(f"the 'mamba' scan backend needs mamba-ssm's compiled kernel "
                            f"{_scan_mamba.MODULE}, which is not installed; select 'auto' or 'triton'")


def backend_for(device: torch.device | str) -> str:
    """The backend that scans tensors on ``device`` under the current selection, or a
    ScanBackendError that says why none can (checked by stages before they start, too)."""
    device = torch.device(device)
    if _selected == "cpu":
        return "cpu"
    if _selected == "auto" and device.type == "cpu":
        return "cpu"
    if _selected in ("auto", "mamba") and device.type == "cuda":
        kernel = _scan_mamba.load_kernel()
        if kernel.module is not None:
            return "mamba"
        if _selected == "mamba" or kernel.installed:
            raise _mamba_unavailable(kernel)
        _triton_module()
        return "triton"
    if _selected == "triton" and device.type == "cuda":
        _triton_module()
        return "triton"
    if _selected == "triton" and device.type == "cpu":
        if not _triton_module().INTERPRETED:
            raise ScanBackendError("the 'triton' scan backend runs CPU tensors only in Triton's "
                                   "interpreter: set TRITON_INTERPRET=1 before triton is imported")
        return "triton"
    raise ScanBackendError(f"the {_selected!r} scan backend cannot scan tensors on {device}; "
                           f"select the 'cpu' backend to scan them on the CPU")


def _scan(core: Core, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
          D: Tensor | None, z: Tensor | None, delta_bias: Tensor | None, delta_softplus: bool,
          return_last_state: bool) -> Tensor | tuple[Tensor, Tensor]:
    """One backend's scan with the gate z as a whole-tensor torch op, in u's dtype."""
    out, last = core(u, delta, A, B, C, D, delta_bias, delta_softplus)
    out = out.to(u.dtype)
    if z is not None:
        out = out * F.silu(z)
    return (out, last.to(u.dtype)) if return_last_state else out


def selective_scan_fn(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                      D: Tensor | None = None, z: Tensor | None = None,
                      delta_bias: Tensor | None = None, delta_softplus: bool = False,
                      return_last_state: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Selective scan: out (batch, D, L) in u's dtype, plus last_state (batch, D, N) on request,
    by the backend :func:`backend_for` picks for u's device.

    The CPU backend scans float32 inputs with float64 states and sums (the step sizes are rounded
    to float32, as mamba-ssm computes them; z gates in the inputs' precision); the Triton and mamba
    backends keep float32 states. The CPU and Triton backends also back-propagate a gradient that
    flows into last_state; mamba-ssm's kernel cannot (an error if one arrives).
    """
    _check_inputs(u, delta, A, B, C, D, z, delta_bias)
    backend = backend_for(u.device)
    _calls[backend] += 1
    return _scan(_CORES[backend], u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                 return_last_state)


def triton_selective_scan_fn(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                             D: Tensor | None = None, z: Tensor | None = None,
                             delta_bias: Tensor | None = None, delta_softplus: bool = False,
                             return_last_state: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """:func:`selective_scan_fn` by the Triton kernels whatever the selection: CUDA tensors, or
    CPU tensors in Triton's interpreter (TRITON_INTERPRET=1 set before triton is imported)."""
    _check_inputs(u, delta, A, B, C, D, z, delta_bias)
    if u.device.type == "cpu" and not _triton_module().INTERPRETED:
        raise ScanBackendError("the Triton scan runs CPU tensors only in Triton's interpreter: "
                               "set TRITON_INTERPRET=1 before triton is imported")
    _calls["triton"] += 1
    return _scan(_core_triton, u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                 return_last_state)


def directional_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                     D: Tensor | None, delta_bias: Tensor | None, delta_softplus: bool,
                     orders: np.ndarray, delta_proj_weight: Tensor | None = None) -> Tensor:
    """K selective scans of one input, each taking its steps in its own order, summed back
    position by position, on the CPU (numba), without reordered copies of any input:

    u (batch, U, S) float32; orders (K, S) int64, each row a permutation of the positions
    0 .. S-1; delta (batch, K*U, S) and B, C (batch, K, N, S), all in u's position order: scan k
    of u's channel i is channel k*U + i of delta, A (K*U, N), D and delta_bias (K*U,) and reads
    B and C group k. Returns (batch, S, U), channels last: out[:, s] = sum over k (in k order,
    float32) of scan k's output at its step t with orders[k, t] = s. That is what
    :func:`selective_scan_fn` on the K reordered sequences (B and C as K groups), mapped back
    and summed, gives; counted as one 'cpu' scan.

    With ``delta_proj_weight`` (K*U, R), delta is instead the (batch, K*R, S) low-rank input of
    Mamba's dt projection, and the scans' Delta is its product with the weight, order by order:
    Delta[:, k*U + i] = sum_r delta_proj_weight[k*U + i, r] * delta[:, k*R + r]. The kernel forms
    each chunk's Delta itself: the (batch, K*U, S) tensor is neither computed nor gathered.
    """
    n_orders = orders.shape[0]
    n_rank = 0 if delta_proj_weight is None else delta_proj_weight.shape[-1]
    if (u.device.type != "cpu" or orders.shape[1] != u.shape[2]
            or delta.shape[1] != n_orders * (n_rank or u.shape[1])):
        expected = "(batch, K*U, S)" if delta_proj_weight is None else f"(batch, K*R = {n_orders}*{n_rank}, S)"
        raise ValueError(f"directional_scan: CPU tensors u (batch, U, S), delta {expected} and "
                         f"orders (K, S); got u {tuple(u.shape)} on {u.device}, delta "
                         f"{tuple(delta.shape)}, orders {orders.shape}")
    scans = u.new_empty(()).expand(u.shape[0], n_orders * u.shape[1], u.shape[2])  # a shape, no data
    if delta_proj_weight is not None and (delta_proj_weight.shape != (scans.shape[1], n_rank)
                                          or delta.shape != (u.shape[0], n_orders * n_rank, u.shape[2])):
        raise ValueError(f"directional_scan: delta_proj_weight must be (K*U = {scans.shape[1]}, R) for "
                         f"delta (batch, K*R, S); got {tuple(delta_proj_weight.shape)} and delta "
                         f"{tuple(delta.shape)}")
    _check_inputs(scans, scans if n_rank else delta, A, B, C, D, None, delta_bias)
    _calls["cpu"] += 1
    inputs = (u, delta, A, B, C, D, delta_bias, delta_proj_weight)
    out, _ = _ScanCore.apply(*inputs, delta_softplus, orders, True, _needs_backward(*inputs))
    return out
