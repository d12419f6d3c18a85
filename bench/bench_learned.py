"""The learned fusers side by side on the CPU: S4Fusion (released topology) and SMFNet (released sizes).

Per architecture, with random weights:
* parameters: used by the forward pass, and built but unused (SMFNet's release builds modules it never
  calls; they exist only to load the authors' checkpoint; S4Fusion has none);
* FLOPs of one forward pass at 480x640 (2 per multiply-add; torch.utils.flop_counter: matmuls and
  convolutions, elementwise ops not counted). SMFNet is counted on the meta device (nothing runs);
  S4Fusion as in bench/bench_model.py (dense part counted on a real pass at the padded size, the
  selective scan, which runs outside torch, added analytically);
* fusion of one random pair through the inference API (LearnedFuser: padding, colour) at 480x640 and 1024x768:
  wall and process-CPU seconds of the fastest of --repeats runs, peak RSS of the process;
* one training step (forward, loss, backward, optimiser step) of the method named like the architecture
  through the generic trainer (bench/bench_train.py's timing), batch --batch: SMFNet's stage I and
  stage II steps at 128x128 (released loss and optimiser settings); S4Fusion's full loss (random
  ResNet50 perception network) at 133x133, the valid size next to 128 (its sides must be 12k + 1).
  Mean of --steps steps after one warm-up step.
Each measurement runs in a fresh process limited to --threads threads (OpenMP waiting: fusion/__init__.py),
so its peak RSS is its own. The machine may be shared: the load average is recorded; repeat runs
and take the best.

    python bench/bench_learned.py                      # everything, 2 threads
    python bench/bench_learned.py --only smfnet --sizes 480x640

Prints one table and writes bench/results/learned.json.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import fusion  # noqa: F401 - sets the OpenMP waiting (fusion/__init__.py) the child processes inherit

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "learned.json"
ARCHS = ("s4fusion", "smfnet")
CROPS = {"smfnet": 128, "s4fusion": 133}  # S4Fusion's sides must be 12k + 1: the valid size next to 128


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def parameters(arch: str) -> dict:
    if arch == "smfnet":
        from fusion.smfnet.checkpoint import released_unused_parameters
        from fusion.smfnet.model import SMFNet

        used = sum(p.numel() for p in SMFNet().parameters())
        return {"used": used, "unused": released_unused_parameters()}
    from fusion.s4fusion.model import S4Fusion

    return {"used": sum(p.numel() for p in S4Fusion().parameters()), "unused": 0}


def flops(arch: str) -> float:
    """GFLOPs of one forward pass at 480x640."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    if arch == "smfnet":
        from fusion.smfnet.model import SMFNet

        model = SMFNet().to("meta").eval()
        x = torch.zeros(1, 1, 480, 640, device="meta")
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(x, x)
        return counter.get_total_flops() / 1e9
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_model import count_flops

    from fusion.s4fusion.geometry import pad_to_valid
    from fusion.s4fusion.model import S4Fusion

    x = pad_to_valid(torch.rand(1, 1, 480, 640))[0]
    counted = count_flops(S4Fusion(), x)
    return counted["dense_gflops"] + counted["scan_gflops"]


def fuse(arch: str, height: int, width: int, repeats: int) -> dict:
    import numpy as np
    import torch

    from fusion.learned.architecture import get_architecture
    from fusion.learned.inference import LearnedFuser

    torch.manual_seed(0)
    architecture = get_architecture(arch)
    config = architecture.make_config()
    fuser = LearnedFuser(architecture.build(config), architecture, config, device="cpu")
    rng = np.random.default_rng(0)
    ir = rng.random((height, width), dtype=np.float32)
    vi = rng.random((height, width, 3), dtype=np.float32)
    fuser(ir[:49, :61], vi[:49, :61])  # compile / load kernels, warm caches
    runs = []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fuser(ir, vi)
        runs.append((time.perf_counter() - wall, time.process_time() - cpu))
    wall_s, cpu_s = min(runs)
    return {"wall_s": wall_s, "cpu_s": cpu_s, "peak_rss_gb": _peak_rss_gb()}


