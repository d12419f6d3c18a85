"""The numba selective scan against the float64 sequential reference: outputs, every gradient,
groups, options, chunk boundaries, long sequences and extreme step sizes."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from numba import njit

from fusion import OPENMP_WAITING, _scan_kernels
from fusion.scan import CHUNK, directional_scan, selective_scan_fn, selective_scan_ref

REPO = Path(__file__).resolve().parents[1]
NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def make_inputs(batch=2, dim=4, n_state=3, length=300, b_groups=None, c_groups=None,
                delta_scale=1.0, a_scale=2.0, seed=0, with_d=True, with_z=True, with_bias=True):
    """float32 leaves (the reference upcasts the very same values). groups=None: (batch, N, L)."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g)

    def grouped(groups):
        return randn(batch, n_state, length) if groups is None else randn(batch, groups, n_state, length)

    inputs = {
        "u": randn(batch, dim, length),
        "delta": randn(batch, dim, length) * delta_scale,
        "A": -torch.rand(dim, n_state, generator=g) * a_scale,
        "B": grouped(b_groups),
        "C": grouped(c_groups),
        "D": randn(dim) if with_d else None,
        "z": randn(batch, dim, length) if with_z else None,
        "delta_bias": randn(dim) * 0.5 if with_bias else None,
    }
    return {k: None if v is None else v.requires_grad_() for k, v in inputs.items()}


def assert_matches(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-5) -> None:
    """Relative agreement in the max norm: max|actual - expected| <= rtol * max|expected|.
    (Element-wise it cannot hold for float32 results: an element that is a sum of terms that
    nearly cancel keeps the terms' absolute float32 rounding, not the element's.)"""
    actual, expected = actual.detach().double(), expected.detach().double()
    assert actual.shape == expected.shape
    assert torch.isfinite(actual).all()
    error = float((actual - expected).abs().max())
    assert error <= rtol * float(expected.abs().max()), (error, float(expected.abs().max()))


