"""The fusing engine: one method's fused set inside the prepared benchmark, written resumably.

Output (the contract is :mod:`fusionbench.fused_set`)::

    <bench>/fused/<method>/images/{train,val,test}/<stem>.png
    <bench>/fused/<method>/labels -> ../../labels           ultralytics finds the shared labels
    <bench>/fused/<method>/manifest.json                    method, fingerprint, config, versions,
                                                            complete flag, one entry per image
    <bench>/fused/<method>/shards/shard-<i>-of-<n>.json     entries of a sharded run (``--shard i/n``)

An image entry is ``{split, sha256 (of the output), seconds (fusion time), sources (sha256 of the
inputs)}``. A rerun skips an image only when its entry was made under the same fingerprint (method,
options, weights hash, code version), from the same source files, and the output on disk still has
the recorded hash; everything else is (re)done. Images are written atomically and the manifest is
saved every few seconds and whenever the run stops, so a killed run loses at most the images in
flight. The set is COMPLETE once every stem of every split has an entry.
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import sys
import time
from concurrent.futures import (
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    as_completed,
)
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from fusion.fuser import BatchFuser, PairFuser
from fusion.provenance import package_versions
from fusionbench.benchmark import SPLITS, Benchmark, Pair
from fusionbench.errors import FusionBenchError
from fusionbench.files import sha256_file, write_text_if_changed
from fusionbench.fused_set import check_method_name, read_manifest
from fusionbench.images import ImageError, read_ir, read_vi, write_image
from fusionbench.layout import MANIFEST
from fusionbench.parent_death import die_with_parent

log = logging.getLogger(__name__)

SAVE_EVERY_S = 2.0
SHOWN_FAILURES = 20
FUSE_IO_MODULES = ("fusionbench.images",)  # reads the pairs and writes the fused images: part of the output
FUSE_PACKAGES = ("fusionbench", "numpy", "opencv-python-headless", "PyWavelets", "scipy", "torch")


class FuseError(FusionBenchError):
    """Images that could not be fused; the message names each one and the problem."""


@dataclass(frozen=True)
class Shard:
    """Part ``index`` (1-based) of ``count``: the pairs at positions index-1, index-1+count, ..."""

    index: int = 1
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> "Shard":
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise ValueError(f"shard {text!r}: expected i/n, e.g. 2/4") from None
        if not 1 <= index <= count:
            raise ValueError(f"shard {text!r}: need 1 <= i <= n")
        return cls(index, count)

    def select(self, pairs: Sequence[Pair]) -> list[Pair]:
        return list(pairs[self.index - 1 :: self.count])

    @property
    def name(self) -> str:
        return f"shard-{self.index}-of-{self.count}"


@dataclass(frozen=True)
class Outcome:
    """One image of a run: its manifest entry, or the error that stopped it."""

    stem: str
    entry: dict[str, Any] | None = None
    error: str | None = None


# --- reading the inputs, running a fuser on one pair -------------------------------------------

def load_pair(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
    """The pair's images in the fuser convention, checked against the size the benchmark recorded."""
    ir, vi = read_ir(pair.ir), read_vi(pair.vi)
    for path, image in ((pair.ir, ir), (pair.vi, vi)):
        if image.shape[:2] != (pair.height, pair.width):
            raise ImageError(f"{path}: size {image.shape[1]}x{image.shape[0]}, but the benchmark records "
                             f"{pair.width}x{pair.height} for pair {pair.stem!r}")
    return ir, vi


def fuse_pair(fuser: Any, pair: Pair) -> tuple[np.ndarray, float]:
    """Fused image (checked: uint8 RGB of the pair's size) and the seconds the fusion took."""
    if isinstance(fuser, PairFuser):  # the external importer works by stem
        start = time.perf_counter()
        fused = fuser.fuse_pair(pair)
    else:
        ir, vi = load_pair(pair)
        start = time.perf_counter()
        fused = fuser(ir, vi)
    seconds = time.perf_counter() - start
    _check_output(fused, pair)
    return fused, seconds


def _check_output(fused: np.ndarray, pair: Pair) -> None:
    if fused.dtype != np.uint8 or fused.shape != (pair.height, pair.width, 3):
        raise ImageError(f"pair {pair.stem!r}: the fuser returned {fused.dtype} {fused.shape}, expected uint8 "
                         f"({pair.height}, {pair.width}, 3)")


