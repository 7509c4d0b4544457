"""What a user publishes (the output folder, the zip) holds the protected pixels and nothing private:
no manifest with the originals' paths and labels, no text an ICC profile carried."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from protector.cli import main
from protector.export import save_protector
from protector.generator import BoundedProtector, UNetGenerator
from protector.images import read_photo
from protector.protect.manifest import read_manifest

from icc_profiles import rgb_profile
from photo_files import photo

EPS = 4 / 255
PLANTED = "PLANTED-SECRET owner Alice Example, iPhone 15 Pro"


@pytest.fixture
def protector_file(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save_protector(tmp_path / "protector.pt", BoundedProtector(UNetGenerator(base_channels=8, depth=2), EPS))


@pytest.fixture
def labelled_list(tmp_path: Path) -> tuple[Path, Path]:
    """Photos with private names under a private folder, and a list giving their scene labels."""
    images = tmp_path / "private_originals_of_alice"
    images.mkdir()
    for i, name in enumerate(("bedroom_of_alice", "hospital_visit", "beach")):
        Image.fromarray(photo(48, 40, 40 + i)).save(images / f"{name}.png")
    listing = tmp_path / "list.csv"
    listing.write_text("bedroom_of_alice.png,52\nhospital_visit.png,174\nbeach.png,48\n")
    return listing, images


def protect_cli(capsys, checkpoint: Path, output: Path, *more: str) -> tuple[int, str, str]:
    try:
        code = main(["protect", "--protector", str(checkpoint), "--output", str(output), "--num-workers", "0",
                     "--no-progress", *more])
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_manifest_stays_out_of_the_published_folder_and_zip(capsys, tmp_path, protector_file, labelled_list):
    listing, images = labelled_list
    out = tmp_path / "submission"
    code, stdout, _ = protect_cli(capsys, protector_file, out, "--list", str(listing), "--images", str(images),
                                  "--run-code", "team", "--zip")
    assert code == 0
    manifest = tmp_path / "submission.manifest.csv"
    assert f"manifest: {manifest}" in stdout
    rows = read_manifest(manifest)  # the private record is beside the folder, with paths and labels
    assert {(r.input, r.label) for r in rows} == {("bedroom_of_alice.png", 52), ("hospital_visit.png", 174),
                                                  ("beach.png", 48)}

    photos = ["team_beach.jpg", "team_bedroom_of_alice.jpg", "team_hospital_visit.jpg"]
    assert sorted(p.name for p in out.iterdir()) == sorted([*photos, "protect-run.json", "team.zip"])
    with zipfile.ZipFile(out / "team.zip") as archive:
        assert archive.namelist() == photos  # nothing but the protected photos
    for path in out.iterdir():  # no file there names the originals' folder, the list or the labels' column
        data = path.read_bytes()
        for private in (str(images).encode(), b"private_originals_of_alice", b"list.csv", b"clean_top1", b"label"):
            assert private not in data, (path.name, private)


def test_a_manifest_asked_for_inside_the_folder_is_refused(capsys, tmp_path, protector_file, labelled_list):
    listing, images = labelled_list
    out = tmp_path / "out"
    for inside in (out / "manifest.csv", out / "sub" / "m.csv"):
        code, stdout, stderr = protect_cli(capsys, protector_file, out, "--list", str(listing), "--images",
                                           str(images), "--manifest", str(inside))
        assert code == 2 and stdout == "" and "Traceback" not in stderr
        assert stderr.strip() == (f"protector protect: error: --manifest {inside} is inside --output {out}: the "
                                  "manifest holds each photo's original path and scene label, which the folder of "
                                  "protected photos must not publish; give a path outside it")
        assert not out.exists()

    private = tmp_path / "private" / "run1.csv"
    code, stdout, _ = protect_cli(capsys, protector_file, out, "--list", str(listing), "--images", str(images),
                                  "--manifest", str(private))
    assert code == 0 and f"manifest: {private}" in stdout and len(read_manifest(private)) == 3
    code, stdout, _ = protect_cli(capsys, protector_file, out, "--list", str(listing), "--images", str(images),
                                  "--manifest", str(private))
    assert code == 0 and "skipped (already there): 3" in stdout  # resumes with its manifest recorded


def test_a_manifest_an_earlier_version_left_in_the_folder_is_removed(capsys, tmp_path, protector_file,
                                                                     labelled_list):
    listing, images = labelled_list
    out = tmp_path / "out"
    args = ("--list", str(listing), "--images", str(images))
    assert protect_cli(capsys, protector_file, out, *args)[0] == 0
    # The old layout: manifest.csv inside the folder, recorded by the run that wrote it.
    old = (tmp_path / "out.manifest.csv").read_bytes()
    (out / "manifest.csv").write_bytes(old)
    record = json.loads((out / "protect-run.json").read_text())
    record["files"]["manifest.csv"] = {"kind": "manifest", "sha256": [hashlib.sha256(old).hexdigest()]}
    (out / "protect-run.json").write_text(json.dumps(record))

    code, stdout, _ = protect_cli(capsys, protector_file, out, *args)
    assert code == 0 and not (out / "manifest.csv").exists()
    assert (f"manifest: removed {out / 'manifest.csv'}, written inside the folder by an earlier version: it named "
            "the originals and their labels, and the manifest now stays outside the folder") in stdout

    (out / "manifest.csv").write_text("the user's own notes\n")  # not recorded: the user's, it stays
    assert protect_cli(capsys, protector_file, out, *args)[0] == 0
    assert (out / "manifest.csv").read_text() == "the user's own notes\n"


def test_icc_profile_text_is_never_published_and_its_colours_are_applied(capsys, tmp_path, protector_file):
    folder = tmp_path / "in"
    folder.mkdir()
    icc = rgb_profile(PLANTED, copyright_text="PLANTED tag someone slipped in")  # Adobe-RGB-like primaries
    raw = np.zeros((40, 48, 3), np.uint8)
    raw[:, :24] = (100, 150, 100)  # a green: Adobe RGB's green is outside sRGB
    raw[:, 24:] = (128, 128, 128)
    for fmt, suffix in (("PNG", ".png"), ("JPEG", ".jpg"), ("WEBP", ".webp"), ("TIFF", ".tif")):
        Image.fromarray(raw).save(folder / f"shot_{fmt.lower()}{suffix}", fmt, icc_profile=icc,
                                  **({"lossless": True} if fmt == "WEBP" else {}))
    out = tmp_path / "out"
    code, _, _ = protect_cli(capsys, protector_file, out, "--input", str(folder), "--format", "same")
    assert code == 0
    for written in sorted(p for p in out.iterdir() if p.name.startswith("shot_")):
        data = written.read_bytes()
        assert b"PLANTED" not in data and b"Alice" not in data, written.name
        assert "icc_profile" not in Image.open(io.BytesIO(data)).info, written.name
        pixels = read_photo(written).pixels.astype(int)
        green, gray = pixels[20, 8], pixels[20, 40]
        # Colour kept by converting to sRGB: far less red than the raw 100, the gray stays gray
        # (the budget is 4 levels; JPEG adds its own error).
        assert green[0] < 85 and abs(green[1] - 150) <= 12, (written.name, green)
        assert np.abs(gray - 128).max() <= 12, (written.name, gray)
