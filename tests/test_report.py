"""The report of a small real run on the synthetic sample: every section, its files, no broken links,
and missing results shown as missing; plus the table marks and formats on their own."""
from __future__ import annotations

import hashlib
import math
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from fusionbench.benchmark import Benchmark
from pipelines.config import load_config
from reports.tables import MISSING, Table

DETECTOR = "yolov5s"  # the paper's detector: its table carries S4Fusion's Table VI beside the run's values
SECTIONS = ("results", f"detection-{DETECTOR}", "fusion", "entropy", "training", "summary")


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.ids.update([attrs["id"]] if "id" in attrs else [])
        self.links += [attrs[k] for k in ("href", "src") if k in attrs]


def test_table_marks_missing_and_formats(tmp_path):
    frame = pd.DataFrame({"EN": [7.0, 6.5, 7.0, MISSING], "entropy": [1.2, 0.4, 0.9, MISSING],
                          "SCD": [math.nan, 1.5, 1.6, MISSING]},
                         index=["ir", "s4fusion_wo_per", "s4fusion", "ddfm"], dtype=object)
    table = Table("t", "t", frame, ranked={"EN": "max", "entropy": "min", "SCD": "max"}, digits=2)
    rows = dict(table.rows())
    assert rows["ir"][0] == ("7.00", 1) and rows["s4fusion"][0] == ("7.00", 1)  # ties share the best mark
    assert rows["s4fusion_wo_per"][0] == ("6.50", 2)
    assert rows["s4fusion_wo_per"][1] == ("0.40", 1) and rows["s4fusion"][1] == ("0.90", 2)  # lower is better
    assert rows["ir"][2] == ("n/a", 0)  # undefined value
    assert rows["ddfm"] == [(MISSING, 0)] * 3  # never a number, never ranked
    latex = table.to_latex()
    assert r"\textbf{7.00}" in latex and r"\underline{6.50}" in latex and r"s4fusion\_wo\_per" in latex
    files = table.write(tmp_path / "tables")
    written = pd.read_csv(tmp_path / files["csv"], index_col="method", keep_default_na=False)
    assert written.loc["ddfm"].tolist() == [MISSING] * 3 and written.at["ir", "SCD"] == "n/a"
    assert float(written.at["s4fusion", "EN"]) == 7.0


@pytest.fixture(scope="module")
def sample_run(sample_raw, tmp_path_factory):
    """prepare -> fuse (ir, vi, average) -> detect (average only, 1 epoch) -> `pipelines metrics` ->
    `pipelines report`, the last two through the command line."""
    from click.testing import CliRunner
    from runs import detect_method

    from pipelines.cli import cli
    from pipelines.fuse import fuse_method
    from pipelines.prepare import prepare_benchmark

    root = tmp_path_factory.mktemp("report_run")
    prepare_benchmark(sample_raw, root / "benchmark")
    overrides = [
        f"run.root={root / 'runs'}", f"data.benchmark={root / 'benchmark'}", f"report.dir={root / 'report'}",
        "fusion.methods=[ir,vi,average]", "fusion.workers=1", "perception.allow_random=true",
        "detect.epochs=1", "detect.imgsz=64", "detect.batch=4", "report.qualitative=2",
        "report.entropy_pairs=[[ir,average],[vi,s4fusion]]", f"tasks.detection=[{DETECTOR}]"]
    config = load_config("sample", overrides)
    for method in ("ir", "vi", "average"):
        fuse_method(config, method, progress=False)
    detected = detect_method(config, "average", model=DETECTOR)
    flags = [item for override in overrides for item in ("-s", override)]
    for command in ("metrics", "compare", "report"):
        result = CliRunner().invoke(cli, [command, "-c", "sample", *flags])
        assert result.exit_code == 0, result.output
    index = root / "report" / "index.html"
    assert f"report: {index}" in result.output
    return config, index, detected