def train(arch: str, batch: int, steps: int) -> dict:
    """The step of every training stage of the architecture's main method, through the generic trainer."""
    import tempfile

    import numpy as np

    from fusion.learned.architecture import learned_method
    from fusion.learned.data import folder_pairs
    from fusion.learned.trainer import Trainer, TrainSettings
    from fusion.perception import build_resnet50
    from fusionbench.images import write_image

    sys.path.insert(0, str(ROOT / "bench"))
    from bench_train import time_steps

    method = learned_method(arch)
    architecture, crop = method.architecture, CROPS[arch]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("a", "b"):  # the trainer needs pairs on disk; the timed steps use in-memory batches
            write_image(Path(tmp) / "ir" / f"{name}.png", np.zeros((crop, crop), np.uint8))
            write_image(Path(tmp) / "vi" / f"{name}.png", np.zeros((crop, crop, 3), np.uint8))
        perception = build_resnet50(allow_random=True)[0] if architecture.needs_perception else None
        settings = TrainSettings(**{**method.train, "batch_size": batch, "crop": crop, "workers": 0,
                                    "epochs": max(2, len(architecture.stages))})
        trainer = Trainer(architecture, method.make_config(), method.make_loss(), folder_pairs(tmp), [],
                          Path(tmp) / "out", settings, method=arch, perception=perception, resume=False)
        for index, stage in enumerate(architecture.stages):
            trainer.epoch = trainer.starts[index]  # this stage's step (no epoch is run)
            wall_s, cpu_s = time_steps(trainer, batch, steps, warmup=1)
            rows[stage.name] = {"crop": crop, "batch": batch, "wall_s": wall_s, "cpu_s": cpu_s}
    return {"steps": rows, "peak_rss_gb": _peak_rss_gb()}


def child(task: list[str], threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    kind, arch = task[0], task[1]
    if kind == "params":
        return parameters(arch)
    if kind == "flops":
        return {"gflops_480x640": flops(arch)}
    if kind == "fuse":
        return fuse(arch, int(task[2]), int(task[3]), int(task[4]))
    return train(arch, int(task[2]), int(task[3]))


def spawn(task: list[str], threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), NUMBA_NUM_THREADS=str(threads))
    run = subprocess.run([sys.executable, __file__, "--threads", str(threads), "--child", *task],
                         env=env, capture_output=True, text=True, cwd=ROOT)
    if run.returncode:
        raise SystemExit(f"{' '.join(task)} failed:\n{run.stderr}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=ARCHS, action="append", help="architectures (default: both)")
    parser.add_argument("--sizes", default="480x640,1024x768", help="comma-separated HxW for the fusion timing")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="fusions per size; the fastest counts")
    parser.add_argument("--batch", type=int, default=2, help="training batch")
    parser.add_argument("--steps", type=int, default=2, help="timed training steps (after one warm-up)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.threads)))
        return
    results = {}
    for arch in args.only or ARCHS:
        r = {"parameters": spawn(["params", arch], args.threads), **spawn(["flops", arch], args.threads)}
        r["fuse"] = {size: spawn(["fuse", arch, *size.lower().split("x"), str(args.repeats)], args.threads)
                     for size in args.sizes.split(",")}
        r["train"] = spawn(["train", arch, str(args.batch), str(args.steps)], args.threads)
        results[arch] = r
        print(f"{arch}: done", flush=True)
    print(table(results))
    payload = {"threads": args.threads, "repeats": args.repeats, "load_average": os.getloadavg(), "results": results}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(OUT)
    print(f"wrote {OUT}")


def table(results: dict) -> str:
    archs = list(results)
    rows = [("", *archs),
            ("parameters used", *(f"{results[a]['parameters']['used']:,}" for a in archs)),
            ("parameters built, unused", *(f"{results[a]['parameters']['unused']:,}" for a in archs)),
            ("GFLOPs at 480x640", *(f"{results[a]['gflops_480x640']:,.0f}" for a in archs))]
    for size in results[archs[0]]["fuse"]:
        rows.append((f"fuse {size}: wall / CPU s", *(
            f"{results[a]['fuse'][size]['wall_s']:.2f} / {results[a]['fuse'][size]['cpu_s']:.2f}" for a in archs)))
        rows.append((f"fuse {size}: peak RSS GiB", *(f"{results[a]['fuse'][size]['peak_rss_gb']:.2f}" for a in archs)))
    for a in archs:
        for name, s in results[a]["train"]["steps"].items():
            cells = [f"{s['wall_s']:.2f} / {s['cpu_s']:.2f}" if b == a else "" for b in archs]
            rows.append((f"train step {s['crop']}x{s['crop']} b{s['batch']} {name}: wall / CPU s", *cells))
        rows.append(("train peak RSS GiB", *(f"{results[b]['train']['peak_rss_gb']:.2f}" if b == a else "" for b in archs)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows)


if __name__ == "__main__":
    main()
