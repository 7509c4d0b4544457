"""`protector data check|fetch` through protector.cli.main."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
from pathlib import Path

import pytest

from conftest import save_shaped_resnet50
from protector.cli import main
from protector.data.fetch import OFFICIAL_FILES

fetch_module = importlib.import_module("protector.data.fetch")


def test_check_empty_root_lists_every_file_and_fails(tmp_path, capsys):
    code = main(["data", "check", "--root", str(tmp_path / "data"), "--weights", str(tmp_path / "w")])
    out = capsys.readouterr().out
    assert code == 1
    assert f"{len(OFFICIAL_FILES)} of {len(OFFICIAL_FILES)} files missing or bad" in out
    for file in OFFICIAL_FILES.values():
        path = file.path(tmp_path / "data", tmp_path / "w")
        assert f"save as  {path}" in out
        source_url = OFFICIAL_FILES[file.archive].urls[0] if file.archive else file.urls[0]
        assert f"download {source_url}" in out
    table_rows = [line.split()[:2] for line in out.splitlines()[1 : 1 + len(OFFICIAL_FILES)]]
    assert table_rows == [[name, "missing"] for name in OFFICIAL_FILES]


@pytest.fixture
def complete_root(tmp_path, shared, monkeypatch) -> tuple[Path, Path]:
    """The real MEPP copies, plus small generated stand-ins for the Places365 files (table patched)."""
    root, weights = tmp_path / "data", tmp_path / "weights"
    table = {}
    for name, file in OFFICIAL_FILES.items():
        path = file.path(root, weights)
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.startswith("MEPP"):
            path.write_bytes(shared.path(f"data/mepp/{name}").read_bytes())
            table[name] = file  # the real pins
            continue
        data = f"stand-in for {name}\n".encode()
        if file.loads_as is not None:  # a checkpoint must load to be present
            data = save_shaped_resnet50(path).read_bytes()
        path.write_bytes(data)
        if file.pinned:
            file = dataclasses.replace(file, md5=hashlib.md5(data).hexdigest(), size=len(data))
        table[name] = file
    monkeypatch.setattr(fetch_module, "OFFICIAL_FILES", table)
    return root, weights


def test_check_complete_root_passes(complete_root, capsys):
    root, weights = complete_root
    assert main(["data", "check", "--root", str(root), "--weights", str(weights)]) == 0
    out = capsys.readouterr().out
    assert f"all {len(OFFICIAL_FILES)} files present" in out
    assert "present, loads as a resnet50 checkpoint, checksum not pinned" in out  # the attack model
    assert out.count("sha256 ok") == 6


def test_check_reports_a_corrupted_list(complete_root, capsys):
    root, weights = complete_root
    path = root / "MEPP19test.csv"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    assert main(["data", "check", "--root", str(root), "--weights", str(weights)]) == 1
    out = capsys.readouterr().out
    assert "1 of 11 files missing or bad" in out
    assert "MEPP19test.csv  (size expected 16,200 bytes, got 16,800 bytes; 16,200 bytes, sha256 " in out


def test_fetch_verifies_real_lists_from_file_urls(tmp_path, shared, monkeypatch, capsys):
    mepp = shared.path("data/mepp")
    table = {
        name: dataclasses.replace(file, urls=((mepp / name).as_uri(),)) if name.startswith("MEPP") else file
        for name, file in OFFICIAL_FILES.items()
    }
    monkeypatch.setattr(fetch_module, "OFFICIAL_FILES", table)
    root = tmp_path / "data"
    code = main(["data", "fetch", "--root", str(root), "--only", "MEPP18val.csv", "MEPP19test.csv", "--no-progress"])
    assert code == 0
    assert (root / "MEPP18val.csv").read_bytes() == (mepp / "MEPP18val.csv").read_bytes()
    assert "MEPP19test.csv" in capsys.readouterr().out

    # A list that differs from the pinned bytes is refused and not left behind.
    tampered = tmp_path / "MEPP19test_manual.csv"
    tampered.write_bytes((mepp / "MEPP19test_manual.csv").read_bytes().replace(b"230", b"231"))
    table["MEPP19test_manual.csv"] = dataclasses.replace(table["MEPP19test_manual.csv"], urls=(tampered.as_uri(),))
    code = main(["data", "fetch", "--root", str(root), "--only", "MEPP19test_manual.csv", "--no-progress"])
    assert code == 1
    assert "sha256 mismatch" in capsys.readouterr().err
    assert not (root / "MEPP19test_manual.csv").exists()
    assert not (root / "MEPP19test_manual.csv.part").exists()


def test_fetch_rejects_unknown_names(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["data", "fetch", "--root", str(tmp_path), "--only", "imagenet.tar"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
