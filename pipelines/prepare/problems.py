"""Problems found while validating a raw dataset.

Every check reports a :class:`Problem` instead of raising, so one run lists *every* broken
file at once. By default the run then stops with the full list; with ``skip_bad`` the pairs
concerned are left out and listed in the manifest.
"""
from __future__ import annotations

from dataclasses import dataclass

from fusionbench.errors import FusionBenchError


class PrepareError(FusionBenchError):
    """The raw dataset cannot be turned into a benchmark; the message says why and where."""


@dataclass(frozen=True)
class Problem:
    stem: str          # the pair concerned (skipped with ``skip_bad``)
    message: str       # names the file and what is wrong with it


def summarise(problems: list[Problem], limit: int = 50) -> str:
    """One line per problem (at most ``limit``), most useful first: sorted by pair name."""
    ordered = sorted(problems, key=lambda p: (p.stem, p.message))
    lines = [f"  - {p.message}" for p in ordered[:limit]]
    if len(ordered) > limit:
        lines.append(f"  ... and {len(ordered) - limit} more")
    stems = len({p.stem for p in problems})
    head = f"{len(problems)} problem(s) in {stems} pair(s):"
    return "\n".join([head, *lines])
