"""Which software made a file: the versions recorded in manifests and reports, so that a result
can be traced to the code and libraries that produced it."""
from __future__ import annotations

import platform
from importlib import metadata
from typing import Iterable


def package_versions(packages: Iterable[str], missing: str | None = None) -> dict[str, str]:
    """Python's version and each package's installed version; a package that is not installed
    maps to ``missing``, or is left out where ``missing`` is None."""
    found = {"python": platform.python_version()}
    for package in packages:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            if missing is not None:
                found[package] = missing
    return found
