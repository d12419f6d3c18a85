"""Selective scan on the CPU: fusion.scan (numba) against a plain PyTorch loop, same run, same inputs.

Shapes are S4Fusion's cross scan: batch 1, D = 288 channels, N = 18 states, interleaved sequence
length 2L = 8,192 ... 131,072, with D, delta_bias and softplus, B and C shared by all channels.
For each length: forward (under no_grad) and forward+backward, wall-clock and CPU seconds, and
peak resident memory above the level before the call (Linux VmHWM, reset through
/proc/self/clear_refs). Times are the best of --repeats rounds, each round over every length and
both contenders (so that a slow spell of a shared machine hits them all alike); the slow baseline
runs in the first round only where its repeats would take longer than --baseline-limit. numba uses all its
threads; torch is held to one thread (the baseline's tensors are tiny, and fusion.scan's few
element-wise torch ops are cheap), which avoids thread-barrier stalls on a shared machine.

The baseline loop is only run where its predicted time (from the per-token rate at the previous
length) stays under --baseline-limit seconds and its predicted memory under half the available
RAM; beyond that its numbers are linear extrapolations of its first-round rate at the largest
measured length, marked "extrapolated" in the table and JSON.
numba's one-time cost is measured in child processes: a cold compile (empty cache directory) and
a warm start (loading that cache), both for a tiny forward+backward.

    python bench/bench_scan.py
    python bench/bench_scan.py --lengths 8192 32768 --repeats 1

``--before REV [REV ...]`` instead times, for this checkout and for ``fusion`` at each git
revision, S4Fusion's scans at 480x640, forward and forward+backward, at two levels: 'layer' (each
scan as its SS2D or CMSA module runs it, the reorderings of the four directions included) and
'kernel' (one grouped selective_scan_fn call of already reordered sequences); and one S4Fusion
480x640 fusion (bench_model.py's measurement). Fresh processes alternate --repeats times (the
best counts) with --threads numba and torch threads; outputs, gradients and fused images are
compared with the last revision's. Writes bench/results/scan_before.json.

    python bench/bench_scan.py --before 413e273 ac19e80 --repeats 2
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import fusion  # OpenMP waiting (fusion/__init__.py), read once, before torch loads

# isort: split
import numba
import numpy as np
import torch
import torch.nn.functional as F

from fusion.scan import selective_scan_fn
from fusionbench.files import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
DIM, N_STATE = 288, 18
LENGTHS = (8192, 16384, 32768, 65536, 131072)
NAMES = ("u", "delta", "A", "B", "C", "D", "delta_bias")
LIBC = ctypes.CDLL("libc.so.6")


def torch_loop_scan(u, delta, A, B, C, D, delta_bias):
    """The baseline to beat: one step of the recurrence per iteration, float32, plain autograd.
    B, C: (batch, N, L). Steps are taken with unbind so that backward stays linear in L."""
    dt = F.softplus(delta + delta_bias[:, None])
    h = u.new_zeros(u.shape[0], A.shape[0], A.shape[1])
    ys = []
    for dt_t, u_t, B_t, C_t in zip(dt.unbind(-1), u.unbind(-1), B.unbind(-1), C.unbind(-1)):
        h = torch.exp(dt_t[..., None] * A) * h + (dt_t * u_t)[..., None] * B_t[:, None, :]
        ys.append((h * C_t[:, None, :]).sum(-1))
    return torch.stack(ys, dim=-1) + D[:, None] * u


def numba_scan(u, delta, A, B, C, D, delta_bias):
    return selective_scan_fn(u, delta, A, B, C, D, None, delta_bias, delta_softplus=True)


def make_inputs(length: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Mamba-style initialisation: A = -(1..N), dt = softplus(delta + bias) around 1e-3 .. 1e-1."""
    g = torch.Generator().manual_seed(seed)
    dt = torch.exp(torch.rand(DIM, generator=g) * (torch.log(torch.tensor(0.1)) - torch.log(torch.tensor(1e-3)))
                   + torch.log(torch.tensor(1e-3)))
    return {
        "u": torch.randn(1, DIM, length, generator=g),
        "delta": torch.randn(1, DIM, length, generator=g) * 0.5,
        "A": -torch.arange(1, N_STATE + 1, dtype=torch.float32).repeat(DIM, 1),
        "B": torch.randn(1, N_STATE, length, generator=g),
        "C": torch.randn(1, N_STATE, length, generator=g),
        "D": torch.ones(DIM),
        "delta_bias": dt + torch.log(-torch.expm1(-dt)),  # inverse softplus
    }


