"""The Triton scan kernels compiled for real GPUs (sm_80, sm_90) by Triton's own toolchain, without a
GPU: the block shapes the launch rule picks for S4Fusion's layers and the edge cases, and a broken
kernel failing with its name, shape and target. The compiler runs in a child process (the tests
interpret Triton: conftest.py sets TRITON_INTERPRET=1)."""
from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("triton")

from fusion import scan_compile  # noqa: E402
from fusion.scan_compile import KernelCompileError, Shape  # noqa: E402


@pytest.fixture(scope="module")
def kernels():
    from fusion import _scan_triton

    return _scan_triton


@pytest.fixture(scope="module")
def s4fusion_sizes():
    return scan_compile.s4fusion_scan_sizes()


def test_launch_rule_fills_a_large_gpu_within_the_tile_budget(kernels, s4fusion_sizes):
    """At batch 1 every S4Fusion layer launches at least MIN_PROGRAMS programs (an H100 has 132
    SMs); with a training batch the blocks grow back to the largest tile; no block straddles a
    group or exceeds its kernel's tile."""
    for n_batch in (1, 2, 20):
        for (n_dim, groups, n_state), shapes in scan_compile.launch_shapes(n_batch, s4fusion_sizes).items():
            for shape in shapes:
                tile = shape.block_d * shape.block_n * kernels.BLOCK_L
                assert tile <= kernels.TILES[shape.kernel] and (n_dim // groups) % shape.block_d == 0
                largest = shape.block_d == kernels.TILES[shape.kernel] // (shape.block_n * kernels.BLOCK_L)
                assert n_batch * n_dim // shape.block_d >= kernels.MIN_PROGRAMS or shape.block_d == 1
                assert largest or n_batch * n_dim // (2 * shape.block_d) < kernels.MIN_PROGRAMS
    assert kernels.launch_config("forward", 1, 288, 4, 4, 12) == (1, 16, kernels.NUM_WARPS)
    assert kernels.launch_config("forward", 20, 288, 4, 4, 12) == (8, 16, kernels.NUM_WARPS)
    assert kernels.launch_config("backward", 20, 288, 4, 4, 12) == (2, 16, kernels.NUM_WARPS)
    assert kernels.launch_config("backward", 20, 288, 4, 4, 64) == (1, 64, 2 * kernels.NUM_WARPS)
    assert kernels.launch_config("forward", 20, 72 * 4, 4, 4, 3)[0] == 8  # 72 channels per group


def test_kernels_compile_for_sm80_and_sm90_without_spills(s4fusion_sizes):
    """Both kernels at every shape S4Fusion's layers launch at batch 1, and the smallest and
    largest blocks, through Triton's whole toolchain and its ptxas, for A100 and H100."""
    shapes = sorted({s for shapes in scan_compile.launch_shapes(1, s4fusion_sizes).values() for s in shapes}
                    | set(scan_compile.edge_shapes()), key=str)
    reports = scan_compile.compile_in_subprocess(shapes)
    assert {(r.shape, r.capability) for r in reports} == {(s, c) for s in shapes for c in (80, 90)}
    assert all(0 < r.registers <= 255 for r in reports)
    assert [r for r in reports if r.spill_bytes] == []


def test_a_broken_kernel_fails_naming_kernel_shape_and_target(kernels, tmp_path: Path):
    source = Path(kernels.__file__).read_text()
    bug = "y = tl.sum(states * c_tile[None, :, :], 1)"
    assert bug in source
    broken = tmp_path / "broken_scan_triton.py"
    broken.write_text(source.replace(bug, bug.replace(", 1)", ", 3)")))  # no axis 3: a compile error
    shape = Shape("forward", 2, 16, kernels.NUM_WARPS)
    with pytest.raises(KernelCompileError) as error:
        scan_compile.compile_in_subprocess([shape], (90,), module_file=str(broken))
    message = str(error.value)
    assert "_scan_forward_kernel" in message and str(shape) in message and "sm_90" in message
