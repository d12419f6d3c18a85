"""Readable logs on the console and in ``<run dir>/logs/<stage>.log``."""
from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

from pipelines.config import run_layout

if TYPE_CHECKING:
    from pipelines.schema import Config

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(config: "Config", stage: str, read_only: bool = False) -> logging.Logger:
    """Console and log file; ``read_only``: a stage that only reads the run logs to the console alone when
    the run folder cannot be written (an archived run)."""
    log_path = run_layout(config).log(stage)
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        file = logging.FileHandler(log_path)
    except OSError as error:
        if not read_only:
            raise
        file = None
        note = f"{log_path}: not writable ({error.strerror}): logging to the console only"
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in list(root.handlers):
        if getattr(handler, "_pipelines", False):
            root.removeHandler(handler)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handlers = [console]
    if file is not None:
        file.setFormatter(logging.Formatter(FORMAT))
        handlers.append(file)
    for handler in handlers:
        handler._pipelines = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    log = logging.getLogger(f"pipelines.{stage}")
    if file is None:
        log.warning("%s", note)
    return log
