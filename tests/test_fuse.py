"""The fuse stage: fused sets, manifest, resume after an interruption, shards, external import, CLI."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from fusion.engine import FuseError, FuseJob, Shard, fuse_set, load_pair
from fusion.registry import build_fuser
from fusionbench.benchmark import SPLITS, Benchmark, record_split_lists
from fusionbench.fused_set import is_complete
from fusionbench.images import write_image
from pipelines.cli import cli
from pipelines.config import load_config
from pipelines.fusers import build_method


def _copy(benchmark: Benchmark, root: Path) -> Benchmark:
    """A private copy of a prepared benchmark (sources stay referenced), so tests may write fused sets."""
    shutil.copytree(benchmark.root, root)
    return Benchmark(root)


def _fuse(benchmark: Benchmark, method: str, **kwargs) -> Path:
    fuser = build_fuser(method, **kwargs.pop("options", {}))
    return fuse_set(benchmark, method, fuser, fingerprint={"method": method}, progress=False, **kwargs)


def _images(benchmark: Benchmark, method: str) -> dict[str, bytes]:
    return {p.stem: benchmark.fused_image(method, p.split, p.stem).read_bytes() for p in benchmark.pairs()}


def _manifest(benchmark: Benchmark, method: str) -> dict:
    return json.loads((benchmark.fused_dir(method) / "manifest.json").read_text())


@pytest.fixture()
def bench(sample_benchmark: Benchmark, tmp_path: Path) -> Benchmark:
    return _copy(sample_benchmark, tmp_path / "bench")


def test_fused_set_has_every_image_the_labels_link_and_a_complete_manifest(bench: Benchmark):
    out = _fuse(bench, "gff")
    for pair in bench.pairs():
        image = cv2.imread(str(bench.fused_image("gff", pair.split, pair.stem)), cv2.IMREAD_UNCHANGED)
        assert image.shape == (pair.height, pair.width, 3) and image.dtype == np.uint8
    labels = out / "labels"
    assert labels.is_symlink() and labels.resolve() == (bench.root / "labels").resolve()
    assert (labels / "train").is_dir()
    manifest = _manifest(bench, "gff")
    assert manifest["complete"] and manifest["method"] == "gff" and "numpy" in manifest["versions"]
    assert set(manifest["images"]) == {p.stem for p in bench.pairs()}
    recorded = bench.manifest["pairs"][0]
    entry = manifest["images"][recorded["stem"]]
    assert entry["split"] == recorded["split"] and entry["seconds"] > 0 and len(entry["sha256"]) == 64
    assert entry["sources"] == {"ir": recorded["ir_sha256"], "vi": recorded["vi_sha256"]}
    assert is_complete(bench, "gff") and not is_complete(bench, "tif")
    assert not list(out.rglob("*.tmp"))
    before = (out / "manifest.json").stat().st_mtime_ns
    _fuse(bench, "gff")  # nothing left to do: the manifest is not even rewritten
    assert (out / "manifest.json").stat().st_mtime_ns == before


def test_interrupted_run_resumes_to_the_same_set(sample_benchmark: Benchmark, tmp_path: Path):
    reference = _copy(sample_benchmark, tmp_path / "a")
    _fuse(reference, "laplacian")
    bench = _copy(sample_benchmark, tmp_path / "b")
    fuser = build_fuser("laplacian")
    job = FuseJob(bench, "laplacian", fuser, fingerprint={"method": "laplacian"})
    run = job.run()
    finished = [next(run) for _ in range(5)]
    run.close()  # what Ctrl-C or a crash does to the generator
    assert len(_manifest(bench, "laplacian")["images"]) == 5 and not is_complete(bench, "laplacian")
    # A finished image damaged after the fact, and a temporary file a killed writer left behind:
    damaged = job.entries[finished[0].stem]
    damaged_path = bench.fused_image("laplacian", damaged["split"], finished[0].stem)
    damaged_path.write_bytes(b"not a png")
    pending = job.todo[5]
    leftover = bench.fused_image("laplacian", pending.split, pending.stem).with_name(f".{pending.stem}.png.x1.tmp")
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_bytes(b"partial")

    resumed = FuseJob(bench, "laplacian", fuser, fingerprint={"method": "laplacian"})
    assert len(resumed.todo) == len(bench.pairs()) - 4 and not leftover.exists()
    for _ in resumed.run():
        pass
    assert _images(bench, "laplacian") == _images(reference, "laplacian")
    a, b = _manifest(reference, "laplacian")["images"], _manifest(bench, "laplacian")["images"]
    assert {s: e["sha256"] for s, e in a.items()} == {s: e["sha256"] for s, e in b.items()}
    assert is_complete(bench, "laplacian")


def test_stale_entries_are_redone(bench: Benchmark):
    _fuse(bench, "dwt")
    assert FuseJob(bench, "dwt", build_fuser("dwt"), fingerprint={"method": "dwt"}).todo == []
    other_options = {"method": "dwt", "options": {"levels": 2}}
    assert len(FuseJob(bench, "dwt", build_fuser("dwt", levels=2), fingerprint=other_options).todo) == len(bench.pairs())
    # A source that changed (prepare records the new hash) makes only that image stale.
    manifest = json.loads((bench.root / "manifest.json").read_text())
    manifest["pairs"][3]["vi_sha256"] = "0" * 64
    (bench.root / "manifest.json").write_text(json.dumps(manifest))
    todo = FuseJob(Benchmark(bench.root), "dwt", build_fuser("dwt"), fingerprint={"method": "dwt"}).todo
    assert [p.stem for p in todo] == [manifest["pairs"][3]["stem"]]
    assert len(FuseJob(bench, "dwt", build_fuser("dwt"), fingerprint={"method": "dwt"}, force=True).todo) == len(bench.pairs())


def test_a_re_split_benchmark_leaves_no_image_in_its_old_split_folder(sample_raw: Path, tmp_path: Path):
    """Re-preparing with another seed moves pairs between splits: the fused set must follow, or the
    detector would train on images that are now in test."""
    from pipelines.prepare import prepare_benchmark

    first = prepare_benchmark(sample_raw, tmp_path / "bench", seed=0)
    _fuse(first, "average")
    first_test = first.stems("test")
    again = prepare_benchmark(sample_raw, tmp_path / "bench", seed=1)
    assert again.stems("test") != first_test
    assert not is_complete(again, "average")
    _fuse(again, "average")
    assert is_complete(again, "average")
    for split in SPLITS:
        on_disk = sorted(p.stem for p in (again.fused_dir("average") / "images" / split).glob("*.png"))
        assert on_disk == again.stems(split), split


def test_worker_processes_and_batches_give_the_same_set_as_one_process(sample_benchmark: Benchmark, tmp_path: Path):
    serial = _copy(sample_benchmark, tmp_path / "serial")
    _fuse(serial, "tif")
    parallel = _copy(sample_benchmark, tmp_path / "parallel")
    _fuse(parallel, "tif", workers=2)
    assert _images(parallel, "tif") == _images(serial, "tif") and is_complete(parallel, "tif")

    class Batched:
        """The learned-fuser interface (fuse_batch) around a real rule: exercises the batched path."""

        def __init__(self):
            self.rule, self.sizes = build_fuser("tif"), []

        def fuse_batch(self, pairs):
            self.sizes.append(len(pairs))
            return [self.rule(ir, vi) for ir, vi in pairs]

    batched = _copy(sample_benchmark, tmp_path / "batched")
    fuser = Batched()
    fuse_set(batched, "tif", fuser, fingerprint={"method": "tif"}, batch_size=4, workers=2, progress=False)
    assert _images(batched, "tif") == _images(serial, "tif")
    assert max(fuser.sizes) == 4 and sum(fuser.sizes) == len(batched.pairs())


def test_shards_are_disjoint_and_complete_the_set_together(bench: Benchmark):
    first = FuseJob(bench, "max", build_fuser("max"), fingerprint={"method": "max"}, shard=Shard.parse("1/2"))
    second_stems = {p.stem for p in Shard(2, 2).select(bench.pairs())}
    assert {p.stem for p in first.pairs}.isdisjoint(second_stems)
    assert len(first.pairs) + len(second_stems) == len(bench.pairs())
    _fuse(bench, "max", shard=Shard(1, 2))
    assert not is_complete(bench, "max")
    _fuse(bench, "max", shard=Shard(2, 2))
    assert is_complete(bench, "max")
    assert set(_manifest(bench, "max")["images"]) == {p.stem for p in bench.pairs()}
    with pytest.raises(ValueError, match="1 <= i <= n"):
        Shard.parse("3/2")


def test_a_sharded_redo_is_not_complete_until_its_last_shard(bench: Benchmark):
    """While a changed set is redone shard by shard, detect/metrics must not see old and new images as one set."""
    _fuse(bench, "max")
    assert is_complete(bench, "max")
    redone = {"method": "max", "options": {"redo": 1}}
    fuse_set(bench, "max", build_fuser("max"), fingerprint=redone, shard=Shard(1, 2), progress=False)
    assert not is_complete(bench, "max")
    fuse_set(bench, "max", build_fuser("max"), fingerprint=redone, shard=Shard(2, 2), progress=False)
    assert is_complete(bench, "max") and _manifest(bench, "max")["fingerprint"] == redone


def test_external_import_reports_missing_and_wrong_size_files_by_name(bench: Benchmark, tmp_path: Path):
    results = tmp_path / "defusion_results"
    results.mkdir()
    pairs = bench.pairs()
    for pair in pairs:
        ir, _ = load_pair(pair)
        cv2.imwrite(str(results / f"{pair.stem}.png"), np.rint(ir * 255).astype(np.uint8))
    missing, wrong = pairs[0], pairs[1]
    (results / f"{missing.stem}.png").unlink()
    cv2.imwrite(str(results / f"{wrong.stem}.png"), np.zeros((10, 12), np.uint8))
    config = load_config("sample", [f"data.benchmark={bench.root}"])

    fuser, fingerprint, info = build_method(config, "defusion", source=results)
    with pytest.raises(FuseError, match="2 of 24 images failed") as error:
        fuse_set(bench, "defusion", fuser, fingerprint=fingerprint, info=info, progress=False)
    assert f"no fused image for '{missing.stem}'" in str(error.value)
    assert f"{wrong.stem}.png: size 12x10, but pair '{wrong.stem}' is 128x96" in str(error.value)
    assert not is_complete(bench, "defusion")
    assert bench.fused_image("defusion", pairs[2].split, pairs[2].stem).is_file()

    for pair in (missing, wrong):  # the user supplies the two results; only they are imported now
        cv2.imwrite(str(results / f"{pair.stem}.png"), np.rint(load_pair(pair)[0] * 255).astype(np.uint8))
    fuser, fingerprint, info = build_method(config, "defusion", source=results)
    job = FuseJob(bench, "defusion", fuser, fingerprint=fingerprint, info=info)
    assert {p.stem for p in job.todo} == {missing.stem, wrong.stem}
    list(job.run())
    assert is_complete(bench, "defusion")
    assert _manifest(bench, "defusion")["display_name"] == "defusion"


def test_cli_fuses_methods_and_explains_a_missing_checkpoint(bench: Benchmark, tmp_path: Path):
    runner = CliRunner()
    base = ["fuse", "-c", "sample", "-s", f"run.root={tmp_path / 'runs'}", "-s", f"data.benchmark={bench.root}",
            "--no-progress"]
    result = runner.invoke(cli, [*base, "--methods", "ir,average", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert is_complete(bench, "ir") and is_complete(bench, "average")
    again = runner.invoke(cli, [*base, "--method", "average"])
    assert again.exit_code == 0 and "0 images to fuse" in (tmp_path / "runs" / "sample" / "logs" / "fuse.log").read_text()
    learned = runner.invoke(cli, [*base, "--methods", "s4fusion_ca,max"])  # an untrained one does not stop max
    assert learned.exit_code != 0 and "1 of 2 methods failed" in learned.output
    assert "pipelines train-fusion --method s4fusion_ca" in learned.output and "best.pt" in learned.output
    assert is_complete(bench, "max")
    both = runner.invoke(cli, [*base, "--method", "ir", "--methods", "all"])
    assert both.exit_code != 0 and "exactly one of" in both.output
    escaping = runner.invoke(cli, [*base, "--method", "../outside", "--from", str(tmp_path)])
    assert escaping.exit_code != 0 and "it names a folder" in escaping.output
    assert not (bench.root / "outside").exists()

    results = tmp_path / "emma_results"  # grey results, as many published codes save them
    for pair in bench.pairs():
        write_image(results / f"{pair.stem}.png", np.rint(load_pair(pair)[0] * 255).astype(np.uint8))
    imported = runner.invoke(cli, [*base, "--method", "emma", "--from", str(results), "--name", "EMMA", "--keep-grey"])
    assert imported.exit_code == 0, imported.output
    manifest = _manifest(bench, "emma")
    assert manifest["display_name"] == "EMMA" and manifest["fingerprint"]["options"]["keep_grey"] is True
    pair = bench.pairs()[0]
    fused = cv2.imread(str(bench.fused_image("emma", pair.split, pair.stem)))
    assert (fused[..., 0] == fused[..., 2]).all() and is_complete(bench, "emma")


def _tiny(benchmark: Benchmark, root: Path, size: tuple[int, int] = (40, 30)) -> Benchmark:
    """A private benchmark of one pair per split, cropped to ``size`` (for the slow learned fuser on a CPU)."""
    shutil.copytree(benchmark.root, root)
    keep = {benchmark.stems(split)[0]: split for split in SPLITS}
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["pairs"] = [p for p in manifest["pairs"] if p["stem"] in keep]
    width, height = size
    for entry in manifest["pairs"]:
        for kind in ("ir", "vi"):
            crop = root / "sources" / kind / Path(entry[kind]).name
            crop.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(crop), cv2.imread(entry[kind], cv2.IMREAD_UNCHANGED)[:height, :width])
            entry[kind], entry[f"{kind}_sha256"] = str(crop), None  # hashed by the fuse stage instead
        entry["width"], entry["height"] = width, height
    for stem, split in keep.items():
        (root / "splits" / f"{split}.txt").write_text(stem + "\n")
    manifest["split_lists"] = record_split_lists(root)
    (root / "manifest.json").write_text(json.dumps(manifest))
    return Benchmark(root)


def test_learned_method_fuses_from_the_trained_checkpoint(sample_benchmark: Benchmark, tmp_path: Path):
    import torch

    from fusion.learned.checkpoint import checkpoint_identity, save_checkpoint
    from fusion.s4fusion.architecture import S4FUSION
    from fusion.s4fusion.model import S4Fusion, S4FusionConfig

    bench = _tiny(sample_benchmark, tmp_path / "bench")
    config = load_config("sample", [f"run.root={tmp_path / 'runs'}", f"data.benchmark={bench.root}",
                                    "run.device=cpu", "fusion.batch_size=3"])
    with pytest.raises(FileNotFoundError, match="pipelines train-fusion --method s4fusion"):
        build_method(config, "s4fusion")
    torch.manual_seed(0)
    checkpoint = tmp_path / "runs" / "sample" / "fusion" / "s4fusion" / "best.pt"  # where train-fusion leaves it
    save_checkpoint(checkpoint, S4FUSION, S4FusionConfig(), S4Fusion())
    fuser, fingerprint, info = build_method(config, "s4fusion")
    assert fingerprint["options"] == {"weights": checkpoint_identity(checkpoint),
                                      "runtime": {"device": "cpu", "scan_backend": "cpu"}}
    assert info["weights"] == str(checkpoint.resolve())
    fuse_set(bench, "s4fusion", fuser, fingerprint=fingerprint, info=info, batch_size=3, progress=False)
    assert is_complete(bench, "s4fusion")
    pair = bench.pairs("test")[0]  # batched inference through the stage = the fuser on the pair alone
    written = cv2.cvtColor(cv2.imread(str(bench.fused_image("s4fusion", "test", pair.stem))), cv2.COLOR_BGR2RGB)
    assert np.abs(written.astype(int) - fuser(*load_pair(pair)).astype(int)).max() <= 1


def test_fused_set_and_labels_load_in_ultralytics(msrs_benchmark: Benchmark, tmp_path: Path):
    from detection.yolo import write_data_yaml
    from fusionbench.ultralytics_offline import use_offline_ultralytics

    bench = _copy(msrs_benchmark, tmp_path / "msrs")
    _fuse(bench, "average")
    use_offline_ultralytics(tmp_path / "ultralytics")
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    data = check_det_dataset(write_data_yaml(tmp_path / "data.yaml", bench.fused_dir("average"), bench.classes))
    assert data["nc"] == len(bench.classes)
    for split in SPLITS:
        dataset = YOLODataset(img_path=data[split], data=data, task="detect", imgsz=64, augment=False)
        boxes = sum(len(label["cls"]) for label in dataset.labels)
        expected = sum(1 for f in bench.labels_dir(split).glob("*.txt") for line in f.read_text().splitlines()
                       if line.strip())
        assert len(dataset.labels) == len(bench.stems(split)) and boxes == expected > 0
