"""The Triton selective scan in Triton's interpreter on CPU tensors, against the float64 reference:
outputs, last state and every gradient, with groups, z, D, delta_bias/softplus and chunk edges.

Triton decides whether it interprets when triton and each kernel are defined: conftest.py sets
TRITON_INTERPRET=1 before anything imports triton. The interpreter runs each program in numpy:
sizes stay tiny."""
from __future__ import annotations

import pytest
import torch
from test_scan import NAMES, check_all, make_inputs

from fusion import scan

pytest.importorskip("triton")


@pytest.fixture(scope="module")
def interpreted_kernels():
    from fusion import _scan_triton

    assert _scan_triton.INTERPRETED, "TRITON_INTERPRET=1 must be set before triton is imported"
    return _scan_triton


def check_triton(inputs, softplus=True, return_last_state=True):
    check_all(inputs, softplus, return_last_state, rtol=1e-5, scan=scan.triton_selective_scan_fn)


@pytest.mark.parametrize("dim, b_groups, c_groups", [
    (4, None, None),  # (batch, N, L) form
    (8, 2, 4),  # different B and C groups
    (6, 3, None),  # group size 2, dim not a power of two
    (5, None, None)])  # odd channel count: programs of 1 channel
def test_groups_match_reference(interpreted_kernels, dim, b_groups, c_groups):
    check_triton(make_inputs(dim=dim, b_groups=b_groups, c_groups=c_groups, length=40, seed=dim))


BLOCK_SHAPES = [(n_state, block_d) for n_state, block_n in ((12, 16), (18, 32)) for block_d in (1, 2, 4, 8)
                if block_d * block_n * 32 <= 4096]  # every (BLOCK_N, BLOCK_D) within the forward's tile


@pytest.mark.parametrize("n_state, block_d", BLOCK_SHAPES)
def test_every_block_shape_the_launch_rule_can_pick(interpreted_kernels, monkeypatch, n_state, block_d):
    """Groups of block_d channels, the minimum program count off (these grids are tiny): the rule
    launches the forward at block_d and the backward at block_d or its own tile's limit, S4Fusion's
    N = 12 and 18 (BLOCK_N 16 and 32); each against the float64 reference."""
    assert interpreted_kernels.TILES["forward"] == 4096
    monkeypatch.setattr(interpreted_kernels, "MIN_PROGRAMS", 0)
    picked = []
    rule = interpreted_kernels.launch_config

    def recording_rule(kernel, *sizes):
        picked.append((kernel, *rule(kernel, *sizes)[:2]))
        return picked[-1][1:] + (interpreted_kernels.NUM_WARPS,)

    monkeypatch.setattr(interpreted_kernels, "launch_config", recording_rule)
    check_triton(make_inputs(dim=2 * block_d, b_groups=2, c_groups=2, n_state=n_state, length=35,
                             seed=block_d))
    block_n = 16 if n_state == 12 else 32
    backward_d = min(block_d, interpreted_kernels.TILES["backward"] // (block_n * 32))
    assert picked == [("forward", block_d, block_n), ("backward", backward_d, block_n)]


@pytest.mark.parametrize("with_d, with_z, with_bias, softplus", [
    (False, False, False, False), (True, True, False, False), (False, True, True, True),
    (True, False, True, True)])
def test_options_match_reference(with_d, with_z, with_bias, softplus):
    inputs = make_inputs(with_d=with_d, with_z=with_z, with_bias=with_bias, seed=1, length=37,
                         delta_scale=0.5 if softplus else 0.0)
    if not softplus:  # without softplus the caller supplies positive step sizes
        inputs["delta"] = torch.rand(inputs["u"].shape).requires_grad_()
    check_triton(inputs, softplus, return_last_state=False)


@pytest.mark.parametrize("length", [1, 31, 32, 33, 97])
def test_chunk_edges_with_last_state(interpreted_kernels, length):
    """The chunk carry forward and the adjoint's carry backward, at every edge of BLOCK_L."""
    assert interpreted_kernels.BLOCK_L == 32
    check_triton(make_inputs(length=length, seed=length, b_groups=2, n_state=5))


def test_gradient_of_the_last_state_alone():
    """A loss on last_state only: the adjoint enters at the sequence's end, dy is zero."""
    inputs = make_inputs(length=45, seed=8, with_z=False)
    args = [inputs[k] for k in NAMES]
    ref_args = [None if x is None else x.detach().double().requires_grad_() for x in args]
    _, last = scan.triton_selective_scan_fn(*args, delta_softplus=True, return_last_state=True)
    _, ref_last = scan.selective_scan_ref(*ref_args, delta_softplus=True, return_last_state=True)
    used = [i for i, x in enumerate(args) if x is not None and NAMES[i] not in ("C", "D")]
    grads = torch.autograd.grad(last.double().square().sum(), [args[i] for i in used])
    ref_grads = torch.autograd.grad(ref_last.square().sum(), [ref_args[i] for i in used])
    for grad, ref in zip(grads, ref_grads):
        assert float((grad.double() - ref).abs().max()) <= 1e-5 * float(ref.abs().max())


def test_extreme_step_sizes():
    """Step sizes from 1e-9 to 60: softplus keeps tiny values, decays underflow to 0, no NaN."""
    inputs = make_inputs(seed=5, a_scale=100.0, length=40)
    with torch.no_grad():
        inputs["delta"].copy_(torch.linspace(-20.0, 60.0, inputs["u"].numel()).reshape(inputs["u"].shape))
    check_triton(inputs)


def test_no_grad_forward_equals_training_forward(monkeypatch, interpreted_kernels):
    inputs = make_inputs(seed=11, length=70, b_groups=2)
    args = [inputs[k] for k in NAMES]
    trained = scan.triton_selective_scan_fn(*args, delta_softplus=True, return_last_state=True)
    kept = []
    forward = interpreted_kernels.scan_forward

    def recording_forward(*kernel_args):
        kept.append(kernel_args[-1])  # for_backward
        return forward(*kernel_args)

    monkeypatch.setattr(interpreted_kernels, "scan_forward", recording_forward)
    with torch.no_grad():
        inferred = scan.triton_selective_scan_fn(*args, delta_softplus=True, return_last_state=True)
    assert kept == [False]
    assert all(torch.equal(a.detach(), b) for a, b in zip(trained, inferred))


def test_counted_and_selectable(monkeypatch):
    """Selected explicitly, CPU tensors scan in the interpreter and count as 'triton'."""
    monkeypatch.setattr(scan, "_selected", "triton")
    scan.reset_scan_calls()
    inputs = make_inputs(seed=2, length=9, with_z=False)
    out = scan.selective_scan_fn(*(inputs[k] for k in NAMES), delta_softplus=True)
    ref = scan.selective_scan_ref(*(None if inputs[k] is None else inputs[k].detach() for k in NAMES),
                                  delta_softplus=True)
    assert scan.scan_calls() == {"cpu": 0, "triton": 1, "mamba": 0}
    assert float((out.detach().double() - ref.double()).abs().max()) <= 1e-5 * float(ref.abs().max())
