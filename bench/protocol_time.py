"""How long a whole protocol takes on M3FD, estimated from the per-step and per-epoch times that
the other benches measured (their JSON in --results), on the devices they were measured on.

    python bench/protocol_time.py                          # paper.yaml, bench/results/
    python bench/protocol_time.py --results DIR --cores 16 # JSONs measured elsewhere (e.g. a GPU)

Counts come from the config (methods, epochs, batch sizes, image size, workers) and M3FD's
4,200 pairs at 1024x768 split by data.split.ratios (as pipelines prepare splits them). Stage by stage:

  prepare      bench_prepare.json: its full-M3FD estimate
  train        bench_train.json: for each learned method without weights, priced by its own rows
               (method, stage, batch, crop): seconds per step of each stage x ceil(train pairs / batch)
               x the stage's epochs, with the method's effective training settings (fusion.train, the
               method's registry entry, methods.<m>.train); the trainer's per-epoch validation and
               fusion.train.extra folders not counted
  fuse         model*.json: one 1024x768 pair of the method's architecture (the file's "arch"; bench_model.py
               measures S4Fusion); bench_fusers.json: pairs per second of one process
               x min(fusion.workers, --cores), for each classical method
  detect       bench_detect.json: seconds per 100 training images at detect.imgsz,
               detect.batch and detect.amp (the row measured at that size, batch and
               precision; its data-loader workers are shown), once per seed of detect.seeds
               for each method; every epoch
               trains on the train split and validates on the val split, and the test split is
               evaluated once per method; validation and test images are counted at the training
               rate (an upper bound: inference is cheaper than a training step)
  metrics      bench_metrics.json: fusion metrics per image of metrics.split spread over
               min(metrics.workers, --cores) threads, plus the ResNet50 entropy per image

Prints a table (the source and device of every number) and writes protocol_time.json next to
the inputs. A stage whose JSON is missing is listed as not measured, never guessed.
"""
from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

from fusion.learned.architecture import learned_method
from fusion.learned.trainer import stage_starts
from fusion.registry import is_learned
from fusionbench.benchmark import SPLITS
from fusionbench.files import atomic_write_text
from pipelines.config import load_config
from pipelines.prepare.split import split_sizes
from pipelines.schema import Config
from pipelines.train_fusion import train_settings

ROOT = Path(__file__).resolve().parents[1]
M3FD_PAIRS = 4200
COPIES = ("ir", "vi")  # the sources themselves: copied, not fused


def read(results: Path, name: str) -> dict | None:
    path = results / name
    return json.loads(path.read_text()) if path.is_file() else None


def fuse_timings(results: Path) -> dict[str, dict]:
    """Architecture -> its 1024x768 fusion time (wall_s), device and source file, from every model*.json
    (bench_model.py's model.json measures S4Fusion and names no architecture)."""
    timings = {}
    for path in sorted(results.glob("model*.json")):
        data = json.loads(path.read_text())
        pair = next((t for t in data.get("timings", []) if t["size"] == "1024x768"), None)
        if pair:
            timings[data.get("arch", "s4fusion")] = {"wall_s": pair["wall_s"], "device": data.get("device", "cpu"),
                                                     "source": path.name}
    return timings


def _same_amp(measured: bool | str, configured: bool | str) -> bool:
    """detect.amp true is ultralytics' fp16."""
    def canonical(amp: bool | str) -> str:
        return {True: "fp16", False: "fp32"}.get(amp, amp) if isinstance(amp, bool) else str(amp)
    return canonical(measured) == canonical(configured)


