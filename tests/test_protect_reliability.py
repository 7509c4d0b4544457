"""A protection run survives bad files, resumes after a crash, never overwrites by accident."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
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
from protector.protect.provenance import ForeignOutputError

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
    rows = {row.input: row for row in read_manifest(tmp_path / "out.manifest.csv")}
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
    save_protector(tmp_path / "protector.pt", make_protector())
    parser = argparse.ArgumentParser()
    protect_command.add_arguments(parser)
    common = ["--protector", str(tmp_path / "protector.pt"), "--input", str(messy_folder), "--num-workers", "0",
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


def test_rerun_skips_its_own_outputs_refuses_changed_ones_and_overwrite_replaces(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(photo(48, 40, i)).save(folder / f"p{i}.png")
    first = run(tmp_path / "out", [folder])
    assert first.written == 3
    protected = (tmp_path / "out" / "p0.jpg").read_bytes()
    second = run(tmp_path / "out", [folder])  # the same protector and settings: resumes
    assert (second.written, second.skipped, second.failed) == (0, 3, 0)

    users_edit = encoded(Image.fromarray(photo(48, 40, 99)), "JPEG")
    (tmp_path / "out" / "p0.jpg").write_bytes(users_edit)
    (tmp_path / "out" / "p1.jpg").write_bytes(b"garbage")
    before = tree_digest(tmp_path / "out")
    with pytest.raises(ForeignOutputError, match=r"2 existing files were not made by this protector .*"
                                                 r"\(p0.jpg, p1.jpg\).*pass --overwrite.*new --output folder"):
        run(tmp_path / "out", [folder])
    assert tree_digest(tmp_path / "out") == before  # nothing replaced, nothing skipped as protected

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


def forty_photos_and_a_protector(tmp_path: Path) -> tuple[Path, Path]:
    """A folder of 40 small photos and an untrained protector file: a run long enough to interrupt."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(40):
        Image.fromarray(photo(96, 64, i)).save(folder / f"img_{i:03d}.png")
    torch.manual_seed(0)
    return folder, save_protector(tmp_path / "protector.pt",
                                  BoundedProtector(UNetGenerator(base_channels=16, depth=2), EPS))


