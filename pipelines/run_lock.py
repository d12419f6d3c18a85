"""One writer per run folder and per benchmark folder, enforced with ``fcntl`` locks.

Two commands writing into the same folder corrupt each other's work (two ``run-all`` deleted each
other's detector trainings). Every writing command therefore holds an exclusive ``flock`` on
``<folder>/.fusionbench.lock`` for its whole life; a second writer is refused at once with the
holder's pid and command line, which the holder records in the lock file. The kernel drops the lock
when its process dies, so a lock left by a killed run is simply taken over.
"""
from __future__ import annotations

import fcntl
import json
import os
import sys
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from fusionbench.errors import FusionBenchError

LOCK_NAME = ".fusionbench.lock"


class RunLockedError(FusionBenchError):
    """Another live process is writing into the same folder."""


@contextmanager
def folder_lock(folder: Path, argv: list[str] | None = None) -> Iterator[Path]:
    """Hold the exclusive lock of ``folder`` (created if missing) until the block ends."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLockedError(f"{folder}: in use by {_describe_holder(path)}; wait for it to finish "
                                 f"(two writers would overwrite each other's results)") from None
        holder = {"pid": os.getpid(), "argv": list(sys.argv if argv is None else argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@contextmanager
def folders_locked(folders: Iterable[Path], argv: list[str] | None = None) -> Iterator[None]:
    """The locks of several folders (each once, in a fixed order so two commands cannot deadlock)."""
    unique = sorted({Path(folder).resolve() for folder in folders})
    with ExitStack() as stack:
        for folder in unique:
            stack.enter_context(folder_lock(folder, argv))
        yield


def _describe_holder(path: Path) -> str:
    try:
        holder = json.loads(path.read_text())
        return f"pid {holder['pid']} ({' '.join(holder['argv'])})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (it has not recorded its pid yet)"
