"""Issue #22: one freshness rule for every artifact (:mod:`fusionbench.identity`, :mod:`pipelines.freshness`).

One tiny run is built once (three methods, one 1-epoch detector each at 64 px, metrics, compare): first
with ``gff`` at its default options (``old``, kept as the "old backup"), then with ``methods.gff.r1=5``
(``now``: gff fused again, its detector, metrics and comparisons redone). Each test works on a copy of
``now`` (checkpoints hard-linked; every tamper replaces a file, never writes into it).

The observations High 2-5 of the issue come first, each a test that failed on the code before it; then the
tamper suite: every artifact kind x every way of making it untrue leads to a recompute or a refusal.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest
from runs import MODEL, TASK, unit_files

import detection.yolo
from fusion.metrics import REGISTRY
from fusionbench import identity, tasks
from fusionbench.benchmark import Benchmark
from fusionbench.errors import FusionBenchError
from pipelines import fuse
from pipelines.compare import run_compare
from pipelines.config import load_config, run_layout
from pipelines.downstream import DownstreamError, primary_summary, run_method, run_unit, unit_done
from pipelines.freshness import compare_reasons, metrics_reasons, unit_reasons
from pipelines.metrics import MetricsError, run_metrics
from pipelines.report import build_report
from pipelines.run_all import run_all
from pipelines.schema import Config

BASE = ["sample.pairs=16", "sample.width=128", "sample.height=96", "fusion.methods=[ir,average,gff]",
        "fusion.workers=1", "detect.epochs=1", "detect.imgsz=64", "detect.batch=4", "report.qualitative=1",
        "tasks.segmentation=[]", "stats.bootstrap=200", "stats.permutations=200", "metrics.workers=1"]
NOW = [*BASE, "methods.gff.r1=5"]
METHOD, OTHERS = "gff", ("average", "ir")  # the method whose files are tampered with, and those whose files replace them


@dataclass(frozen=True)
class Runs:
    old: Path  # gff at its default options
    now: Path  # gff with r1=5: what NOW describes


def config_at(root: Path, overrides: list[str]) -> Config:
    return load_config("sample", [f"run.root={root / 'runs'}", f"report.dir={root / 'report'}", *overrides])


def _link_checkpoints(source: str, target: str) -> None:
    """Checkpoints are hard links (large, never written again once trained), every other file a copy."""
    if source.endswith(".pt"):
        os.link(source, target)
    else:
        shutil.copy2(source, target)


def copy_run(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, symlinks=True, copy_function=_link_checkpoints)
    return target


def replace_file(path: Path, data: bytes, old: bool = False) -> None:
    """A new file at ``path`` (never written into: it may be a hard link); ``old``: dated a year back."""
    path.unlink()
    path.write_bytes(data)
    if old:
        os.utime(path, (path.stat().st_mtime - 365 * 86400,) * 2)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Runs:
    root = tmp_path_factory.mktemp("tamper")
    old = root / "old"
    assert not run_all(config_at(old, BASE), progress=False).failures
    now = copy_run(old, root / "now")
    assert not run_all(config_at(now, NOW), progress=False).failures
    return Runs(old, now)


@pytest.fixture()
def run(runs: Runs, tmp_path: Path) -> Path:
    """A private copy of ``now``."""
    return copy_run(runs.now, tmp_path / "run")


def as_if_edited(monkeypatch, module: str) -> None:
    """As if ``module``'s source had been edited (its code identity changes; what it computes does not)."""
    real = identity._source_file
    monkeypatch.setattr(identity, "_source_file", lambda name: Path(__file__) if name == module else real(name))


class Retrained(Exception):
    """Raised instead of training a detector from scratch: that a unit is trained again is the behaviour tested
    (training costs minutes); a finished training is still found, selected from and predicted with."""


def forbid_training(monkeypatch) -> None:
    real = detection.yolo.train

    def train(data_yaml, train_dir, *args, **kwargs):
        if not (Path(train_dir) / "weights" / "last.pt").is_file():
            raise Retrained(train_dir)
        return real(data_yaml, train_dir, *args, **kwargs)

    monkeypatch.setattr(detection.yolo, "train", train)


# --- the observations of issue #22 -----------------------------------------------------------------