def test_report_has_every_section_and_no_broken_links(sample_run):
    _, index, _ = sample_run
    parser = Links()
    parser.feed(index.read_text())
    assert set(SECTIONS) <= parser.ids
    assert parser.links, "the report links to nothing"
    for link in parser.links:
        if link.startswith("#"):
            assert link[1:] in parser.ids, f"broken anchor {link}"
            continue
        assert "://" not in link and not link.startswith("/"), f"{link}: not a relative link"
        target = index.parent / link
        assert target.is_file(), f"broken link {link}"
        if target.suffix == ".png":
            assert cv2.imread(str(target)) is not None, f"{link}: not a readable PNG"
    figures = {Path(link).name for link in parser.links if link.endswith(".png")}
    assert {"entropy_all.png", "entropy_ir_vs_average.png", f"detection_{DETECTOR}_validation.png"} <= figures
    assert len([f for f in figures if f.startswith(f"detection_{DETECTOR}_grid")]) == 2
    for name in (f"detection_{DETECTOR}", f"detection_{DETECTOR}_per_class", "fusion_metrics"):
        assert f"tables/{name}.csv" in parser.links and f"tables/{name}.tex" in parser.links

    lists = {Path(link).name: index.parent / link for link in parser.links if link.startswith("split_lists/")}
    assert set(lists) == {"train.txt", "val.txt", "test.txt", "SHA256SUMS"}
    benchmark = Benchmark(index.parent.parent / "benchmark")
    for split in ("train", "val", "test"):  # the exact lists the run used, in the form prepare --split-file reads
        assert lists[f"{split}.txt"].read_text().split() == benchmark.stems(split)
    sums = dict(line.split()[::-1] for line in lists["SHA256SUMS"].read_text().splitlines())
    assert sums["test.txt"] == hashlib.sha256(lists["test.txt"].read_bytes()).hexdigest()


def test_report_tables_hold_the_run_results(sample_run):
    config, index, detected = sample_run
    tables = index.parent / "tables"
    map50 = pd.read_csv(tables / f"detection_{DETECTOR}.csv", index_col="method", keep_default_na=False)
    entry = detected["statistics"]["map50"]
    assert float(map50.at["average", "mAP@50"]) == pytest.approx(100 * entry["mean"])
    assert map50.at["average", "± sd (n seeds)"] == "n=1"  # the sample's one seed: no sd
    assert map50.at["average", "95% interval"] == f"[{100 * entry['ci95'][0]:.1f}, {100 * entry['ci95'][1]:.1f}]"
    for method, paper in (("ir", 73.8), ("vi", 79.3)):  # not detected: missing, with the paper's value beside
        assert map50.at[method, "mAP@50"] == MISSING and map50.at[method, "mAP@50:95"] == MISSING
        assert float(map50.at[method, "paper mAP@50 (S4Fusion Table VI, M3FD)"]) == paper
    per_class = pd.read_csv(tables / f"detection_{DETECTOR}_per_class.csv", index_col="method", keep_default_na=False)
    assert per_class.loc["ir"].tolist() == [MISSING] * len(per_class.columns)
    car = detected["statistics"]["ap50/Car"]
    assert per_class.at["average", "Car"].startswith(f"{100 * car['mean']:.1f} [")

    summary = pd.read_csv(config.run.root / "sample" / "metrics" / "summary.csv", index_col="method")
    fusion = pd.read_csv(tables / "fusion_metrics.csv", index_col="method", keep_default_na=False)
    assert float(fusion.at["average", "VIF"]) == pytest.approx(summary.at["average", "VIF"], rel=1e-5)
    assert float(fusion.at["vi", "entropy_median"]) == pytest.approx(summary.at["vi", "entropy_median"], rel=1e-5)
    assert fusion.at["ir", "SCD"] == "n/a"  # F = IR: the correlation of differences is undefined
    counts = pd.read_csv(tables / "fusion_metric_counts.csv", index_col="method", keep_default_na=False)
    images = int(summary.at["ir", "images"])
    assert counts.at["ir", "SCD"] == f"0 of {images}" and counts.at["ir", "VIF"] == f"{images} of {images}"
    assert counts.at["better", "MSE"] == "lower" and counts.at["better", "SSIM"] == "higher"

    html = index.read_text()
    assert "No results yet (shown as missing): ir, vi." in html
    assert "randomly initialised" in html  # entropy made with random weights is marked
    assert "vi vs s4fusion: missing" in html
    assert "15.363" in html  # the paper's S4Fusion SF on M3FD, shown for reference
    assert r"\textbf{" in (tables / "fusion_metrics.tex").read_text()
    assert f"ir SCD: 0 of {images} images (NaN when F equals a source" in html

    # statistics: one detected method gives nothing to compare, and the page says so; the fusion metrics
    # have intervals and Wilcoxon tests against ir, vi and the best
    assert "missing (run <code>pipelines compare</code>; it needs results of two methods or more)" in html
    assert "seed variance was not measured" in html
    intervals = pd.read_csv(tables / "fusion_metric_intervals.csv", index_col="method", keep_default_na=False)
    assert intervals.at["average", "VIF"].startswith(f"{summary.at['average', 'VIF']:.3f} [")
    tests = pd.read_csv(Path(config.run.root) / "sample" / "compare" / "metrics.csv")
    assert {"average vs ir", "average vs vi"} <= {f"{r.method} vs {r.reference}" for r in tests.itertuples()}
    assert "p = " in html and "after Holm" in html


