"""Issue #22's observations outside the freshness rule: no code from checkpoints, inputs never outputs,
damaged inputs, the schema, SIGTERM, one-line user errors in run-all, and performance knobs outside
every identity. Each observation's test failed on the code before its fix; a few beside them check that
what must keep working (a real checkpoint, the default references, a truncated image under `exact`) still does."""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from planted import plant_pickle, refused
from runs import MODEL

from detection.yolo import TrainSettings, model_source, read_selection, select, train, write_data_yaml
from fusionbench.benchmark import Benchmark
from fusionbench.ultralytics_offline import (
    CheckpointRefusedError,
    load_checkpoint,
    training_finished,
    use_offline_ultralytics,
)
from pipelines.cli import cli
from pipelines.config import load_config, run_layout
from pipelines.fuse import fuse_method


def run_config(folder: Path, benchmark: Path, methods: tuple[str, ...], report: Path) -> Path:
    """A config file: the sample overlay, the run in ``folder/runs``, the given benchmark and report folders."""
    path = folder / "run.yaml"
    path.write_text(f"extends: sample\nrun: {{root: {folder / 'runs'}, name: t}}\ndata: {{benchmark: {benchmark}}}\n"
                    f"fusion: {{methods: [{', '.join(methods)}], workers: 1}}\nreport: {{dir: {report}}}\n")
    return path


def fused_copy(benchmark: Benchmark, folder: Path, methods: tuple[str, ...] = ("vi",)) -> tuple[Benchmark, Path]:
    """A private copy of ``benchmark`` with ``methods`` fused, and its config file."""
    root = folder / "benchmark"
    shutil.copytree(benchmark.root, root, ignore=shutil.ignore_patterns("fused", "*.cache"))
    config_file = run_config(folder, root, methods, folder / "report")
    for method in methods:
        fuse_method(load_config(config_file), method, progress=False)
    return Benchmark(root), config_file


@pytest.fixture(scope="module")
def tiny_detector(sample_benchmark: Benchmark, tmp_path_factory) -> tuple[Path, Path, Path]:
    """One epoch of YOLOv5s at 64 px on the sample's `vi` set: (data.yaml, training folder, config file)."""
    work = tmp_path_factory.mktemp("tiny_detector")
    bench, config_file = fused_copy(sample_benchmark, work)
    use_offline_ultralytics(work / "ultralytics")
    data = write_data_yaml(work / "data.yaml", bench.fused_dir("vi"), bench.classes)
    train_dir = train(data, work / "train", "yolov5s.yaml", TINY)
    return data, train_dir, config_file


TINY = TrainSettings(epochs=1, imgsz=64, batch=4, workers=0, seed=0, device="cpu")


# --- 1. no unpickling of code -------------------------------------------------------------------

def test_a_real_detector_checkpoint_loads_through_the_restricted_loader(tiny_detector):
    from ultralytics import YOLO
    from ultralytics.nn import tasks

    data, train_dir, _ = tiny_detector
    assert tasks.SAFE_LOAD  # every ultralytics load of this process is restricted
    assert training_finished(train_dir / "weights" / "last.pt")
    assert read_selection(train_dir / "weights" / "best_map50.pt")["epoch"] == 1
    classes = list(yaml.safe_load(data.read_text())["names"].values())
    assert list(YOLO(str(train_dir / "weights" / "best_map50.pt")).names.values()) == classes


@pytest.mark.parametrize("planted", ["last.pt", "best_map50.pt"])
def test_a_planted_detector_checkpoint_runs_nothing_and_is_refused(tiny_detector, tmp_path: Path, planted: str):
    """Observation High 1: a planted last.pt or best_map50.pt ran a command when the run was resumed or evaluated."""
    data, train_dir, _ = tiny_detector
    copy = shutil.copytree(train_dir, tmp_path / "train")
    marker = tmp_path / "ran"
    path = plant_pickle(copy / "weights" / planted, marker)
    with pytest.raises(CheckpointRefusedError, match=refused(path)):
        if planted == "last.pt":
            train(data, copy, "yolov5s.yaml", TINY)
        else:
            select(copy, "map50")
    assert not marker.exists()
    assert path.is_file()  # refused, not deleted as if it were merely damaged


