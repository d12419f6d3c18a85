"""A fused set inside a prepared benchmark: the contract between ``fuse`` and every stage that reads it.

``<bench>/fused/<method>/`` holds ``images/{split}/<stem>.png`` and ``manifest.json`` (method,
fingerprint, ``complete`` flag, one entry ``{split, sha256, seconds, sources}`` per image; written by
:mod:`fusion.engine`). A set is usable only when it is complete and every image holds exactly the bytes
its entry records: :func:`fused_set_problems` says why not, :func:`fused_set_identity` is the content
hash later stages record to notice a redone set. Neutral: fusers, tasks and stages all read it.
"""
from __future__ import annotations

import hashlib
import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fusionbench.benchmark import Benchmark, Pair
from fusionbench.errors import FusionBenchError
from fusionbench.files import sha256_file
from fusionbench.layout import MANIFEST

METHOD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class MethodNameError(FusionBenchError, ValueError):
    """A method name that cannot name a folder inside a stage's own folder."""


def check_method_name(method: str) -> None:
    """Refuse names that are not one plain folder name (``..``, ``.``, ``a/b``, ...) before any file is touched."""
    if not METHOD_NAME.fullmatch(method) or method in (".", ".."):
        raise MethodNameError(f"method name {method!r}: use letters, digits, '_', '-' or '.' (it names a folder)")


def manifest_path(benchmark: Benchmark, method: str) -> Path:
    """The fuse manifest of ``method``'s set."""
    return benchmark.fused_dir(method) / MANIFEST


def read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # a missing or unreadable manifest only means the images get redone


def fused_set_problems(benchmark: Benchmark, method: str, hash_workers: int = 4) -> list[str]:
    """Why ``method``'s fused set cannot be used by later stages (empty: it is complete).

    Every image of every split must have its manifest entry and hold exactly the bytes recorded there
    (sha256): a file that merely exists may be truncated, overwritten or damaged."""
    path = manifest_path(benchmark, method)
    manifest = read_manifest(path)
    if not manifest:
        return [f"{path}: missing or unreadable"]
    if not manifest.get("complete"):
        return [f"{path}: the set is not complete (an unfinished or interrupted fuse run)"]
    images = manifest.get("images", {})

    def problem(pair: Pair) -> str | None:
        path, entry = benchmark.fused_image(method, pair.split, pair.stem), images.get(pair.stem, {})
        if entry.get("split") != pair.split:
            return f"{path}: no manifest entry for {pair.stem!r} in split {pair.split!r}"
        if not path.is_file():
            return f"{path}: missing"
        if sha256_file(path) != entry.get("sha256"):
            return f"{path}: content differs from the fuse manifest (damaged or edited)"
        return None

    with ThreadPoolExecutor(hash_workers) as pool:  # hashlib releases the GIL
        return [p for p in pool.map(problem, benchmark.pairs()) if p]


def is_complete(benchmark: Benchmark, method: str) -> bool:
    """True when ``method``'s fused set has every image of every split, each with the content its
    manifest records (what later stages wait for)."""
    return not fused_set_problems(benchmark, method)


def fused_set_identity(benchmark: Benchmark, method: str) -> str:
    """sha256 of what a complete fused set holds (every image's split and content hash): later stages
    record it and notice when the set they were computed from has been redone."""
    images = (read_manifest(manifest_path(benchmark, method)) or {}).get("images", {})
    content = sorted((stem, entry.get("split"), entry.get("sha256")) for stem, entry in images.items())
    return hashlib.sha256(json.dumps(content).encode()).hexdigest()


class FusedSetError(FusionBenchError):
    """A fused set a stage needs is missing, incomplete or damaged."""


def check_fused_set(benchmark: Benchmark, method: str) -> None:
    """Raise :class:`FusedSetError` unless ``method``'s set is complete with the content its manifest records."""
    problems = fused_set_problems(benchmark, method)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; ... and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise FusedSetError(f"{benchmark.fused_dir(method)}: fused set {method!r} is missing or incomplete "
                            f"(run `pipelines fuse --method {method}`): {shown}")