def test_high2_stale_detection_is_not_ranked_beside_current_results(run: Path):
    """High 2: after `detect --force -s detect.epochs=2` on one method, compare and report ranked it beside the
    others' 1-epoch results; `report -s detect.epochs=7` printed 7 epochs above numbers from 1-epoch detectors;
    a compare killed after removing its manifest left the previous compare's tables in the next report."""
    config = config_at(run, NOW)
    run_method(config_at(run, [*NOW, "detect.epochs=2"]), TASK, MODEL, METHOD, force=True)
    run_compare(config, ["ir", "average", "gff"])
    tests = pd.read_csv(run_layout(config).compare.task(TASK).tests)
    assert METHOD not in set(tests["method"]) | set(tests["reference"])
    manifest = json.loads(run_layout(config).compare.manifest.read_text())
    assert any(f"{METHOD} seed 0" in line and "epochs was 2, now 1" in line for line in manifest["stale"])
    html = build_report(config).read_text()
    assert "epochs was 2, now 1" in html

    seven = config_at(run, [*NOW, "detect.epochs=7"])
    html = build_report(seven).read_text()
    assert "epochs was 1, now 7" in html and "epochs was 2, now 7" in html
    assert "No results yet (shown as missing): ir, average, gff" in html and "after Holm" not in html
    assert all(primary_summary(seven, tasks.get_task(TASK), MODEL, m).startswith("mAP@50 stale") for m in
               ("ir", "average", "gff"))

    import pipelines.compare

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipelines.compare, "task_comparisons", killed)
        with pytest.raises(KeyboardInterrupt):
            run_compare(config_at(run, [*NOW, "stats.alpha=0.01"]), ["ir", "average", "gff"])
    assert not run_layout(config).compare.manifest.exists() and run_layout(config).compare.task(TASK).tests.is_file()
    html = build_report(config).read_text()
    assert "compare has not finished" in html and "after Holm" not in html


def test_high3_a_fused_set_of_another_configuration_is_refused(run: Path):
    """High 3: with a shared benchmark, run B re-fused gff with r1=5; run A's `metrics -m gff` and
    `detect --method gff` used those images without a word."""
    run_a = config_at(run, BASE)  # r1 at its default: not the set on disk
    with pytest.raises(MetricsError, match=r"fused set 'gff' .*options.r1 was 5, now absent"):
        run_metrics(run_a, [METHOD])
    with pytest.raises(DownstreamError, match=r"fused set 'gff' is not the one this config makes"):
        run_method(run_a, TASK, MODEL, METHOD)
    assert not fuse.is_current(run_a, METHOD)  # run-all (which fuses) makes it again instead
    assert not unit_done(run_a, TASK, MODEL, METHOD, 0)


def test_high4_edited_metric_code_and_a_restored_fused_set_recompute_the_metrics(run: Path, runs: Runs,
                                                                                 monkeypatch, caplog):
    """High 4: doubling EN in fusion/metrics/intensity.py, `run-all` said "metrics.csv is up to date"; a fused
    set restored from a backup with old dates kept the old values."""
    config = config_at(run, NOW)
    per_image = run_layout(config).metrics.method(METHOD).per_image
    before = pd.read_csv(per_image)
    info = REGISTRY["EN"]
    monkeypatch.setitem(REGISTRY, "EN", dataclasses.replace(info, function=lambda *a: 2 * info.function(*a)))
    as_if_edited(monkeypatch, "fusion.metrics.intensity")
    assert not run_all(config, progress=False).failures
    after = pd.read_csv(per_image)
    assert after["EN"].tolist() == pytest.approx((2 * before["EN"]).tolist())
    assert after["SSIM"].tolist() == before["SSIM"].tolist()
    monkeypatch.undo()

    restored = config_at(run, BASE)  # the config of the backup: gff at its default options
    fused = Benchmark(run_layout(restored).benchmark).fused_dir(METHOD)
    shutil.rmtree(fused)
    shutil.copytree(Benchmark(run_layout(config_at(runs.old, BASE)).benchmark).fused_dir(METHOD), fused,
                    symlinks=True)
    for path in fused.rglob("*"):
        os.utime(path, (1e9, 1e9), follow_symlinks=False)  # 2001: older than every metrics file
    caplog.set_level(logging.WARNING)
    run_metrics(restored, [METHOD])
    assert "fused_set was" in caplog.text
    old_values = pd.read_csv(run_layout(config_at(runs.old, BASE)).metrics.method(METHOD).per_image)
    assert pd.read_csv(per_image).equals(old_values)


