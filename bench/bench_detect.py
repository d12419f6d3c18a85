"""Seconds per YOLOv5s training epoch per 100 images, to estimate a full `pipelines detect` run.

Builds a YOLO dataset from real MSRS pairs (visible images + labels of ../shared/data/msrs_det20, repeated
up to --images training images), trains yolov5s.yaml for 3 epochs without per-epoch validation and times
epoch 2 (epoch 1 carries the start-up, epoch 3 the final validation) from ultralytics' results.csv.

    python bench/bench_detect.py                       # CPU, imgsz 320 and 640, 20 images
    python bench/bench_detect.py --device 0 --images 2940 --imgsz 640 --batch 16 --amp bf16   # a GPU, M3FD-sized

On a GPU it trains as `pipelines detect` does there: data-loader workers (default min(8, cores)) and
the --amp precision that detect.amp names (protocol_time.py uses a row only when its amp matches).

Estimate of a run: seconds_per_100_images / 100 * train images * epochs (+ validation each epoch).
Writes bench/results/bench_detect.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "msrs_det20"


def build_dataset(source: Path, folder: Path, count: int) -> list[str]:
    """``count`` training images (repeats of the source pairs), 2 validation images; returns class names."""
    stems = sorted(p.stem for p in (source / "vi").glob("*.png"))
    if not stems:
        raise SystemExit(f"{source / 'vi'}: no PNG images")
    for split, names in (("train", [stems[i % len(stems)] for i in range(count)]), ("val", stems[:2])):
        (folder / "images" / split).mkdir(parents=True)
        (folder / "labels" / split).mkdir(parents=True)
        for i, stem in enumerate(names):
            os.symlink(source / "vi" / f"{stem}.png", folder / "images" / split / f"{i:05d}_{stem}.png")
            shutil.copyfile(source / "labels" / "fusion" / f"{stem}.txt", folder / "labels" / split / f"{i:05d}_{stem}.txt")
    return [line.split()[-1] for line in (source / "labels" / "classes.txt").read_text().splitlines() if line.strip()]


AMP = {"false": False, "fp16": "fp16", "bf16": "bf16"}  # --amp -> ultralytics' amp


def epoch_seconds(data_yaml: Path, work: Path, imgsz: int, batch: int, device: str | None, workers: int,
                  amp: bool | str) -> float:
    import pandas as pd
    from ultralytics import YOLO

    from detection.yolo import TRAIN_LOG

    YOLO("yolov5s.yaml").train(
        data=str(data_yaml), epochs=3, imgsz=imgsz, batch=batch, workers=workers, seed=0, deterministic=True,
        device=device, amp=amp, val=False, plots=False, project=str(work), name=f"imgsz{imgsz}",
        exist_ok=True, verbose=False,
    )
    times = pd.read_csv(work / f"imgsz{imgsz}" / TRAIN_LOG)["time"].tolist()  # seconds since start
    return float(times[1] - times[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--imgsz", type=int, nargs="+", default=[320, 640])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=None,
                        help="data-loader processes (default: 0 on the CPU, else min(8, cores))")
    parser.add_argument("--amp", choices=tuple(AMP), default="false",
                        help="training precision, as detect.amp (fp16 needs --amp-check-weights)")
    parser.add_argument("--amp-check-weights", type=Path, default=None,
                        help="yolo26n.pt for ultralytics' fp16 self-test (it downloads it otherwise)")
    parser.add_argument("--cpu-threads", type=int, default=None, help="CPU training threads (default: all cores)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "bench_detect.json")
    args = parser.parse_args()

    import torch

    from detection.yolo import TrainSettings, write_data_yaml
    from fusionbench.ultralytics_offline import cpu_threads, install_amp_check_weights, use_offline_ultralytics

    amp = AMP[args.amp]
    workers = args.workers if args.workers is not None else 0 if args.device == "cpu" else min(8, os.cpu_count() or 1)
    if TrainSettings(epochs=3, imgsz=0, batch=0, workers=0, seed=0, amp=amp).needs_amp_check and args.device != "cpu":
        if args.amp_check_weights is None:
            parser.error("--amp fp16 on a GPU needs --amp-check-weights (ultralytics would download yolo26n.pt)")

    with tempfile.TemporaryDirectory(prefix="bench_detect_") as tmp:
        work = Path(tmp)
        use_offline_ultralytics(work / "ultralytics")
        if args.amp_check_weights is not None:
            install_amp_check_weights(args.amp_check_weights)
        classes = build_dataset(args.source.resolve(), work / "set", args.images)
        for kind in ("images", "labels"):
            (work / "set" / kind / "test").mkdir()  # unused, but the dataset file names one
        data_yaml = write_data_yaml(work / "data.yaml", work / "set", classes)
        rows = []
        for imgsz in args.imgsz:
            with cpu_threads(args.cpu_threads):  # as `pipelines detect` trains (detect.cpu_threads)
                seconds = epoch_seconds(data_yaml, work / "runs", imgsz, args.batch, args.device, workers, amp)
            rows.append({"imgsz": imgsz, "train_images": args.images, "batch": args.batch,
                         "workers": workers, "amp": amp,
                         "epoch_seconds": round(seconds, 2),
                         "seconds_per_100_images": round(seconds / args.images * 100, 2)})

    report = {"device": args.device, "cpu": platform.processor() or platform.machine(),
              "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
              "torch": torch.__version__, "rows": rows}
    print(f"{'imgsz':>6} {'images':>7} {'batch':>6} {'workers':>8} {'amp':>6} {'s/epoch':>9} {'s/epoch/100 img':>16}")
    for row in rows:
        print(f"{row['imgsz']:>6} {row['train_images']:>7} {row['batch']:>6} {row['workers']:>8} "
              f"{str(row['amp']):>6} {row['epoch_seconds']:>9.2f} "
              f"{row['seconds_per_100_images']:>16.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