def source_files(fuser: Any, pair: Pair) -> dict[str, Path | None]:
    """The files an output depends on: the pair, plus the imported file for the external importer."""
    files: dict[str, Path | None] = {"ir": pair.ir, "vi": pair.vi}
    if isinstance(fuser, PairFuser):
        files["fused"] = fuser.source(pair.stem)
    return files


def _source_hashes(recorded: dict[str, Any], fuser: Any, pair: Pair) -> dict[str, str | None]:
    """sha256 of each input: the pair's as ``prepare`` recorded them (``recorded``: its manifest entry),
    the others (an imported file) hashed here."""
    return {name: recorded.get(f"{name}_sha256") or (sha256_file(path) if path and path.is_file() else None)
            for name, path in source_files(fuser, pair).items()}


# --- the job: plan what to do, then do it -------------------------------------------------------

class FuseJob:
    """Fuse one method over (a shard of) the benchmark, skipping what a previous run finished.

    Planning happens on construction (``todo`` lists the pairs left); :meth:`run` is a generator
    of :class:`Outcome`, so the caller drives progress reporting and may stop it at any time.
    """

    def __init__(self, benchmark: Benchmark, method: str, fuser: Any, *, fingerprint: dict[str, Any],
                 info: dict[str, Any] | None = None, splits: Iterable[str] = SPLITS,
                 shard: Shard = Shard(), force: bool = False, hash_workers: int = 4):
        check_method_name(method)
        self.benchmark, self.method, self.fuser = benchmark, method, fuser
        self.out = benchmark.fused_dir(method)
        self.shard = shard
        self.header = {"method": method, "fingerprint": fingerprint, **(info or {}),
                       "versions": package_versions(FUSE_PACKAGES), "shard": f"{shard.index}/{shard.count}"}
        self.pairs = shard.select([p for split in splits for p in benchmark.pairs(split)])
        link_labels(benchmark, self.out)
        previous = {} if force else _valid_entries(self.out, fingerprint)
        recorded = {p["stem"]: p for p in benchmark.manifest.get("pairs", [])}
        with ThreadPoolExecutor(hash_workers) as pool:
            sources = list(pool.map(lambda p: _source_hashes(recorded.get(p.stem, {}), fuser, p), self.pairs))
            done = list(pool.map(lambda ps: self._finished(*ps, previous), zip(self.pairs, sources)))
        self.sources = {p.stem: s for p, s in zip(self.pairs, sources)}
        self.entries = {p.stem: previous[p.stem] for p, ok in zip(self.pairs, done) if ok}
        self.todo = [p for p, ok in zip(self.pairs, done) if not ok]
        for pair in self.todo:
            _remove_temporaries(benchmark.fused_image(method, pair.split, pair.stem))
        if self.todo:
            self._mark_incomplete()

    def _mark_incomplete(self) -> None:
        """Images are about to change: until this run (or its last shard) finishes, later stages must not
        take the set for complete, else they would read a mix of old and new images."""
        main = read_manifest(self.out / MANIFEST)
        if main and main.get("complete"):
            _write_json(self.out / MANIFEST, {**main, "complete": False})

    def _finished(self, pair: Pair, sources: dict[str, str | None], previous: dict[str, dict]) -> bool:
        entry = previous.get(pair.stem)
        output = self.benchmark.fused_image(self.method, pair.split, pair.stem)
        return (entry is not None and entry.get("split") == pair.split and entry.get("sources") == sources
                and output.is_file() and sha256_file(output) == entry.get("sha256"))

    @property
    def manifest_path(self) -> Path:
        return self.out / MANIFEST if self.shard.count == 1 else self.out / "shards" / f"{self.shard.name}.json"

    def save(self) -> None:
        """This run's entries so far (the set is marked complete only by :meth:`finalize`)."""
        manifest = {**self.header, "complete": False, "images": dict(sorted(self.entries.items()))}
        _write_json(self.manifest_path, manifest)

    def run(self, workers: int = 1, batch_size: int = 1) -> Iterator[Outcome]:
        """Fuse the pairs left, yielding each outcome as it finishes; the manifest is kept up to date."""
        if isinstance(self.fuser, BatchFuser):
            outcomes = self._batched(max(1, batch_size), max(1, workers))
        elif workers > 1:
            outcomes = self._in_processes(workers)
        else:
            outcomes = (self._one(pair) for pair in self.todo)
        last_save, unsaved = time.monotonic(), False
        try:
            for outcome in outcomes:
                if outcome.entry is not None:
                    self.entries[outcome.stem], unsaved = outcome.entry, True
                if unsaved and time.monotonic() - last_save >= SAVE_EVERY_S:
                    self.save()
                    last_save, unsaved = time.monotonic(), False
                yield outcome
        finally:
            outcomes.close()
            if unsaved:
                self.save()
        self.finalize()

    def finalize(self) -> bool:
        """Merge every manifest of this set (shards included); mark it complete when all stems are there."""
        entries = _valid_entries(self.out, self.header["fingerprint"])
        entries.update(self.entries)
        expected = {p.stem: p.split for p in self.benchmark.pairs()}
        complete = all(stem in entries and entries[stem]["split"] == split for stem, split in expected.items())
        if complete or self.shard.count == 1:
            merged = {**self.header, "shard": "1/1", "complete": complete,
                      "images": dict(sorted((s, entries[s]) for s in expected if s in entries))}
            _write_json(self.out / MANIFEST, merged)
        return complete

    # -- three ways to run, one entry format --

    def _entry(self, pair: Pair, output: Path, seconds: float) -> dict[str, Any]:
        return {"split": pair.split, "sha256": sha256_file(output), "seconds": round(seconds, 6),
                "sources": self.sources[pair.stem]}

    def _write(self, pair: Pair, fused: np.ndarray, seconds: float) -> Outcome:
        output = self.benchmark.fused_image(self.method, pair.split, pair.stem)
        write_image(output, fused)
        return Outcome(pair.stem, self._entry(pair, output, seconds))

    def _one(self, pair: Pair) -> Outcome:
        try:
            return self._write(pair, *fuse_pair(self.fuser, pair))
        except ImageError as error:
            return Outcome(pair.stem, error=str(error))

    def _checked_write(self, pair: Pair, fused: np.ndarray, seconds: float) -> Outcome:
        try:
            _check_output(fused, pair)
        except ImageError as error:
            return Outcome(pair.stem, error=str(error))
        return self._write(pair, fused, seconds)

    def _in_processes(self, workers: int) -> Iterator[Outcome]:
        """CPU fusers: each worker process gets the fuser once and fuses + writes whole images."""
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                   initargs=(self, os.getpid()))
        try:
            futures = [pool.submit(_worker_fuse, pair) for pair in self.todo]
            for future in as_completed(futures):
                yield future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _batched(self, batch_size: int, threads: int) -> Iterator[Outcome]:
        """Learned fusers: batches on the accelerator, reading ahead and writing in threads."""
        batches = [self.todo[i : i + batch_size] for i in range(len(self.todo))[::batch_size]]
        pool = ThreadPoolExecutor(threads)
        try:
            loading = _submit_loads(pool, batches[0]) if batches else []
            for index, batch in enumerate(batches):
                loaded, loading = loading, _submit_loads(pool, batches[index + 1]) if index + 1 < len(batches) else []
                ready, inputs = [], []
                for pair, future in zip(batch, loaded):
                    try:
                        inputs.append(future.result())
                        ready.append(pair)
                    except ImageError as error:
                        yield Outcome(pair.stem, error=str(error))
                if not ready:
                    continue
                start = time.perf_counter()
                fused = self.fuser.fuse_batch(inputs)
                seconds = (time.perf_counter() - start) / len(ready)
                writes = [pool.submit(self._checked_write, pair, image, seconds) for pair, image in zip(ready, fused)]
                for future in writes:
                    yield future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _submit_loads(pool: Executor, batch: list[Pair]) -> list[Future]:
    return [pool.submit(load_pair, pair) for pair in batch]


