"""Versions recorded in manifests and reports."""
from __future__ import annotations

import platform
from importlib import metadata

from fusion.provenance import package_versions


def test_installed_and_missing_packages():
    absent = "fusionbench-no-such-package"
    found = package_versions(["fusionbench", "numpy", absent])
    assert found == {"python": platform.python_version(), "fusionbench": metadata.version("fusionbench"),
                     "numpy": metadata.version("numpy")}
    assert package_versions([absent], missing="not installed")[absent] == "not installed"