def proc_kib(path: str, field: str) -> int:
    """A 'Field:  123 kB' line of /proc/self/status or /proc/meminfo."""
    for line in Path(path).read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{path} has no {field}")


def timed(fn: Callable[[], object]) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds of all threads, peak RSS above the starting level in MiB) of
    one call. Memory freed by earlier calls is handed back to the OS first, so that it cannot
    hide this call's peak."""
    gc.collect()
    LIBC.malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    start_kib = proc_kib("/proc/self/status", "VmRSS")
    start, start_cpu = time.perf_counter(), time.process_time()
    fn()
    seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    return seconds, cpu, (proc_kib("/proc/self/status", "VmHWM") - start_kib) / 1024


def run_once(scan, inputs: dict[str, torch.Tensor], backward: bool) -> Callable[[], object]:
    def forward():
        with torch.no_grad():
            return scan(*(inputs[k] for k in NAMES))

    def forward_backward():
        leaves = [inputs[k].clone().requires_grad_() for k in NAMES]
        scan(*leaves).sum().backward()
        return [x.grad for x in leaves]

    return forward_backward if backward else forward


def first_call_seconds() -> dict[str, float]:
    """numba's one-time cost: cold compile into an empty cache directory, then a warm start."""
    probe = ("import time; t = time.perf_counter(); import torch; "
             "from fusion.scan import selective_scan_fn; "
             "x = [torch.randn(1, 4, 64, requires_grad=True) for _ in range(2)]; "
             "A = (-torch.rand(4, 3)).requires_grad_(); "
             "B, C = (torch.randn(1, 3, 64, requires_grad=True) for _ in range(2)); "
             "selective_scan_fn(x[0], x[1], A, B, C, delta_softplus=True).sum().backward(); "
             "print(time.perf_counter() - t)")
    result = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for label in ("cold_compile_s", "warm_cache_s"):
            done = subprocess.run([sys.executable, "-c", probe], env=env, cwd=ROOT, check=True,
                                  capture_output=True, text=True)
            result[label] = float(done.stdout.split()[-1])
    return result


MODES = ((False, "forward"), (True, "forward_backward"))


