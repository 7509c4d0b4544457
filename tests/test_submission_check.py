"""`protector submission check`: a real protected run's zip passes; each way a zip can be wrong is found."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from protector.cli import main
from protector.export import save_protector
from protector.generator import BoundedProtector, UNetGenerator
from test_protect import natural_photo

NAMES = ["Places365_val_00015483.jpg", "Places365_val_00015605.jpg", "Places365_val_00015608.jpg"]


@pytest.fixture(scope="module")
def submission(tmp_path_factory) -> tuple[Path, Path, Path]:
    """The test list, the originals (256x256 JPEGs), and `rteam_base.zip` made by `protector protect`."""
    root = tmp_path_factory.mktemp("task")
    images = root / "val_256"
    images.mkdir()
    for seed, name in enumerate(NAMES):
        Image.fromarray(natural_photo(256, 256, seed)).save(images / name, quality=95)
    test_list = root / "MEPP19test.csv"
    test_list.write_text("\n".join(NAMES) + "\n")
    torch.manual_seed(0)
    protector = save_protector(root / "protector.pt",
                               BoundedProtector(UNetGenerator(base_channels=8, depth=2, guided=False), 2 / 255))
    out = root / "submission"
    assert main(["protect", "--protector", str(protector), "--list", str(test_list), "--images", str(images),
                 "--output", str(out), "--format", "jpeg", "--quality", "90", "--run-code", "rteam_base", "--zip",
                 "--no-progress"]) == 0
    return test_list, images, out / "rteam_base.zip"


def rezip(source: Path, target: Path, edit) -> Path:
    """Copy the members of `source` into `target`, letting `edit(name, data)` change, drop or add them."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        members = {info.filename: old.read(info) for info in old.infolist()}
        for name, data in edit(members).items():
            new.writestr(name, data)
    return target


def check(zip_path: Path, test_list: Path, *more: str, capsys) -> tuple[int, str]:
    code = main(["submission", "check", str(zip_path), "--list", str(test_list), *more])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_a_protected_run_is_ready_to_submit(submission, capsys) -> None:
    test_list, images, zip_path = submission
    code, output = check(zip_path, test_list, "--images", str(images), capsys=capsys)
    assert code == 0, output
    assert "run code rteam_base, 3 of 3 test photos checked; ready to submit" in output


def _with_exif(data: bytes) -> bytes:
    image = Image.open(io.BytesIO(data))
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, exif=exif.tobytes())
    return buffer.getvalue()


def _as_png(data: bytes) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(data)).save(buffer, "PNG")
    return buffer.getvalue()


def _resized(data: bytes) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(data)).resize((224, 224)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


FIRST = f"rteam_base_{NAMES[0]}"
CASES = {
    "missing photo": (lambda m: {k: v for k, v in m.items() if k != FIRST}, "1 of 3 test photos are missing"),
    "extra file": (lambda m: {**m, "notes.txt": b"hi"}, "notes.txt: not a photo of the test list"),
    "in a folder": (lambda m: {f"out/{k}": v for k, v in m.items()}, "files must sit at the top of the zip"),
    "exif": (lambda m: {**m, FIRST: _with_exif(m[FIRST])}, f"{FIRST}: carries EXIF metadata"),
    "png data": (lambda m: {**m, FIRST: _as_png(m[FIRST])}, f"{FIRST}: PNG data under a .jpg name"),
    "resized": (lambda m: {**m, FIRST: _resized(m[FIRST])}, f"{FIRST}: 224x224, its original is 256x256"),
    "corrupt": (lambda m: {**m, FIRST: m[FIRST][:300]}, f"{FIRST}: corrupt or truncated image"),
}


@pytest.mark.parametrize("case", CASES)
def test_each_kind_of_broken_zip_is_found(submission, tmp_path, capsys, case) -> None:
    test_list, _, zip_path = submission
    edit, expected = CASES[case]
    broken = rezip(zip_path, tmp_path / "rteam_base.zip", edit)
    code, output = check(broken, test_list, capsys=capsys)
    assert code == 1, output
    assert expected in output and "NOT ready" in output


def test_a_run_code_without_a_team_is_named(submission, tmp_path, capsys) -> None:
    test_list, _, zip_path = submission
    renamed = rezip(zip_path, tmp_path / "protector_unet.zip",
                    lambda m: {k.replace("rteam_base_", "protector_unet_"): v for k, v in m.items()})
    code, output = check(renamed, test_list, capsys=capsys)
    assert code == 0 and "does not name a team" in output  # a warning: the organizers only need a unique code
    assert check(tmp_path / "nothere.zip", test_list, capsys=capsys)[0] == 2
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    code, output = check(tmp_path / "junk.zip", test_list, capsys=capsys)
    assert code == 1 and "not a readable zip archive" in output
