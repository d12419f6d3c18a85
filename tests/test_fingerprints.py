"""What identifies a fused set: the code of its fuser (module sources, not the package version) and,
for a learned fuser, the weights it computes with (not the checkpoint file's bytes)."""
from __future__ import annotations

import hashlib
import importlib
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from fusion import code_identity
from fusion.learned.architecture import learned_method
from fusion.learned.checkpoint import checkpoint_identity, load_checkpoint, save_checkpoint
from fusion.learned.trainer import Trainer, TrainSettings
from fusion.perception import build_resnet50
from fusion.s4fusion.architecture import S4FUSION
from fusion.s4fusion.losses import LossSettings
from fusionbench import identity
from pipelines.config import load_config
from pipelines.fusers import build_method
from pipelines.train_fusion import as_train_pairs

TINY = dict(dims=(8, 16, 32), depths=(1, 1, 1), depths_decoder=(1, 1, 1), fusion_depth=1, d_state=4, d_state_fusion=4)


@pytest.fixture()
def fake_fusers(tmp_path: Path, monkeypatch):
    """A package ``fakefusion`` whose fuser imports a helper inside a function, beside an unrelated module."""
    root = tmp_path / "fakefusion"
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "helper.py").write_text("def weight():\n    return 0.5\n")
    (root / "unrelated.py").write_text("X = 1\n")
    (root / "fuser.py").write_text(textwrap.dedent("""
        import numpy as np

        def make():
            from .helper import weight
            return lambda ir, vi: weight() * (ir + vi)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(code_identity, "PACKAGES", ("fakefusion",))
    for cached in (identity._source_file, identity._is_module):
        cached.cache_clear()
    importlib.invalidate_caches()
    yield root
    for name in [m for m in sys.modules if m.startswith("fakefusion")]:
        del sys.modules[name]
    for cached in (identity._source_file, identity._is_module):
        cached.cache_clear()


def test_editing_a_fuser_or_a_helper_it_imports_changes_its_code_identity(fake_fusers: Path):
    """Observation (issue item 2): the fingerprint's `code` was the package version, so an edited fuser
    kept its stale fused set."""
    from fakefusion.fuser import make

    assert code_identity.code_modules("fakefusion.fuser") == ["fakefusion.fuser", "fakefusion.helper"]
    first = code_identity.fuser_code_identity(make)
    expected = hashlib.sha256()
    for name in ("fuser", "helper"):
        expected.update(f"fakefusion.{name}\n".encode())
        expected.update((fake_fusers / f"{name}.py").read_bytes())
    assert first == expected.hexdigest()

    (fake_fusers / "unrelated.py").write_text("X = 2\n")
    assert code_identity.fuser_code_identity(make) == first
    (fake_fusers / "helper.py").write_text("def weight():\n    return 0.6\n")
    second = code_identity.fuser_code_identity(make)
    assert second != first
    (fake_fusers / "fuser.py").write_text((fake_fusers / "fuser.py").read_text() + "\n# edited\n")
    assert code_identity.fuser_code_identity(make) not in (first, second)
    # the import graph is parsed once per version of a file: an import added later is followed
    (fake_fusers / "fuser.py").write_text((fake_fusers / "fuser.py").read_text() + "from . import unrelated\n")
    assert code_identity.code_modules("fakefusion.fuser") == [
        "fakefusion", "fakefusion.fuser", "fakefusion.helper", "fakefusion.unrelated"]


def test_a_classical_fuser_depends_on_its_own_modules_not_on_s4fusion():
    modules = code_identity.code_modules("fusion.baselines.multiscale")
    assert {"fusion.baselines", "fusion.baselines.multiscale", "fusion.color"} <= set(modules)
    assert not [m for m in modules if m.startswith("fusion.s4fusion") or m == "fusion.registry"]
    learned = code_identity.code_modules("fusion.s4fusion.architecture")  # what a learned S4Fusion method adds
    assert {"fusion.s4fusion.model", "fusion.learned.inference", "fusion.scan"} <= set(learned)


def test_a_learned_fuser_depends_on_its_architecture(monkeypatch):
    from fusion.registry import code_identity as registry_identity

    before = registry_identity("s4fusion")
    real = identity._source_file
    monkeypatch.setattr(identity, "_source_file", lambda module: Path(__file__) if module == "fusion.s4fusion.model"
                        else real(module))  # as if the model's source had changed
    assert registry_identity("s4fusion") != before and registry_identity("s4fusion") == registry_identity("s4fusion_add")


def test_the_fused_set_fingerprint_names_the_code_not_the_package_version(tmp_path: Path):
    from fusion.registry import code_identity as registry_identity

    config = load_config("sample", [f"run.root={tmp_path}"])
    gff, tif = build_method(config, "gff")[1], build_method(config, "tif")[1]
    assert gff["code"] == registry_identity("gff", ("fusionbench.images",)) and len(gff["code"]) == 64
    assert gff["code"] == tif["code"]  # both live in fusion/baselines/two_scale.py
    assert build_method(config, "laplacian")[1]["code"] != gff["code"]  # multiscale.py


def test_identical_trainings_give_one_checkpoint_identity(sample_benchmark, tmp_path: Path):
    """Observation 12: two identical S4Fusion trainings gave checkpoints with different hashes, so
    everything fused from them was redone."""
    perception, source = build_resnet50(allow_random=True)
    pairs = as_train_pairs(sample_benchmark.pairs("train"))[:2]
    val = as_train_pairs(sample_benchmark.pairs("val"))[:1]
    settings = TrainSettings(epochs=1, batch_size=2, crop=49, workers=0, warmup_epochs=1)
    config = learned_method("s4fusion").make_config(**TINY)
    runs = []
    for folder in ("a", "b"):
        Trainer(S4FUSION, config, LossSettings(stages=("stem",)), pairs, val, tmp_path / folder, settings,
                method="s4fusion", perception=perception,
                info={"perception": {"kind": source.kind, "detail": source.detail}}).fit()
        runs.append(tmp_path / folder)
    identities = {checkpoint_identity(run / name) for run in runs for name in ("last.pt", "best.pt")}
    assert len(identities) == 1  # same weights, whatever else the files hold

    model, config, _, payload = load_checkpoint(runs[0] / "last.pt")
    extra = {k: v for k, v in payload.items() if k not in ("format", "arch", "config", "state_dict")}
    moved = {**extra, "perception": {**extra["perception"], "detail": "/elsewhere/resnet50.pth"}, "optimizer": {}}
    save_checkpoint(tmp_path / "moved.pt", S4FUSION, config, model, **moved)  # another folder, no optimizer: other bytes
    assert (tmp_path / "moved.pt").read_bytes() != (runs[0] / "last.pt").read_bytes()
    assert checkpoint_identity(tmp_path / "moved.pt") in identities
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1e-3
    save_checkpoint(tmp_path / "changed.pt", S4FUSION, config, model)
    assert checkpoint_identity(tmp_path / "changed.pt") not in identities
