"""Fusers and everything about fused images.

OpenMP waiting, chosen here because libgomp reads it once, when torch loads it: torch (its bundled
libgomp) and numba's CPU scan (the system's libgomp) each keep a thread pool, and an idle pool spins
before it sleeps. Spinning without end would let one pool steal the cores from the other; not
spinning at all (OMP_WAIT_POLICY=PASSIVE, this package's earlier choice) puts torch's threads to sleep
after each of its many small operations, which made the sample's YOLOv5n epochs and its S4Fusion
training steps 2x slower. A short spin, about a millisecond, is fastest for both (``bench/bench_omp_wait.py``).
A user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT is left as it is.
"""
import os

OPENMP_WAITING = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")  # the variables libgomp reads for it
OMP_SPIN_COUNT = "100000"  # libgomp's unit: ~100,000 spins per millisecond; its own default is 300,000

if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", OMP_SPIN_COUNT)


def openmp_waiting() -> dict[str, str | None]:
    """The OpenMP waiting this process runs with, as benches record it."""
    return {name: os.environ.get(name) for name in OPENMP_WAITING}
