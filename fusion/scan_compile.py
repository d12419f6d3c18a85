"""Compile the Triton scan kernels for real GPU targets on a machine without a GPU.

``triton.compile(ASTSource(...), target=GPUTarget("cuda", capability, 32))`` runs Triton's whole
toolchain (front end, TTIR/TTGIR, LLVM, PTX and Triton's bundled ``ptxas``) without a driver, so a
kernel that would not compile on an A100 (sm_80) or an H100 (sm_90) fails here, and ptxas's
resource report (registers, spill bytes) is read from its ``-v`` log.

The kernels must be Triton ``JITFunction`` objects: in a process with ``TRITON_INTERPRET=1`` (the
tests') they are interpreted functions instead, so :func:`compile_in_subprocess` runs the compiler in
a child process without it.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from fusionbench.errors import FusionBenchError

KERNELS = ("forward", "backward")
CAPABILITIES = (80, 90)  # A100, H100/H200


class KernelCompileError(FusionBenchError):
    """A scan kernel failed to compile for a target; the message names kernel, shape and target."""


@dataclass(frozen=True)
class Shape:
    """One compiled variant: the launch parameters that change the generated code."""

    kernel: str  # forward | backward
    block_d: int
    block_n: int
    num_warps: int

    def __str__(self) -> str:
        return (f"{self.kernel} BLOCK_D={self.block_d} BLOCK_N={self.block_n} "
                f"num_warps={self.num_warps}")


@dataclass(frozen=True)
class Report:
    """ptxas's resource use of one variant on one target."""

    shape: Shape
    capability: int
    registers: int
    spill_bytes: int  # spill stores + spill loads
    shared_bytes: int
    seconds: float


def s4fusion_scan_sizes() -> list[tuple[int, int, int]]:
    """(channels, groups, N) of S4Fusion's grouped scans, both topologies: every DirectionalSSM
    scans its K directions' d_inner channels as K groups (the image size only sets the length)."""
    from fusion.s4fusion.model import S4Fusion, S4FusionConfig
    from fusion.s4fusion.ssm import DIRECTIONS, DirectionalSSM

    return sorted({(DIRECTIONS * m.d_inner, DIRECTIONS, m.d_state)
                   for topology in ("released", "paper")
                   for m in S4Fusion(S4FusionConfig(topology=topology)).modules()
                   if isinstance(m, DirectionalSSM)})


def launch_shapes(n_batch: int, sizes: list[tuple[int, int, int]]) -> dict[tuple[int, int, int], list[Shape]]:
    """The forward and backward variants fusion._scan_triton.launch_config picks for each
    (channels, groups, N) at batch ``n_batch``."""
    from fusion._scan_triton import launch_config

    return {size: [Shape(kernel, *launch_config(kernel, n_batch, size[0], size[1], size[1], size[2]))
                   for kernel in KERNELS] for size in sizes}


def edge_shapes() -> list[Shape]:
    """The smallest block (one channel, N <= 2) and the largest blocks the rule picks (a large
    batch), at N = 16 and at N = 64 (the largest state of mamba-ssm's examples), both kernels."""
    from fusion._scan_triton import launch_config

    return [Shape(kernel, *launch_config(kernel, n_batch, 64, 1, 1, n_state))
            for n_batch, n_state in ((1, 2), (64, 16), (64, 64)) for kernel in KERNELS
            if n_batch > 1 or n_state == 2]


def _signature(fn, constexprs: dict) -> dict[str, str]:
    """Triton types of a scan kernel's arguments: pointers float32, sizes int32."""
    return {name: "constexpr" if name in constexprs else "*fp32" if name.endswith("_ptr") else "i32"
            for name in fn.arg_names}


def _parse_ptxas(log: str) -> tuple[int, int]:
    registers = re.search(r"Used (\d+) registers", log)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    if registers is None or spills is None:
        raise KernelCompileError(f"no ptxas resource report in its log:\n{log}")
    return int(registers[1]), int(spills[1]) + int(spills[2])


