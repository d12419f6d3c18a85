"""detect.amp reaches ultralytics as given (false, true, 'fp16', 'bf16'), not coerced to a bool:
'bf16' is ultralytics 8.4's bf16 autocast without the AMP self-test (and its download)."""
from __future__ import annotations

import pytest

from detection.task import train_settings
from detection.yolo import TrainSettings, TrainSettingsError
from pipelines.config import load_config


def settings(amp) -> TrainSettings:
    return TrainSettings(epochs=1, imgsz=64, batch=2, workers=0, seed=0, amp=amp)


@pytest.mark.parametrize("amp, needs_check", [(False, False), (True, True), ("fp16", True), ("bf16", False)])
def test_modes_pass_ultralytics_own_check(amp, needs_check):
    from ultralytics.cfg import check_cfg

    args = {"amp": settings(amp).amp}
    check_cfg(args)  # raises for a value ultralytics 8.4 does not accept
    assert args["amp"] == amp and type(args["amp"]) is type(amp)
    assert settings(amp).needs_amp_check is needs_check


@pytest.mark.parametrize("amp", ["bf17", "true", 1, None])
def test_other_values_are_named(amp):
    with pytest.raises(TrainSettingsError, match=repr(amp).replace("'", ".")):
        settings(amp)


def test_config_value_is_not_coerced():
    assert train_settings(load_config("sample", ["detect.amp=bf16"]).detect, seed=0).amp == "bf16"
    assert train_settings(load_config("sample", ["detect.amp=true"]).detect, seed=0).amp is True