_WORKER_JOB: FuseJob | None = None


def _init_worker(job: FuseJob | None, parent_pid: int) -> None:
    import cv2

    global _WORKER_JOB
    die_with_parent(parent_pid)  # a killed `fuse` must not leave its workers running
    cv2.setNumThreads(1)  # one image per process; OpenCV's own threads would oversubscribe the cores
    _WORKER_JOB = job


def _worker_fuse(pair: Pair) -> Outcome:
    assert _WORKER_JOB is not None
    return _WORKER_JOB._one(pair)


# --- the folder around the images ---------------------------------------------------------------

def link_labels(benchmark: Benchmark, out: Path) -> None:
    """``<fused>/<M>/labels -> ../../labels`` (a copy where symlinks are unavailable)."""
    link = out / "labels"
    if link.is_symlink() or link.exists():
        return
    out.mkdir(parents=True, exist_ok=True)
    try:
        link.symlink_to(Path("..") / ".." / "labels", target_is_directory=True)
    except FileExistsError:  # another shard of this set, starting at the same moment, made it
        return
    except OSError:
        staging = out / ".labels.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(benchmark.root / "labels", staging)
        staging.rename(link)


def _remove_temporaries(output: Path) -> None:
    """Temporary files a killed writer left for this image (the names fusionbench.files.atomic_write_bytes uses)."""
    if output.parent.is_dir():
        for leftover in output.parent.glob(f".{output.name}.*.tmp"):
            leftover.unlink(missing_ok=True)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_text_if_changed(path, json.dumps(data, indent=1))  # a no-op rerun keeps the manifest's mtime


