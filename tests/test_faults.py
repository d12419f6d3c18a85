"""Fault handling: file modes under the umask, worker processes dying with their parent, a damaged
detector checkpoint, and a full disk or other OSError reported as one line per method."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from fusion.io import atomic_write_text, write_image


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomic_writes_respect_the_umask(tmp_path: Path, umask: int):
    """Observation 10: every file was 0600 whatever the umask (mkstemp)."""
    before = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        write_image(tmp_path / "b.png", __import__("numpy").zeros((4, 4), "uint8"))
        reference = tmp_path / "reference"
        reference.write_text("{}")  # what a plain open() makes under this umask
    finally:
        os.umask(before)
    expected = stat.S_IMODE(reference.stat().st_mode)
    assert expected == 0o666 & ~umask
    for name in ("a.json", "b.png"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.png", "reference"]  # no temporaries left
