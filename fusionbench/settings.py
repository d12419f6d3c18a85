"""The base of every typed settings section (the config's own and each downstream task's).

Neutral, so a task module (``detection/``, ``segmentation/``, a test's toy task) declares its section
with the same rules as the config schema: unknown keys are errors, values are checked on assignment.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A config section: unknown keys are errors, values are checked on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
