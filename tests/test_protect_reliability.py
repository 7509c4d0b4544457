"""A protection run survives bad files, resumes after a crash, never overwrites by accident."""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from protector.commands import protect as protect_command
from protector.data.sources import ImageSource
from protector.export import save_protector
from protector.generator import BoundedProtector, UNetGenerator
from protector.protect import ProtectOptions, protect
from protector.protect.dataset import PhotoDataset
from protector.protect.manifest import read_manifest
from protector.protect.plan import PlannedPhoto

from photo_files import encoded, photo, png_claiming

REPO = Path(__file__).resolve().parents[1]
EPS = 4 / 255


def make_protector() -> BoundedProtector:
    torch.manual_seed(0)
    return BoundedProtector(UNetGenerator(base_channels=8, depth=2), EPS).eval()


def run(output: Path, inputs: list[Path], **options):
    options.setdefault("num_workers", 0)
    options.setdefault("progress", False)
    return protect(ProtectOptions(output=output, inputs=inputs, **options), protector=make_protector())


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def messy_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "messy"
    folder.mkdir()
    good = Image.fromarray(photo(48, 40, 0))
    jpeg = encoded(good, "JPEG", quality=95)
    files = {
        "zero.jpg": b"",
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "notimage.jpg": b"this is a text file, not a photo\n",
        "bomb.png": png_claiming(30000, 30000),
        "tiny.png": encoded(Image.fromarray(photo(4, 4, 1)), "PNG"),
        "anim.gif": b"",  # replaced below
        "alpha.png": encoded(Image.fromarray(np.dstack([photo(48, 40, 2), np.full((40, 48), 128, np.uint8)])), "PNG"),
        "gray.png": encoded(good.convert("L"), "PNG"),
        "palette.png": encoded(good.convert("P", palette=Image.Palette.ADAPTIVE, colors=16), "PNG"),
        "deep.png": encoded(Image.fromarray((photo(48, 40, 3)[..., 0].astype(np.uint16) * 257)), "PNG"),
        "cmyk.jpg": encoded(good.convert("CMYK"), "JPEG", quality=95),
        "my photo ü.png": encoded(Image.fromarray(photo(48, 40, 4)), "PNG"),
        "dup.jpg": jpeg,
        "dup.png": encoded(good, "PNG"),
        "fine.jpg": jpeg,
    }
    frames = [Image.fromarray(photo(48, 40, s)) for s in (5, 6)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    files["anim.gif"] = buffer.getvalue()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


EXPECTED_FAILURES = {
    "zero.jpg": "empty file",
    "truncated.jpg": "truncated",
    "notimage.jpg": "not an image",
    "bomb.png": "pixels",
    "tiny.png": "smaller than the 32-pixel minimum",
    "anim.gif": "animated",
    "dup.jpg": "also the output of dup.png",
    "dup.png": "also the output of dup.jpg",
}


def test_bad_files_fail_alone_with_clear_messages(tmp_path, messy_folder):
    before = tree_digest(messy_folder)
    summary = run(tmp_path / "out", [messy_folder], batch_size=4)
    rows = {row.input: row for row in read_manifest(tmp_path / "out" / "manifest.csv")}
    failed = {name for name, row in rows.items() if row.status == "failed"}
    assert failed == set(EXPECTED_FAILURES)
    for name, fragment in EXPECTED_FAILURES.items():
        assert rows[name].error.startswith(name), rows[name].error  # names the file
        assert fragment in rows[name].error, rows[name].error
    for name in ("alpha.png", "gray.png", "palette.png", "deep.png", "cmyk.jpg", "my photo ü.png", "fine.jpg"):
        assert rows[name].status == "ok", rows[name]
        out = Image.open(tmp_path / "out" / rows[name].output)
        assert out.mode == "RGB" and out.size == (48, 40)
    assert (tmp_path / "out" / "my photo ü.jpg").is_file()
    assert summary.failed == len(EXPECTED_FAILURES) and summary.written == 7
    assert {name for name, _ in summary.failures} == set(EXPECTED_FAILURES)
    assert tree_digest(messy_folder) == before  # inputs never modified


def test_exit_code_reports_failures_unless_allowed(tmp_path, messy_folder, capsys):
    save_protector(tmp_path / "protector.pt", make_protector().generator, EPS)
    parser = argparse.ArgumentParser()
    protect_command.add_arguments(parser)
    common = ["--checkpoint", str(tmp_path / "protector.pt"), "--input", str(messy_folder), "--num-workers", "0",
              "--no-progress"]
    assert protect_command.run(parser.parse_args(common + ["--output", str(tmp_path / "a")])) == 1
    printed = capsys.readouterr().out
    assert "failed: 8" in printed and "zero.jpg: empty file (0 bytes)" in printed
    assert protect_command.run(parser.parse_args(common + ["--output", str(tmp_path / "b"), "--allow-failures"])) == 0


def test_list_entries_missing_or_escaping_fail_alone(tmp_path):
    images = tmp_path / "val_256"
    images.mkdir()
    for i in (1, 2):
        Image.fromarray(photo(64, 64, i)).save(images / f"Places365_val_0000000{i}.jpg", quality=95)
    with tarfile.open(tmp_path / "val_256.tar", "w") as archive:
        archive.add(images, arcname="val_256")
    (tmp_path / "list.csv").write_text(
        '"Places365_val_00000001.jpg"\r\n"missing.jpg"\r\n"../escape.jpg"\r\n"/etc/passwd"\r\n'
        '"Places365_val_00000002.jpg"\r\n'
    )
    summary = protect(ProtectOptions(output=tmp_path / "out", list_path=tmp_path / "list.csv",
                                     images=tmp_path / "val_256.tar", num_workers=0, progress=False),
                      protector=make_protector())
    assert summary.written == 2 and summary.failed == 3
    errors = dict(summary.failures)
    assert "not found" in errors["missing.jpg"] and "missing.jpg" in errors["missing.jpg"]
    escaping = [e for name, e in summary.failures if "escape" in name]
    assert escaping and "'..'" in escaping[0] and "list.csv:3" in escaping[0]
    absolute = [e for name, e in summary.failures if "passwd" in name]
    assert absolute and "absolute" in absolute[0]
    assert not (tmp_path / "escape.jpg").exists()


class _LockedSource(ImageSource):
    """A source whose files exist but cannot be read (permissions, a vanished network share)."""

    def names(self) -> list[str]:
        return ["locked.jpg"]

    def read_bytes(self, name: str) -> bytes:
        raise PermissionError(13, "Permission denied", name)

    def describe(self) -> str:
        return "locked source"

    def _lookup(self, name: str):
        return name


def test_unreadable_file_becomes_a_message():
    dataset = PhotoDataset([_LockedSource()], [PlannedPhoto(index=0, input="locked.jpg", source=0, key="locked.jpg")])
    sample = dataset[0]
    assert sample["image"] is None
    assert sample["error"].startswith("locked.jpg: cannot be read") and "Permission denied" in sample["error"]


def test_rerun_skips_existing_and_overwrite_replaces(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(photo(48, 40, i)).save(folder / f"p{i}.png")
    first = run(tmp_path / "out", [folder])
    assert first.written == 3
    protected = (tmp_path / "out" / "p0.jpg").read_bytes()
    users_edit = encoded(Image.fromarray(photo(48, 40, 99)), "JPEG")
    (tmp_path / "out" / "p0.jpg").write_bytes(users_edit)
    (tmp_path / "out" / "p1.jpg").write_bytes(b"garbage")

    second = run(tmp_path / "out", [folder])
    assert (second.written, second.skipped, second.failed) == (0, 2, 1)
    assert (tmp_path / "out" / "p0.jpg").read_bytes() == users_edit  # never replaced silently
    rows = {r.input: r for r in read_manifest(tmp_path / "out" / "manifest.csv")}
    assert rows["p0.png"].status == "skipped" and rows["p2.png"].status == "skipped"
    assert rows["p1.png"].status == "failed" and "--overwrite" in rows["p1.png"].error

    third = run(tmp_path / "out", [folder], overwrite=True)
    assert third.written == 3 and third.failed == 0
    assert (tmp_path / "out" / "p0.jpg").read_bytes() == protected  # deterministic


def test_output_replacing_its_input_is_refused(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(photo(48, 40, 0)).save(folder / "same.jpg", quality=95)
    before = (folder / "same.jpg").read_bytes()
    with pytest.raises(ValueError, match="is the input folder"):
        run(folder, [folder], fmt="same", overwrite=True)
    summary = run(folder, [folder / "same.jpg"], fmt="same", overwrite=True)  # a single file, same name
    assert summary.failed == 1 and "replace the input file itself" in summary.failures[0][1]
    assert (folder / "same.jpg").read_bytes() == before


@pytest.mark.slow
def test_sigkill_then_rerun_gives_the_uninterrupted_result(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(40):
        Image.fromarray(photo(96, 64, i)).save(folder / f"img_{i:03d}.png")
    torch.manual_seed(0)
    checkpoint = save_protector(tmp_path / "protector.pt", UNetGenerator(base_channels=16, depth=2), EPS)

    def command(out: Path) -> list[str]:
        return [sys.executable, str(REPO / "infer.py"), "--checkpoint", str(checkpoint), "--input", str(folder),
                "--output", str(out), "--run-code", "team_run", "--zip", "--batch-size", "2", "--num-workers", "0",
                "--no-progress"]

    reference = subprocess.run(command(tmp_path / "reference"), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert reference.returncode == 0, reference.stderr

    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen(command(interrupted), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if interrupted.is_dir() and len(list(interrupted.glob("*.jpg"))) >= 4:
            break
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done_at_kill = len(list(interrupted.glob("*.jpg")))
    assert 4 <= done_at_kill < 40, f"the kill landed after {done_at_kill} files; the run was not interrupted"
    assert not (interrupted / "manifest.csv").exists()

    resumed = subprocess.run(command(interrupted), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"skipped (already there): {done_at_kill}" in resumed.stdout

    def outputs(out: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.name != "manifest.csv"}

    assert outputs(interrupted) == outputs(tmp_path / "reference")  # same names, same bytes, zip included


def test_single_files_with_one_output_name_both_fail(tmp_path):
    for folder in ("day1", "day2"):
        (tmp_path / folder).mkdir()
        Image.fromarray(photo(48, 40, len(folder))).save(tmp_path / folder / "IMG_0001.jpg", quality=95)
    Image.fromarray(photo(48, 40, 7)).save(tmp_path / "day1" / "IMG_0002.png")
    summary = run(tmp_path / "out", [tmp_path / "day1" / "IMG_0001.jpg", tmp_path / "day2" / "IMG_0001.jpg",
                                     tmp_path / "day1" / "IMG_0002.png", tmp_path / "day1" / "gone.jpg"])
    assert summary.written == 1 and summary.failed == 3
    errors = dict(summary.failures)
    assert "also the output of" in errors[str(tmp_path / "day1" / "IMG_0001.jpg")]
    assert "file not found" in errors[str(tmp_path / "day1" / "gone.jpg")]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.jpg")) == ["IMG_0002.jpg"]
