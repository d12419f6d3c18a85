"""Which backend scans: mamba-ssm's compiled kernel importable (a fake that records its calls),
installed but broken (a fake that raises on load), absent, and CPU tensors. No GPU is needed: the
decision for CUDA tensors is asked of ``backend_for``, and mamba's glue runs on CPU tensors."""
from __future__ import annotations

import logging
import sys
import types

import pytest
import torch
from test_scan import NAMES, make_inputs

from fusion import _scan_mamba, scan


@pytest.fixture(autouse=True)
def fresh_dispatch(monkeypatch):
    """No cached import outcome, selection 'auto', zero counters; no real kernel module."""
    monkeypatch.delitem(sys.modules, _scan_mamba.MODULE, raising=False)
    monkeypatch.setattr(scan, "_selected", "auto")
    _scan_mamba.load_kernel.cache_clear()
    scan.reset_scan_calls()
    yield
    _scan_mamba.load_kernel.cache_clear()


def fake_kernel() -> types.ModuleType:
    """A stand-in for selective_scan_cuda with its fwd/bwd contract, computed by the float64
    reference; it records what it was given."""
    module = types.ModuleType(_scan_mamba.MODULE)
    module.calls = []

    def reference(u, delta, A, B, C, D, delta_bias, softplus):
        return scan.selective_scan_ref(u, delta, A, B, C, D, None, delta_bias, softplus, True)

    def fwd(u, delta, A, B, C, D, z, delta_bias, softplus):
        module.calls.append(("fwd", B.dim(), C.dim(), z, u.is_contiguous() and B.is_contiguous()))
        out, last = reference(u, delta, A, B, C, D, delta_bias, softplus)
        states = torch.zeros(*last.shape[:2], 1, 2 * last.shape[2], dtype=torch.float32)
        states[:, :, -1, 1::2] = last.float()  # mamba's layout: last state at odd entries
        return [out.to(u.dtype), states]

    def bwd(u, delta, A, B, C, D, z, delta_bias, dout, states, out, dz, softplus, recompute):
        module.calls.append(("bwd", dout.shape))
        leaves = [None if x is None else x.detach().double().requires_grad_()
                  for x in (u, delta, A, B, C, D, delta_bias)]
        with torch.enable_grad():  # backward runs with grad mode off
            out, _ = reference(*leaves, softplus)
        used = [x for x in leaves if x is not None]
        grads = iter(torch.autograd.grad(out, used, dout.double()))
        return [None if x is None else next(grads).float() for x in leaves]

    module.fwd, module.bwd = fwd, bwd
    return module