def test_high5_another_methods_matches_are_repaired_not_reported(run: Path, caplog):
    """High 5: copying another method's matches.npz over average's, `run-all` exited 0 and reported average at
    100.0 mAP@50 while its results.json said 40.8."""
    config = config_at(run, NOW)
    files, other = unit_files(config, "average"), unit_files(config, "ir")
    original, shown = files.matches.read_bytes(), primary_summary(config, tasks.get_task(TASK), MODEL, "average")
    replace_file(files.matches, other.matches.read_bytes())
    assert not unit_done(config, TASK, MODEL, "average", 0)
    caplog.set_level(logging.WARNING)
    summary = run_all(config, progress=False)
    assert not summary.failures
    assert f"{files.matches}: not what results.json recorded" in caplog.text
    assert files.matches.read_bytes() == original
    assert primary_summary(config, tasks.get_task(TASK), MODEL, "average") == shown


# --- the tamper suite ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Kind:
    path: Callable[[Config], Path]
    check: Callable[..., None]  # (config, kind, tamper, runs, monkeypatch): asserts a recompute or a refusal
    module: str                 # a module whose code computes it ("made by other code")
    settings: str               # an override under which it would be made otherwise ("made under other settings")


def _fused_image(config: Config) -> Path:
    bench = Benchmark(run_layout(config).benchmark)
    return bench.fused_image(METHOD, "test", bench.stems("test")[0])


def _unit(config: Config, method: str = METHOD):
    return unit_files(config, method)


def refused_fused_set(config: Config, kind: Kind, tamper: str, runs: Runs, monkeypatch) -> None:
    """Every reader of the set refuses it (metrics leave their files as they were), and run-all fuses again."""
    metrics = run_layout(config).metrics.method(METHOD).per_image
    before = metrics.read_bytes()
    with pytest.raises(FusionBenchError, match="fused set 'gff'"):
        run_unit(config, TASK, MODEL, METHOD, 0)
    try:
        run_metrics(config, [METHOD])
    except MetricsError as error:
        assert "fused set" in str(error)
    assert metrics.read_bytes() == before
    assert not fuse.is_current(config, METHOD)


def refused_checkpoint(config: Config, kind: Kind, tamper: str, runs: Runs, monkeypatch) -> None:
    """Nothing reads a trained checkpoint until the test predictions are made again: then a checkpoint other than
    the one evaluated is refused; other settings are refused; other code trains again."""
    forbid_training(monkeypatch)
    _unit(config).predictions.unlink()
    expected = {"other_settings": "started with other settings", "other_code": "retrained",
                "truncate": f"{kind.path(config)}: "}  # it does not load: refused, naming it
    with pytest.raises((FusionBenchError, Retrained)) as refused:
        run_unit(config, TASK, MODEL, METHOD, 0)
    message = "retrained" if refused.type is Retrained else str(refused.value)
    assert expected.get(tamper, "not the checkpoint this run evaluated before") in message


def recomputed_unit(config: Config, kind: Kind, tamper: str, runs: Runs, monkeypatch) -> None:
    """Stale for every reader (compare leaves it out); `detect` computes damaged files again from what they derive
    from, to the same numbers, evaluates again under another bootstrap, refuses other detector settings and
    trains again for other code."""
    assert unit_reasons(config, tasks.get_task(TASK), MODEL, METHOD, 0)
    run_compare(config, ["ir", "average", "gff"])
    assert METHOD not in compared_methods(config)
    forbid_training(monkeypatch)
    if tamper == "other_code":
        with pytest.raises(Retrained):
            run_unit(config, TASK, MODEL, METHOD, 0)
    elif tamper == "other_settings" and not kind.settings.startswith("stats."):
        with pytest.raises(DownstreamError, match="started with other settings"):
            run_unit(config, TASK, MODEL, METHOD, 0)
    else:
        results = run_unit(config, TASK, MODEL, METHOD, 0)
        reference = unit_files(config_at(runs.now, NOW), METHOD)
        assert results["map50"] == json.loads(reference.results.read_text())["map50"] and results["method"] == METHOD
        assert _unit(config).matches.read_bytes() == reference.matches.read_bytes()
        assert unit_done(config, TASK, MODEL, METHOD, 0)


def compared_methods(config: Config) -> set[str]:
    """The methods the detection comparisons hold (none when no table was written: nothing fresh to compare)."""
    path = run_layout(config).compare.task(TASK).tests
    tests = pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=["method", "reference"])
    return set(tests["method"]) | set(tests["reference"])


def recomputed_metrics(config: Config, kind: Kind, tamper: str, runs: Runs, monkeypatch) -> None:
    """Stale for every reader (no summary row), then computed again by `metrics` (the same values from the
    same set and code)."""
    assert metrics_reasons(config, METHOD)
    run_metrics(config, [METHOD])
    assert not metrics_reasons(config, METHOD)
    summary = pd.read_csv(run_layout(config).metrics.summary).set_index("method")
    assert pd.notna(summary.loc[METHOD, "images"])
    if tamper in ("other_method", "truncate", "old_backup"):
        assert kind.path(config).read_bytes() == kind.path(config_at(runs.now, NOW)).read_bytes()


