"""Fusers and everything about fused images.

The CPU selective scan runs numba's thread pool right after torch's OpenMP pool; with OpenMP's
default active waiting the idle pool spins and steals the cores (a small scan call cost 15-20x its
work). Passive waiting must be chosen before torch loads its OpenMP runtime, so it is set here, on
the first import of the package, unless the user chose otherwise.
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
