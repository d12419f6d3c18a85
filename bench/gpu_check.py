"""One command that checks the GPU path, prints one table and exits non-zero on any failure.

    python bench/gpu_check.py                  # a GPU (about 8 minutes on one H100/H200); no mamba-ssm needed
    python bench/gpu_check.py --device cpu     # dry run: Triton's interpreter, small sizes, GPU-only rows skipped
    python bench/gpu_check.py --compile-only   # no GPU needed: the Triton kernels compiled for sm_80 and sm_90

``--compile-only`` compiles the Triton scan kernels (fusion.scan_compile) at the block shapes the launch
rule picks for each of S4Fusion's scan sizes at --batch (default 1) and at the edge shapes, and prints
per shape and target ptxas's registers, spill bytes, shared memory and the programs per launch; it
writes bench/results/gpu_compile.json.

Rows:
  scan <backend>        every scan backend (cpu, triton, mamba) against the float64 reference and the
                        CPU kernel: outputs within 1e-4, gradients within 1e-3 (relative to the max);
                        the per-backend counters prove which backend ran
  scan speed <backend>  forward and forward+backward ms of the GPU backends and a PyTorch loop at
                        S4Fusion's largest cross scan
  s4fusion <backend>    S4Fusion on the GPU against the CPU, TF32 off (output within 1e-4)
  train <amp>           6 S4Fusion training steps in bf16 and in fp16: finite losses
  fuse <backend> b<N>   1024x768 fusion throughput at batch 1 and 8 per GPU backend (pairs/s)
  yolo 1 epoch          YOLOv5s, 1 epoch on the GPU (bf16); a counter of trainer devices proves cuda
  run-all sample        `run-all -c sample` for vi and s4fusion on the GPU; scan counters prove the GPU
                        backend, the trainer-device counter that YOLO trained on cuda
  ddp 2 processes       one DDP step of a small S4Fusion in 2 processes (nccl with 2 GPUs, else gloo);
                        gradients equal on both ranks

Writes bench/results/gpu_check.json.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "gpu_check.json"
OUT_TOL, GRAD_TOL, MODEL_TOL = 1e-4, 1e-3, 1e-4


class Skip(Exception):
    """A row that cannot run here (reason in the message)."""


Row = dict  # {"check", "status": pass | FAIL | skipped, "detail"}


def rel_error(actual, expected) -> float:
    actual, expected = actual.detach().double().cpu(), expected.detach().double().cpu()
    return float((actual - expected).abs().max()) / max(float(expected.abs().max()), 1e-30)


# ---------------------------------------------------------------- scans

def scan_inputs(device, small: bool):
    import torch

    g = torch.Generator().manual_seed(0)
    batch, groups, dim, n_state, length = (2, 2, 8, 5, 70) if small else (2, 4, 256, 16, 4096)

    def randn(*shape):
        return torch.randn(*shape, generator=g)

    inputs = [randn(batch, dim, length), randn(batch, dim, length) * 0.5,
              -torch.rand(dim, n_state, generator=g) * 2, randn(batch, groups, n_state, length),
              randn(batch, groups, n_state, length), randn(dim), randn(batch, dim, length),
              randn(dim) * 0.5]
    return [x.to(device).requires_grad_() for x in inputs]


def run_scan(fn, inputs, cotangent):
    import torch

    out, last = fn(*inputs, delta_softplus=True, return_last_state=True)
    # mamba-ssm's kernel has no gradient for the last state: it is compared forward only
    grads = torch.autograd.grad((out.double() * cotangent.to(out.device)).sum(), inputs)
    return out, last, grads


def check_scans(device, small: bool) -> list[Row]:
    import torch

    from fusion import _scan_mamba, scan

    inputs = scan_inputs(device, small)
    cotangent = torch.randn(inputs[0].shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref_inputs = [x.detach().cpu().double().requires_grad_() for x in inputs]
    reference = run_scan(scan.selective_scan_ref, ref_inputs, cotangent)
    cpu_inputs = [x.detach().cpu().requires_grad_() for x in inputs]
    scan.set_scan_backend("cpu")
    cpu_kernel = run_scan(scan.selective_scan_fn, cpu_inputs, cotangent)
    rows = []
    for backend in ("cpu", "triton", "mamba"):
        name = f"scan {backend}"
        if backend == "mamba":
            kernel = _scan_mamba.load_kernel()
            if kernel.state == "absent":
                rows.append(skipped(name, "mamba-ssm's selective_scan_cuda is not installed"))
                continue
            if device.type == "cpu":
                rows.append(skipped(name, "GPU only"))
                continue
        scan.set_scan_backend(backend)
        scan.reset_scan_calls()
        try:
            out, last, grads = run_scan(scan.selective_scan_fn, inputs, cotangent)
            counts = scan.scan_calls()
            errors = {"out": rel_error(out, reference[0]), "last": rel_error(last, reference[1]),
                      "grads": max(rel_error(g, r) for g, r in zip(grads, reference[2])),
                      "vs_cpu_out": rel_error(out, cpu_kernel[0]),
                      "vs_cpu_grads": max(rel_error(g, r) for g, r in zip(grads, cpu_kernel[2]))}
        except Exception as error:  # a broken install is a failure, with its message
            rows.append(failed(name, f"{type(error).__name__}: {error}"))
            continue
        ok = (max(errors["out"], errors["last"], errors["vs_cpu_out"]) <= OUT_TOL
              and max(errors["grads"], errors["vs_cpu_grads"]) <= GRAD_TOL
              and counts[backend] == 1 and sum(counts.values()) == 1)
        detail = ", ".join(f"{k} {v:.1e}" for k, v in errors.items()) + f"; calls {counts}"
        rows.append(row(name, ok, detail))
    scan.set_scan_backend("auto")
    return rows


def check_scan_speed(device, small: bool) -> list[Row]:
    """Forward and forward+backward milliseconds of each GPU backend and of a plain PyTorch loop
    (bench/bench_scan.py's baseline) at S4Fusion's largest cross scan (D 576, N 18, 2L 17,280)."""
    if device.type == "cpu":
        raise Skip("GPU only")
    import torch

    sys.path.insert(0, str(ROOT / "bench"))
    from bench_scan import layer_inputs, torch_loop_scan

    from fusion import scan

    inputs = {k: v.to(device) for k, v in layer_inputs(576, 4, 18, 17280).items()}

    def timed_ms(fn, backward: bool) -> float:
        leaves = {k: v.clone().requires_grad_(backward) for k, v in inputs.items()}
        fn(leaves, backward)  # warm-up: compilation, allocator
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn(leaves, backward)
        torch.cuda.synchronize()
        return 1000 * (time.perf_counter() - start)

    def backend_run(leaves, backward):
        with torch.set_grad_enabled(backward):
            out = scan.selective_scan_fn(leaves["u"], leaves["delta"], leaves["A"], leaves["B"], leaves["C"],
                                         leaves["D"], None, leaves["delta_bias"], delta_softplus=True)
            if backward:
                out.sum().backward()

    def loop_run(leaves, backward):  # the loop takes (batch, N, L) B and C: group 0's
        with torch.set_grad_enabled(backward):
            out = torch_loop_scan(leaves["u"], leaves["delta"], leaves["A"], leaves["B"][:, 0], leaves["C"][:, 0],
                                  leaves["D"], leaves["delta_bias"])
            if backward:
                out.sum().backward()

    rows = []
    for backend in gpu_backends():
        scan.set_scan_backend(backend)
        rows.append(row(f"scan speed {backend}", True, f"forward {timed_ms(backend_run, False):.1f} ms, "
                        f"forward+backward {timed_ms(backend_run, True):.1f} ms (D 576, N 18, L 17280)"))
    scan.set_scan_backend("auto")
    rows.append(row("scan speed pytorch loop", True, f"forward {timed_ms(loop_run, False):.0f} ms, "
                    f"forward+backward {timed_ms(loop_run, True):.0f} ms (same sizes, one group)"))
    return rows


# ---------------------------------------------------------------- S4Fusion

def gpu_backends() -> list[str]:
    from fusion import _scan_mamba

    return ["triton"] + (["mamba"] if _scan_mamba.load_kernel().state == "loaded" else [])


def small_model(seed: int = 0):
    import torch

    from fusion.learned.architecture import learned_method
    from fusion.s4fusion.model import S4Fusion

    torch.manual_seed(seed)
    return S4Fusion(learned_method("s4fusion").make_config(dims=(8, 16, 32)))


def check_s4fusion_vs_cpu(device, small: bool) -> list[Row]:
    import torch

    from fusion import scan

    if device.type == "cpu":
        raise Skip("GPU only")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    from fusion.learned.architecture import learned_method
    from fusion.s4fusion.model import S4Fusion

    torch.manual_seed(0)
    model = S4Fusion(learned_method("s4fusion").make_config()).eval()
    from fusion.s4fusion.geometry import next_valid_size

    ir, vi = torch.rand(2, 1, 1, next_valid_size(128), next_valid_size(160),
                        generator=torch.Generator().manual_seed(0))
    scan.set_scan_backend("cpu")
    with torch.inference_mode():
        expected = model(ir, vi)
    model = model.to(device)
    rows = []
    for backend in gpu_backends():
        scan.set_scan_backend(backend)
        scan.reset_scan_calls()
        with torch.inference_mode():
            got = model(ir.to(device), vi.to(device))
        error = float((got.cpu() - expected).abs().max())
        ran = scan.scan_calls()[backend] > 0 and scan.scan_calls()["cpu"] == 0
        rows.append(row(f"s4fusion {backend} vs cpu", error <= MODEL_TOL and ran,
                        f"max |gpu - cpu| {error:.1e} (TF32 off); calls {scan.scan_calls()}"))
    scan.set_scan_backend("auto")
    torch.backends.cudnn.allow_tf32 = True
    return rows


def check_training(device, small: bool) -> list[Row]:
    if device.type == "cpu":
        raise Skip("GPU only")
    import math

    import numpy as np
    import torch

    from fusion.learned.architecture import learned_method
    from fusion.learned.data import folder_pairs
    from fusion.learned.trainer import Trainer, TrainSettings
    from fusion.perception import build_resnet50
    from fusion.s4fusion.geometry import next_valid_size
    from fusionbench.images import write_image

    rows = []
    crop = next_valid_size(64)
    perception = build_resnet50(allow_random=True)[0]
    method = learned_method("s4fusion")
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("a", "b"):
            write_image(Path(tmp) / "ir" / f"{name}.png", np.zeros((crop, crop), np.uint8))
            write_image(Path(tmp) / "vi" / f"{name}.png", np.zeros((crop, crop, 3), np.uint8))
        for amp in ("bf16", "fp16"):
            settings = TrainSettings(batch_size=2, crop=crop, workers=0, amp=amp)
            trainer = Trainer(method.architecture, method.make_config(), method.make_loss(), folder_pairs(tmp), [],
                              Path(tmp) / amp, settings, method="s4fusion", perception=perception, device=device,
                              resume=False)
            g = torch.Generator().manual_seed(0)
            losses = []
            for _ in range(6):
                ir, vi = torch.rand(2, 2, 1, crop, crop, generator=g).to(device)
                losses.append(float(trainer.train_step(ir, vi)["total"]))
            ok = all(math.isfinite(v) for v in losses)
            rows.append(row(f"train 6 steps {amp}", ok, "losses " + " ".join(f"{v:.3g}" for v in losses)))
    return rows


def check_throughput(device, small: bool) -> list[Row]:
    import torch

    from fusion import scan
    from fusion.learned.architecture import learned_method
    from fusion.s4fusion.geometry import next_valid_size
    from fusion.s4fusion.model import S4Fusion

    if device.type == "cpu":
        raise Skip("GPU only")
    model = S4Fusion(learned_method("s4fusion").make_config()).to(device).eval()
    rows = []
    for backend in gpu_backends():
        scan.set_scan_backend(backend)
        for batch in (1, 8):
            # the size the inference API pads an M3FD pair to
            x = torch.rand(batch, 1, next_valid_size(768), next_valid_size(1024), device=device)
            with torch.inference_mode(), torch.autocast("cuda", torch.bfloat16):
                model(x, x)  # warm-up: kernel compilation
                torch.cuda.synchronize()
                start = time.perf_counter()
                for _ in range(3):
                    model(x, x)
                torch.cuda.synchronize()
            rate = 3 * batch / (time.perf_counter() - start)
            rows.append(row(f"fuse {backend} 1024x768 b{batch}", True, f"{rate:.2f} pairs/s (bf16 autocast)"))
    scan.set_scan_backend("auto")
    return rows


# ---------------------------------------------------------------- detection and the whole run

def trainer_devices():
    """Count ultralytics trainers by the device they set up on (a counter, not a log line)."""
    from ultralytics.engine.trainer import BaseTrainer

    counts = collections.Counter()
    setup = BaseTrainer._setup_train

    def counting_setup(self, *args, **kwargs):
        counts[self.device.type] += 1
        return setup(self, *args, **kwargs)

    BaseTrainer._setup_train = counting_setup
    return counts


def check_yolo(device, small: bool) -> list[Row]:
    if device.type == "cpu":
        raise Skip("GPU only")
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_detect import SOURCE, build_dataset

    from detection.yolo import write_data_yaml
    from fusionbench.ultralytics_offline import use_offline_ultralytics

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        use_offline_ultralytics(work / "ultralytics")
        from ultralytics import YOLO

        counts = trainer_devices()
        classes = build_dataset(SOURCE, work / "set", 64)
        for kind in ("images", "labels"):
            (work / "set" / kind / "test").mkdir()
        data_yaml = write_data_yaml(work / "data.yaml", work / "set", classes)
        start = time.perf_counter()
        YOLO("yolov5s.yaml").train(data=str(data_yaml), epochs=1, imgsz=320, batch=16, workers=4,
                                   device=0, amp="bf16", plots=False, project=str(work), name="run",
                                   exist_ok=True, verbose=False)
        return [row("yolo 1 epoch bf16", counts == {"cuda": 1},
                    f"{time.perf_counter() - start:.1f} s; trainers by device {dict(counts)}")]


def check_run_all(device, small: bool) -> list[Row]:
    if device.type == "cpu":
        raise Skip("GPU only (the sample run takes ~15 minutes on 2 CPU cores)")
    from fusion import scan
    from pipelines.config import load_config
    from pipelines.run_all import run_all

    with tempfile.TemporaryDirectory() as tmp:
        from fusionbench.ultralytics_offline import use_offline_ultralytics

        use_offline_ultralytics(Path(tmp) / "ultralytics")
        counts = trainer_devices()
        scan.reset_scan_calls()
        start = time.perf_counter()
        config = load_config("sample", [f"run.root={tmp}", "run.device=cuda", "fusion.methods=[vi, s4fusion]"])
        summary = run_all(config, progress=False)
        calls = scan.scan_calls()
        gpu_scans = calls["triton"] + calls["mamba"]
        ok = not summary.failures() and gpu_scans > 0 and calls["cpu"] == 0 and set(counts) == {"cuda"}
        failures = ", ".join(f"{s.stage} {s.method}" for s in summary.failures())
        return [row("run-all sample vi+s4fusion", ok,
                    f"{time.perf_counter() - start:.0f} s; scans {calls}; YOLO trainers {dict(counts)}"
                    + (f"; failed: {failures}" if failures else ""))]


# ---------------------------------------------------------------- DDP

def ddp_worker(rank: int, world: int, device_type: str, port: int, out: str) -> None:
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from fusion import scan

    cuda = device_type == "cuda"
    gpus = torch.cuda.device_count() if cuda else 0
    device = torch.device("cuda", rank % gpus) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)  # before the process group, so NCCL binds the right GPU
    dist.init_process_group("nccl" if gpus >= world else "gloo", init_method=f"tcp://127.0.0.1:{port}",
                            rank=rank, world_size=world)
    try:
        scan.set_scan_backend("auto")
        model = small_model().to(device)
        # some parameters get no gradient in a forward pass (both topologies): without
        # find_unused_parameters their buckets never reduce and the ranks' gradients differ
        ddp = DistributedDataParallel(model, device_ids=[device.index] if cuda else None,
                                      find_unused_parameters=True)
        g = torch.Generator().manual_seed(rank)  # different data on each rank
        ir, vi = torch.rand(2, 1, 1, 37, 37, generator=g).to(device)
        ddp(ir, vi).square().mean().backward()
        flat = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]).double()
        gathered = [torch.zeros_like(flat) for _ in range(world)]
        dist.all_gather(gathered, flat)
        spread = float(max((x - gathered[0]).abs().max() for x in gathered))
        Path(out, f"rank{rank}.json").write_text(json.dumps(
            {"spread": spread, "norm": float(flat.norm()), "calls": scan.scan_calls(),
             "backend": dist.get_backend()}))
    finally:
        dist.destroy_process_group()


def check_ddp(device, small: bool) -> list[Row]:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(ddp_worker, args=(2, device.type, port, tmp), nprocs=2, join=True)
        ranks = [json.loads(Path(tmp, f"rank{r}.json").read_text()) for r in range(2)]
    expected = "cpu" if device.type == "cpu" else None
    used = [{k for k, v in r["calls"].items() if v} for r in ranks]
    on_device = all(u == {expected} if expected else u and "cpu" not in u for u in used)
    ok = all(r["spread"] == 0.0 and r["norm"] > 0 for r in ranks) and on_device
    return [row("ddp 2 processes", ok, f"{ranks[0]['backend']}; grad spread across ranks "
                f"{max(r['spread'] for r in ranks):.1e}; scans {[r['calls'] for r in ranks]}")]


# ---------------------------------------------------------------- table

def row(check: str, ok: bool, detail: str) -> Row:
    return {"check": check, "status": "pass" if ok else "FAIL", "detail": detail}


def failed(check: str, detail: str) -> Row:
    return {"check": check, "status": "FAIL", "detail": detail}


def skipped(check: str, reason: str) -> Row:
    return {"check": check, "status": "skipped", "detail": reason}


CHECKS: list[tuple[str, Callable]] = [
    ("scan", check_scans), ("scan speed", check_scan_speed), ("s4fusion vs cpu", check_s4fusion_vs_cpu), ("train bf16/fp16", check_training),
    ("fuse 1024x768 b1/b8", check_throughput), ("yolo 1 epoch", check_yolo),
    ("run-all sample vi+s4fusion", check_run_all), ("ddp 2 processes", check_ddp),
]


def compile_report(n_batch: int, out: Path) -> int:
    """--compile-only: the resource table of every launched shape on sm_80 and sm_90."""
    from fusion import scan_compile

    per_size = scan_compile.launch_shapes(n_batch, scan_compile.s4fusion_scan_sizes())
    edges = scan_compile.edge_shapes()
    shapes = sorted({s for shapes in per_size.values() for s in shapes} | set(edges), key=str)
    start = time.perf_counter()
    reports = {(r.shape, r.capability): r for r in scan_compile.compile_all(shapes)}
    print(f"{'scan (D, groups, N)':>19}  {'kernel':<8} {'BLOCK_D':>7} {'BLOCK_N':>7} {'warps':>5} "
          f"{'programs':>8}  {'sm_80 regs/spill B/smem B':>25}  {'sm_90 regs/spill B/smem B':>25}")
    rows = [(str(size), shape, n_batch * size[0] // shape.block_d) for size, group in per_size.items()
            for shape in group] + [("edge", shape, None) for shape in edges]
    for label, shape, programs in rows:
        cells = [f"{r.registers:>5} / {r.spill_bytes:>4} / {r.shared_bytes:>6}"
                 for r in (reports[shape, c] for c in scan_compile.CAPABILITIES)]
        print(f"{label:>19}  {shape.kernel:<8} {shape.block_d:>7} {shape.block_n:>7} {shape.num_warps:>5} "
              f"{'' if programs is None else programs:>8}  {cells[0]:>25}  {cells[1]:>25}")
    print(f"{len(reports)} compilations in {time.perf_counter() - start:.0f} s (batch {n_batch}; "
          f"programs = batch x D / BLOCK_D)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"batch": n_batch, "rows": [
        {"scan": label, "programs": programs, **asdict(shape),
         **{f"sm_{c}": {k: v for k, v in asdict(reports[shape, c]).items() if k != "shape"}
            for c in scan_compile.CAPABILITIES}} for label, shape, programs in rows]}, indent=1))
    print(f"written {out}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda | cuda:N | cpu (a dry run)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--compile-only", action="store_true", help="no GPU: compile the Triton kernels, print resources")
    parser.add_argument("--batch", type=int, default=1, help="with --compile-only: the batch the launches are sized for")
    args = parser.parse_args()
    if args.compile_only:
        return compile_report(args.batch, RESULTS.with_name("gpu_compile.json") if args.out == RESULTS else args.out)
    if args.device == "cpu":  # read when triton is imported: before torch pulls it in
        os.environ["TRITON_INTERPRET"] = "1"
    os.environ.setdefault("YOLO_OFFLINE", "1")
    import torch

    from fusion.provenance import numerics_provenance, package_versions

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device: run with --device cpu for the dry run")
    rows: list[Row] = []
    for name, check in CHECKS:
        start = time.perf_counter()
        try:
            new = check(device, device.type == "cpu")
        except Skip as reason:
            new = [skipped(name, str(reason))]
        except Exception as error:  # every check reports, the table is always printed
            traceback.print_exc()
            new = [failed(name, f"{type(error).__name__}: {error}")]
        for r in new:
            r["seconds"] = round(time.perf_counter() - start, 1)
        rows += new
    width = max(len(r["check"]) for r in rows)
    print(f"\n{'check':<{width}}  {'status':<7}  {'s':>6}  detail")
    for r in rows:
        print(f"{r['check']:<{width}}  {r['status']:<7}  {r['seconds']:>6.1f}  {r['detail']}")
    report = {"device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "numerics": numerics_provenance(), "versions": package_versions(["torch", "triton", "mamba-ssm", "ultralytics"], "absent"),
              "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"written {args.out}")
    return 1 if any(r["status"] == "FAIL" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