def bench(lengths: list[int], repeats: int, baseline_limit: float) -> dict:
    """Timings in ``repeats`` rounds, each over every length and mode, fusion.scan and the
    baseline side by side, keeping the best of each: a slow spell of a shared machine then hits
    every length and both contenders alike. The baseline runs in the first round where its
    predicted cost allows (otherwise it is extrapolated), and in later rounds where its repeats
    stay under ``baseline_limit``."""
    available_mib = proc_kib("/proc/meminfo", "MemAvailable") / 1024
    inputs = {length: make_inputs(length) for length in lengths}
    ours = {(length, backward): run_once(numba_scan, inputs[length], backward)
            for length in lengths for backward, _ in MODES}
    loops = {key: run_once(torch_loop_scan, inputs[key[0]], key[1]) for key in ours}
    for backward, _ in MODES:
        run_once(torch_loop_scan, make_inputs(256), backward)()  # warm-up
    for run in ours.values():
        run()  # warm-up: numba cache load, allocator
    best: dict[tuple[str, int, bool], tuple[float, float, float]] = {}
    baseline_rounds: dict[tuple[int, bool], int] = {}  # rounds the baseline runs in; 0: extrapolated
    rate: dict[bool, tuple[float, ...] | None] = {False: None, True: None}  # s, cpu s, MiB per token

    def keep_best(key: tuple[str, int, bool], result: tuple[float, float, float]) -> None:
        if key not in best or result[0] < best[key][0]:
            best[key] = result

    for round_ in range(repeats):
        for length in lengths:
            for backward, _ in MODES:
                keep_best(("numba", length, backward), timed(ours[length, backward]))
                if round_ == 0:
                    predicted = None if rate[backward] is None else tuple(r * length for r in rate[backward])
                    if predicted and (predicted[0] > baseline_limit or predicted[2] > available_mib / 2):
                        best["loop", length, backward] = predicted
                        baseline_rounds[length, backward] = 0
                        continue
                    result = timed(loops[length, backward])
                    keep_best(("loop", length, backward), result)
                    rate[backward] = tuple(max(m, 0.0) / length for m in result)
                    cheap = result[0] * (repeats - 1) <= baseline_limit
                    baseline_rounds[length, backward] = repeats if cheap else 1
                elif round_ < baseline_rounds[length, backward]:
                    keep_best(("loop", length, backward), timed(loops[length, backward]))
        print(f"  round {round_ + 1}/{repeats} done", flush=True)

    rows = []
    for length in lengths:
        row: dict = {"length": length}
        for backward, mode in MODES:
            row[f"numba_{mode}_s"], row[f"numba_{mode}_cpu_s"], row[f"numba_{mode}_peak_mib"] = \
                best["numba", length, backward]
            measured = best["loop", length, backward]
            (row[f"baseline_{mode}_s"], row[f"baseline_{mode}_cpu_s"],
             row[f"baseline_{mode}_peak_mib"]) = measured
            row[f"baseline_{mode}_extrapolated"] = baseline_rounds[length, backward] == 0
            row[f"baseline_{mode}_runs"] = baseline_rounds[length, backward]
            row[f"speedup_{mode}"] = measured[0] / row[f"numba_{mode}_s"]
            row[f"speedup_{mode}_cpu"] = measured[1] / row[f"numba_{mode}_cpu_s"]
        if not row["baseline_forward_extrapolated"]:
            with torch.no_grad():
                fast_out = numba_scan(*(inputs[length][k] for k in NAMES))
                loop_out = torch_loop_scan(*(inputs[length][k] for k in NAMES))
            row["max_rel_diff_vs_baseline"] = float((fast_out - loop_out).abs().max()
                                                    / loop_out.abs().max())
        rows.append(row)
    return {"rows": rows}


def print_table(rows: list[dict]) -> None:
    header = (f"{'2L':>7} | {'fwd numba':>9} {'fwd loop':>10} {'x wall':>6} {'x cpu':>6} | "
              f"{'f+b numba':>9} {'f+b loop':>10} {'x wall':>6} {'x cpu':>6} | "
              f"{'MiB f+b numba':>13} {'loop':>8}")
    print(header)
    print("-" * len(header))
    for r in rows:
        def loop(mode: str, key: str, fmt: str) -> str:
            star = "*" if r[f"baseline_{mode}_extrapolated"] else " "
            return format(r[f"baseline_{mode}_{key}"], fmt) + star
        cells = []
        for mode in ("forward", "forward_backward"):
            cells.append(f"{r[f'numba_{mode}_s']:>9.3f} {loop(mode, 's', '9.2f')} "
                         f"{r[f'speedup_{mode}']:>6.1f} {r[f'speedup_{mode}_cpu']:>6.1f}")
        print(f"{r['length']:>7} | {cells[0]} | {cells[1]} | "
              f"{r['numba_forward_backward_peak_mib']:>13.1f} {loop('forward_backward', 'peak_mib', '7.0f')}")
    print("seconds are wall clock; 'x cpu' compares CPU seconds of all threads (robust on a busy\n"
          "machine); * = extrapolated linearly from the first-round rate at the largest measured length")


# S4Fusion's scans at 480x640 (padded to 481x649), as recorded from its forward: (d_inner, N, H, W,
# pair, calls). pair 1: a VSS block's SS2D; pair 2: a CMSA block's cross scan (IR and VI tokens
# interleaved). The kernel sees 4 * d_inner channels in 4 groups and H * W * pair steps.
S4FUSION_480X640 = ((72, 12, 160, 216, 1, 3), (144, 12, 80, 108, 1, 6), (288, 12, 40, 54, 1, 3),
                    (144, 18, 80, 108, 2, 3), (288, 18, 40, 54, 2, 3))
LEVELS = ("layer", "kernel")