def test_a_planted_best_checkpoint_in_an_interrupted_training_runs_nothing(tiny_detector, tmp_path: Path):
    """Resuming reads last.pt safely, but ultralytics' end-of-training strip_optimizer rereads best.pt unrestricted."""
    data, _, _ = tiny_detector
    train_dir, marker = tmp_path / "train", tmp_path / "ran"

    def stop_after_first_epoch(trainer):
        if trainer.epoch == 0:
            raise KeyboardInterrupt

    two_epochs = TrainSettings(epochs=2, imgsz=64, batch=4, workers=0, seed=0, device="cpu")
    with pytest.raises(KeyboardInterrupt):
        train(data, train_dir, "yolov5s.yaml", two_epochs, callbacks={"on_fit_epoch_end": stop_after_first_epoch})
    planted = plant_pickle(train_dir / "weights" / "best.pt", marker)
    with pytest.raises(CheckpointRefusedError, match=refused(planted)):
        train(data, train_dir, "yolov5s.yaml", two_epochs)
    assert not marker.exists() and not training_finished(train_dir / "weights" / "last.pt")


def test_foreign_detector_weights_run_nothing(tiny_detector, tmp_path: Path):
    """Observation High 1: `-s detect.weights=FILE` with a malicious FILE ran a command in ultralytics' loader."""
    from ultralytics import YOLO

    _, _, config_file = tiny_detector
    marker = tmp_path / "ran"
    weights = plant_pickle(tmp_path / "weights.pt", marker)
    result = CliRunner().invoke(cli, ["detect", "-c", str(config_file), "-m", "vi", "-s", f"detect.weights={weights}"])
    assert result.exit_code == 1 and refused(weights) in result.output
    with pytest.raises(CheckpointRefusedError, match=refused(weights)):
        model_source(weights, allow_scratch=False)
    with pytest.raises(TypeError, match="references types outside"):  # ultralytics' own loader, restricted too
        YOLO(str(weights))
    with pytest.raises(CheckpointRefusedError):
        load_checkpoint(weights)
    assert not marker.exists()


def test_learned_fuser_and_resnet50_loaders_run_nothing(tmp_path: Path):
    from fusion.learned.checkpoint import CheckpointError, read_payload
    from fusion.perception import WeightsError, build_resnet50

    marker = tmp_path / "ran"
    path = plant_pickle(tmp_path / "model.pkl", marker)
    with pytest.raises(CheckpointError, match=refused(path)):
        read_payload(path)
    with pytest.raises(WeightsError, match=refused(path)):
        build_resnet50(weights=path)
    assert not marker.exists()


# --- 2. inputs are never outputs ----------------------------------------------------------------

