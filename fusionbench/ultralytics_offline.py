"""Ultralytics without a network, and its checkpoints without running code: shared by every task that
trains through ultralytics (detection's YOLO rows, segmentation's YOLO26-sem row).

Ultralytics 8.4 reaches the network in these places during training, validation and prediction, each
avoided as follows:

- import time: ``is_online()`` resolves DNS names -> ``YOLO_OFFLINE=1`` makes it return False;
- dataset check (``check_det_dataset``) and label plots: ``check_font("Arial.ttf")`` downloads the font
  unless a file of that name sits in its config folder -> we copy matplotlib's DejaVuSans there under the
  names Arial.ttf and Arial.Unicode.ttf (only used to draw text on plots);
- ``amp=True`` on CUDA: ``check_amp`` downloads yolo26n.pt into its weights folder -> we train with
  ``amp=False`` unless the caller gives that file (``amp_check_weights``), which we copy there;
- a weights name that is not an existing file (``YOLO("yolov5su.pt")``) is downloaded -> callers pass
  checked paths only (e.g. ``detection.yolo.model_source``);
- telemetry (``events``) -> settings ``sync=False``; the Platform callback (active only with an API key)
  -> no ``api_key`` in the settings and ``ULTRALYTICS_API_KEY`` removed from the environment; the logger integrations
  (clearml, comet, dvc, mlflow, raytune, tensorboard, wandb) are switched off in the settings too.

Checkpoints are pickles, and a pickle may run any command when loaded: ultralytics' default loader
unpickles everything, so ``ULTRALYTICS_SAFE_LOAD`` switches it to its restricted loader (``weights_only``
plus an allow-list of its model classes) for every load, a planted ``last.pt`` or a foreign weights
file included; :func:`load_checkpoint` reads one that way and says in one line why it refused.

Every run gets its own config folder (``YOLO_CONFIG_DIR``), so its settings file never touches the
user's global one. The folder is read once, when ultralytics is imported: ``use_offline_ultralytics``
must therefore run before anything imports ultralytics; if it was imported earlier (another stage in the
same process), the fonts and settings go into the folder that import chose.
"""
from __future__ import annotations

import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Iterator

from fusionbench.errors import FusionBenchError
from fusionbench.unpickling import refusal_message, refused_global

FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")


class CheckpointRefusedError(FusionBenchError):
    """A checkpoint that names code outside ultralytics' model format: it is not loaded."""


class DamagedCheckpointError(FusionBenchError):
    """A checkpoint that cannot be read (empty, truncated, not a checkpoint)."""


INTEGRATIONS_OFF = {
    "sync": False, "api_key": "", "clearml": False, "comet": False, "dvc": False, "mlflow": False,
    "raytune": False, "tensorboard": False, "wandb": False, "vscode_msg": False, "openvino_msg": False,
}


def use_offline_ultralytics(config_dir: str | Path) -> ModuleType:
    """Import ultralytics configured never to reach the network; returns the ``ultralytics`` module.

    ``config_dir`` holds ultralytics' settings and fonts for this run.
    """
    config_dir = Path(config_dir).resolve()
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["ULTRALYTICS_SAFE_LOAD"] = "1"  # read at import: every checkpoint load is restricted (weights_only)
    os.environ.pop("ULTRALYTICS_API_KEY", None)  # the Platform callback streams to the cloud when a key is set
    if "ultralytics" not in sys.modules:
        os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
    import ultralytics
    from ultralytics.utils import SETTINGS, USER_CONFIG_DIR

    _install_fonts(Path(USER_CONFIG_DIR))
    SETTINGS.update(INTEGRATIONS_OFF)
    _restrict_checkpoint_loading()
    return ultralytics


def _restrict_checkpoint_loading() -> None:
    """Every checkpoint ultralytics loads (``YOLO(path)``, resuming, a pre-trained model) goes through its
    restricted loader, which refuses a pickle that names code. The flag is a module constant read from
    ``ULTRALYTICS_SAFE_LOAD`` at import, so an earlier import (another stage in this process) is switched too."""
    import ultralytics.utils
    from ultralytics.nn import tasks

    ultralytics.utils.SAFE_LOAD = tasks.SAFE_LOAD = True


def _install_fonts(folder: Path) -> None:
    """Put a TTF under the names ultralytics looks for, so ``check_font`` finds it locally."""
    import matplotlib

    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    folder.mkdir(parents=True, exist_ok=True)
    for name in FONT_NAMES:
        target = folder / name
        if not target.is_file():
            tmp = target.with_name(f".{name}.tmp")
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)


def install_amp_check_weights(path: str | Path) -> None:
    """Give ultralytics' CUDA AMP self-test its model (yolo26n.pt) from a local file instead of a download."""
    from ultralytics.utils import WEIGHTS_DIR

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: AMP check weights not found (yolo26n.pt from "
            "https://github.com/ultralytics/assets/releases); or train with detect.amp=false"
        )
    target = Path(WEIGHTS_DIR) / "yolo26n.pt"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


def load_checkpoint(path: Path) -> dict:
    """An ultralytics checkpoint read by ultralytics' restricted loader (``weights_only`` plus its allow-list of
    model classes): a planted or downloaded file cannot run code. Raises :class:`CheckpointRefusedError` for a
    file that names anything else, :class:`DamagedCheckpointError` for one that cannot be read at all."""
    from ultralytics.nn.tasks import torch_safe_load

    try:
        checkpoint, _ = torch_safe_load(str(path), safe_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises RuntimeError, EOFError, KeyError ... for a damaged file
        name = refused_global(error)
        if name:
            raise CheckpointRefusedError(refusal_message(path, name)) from None
        cause = error.__cause__ or error
        raise DamagedCheckpointError(f"{path}: cannot be loaded ({type(cause).__name__}: "
                                     f"{str(cause).splitlines()[0] if str(cause) else 'empty'})") from None
    return checkpoint


def training_finished(last: Path) -> bool:
    """Ultralytics strips the optimizer (epoch -1) from last.pt once the final epoch is done."""
    return load_checkpoint(last).get("epoch") == -1


@contextmanager
def cpu_threads(count: int | None = None) -> Iterator[None]:
    """Run ultralytics on ``count`` CPU threads (default: the process's torch threads: all cores, or a local
    worker's share of them), then give the caller its own setting.

    Ultralytics sets torch's process-wide thread count to ``cpu_count - 1`` whenever it selects a device:
    one thread on a 2-core machine, and every later stage of the same process would inherit it.
    """
    import torch
    from ultralytics.utils import torch_utils

    before, default = torch.get_num_threads(), torch_utils.NUM_THREADS
    torch_utils.NUM_THREADS = max(1, int(count or before))
    try:
        yield
    finally:
        torch_utils.NUM_THREADS = default
        torch.set_num_threads(before)
