"""Seconds per image of every fusion metric of each convention (FMI included), against the baseline,
and of the decision-layer entropy on M3FD-sized images.

Pairs are real MSRS pairs from ../shared/data/msrs_det20 resized to 1024x768 (the M3FD size); the
"fused" image is their average. Metric times are CPU (process) and wall seconds of ``evaluate`` for
one metric and for the convention's full set in one call (images already in memory), best of
--repeats, OpenCV limited to one thread so the number is per core. Baselines, timed in the same run:

* ``baseline``: the single-module implementation of the 11 metrics before conventions
  (``fusion/metrics.py`` at git revision --baseline, loaded from git history), per metric and in total;
* ``--before REV``: the metrics package at another revision (e.g. before a speed-up), every
  convention, timed by this script in a subprocess that imports ``fusion`` from ``git archive REV``.

The entropy time is one ResNet50 forward pass per image at full resolution (randomly initialised
weights: the time does not depend on them) on --device.

    python bench/bench_metrics.py                       # CPU, 2 pairs, 2 repeats
    python bench/bench_metrics.py --pairs 1 --repeats 3 --before 2c8f7d7
    python bench/bench_metrics.py --device cuda --batch 8

Estimate of `pipelines metrics` for M methods and N test images: M * N * (all metrics + entropy).
Writes bench/results/bench_metrics.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import cv2
import numpy as np
import torch

import fusion.metrics as metrics  # at a --baseline revision: the pre-convention single module

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "msrs_det20"
SIZE = (1024, 768)
TARGET_S = 1.5
M3FD_TEST_IMAGES = 840
BASELINE_REVISION = "23f17b2"  # main before fusion/metrics became a package of conventions

Times = dict[str, dict[str, float]]


def load_triples(count: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(fused, IR, VI) RGB arrays in [0, 255] at 1024x768, the fused one the rounded average."""
    stems = sorted(p.stem for p in (SOURCE / "ir").glob("*.png"))[:count]
    if not stems:
        raise SystemExit(f"{SOURCE / 'ir'}: no PNG images")
    triples = []
    for stem in stems:
        ir, vi = (cv2.resize(metrics.read_image(SOURCE / kind / f"{stem}.png", metrics.CONVENTIONS["cddfuse"]), SIZE).astype(float)
                  for kind in ("ir", "vi"))
        triples.append((np.round((ir + vi) / 2), ir, vi))
    return triples


def _best(call, repeats: int, count: int) -> dict[str, float]:
    best_cpu = best_wall = float("inf")
    for _ in range(repeats):
        cpu, wall = time.process_time(), time.perf_counter()
        call()
        best_cpu = min(best_cpu, (time.process_time() - cpu) / count)
        best_wall = min(best_wall, (time.perf_counter() - wall) / count)
    return {"cpu_s": best_cpu, "wall_s": best_wall}


def time_convention(triples, convention: str, repeats: int) -> Times:
    """Per metric of ``convention`` and ``all`` (one call), seconds per triple (grey conversion included).
    One untimed call first, so compilation or cache loading is not counted."""
    f, ir, vi = triples[0]
    metrics.evaluate(f[:64, :64], ir[:64, :64], vi[:64, :64], convention)

    def run(name: str) -> None:
        for f, ir, vi in triples:
            metrics.evaluate(f, ir, vi, convention, metrics=[name])

    times = {name: _best(lambda n=name: run(n), repeats, len(triples)) for name in metrics.CONVENTIONS[convention].metrics}
    times["all"] = _best(lambda: [metrics.evaluate(f, ir, vi, convention) for f, ir, vi in triples], repeats, len(triples))
    return times


def time_baseline(module: types.ModuleType, triples, repeats: int) -> Times:
    """The pre-convention module's metrics one by one (grey conversion included, as for the
    conventions) and its ``evaluate``."""
    functions = {**module._SINGLE, **module._WITH_SOURCES}

    def run(name: str) -> None:
        for triple in triples:
            grey = [module.to_grey255(x / 255.0) for x in triple]
            functions[name](grey[0]) if name in module._SINGLE else functions[name](*grey)

    times = {name: _best(lambda n=name: run(n), repeats, len(triples)) for name in module.METRICS}
    times["all"] = _best(lambda: [module.evaluate(*(module.to_grey255(x / 255.0) for x in t)) for t in triples],
                         repeats, len(triples))
    return times


def time_importable(triples, conventions: list[str], repeats: int) -> dict[str, Times]:
    """The ``fusion.metrics`` this process imports: each of ``conventions`` it has, or, for the
    pre-convention single module, its 11 metrics as ``baseline``."""
    if not hasattr(metrics, "CONVENTIONS"):
        return {"baseline": time_baseline(metrics, triples, repeats)}
    return {name: time_convention(triples, name, repeats) for name in conventions if name in metrics.CONVENTIONS}


