"""Config loading, overrides and the CLI entry point."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from pipelines.cli import cli
from pipelines.config import (
    ConfigError, apply_overrides, benchmark_dir, get_value, load_config, run_dir, stage_dir,
)


def test_builtin_configs_load_and_share_sections():
    sample, paper = load_config("sample"), load_config("paper")
    for section in ("run", "data", "perception", "fusion", "detect", "metrics", "report"):
        assert section in sample and section in paper, section
    assert paper["detect"]["epochs"] == 40
    assert paper["fusion"]["train"]["epochs"] == 800
    assert paper["fusion"]["train"]["batch_size"] == 20
    assert paper["data"]["split"]["ratios"] == [0.7, 0.1, 0.2]
    assert paper["perception"]["allow_random"] is False


def test_overrides_parse_yaml_values_and_create_keys():
    config = apply_overrides({"detect": {"epochs": 40}}, ["detect.epochs=2", "fusion.methods=[ir, vi]", "data.raw=null"])
    assert config["detect"]["epochs"] == 2
    assert config["fusion"]["methods"] == ["ir", "vi"]
    assert config["data"]["raw"] is None
    assert get_value(config, "detect.missing", "d") == "d"


@pytest.mark.parametrize("bad", ["noequals", "=3"])
def test_bad_override_is_a_clear_error(bad):
    with pytest.raises(ConfigError, match="expected key.sub=value"):
        apply_overrides({}, [bad])


def test_override_into_a_value_is_refused():
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"detect": {"epochs": 40}}, ["detect.epochs.x=1"])


def test_missing_and_invalid_config_files_name_the_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("run: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        load_config(broken)


def test_run_folders_follow_the_config(tmp_path: Path):
    config = load_config("sample", [f"run.root={tmp_path}", "run.name=r1"])
    assert run_dir(config) == tmp_path / "r1"
    assert benchmark_dir(config) == tmp_path / "r1" / "benchmark"
    assert stage_dir(config, "detect", "vi") == tmp_path / "r1" / "detect" / "vi"
    explicit = load_config("sample", [f"data.benchmark={tmp_path / 'b'}"])
    assert benchmark_dir(explicit) == tmp_path / "b"


def test_user_config_file_round_trips(tmp_path: Path):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"run": {"name": "mine"}, "detect": {"epochs": 3}}))
    config = load_config(path, ["detect.epochs=5"])
    assert config["run"]["name"] == "mine" and config["detect"]["epochs"] == 5
    assert config["run"]["config_file"] == str(path.resolve())


def test_cli_lists_every_stage_command():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0, result.output
    commands = set(cli.list_commands(None))  # type: ignore[arg-type]
    assert commands == {"prepare", "sample", "train-fusion", "fuse", "detect", "metrics", "report", "run-all"}
    for name in commands:
        assert cli.get_command(None, name) is not None, name  # type: ignore[arg-type]
    assert cli.get_command(None, "no-such-command") is None  # type: ignore[arg-type]


@pytest.mark.parametrize("wanted, expected", [
    ("cpu", "cpu"), ("cuda", "cuda"), ("cuda:1", "cuda:1"), ("0", "cuda:0"), ("2,3", "cuda:2"), (None, None),
])
def test_run_device_maps_to_one_torch_device(wanted, expected):
    import torch

    from pipelines.devices import torch_device

    device = torch_device({"run": {"device": wanted}})
    assert str(device) == (expected or ("cuda" if torch.cuda.is_available() else "cpu"))


def test_command_flags_are_taken_literally_not_as_yaml(tmp_path: Path):
    """--data/--out values are paths: a date-like or '#'-containing name must survive unchanged."""
    from pipelines.options import build_config

    odd = tmp_path / "2024-05-01"
    config = build_config("sample", ("detect.epochs=3",), {"data.raw": str(odd), "data.benchmark": "runs/x #1",
                                                          "run.device": None})
    assert config["data"]["raw"] == str(odd)
    assert config["data"]["benchmark"] == "runs/x #1"
    assert config["detect"]["epochs"] == 3 and config["run"]["device"] == "auto"
