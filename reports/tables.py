"""Result tables with best / second-best marks, written as HTML (for the page), CSV and LaTeX.

A table is a DataFrame indexed by method. A result that was not produced (a method not yet detected)
holds the string :data:`MISSING` and is shown as "missing", never as 0; a value that exists but is
undefined (NaN, e.g. SCD of the IR source itself) is shown as "n/a". Strings are shown as they are.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fusionbench.files import atomic_write_text

MISSING = "missing"
UNDEFINED = "n/a"


@dataclass
class Table:
    """``frame`` indexed by method; ``ranked`` maps a column to "max" or "min" (which value is best)."""

    name: str
    title: str
    frame: pd.DataFrame
    ranked: dict[str, str] = field(default_factory=dict)
    digits: int = 3
    note: str = ""

    def cell_text(self, method: str, column: str) -> str:
        value = self.frame.at[method, column]
        if isinstance(value, str):
            return value
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return UNDEFINED
        if isinstance(value, float):
            return f"{value:.{self.digits}f}" if math.isfinite(value) else ("inf" if value > 0 else "-inf")
        return str(value)

    def marks(self, column: str) -> dict[str, int]:
        """Rank 1 (best) and 2 (second best) per method for a ranked column; ties share a rank."""
        direction = self.ranked.get(column)
        if not direction:
            return {}
        values = pd.to_numeric(self.frame[column], errors="coerce").dropna()
        distinct = sorted(set(values), reverse=direction == "max")[:2]
        return {method: distinct.index(v) + 1 for method, v in values.items() if v in distinct}

    def rows(self) -> list[tuple[str, list[tuple[str, int]]]]:
        """(method, [(text, rank or 0) per column]) in table order."""
        marks = {column: self.marks(column) for column in self.frame.columns}
        return [(method, [(self.cell_text(method, c), marks[c].get(method, 0)) for c in self.frame.columns])
                for method in self.frame.index]

    def to_csv(self) -> str:
        buffer = io.StringIO()
        self.frame.to_csv(buffer, index_label="method", na_rep=UNDEFINED)
        return buffer.getvalue()

    def to_latex(self) -> str:
        """A booktabs tabular: best in bold, second best underlined."""
        style = {1: r"\textbf{%s}", 2: r"\underline{%s}"}
        lines = [r"\begin{tabular}{l" + "r" * len(self.frame.columns) + "}", r"\toprule",
                 " & ".join(["Method", *map(_latex_escape, self.frame.columns)]) + r" \\", r"\midrule"]
        for method, cells in self.rows():
            texts = [style[rank] % _latex_escape(text) if rank else _latex_escape(text) for text, rank in cells]
            lines.append(" & ".join([_latex_escape(method), *texts]) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}", ""]
        return "\n".join(lines)

    def write(self, folder: Path) -> dict[str, str]:
        """Write ``<name>.csv`` and ``<name>.tex`` into ``folder``; return their names for links."""
        atomic_write_text(folder / f"{self.name}.csv", self.to_csv())
        atomic_write_text(folder / f"{self.name}.tex", self.to_latex())
        return {"csv": f"{folder.name}/{self.name}.csv", "tex": f"{folder.name}/{self.name}.tex"}


def _latex_escape(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#")):
        text = text.replace(char, escaped)
    return text