def estimate(config: Config, results: Path, cores: int) -> list[dict]:
    """One row per stage: seconds (None where not measured), how it was computed, the source."""
    sizes = dict(zip(SPLITS, split_sizes(M3FD_PAIRS, tuple(config.data.split.ratios))))
    methods = config.fusion.methods
    learned = [m for m in methods if is_learned(m)]
    classical = [m for m in methods if m not in learned and m not in COPIES]
    rows = []

    def row(stage: str, seconds: float | None, how: str, source: str, device: str = "cpu") -> None:
        rows.append({"stage": stage, "seconds": seconds, "how": how, "source": source,
                     "device": device})

    prepare = read(results, "bench_prepare.json")
    cases = (prepare or {}).get("cases", {}).values()
    full = next((c["full_m3fd_estimate_s"] for c in cases if "full_m3fd_estimate_s" in c), None)
    row("prepare", full, "4,200 pairs", "bench_prepare.json")

    train = read(results, "bench_train.json")
    for method in learned:
        if config.method_options(method).get("weights"):
            continue
        entry = learned_method(method)
        settings = train_settings(config, entry)
        crop = settings.crop or entry.architecture.default_crop
        per_epoch = math.ceil(sizes["train"] / settings.batch_size)
        starts = [*stage_starts(entry.architecture.stages, settings), settings.epochs]
        seconds: float | None = 0.0
        parts = []
        for stage, first, end in zip(entry.architecture.stages, starts, starts[1:]):
            match = [r for r in (train or {}).get("rows", []) if (r["method"], r["stage"], r["batch"], r["crop"])
                     == (method, stage.name, settings.batch_size, crop)]
            steps = per_epoch * (end - first)
            seconds = None if seconds is None or not match else seconds + match[0]["wall_s_per_step"] * steps
            parts.append(f"{steps:,} steps" + (f" of {stage.name}" if len(starts) > 2 else ""))
        row(f"train {method}", seconds, f"{' + '.join(parts)} at batch {settings.batch_size}, crop {crop}",
            "bench_train.json", (train or {}).get("device", "?"))

    timings = fuse_timings(results)
    for method in learned:
        arch = learned_method(method).arch
        measured = timings.get(arch)
        row(f"fuse {method}", measured["wall_s"] * M3FD_PAIRS if measured else None,
            f"{M3FD_PAIRS:,} pairs of {arch}, one at a time", measured["source"] if measured else "model*.json",
            measured["device"] if measured else "cpu")
    fusers = read(results, "bench_fusers.json")
    processes = min(config.fusion.workers, cores)
    for method in classical:
        rate = (fusers or {}).get("images_per_second", {}).get(method)
        row(f"fuse {method}", M3FD_PAIRS / (rate * processes) if rate else None,
            f"{M3FD_PAIRS:,} pairs over {processes} processes", "bench_fusers.json")

    detect_cfg = config.detect
    detect = read(results, "bench_detect.json")
    amp = detect_cfg.amp
    match = [r for r in (detect or {}).get("rows", [])
             if (r["imgsz"], r["batch"]) == (detect_cfg.imgsz, detect_cfg.batch)
             and _same_amp(r.get("amp", False), amp)]
    images = detect_cfg.epochs * (sizes["train"] + sizes["val"]) + sizes["test"]
    per_method = match[0]["seconds_per_100_images"] / 100 * images if match else None
    seeds = len(detect_cfg.seeds)
    row(f"detect x {len(methods)} methods x {seeds} seeds", per_method and per_method * len(methods) * seeds,
        f"{detect_cfg.epochs} epochs of {sizes['train']:,} + {sizes['val']} images, "
        f"{sizes['test']} test, at {detect_cfg.imgsz} px, batch {detect_cfg.batch}, amp {amp}"
        + (f", {match[0].get('workers', 0)} loader workers" if match else ""),
        "bench_detect.json",
        str((detect or {}).get("device", "?")))

    metrics = read(results, "bench_metrics.json")
    metric_methods = config.metrics.methods or methods
    seconds = None
    if metrics:
        per_image = metrics["all_metrics_cpu_s"] / min(config.metrics.workers, cores)
        if config.metrics.entropy:
            per_image += metrics["entropy"]["wall_s_per_image"]
        seconds = per_image * sizes[config.metrics.split] * len(metric_methods)
    row(f"metrics x {len(metric_methods)} methods", seconds,
        f"{sizes[config.metrics.split]} {config.metrics.split} images each",
        "bench_metrics.json",
        (metrics or {}).get("entropy", {}).get("device", "cpu"))
    return rows


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "not measured"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:,.1f} h"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="paper", help="a built-in config name or a YAML path")
    parser.add_argument("-s", "--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, as for pipelines (e.g. -s detect.epochs=100)")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--cores", type=int, default=os.cpu_count(),
                        help="CPU cores for the CPU-parallel stages (default: this machine's)")
    args = parser.parse_args()

    rows = estimate(load_config(args.config, args.set), args.results, args.cores)
    width = max(len(r["stage"]) for r in rows)
    for r in rows:
        print(f"{r['stage']:<{width}}  {duration(r['seconds']):>14}  {r['device']:<6} {r['how']} "
              f"({r['source']})")
    measured = [r["seconds"] for r in rows if r["seconds"] is not None]
    missing = [r["stage"] for r in rows if r["seconds"] is None]
    total = sum(measured)
    print(f"{'total':<{width}}  {duration(total):>14}" + (f"  without {', '.join(missing)}" if missing else ""))
    out = args.results / "protocol_time.json"
    atomic_write_text(out, json.dumps({"config": args.config, "cores": args.cores, "rows": rows,
                               "total_seconds": total, "not_measured": missing}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
