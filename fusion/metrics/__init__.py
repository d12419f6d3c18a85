"""Fusion-quality metrics under each toolkit's convention (README: "Fusion metric conventions").

* :mod:`.conventions` - the choices of each toolkit, as data (``cddfuse`` default, ``vifb``, ``exact``);
* :mod:`.registry` - every metric with its direction, reference, conventions and degenerate values;
* :mod:`.images` - reading files and checking arrays the way each convention expects;
* :mod:`.intensity`, :mod:`.information`, :mod:`.difference`, :mod:`.vif`, :mod:`.structure`,
  :mod:`.gradients`, :mod:`.contrast` - one set of metric implementations;
* :mod:`.evaluate` - one triple, every metric of a convention.
"""
from fusion.metrics.conventions import CONVENTIONS, DEFAULT_CONVENTION, Convention, ConventionError, get_convention
from fusion.metrics.evaluate import evaluate, evaluate_files, metric_names
from fusion.metrics.images import MetricInputError, read_image
from fusion.metrics.registry import REGISTRY, MetricInfo, direction

__all__ = ["CONVENTIONS", "DEFAULT_CONVENTION", "Convention", "ConventionError", "MetricInfo",
           "MetricInputError", "REGISTRY", "direction", "evaluate", "evaluate_files", "get_convention",
           "metric_names", "read_image"]