def test_fusion_training_curves_average_steps_per_epoch(tmp_path):
    from fusionbench.layout import FuserFiles
    from reports.builder import _fusion_curves
    from reports.figures import curves

    steps = pd.DataFrame({"epoch": [1, 1, 2, 2], "step": [1, 2, 3, 4], "lr": [1e-3] * 4,
                          "total": [4.0, 2.0, 1.0, 3.0], "per": [1.0, 1.0, 0.5, 0.7]})
    files = FuserFiles(tmp_path)
    steps.to_csv(files.loss, index=False)
    pd.DataFrame({"epoch": [1, 2], "total": [2.5, 1.5], "per": [0.9, 0.6]}).to_csv(files.val, index=False)
    series = _fusion_curves(files)
    assert series["train"]["total"].tolist() == [3.0, 2.0] and "step" not in series["train"]
    assert series["validation"]["per"].tolist() == [0.9, 0.6]
    curves(series, "epoch", tmp_path / "curves.png", "losses")
    image = cv2.imread(str(tmp_path / "curves.png"))
    assert image is not None and np.ptp(image) > 0
    assert _fusion_curves(FuserFiles(tmp_path / "not_trained")) == {}


def test_best_marks_only_where_the_difference_to_the_next_is_significant():
    from reports.comparisons import significant_marks

    means = {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.1}
    tests = pd.DataFrame({"method": ["b", "c", "d"], "reference": ["a", "b", "a"], "significant": [False, True, True]})
    assert significant_marks(means, True, tests) == {"b": 2}  # a vs b not significant: no bold; b vs c is
    tests.loc[0, "significant"] = True
    assert significant_marks(means, True, tests) == {"a": 1, "b": 2}
    assert significant_marks(means, False, tests) == {"c": 2}  # lower is better: d, c, b; d vs c not tested
    assert significant_marks(means, True, None) == {}


def test_comparison_sentence_reads_as_the_issue_asks():
    from reports.comparisons import sentence

    row = pd.Series({"method": "s4fusion", "reference": "vi", "delta": 0.012, "ci_low": -0.004, "ci_high": 0.028,
                     "p_holm": 0.2113, "significant": False})
    assert sentence(row, "mAP@50") == "s4fusion vs vi: +1.2 mAP@50 [−0.4, +2.8], p = 0.21 after Holm: not significant"
