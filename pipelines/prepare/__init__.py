"""Dataset preparation: a raw IR/VI dataset folder -> the benchmark folder of :mod:`fusionbench.benchmark`.

Modules, in the order the work happens: :mod:`.layouts` (finding and pairing files),
:mod:`.images` (decoding, size check, hashes), :mod:`.annotations` (VOC/YOLO boxes, clipping),
:mod:`.problems` (collecting what is wrong), :mod:`.split` (random and scene splits, leakage),
:mod:`.writers` (YOLO, COCO, split lists), :mod:`.build` (the whole run).
"""
from pipelines.prepare.build import (
    SCENE_THRESHOLD,
    prepare_benchmark,
    prepare_from_config,
)
from pipelines.prepare.problems import PrepareError

__all__ = ["SCENE_THRESHOLD", "PrepareError", "prepare_benchmark", "prepare_from_config"]