def compile_shape(shape: Shape, capability: int, module=None) -> Report:
    """Compile one variant for ``sm_<capability>`` (in this process, which must not interpret
    Triton); ``module`` is the kernels' module (default fusion._scan_triton; tests pass a broken
    copy). The constexpr flags are S4Fusion's (D, delta_bias, softplus) and training's (the
    forward keeps its chunk states; the backward gets a last-state gradient): the largest code."""
    import triton
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    module = module or _load_module(None)
    if module.INTERPRETED:
        raise KernelCompileError("Triton interprets in this process (TRITON_INTERPRET=1): "
                                 "compile in a process without it (compile_in_subprocess)")
    fn = module._scan_forward_kernel if shape.kernel == "forward" else module._scan_backward_kernel
    flag = "STORE_STARTS" if shape.kernel == "forward" else "HAS_DLAST"
    constexprs = {"HAS_D": True, "HAS_BIAS": True, "SOFTPLUS": True, flag: True,
                  "BLOCK_D": shape.block_d, "BLOCK_N": shape.block_n, "BLOCK_L": module.BLOCK_L}
    source = ASTSource(fn=fn, signature=_signature(fn, constexprs), constexprs=constexprs)
    log = io.StringIO()
    start = time.perf_counter()
    try:
        with knobs.compilation.scope(), knobs.nvidia.scope(), contextlib.redirect_stdout(log):
            knobs.compilation.always_compile = True  # Triton's cache would skip ptxas and its report
            knobs.nvidia.dump_ptxas_log = True  # ptxas -v's report, printed by Triton
            compiled = triton.compile(source, target=GPUTarget("cuda", capability, 32),
                                      options={"num_warps": shape.num_warps})
    except Exception as error:
        raise KernelCompileError(f"{fn.__name__} ({shape}) does not compile for sm_{capability}: "
                                 f"{type(error).__name__}: {error}") from error
    registers, spills = _parse_ptxas(log.getvalue())
    return Report(shape, capability, registers, spills, compiled.metadata.shared,
                  time.perf_counter() - start)


def _load_module(module_file: str | None):
    if module_file is None:
        from fusion import _scan_triton

        return _scan_triton
    spec = importlib.util.spec_from_file_location(Path(module_file).stem, module_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _compile_job(job: tuple[Shape, int, str | None]) -> Report | str:
    shape, capability, module_file = job
    try:
        return compile_shape(shape, capability, _load_module(module_file))
    except KernelCompileError as error:
        return str(error)


def compile_all(shapes: list[Shape], capabilities=CAPABILITIES, workers: int | None = None,
                module_file: str | None = None) -> list[Report]:
    """Every shape on every target, in ``workers`` processes (default: one per CPU); raises one
    KernelCompileError listing every variant that failed."""
    jobs = [(shape, capability, module_file) for shape in shapes for capability in capabilities]
    workers = workers or min(len(jobs), os.cpu_count() or 1)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(_compile_job, jobs))
    else:
        results = [_compile_job(job) for job in jobs]
    errors = [r for r in results if isinstance(r, str)]
    if errors:
        raise KernelCompileError("\n".join(errors))
    return results


def compile_in_subprocess(shapes: list[Shape], capabilities=CAPABILITIES,
                          module_file: str | None = None) -> list[Report]:
    """:func:`compile_all` in a child process without TRITON_INTERPRET (usable from the tests);
    ``module_file``: the kernels' module as a file (default fusion._scan_triton)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    request = json.dumps({"shapes": [asdict(s) for s in shapes], "capabilities": list(capabilities),
                          "module_file": module_file})
    done = subprocess.run([sys.executable, "-m", "fusion.scan_compile"], input=request, env=env,
                          capture_output=True, text=True)
    if done.returncode:
        raise KernelCompileError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else
                                 f"the compiler process failed with exit status {done.returncode}")
    return [Report(Shape(**r.pop("shape")), **r) for r in json.loads(done.stdout)]


def _main() -> None:
    """Child of :func:`compile_in_subprocess`: a JSON request on stdin, reports on stdout; a
    compile error is the last line of stderr."""
    request = json.loads(sys.stdin.read())
    try:
        reports = compile_all([Shape(**s) for s in request["shapes"]], request["capabilities"],
                              module_file=request["module_file"])
    except KernelCompileError as error:
        sys.exit(" | ".join(str(error).splitlines()))
    print(json.dumps([asdict(r) for r in reports]))


if __name__ == "__main__":
    _main()
