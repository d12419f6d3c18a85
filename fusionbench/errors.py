"""The one base class of the errors a user can fix.

The CLI prints a :class:`FusionBenchError` as one clean line and exits 2; any other exception is a
bug and keeps its traceback. Library code raises a subclass with a message that names the file, key
or value and the problem.
"""
from __future__ import annotations


class FusionBenchError(Exception):
    """A problem with the user's input, files or environment, explained in its message."""
