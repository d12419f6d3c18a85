"""Files written so that a killed run never leaves half a file, and content hashes.

Every stage writes through these: a reader (a later stage, a rerun) sees either the old file or the
complete new one, never a truncated one; new files get the permissions of the user's umask.
"""
from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes to ``path`` so that readers see either the old file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except OSError as error:  # a write to a descriptor names no file (a full disk said only "Errno 28")
        tmp.unlink(missing_ok=True)
        raise OSError(error.errno, error.strerror, str(path)) from error
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new file beside ``path`` with mode 0666 minus the umask, as ``open`` makes it. Not
    ``tempfile.mkstemp`` (always 0600), nor reading the umask with ``os.umask(0)``, which would let
    files other threads create meanwhile be world-writable."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_text_if_changed(path: str | os.PathLike, text: str) -> None:
    """Atomic write, skipped when the file already holds exactly ``text``: a no-op rerun leaves the file
    (and its date) alone."""
    path = Path(path)
    if not path.is_file() or path.read_text() != text:
        atomic_write_text(path, text)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