def time_revision(revision: str, triples, conventions: list[str], repeats: int) -> dict[str, Times]:
    """:func:`time_importable` at git ``revision``: this script in a subprocess importing ``fusion`` (and
    ``fusionbench``) from ``git archive revision``, on the same triples."""
    with tempfile.TemporaryDirectory() as tree:
        present = subprocess.run(["git", "-C", str(ROOT), "ls-tree", "--name-only", revision],
                                 capture_output=True, text=True, check=True).stdout.split()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision,
                                  *(d for d in ("fusion", "fusionbench") if d in present)],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
        np.save(Path(tree) / "triples.npy", np.stack([np.stack(t) for t in triples]))
        subprocess.run([sys.executable, __file__, "--worker", tree, "--repeats", str(repeats),
                        *(["--conventions", *conventions] if conventions else [])],
                       env={**os.environ, "PYTHONPATH": tree}, check=True)
        return json.loads((Path(tree) / "times.json").read_text())


def time_entropy(triples, device: str, batch: int, repeats: int) -> dict[str, float]:
    from fusion.perception import build_resnet50, decision_entropy

    model, _ = build_resnet50(allow_random=True)
    model.to(device)
    images = torch.from_numpy(np.stack([f.mean(axis=2) / 255.0 for f, _, _ in triples]).astype(np.float32))[:, None]
    images = images.repeat(max(1, -(-batch // len(triples))), 1, 1, 1)[:batch].to(device)
    with torch.inference_mode():
        decision_entropy(model, images)  # warm-up (cuDNN autotuning, allocations)
        best = float("inf")
        for _ in range(repeats):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            decision_entropy(model, images)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            best = min(best, (time.perf_counter() - start) / len(images))
    return {"wall_s_per_image": best, "batch": len(images), "device": device}


def print_table(columns: dict[str, Times], pairs: int) -> None:
    """One row per metric (CPU s per image), then the full set in one call, then M3FD's test set."""
    width = max(10, *(len(name) + 1 for name in columns))
    print(f"{'metric':10}" + "".join(f"{name:>{width}}" for name in columns)
          + f"   (CPU s per {SIZE[0]}x{SIZE[1]} triple, best of the repeats, {pairs} pair(s))")
    rows = dict.fromkeys(metric for times in columns.values() for metric in times if metric != "all")
    for metric in [*rows, "all"]:
        cells = [f"{times[metric]['cpu_s']:{width}.3f}" if metric in times else f"{'-':>{width}}"
                 for times in columns.values()]
        print(f"{metric:10}" + "".join(cells) + ("   one evaluate call; target <= 1.5 s" if metric == "all" else ""))
    print(f"{'M3FD min':10}" + "".join(f"{M3FD_TEST_IMAGES * times['all']['wall_s'] / 60:{width}.1f}"
                                       for times in columns.values())
          + f"   minutes for {M3FD_TEST_IMAGES} test images of one method (wall, one process)")
    slow = [name for name, times in columns.items() if "@" not in name and name != "baseline"
            and times["all"]["cpu_s"] > TARGET_S]
    print(f"target <= {TARGET_S} CPU s per triple: " + (f"missed by {', '.join(slow)}" if slow else "met by every convention"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--baseline", default=BASELINE_REVISION, help="git revision of the pre-convention module")
    parser.add_argument("--before", help="git revision whose metrics package is timed too (before/after)")
    parser.add_argument("--conventions", nargs="+", default=list(getattr(metrics, "CONVENTIONS", ())))
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # a folder: time its triples.npy, write times.json
    args = parser.parse_args()
    cv2.setNumThreads(1)
    if args.worker:
        triples = [tuple(t) for t in np.load(Path(args.worker) / "triples.npy")]
        times = time_importable(triples, args.conventions, args.repeats)
        (Path(args.worker) / "times.json").write_text(json.dumps(times))
        return
    unknown = [name for name in args.conventions if name not in metrics.CONVENTIONS]
    if unknown:
        parser.error(f"unknown convention(s) {', '.join(unknown)}; known: {', '.join(metrics.CONVENTIONS)}")

    triples = load_triples(args.pairs)
    times = time_importable(triples, args.conventions, args.repeats)
    before = time_revision(args.before, triples, args.conventions, args.repeats) if args.before else {}
    baseline = time_revision(args.baseline, triples, [], args.repeats).get("baseline")
    entropy = time_entropy(triples, args.device, args.batch, args.repeats)

    columns: dict[str, Times] = {"baseline": baseline} if baseline else {}
    for name in args.conventions:
        if name in before:
            columns[f"{name}@{args.before}"] = before[name]
        columns[name] = times[name]
    print_table(columns, len(triples))
    print(f"entropy   {entropy['wall_s_per_image']:.4f} s/img wall on {args.device} (batch {entropy['batch']})")

    out = ROOT / "bench" / "results" / "bench_metrics.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "size": SIZE, "pairs": len(triples), "repeats": args.repeats, "target_cpu_s": TARGET_S,
        "conventions": times, "totals": {name: t["all"] for name, t in times.items()},
        "before": {"revision": args.before, "conventions": before} if args.before else None,
        "baseline": {"revision": args.baseline, "metrics": baseline} if baseline else None,
        "entropy": entropy, "torch": torch.__version__, "platform": platform.platform(),
        "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
    }, indent=1))
    print(f"written {out}")


if __name__ == "__main__":
    main()
