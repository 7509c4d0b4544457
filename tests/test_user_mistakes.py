"""A user's mistake is one line and exit 2, never a traceback; a write that fails mid-run fails
that file alone; an unreadable file fails alone in every command that reads photos."""

from __future__ import annotations

import argparse
import errno
import hashlib
import importlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import protector.images as images_module
from protector.cli import SUBCOMMANDS, build_parser, main
from protector.data.fetch import OfficialFile
from protector.export import save_protector
from protector.generator import BoundedProtector, UNetGenerator
from protector.protect.manifest import read_manifest

from photo_files import photo

fetch_module = importlib.import_module("protector.data.fetch")  # the package re-exports a function `fetch`
PROC_MEM = "/proc/self/mem"  # a regular file whose read fails with EIO, even as root
EPS = 4 / 255


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr
    return [line for line in stderr.splitlines() if "error:" in line]


# ------------------------------------------------------------------ numeric flags


def _actions(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _actions(sub)
        elif action.option_strings:
            yield action


@pytest.mark.parametrize("command", [c for c in SUBCOMMANDS if c != "train"])  # train: LightningCLI checks its own
def test_no_numeric_flag_takes_a_bare_int_or_float(command):
    """Every number is checked where it enters (protector/commands/argtypes.py), not deep in a run."""
    parser = build_parser(command)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    loose = [a.option_strings[0] for a in _actions(sub) if a.type in (int, float)]
    assert loose == []


BAD_NUMBERS = [
    ("protect", "--quality", "0", "must be in 1..100, got 0"),
    ("protect", "--quality", "101", "must be in 1..100, got 101"),
    ("protect", "--batch-size", "0", "must be at least 1, got 0"),
    ("protect", "--devices", "0", "0 devices would run on none"),
    ("protect", "--devices", "a,b", "device indices are whole numbers"),
    ("protect", "--num-workers", "-1", "must be at least 0, got -1"),
    ("protect", "--num-nodes", "0", "must be at least 1, got 0"),
    ("protect", "--enhance-strength", "1.5", "must be in [0, 1], got 1.5"),
    ("protect", "--enhance-strength", "nan", "must be in [0, 1], got nan"),
    ("protect", "--refine-steps", "-1", "must be at least 0, got -1"),
    ("protect", "--max-batch-pixels", "0", "must be at least 1, got 0"),
    ("protect", "--tile", "0", "must be at least 1, got 0"),
    ("protect", "--tile-overlap", "-5", "must be at least 0, got -5"),
    ("protect", "--tile-align", "0", "must be at least 1, got 0"),
    ("protect", "--tile-max-pixels", "0", "must be at least 1, got 0"),
    ("protect", "--min-side", "0", "must be at least 1, got 0"),
    ("protect", "--max-pixels", "-1", "must be at least 1, got -1"),
    ("protect", "--quality", "ninety", "'ninety' is not a whole number"),
    ("evaluate", "--batch-size", "0", "must be at least 1, got 0"),
    ("evaluate", "--gallery", "-1", "must be at least 0, got -1"),
    ("evaluate", "--quality", "0", "must be in 1..100, got 0"),
    ("evaluate", "--seed", "-1", "must be in 0..4294967295, got -1"),
    ("evaluate", "--eps", "0", "must be in (0, 1]"),
    ("evaluate", "--eps", "2/0", "expected a number like 0.0078 or a fraction like 2/255"),
    ("evaluate", "--eps", "300/255", "must be in (0, 1]"),
    ("accuracy", "--batch-size", "0", "must be at least 1, got 0"),
    ("accuracy", "--limit", "0", "must be at least 1, got 0"),
]


@pytest.mark.parametrize("command,flag,value,message", BAD_NUMBERS, ids=[f"{c} {f} {v}" for c, f, v, _ in BAD_NUMBERS])
def test_a_bad_number_is_one_line_and_exit_2(capsys, command, flag, value, message):
    code, stdout, stderr = run_main(capsys, command, f"{flag}={value}")
    assert code == 2 and stdout == ""
    (line,) = error_lines(stderr)  # argparse's usage, then this one line
    assert line.startswith(f"protector {command}: error: argument {flag}: ") and message in line


@pytest.mark.parametrize("value,parsed", [("auto", "auto"), ("1", 1), ("-1", -1), ("0,", "0,"), ("0,1", "0,1")])
def test_devices_lightning_accepts_still_parse(value, parsed):
    args = build_parser("protect").parse_args(["protect", "--protector", "p.pt", "--output", "o", "--devices", value])
    assert args.devices == parsed


# ------------------------------------------------------------------ protect: the output folder


@pytest.fixture
def protector_file(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save_protector(tmp_path / "protector.pt", BoundedProtector(UNetGenerator(base_channels=8, depth=2), EPS))


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(photo(48, 40, 20 + i)).save(folder / f"p{i}.png")
    return folder


def protect_cli(capsys, checkpoint: Path, inputs: Path, output: Path, *more: str) -> tuple[int, str, str]:
    return run_main(capsys, "protect", "--protector", str(checkpoint), "--input", str(inputs), "--output",
                    str(output), "--num-workers", "0", "--no-progress", "--batch-size", "1", *more)


def test_output_naming_a_file_is_refused_before_any_work(capsys, tmp_path, protector_file, photos):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine\n")
    code, stdout, stderr = protect_cli(capsys, protector_file, photos, a_file)
    assert code == 2 and stdout == ""
    assert error_lines(stderr) == [f"protector protect: error: --output {a_file} is a file, not a folder: give a "
                                   "folder (one that does not exist yet is created)"]
    code, _, stderr = protect_cli(capsys, protector_file, photos, a_file / "sub")
    assert code == 2
    assert error_lines(stderr) == [f"protector protect: error: --output {a_file / 'sub'}: {a_file} is a file, so no "
                                   "folder can be made there"]
    assert a_file.read_text() == "mine\n" and not (tmp_path / "notes.txt.manifest.csv").exists()


def test_tile_overlap_not_smaller_than_the_tile_is_refused(capsys, tmp_path, protector_file, photos):
    code, _, stderr = protect_cli(capsys, protector_file, photos, tmp_path / "out", "--tile", "64",
                                  "--tile-overlap", "64")
    assert code == 2
    assert error_lines(stderr) == ["protector protect: error: --tile-overlap must be at least 0 and smaller than "
                                   "--tile (64), got 64"]


def _fail_writes(monkeypatch, error: int, when) -> list[str]:
    """Make protector.images._write_temporary, the one function that puts bytes on disk for
    write_atomic and the writability probe, raise OSError(`error`) when `when(name)` says so.
    The minimal stand-in for a read-only folder or a full disk, which root cannot make with chmod."""
    real = images_module._write_temporary
    refused: list[str] = []

    def write(folder, name, data):
        if when(name):
            refused.append(name)
            raise OSError(error, os.strerror(error), str(Path(folder) / name))
        return real(folder, name, data)

    monkeypatch.setattr(images_module, "_write_temporary", write)
    return refused


def test_read_only_output_folder_is_refused_before_any_work(capsys, monkeypatch, tmp_path, protector_file, photos):
    out = tmp_path / "out"
    _fail_writes(monkeypatch, errno.EROFS, lambda name: True)
    code, stdout, stderr = protect_cli(capsys, protector_file, photos, out)
    assert code == 2 and stdout == ""
    assert error_lines(stderr) == [f"protector protect: error: --output {out}: cannot write there (Read-only file "
                                   "system: choose another place)"]
    assert list(out.iterdir()) == []  # nothing written, no record


def test_full_disk_fails_the_photos_it_hits_alone(capsys, monkeypatch, tmp_path, protector_file, photos):
    out = tmp_path / "out"
    _fail_writes(monkeypatch, errno.ENOSPC, lambda name: name == "p1.jpg")  # the disk is full for one write
    code, stdout, _ = protect_cli(capsys, protector_file, photos, out)
    assert code == 1
    assert "written: 2   skipped (already there): 0   failed: 1" in stdout
    rows = {row.input: row for row in read_manifest(tmp_path / "out.manifest.csv")}
    assert rows["p1.png"].status == "failed"
    assert rows["p1.png"].error == f"p1.png: cannot write {out / 'p1.jpg'} (No space left on device: free some space)"
    assert f"  {rows['p1.png'].error}" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["p0.jpg", "p2.jpg", "protect-run.json"]  # no temporaries

    monkeypatch.undo()  # space freed: the rerun writes only what is missing
    code, stdout, _ = protect_cli(capsys, protector_file, photos, out)
    assert code == 0 and "written: 1   skipped (already there): 2   failed: 0" in stdout


def test_disk_full_to_the_end_is_one_line_and_the_rerun_resumes(capsys, monkeypatch, tmp_path, protector_file,
                                                                 photos):
    out = tmp_path / "out"
    refused = _fail_writes(monkeypatch, errno.ENOSPC,
                           lambda name: name not in ("protector-probe", "protect-run.json", "p0.jpg"))
    code, stdout, stderr = protect_cli(capsys, protector_file, photos, out)
    assert code == 2 and stdout == ""
    manifest = tmp_path / "out.manifest.csv"
    assert error_lines(stderr) == [f"protector protect: error: the manifest {manifest}: cannot be written (No space "
                                   "left on device: free some space); the photos written so far are whole and "
                                   "recorded: run the same command again to resume"]
    assert "p1.jpg" in refused and not manifest.exists()

    monkeypatch.undo()
    code, stdout, _ = protect_cli(capsys, protector_file, photos, out)
    assert code == 0 and "written: 2   skipped (already there): 1   failed: 0" in stdout  # p0 was accounted for


# ------------------------------------------------------------------ accuracy and data check


TINY_MODEL = '''
import torch
from torch import nn


class MeanNet(nn.Module):
    """4 classes from the mean brightness."""

    def forward(self, x):
        return -50 * (x.mean(dim=(1, 2, 3))[:, None] - (torch.arange(4.0) + 0.5) / 4).abs()
'''


@pytest.fixture
def labelled(tmp_path: Path) -> dict[str, Path]:
    images, models = tmp_path / "images", tmp_path / "models"
    images.mkdir()
    models.mkdir()
    (models / "mean_net.py").write_text(TINY_MODEL)
    for i, level in enumerate((30, 100, 160)):
        Image.fromarray(np.full((40, 40, 3), level, np.uint8)).save(images / f"a{i}.png")
    os.symlink(PROC_MEM, images / "unreadable.png")
    os.mkfifo(images / "fifo.png")
    (tmp_path / "list.csv").write_text("a0.png,0\na1.png,1\nunreadable.png,2\nfifo.png,2\na2.png,2\n")
    return {"images": images, "models": models, "list": tmp_path / "list.csv"}


def accuracy_cli(capsys, labelled, *more: str) -> tuple[int, str, str]:
    return run_main(capsys, "accuracy", "--classifier", "mean_net.MeanNet", "--classifier-path", str(labelled["models"]),
                    "--list", str(labelled["list"]), "--images", str(labelled["images"]), "--device", "cpu", *more)


def test_accuracy_scores_the_others_when_a_photo_cannot_be_read(capsys, labelled):
    code, stdout, stderr = accuracy_cli(capsys, labelled)
    assert code == 1 and "Traceback" not in stderr
    assert "images   3 scored, 0 skipped (unknown label), 2 unreadable" in stdout
    assert "unreadable: unreadable.png: cannot be read (Input/output error)" in stdout
    assert f"unreadable: folder {labelled['images']}: fifo.png: a FIFO, not a regular file" in stdout


def test_accuracy_json_that_cannot_be_written_is_refused_before_the_work(capsys, monkeypatch, tmp_path, labelled):
    code, _, stderr = accuracy_cli(capsys, labelled, "--json", str(tmp_path))
    assert code == 2 and error_lines(stderr) == [f"protector accuracy: error: --json {tmp_path} is a folder: give a "
                                                 "file name"]
    _fail_writes(monkeypatch, errno.EACCES, lambda name: True)
    code, stdout, stderr = accuracy_cli(capsys, labelled, "--json", str(tmp_path / "acc.json"))
    assert code == 2 and stdout == ""
    assert error_lines(stderr) == [f"protector accuracy: error: --json {tmp_path / 'acc.json'}: cannot write there "
                                   "(Permission denied: choose a place you can write to)"]


def test_data_check_reports_an_unreadable_file_and_checks_the_others(capsys, monkeypatch, tmp_path):
    good = b"label data\n"
    table = {name: OfficialFile(name, name, ("http://127.0.0.1:9/x",), "labels", md5=hashlib.md5(good).hexdigest())
             for name in ("good.txt", "broken.txt")}
    monkeypatch.setattr(fetch_module, "OFFICIAL_FILES", table)
    (tmp_path / "good.txt").write_bytes(good)
    os.symlink(PROC_MEM, tmp_path / "broken.txt")
    code, stdout, stderr = run_main(capsys, "data", "check", "--root", str(tmp_path), "--weights", str(tmp_path))
    assert code == 1 and "Traceback" not in stderr
    rows = {line.split()[0]: line for line in stdout.splitlines() if line.endswith(".txt")}
    assert rows["good.txt"].split()[1] == "ok"
    assert "unreadable  cannot be read (Input/output error)" in rows["broken.txt"]
