"""Checkpoint-shaped files whose loading would run a command: every loader must refuse them unrun."""
from __future__ import annotations

import os
from pathlib import Path

import torch


class RunsCommand:
    """A pickle that creates ``marker`` when it is loaded by an unrestricted unpickler."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def plant_pickle(path: Path, marker: Path) -> Path:
    """A checkpoint-shaped file whose loading would run a command."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 0, "model": RunsCommand(marker)}, path)
    return path


def refused(path: Path) -> str:
    return f"{path}: refused to load: it names posix.system"
