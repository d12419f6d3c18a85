"""Published split files in and out: plain lists and TarDAL's ``scenario.json``.

In (``pipelines prepare --split-file PATH``, repeatable):

- a file ``train.txt``, ``val.txt`` or ``test.txt`` (the file name says the split), one stem or
  file name per line;
- a directory holding some of those three files; when it also holds ``SHA256SUMS`` (written by
  ``export-split``) every listed file is checked against it;
- TarDAL's ``scenario.json`` (shipped with M3FD as ``meta/scenario.json``): scenarios of scenes,
  each with a ``mode`` and frame ``range``s ``{min, max}`` (inclusive). Mode ``train`` -> train;
  ``val`` and ``test`` -> test (TarDAL evaluates on its "val" frames; val is carved from train here).

Names are matched to the dataset's stems after these normalisations, applied to both sides:
surrounding white space and line endings (CRLF) removed, blank lines and ``#`` comments skipped;
any directory part removed (``/`` or ``\\``); one image or annotation suffix removed (``.png``,
``.jpg``, ``.jpeg``, ``.bmp``, ``.tif``, ``.tiff``, ``.xml``, ``.txt``, any case); an ``M3FD_``
prefix removed (any case; TarDAL's file names); all-digit names compared as numbers, so zero
padding does not matter (``12`` = ``00012``). Two dataset stems that normalise alike are an error.

Every problem is an error naming the file and line: a name that matches no pair, a pair listed
twice (in one split or in two), pairs in no list (listed; refused, or put in the split named by
``unlisted``). A split without val gets val carved from train by :func:`carve_val`.

Out (``pipelines export-split``): :func:`export_split` writes the three lists and ``SHA256SUMS``.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from fusionbench.benchmark import CHECKSUMS, SPLITS
from pipelines.prepare.problems import PrepareError

log = logging.getLogger("pipelines.prepare")

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".xml", ".txt")
PREFIX = "m3fd_"
SCENARIO_MODES = {"train": "train", "val": "test", "test": "test"}
LISTED = 20   # names shown per problem before "... and N more"


@dataclass(frozen=True)
class Entry:
    name: str      # as written in the file
    split: str
    origin: str    # "file:line", or the scenario and scene


@dataclass
class SplitFiles:
    entries: list[Entry] = field(default_factory=list)
    files: list[dict] = field(default_factory=list)   # {"path", "sha256", "splits"} for the manifest


def normalise(name: str) -> str:
    """The key a name is matched by (module docstring)."""
    name = name.strip().replace("\\", "/").rsplit("/", 1)[-1]
    if name.lower().endswith(SUFFIXES):
        name = name[: name.rindex(".")]
    if name.lower().startswith(PREFIX):
        name = name[len(PREFIX):]
    return str(int(name)) if name.isdigit() else name


def read_split_files(paths: Sequence[str | Path]) -> SplitFiles:
    """Every entry of the given split files, directories and scenario files."""
    found = SplitFiles()
    for given in paths:
        path = Path(given).expanduser()
        if path.is_dir():
            lists = [path / f"{s}.txt" for s in SPLITS if (path / f"{s}.txt").is_file()]
            if not lists:
                raise PrepareError(f"{path}: no train.txt, val.txt or test.txt in this split folder")
            _verify_checksums(path, lists)
            for item in lists:
                _read_list(item, item.stem, found)
        elif not path.is_file():
            raise PrepareError(f"{path}: split file not found")
        elif path.suffix.lower() == ".json":
            _read_scenario(path, found)
        elif path.suffix.lower() == ".txt" and path.stem.lower() in SPLITS:
            _read_list(path, path.stem.lower(), found)
        else:
            raise PrepareError(f"{path}: a split file must be named train.txt, val.txt or test.txt (the name says "
                               f"the split), be a folder of them, or a TarDAL scenario .json")
    return found


def _read_list(path: Path, split: str, found: SplitFiles) -> None:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise PrepareError(f"{path}: not UTF-8 text ({error})") from error
    for number, line in enumerate(text.splitlines(), 1):
        name = line.strip()
        if name and not name.startswith("#"):
            found.entries.append(Entry(name, split, f"{path}:{number}"))
    found.files.append({"path": str(path.resolve()), "sha256": hashlib.sha256(data).hexdigest(), "splits": [split]})


def _read_scenario(path: Path, found: SplitFiles) -> None:
    data = path.read_bytes()
    try:
        scenarios = json.loads(data)
        splits = set()
        for scenario in scenarios:
            for scene in scenario["scene"]:
                mode = str(scene["mode"])
                if mode not in SCENARIO_MODES:
                    raise PrepareError(f"{path}: scene {scene.get('name')!r} of {scenario.get('name')!r} has mode "
                                       f"{mode!r}; expected one of {list(SCENARIO_MODES)}")
                split = SCENARIO_MODES[mode]
                splits.add(split)
                for frames in scene["range"]:
                    first, last = int(frames["min"]), int(frames["max"])
                    if last < first:
                        raise PrepareError(f"{path}: scene {scene.get('name')!r} has range min {first} > max {last}")
                    origin = f"{path}: scenario {scenario.get('name')!r}, scene {scene.get('name')!r}"
                    found.entries += [Entry(str(frame), split, origin) for frame in range(first, last + 1)]
    except (json.JSONDecodeError, TypeError, KeyError, ValueError) as error:
        if isinstance(error, PrepareError):
            raise
        raise PrepareError(f"{path}: not a TarDAL scenario file (a list of {{name, scene: [{{name, mode, "
                           f"range: [{{min, max}}]}}]}}): {error!r}") from error
    found.files.append({"path": str(path.resolve()), "sha256": hashlib.sha256(data).hexdigest(),
                        "splits": sorted(splits)})


def _verify_checksums(folder: Path, lists: list[Path]) -> None:
    sums = folder / CHECKSUMS
    if not sums.is_file():
        return
    expected = {}
    for line in sums.read_text().splitlines():
        digest, _, name = line.partition("  ")
        expected[name.strip()] = digest.strip()
    for item in lists:
        actual = hashlib.sha256(item.read_bytes()).hexdigest()
        if expected.get(item.name) != actual:
            raise PrepareError(f"{item}: sha256 {actual} differs from {expected.get(item.name)} in {sums}: "
                               f"the list was changed after it was exported")


@dataclass(frozen=True)
class Imported:
    assignment: dict[str, str]     # stem -> split, for every kept pair
    unlisted: list[str]            # kept pairs no list named (put in the ``unlisted`` split)
    listed_but_skipped: list[str]  # listed pairs left out because their files have problems


def assign(found: SplitFiles, stems: Iterable[str], skipped: Iterable[str], unlisted: str | None) -> Imported:
    """Match every entry to a pair: stem -> split for the ``stems`` kept; errors list every problem."""
    stems, skipped = sorted(stems), set(skipped)
    keys: dict[str, str] = {}
    clashes = []
    for stem in sorted({*stems, *skipped}):
        key = normalise(stem)
        if key in keys:
            clashes.append(f"{keys[key]!r} and {stem!r}")
        keys[key] = stem
    if clashes:
        raise PrepareError("dataset stems that a split file cannot tell apart (zero padding or M3FD_ prefix): "
                           + _listing(clashes))
    first: dict[str, Entry] = {}
    unknown, twice = [], []
    for entry in found.entries:
        stem = keys.get(normalise(entry.name))
        if stem is None:
            unknown.append(f"{entry.origin}: {entry.name!r}")
        elif stem in first:
            where = "in both" if first[stem].split != entry.split else "twice in"
            twice.append(f"{entry.origin}: {entry.name!r} is {where} {first[stem].split}"
                         + (f" and {entry.split}" if where == "in both" else "") + f" (first at {first[stem].origin})")
        else:
            first[stem] = entry
    errors = []
    if unknown:
        errors.append(f"{len(unknown)} name(s) match no pair of the dataset: " + _listing(unknown))
    if twice:
        errors.append(f"{len(twice)} pair(s) listed more than once: " + _listing(twice))
    missing = [s for s in stems if s not in first]
    if missing and unlisted is None:
        errors.append(f"{len(missing)} pair(s) of the dataset are in no split list: " + _listing(missing)
                      + "\n  (put them in a split with data.split.unlisted: train, val or test)")
    if errors:
        files = ", ".join(f["path"] for f in found.files)
        raise PrepareError(f"split file(s) {files}:\n" + "\n".join(errors))
    if missing:
        log.warning("%d pair(s) in no split list put in %s: %s", len(missing), unlisted, _listing(missing))
    assignment = {s: first[s].split if s in first else str(unlisted) for s in stems}
    return Imported(assignment, missing, sorted(s for s in first if s in skipped))


def carve_val(assignment: dict[str, str], ratios: Sequence[float], seed: int) -> tuple[dict[str, str], int]:
    """Without any val pair, move ``round(n_train * val / (train + val))`` train pairs (ratios), chosen
    with ``numpy.random.default_rng(seed)`` from the sorted train stems, to val. Returns the new
    assignment and the number moved (0 when val was given or its ratio is 0)."""
    if "val" in assignment.values() or ratios[1] <= 0:
        return dict(assignment), 0
    train = sorted(s for s, split in assignment.items() if split == "train")
    count = round(len(train) * ratios[1] / (ratios[0] + ratios[1]))
    chosen = {train[i] for i in np.random.default_rng(seed).permutation(len(train))[:count]}
    return {s: "val" if s in chosen else split for s, split in assignment.items()}, count


def _listing(items: list[str]) -> str:
    shown = "\n".join(f"  - {item}" for item in items[:LISTED])
    more = f"\n  ... and {len(items) - LISTED} more" if len(items) > LISTED else ""
    return "\n" + shown + more
