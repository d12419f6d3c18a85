"""S4Fusion: fusion time and peak memory per image pair, parameter counts, FLOPs.

Timing: the released topology with random weights fuses one random IR/VI pair through the public
API (S4FusionFuser: padding, model, colour) on --device (default cpu; on CUDA mamba-ssm's kernel
runs where it is installed, and the GPU memory torch allocated is reported too), with torch and
numba limited to --threads threads (default 2) and the OpenMP waiting of ``fusion/__init__.py``
(unless set), one fresh process per size so that the peak RSS (ru_maxrss) belongs to that size alone.
Wall and CPU (process) seconds of the fastest of --repeats fusions are both reported: on a
shared machine the wall time grows with the load average, which is recorded too. The scan
kernels are compiled (or loaded from numba's cache) on a 49x61 pair before the clock starts.

Parameters: every method name (both decoder topologies) in total and in the fusion layers.

FLOPs at 480x640 (padded to 481x649), in both topologies:
* dense: torch.utils.flop_counter over one forward pass (matmuls, convolutions, einsums; 2 FLOPs
  per multiply-add; elementwise ops are not counted, as usual);
* scan: analytic, since the scan runs outside torch. Per scan call with u (B, D, L) and N states:
  9 * B * D * L * N (exp(dt A), dt B u, the state update and C h, mamba-ssm's own estimate)
  + 2 * B * D * L (the D skip term); summed over every call the forward pass makes.
The released forward skips the finest-scale fusion layer (its output is never read); the paper
topology runs it, so the two differ by that layer's cost.

``--before REV``: the same fusion by the code at git revision REV (``fusion`` and ``fusionbench`` from
``git archive REV``) in the same run, the two alternating in fresh processes --rounds times (a slow
spell of a shared machine then hits both alike); the fused images are compared (max |after - before|).

    python bench/bench_model.py                     # both sizes, 2 threads
    python bench/bench_model.py --sizes 480x640
    python bench/bench_model.py --sizes 480x640 --before 413e273   # against an earlier revision
    python bench/bench_model.py --device cuda       # a GPU (then bench/protocol_time.py uses it)

Writes bench/results/model.json.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fusion  # noqa: F401 - sets the OpenMP waiting (fusion/__init__.py) the child processes inherit

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "model.json"


def child(height: int, width: int, threads: int, flops: bool, device: str, repeats: int,
          save: str | None = None) -> dict:
    """Runs in a fresh process: time the fusion (best of ``repeats``, and optionally count FLOPs)
    at height x width; ``save``: write the fused image there (.npy)."""
    import numpy as np
    import torch

    from fusion.learned.inference import LearnedFuser
    from fusion.s4fusion.architecture import S4FUSION
    from fusion.s4fusion.geometry import pad_to_valid
    from fusion.s4fusion.model import S4Fusion, S4FusionConfig

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    fuser = LearnedFuser(S4Fusion(), S4FUSION, S4FusionConfig(), device=device)
    rng = np.random.default_rng(0)
    ir = rng.random((height, width), dtype=np.float32)
    vi = rng.random((height, width, 3), dtype=np.float32)
    fuser(ir[:49, :61], vi[:49, :61])  # compile / load the numba kernels, start CUDA
    runs = []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        out = fuser(ir, vi)  # a numpy image: the device has finished
        runs.append((time.perf_counter() - wall, time.process_time() - cpu))
    wall_s, cpu_s = min(runs)
    if save:
        np.save(save, out)
    result = {"size": f"{height}x{width}", "wall_s": wall_s, "cpu_s": cpu_s, "repeats": repeats,
              "openmp_waiting": {name: os.environ.get(name) for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")},
              "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "out_shape": list(out.shape),
              "padded": "x".join(str(s) for s in pad_to_valid(torch.zeros(1, 1, height, width))[0].shape[-2:])}
    if fuser.device.type == "cuda":
        result["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 2**30
    if flops:
        x = pad_to_valid(torch.from_numpy(ir)[None, None])[0]
        result["flops"] = {topology: count_flops(S4Fusion(S4FusionConfig(topology=topology)), x)
                           for topology in ("released", "paper")}
    return result


def export_revision(revision: str, tree: Path) -> Path:
    """``fusion`` and ``fusionbench`` at git ``revision``, extracted into ``tree``."""
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "fusion", "fusionbench"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def run_child(args, env: dict, tree: Path | None, height: int, width: int, flops: str, save: Path) -> dict:
    """One :func:`child` in a fresh process, importing ``fusion`` from ``tree`` (None: this checkout)."""
    child_env = {**env, "PYTHONPATH": str(tree or ROOT)}
    run = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--device", args.device,
                          "--repeats", str(args.repeats), "--child", f"{height},{width},{flops}",
                          "--save", str(save)], env=child_env, capture_output=True, text=True, cwd=ROOT)
    if run.returncode:
        raise SystemExit(f"benchmark at {height}x{width} ({tree or 'this tree'}) failed:\n{run.stderr}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def count_flops(model, x) -> dict:
    """Dense FLOPs of one forward pass by torch's counter; scan FLOPs from the shapes of every scan
    call: selective_scan_fn (GPU backends) and directional_scan (CPU, K scans per call, and the dt
    projection that its kernel computes, which torch's counter then does not see)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import fusion.s4fusion.ssm as ssm

    calls, projection_flops = [], []
    scan, directional = ssm.selective_scan_fn, ssm.directional_scan

    def counting_scan(u, delta, A, *args, **kwargs):
        calls.append((u.shape[0], u.shape[1], u.shape[2], A.shape[1]))
        return scan(u, delta, A, *args, **kwargs)

    def counting_directional(u, delta, A, *args, delta_proj_weight=None, **kwargs):
        calls.append((u.shape[0], A.shape[0], u.shape[2], A.shape[1]))  # A: (K*U, N)
        if delta_proj_weight is not None:
            projection_flops.append(2 * u.shape[0] * delta_proj_weight.numel() * u.shape[2])
        return directional(u, delta, A, *args, delta_proj_weight=delta_proj_weight, **kwargs)

    ssm.selective_scan_fn, ssm.directional_scan = counting_scan, counting_directional
    counter = FlopCounterMode(display=False)
    try:
        with torch.inference_mode(), counter:
            model.eval()(x, x)
    finally:
        ssm.selective_scan_fn, ssm.directional_scan = scan, directional
    scan_flops = sum(9 * b * d * length * n + 2 * b * d * length for b, d, length, n in calls)
    return {"dense_gflops": (counter.get_total_flops() + sum(projection_flops)) / 1e9,
            "scan_gflops": scan_flops / 1e9, "scan_calls": len(calls)}


def parameter_counts() -> dict:
    from fusion.learned.architecture import learned_methods
    from fusion.s4fusion.model import S4Fusion

    counts = {}
    for topology in ("released", "paper"):
        for name, method in learned_methods().items():
            if method.arch != "s4fusion":
                continue
            model = S4Fusion(method.make_config(topology=topology))
            counts[f"{name}/{topology}"] = {
                "total": sum(p.numel() for p in model.parameters()),
                "fusion_layers": sum(p.numel() for p in model.fusion_layers.parameters()),
            }
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="480x640,1024x768", help="comma-separated HxW")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--repeats", type=int, default=3, help="fusions per size; the fastest counts")
    parser.add_argument("--before", help="git revision whose fusion is timed too, alternating with this tree's")
    parser.add_argument("--rounds", type=int, default=1, help="with --before: alternations of the two")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        height, width, flops = args.child.split(",")
        print(json.dumps(child(int(height), int(width), args.threads, flops == "1", args.device,
                               args.repeats, args.save)))
        return

    env = dict(os.environ, NUMBA_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"after": None}
        if args.before:
            trees["before"] = export_revision(args.before, Path(tmp) / "before")
        timings, before = [], []
        for size in args.sizes.split(","):
            height, width = (int(v) for v in size.lower().split("x"))
            flops = "1" if (height, width) == (480, 640) and not args.before else "0"
            best: dict[str, dict] = {}
            for _ in range(args.rounds if args.before else 1):
                for name, tree in trees.items():
                    t = run_child(args, env, tree, height, width, flops, Path(tmp) / f"{name}.npy")
                    if name not in best or t["wall_s"] < best[name]["wall_s"]:
                        best[name] = t
            t = best["after"]
            timings.append(t)
            print(f"{t['size']:>9} (padded {t['padded']}): {t['wall_s']:6.2f} s wall, {t['cpu_s']:6.2f} s CPU, "
                  f"peak RSS {t['peak_rss_gb']:.2f} GiB"
                  + (f", peak GPU {t['peak_gpu_gb']:.2f} GiB" if "peak_gpu_gb" in t else ""), flush=True)
            if args.before:
                import numpy as np

                b = best["before"]
                b["max_abs_diff_after_before"] = float(np.abs(
                    np.load(Path(tmp) / "after.npy").astype(np.float64) - np.load(Path(tmp) / "before.npy")).max())
                before.append(b)
                print(f"{'before':>9} ({args.before}): {b['wall_s']:6.2f} s wall, {b['cpu_s']:6.2f} s CPU, "
                      f"peak RSS {b['peak_rss_gb']:.2f} GiB; x{b['wall_s'] / t['wall_s']:.2f} wall, "
                      f"x{b['cpu_s'] / t['cpu_s']:.2f} CPU; max |after - before| "
                      f"{b['max_abs_diff_after_before']:.1e} (grey levels of the uint8 fused image)", flush=True)
            for topology, f in t.get("flops", {}).items():
                print(f"          FLOPs ({topology} topology): dense {f['dense_gflops']:.2f} G, scan {f['scan_gflops']:.2f} G "
                      f"({f['scan_calls']} scan calls)")
    params = parameter_counts()
    for name, c in params.items():
        print(f"{name:>28}: {c['total']:>9,} parameters ({c['fusion_layers']:>9,} in the fusion layers)")
    result = {"device": args.device, "threads": args.threads, "load_average": os.getloadavg(), "timings": timings, "parameters": params,
              "scan_flops_formula": "sum over scan calls of 9*B*D*L*N + 2*B*D*L",
              "before": {"revision": args.before, "rounds": args.rounds, "timings": before} if args.before else None}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
