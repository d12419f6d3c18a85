"""One writer per run folder and per benchmark folder, enforced with ``fcntl`` locks.

Two commands writing into the same folder corrupt each other's work (two ``run-all`` deleted each
other's detector trainings). Commands that write across a whole run (``prepare``, ``run-all``,
``metrics``, ``report``) hold an exclusive ``flock`` on ``<folder>/.fusionbench.lock`` for their whole
life. Commands that write one method's outputs (``fuse``, ``detect``, ``train-fusion``) hold that lock
shared, plus an exclusive lock for each method (and fuse shard) they write, so one detector per GPU
and a fused set's shards still run side by side; a downstream command (``detect``, ``segment``) also holds
the locks of the fused sets it reads shared, so a ``fuse`` that would rewrite one meanwhile is refused. The
same method twice, or a method beside a whole-run writer, is refused at once with the holder's host, pid and command line (recorded in the lock
file). The kernel drops a lock when its process dies, so a lock left by a killed run is taken over.

On a cluster the jobs of one run lock the same files from several nodes: that holds where the shared
filesystem makes ``flock`` coherent across nodes (NFSv4; Lustre mounted ``-o flock``; not Lustre ``-o
localflock`` nor NFSv3 without a lock manager, where each node sees only its own locks). A record's pid
is probed only when it was written on this host: a pid of another node means nothing here.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from fusionbench.errors import FusionBenchError

LOCK_NAME = ".fusionbench.lock"
NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)
HOST = socket.gethostname()


class RunLockedError(FusionBenchError):
    """Another live process is writing into the same folder or the same method's outputs."""


@contextmanager
def file_lock(path: Path, *, shared: bool = False, argv: list[str] | None = None) -> Iterator[Path]:
    """Hold the lock of the file ``path`` (created if missing) until the block ends. The file lists
    its holders, one JSON line each: the exclusive one, or every live shared one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            what = path.parent if path.name == LOCK_NAME else path.parent / path.name[1:].removesuffix(".lock")
            raise RunLockedError(f"{what}: in use by {_describe_holders(path)}; wait for it to finish "
                                 f"(two writers would overwrite each other's results)") from None
        me = {"host": HOST, "pid": os.getpid(), "argv": list(sys.argv if argv is None else argv)}
        holders = [*(_live_holders(path) if shared else []), me]
        os.ftruncate(fd, 0)
        os.pwrite(fd, "".join(json.dumps(h) + "\n" for h in holders).encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@contextmanager
def folders_locked(folders: Iterable[Path], *, shared: bool = False, argv: list[str] | None = None,
                   read_only: bool = False) -> Iterator[list[Path]]:
    """The locks of several folders (each once, in a fixed order so two commands cannot deadlock).

    ``read_only``: the command only reads these folders, so one it cannot write (an archived run on a
    read-only disk or without write permission) is read without its lock; yields those folders."""
    unique = sorted({Path(folder).resolve() for folder in folders})
    unlocked = []
    with ExitStack() as stack:
        for folder in unique:
            try:
                stack.enter_context(file_lock(folder / LOCK_NAME, shared=shared, argv=argv))
            except OSError as error:
                if not (read_only and error.errno in NOT_WRITABLE):
                    raise
                unlocked.append(folder)
        yield unlocked


def method_lock_path(stage_root: Path, method: str, part: str = "") -> Path:
    """Lock file of one method's outputs under a stage folder (beside, not inside, the method's folder,
    which ``--force`` may delete): ``<stage_root>/.<method>[.<part>].lock``."""
    return stage_root / f".{method}{'.' + part if part else ''}.lock"


def _live_holders(path: Path) -> list[dict]:
    """The holders recorded in ``path`` whose process is still running (one on another host is kept: its
    pid cannot be probed from here; the lock itself, not this record, is what excludes)."""
    holders = []
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            holder = json.loads(line)
            if holder.get("host", HOST) == HOST:
                os.kill(int(holder["pid"]), 0)
        except (ValueError, KeyError, TypeError, ProcessLookupError):
            continue
        except PermissionError:  # alive, owned by another user
            pass
        holders.append(holder)
    return holders


def _describe_holders(path: Path) -> str:
    holders = _live_holders(path)
    if not holders:
        return "another process (it has not recorded its pid yet)"
    return ", ".join(f"pid {h['pid']} on {h.get('host', HOST)} ({' '.join(map(str, h.get('argv', [])))})"
                     for h in holders)