def layer_inputs(dim: int, groups: int, n_state: int, length: int) -> dict[str, torch.Tensor]:
    """S4Fusion-like inputs: A = -(1..N) per channel, softplus(delta + bias) around 1e-3 .. 1e-1."""
    g = torch.Generator().manual_seed(dim + n_state)
    dt = torch.exp(torch.rand(dim, generator=g) * 4.6 - 6.9)
    return {"u": torch.randn(1, dim, length, generator=g),
            "delta": torch.randn(1, dim, length, generator=g) * 0.5,
            "A": -torch.arange(1, n_state + 1, dtype=torch.float32).repeat(dim, 1),
            "B": torch.randn(1, groups, n_state, length, generator=g),
            "C": torch.randn(1, groups, n_state, length, generator=g),
            "D": torch.ones(dim), "delta_bias": dt + torch.log(-torch.expm1(-dt))}


def layer_scan(d_inner: int, n_state: int, height: int, width: int, pair: int):
    """(run, leaves): the four-direction scan of one S4Fusion layer as its module runs it (the
    reorderings around the scan included), with random weights and inputs: SS2D's scan_2d of
    project_all(u), or CMSA's cross_scan_2d (patch mark, interleaving, scan, recovering)."""
    from fusion.s4fusion.cmsa import CMSABlock
    from fusion.s4fusion.ssm import DirectionalSSM, dt_rank_for

    torch.manual_seed(d_inner + n_state + pair)
    d_model = d_inner * 2 // 3
    if pair == 1:
        block = DirectionalSSM(d_inner, n_state, dt_rank_for(d_model))
        u = torch.randn(1, d_inner, height, width)
        return (lambda x: block.scan_2d(x, block.project_all(x))), [u], block
    block = CMSABlock(d_model, d_state=n_state)
    p_ir, p_vi = torch.randn(2, 1, d_inner, height, width)
    return (lambda x, y: block.cross_scan_2d(x, y)), [p_ir, p_vi], block