def signal_after_four_files(process: subprocess.Popen, out: Path, signum: int) -> None:
    """Send `signum` to a running `infer.py` once 4 protected files are on disk (or after 300 s)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if out.is_dir() and len(list(out.glob("*.jpg"))) >= 4:
            break
        time.sleep(0.005)
    process.send_signal(signum)


@pytest.mark.slow
def test_sigkill_then_rerun_gives_the_uninterrupted_result(tmp_path):
    folder, checkpoint = forty_photos_and_a_protector(tmp_path)

    def command(out: Path) -> list[str]:
        return [sys.executable, str(REPO / "infer.py"), "--protector", str(checkpoint), "--input", str(folder),
                "--output", str(out), "--run-code", "team_run", "--zip", "--batch-size", "2", "--num-workers", "0",
                "--no-progress"]

    reference = subprocess.run(command(tmp_path / "reference"), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert reference.returncode == 0, reference.stderr

    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen(command(interrupted), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    signal_after_four_files(process, interrupted, signal.SIGKILL)
    process.wait()
    done_at_kill = len(list(interrupted.glob("*.jpg")))
    assert 4 <= done_at_kill < 40, f"the kill landed after {done_at_kill} files; the run was not interrupted"
    assert not (tmp_path / "interrupted.manifest.csv").exists()

    resumed = subprocess.run(command(interrupted), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"skipped (already there): {done_at_kill}" in resumed.stdout

    def outputs(out: Path) -> dict[str, bytes]:
        # The manifest and the run record differ: the resumed run's rows say "skipped".
        return {p.name: p.read_bytes() for p in sorted(out.iterdir())
                if p.name != "protect-run.json"}

    assert outputs(interrupted) == outputs(tmp_path / "reference")  # same names, same bytes, zip included


@pytest.mark.slow
def test_sigterm_stops_protect_like_ctrl_c_and_the_rerun_resumes(tmp_path):
    """SIGTERM (`kill`, a scheduler's stop) used to be swallowed: the run went on and exited 0."""
    folder, checkpoint = forty_photos_and_a_protector(tmp_path)
    out = tmp_path / "out"
    command = [sys.executable, str(REPO / "infer.py"), "--protector", str(checkpoint), "--input", str(folder),
               "--output", str(out), "--batch-size", "2", "--num-workers", "0", "--no-progress"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    signal_after_four_files(process, out, signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    done = len(list(out.glob("*.jpg")))
    assert process.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert "stopped by SIGTERM" in stderr and "Run the same command again to resume" in stderr
    assert 4 <= done < 40, f"{done} files: the signal was not what stopped the run"
    assert not (out.parent / f"{out.name}.manifest.csv").exists() and not list(out.glob(".*.tmp"))  # no partial files

    resumed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"skipped (already there): {done}" in resumed.stdout
    assert len(list(out.glob("*.jpg"))) == 40


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


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_single_input_that_is_not_a_file_says_what_it_is(tmp_path):
    os.mkfifo(tmp_path / "pipe.jpg")
    os.symlink("loop.jpg", tmp_path / "loop.jpg")
    summary = run(tmp_path / "out", [tmp_path / "pipe.jpg", tmp_path / "loop.jpg"])
    errors = dict(summary.failures)
    assert errors[str(tmp_path / "pipe.jpg")].endswith("pipe.jpg: a FIFO, not a regular file")
    assert errors[str(tmp_path / "loop.jpg")].endswith("loop.jpg: a symbolic link that loops")


# ------------------------------------------------------------ nothing at the output path is passed off as protected
# One mechanism (protector/protect/provenance.py, the folder's protect-run.json) decides every
# case below: a file at a name the run writes is skipped or zipped only if this protector file
# with these settings wrote those very bytes.


def protector_files(folder: Path) -> tuple[Path, Path]:
    """Two real, different protector files: the same small U-Net, other weights (seed)."""
    files = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        files.append(save_protector(folder / f"protector_{seed}.pt",
                                    BoundedProtector(UNetGenerator(base_channels=8, depth=2), EPS)))
    return files[0], files[1]


def cli(capsys, checkpoint: Path, output: Path, inputs: Path, *more: str) -> tuple[int, str, str]:
    """`protector protect` with a run code and --zip: (exit code, stdout, stderr)."""
    parser = argparse.ArgumentParser()
    protect_command.add_arguments(parser)
    args = parser.parse_args(["--protector", str(checkpoint), "--input", str(inputs), "--output", str(output),
                              "--run-code", "team", "--zip", "--num-workers", "0", "--no-progress", *more])
    code = protect_command.run(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def files(folder_or_digest: Path | dict[str, str]) -> dict[str, str]:
    """sha256 of the photos and the zip (the record holds the manifest's hash, which a rerun changes)."""
    digest = tree_digest(folder_or_digest) if isinstance(folder_or_digest, Path) else folder_or_digest
    return {name: value for name, value in digest.items() if name != "protect-run.json"}


@pytest.fixture
def three_photos(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(photo(48, 40, 60 + i)).save(folder / f"p{i}.jpg", quality=95)
    return folder


def test_rerun_with_another_protector_or_settings_is_refused(tmp_path, three_photos, capsys):
    first, second = protector_files(tmp_path)
    out = tmp_path / "out"
    assert cli(capsys, first, out, three_photos)[0] == 0
    before = tree_digest(out)

    code, stdout, stderr = cli(capsys, second, out, three_photos)  # retrained: another protector file
    assert code == 2 and stdout == ""
    assert stderr.startswith(f"protector protect: error: {out}: 5 existing files were not made by this protector "
                             f"with these settings (team_p0.jpg, team_p1.jpg, team_p2.jpg, {tmp_path}/out.manifest.csv, "
                             "team.zip): protect-run.json says another protector or other settings made them "
                             "(protector sha256 ")
    assert stderr.rstrip().endswith("pass --overwrite to replace them, or choose a new --output folder")
    assert tree_digest(out) == before  # refused before any work: not one byte changed

    code, _, stderr = cli(capsys, first, out, three_photos, "--quality", "80")  # the same file, other settings
    assert code == 2 and "(quality 90 -> 80)" in stderr and tree_digest(out) == before

    code, stdout, _ = cli(capsys, first, out, three_photos)  # the same file and settings: resumes
    assert code == 0 and "written: 0   skipped (already there): 3" in stdout
    assert files(out) == files(before)  # the same photos and the same zip, byte for byte

    code, stdout, _ = cli(capsys, second, out, three_photos, "--overwrite")
    assert code == 0 and "written: 3   skipped (already there): 0" in stdout
    after = tree_digest(out)
    assert all(after[name] != before[name] for name in ("team_p0.jpg", "team.zip", "protect-run.json"))
    code, stdout, _ = cli(capsys, second, out, three_photos)  # and now the second protector resumes
    assert code == 0 and "skipped (already there): 3" in stdout and files(out) == files(after)


def test_original_photo_at_an_output_name_is_never_skipped_or_zipped(tmp_path, three_photos, capsys):
    protector_file, _ = protector_files(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    original = (three_photos / "p1.jpg").read_bytes()
    (out / "team_p1.jpg").write_bytes(original)  # the user's own photo where an output goes

    code, _, stderr = cli(capsys, protector_file, out, three_photos)
    assert code == 2
    assert (f"{out}: 1 existing file was not made by this protector with these settings (team_p1.jpg): "
            "no protect-run.json there says what made them") in stderr
    assert sorted(p.name for p in out.iterdir()) == ["team_p1.jpg"]  # no zip, no record
    assert not (tmp_path / "out.manifest.csv").exists()  # no manifest

    # In a folder this protector filled, a photo put over one of its outputs is refused the same way.
    assert cli(capsys, protector_file, out, three_photos, "--overwrite")[0] == 0
    protected = (out / "team_p1.jpg").read_bytes()
    (out / "team_p1.jpg").write_bytes(original)
    code, _, stderr = cli(capsys, protector_file, out, three_photos)
    assert code == 2 and "(team_p1.jpg): they changed since this protector wrote them" in stderr
    with zipfile.ZipFile(out / "team.zip") as archive:
        assert archive.read("team_p1.jpg") == protected  # the zip never held the original

    assert cli(capsys, protector_file, out, three_photos, "--overwrite")[0] == 0
    assert (out / "team_p1.jpg").read_bytes() == protected


@pytest.mark.parametrize("name", ["out.manifest.csv", "out/team.zip"])
def test_users_own_manifest_or_zip_is_not_replaced_without_overwrite(tmp_path, three_photos, capsys, name):
    protector_file, _ = protector_files(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    users = tmp_path / name  # the user's own file where the manifest (beside the folder) or the zip goes
    users.write_bytes(b"the user's own file\n")
    shown = str(users) if name.endswith(".csv") else users.name

    code, _, stderr = cli(capsys, protector_file, out, three_photos)
    assert code == 2 and f"1 existing file was not made by this protector with these settings ({shown})" in stderr
    assert users.read_bytes() == b"the user's own file\n"
    assert [p.name for p in out.iterdir()] == ([] if name.endswith(".csv") else ["team.zip"])

    code, stdout, _ = cli(capsys, protector_file, out, three_photos, "--overwrite")
    assert code == 0 and "written: 3" in stdout
    assert users.read_bytes() != b"the user's own file\n"


def test_failed_rerun_leaves_no_zip_that_looks_current(tmp_path, three_photos, capsys):
    protector_file, _ = protector_files(tmp_path)
    out = tmp_path / "out"
    assert cli(capsys, protector_file, out, three_photos)[0] == 0
    (three_photos / "p3.jpg").write_bytes(b"")  # a new input that fails

    code, stdout, _ = cli(capsys, protector_file, out, three_photos)
    assert code == 1
    assert "zip: not written: 1 input(s) failed (--allow-failures zips the others)" in stdout
    assert f"zip: removed {out / 'team.zip'}, made by an earlier run: it would not match this run's manifest" in stdout
    assert not (out / "team.zip").exists()  # the old zip no longer stands beside the new manifest

    code, stdout, _ = cli(capsys, protector_file, out, three_photos, "--allow-failures")
    assert code == 0 and f"zip: {out / 'team.zip'}" in stdout and "removed" not in stdout
    with zipfile.ZipFile(out / "team.zip") as archive:
        assert archive.namelist() == ["team_p0.jpg", "team_p1.jpg", "team_p2.jpg"]


def test_run_that_crashes_midway_leaves_no_old_zip_and_resumes(tmp_path, three_photos, capsys, monkeypatch):
    protector_file, _ = protector_files(tmp_path)
    reference, out = tmp_path / "reference", tmp_path / "out"
    assert cli(capsys, protector_file, reference, three_photos, "--batch-size", "1")[0] == 0
    assert cli(capsys, protector_file, out, three_photos, "--batch-size", "1")[0] == 0
    (out / "team_p2.jpg").unlink()  # one output lost: the rerun has work to do

    from protector.protect.writer import ProtectedImageWriter

    def crash(self, trainer):
        raise RuntimeError("simulated crash")  # every photo written, no manifest yet

    monkeypatch.setattr(ProtectedImageWriter, "finish", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        cli(capsys, protector_file, out, three_photos, "--batch-size", "1")
    assert not (out / "team.zip").exists()  # removed before any work: never older than the files
    assert (out / "team_p2.jpg").exists()
    monkeypatch.undo()

    code, stdout, _ = cli(capsys, protector_file, out, three_photos, "--batch-size", "1")
    assert code == 0 and "written: 0   skipped (already there): 3" in stdout  # the crashed run's file counts
    assert files(out) == files(reference)  # the same photos and the same zip as a run that never crashed


def test_file_appearing_during_the_run_or_unreadable_record_is_not_passed_off(tmp_path, three_photos, capsys,
                                                                             monkeypatch):
    from protector.protect.provenance import Provenance

    protector_file, _ = protector_files(tmp_path)
    out = tmp_path / "out"
    original = (three_photos / "p1.jpg").read_bytes()
    real_start = Provenance.start

    def start_then_another_process_writes(self, *args):
        removed = real_start(self, *args)
        (out / "team_p1.jpg").write_bytes(original)  # after the check, before the writer gets there
        return removed

    monkeypatch.setattr(Provenance, "start", start_then_another_process_writes)
    code, stdout, _ = cli(capsys, protector_file, out, three_photos)
    monkeypatch.undo()
    assert code == 1 and "written: 2   skipped (already there): 0   failed: 1" in stdout
    assert (f"p1.jpg: {out / 'team_p1.jpg'} appeared during the run and was not made by this protector with these "
            "settings; rerun with --overwrite to replace it") in stdout
    assert (out / "team_p1.jpg").read_bytes() == original and not (out / "team.zip").exists()

    (out / "protect-run.json").write_text("{not json")
    code, _, stderr = cli(capsys, protector_file, out, three_photos, "--allow-failures")
    assert code == 2 and "files were not made by this protector with these settings (protect-run.json, " in stderr
    assert f"{out / 'protect-run.json'} cannot be read as a run record" in stderr
    assert cli(capsys, protector_file, out, three_photos, "--overwrite")[0] == 0


def test_run_record_naming_files_outside_the_folder_removes_nothing_there(tmp_path, three_photos, capsys):
    protector_file, _ = protector_files(tmp_path)
    out = tmp_path / "out"
    assert cli(capsys, protector_file, out, three_photos)[0] == 0
    outside = tmp_path / "precious.zip"
    outside.write_bytes(b"not the run's")
    record = json.loads((out / "protect-run.json").read_text())
    sha256 = hashlib.sha256(b"not the run's").hexdigest()
    for name in ("../precious.zip", str(outside)):
        record["files"][name] = {"kind": "zip", "sha256": [sha256]}
    (out / "protect-run.json").write_text(json.dumps(record))

    code, stdout, _ = cli(capsys, protector_file, out, three_photos)
    assert code == 0 and "skipped (already there): 3" in stdout and "removed" not in stdout
    assert outside.read_bytes() == b"not the run's"
    assert "../precious.zip" not in (out / "protect-run.json").read_text()