def write_module(tmp_path, monkeypatch, body: str) -> None:
    (tmp_path / f"{_scan_mamba.MODULE}.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))


def test_importable_kernel_scans_cuda_tensors(monkeypatch):
    kernel = fake_kernel()
    monkeypatch.setitem(sys.modules, _scan_mamba.MODULE, kernel)
    assert scan.backend_for("cuda") == "mamba"
    assert scan.backend_for("cpu") == "cpu"
    assert _scan_mamba.load_kernel().state == "loaded"


def test_mamba_glue_matches_reference(monkeypatch):
    """What fusion.scan hands mamba's kernel (4-D B and C, no z, contiguous) and how it maps the
    results back (3-D B's gradient, the gate, the last state from mamba's state layout)."""
    kernel = fake_kernel()
    monkeypatch.setitem(sys.modules, _scan_mamba.MODULE, kernel)
    inputs = make_inputs(dim=4, b_groups=None, c_groups=2, length=20, seed=3)
    args = [inputs[k] for k in NAMES]
    ref_args = [None if x is None else x.detach().double().requires_grad_() for x in args]
    out, last = scan._scan(scan._core_mamba, *args, True, True)
    ref_out, ref_last = scan.selective_scan_ref(*ref_args, delta_softplus=True, return_last_state=True)
    assert torch.allclose(out.double(), ref_out, atol=1e-6) and torch.allclose(last.double(), ref_last, atol=1e-6)
    grads = torch.autograd.grad(out.sum(), args[:5] + args[5:])
    ref_grads = torch.autograd.grad(ref_out.sum(), ref_args)
    for name, grad, ref in zip(NAMES, grads, ref_grads):
        assert grad.shape == ref.shape and torch.allclose(grad.double(), ref, atol=1e-5), name
    assert [call[0] for call in kernel.calls] == ["fwd", "bwd"]
    assert kernel.calls[0][1:] == (4, 4, None, True)


def test_mamba_cannot_drop_a_last_state_gradient(monkeypatch):
    monkeypatch.setitem(sys.modules, _scan_mamba.MODULE, fake_kernel())
    inputs = make_inputs(length=8, with_z=False)
    _, last = scan._scan(scan._core_mamba, *(inputs[k] for k in NAMES), True, True)
    with pytest.raises(NotImplementedError, match="last state"):
        last.sum().backward()


@pytest.mark.parametrize("body, error", [
    ("raise ImportError('libc10.so: undefined symbol: _ZN3c10')", "undefined symbol"),
    ("import torch_extension_that_is_not_there", "torch_extension_that_is_not_there"),
    ("raise OSError('CUDA driver version is insufficient')", "CUDA driver")])
def test_broken_kernel_is_an_error_naming_the_cause_and_the_way_out(tmp_path, monkeypatch, caplog,
                                                                     body, error):
    write_module(tmp_path, monkeypatch, body)
    with caplog.at_level(logging.WARNING, logger=_scan_mamba.__name__):
        for _ in range(2):
            with pytest.raises(scan.ScanBackendError, match=error) as raised:
                scan.backend_for("cuda")
            assert "'triton'" in str(raised.value)
    assert len(caplog.records) == 1  # the import is tried and logged once
    assert _scan_mamba.load_kernel().state == "broken"
    monkeypatch.setattr(scan, "_selected", "triton")  # the way out
    assert scan.backend_for("cuda") == "triton"


def test_absent_kernel_means_triton_on_cuda_and_an_error_when_asked_for(caplog):
    with caplog.at_level(logging.INFO, logger=_scan_mamba.__name__):
        assert scan.backend_for("cuda") == "triton"
        assert scan.backend_for("cuda") == "triton"
    assert len(caplog.records) == 1 and "not installed" in caplog.text
    scan.set_scan_backend("mamba")
    with pytest.raises(scan.ScanBackendError, match="not installed"):
        scan.backend_for("cuda")
    with pytest.raises(scan.ScanBackendError, match="cpu"):
        scan.backend_for("cpu")


def test_cpu_tensors_use_the_cpu_kernel_even_with_mamba_importable(monkeypatch):
    kernel = fake_kernel()
    monkeypatch.setitem(sys.modules, _scan_mamba.MODULE, kernel)
    inputs = make_inputs(length=12, with_z=False)
    scan.selective_scan_fn(*(inputs[k] for k in NAMES), delta_softplus=True)
    assert scan.scan_calls() == {"cpu": 1, "triton": 0, "mamba": 0}
    assert kernel.calls == []


def test_selection(monkeypatch):
    scan.set_scan_backend("cpu")
    assert scan.backend_for("cuda") == "cpu" and scan.scan_backend() == "cpu"
    with pytest.raises(scan.ScanBackendError, match="unknown scan backend 'gpu'"):
        scan.set_scan_backend("gpu")
    scan.set_scan_backend("triton")
    from fusion import _scan_triton

    monkeypatch.setattr(_scan_triton, "INTERPRETED", False)
    with pytest.raises(scan.ScanBackendError, match="TRITON_INTERPRET"):
        scan.backend_for("cpu")
    scan.set_scan_backend("auto")
    with pytest.raises(scan.ScanBackendError, match="'cpu' backend"):
        scan.backend_for("mps")


def test_one_grouped_scan_per_block():
    """SS2D and CMSA blocks scan their four directions in one call (the counters prove it)."""
    from fusion.s4fusion.cmsa import CMSABlock
    from fusion.s4fusion.ss2d import SS2D

    x = torch.randn(1, 5, 6, 8)
    with torch.no_grad():
        SS2D(8, d_state=4)(x)
        assert scan.scan_calls()["cpu"] == 1
        CMSABlock(8, d_state=4)(x, x)
    assert scan.scan_calls() == {"cpu": 2, "triton": 0, "mamba": 0}


def test_provenance_records_backend_kernel_and_tf32(monkeypatch):
    from fusion.provenance import numerics_provenance

    monkeypatch.setitem(sys.modules, _scan_mamba.MODULE, fake_kernel())
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    scan.set_scan_backend("cpu")
    state = numerics_provenance()
    assert state["scan_backend"] == "cpu" and state["mamba_kernel"] == "loaded"
    assert state["tf32_cudnn"] is False
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    assert numerics_provenance()["tf32_cudnn"] is True


def test_config_selects_the_backend_and_names_its_key():
    from pipelines.config import load_config
    from pipelines.devices import apply_scan_backend

    assert apply_scan_backend(load_config("sample", []), torch.device("cpu")) == "cpu"
    assert scan.scan_backend() == "auto"
    config = load_config("sample", ["fusion.scan_backend=mamba"])
    with pytest.raises(scan.ScanBackendError, match=r"fusion.scan_backend=mamba on cuda: .*not installed"):
        apply_scan_backend(config, torch.device("cuda"))
    assert scan.scan_backend() == "mamba"
