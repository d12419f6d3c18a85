"""Deletion that cannot leave a stage's own folder.

A method name is also a folder name: ``detect --method ../fusion --force`` once deleted the trained
fusers, ``--method . --force`` every method's results. Every stage deletes through
:func:`remove_inside`, which checks the resolved path first and logs what it removes.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from fusionbench.errors import FusionBenchError

log = logging.getLogger(__name__)


class UnsafeDeletionError(FusionBenchError):
    """A path that a stage was about to delete lies outside that stage's folder."""


def remove_inside(path: Path, stage_root: Path, reason: str) -> bool:
    """Delete ``path`` (a folder, file or link) when it lies strictly inside ``stage_root``; say what and
    why in the log. Returns whether something was removed; raises before touching anything otherwise."""
    root = stage_root.resolve()
    resolved = path.parent.resolve() / path.name  # a link is judged by where it is, then removed as a link
    if resolved == root or root not in resolved.parents or path.name in ("", ".", ".."):
        raise UnsafeDeletionError(f"{path}: refusing to delete it ({reason}): it is not inside {root}")
    if not (path.exists() or path.is_symlink()):
        return False
    log.warning("removing %s (%s)", resolved, reason)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(resolved)
    else:
        resolved.unlink()
    return True
