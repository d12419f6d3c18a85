"""Readable logs on the console and in ``<run dir>/logs/<stage>.log``."""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.config import run_layout

if TYPE_CHECKING:
    from pipelines.schema import Config

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(config: "Config", stage: str, read_only: bool = False) -> logging.Logger:
    """Log to the console and to the stage's log file; ``read_only``: a stage that only reads the run logs to
    the console alone, with a note, when the run folder cannot be written (an archived run)."""
    log_path = run_layout(config).log(stage)
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in list(root.handlers):
        if getattr(handler, "_pipelines", False):
            root.removeHandler(handler)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    file = _log_file(log_path, read_only)
    for handler in (console, file):
        if handler is not None:
            handler._pipelines = True  # type: ignore[attr-defined]
            root.addHandler(handler)
    log = logging.getLogger(f"pipelines.{stage}")
    if file is None:
        log.warning("%s: not writable: logging to the console only", log_path)
    return log


def _log_file(path: Path, read_only: bool) -> logging.Handler | None:
    """The log file's handler; None when a read-only stage cannot write it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path)
    except OSError:
        if not read_only:
            raise
        return None
    handler.setFormatter(logging.Formatter(FORMAT))
    return handler