def _valid_entries(out: Path, fingerprint: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Entries of every manifest of this set made under ``fingerprint`` (others are stale)."""
    entries: dict[str, dict[str, Any]] = {}
    for path in [out / MANIFEST, *sorted((out / "shards").glob("*.json"))]:
        manifest = read_manifest(path)
        if manifest and manifest.get("fingerprint") == fingerprint:
            entries.update(manifest.get("images", {}))
    return entries


def fuse_set(benchmark: Benchmark, method: str, fuser: Any, *, fingerprint: dict[str, Any],
             info: dict[str, Any] | None = None, splits: Iterable[str] = SPLITS, workers: int = 1,
             batch_size: int = 1, shard: Shard = Shard(), force: bool = False, progress: bool = True) -> Path:
    """Write ``method``'s fused set (or one shard of it) and return its folder.

    Raises :class:`FuseError` naming every image that failed; the others are kept.
    """
    remove_foreign_images(benchmark, method)
    job = FuseJob(benchmark, method, fuser, fingerprint=fingerprint, info=info, splits=splits,
                  shard=shard, force=force)
    skipped = len(job.pairs) - len(job.todo)
    log.info("%s: %d images to fuse, %d already done (%s)", method, len(job.todo), skipped, job.out)
    failures: list[str] = []
    outcomes = job.run(workers=workers, batch_size=batch_size)
    with closing(outcomes), tqdm(total=len(job.todo), desc=method, unit="img", disable=not progress,
                                 file=sys.stderr) as bar:
        for outcome in outcomes:
            bar.update()
            if outcome.error:
                failures.append(outcome.error)
                log.error("%s", outcome.error)
    if failures:
        shown = "\n  ".join(failures[:SHOWN_FAILURES])
        more = f"\n  ... and {len(failures) - SHOWN_FAILURES} more (see the log)" if len(failures) > SHOWN_FAILURES else ""
        raise FuseError(f"{method}: {len(failures)} of {len(job.pairs)} images failed:\n  {shown}{more}")
    return job.out


def remove_foreign_images(benchmark: Benchmark, method: str) -> list[Path]:
    """Delete fused images whose (split, stem) is not in the benchmark's current split lists.

    After ``prepare`` is rerun with another seed or strategy, an image left in its old split folder
    would leak into the detector's training set (ultralytics reads whole folders).
    """
    wanted = {benchmark.fused_image(method, p.split, p.stem) for p in benchmark.pairs()}
    foreign = [path for path in sorted((benchmark.fused_dir(method) / "images").glob("*/*.png")) if path not in wanted]
    for path in foreign:
        path.unlink()
    if foreign:
        log.warning("%s: removed %d fused images not in the current splits (benchmark re-prepared?)", method, len(foreign))
    return foreign


