"""The config schema: defaults, overlays, overrides, and errors that name the key before any work."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from runs import MODEL, detector

from pipelines.cli import cli
from pipelines.config import ConfigError, describe_keys, load_config, run_layout
from pipelines.schema import Config, RunSection

REPO = Path(__file__).resolve().parents[1]


def test_paper_is_the_defaults_and_sample_only_changes_what_it_names():
    paper, defaults = load_config("paper"), load_config(None)
    assert paper.run.name == "paper"
    assert paper.model_dump(exclude={"run"}) == defaults.model_dump(exclude={"run"})
    assert paper.detect.epochs == 40 and paper.fusion.train.epochs == 800 and paper.fusion.train.batch_size == 20
    assert paper.data.split.ratios == (0.7, 0.1, 0.2) and paper.perception.allow_random is False
    sample = load_config("sample")
    assert sample.detect.epochs == 14 and sample.detect.imgsz == 128 and sample.fusion.train.crop == 49
    assert sample.tasks == {"detection": ["yolov5n"], "segmentation": ["segformer_b0"]}
    assert sample.perception.allow_random is True
    assert sample.detect.train_args == {"optimizer": "AdamW", "lr0": 0.003, "warmup_epochs": 1, "mosaic": 0.0, "nbs": 4}


def test_every_key_has_a_type_a_default_and_a_description():
    rows = describe_keys()
    keys = [key for key, *_ in rows]
    assert "detect.epochs" in keys and "data.split.ratios" in keys and "fusion.train.lr_peak" in keys
    assert len(keys) == len(set(keys))
    undocumented = [key for key, _type, _default, description in rows if not description]
    assert not undocumented


@pytest.mark.parametrize("override, message", [
    ("detect.epoch=3", "detect.epoch: unknown key; did you mean detect.epochs?"),
    ("run.rot=/tmp/x", "run.rot: unknown key; did you mean run.root?"),
    ("fusion.train.epoch=3", "did you mean fusion.train.epochs or fusion.train.stage_epochs or fusion.train.warmup_epochs?"),
    ("detect.epochs=abc", "detect.epochs = 'abc': Input should be a valid integer"),
    ("fusion.train.epochs=-1", "fusion.train.epochs = -1: Input should be greater than or equal to 1"),
    ("detect.epochs=-1", "detect.epochs = -1: Input should be greater than or equal to 1"),
    ("detect.select_by=best", "detect.select_by = 'best'"),
    ("data.split.ratios=[0.5,0.5,0.5]", "three fractions"),
    ("run.device=gpu", "'gpu' is not a device"),
    ("methods.gff.r11=3", "methods.gff: gff: unknown option 'r11' (did you mean 'r1'?)"),
    ("fusion.methods=[ir,gfff]", "unknown fusion method 'gfff' (did you mean 'gff'?)"),
    ("fusion.methods=[ir,ir]", "listed twice: ir"),
    ("nosuchsection.x=1", "nosuchsection: unknown key"),
])
def test_bad_keys_and_values_are_errors_naming_the_key(override, message):
    with pytest.raises(ConfigError) as caught:
        load_config("sample", [override])
    assert message in str(caught.value)
    assert "sample.yaml" in str(caught.value)


def test_several_problems_are_listed_together():
    with pytest.raises(ConfigError, match="2 problems") as caught:
        load_config("sample", ["detect.epoch=3", "run.rot=x"])
    assert "detect.epochs?" in str(caught.value) and "run.root?" in str(caught.value)


def test_device_index_is_a_gpu_not_auto_and_a_missing_gpu_is_refused_at_load():
    import torch

    assert RunSection(device=0).device == "0"
    assert RunSection(device=[0, 1]).device == "0,1"
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="run.device = 'cuda': no such device here"):
            load_config("sample", ["run.device=cuda"])
        with pytest.raises(ConfigError, match="run.device = '0'"):
            load_config("sample", ["run.device=0"])


def test_overrides_parse_yaml_values():
    config = load_config("sample", ["detect.epochs=2", "fusion.methods=[ir, vi]", "data.raw=null",
                                    "methods.gff.r1=7"])
    assert config.detect.epochs == 2 and config.fusion.methods == ["ir", "vi"] and config.data.raw is None
    assert config.method_options("gff") == {"r1": 7} and config.method_options("laplacian") == {}


@pytest.mark.parametrize("bad", ["noequals", "=3"])
def test_bad_override_is_a_clear_error(bad):
    with pytest.raises(ConfigError, match="expected key.sub=value"):
        load_config("sample", [bad])


def test_override_into_a_value_is_refused():
    with pytest.raises(ConfigError, match="detect.epochs is a value, not a section"):
        load_config("sample", ["detect.epochs.x=1"])


def test_missing_and_invalid_config_files_name_the_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("run: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        load_config(broken)
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="list.yaml: the top level must be a mapping"):
        load_config(listed)


def test_user_overlay_extends_a_builtin_and_overrides_come_last(tmp_path: Path):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"extends": "sample", "run": {"name": "mine"}, "detect": {"epochs": 3}}))
    config = load_config(path, ["detect.epochs=5"])
    assert config.run.name == "mine" and config.detect.epochs == 5
    assert config.detect.imgsz == 128  # from sample.yaml
    assert config.source == path.resolve()
    looping = tmp_path / "loop.yaml"
    looping.write_text(f"extends: {looping}\n")
    with pytest.raises(ConfigError, match="loops back"):
        load_config(looping)


def test_run_folders_follow_the_config(tmp_path: Path):
    config = load_config("sample", [f"run.root={tmp_path}", "run.name=r1"])
    assert run_layout(config).root == tmp_path / "r1"
    assert run_layout(config).benchmark == tmp_path / "r1" / "benchmark"
    assert detector(config).method("vi").folder == tmp_path / "r1" / "detection" / MODEL / "vi"
    explicit = load_config("sample", [f"data.benchmark={tmp_path / 'b'}"])
    assert run_layout(explicit).benchmark == tmp_path / "b"
    with pytest.raises(ConfigError, match="run.name"):
        load_config("sample", ["run.name=../elsewhere"])


def test_cli_lists_every_stage_command():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0, result.output
    commands = set(cli.list_commands(None))  # type: ignore[arg-type]
    assert {"prepare", "sample", "train-fusion", "fuse", "detect", "metrics", "report", "run-all",
            "config"} <= commands
    for name in commands:
        assert cli.get_command(None, name) is not None, name  # type: ignore[arg-type]
    assert cli.get_command(None, "no-such-command") is None  # type: ignore[arg-type]


@pytest.mark.parametrize("wanted, expected", [
    ("cpu", "cpu"), ("cuda", "cuda"), ("cuda:1", "cuda:1"), ("0", "cuda:0"), ("2,3", "cuda:2"), ("auto", None),
])
def test_run_device_maps_to_one_torch_device(wanted, expected):
    import torch

    from pipelines.devices import torch_device

    device = torch_device(Config(run=RunSection(device=wanted)))
    assert str(device) == (expected or ("cuda" if torch.cuda.is_available() else "cpu"))


def test_command_flags_are_taken_literally_not_as_yaml(tmp_path: Path):
    """--data/--out values are paths: a date-like or '#'-containing name must survive unchanged."""
    from pipelines.options import build_config

    odd = tmp_path / "2024-05-01"
    config = build_config("sample", ("detect.epochs=3",), {"data.raw": str(odd), "data.benchmark": "runs/x #1",
                                                          "run.device": None})
    assert config.data.raw == odd
    assert config.data.benchmark == Path("runs/x #1")
    assert config.detect.epochs == 3 and config.run.device == "auto"


def _pipelines(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_typo_fails_before_any_file_is_written(tmp_path: Path):
    result = _pipelines(["run-all", "-s", "detect.epoch=3"], tmp_path)
    assert result.returncode == 2
    assert "did you mean detect.epochs" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_user_errors_are_one_line_and_bugs_keep_their_traceback(tmp_path: Path, monkeypatch):
    from pipelines import cli as cli_module

    out = _pipelines(["config", "--keys"], tmp_path)
    assert out.returncode == 0 and "detect.epochs" in out.stdout

    def boom(*_args, **_kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cli_module.cli, "main", boom)
    with pytest.raises(ZeroDivisionError):
        cli_module.main([])

    def interrupt(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_module.cli, "main", interrupt)
    with pytest.raises(SystemExit) as stopped:
        cli_module.main([])
    assert stopped.value.code == 130
