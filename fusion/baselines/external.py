"""Import fused images produced by a published method's own code (DeFusion, DDFM, EMMA, CDDFuse, ...).

Many methods only release code, so the benchmark takes their outputs as a folder: each pair's
result is found by file stem anywhere under the folder (flat or in sub-folders, any image suffix),
checked against the pair's size, and converted to the benchmark's RGB convention. Grey results
(one channel, or three equal channels) get the visible chroma back like every classical fuser here,
unless ``keep_grey`` is set. Unlike the other fusers it is keyed by the pair, not by the images:
call :meth:`ExternalFuser.fuse_pair`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from fusion.color import recolor, to_uint8
from fusion.registry import FuserError, register
from fusionbench.images import IMAGE_SUFFIXES, ImageError, read_vi


class PairLike(Protocol):
    stem: str
    vi: Path
    width: int
    height: int


def index_folder(folder: Path) -> dict[str, Path]:
    """Stem -> image file under ``folder``; two files with one stem are an error naming both."""
    if not folder.is_dir():
        raise FuserError(f"{folder}: folder of fused images not found")
    index: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith(".") or not path.is_file():
            continue
        if path.stem in index:
            raise FuserError(f"{folder}: two fused images for {path.stem!r}: {index[path.stem]} and {path}")
        index[path.stem] = path
    return index


@dataclass(frozen=True)
class ExternalFuser:
    folder: Path
    keep_grey: bool = False
    files: dict[str, Path] = field(default_factory=dict, repr=False)

    def source(self, stem: str) -> Path | None:
        """The imported file for ``stem`` (None when missing)."""
        return self.files.get(stem)

    def fuse_pair(self, pair: PairLike) -> np.ndarray:
        """The imported result for ``pair`` as uint8 RGB; missing or wrong-size files are errors."""
        path = self.source(pair.stem)
        if path is None:
            raise ImageError(f"{self.folder}: no fused image for {pair.stem!r} (expected {pair.stem}.png or "
                             f"another image suffix)")
        image = read_vi(path)
        height, width = image.shape[:2]
        if (width, height) != (pair.width, pair.height):
            raise ImageError(f"{path}: size {width}x{height}, but pair {pair.stem!r} is "
                             f"{pair.width}x{pair.height}")
        grey = image if image.ndim == 2 else image[..., 0] if _is_grey(image) else None
        if grey is None:
            return to_uint8(image)
        return recolor(grey, read_vi(pair.vi), keep_grey=self.keep_grey)


def _is_grey(rgb: np.ndarray) -> bool:
    return bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]))


@register("external")
def _external(folder: str | Path, keep_grey: bool = False) -> ExternalFuser:
    folder = Path(folder).resolve()
    return ExternalFuser(folder, bool(keep_grey), index_folder(folder))