def run_both(inputs, softplus, return_last_state=False, scan=selective_scan_fn):
    """(fast outputs, fast grads), (reference outputs, reference grads) for a random cotangent."""
    args = [inputs[k] for k in NAMES]
    ref_args = [None if x is None else x.detach().double().requires_grad_() for x in args]
    fast = scan(*args, delta_softplus=softplus, return_last_state=return_last_state)
    ref = selective_scan_ref(*ref_args, delta_softplus=softplus,
                             return_last_state=return_last_state)
    fast, ref = (fast, ref) if return_last_state else ((fast,), (ref,))
    weights = [torch.randn(r.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
               for r in ref]
    used = [i for i, x in enumerate(args) if x is not None]
    fast_grads = torch.autograd.grad(sum((f.double() * w).sum() for f, w in zip(fast, weights)),
                                     [args[i] for i in used])
    ref_grads = torch.autograd.grad(sum((r * w).sum() for r, w in zip(ref, weights)),
                                    [ref_args[i] for i in used])
    names = [NAMES[i] for i in used]
    return fast, dict(zip(names, fast_grads)), ref, dict(zip(names, ref_grads))


def check_all(inputs, softplus, return_last_state=False, rtol=1e-5, scan=selective_scan_fn):
    fast, fast_grads, ref, ref_grads = run_both(inputs, softplus, return_last_state, scan)
    for f, r in zip(fast, ref):
        assert f.dtype == torch.float32
        assert_matches(f, r, rtol)
    assert fast_grads.keys() == ref_grads.keys()
    for name, grad in fast_grads.items():
        assert grad.shape == inputs[name].shape and grad.dtype == torch.float32, name
        assert_matches(grad, ref_grads[name], rtol)


@pytest.mark.parametrize("dim, b_groups, c_groups", [
    (4, None, None), (4, 1, 1), (4, 2, None), (4, 4, 2),
    (12, 3, 2),  # channel blocks of 2: inside one B group (4 channels) and one C group (6)
    (130, None, None)])  # blocks of 26 channels, several per thread
def test_groups_forms_match_reference(dim, b_groups, c_groups):
    check_all(make_inputs(dim=dim, b_groups=b_groups, c_groups=c_groups, length=200),
              softplus=True, return_last_state=True)


@pytest.mark.parametrize("with_d, with_z, with_bias, softplus", [
    (False, False, False, False), (True, False, False, False), (False, True, False, True),
    (False, False, True, False), (False, False, True, True), (True, True, True, True)])
def test_options_match_reference(with_d, with_z, with_bias, softplus):
    inputs = make_inputs(with_d=with_d, with_z=with_z, with_bias=with_bias, seed=1,
                         delta_scale=0.5 if softplus else 0.0)
    if not softplus:  # without softplus the caller supplies positive step sizes
        inputs["delta"] = torch.rand(inputs["u"].shape).requires_grad_()
    check_all(inputs, softplus)


@pytest.mark.parametrize("length", [1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5])
def test_chunk_boundaries_with_last_state(length):
    """The backward pass restarts from stored chunk states: every boundary case, and the
    gradient that flows into last_state."""
    check_all(make_inputs(length=length, seed=length, b_groups=2), softplus=True,
              return_last_state=True)


def test_three_dim_b_equals_one_group():
    inputs = make_inputs(b_groups=None, c_groups=None, seed=3)
    args = [inputs[k] for k in NAMES]
    as_groups = list(args)
    as_groups[3], as_groups[4] = args[3].unsqueeze(1), args[4].unsqueeze(1)
    out_3d = selective_scan_fn(*args, delta_softplus=True)
    out_4d = selective_scan_fn(*as_groups, delta_softplus=True)
    assert torch.equal(out_3d, out_4d)


def test_long_sequence():
    inputs = make_inputs(batch=1, dim=2, n_state=4, length=20000, seed=4, with_z=False,
                         delta_scale=0.3)
    check_all(inputs, softplus=True, return_last_state=True)


@pytest.mark.parametrize("softplus", [False, True])
def test_extreme_step_sizes(softplus):
    """delta * |A| up to 1e4: decays underflow to exactly 0 and nothing becomes inf or NaN."""
    inputs = make_inputs(seed=5, a_scale=100.0, length=200)
    with torch.no_grad():
        inputs["delta"].copy_(torch.rand(inputs["u"].shape) * 100.0)
        inputs["A"].copy_(-torch.logspace(-2, 2, inputs["A"].numel()).reshape(inputs["A"].shape))
        inputs["delta"][:, :, ::7] = 1e-3  # mix in slow decays so that the state carries over
    check_all(inputs, softplus)


@pytest.mark.parametrize("detach", [False, True])
def test_inference_forward_equals_training_forward(detach, monkeypatch):
    """Under no_grad (leaf inputs or not) the kernel keeps neither step sizes nor chunk states,
    and gives the same outputs."""
    inputs = make_inputs(seed=11, length=3 * CHUNK + 5, b_groups=2)
    args = [inputs[k] for k in NAMES]
    trained = selective_scan_fn(*args, delta_softplus=True, return_last_state=True)
    kept = []
    forward = _scan_kernels.scan_forward

    def recording_forward(*kernel_args):
        kept.append(kernel_args[-1])  # for_backward
        return forward(*kernel_args)

    monkeypatch.setattr(_scan_kernels, "scan_forward", recording_forward)
    with torch.no_grad():
        inferred = selective_scan_fn(*(x.detach() if detach else x for x in args),
                                     delta_softplus=True, return_last_state=True)
    assert kept == [False]
    assert trained[0].requires_grad and not inferred[0].requires_grad
    assert all(torch.equal(a.detach(), b) for a, b in zip(trained, inferred))


def test_dtypes_follow_u():
    inputs = make_inputs(seed=6, with_z=False)
    args = [None if x is None else x.detach() for x in (inputs[k] for k in NAMES)]
    assert selective_scan_fn(*args).dtype == torch.float32
    out64, last64 = selective_scan_fn(*[None if x is None else x.double() for x in args],
                                      return_last_state=True)
    assert out64.dtype == last64.dtype == torch.float64


def test_bad_shapes_are_named():
    inputs = {k: None if v is None else v.detach() for k, v in make_inputs(seed=8).items()}
    with pytest.raises(ValueError, match="B must be"):
        selective_scan_fn(**{**inputs, "B": inputs["B"][:, :, :2]})  # wrong N
    with pytest.raises(ValueError, match="G dividing D"):
        selective_scan_fn(**{**inputs, "C": torch.zeros(2, 3, 3, 300)})  # 3 groups, D = 4
    with pytest.raises(ValueError, match="delta_bias"):
        selective_scan_fn(**{**inputs, "delta_bias": torch.zeros(5)})


def over_array(scalar):
    """A kernel's scalar function over an array, in a loop as the kernels call it (so that LLVM
    vectorises it as there)."""
    @njit
    def loop(x: np.ndarray) -> np.ndarray:
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = scalar(x[i])
        return out
    return loop


kernel_exp = over_array(_scan_kernels._exp)
kernel_expm1_f32 = over_array(_scan_kernels._expm1_f32)


def test_vectorised_exp_matches_libm():
    x = np.concatenate([np.linspace(-800.0, 720.0, 100001), -np.geomspace(1e-12, 1e4, 1000),
                        np.geomspace(1e-12, 700, 1000), [0.0]])
    out = kernel_exp(x)
    with np.errstate(over="ignore"):
        expected = np.exp(x)
    normal = np.isfinite(expected) & (expected > np.finfo(np.float64).tiny)
    assert np.max(np.abs(out[normal] / expected[normal] - 1.0)) < 1e-15
    assert np.array_equal(np.isinf(out), np.isinf(expected))
    tiny = (expected <= np.finfo(np.float64).tiny)  # subnormal results, down to exact zeros
    assert np.all(np.abs(out[tiny] - expected[tiny]) <= 2 * np.finfo(np.float64).smallest_subnormal)


def test_float32_expm1_is_accurate_relative_to_itself():
    """The decays' exp(x) - 1: relative to itself (what keeps slow channels exact), against
    float64 expm1, from the smallest leaks to full decay; clamped ends and NaN as documented."""
    x = np.concatenate([np.linspace(-100.0, 88.0, 200001), -np.geomspace(1e-30, 1e3, 20000),
                        np.geomspace(1e-30, 88.0, 2000)]).astype(np.float32)
    x = x[x != 0]
    out = kernel_expm1_f32(x)
    assert out.dtype == np.float32
    expected = np.expm1(x.astype(np.float64))
    relative = np.abs(out - expected) / np.abs(expected)
    assert relative[x <= 0].max() < 1.5e-7
    assert relative.max() < 4e-7
    ends = kernel_expm1_f32(np.array([-87.5, -1e4, -np.inf, 88.5, np.inf, np.nan], np.float32))
    assert np.array_equal(ends[:5], [-1.0, -1.0, -1.0, np.inf, np.inf]) and np.isnan(ends[5])


def test_vectorised_softplus_matches_log1p():
    x = np.concatenate([np.linspace(-800.0, 800.0, 100001), -np.geomspace(1e-12, 700, 1000),
                        np.geomspace(1e-12, 700, 1000), [0.0, np.nan]])
    out = np.empty_like(x)
    _scan_kernels._softplus_into(x, out)
    with np.errstate(invalid="ignore"):
        expected = np.logaddexp(0.0, x)  # correctly rounded, down to subnormal results
    normal = np.isfinite(expected) & (expected > np.finfo(np.float64).tiny)
    assert np.max(np.abs(out[normal] / expected[normal] - 1.0)) <= 2 * np.finfo(np.float64).eps
    tiny = expected <= np.finfo(np.float64).tiny
    assert np.all(np.abs(out[tiny] - expected[tiny]) <= 2 * np.finfo(np.float64).smallest_subnormal)
    assert np.isnan(out[-1])


def test_torch_thread_count_is_left_alone():
    """numba's OpenMP layer sets the process-wide OpenMP thread count; torch must keep its own."""
    inputs = make_inputs(seed=9, with_z=False)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        selective_scan_fn(*(inputs[k] for k in NAMES)).sum().backward()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


FIRST_SCAN = """
import torch
from fusion.scan import selective_scan_fn
print(torch.get_num_threads())
u = torch.randn(1, 4, 40, requires_grad=True)
selective_scan_fn(u, torch.randn(1, 4, 40), -torch.rand(4, 3), torch.randn(1, 3, 40),
                  torch.randn(1, 3, 40)).sum().backward()
print(torch.get_num_threads())
"""


def test_the_first_scan_of_a_process_leaves_torch_threads_alone():
    """A fresh process whose torch default (physical cores; OMP_NUM_THREADS here) is below numba's
    (logical CPUs): its first scan starts numba's pool, and torch must still compute on its own count
    after it, or a job's CPU results would differ from a process that had scanned before."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "2",
           "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))}
    out = subprocess.run([sys.executable, "-c", FIRST_SCAN], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1"], out.stderr[-2000:]


@pytest.mark.parametrize("given, spin", [({}, "100000"), ({"OMP_WAIT_POLICY": "PASSIVE"}, "None"),
                                         ({"GOMP_SPINCOUNT": "5"}, "5")])
def test_importing_fusion_sets_a_short_openmp_spin_unless_the_user_chose(given, spin):
    """libgomp reads its waiting once, when torch loads it: ``import fusion`` chooses a short spin
    (passive waiting made small networks 2x slower, bench/bench_omp_wait.py) and keeps a user's choice."""
    env = {k: v for k, v in os.environ.items() if k not in OPENMP_WAITING}
    env.update(given, PYTHONPATH=os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH")))))
    code = "import os, fusion; print(os.environ.get('GOMP_SPINCOUNT'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [spin]


def test_backward_twice_through_a_retained_graph():
    inputs = make_inputs(seed=10, with_z=False)
    out = selective_scan_fn(*(inputs[k] for k in NAMES), delta_softplus=True)
    first = torch.autograd.grad(out.sum(), inputs["B"], retain_graph=True)[0]
    second = torch.autograd.grad(out.sum(), inputs["B"])[0]
    assert torch.equal(first, second)


@pytest.mark.parametrize("n_orders, length, rank", [(1, 2 * CHUNK + 7, 0), (3, CHUNK + 5, 0),
                                                    (1, CHUNK + 3, 2), (3, 2 * CHUNK + 1, 3)])
def test_directional_scan_matches_reference(n_orders, length, rank):
    """K scans of one input in K orders (random permutations here), summed back by position:
    outputs and every gradient against the float64 reference on reordered copies. rank > 0:
    Delta given as its low-rank factors (delta_proj_weight), the reference multiplies them out."""
    g = torch.Generator().manual_seed(12 + rank)
    batch, dim, n_state = 2, 8, 3
    orders = np.stack([torch.randperm(length, generator=g).numpy() for _ in range(n_orders)])
    channels = n_orders * dim
    leaves = {
        "u": torch.randn(batch, dim, length, generator=g),
        "delta": torch.randn(batch, n_orders * rank if rank else channels, length, generator=g) * 0.5,
        "A": -torch.rand(channels, n_state, generator=g) * 2.0,
        "B": torch.randn(batch, n_orders, n_state, length, generator=g),
        "C": torch.randn(batch, n_orders, n_state, length, generator=g),
        "D": torch.randn(channels, generator=g),
        "delta_bias": torch.randn(channels, generator=g) * 0.5,
    }
    if rank:
        leaves["delta_proj_weight"] = torch.randn(channels, rank, generator=g) / rank ** 0.5
    leaves = {k: v.requires_grad_() for k, v in leaves.items()}
    refs = {k: v.detach().double().requires_grad_() for k, v in leaves.items()}
    scan_args = [v for k, v in leaves.items() if k != "delta_proj_weight"]
    out = directional_scan(*scan_args, True, orders, delta_proj_weight=leaves.get("delta_proj_weight"))
    expected = 0.0
    for k, order in enumerate(torch.from_numpy(orders)):
        rows = slice(k * dim, (k + 1) * dim)
        delta = (refs["delta_proj_weight"][rows] @ refs["delta"][:, k * rank:(k + 1) * rank] if rank
                 else refs["delta"][:, rows])
        steps = selective_scan_ref(refs["u"][..., order], delta[..., order],
                                   refs["A"][rows], refs["B"][:, k][..., order],
                                   refs["C"][:, k][..., order], refs["D"][rows],
                                   delta_bias=refs["delta_bias"][rows], delta_softplus=True)
        expected = expected + steps[..., torch.argsort(order)]  # back to position order
    expected = expected.transpose(1, 2)  # (batch, S, U), channels last
    assert_matches(out, expected)
    weights = torch.randn(expected.shape, generator=g, dtype=torch.float64)
    grads = torch.autograd.grad((out.double() * weights).sum(), list(leaves.values()))
    ref_grads = torch.autograd.grad((expected * weights).sum(), list(refs.values()))
    for name, grad, ref_grad in zip(leaves, grads, ref_grads):
        assert grad.dtype == torch.float32, name
        assert_matches(grad, ref_grad)


def test_directional_scan_names_a_bad_delta_proj_weight():
    u, orders = torch.randn(1, 4, 10), np.arange(10)[None]
    B = C = torch.randn(1, 1, 2, 10)
    with pytest.raises(ValueError, match=r"delta_proj_weight must be \(K\*U = 4, R\)"):
        directional_scan(u, torch.randn(1, 3, 10), -torch.ones(4, 2), B, C, None, None, True, orders,
                         delta_proj_weight=torch.randn(5, 3))
