"""fusionbench.pairing: the one IR/VI pairing rule (real files in temporary folders)."""
from __future__ import annotations

from pathlib import Path

import pytest

from fusionbench.errors import FusionBenchError
from fusionbench.pairing import has_control_characters, pair_folders


def _touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"x")


def test_pairs_by_stem_any_suffix_case(tmp_path):
    _touch(tmp_path / "ir", "a.png", "b.PNG", "c.jpg", ".hidden.png", "notes.md")
    _touch(tmp_path / "vi", "a.jpg", "b.png", "c.JPEG")
    pairing = pair_folders(tmp_path / "ir", tmp_path / "vi")
    assert [(p.stem, p.ir.name, p.vi.name) for p in pairing.complete()] == [
        ("a", "a.png", "a.jpg"), ("b", "b.PNG", "b.png"), ("c", "c.jpg", "c.JPEG")]


def test_duplicate_stem_is_an_error_never_overwritten(tmp_path):
    _touch(tmp_path / "ir", "a.png", "a.jpg", "b.png")
    _touch(tmp_path / "vi", "a.png", "b.png")
    pairing = pair_folders(tmp_path / "ir", tmp_path / "vi")
    assert [p.stem for p in pairing.pairs] == ["b"]
    assert pairing.vi_only == []          # a's visible file has a partner stem, just an ambiguous one
    with pytest.raises(FusionBenchError) as caught:
        pairing.complete()
    assert f"{tmp_path / 'ir'}: duplicate stem 'a' (a.jpg, a.png)" in str(caught.value)


def test_orphans_and_control_characters_are_listed(tmp_path):
    _touch(tmp_path / "ir", "a.png", "b.png", "bad\nname.png", "tab\there.png")
    _touch(tmp_path / "vi", "a.png", "c.png", "bad\nname.png")
    problems = [message for _, message in pair_folders(tmp_path / "ir", tmp_path / "vi").problems()]
    assert f"{tmp_path / 'ir' / 'b.png'}: infrared image without a visible image in {tmp_path / 'vi'}" in problems
    assert f"{tmp_path / 'vi' / 'c.png'}: visible image without an infrared image in {tmp_path / 'ir'}" in problems
    assert f"{tmp_path / 'ir'}: file name 'bad\\nname.png' holds a control character (newline, tab, ...); " \
           f"rename the file" in problems
    assert sum("holds a control character" in p for p in problems) == 3
    assert len(problems) == 5


def test_control_characters():
    assert has_control_characters("a\rb") and has_control_characters("a\x7f") and has_control_characters("\x00")
    assert not has_control_characters("M3FD_00012 é ü.png")


def test_empty_folder_is_an_error(tmp_path):
    _touch(tmp_path / "ir")
    _touch(tmp_path / "vi")
    with pytest.raises(FusionBenchError, match="no images"):
        pair_folders(tmp_path / "ir", tmp_path / "vi").complete()
