"""The compare stage on a run folder of synthetic per-image matches and metrics (no detector trained):
its tables against independent computations (scipy's Wilcoxon, a hand Holm family), the references,
and what happens to its files when inputs change."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from runs import MODEL, record_as_fresh, unit_files
from scipy.stats import wilcoxon
from test_map_statistics import synthetic

from detection.matches import to_bytes
from pipelines.compare import run_compare
from pipelines.config import load_config, run_layout
from pipelines.fuse import fuse_method

METHODS = ["ir", "vi", "average", "max"]


@pytest.fixture()
def write_run(sample_benchmark):
    """A run of synthetic per-image matches and metrics on a copy of the sample benchmark with the methods
    fused, recorded as fresh (the freshness rule has tests of its own: tests/test_tamper.py)."""
    return lambda root, methods=METHODS, metrics=True: _write_run(root, sample_benchmark.root, methods, metrics)


def _write_run(root, benchmark, methods, metrics):
    shutil.copytree(benchmark, root / "benchmark", ignore=shutil.ignore_patterns("fused", "*.cache"))
    config = load_config("sample", [f"run.root={root}", f"data.benchmark={root / 'benchmark'}", "detect.seeds=[0, 1]",
                                    "stats.bootstrap=300", "stats.permutations=300", "metrics.entropy=false",
                                    f"fusion.methods=[{','.join(methods)}]", "fusion.workers=1",
                                    "tasks.segmentation=[]"])
    for method in methods:
        fuse_method(config, method, progress=False)
    for k, method in enumerate(methods):
        source = "vi" if method == "max" else method  # max: an exact copy of vi
        skill = {"ir": 0.3, "vi": 0.5, "average": 0.95}[source]
        for seed in (0, 1):
            run = synthetic(np.random.default_rng([10 * METHODS.index(source), seed]), 150, found=skill)
            files = unit_files(config, method, seed)
            files.folder.mkdir(parents=True, exist_ok=True)
            files.matches.write_bytes(to_bytes(run))
            files.results.write_text("{}")  # the unit is finished (its results are not what compare reads)
        if metrics:
            rng = np.random.default_rng(METHODS.index(source))
            path = run_layout(config).metrics.method(method).per_image
            path.parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame({"stem": [f"{i:03d}" for i in range(40)], "EN": rng.normal(6.0 + 0.2 * k, 0.3, 40),
                          "SSIM": 1.0 + 0.01 * np.arange(40)}).to_csv(path, index=False)
        record_as_fresh(config, method, (0, 1))
    return config


def test_detection_comparisons_references_and_holm(write_run, tmp_path):
    config = write_run(tmp_path)
    run_compare(config, METHODS)
    rows = pd.read_csv(run_layout(config).compare.task("detection").tests)
    pairs = [(r.method, r.reference) for r in rows.itertuples()]
    # ir: everyone; vi: the rest; best (average): max, not again vi or ir
    assert pairs == [("vi", "ir"), ("average", "ir"), ("max", "ir"), ("average", "vi"), ("max", "vi"),
                     ("max", "average")]
    same = rows[(rows.method == "max") & (rows.reference == "vi")].iloc[0]
    assert same.delta == 0.0 and same.ci_low == 0.0 == same.ci_high and same.p == 1.0 and not same.significant
    strong = rows[(rows.method == "average") & (rows.reference == "ir")].iloc[0]
    assert strong.delta > 0.2 and strong.ci_low > 0 and strong.significant
    m = len(rows)  # Holm by hand over the family
    order = np.argsort(rows.p.to_numpy(), kind="mergesort")
    expected = np.maximum.accumulate([min(1.0, (m - k) * rows.p.iloc[i]) for k, i in enumerate(order)])
    assert rows.p_holm.iloc[order].to_numpy() == pytest.approx(expected)


def test_metric_comparisons_are_scipy_wilcoxon_with_holm_per_metric(write_run, tmp_path):
    config = write_run(tmp_path)
    run_compare(config, METHODS)
    rows = pd.read_csv(run_layout(config).compare.metrics)
    values = {m: pd.read_csv(run_layout(config).metrics.method(m).per_image) for m in METHODS}
    en = rows[rows.metric == "EN"]
    for r in en.itertuples():
        difference = values[r.method]["EN"] - values[r.reference]["EN"]
        assert r.delta == pytest.approx(difference.mean()) and r.p == pytest.approx(wilcoxon(difference).pvalue)
    assert (en.p_holm >= en.p).all() and en.p_holm.max() <= 1.0
    ssim = rows[rows.metric == "SSIM"]  # identical per-image values everywhere: nothing differs
    assert (ssim.delta == 0).all() and (ssim.p == 1.0).all() and not ssim.significant.any()


def test_compare_skips_when_done_and_drops_tables_whose_inputs_are_gone(write_run, tmp_path):
    config = write_run(tmp_path)
    out = run_compare(config, METHODS)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    run_compare(config, METHODS)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps
    for method in METHODS:
        run_layout(config).metrics.method(method).per_image.unlink()
    run_compare(config, METHODS)
    files = run_layout(config).compare
    assert not files.metrics.exists() and files.task("detection").tests.is_file() and files.manifest.is_file()


def test_a_method_missing_a_seed_is_left_out_and_named(write_run, tmp_path, caplog):
    config = write_run(tmp_path)
    unit_files(config, "average", 1).matches.unlink()  # its results name evidence that is gone: stale
    unit_files(config, "max", 1).results.unlink()  # unfinished: missing
    out = run_compare(config, METHODS)
    rows = pd.read_csv(run_layout(config).compare.task("detection").tests)
    assert not {"average", "max"} & (set(rows.method) | set(rows.reference))
    assert f"left out, stale: detection {MODEL} average seed 1" in caplog.text and "matches.npz" in caplog.text
    assert f"no fresh detection/{MODEL} results for average, max" in caplog.text
    assert run_layout(config).compare.folder == out
