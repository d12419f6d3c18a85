"""Pairing infrared and visible images by file stem: the one rule every IR/VI folder pair follows.

``pipelines prepare`` (every dataset layout) and the learned fusers' extra training folders both
use it, so a folder that prepares cleanly also trains cleanly, and the other way round.

API::

    index_folder(folder, suffixes=IMAGE_SUFFIXES, ignore=()) -> FolderIndex
        the files of one folder whose suffix (any case) is in ``suffixes``, keyed by stem;
        ``.duplicates`` (stem -> files: ``a.png`` and ``a.jpg``), ``.bad_names`` (names holding
        control characters) and ``.problems()`` (one message per problem, naming the file).
    pair_folders(ir_dir, vi_dir, suffixes=IMAGE_SUFFIXES) -> Pairing
        ``.pairs`` (``ImagePair(stem, ir, vi)`` sorted by stem, only stems that are neither
        duplicated nor badly named), ``.ir_only`` / ``.vi_only`` (files without a partner),
        ``.problems()`` and ``.complete()``: the pairs, or :class:`PairingError` listing every problem.

Rules: a stem is the file name without its last suffix, compared exactly (case-sensitive, as on the
file system). A stem present twice in one folder is an error, never "the last one wins": nothing says
which file is meant. A name with a control character (newline, tab, ...: Unicode category Cc) is an
error: it breaks every line-based list that later names the file. Hidden files (``.name``) and
sub-folders are not images and are ignored.
"""
from __future__ import annotations

import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from fusionbench.errors import FusionBenchError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class PairingError(FusionBenchError):
    """IR/VI folders whose files do not pair up one to one; the message lists every file concerned."""


def has_control_characters(name: str) -> bool:
    """True when ``name`` holds a control character (newline, tab, carriage return, DEL, ...)."""
    return any(unicodedata.category(char) == "Cc" for char in name)


@dataclass(frozen=True)
class FolderIndex:
    folder: Path
    files: dict[str, Path]                                   # stem -> file, unique and well-named stems only
    duplicates: dict[str, list[Path]] = field(default_factory=dict)
    bad_names: list[Path] = field(default_factory=list)

    def problems(self) -> list[tuple[str, str]]:
        """(stem, message) for every duplicated stem and every badly named file."""
        found = [(stem, f"{self.folder}: duplicate stem {stem!r} "
                        f"({', '.join(sorted(p.name for p in paths))}); keep one file per stem")
                 for stem, paths in sorted(self.duplicates.items())]
        found += [(path.stem, f"{self.folder}: file name {path.name!r} holds a control character "
                              f"(newline, tab, ...); rename the file") for path in self.bad_names]
        return found


def index_folder(folder: str | Path, suffixes: Iterable[str] = IMAGE_SUFFIXES,
                 ignore: Iterable[str] = ()) -> FolderIndex:
    """Files of ``folder`` by stem (suffix matched in any case; stems in ``ignore``, lower case, skipped)."""
    folder = Path(folder)
    wanted = {s.lower() for s in suffixes}
    skipped = {s.lower() for s in ignore}
    found: dict[str, list[Path]] = defaultdict(list)
    bad = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in wanted or not path.is_file():
            continue
        if path.stem.lower() in skipped:
            continue
        if has_control_characters(path.name):
            bad.append(path)
            continue
        found[path.stem].append(path)
    duplicates = {stem: paths for stem, paths in found.items() if len(paths) > 1}
    files = {stem: paths[0] for stem, paths in found.items() if len(paths) == 1}
    return FolderIndex(folder, files, duplicates, bad)


@dataclass(frozen=True)
class ImagePair:
    stem: str
    ir: Path
    vi: Path


@dataclass(frozen=True)
class Pairing:
    ir: FolderIndex
    vi: FolderIndex

    @property
    def pairs(self) -> list[ImagePair]:
        return [ImagePair(stem, self.ir.files[stem], self.vi.files[stem])
                for stem in sorted(self.ir.files.keys() & self.vi.files.keys())]

    @property
    def ir_only(self) -> list[Path]:
        """Infrared files whose stem has no visible file at all (not counting duplicated stems)."""
        return [self.ir.files[s] for s in sorted(self.ir.files.keys() - self._vi_stems)]

    @property
    def vi_only(self) -> list[Path]:
        return [self.vi.files[s] for s in sorted(self.vi.files.keys() - self._ir_stems)]

    @property
    def _ir_stems(self) -> set[str]:
        return set(self.ir.files) | set(self.ir.duplicates)

    @property
    def _vi_stems(self) -> set[str]:
        return set(self.vi.files) | set(self.vi.duplicates)

    def problems(self) -> list[tuple[str, str]]:
        """(stem, message) for every file that does not pair up, sorted by stem."""
        found = self.ir.problems() + self.vi.problems()
        found += [(p.stem, f"{p}: infrared image without a visible image in {self.vi.folder}") for p in self.ir_only]
        found += [(p.stem, f"{p}: visible image without an infrared image in {self.ir.folder}") for p in self.vi_only]
        return sorted(found)

    def complete(self) -> list[ImagePair]:
        """The pairs when every file pairs up; otherwise :class:`PairingError` listing every problem."""
        problems = self.problems()
        if problems:
            raise PairingError(f"{self.ir.folder} / {self.vi.folder}: {len(problems)} file(s) do not pair up:\n"
                               + "\n".join(f"  - {message}" for _, message in problems))
        if not self.pairs:
            raise PairingError(f"{self.ir.folder}: no images (suffixes {', '.join(IMAGE_SUFFIXES)})")
        return self.pairs


def pair_folders(ir_dir: str | Path, vi_dir: str | Path, suffixes: Iterable[str] = IMAGE_SUFFIXES) -> Pairing:
    """Pair the images of ``ir_dir`` and ``vi_dir`` by stem (see the module docstring for the rules)."""
    suffixes = tuple(suffixes)
    return Pairing(index_folder(ir_dir, suffixes), index_folder(vi_dir, suffixes))
