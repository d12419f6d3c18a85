"""Readable logs on the console and in ``<run dir>/logs/<stage>.log``."""
from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

from pipelines.config import run_dir

if TYPE_CHECKING:
    from pipelines.schema import Config

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(config: "Config", stage: str) -> logging.Logger:
    log_dir = run_dir(config) / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in list(root.handlers):
        if getattr(handler, "_pipelines", False):
            root.removeHandler(handler)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    file = logging.FileHandler(log_dir / f"{stage}.log")
    file.setFormatter(logging.Formatter(FORMAT))
    for handler in (console, file):
        handler._pipelines = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    return logging.getLogger(f"pipelines.{stage}")