def generic_raw(root: Path, pairs: int = 12) -> Path:
    """A generic-layout dataset whose labels sit in ``labels/train/`` (with classes.txt), a label variant."""
    labels = root / "labels" / "train"
    for folder in (root / "ir", root / "vi", labels):
        folder.mkdir(parents=True)
    (labels / "classes.txt").write_text("person\ncar\n")
    rng = np.random.default_rng(0)
    for i in range(pairs):
        cv2.imwrite(str(root / "ir" / f"f{i:02d}.png"), rng.integers(0, 255, (48, 64), dtype=np.uint8))
        cv2.imwrite(str(root / "vi" / f"f{i:02d}.png"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
        (labels / f"f{i:02d}.txt").write_text("1 0.5 0.5 0.2 0.4\n")
    return root


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("inside", ["", "benchmark"])
def test_prepare_refuses_an_output_folder_in_the_raw_folder(tmp_path: Path, inside: str):
    """Observation High 6: `prepare --out` on the raw folder deleted its label files and classes.txt."""
    from pipelines.prepare import PrepareError, prepare_benchmark

    raw = generic_raw(tmp_path / "raw")
    before = tree(raw)
    out = raw / inside if inside else raw
    with pytest.raises(PrepareError, match=rf"output folder {out}: .*raw folder.*choose a folder outside it"):
        prepare_benchmark(raw, out, labels="train")
    assert tree(raw) == before


def test_prepare_deletes_only_label_files_it_wrote(tmp_path: Path):
    """A benchmark folder that already holds other files (a YOLO folder of the user's) keeps them."""
    from pipelines.prepare import prepare_benchmark

    raw = generic_raw(tmp_path / "raw")
    out = tmp_path / "bench"
    theirs = out / "labels" / "train" / "notes.txt"
    theirs.parent.mkdir(parents=True)
    theirs.write_text("mine\n")
    first = prepare_benchmark(raw, out, labels="train", seed=0).stems("train")
    second = prepare_benchmark(raw, out, labels="train", seed=1)
    assert first != second.stems("train")
    assert theirs.read_text() == "mine\n"
    for split in ("train", "val", "test"):  # the earlier split's label files are gone, the new ones there
        assert sorted(p.stem for p in second.labels_dir(split).glob("f*.txt")) == second.stems(split)


@pytest.fixture(scope="module")
def fused_run(sample_benchmark: Benchmark, tmp_path_factory) -> tuple[Benchmark, Path]:
    """The sample with `ir` and `vi` fused, and its config file (the run folder beside the benchmark)."""
    return fused_copy(sample_benchmark, tmp_path_factory.mktemp("fused_run"), ("ir", "vi"))


def test_metrics_refuses_a_method_name_that_leaves_the_run(fused_run):
    """Observation (medium): `metrics -m ../../benchmark/fused/ir` wrote outside the run folder and left a bogus row."""
    _, config_file = fused_run
    config = load_config(config_file)
    summary = run_layout(config).metrics.summary
    result = CliRunner().invoke(cli, ["metrics", "-c", str(config_file), "-m", "../../benchmark/fused/ir",
                                      "-s", "metrics.entropy=false"])
    assert result.exit_code == 2
    assert "method name '../../benchmark/fused/ir': use letters, digits" in result.output
    assert not summary.exists() and not (run_layout(config).root.parent / "benchmark" / "fused" / "ir" / "metrics.csv").exists()
    result = CliRunner().invoke(cli, ["metrics", "-c", str(config_file), "-m", "nope", "-s", "metrics.entropy=false"])
    assert result.exit_code == 2 and "no fused set 'nope' in " in result.output and not summary.exists()


def test_detect_force_checks_its_fused_set_before_deleting(fused_run):
    """Observation (low): `detect --force` deleted the method's results before finding its fused set missing."""
    _, config_file = fused_run
    config = load_config(config_file)
    results = run_layout(config).task("detection").model(MODEL).method("gff").folder / "seed0" / "results.json"
    results.parent.mkdir(parents=True)
    results.write_text("{}")
    result = CliRunner().invoke(cli, ["detect", "-c", str(config_file), "-m", "gff", "--force"])
    assert result.exit_code == 1 and "fused set 'gff' is missing or incomplete" in result.output
    assert results.read_text() == "{}"


def test_the_run_lock_of_a_read_only_run(tmp_path: Path, monkeypatch):
    """A folder where the lock file cannot be created: a reader goes on (with a note), a writer is refused."""
    import errno

    from pipelines.run_lock import LOCK_NAME, folders_locked

    real_open = os.open

    def read_only_open(path, flags, *args):
        if Path(path).name == LOCK_NAME:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only_open)
    with folders_locked([tmp_path], read_only=True) as unlocked:
        assert unlocked == [tmp_path.resolve()]
    with pytest.raises(OSError), folders_locked([tmp_path]):
        pass


@pytest.fixture()
def read_only(tmp_path: Path):
    """Bind-mounts a folder read-only (root only): even root cannot write there."""
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    mounted: list[Path] = []

    def mount(folder: Path) -> None:
        for command in (["mount", "--bind", str(folder), str(folder)],
                        ["mount", "-o", "remount,ro,bind", str(folder)]):
            if subprocess.run(command, capture_output=True).returncode:
                pytest.skip("cannot bind-mount here")
        mounted.append(folder)

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", str(folder)], check=True)


def test_a_read_only_run_can_be_reported(fused_run, tmp_path: Path, read_only):
    """Observation (low): a read-only (archived) run could not be reported: its lock and log needed writes."""
    bench, _ = fused_run
    archive = tmp_path / "archive"
    shutil.copytree(bench.root.parent, archive, symlinks=True, ignore=shutil.ignore_patterns("report", "run.yaml"))
    config = run_config(tmp_path, archive / "benchmark", ("ir", "vi"), tmp_path / "report")
    config.write_text(config.read_text().replace(str(tmp_path / "runs"), str(archive / "runs")))
    before = tree(archive)
    read_only(archive)
    result = CliRunner().invoke(cli, ["report", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert f"{archive / 'runs' / 't'}: not writable: reading it without its lock" in result.output
    assert (tmp_path / "report" / "index.html").is_file() and tree(archive) == before


# --- 3. damaged inputs --------------------------------------------------------------------------

@pytest.mark.parametrize("convention", ["cddfuse", "vifb", "ivif_zoo", "tang", "exact"])
@pytest.mark.parametrize("damage", ["empty file", "truncated image file"])
def test_a_damaged_fused_image_is_one_line_naming_it(tmp_path: Path, convention: str, damage: str):
    """Observation (medium): a zero-byte fused image crashed `metrics --fused` (cv2.imdecode before the checks)."""
    rng = np.random.default_rng(0)
    for role in ("fused", "ir", "vi"):
        (tmp_path / role).mkdir()
        for stem in ("a", "b"):
            cv2.imwrite(str(tmp_path / role / f"{stem}.png"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    damaged = tmp_path / "fused" / "b.png"
    damaged.write_bytes(b"" if damage == "empty file" else damaged.read_bytes()[:-40])
    result = CliRunner().invoke(cli, ["metrics", "--fused", str(tmp_path / "fused"), "--ir", str(tmp_path / "ir"),
                                      "--vi", str(tmp_path / "vi"), "--out", str(tmp_path / "out"),
                                      "--convention", convention])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines()[-1] == f"Error: {damaged}: {damage}"
    assert "Traceback" not in result.output


# --- 4. the schema refuses what would crash later -------------------------------------------------

@pytest.mark.parametrize(("override", "message"), [
    ("data.split.ratios=[.nan,.5,.5]", "data.split.ratios.0 = nan: Input should be a finite number"),
    ("fusion.train.lr_peak=.inf", "fusion.train.lr_peak = inf: Input should be a finite number"),
    ("detect.conf=.nan", "detect.conf = nan: Input should be a finite number"),
    ("detect.train_args={lr0: .nan}", "detect.train_args = {'lr0': nan}: lr0 = nan: not a finite number"),
    ("data.split.seed=4294967296", "data.split.seed = 4294967296: Input should be less than 4294967296"),
    ("sample.seed=4294967296", "sample.seed = 4294967296: Input should be less than 4294967296"),
    ("stats.seed=4294967296", "stats.seed = 4294967296: Input should be less than 4294967296"),
    ("run.seed=4294967296", "run.seed = 4294967296: Input should be less than 4294967296"),
    ("detect.seeds=[0,4294967296]", "detect.seeds = [0, 4294967296]: distinct seeds in [0, 2**32)"),
    ("detect.seeds=[0,-1]", "detect.seeds = [0, -1]: distinct seeds in [0, 2**32)"),
    ("fusion.train.extra=[{path: x, seed: 4294967296}]",
     "fusion.train.extra.0.seed = 4294967296: Input should be less than 4294967296"),
    ("detect.train_args={project: /tmp/elsewhere}", "detect.train_args = {'project': '/tmp/elsewhere'}: 'project' is "
                                                    "set by the detection protocol itself; use run.root"),
    ("detect.train_args={epochs: 3}", "'epochs' is set by the detection protocol itself; use detect.epochs"),
    ("methods.gff.r1=-5", "methods.gff: r1 = -5: Input should be greater than or equal to 0"),
    ("methods.gff.eps1=0", "methods.gff: eps1 = 0: Input should be greater than 0"),
    ("methods.laplacian.levels=2.5", "methods.laplacian: levels = 2.5: Input should be a valid integer"),
    ("methods.dwt.wavelet=nope", "methods.dwt: dwt: unknown discrete wavelet 'nope'"),
    ("methods.s4fusion.train.lr_peak=.nan", "methods.s4fusion: s4fusion.train: lr_peak = nan: Input should be a finite"),
    ("methods.smfnet.train.lr_gamma=2", "methods.smfnet: smfnet.train: lr_gamma = 2: Input should be less than or equal"),
    ("report.compare_to=[nope]", "report.compare_to = ['nope']: 'nope' is neither a configured method (ir, vi, "),
    ("stats.bootstrap=100000000000", "stats.bootstrap = 100000000000: at most 1,000,000: the draws are held at "
                                     "once, 100,000,000,000 x test images x 8 bytes = 745,058 GiB per 1,000 test"),
    ("stats.permutations=2000000", "stats.permutations = 2000000: at most 1,000,000"),
    ("detect.train_args=&x {a: *x}", "override 'detect.train_args=&x {a: *x}': a: a YAML alias refers to a node "
                                     "that contains it"),
])
def test_the_schema_refuses_values_that_would_crash_later(override: str, message: str):
    """Observations (medium and low): these were accepted and crashed (or ran for ever) in a later stage."""
    from pipelines.config import ConfigError

    with pytest.raises(ConfigError) as caught:
        load_config("sample", [override])
    assert message in str(caught.value)


def test_references_and_seeds_the_schema_still_takes():
    config = load_config("sample", ["report.compare_to=[gff,best]", "detect.seeds=[0,4294967295]",
                                    "fusion.methods=[vi,gff]"])
    assert config.report.compare_to == ["gff", "best"] and config.detect.seeds == [0, 2**32 - 1]
    default = load_config("sample", ["fusion.methods=[vi,gff]"])  # the default names ir, not configured here
    assert default.report.compare_to == ["ir", "vi", "best"]


def test_a_recursive_yaml_alias_in_a_config_file_is_one_line(tmp_path: Path):
    """Observation (medium): a recursive alias loaded, then crashed later with a RecursionError."""
    from pipelines.config import ConfigError

    path = tmp_path / "loop.yaml"
    path.write_text("extends: sample\ndetect: &d\n  train_args: *d\n")
    with pytest.raises(ConfigError, match=f"{path}: detect.train_args: a YAML alias refers to a node that contains it"):
        load_config(path)


def test_every_argument_the_protocol_gives_ultralytics_is_kept_out_of_train_args(tmp_path: Path, monkeypatch):
    """The schema's list of protocol arguments is the one detection.yolo.train passes (no more, no less)."""
    import ultralytics

    from detection.task import PROTOCOL_ARGS as DETECT_PROTOCOL_ARGS

    given: dict = {}

    class Recorder:
        def __init__(self, source):
            pass

        def add_callback(self, event, callback):
            pass

        def train(self, **arguments):
            given.update(arguments)

    monkeypatch.setattr(ultralytics, "YOLO", Recorder)
    train(tmp_path / "data.yaml", tmp_path / "train", "yolov5s.yaml", TrainSettings(
        epochs=1, imgsz=64, batch=4, workers=0, seed=0, extra={"lr0": 0.01}))
    assert set(given) - {"lr0"} == set(DETECT_PROTOCOL_ARGS)


# --- 5. SIGTERM ----------------------------------------------------------------------------------

SLOW_FUSE = '''
import sys, time
from pathlib import Path

import fusion.engine as fuse
from pipelines.cli import main

fused = Path(sys.argv[1])
original = fuse.fuse_pair


def slow(fuser, pair):
    """Fuses as before, then takes a while (and says which pair it fused)."""
    result = original(fuser, pair)
    time.sleep(0.3)
    with fused.open("a") as listing:
        listing.write(pair.stem + "\\n")
    return result


fuse.fuse_pair = slow
main(sys.argv[2:])
'''


def test_sigterm_saves_fuse_progress_says_how_to_resume_and_exits_143(sample_benchmark: Benchmark, tmp_path: Path):
    """Observation (low): SIGTERM ended fuse without the resume line and lost the images since its last save."""
    import json
    import signal
    import sys
    import time

    root = tmp_path / "benchmark"
    shutil.copytree(sample_benchmark.root, root, ignore=shutil.ignore_patterns("fused", "*.cache"))
    config = run_config(tmp_path, root, ("gff",), tmp_path / "report")
    command = ["fuse", "-c", str(config), "--method", "gff", "--no-progress"]
    script, fused = tmp_path / "slow_fuse.py", tmp_path / "fused.txt"
    script.write_text(SLOW_FUSE)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    process = subprocess.Popen([sys.executable, str(script), str(fused), *command], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while (not fused.is_file() or len(fused.read_text().split()) < 3) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1] == "interrupted; rerun the same command to resume"
    saved = json.loads((root / "fused" / "gff" / "manifest.json").read_text())["images"]
    listed = set(fused.read_text().split())  # fused before the signal; the last one may still be in flight
    assert len(saved) >= len(listed) - 1 >= 2 and not saved.keys() - listed
    rerun = subprocess.run([sys.executable, "-m", "pipelines.cli", *command], env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    total = len(Benchmark(root).pairs())
    assert f"gff: {total - len(saved)} images to fuse, {len(saved)} already done" in rerun.stderr


# --- 6. run-all: user errors in one line --------------------------------------------------------

def test_run_all_logs_a_user_error_in_one_line_and_a_bug_with_its_traceback(caplog):
    """Observation (low): run-all logged a user error (a FusionBenchError) with a full traceback."""
    from fusionbench.errors import FusionBenchError
    from pipelines.run_all import RunSummary

    def user_error():
        raise FusionBenchError("/data/x.png: empty file")

    def bug():
        return 1 / 0

    summary = RunSummary()
    with caplog.at_level(logging.ERROR):
        summary.step("fuse", "gff", user_error)
        summary.step("fuse", "tif", bug)
    user, crash = caplog.records
    assert user.getMessage() == "fuse gff failed: /data/x.png: empty file" and user.exc_info is None
    assert crash.getMessage() == "fuse tif failed" and crash.exc_info[0] is ZeroDivisionError
    assert [s.ok for s in summary.steps] == [False, False]


# --- 7. performance knobs are no identity -------------------------------------------------------

def test_performance_knobs_and_other_methods_options_leave_a_fused_set_alone(fused_run):
    """Observation (low): fusion.workers was part of the fuse manifest, so changing it redid every method's metrics
    (they are recomputed when the manifest is rewritten)."""
    bench, config_file = fused_run
    manifest = bench.fused_dir("vi") / "manifest.json"
    before = (manifest.read_bytes(), manifest.stat().st_mtime_ns)
    for overrides in (["fusion.workers=2", "fusion.batch_size=3"], ["methods.gff.r1=5", "fusion.methods=[vi,gff]"]):
        fuse_method(load_config(config_file, overrides), "vi", progress=False)
        assert (manifest.read_bytes(), manifest.stat().st_mtime_ns) == before, overrides


def test_the_entropy_of_an_image_does_not_depend_on_the_others(tmp_path: Path):
    """Observation (low): the decision-layer entropy changed in the 6th digit with metrics.batch_size."""
    from fusion.perception import build_resnet50
    from fusionbench.images import write_image
    from pipelines.metrics import image_entropies

    model, _ = build_resnet50(allow_random=True)
    rng = np.random.default_rng(0)
    paths = []
    for k in range(3):
        paths.append(tmp_path / f"{k}.png")
        write_image(paths[-1], rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    together = image_entropies(model, paths, torch.device("cpu"))
    alone = [image_entropies(model, [path], torch.device("cpu"))[0] for path in paths]
    assert together == alone  # bit-equal, not approximately
    assert image_entropies(model, paths[::-1], torch.device("cpu")) == alone[::-1]


def test_sigterm_in_process_exits_143_and_the_callers_handler_comes_back(monkeypatch):
    """`main` handles SIGTERM only while it runs: a caller in the same process (pytest) keeps its own handler."""
    import signal

    import pipelines.cli as cli_module

    def sigterm_arrives(*_args, **_kwargs):
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)
        handler(signal.SIGTERM, None)  # what the interpreter does when the signal arrives

    monkeypatch.setattr(cli_module.cli, "main", sigterm_arrives)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stopped:
        cli_module.main([])
    assert stopped.value.code == 143 and signal.getsignal(signal.SIGTERM) is before


def test_pretrained_weights_are_identified_by_content_not_path(tmp_path: Path):
    """Observation (low): detector weights were identified by their path, so a file replaced at the same path
    kept every result trained from the old one. The protocol now holds the content (segmenters' too: a folder of
    HF weights by its files)."""
    from detection.task import MODELS, protocol_settings
    from fusionbench.identity import weights_source

    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"first release")
    config = load_config("sample", [f"detect.weights={weights}"])
    model = MODELS[config.tasks["detection"][0]]
    before = protocol_settings(config.detect, model, 0)["model_source"]
    weights.write_bytes(b"second release")
    after = protocol_settings(config.detect, model, 0)["model_source"]
    assert before != after and after.startswith(f"pretrained {weights.resolve()} (sha256 ")
    folder = tmp_path / "segformer"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "model.safetensors").write_bytes(b"a")
    first = weights_source(folder, "random")
    (folder / "sub" / "model.safetensors").write_bytes(b"b")
    assert weights_source(folder, "random") != first and weights_source(None, "random") == "random"
