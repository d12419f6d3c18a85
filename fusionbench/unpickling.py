"""Reading checkpoints a user or a run folder supplies without running code from them.

A pickle may name any importable function (``os.system``) and have it called while loading, so every
checkpoint is read with ``torch.load(weights_only=True)`` (or ultralytics' restricted loader, which
is that plus an allow-list of its model classes). Such a load refuses a file that names anything else
and says which global it refused; :func:`refused_global` finds that name, so the refusal can be one
line naming the file instead of torch's page of advice to load it unsafely.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path

_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def refused_global(error: BaseException) -> str | None:
    """The global (``posix.system``) a ``weights_only`` load refused, when that is what ``error`` or its
    cause says; None for anything else (an empty, truncated or foreign file)."""
    for candidate in (error, error.__cause__):
        if isinstance(candidate, pickle.UnpicklingError):
            match = _GLOBAL.search(str(candidate))
            if match:
                return match.group(1)
    return None


def refusal_message(path: str | Path, name: str) -> str:
    """One line saying that ``path`` was refused, and why."""
    return (f"{path}: refused to load: it names {name}, which a checkpoint of weights never needs (a file that "
            f"would run code when unpickled?); nothing in it was run. Use a file you trust.")