def recomputed_comparisons(config: Config, kind: Kind, tamper: str, runs: Runs, monkeypatch) -> None:
    """The report does not show them (stale, with the reason); compare writes them again."""
    assert compare_reasons(config)
    run_compare(config, ["ir", "average", "gff"])
    assert not compare_reasons(config)
    if tamper in ("truncate", "old_backup"):
        assert kind.path(config).read_bytes() == kind.path(config_at(runs.now, NOW)).read_bytes()


KINDS = {
    "fused image": Kind(_fused_image, refused_fused_set, "fusion.baselines.two_scale", "methods.gff.r1=7"),
    "fuse manifest": Kind(lambda c: Benchmark(run_layout(c).benchmark).fused_dir(METHOD) / "manifest.json",
                          refused_fused_set, "fusion.baselines.two_scale", "methods.gff.r1=7"),
    "detector checkpoint": Kind(lambda c: _unit(c).train / "weights" / "best_map50.pt",
                                refused_checkpoint, "detection.yolo", "detect.epochs=2"),
    "predictions": Kind(lambda c: _unit(c).predictions, recomputed_unit, "detection.coco_eval", "detect.conf=0.01"),
    "matches": Kind(lambda c: _unit(c).matches, recomputed_unit, "detection.matches", "stats.bootstrap=300"),
    "results": Kind(lambda c: _unit(c).results, recomputed_unit, "detection.task", "stats.bootstrap=300"),
    "metrics CSV": Kind(lambda c: run_layout(c).metrics.method(METHOD).per_image, recomputed_metrics,
                        "fusion.metrics.intensity", "metrics.convention=vifb"),
    "entropy": Kind(lambda c: run_layout(c).metrics.method(METHOD).entropy, recomputed_metrics,
                    "fusion.perception", "metrics.split=val"),
    "compare tables": Kind(lambda c: run_layout(c).compare.metrics, recomputed_comparisons,
                           "pipelines.compare", "stats.alpha=0.01"),
}
TAMPERS = ("other_method", "truncate", "other_settings", "other_code", "old_backup")
NOT_MEANINGFUL = {
    ("fused image", "other_settings"): "an image has no settings of its own: its set's fingerprint holds them "
                                       "(the fuse manifest cases)",
    ("fused image", "other_code"): "an image has no code identity of its own: its set's fingerprint holds it",
    ("compare tables", "other_method"): "one table holds every method: there is no other method's table",
}


def tamper_with(kind: Kind, tamper: str, config: Config, runs: Runs, monkeypatch) -> Config:
    """Make the artifact untrue in the way named; returns the config the consumers then run with."""
    path, root = kind.path(config), Path(config.run.root).parent
    if tamper == "other_method":
        others = [Path(str(path).replace(f"/{METHOD}/", f"/{other}/")).read_bytes() for other in OTHERS]
        differing = [data for data in others if data != path.read_bytes()]
        assert differing, f"{path}: every method's file is the same in this run: replacing it changes nothing"
        replace_file(path, differing[0])
    elif tamper == "truncate":
        replace_file(path, path.read_bytes()[: path.stat().st_size // 2])
    elif tamper == "old_backup":
        backup = Path(str(path).replace(str(root), str(runs.old)))
        assert backup.read_bytes() != path.read_bytes()  # the backup holds other content
        replace_file(path, backup.read_bytes(), old=True)
    elif tamper == "other_code":
        as_if_edited(monkeypatch, kind.module)
    elif tamper == "other_settings":
        return config_at(root, [*NOW, kind.settings])
    return config


CASES = [pytest.param(k, t, id=f"{k}-{t}") for k in KINDS for t in TAMPERS if (k, t) not in NOT_MEANINGFUL]


@pytest.mark.parametrize(("kind", "tamper"), CASES)
def test_a_tampered_artifact_is_recomputed_or_refused(kind: str, tamper: str, run: Path, runs: Runs, monkeypatch):
    config = tamper_with(KINDS[kind], tamper, config_at(run, NOW), runs, monkeypatch)
    KINDS[kind].check(config, KINDS[kind], tamper, runs, monkeypatch)


def test_every_kind_and_tamper_is_a_case_or_said_why_not():
    assert set(NOT_MEANINGFUL) < {(k, t) for k in KINDS for t in TAMPERS}
    assert len(CASES) == len(KINDS) * len(TAMPERS) - len(NOT_MEANINGFUL)
