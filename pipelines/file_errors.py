"""An ``OSError`` (full disk, permission, missing folder) as the one line a user needs: stage, path, cause."""
from __future__ import annotations


def os_error_line(stage: str, error: OSError) -> str:
    """``"<stage>: <path>: <cause>"``; the path is the one the operating system reported, if any."""
    paths = [str(p) for p in (error.filename, error.filename2) if p is not None]
    cause = error.strerror or str(error) or type(error).__name__
    return f"{stage}: {' -> '.join(paths) or '(no file named by the system)'}: {cause}"
