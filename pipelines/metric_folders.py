"""Metrics of fused folders from anywhere: pair ``fused/``, ``ir/`` and ``vi/`` files by stem, score
them, write ``metrics.csv`` (one row per image) and ``summary.csv`` (one row) without a run."""
from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from fusionbench.errors import FusionBenchError
from fusionbench.files import atomic_write_text
from fusionbench.pairing import IMAGE_SUFFIXES, index_folder
from pipelines.metrics import metric_summary, score_triples, summary_columns


class FolderPairingError(FusionBenchError):
    """Folders whose files do not pair one to one by stem."""


def images_by_stem(folder: Path, role: str) -> dict[str, Path]:
    """Stem -> image file of ``folder`` under the project's one pairing rule (hidden files ignored, a
    stem twice or a control character in a name refused); other files are errors naming them."""
    if not folder.is_dir():
        raise FolderPairingError(f"{role} folder {folder}: not a directory")
    index = index_folder(folder)
    problems = [message for _, message in index.problems()]
    problems += [f"{path}: not an image file (expected {', '.join(IMAGE_SUFFIXES)})"
                 for path in sorted(folder.iterdir())
                 if path.is_file() and not path.name.startswith(".") and path.suffix.lower() not in IMAGE_SUFFIXES]
    if problems:
        raise FolderPairingError(f"{role} folder {folder}: " + "; ".join(problems))
    if not index.files:
        raise FolderPairingError(f"{role} folder {folder}: no images")
    return index.files


def paired_triples(fused: Path, ir: Path, vi: Path) -> list[tuple[str, Path, Path, Path]]:
    """(stem, fused, IR, VI) for every stem, sorted; a stem missing from a folder is an error."""
    folders = {"fused": images_by_stem(fused, "fused"), "ir": images_by_stem(ir, "ir"),
               "vi": images_by_stem(vi, "vi")}
    stems = set().union(*folders.values())
    unpaired = {role: sorted(stems - set(files)) for role, files in folders.items() if stems - set(files)}
    if unpaired:
        detail = "; ".join(f"missing in {role}: {', '.join(names[:10])}" + (" ..." if len(names) > 10 else "")
                           for role, names in unpaired.items())
        raise FolderPairingError(f"unpaired images ({detail})")
    return [(stem, folders["fused"][stem], folders["ir"][stem], folders["vi"][stem]) for stem in sorted(stems)]


def score_folders(fused: Path, ir: Path, vi: Path, out: Path, convention: str, workers: int = 1) -> Path:
    """Write ``out/metrics.csv`` and ``out/summary.csv`` (method = the fused folder's name)."""
    triples = paired_triples(Path(fused), Path(ir), Path(vi))
    frame = score_triples(triples, convention, workers, Path(fused).name)
    metrics = tuple(frame.columns[1:])
    row = {"method": Path(fused).name, "convention": convention, **metric_summary(frame, metrics)}
    summary = pd.DataFrame([row], columns=[c for c in summary_columns(metrics) if c in row])
    out.mkdir(parents=True, exist_ok=True)
    for name, table in (("metrics.csv", frame), ("summary.csv", summary)):
        buffer = io.StringIO()
        table.to_csv(buffer, index=False, float_format="%.10g")
        atomic_write_text(out / name, buffer.getvalue())
    return out / "summary.csv"
