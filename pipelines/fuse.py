"""The fuse stage: a config's fuser (:mod:`pipelines.fusers`) writes its fused set.

The engine that writes a set resumably is :mod:`fusion.engine`; what a complete set is, for every
stage that reads one, is :mod:`fusionbench.fused_set`; which fuser, options and fingerprint a config
asks for is :mod:`pipelines.fusers`, shared with every stage that checks a set is this config's.
"""
from __future__ import annotations

from pathlib import Path

from fusion.engine import Shard, fuse_set
from fusionbench.benchmark import Benchmark, BenchmarkError
from fusionbench.fused_set import is_complete
from pipelines.config import run_layout
from pipelines.fusers import build_method, fingerprint_reasons
from pipelines.schema import Config


def is_current(config: Config, method: str) -> bool:
    """True when ``method``'s fused set is complete and was made with what the config asks for now
    (:func:`pipelines.fusers.fingerprint_reasons`): a submitter skips its job then."""
    try:
        benchmark = Benchmark(run_layout(config).benchmark)
    except BenchmarkError:
        return False
    return not fingerprint_reasons(config, method) and is_complete(benchmark, method)


def fuse_method(config: Config, method: str, *, weights: str | Path | None = None,
                source: str | Path | None = None, display_name: str | None = None,
                keep_grey: bool | None = None, shard: Shard = Shard(), force: bool = False,
                progress: bool = True) -> Path:
    """The whole stage for one method of a config: build its fuser and write its fused set."""
    benchmark = Benchmark(run_layout(config).benchmark)
    fuser, fingerprint, info = build_method(config, method, weights=weights, source=source, keep_grey=keep_grey)
    if display_name:
        info["display_name"] = display_name
    return fuse_set(benchmark, method, fuser, fingerprint=fingerprint, info=info,
                    workers=config.fusion.workers,
                    batch_size=config.fusion.batch_size or 8,
                    shard=shard, force=force, progress=progress)