def timed_cpu(fn: Callable[[], object]) -> tuple[object, float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - start, time.process_time() - cpu


def layers_worker(out: Path) -> None:
    """In a child process (PYTHONPATH picks the fusion package): each S4Fusion scan size once
    forward (no_grad) and once forward+backward, at two levels: 'layer' (the module's scan with
    its reorderings, see layer_scan) and 'kernel' (one grouped selective_scan_fn call of the
    reordered sequences); CPU and wall seconds, and the results for comparison."""
    results = {}
    run_once(numba_scan, layer_inputs(8, 4, 12, 300), True)()  # numba compile or cache load
    for d_inner, n_state, height, width, pair, calls in S4FUSION_480X640:
        key = f"{d_inner}x{n_state}x{height}x{width}x{pair}"
        scan, leaves, block = layer_scan(d_inner, n_state, height, width, pair)
        small_scan, small_leaves, _ = layer_scan(d_inner, n_state, 5, 7, pair)
        small_scan(*small_leaves).sum().backward()  # the module's kernel specialisations: compile or load
        kernel = layer_inputs(4 * d_inner, 4, n_state, height * width * pair)
        for level in LEVELS:
            row = {"calls": calls}
            for backward, mode in MODES:
                if level == "kernel":
                    result, wall, cpu = timed_cpu(run_once(numba_scan, kernel, backward))
                    tensors = result if backward else [result]
                elif backward:
                    xs = [x.clone().requires_grad_() for x in leaves]
                    params = list(block.parameters())

                    def forward_backward():
                        return torch.autograd.grad(scan(*xs).sum(), xs + params, allow_unused=True)

                    result, wall, cpu = timed_cpu(forward_backward)
                    tensors = [t for t in result if t is not None]
                else:
                    with torch.no_grad():
                        result, wall, cpu = timed_cpu(lambda: scan(*leaves))
                    tensors = [result]
                row[f"{mode}_s"], row[f"{mode}_cpu_s"] = wall, cpu
                torch.save([t.detach().contiguous() for t in tensors],
                           out.with_name(f"{out.stem}-{level}-{key}-{mode}.pt"))
            results[f"{level} {key}"] = row
    out.write_text(json.dumps(results))


def fusion_worker(tree: Path, threads: int, save: Path) -> dict:
    """One S4Fusion 480x640 fusion (released topology, random weights, best of 2) by the fusion
    package in ``tree``, through bench_model.py's child mode in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_model.py"), "--threads", str(threads),
                           "--repeats", "2", "--child", "480,640,0", "--save", str(save)],
                          env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_before(revisions: list[str], repeats: int, threads: int) -> dict:
    """This checkout against ``revisions`` at S4Fusion's scan sizes and on a 480x640 fusion, in
    fresh processes alternating --repeats times (a slow spell of a shared machine hits all alike;
    the best counts). Results are compared against the last revision's (the code before this)."""
    env = {**os.environ, "NUMBA_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    names = ["now", *revisions]
    best: dict[str, dict] = {name: {} for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"now": ROOT}
        for revision in revisions:
            tree = trees[revision] = Path(tmp) / revision
            tree.mkdir()
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "fusion", "fusionbench"],
                                     capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        for round_ in range(repeats):
            for name in names:
                out = Path(tmp) / f"{name}.json"
                subprocess.run([sys.executable, __file__, "--layers-worker", str(out)], check=True,
                               env={**env, "PYTHONPATH": str(trees[name])}, cwd=ROOT)
                rows = json.loads(out.read_text())
                rows["fusion 480x640"] = fusion_worker(trees[name], threads, Path(tmp) / f"{name}-fused.npy")
                for key, row in rows.items():
                    kept = best[name].setdefault(key, dict(row))
                    for field, value in row.items():
                        if field.endswith("_s"):
                            kept[field] = min(kept[field], value)
            print(f"  round {round_ + 1}/{repeats} done (load average {os.getloadavg()[0]:.1f})", flush=True)
        reference = names[-1]
        for name in names[:-1]:
            for key, row in best[name].items():
                if key == "fusion 480x640":
                    fused = [np.load(Path(tmp) / f"{n}-fused.npy").astype(np.float64) for n in (name, reference)]
                    row[f"max_abs_diff_vs_{reference}"] = float(np.abs(fused[0] - fused[1]).max())
                    continue
                for _, mode in MODES:
                    ours, theirs = (torch.load(Path(tmp) / f"{n}-{key.replace(' ', '-')}-{mode}.pt")
                                    for n in (name, reference))
                    row[f"{mode}_max_rel_diff_vs_{reference}"] = max(
                        float((a.double() - b.double()).abs().max() / b.abs().max()) for a, b in zip(ours, theirs))
    return best


def print_before(best: dict, revisions: list[str]) -> dict:
    """The table: per size and level the seconds of each code, the speed-up of this code over
    each revision (wall and CPU), and totals over S4Fusion's calls; returns the totals."""
    names = ["now", *revisions]
    reference = names[-1]
    totals: dict = {}
    for _, mode in MODES:
        print(f"\n{mode}: wall s (CPU s) per call; x = speed-up of now, wall / CPU")
        print(f"{'level size (d_inner x N x H x W x pair)':>40} | " + " | ".join(f"{n:>15}" for n in names)
              + " | " + " | ".join(f"x vs {r:>8}" for r in revisions) + f" | rel diff vs {reference}")
        for key, row in best["now"].items():
            if key == "fusion 480x640":
                continue
            level = key.split()[0]
            cells = [f"{best[n][key][f'{mode}_s']:6.2f} ({best[n][key][f'{mode}_cpu_s']:6.2f})" for n in names]
            ups = [f"{best[r][key][f'{mode}_s'] / row[f'{mode}_s']:4.2f}/{best[r][key][f'{mode}_cpu_s'] / row[f'{mode}_cpu_s']:4.2f}"
                   for r in revisions]
            print(f"{key:>40} | " + " | ".join(cells) + " | " + " | ".join(f"{u:>13}" for u in ups)
                  + f" | {row[f'{mode}_max_rel_diff_vs_{reference}']:.1e}")
            for n in names:
                t = totals.setdefault(f"{level} {mode}", {}).setdefault(n, [0.0, 0.0])
                t[0] += best[n][key]["calls"] * best[n][key][f"{mode}_s"]
                t[1] += best[n][key]["calls"] * best[n][key][f"{mode}_cpu_s"]
        for level in LEVELS:
            t = totals[f"{level} {mode}"]
            ups = [f"{t[r][0] / t['now'][0]:4.2f}/{t[r][1] / t['now'][1]:4.2f}" for r in revisions]
            print(f"{'S4Fusion 480x640, ' + level + ' (x calls)':>40} | "
                  + " | ".join(f"{t[n][0]:6.2f} ({t[n][1]:6.2f})" for n in names) + " | "
                  + " | ".join(f"{u:>13}" for u in ups))
    fused = {n: best[n]["fusion 480x640"] for n in names}
    print("\nS4Fusion 480x640 fusion of one pair (released topology, random weights, best of the rounds):")
    for n in names:
        f = fused[n]
        line = f"{n:>10}: {f['wall_s']:6.2f} s wall, {f['cpu_s']:6.2f} s CPU, peak RSS {f['peak_rss_gb']:.2f} GiB"
        if n == "now":
            line += "; x " + ", ".join(f"{fused[r]['wall_s'] / f['wall_s']:.2f} wall / {fused[r]['cpu_s'] / f['cpu_s']:.2f} CPU vs {r}"
                                       for r in revisions)
            line += f"; max |now - {reference}| {f[f'max_abs_diff_vs_{reference}']:.1e}"
        print(line)
    print(f"seconds: best of the rounds; 'now' = this checkout; load average {os.getloadavg()[0]:.1f}")
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-limit", type=float, default=60.0,
                        help="extrapolate the baseline where one run would take longer (s)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scan.json")
    parser.add_argument("--before", nargs="+", metavar="REV",
                        help="git revisions: time S4Fusion's scans and its 480x640 fusion against them instead")
    parser.add_argument("--threads", type=int, default=2, help="numba threads with --before")
    parser.add_argument("--layers-worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.layers_worker:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        layers_worker(args.layers_worker)
        return
    if args.before:
        load_before = os.getloadavg()
        best = bench_before(args.before, args.repeats, args.threads)
        totals = print_before(best, args.before)
        out = ROOT / "bench" / "results" / "scan_before.json"
        atomic_write_text(out, json.dumps({
            "revisions": args.before, "threads": args.threads, "repeats": args.repeats,
            "scans": S4FUSION_480X640, "load_average_at_start": load_before,
            "load_average_at_end": os.getloadavg(), "cpus": os.cpu_count(), "totals": totals, **best}, indent=2))
        print(f"wrote {out}")
        return
    torch.set_num_threads(1)
    first = first_call_seconds()
    print(f"numba first call: cold compile {first['cold_compile_s']:.1f} s, "
          f"warm cache {first['warm_cache_s']:.1f} s", flush=True)
    result = bench(sorted(args.lengths), args.repeats, args.baseline_limit)
    rows = result["rows"]
    print_table(rows)
    growth = [{"from": a["length"], "to": b["length"],
               **{f"{mode}{unit}": b[f"numba_{mode}{unit}"] / a[f"numba_{mode}{unit}"]
                  for mode in ("forward", "forward_backward") for unit in ("_s", "_cpu_s")}}
              for a in rows for b in rows if b["length"] == 4 * a["length"]]
    for g in growth:
        print(f"numba, 4x length ({g['from']} -> {g['to']}): forward time x{g['forward_s']:.2f} "
              f"(cpu x{g['forward_cpu_s']:.2f}), forward+backward x{g['forward_backward_s']:.2f} "
              f"(cpu x{g['forward_backward_cpu_s']:.2f})")
    report = {
        "dim": DIM, "n_state": N_STATE, "batch": 1, "repeats": args.repeats,
        "baseline_limit_s": args.baseline_limit, "first_call": first, "rows": rows,
        "growth_4x_length": growth,
        "machine": {"cpus": os.cpu_count(), "openmp_waiting": fusion.openmp_waiting(), "numba_threads": numba.get_num_threads(),
                    "torch_threads": torch.get_num_threads(),
                    "load_average_at_end": os.getloadavg(), "python": platform.python_version(),
                    "torch": torch.__version__},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
