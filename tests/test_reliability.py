"""Reliability and security end to end: bad inputs, crashes, untrusted files, privacy, fuzzing.

Every test here backs a row of RELIABILITY.md. Protection runs go through
``protector.cli.main(["protect", ...])`` (or a real subprocess where a real kill is needed)
with a tiny real protector file written by ``protector.export.save_protector``.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import io
import os
import stat
import pickle
import signal
import struct
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms
from torch import nn

from protector.cli import main
from protector.data.lists import ListFormatError
from protector.export import ProtectorFileError, load_protector, save_protector
from protector.generator import BoundedProtector, UNetGenerator
from protector.images import ImageReadError, read_photo
from protector.nima import NIMAWeightsError, load_nima
from protector.paths import sha256_file
from protector.protect.manifest import read_manifest
from protector.protect.plan import build_plan

from icc_profiles import rgb_profile
from photo_files import encoded, photo, png_claiming

REPO = Path(__file__).resolve().parents[1]
EPS = 4 / 255
ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
PLANTED_ICC = rgb_profile("PLANTED owner Alice, iPhone 15", copyright_text="PLANTED tag")
PROC_MEM = Path("/proc/self/mem")  # a real file whose read fails with EIO (Linux), even for root


# ----------------------------------------------------------------------------- helpers


def tiff_with_broken_second_page() -> bytes:
    """A 2-page TIFF whose second page lacks its ImageWidth tag (Pillow: TypeError, not OSError)."""
    pages = [Image.fromarray(photo(48, 40, s)) for s in (1, 2)]
    data = bytearray(encoded(pages[0], "TIFF", save_all=True, append_images=pages[1:]))
    assert data[:2] == b"II"
    first = struct.unpack_from("<I", data, 4)[0]
    count = struct.unpack_from("<H", data, first)[0]
    second = struct.unpack_from("<I", data, first + 2 + 12 * count)[0]
    for i in range(struct.unpack_from("<H", data, second)[0]):
        entry = second + 2 + 12 * i
        if struct.unpack_from("<H", data, entry)[0] == 256:  # ImageWidth
            struct.pack_into("<H", data, entry, 0xFDE8)  # an unknown private tag instead
            return bytes(data)
    raise AssertionError("no ImageWidth tag in the second page")


def gif_cut_at_a_new_frame() -> bytes:
    """A GIF whose trailer byte is an image separator with nothing after it (Pillow: struct.error)."""
    data = encoded(Image.fromarray(photo(48, 40, 3)).convert("P"), "GIF")
    assert data.endswith(b";")
    return data[:-1] + b","


def animated_gif() -> bytes:
    frames = [Image.fromarray(photo(48, 40, s)).convert("P") for s in (5, 6)]
    return encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def mpo_with_gain_map() -> bytes:
    """A JPEG carrying a second picture through MPF, as Ultra HDR phone photos do."""
    gain_map = Image.fromarray(photo(12, 10, 8)).convert("L").convert("RGB")
    return encoded(Image.fromarray(photo(48, 40, 7)), "MPO", save_all=True, append_images=[gain_map], quality=95)


def rotated_jpeg() -> bytes:
    """Stored 48x40 (landscape), EXIF orientation 6: displayed 40x48 (portrait)."""
    image = Image.fromarray(photo(48, 40, 9))
    exif = image.getexif()
    exif[0x0112] = 6
    return encoded(image, "JPEG", quality=95, exif=exif.tobytes())


def tree_state(folder: Path) -> dict[str, tuple]:
    """Every entry under `folder`: sha256 and mtime of files, target of links."""
    state: dict[str, tuple] = {}
    for dirpath, _, filenames in os.walk(folder):
        for filename in filenames:
            path = Path(dirpath) / filename
            key = str(path.relative_to(folder))
            if path.is_symlink():
                state[key] = ("link", os.readlink(path))
            elif stat.S_ISFIFO(path.stat().st_mode):
                state[key] = ("fifo", path.stat().st_mtime_ns)  # reading it would block
            else:
                state[key] = ("file", hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
    return state


def run_cli(*args: str) -> tuple[int, str, str]:
    """`protector <args>` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def protect_args(checkpoint: Path, output: Path, *more: str) -> list[str]:
    return ["protect", "--protector", str(checkpoint), "--output", str(output), "--num-workers", "0",
            "--no-progress", *more]


@pytest.fixture(scope="module")
def protector_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return save_protector(tmp_path_factory.mktemp("run") / "protector.pt",
                          BoundedProtector(UNetGenerator(base_channels=8, depth=2), EPS))


# ============================================================ 1. bad inputs in one run

# name -> (bytes, fragment of the cause in the message). Each fails alone.
BAD_INPUTS: dict[str, tuple[bytes | None, str]] = {
    "zero-byte.jpg": (b"", "empty file (0 bytes)"),
    "truncated.jpg": (encoded(Image.fromarray(photo(48, 40, 0)), "JPEG", quality=95)[:700], "truncated"),
    "not-an-image.jpg": (b"<html>this is a text file</html>\n", "not an image"),
    "bomb.png": (png_claiming(30000, 30000), "decompression bomb"),
    "tiny.png": (encoded(Image.fromarray(photo(3, 2, 1)), "PNG"), "3x2 pixels is smaller than the 32-pixel minimum"),
    "animated.gif": (animated_gif(), "animated image with 2 frames"),
    "broken-pages.tif": (tiff_with_broken_second_page(), "corrupt or truncated image (TypeError"),
    "cut.gif": (gif_cut_at_a_new_frame(), "corrupt or truncated image (struct.error"),
    "dup.jpg": (encoded(Image.fromarray(photo(48, 40, 10)), "JPEG"), "name dup.jpg is also the output of dup.png"),
    "dup.png": (encoded(Image.fromarray(photo(48, 40, 11)), "PNG"), "name dup.jpg is also the output of dup.jpg"),
    "Case.png": (encoded(Image.fromarray(photo(48, 40, 12)), "PNG"), "is also the output of case.jpg"),
    "case.jpg": (encoded(Image.fromarray(photo(48, 40, 13)), "JPEG"), "is also the output of Case.png"),
    # Written specially below: a name that is not UTF-8, and a link to a file that cannot be read.
    "caf\\xe9.jpg": (None, "the file name is not valid UTF-8"),
    "unreadable.jpg": (None, "cannot be read ([Errno 5] Input/output error)"),
    # Not regular files, and photos in formats not read here: each gets a row, none is skipped in silence.
    "fifo.jpg": (None, "a FIFO, not a regular file"),
    "loop.jpg": (None, "a symbolic link that loops"),
    "dangling.png": (None, "a symbolic link that leads nowhere"),
    "phone.heic": (b"\x00\x00\x00\x18ftypheic", ".heic photos are not read here"),
    "modern.avif": (b"\x00\x00\x00\x1cftypavif", ".avif photos are not read here"),
}

# name -> (bytes, displayed (width, height)). Each is protected.
GOOD_INPUTS: dict[str, tuple[bytes, tuple[int, int]]] = {
    "alpha.png": (encoded(Image.fromarray(np.dstack([photo(48, 40, 20), np.full((40, 48), 90, np.uint8)])), "PNG"),
                  (48, 40)),
    "grayscale.png": (encoded(Image.fromarray(photo(48, 40, 21)).convert("L"), "PNG"), (48, 40)),
    "palette.png": (encoded(Image.fromarray(photo(48, 40, 22)).convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
                    (48, 40)),
    "16-bit.png": (encoded(Image.fromarray(photo(48, 40, 23)[..., 0].astype(np.uint16) * 257), "PNG"), (48, 40)),
    "cmyk.jpg": (encoded(Image.fromarray(photo(48, 40, 24)).convert("CMYK"), "JPEG", quality=95), (48, 40)),
    "exif-rotated.jpg": (rotated_jpeg(), (40, 48)),
    "ultra-hdr.jpg": (mpo_with_gain_map(), (48, 40)),
    "my holiday ü 写真.png": (encoded(Image.fromarray(photo(48, 40, 25)), "PNG"), (48, 40)),
    "fine.jpg": (encoded(Image.fromarray(photo(48, 40, 26)), "JPEG", quality=95), (48, 40)),
}


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory, protector_file):
    """One `protector protect` over a folder holding every bad and unusual input."""
    if not PROC_MEM.exists():
        pytest.skip("needs Linux /proc/self/mem as an unreadable file")
    root = tmp_path_factory.mktemp("bad_inputs")
    folder = root / "photos"
    folder.mkdir()
    for name, (data, _) in {**BAD_INPUTS, **GOOD_INPUTS}.items():
        if data is not None:
            (folder / name).write_bytes(data)
    # Latin-1 "café.jpg": the byte 0xE9 is not UTF-8; Python keeps it as a surrogate.
    (folder / os.fsdecode(b"caf\xe9.jpg")).write_bytes(GOOD_INPUTS["fine.jpg"][0])
    os.symlink(PROC_MEM, folder / "unreadable.jpg")
    os.mkfifo(folder / "fifo.jpg")
    os.symlink("loop.jpg", folder / "loop.jpg")
    os.symlink(root / "deleted.png", folder / "dangling.png")
    before = tree_state(folder)
    output = root / "out"
    code, stdout, stderr = run_cli(*protect_args(protector_file, output, "--input", str(folder)))
    rows = {row.input: row for row in read_manifest(root / "out.manifest.csv")}
    return {"folder": folder, "output": output, "before": before, "code": code, "stdout": stdout,
            "stderr": stderr, "rows": rows, "checkpoint": protector_file}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_fails_alone_naming_file_and_cause(bad_run, name):
    _, cause = BAD_INPUTS[name]
    row = bad_run["rows"][name]
    assert row.status == "failed"
    assert row.error.startswith(f"{name}: "), row.error  # names the file ...
    assert cause in row.error, row.error  # ... and the cause
    assert f"  {row.error}" in bad_run["stdout"].split("failed inputs")[1]  # listed at the end of the run
    assert not row.output or not (bad_run["output"] / row.output).exists()  # nothing written for it


@pytest.mark.parametrize("name", list(GOOD_INPUTS))
def test_unusual_input_is_protected(bad_run, name):
    _, size = GOOD_INPUTS[name]
    row = bad_run["rows"][name]
    assert row.status == "ok", row.error
    written = Image.open(bad_run["output"] / row.output)
    assert written.format == "JPEG" and written.mode == "RGB" and written.size == size
    assert getattr(written, "n_frames", 1) == 1  # an MPO's gain map is not carried over
    assert (row.width, row.height) == size and row.sha256 == sha256_file(bad_run["output"] / row.output)


def test_bad_run_goes_on_lists_failures_and_exits_non_zero(bad_run):
    assert bad_run["code"] == 1
    rows = bad_run["rows"]
    assert len(rows) == len(BAD_INPUTS) + len(GOOD_INPUTS)  # every input has its manifest row
    assert f"written: {len(GOOD_INPUTS)}" in bad_run["stdout"]
    assert f"failed: {len(BAD_INPUTS)}" in bad_run["stdout"]
    assert f"failed inputs ({len(BAD_INPUTS)}):" in bad_run["stdout"]
    assert "my holiday ü 写真.jpg" in {row.output for row in rows.values()}
    outputs = sorted(p.name for p in bad_run["output"].iterdir())
    assert outputs == sorted(["protect-run.json", *(rows[name].output for name in GOOD_INPUTS)])  # no temporaries


def test_bad_run_leaves_every_input_untouched(bad_run):
    assert tree_state(bad_run["folder"]) == bad_run["before"]


def test_allow_failures_exits_zero_and_still_lists_them(bad_run):
    code, stdout, _ = run_cli(*protect_args(bad_run["checkpoint"], bad_run["output"], "--input",
                                            str(bad_run["folder"]), "--allow-failures"))
    assert code == 0
    assert f"skipped (already there): {len(GOOD_INPUTS)}" in stdout and f"failed: {len(BAD_INPUTS)}" in stdout
    assert "zero-byte.jpg: empty file (0 bytes)" in stdout
    assert tree_state(bad_run["folder"]) == bad_run["before"]


def test_photo_smaller_than_the_generator_stride_is_protected_when_allowed(tmp_path):
    torch.manual_seed(0)
    deep = save_protector(tmp_path / "deep.pt",
                          BoundedProtector(UNetGenerator(base_channels=8, depth=6), EPS))  # stride 64
    folder = tmp_path / "in"
    folder.mkdir()
    sizes = {"one.png": (1, 1), "small.png": (3, 2), "thin.png": (5, 70)}
    for name, (w, h) in sizes.items():
        Image.fromarray(photo(w, h, w * h)).save(folder / name)
    code, stdout, _ = run_cli(*protect_args(deep, tmp_path / "out", "--input", str(folder), "--min-side", "1",
                                            "--format", "png"))
    assert code == 0, stdout
    for name, size in sizes.items():
        written = read_photo(tmp_path / "out" / name).pixels
        assert written.shape[1::-1] == size
        delta = np.abs(written.astype(int) - np.asarray(Image.open(folder / name).convert("RGB"), dtype=int))
        assert delta.max() <= round(EPS * 255)


# ------------------------------------------------------------ list entries


def _make_list_source(kind: str, root: Path, secret: Path) -> Path:
    files = {"café 1.jpg": 30, "good.jpg": 31, "sub/inner.jpg": 32}
    if kind == "folder":
        images = root / "images"
        for name, seed in files.items():
            (images / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(photo(48, 40, seed)).save(images / name, quality=95)
        return images
    images = root / "images.tar"
    with tarfile.open(images, "w") as archive:
        def add(info: tarfile.TarInfo, data: bytes = b"") -> None:
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))

        for name, seed in files.items():
            add(tarfile.TarInfo(name), encoded(Image.fromarray(photo(48, 40, seed)), "JPEG", quality=95))
        add(tarfile.TarInfo("../secret.jpg"), secret.read_bytes())  # a member that escapes
        link = tarfile.TarInfo("link.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, str(secret)
        add(link)
        hard = tarfile.TarInfo("hard.jpg")
        hard.type, hard.linkname = tarfile.LNKTYPE, "good.jpg"
        add(hard)
    return images


@pytest.mark.parametrize("kind", ["folder", "tar"])
def test_list_entries_missing_or_escaping_fail_alone(tmp_path, protector_file, kind):
    root = tmp_path / "data"
    root.mkdir()
    secret = root / "secret.jpg"  # a real photo just outside the image root
    Image.fromarray(photo(48, 40, 40)).save(secret, quality=95)
    images = _make_list_source(kind, root, secret)
    lines = ["café 1.jpg", "good.jpg", "sub/inner.jpg", "missing.jpg", "../secret.jpg", "sub/../../secret.jpg",
             str(secret), "..\\secret.jpg", "good.jpg", "link.jpg", "hard.jpg"]
    list_path = tmp_path / "list.csv"
    list_path.write_text("".join(f'"{line}"\r\n' for line in lines), encoding="utf-8")
    outside_before = tree_state(root)
    output = tmp_path / "out"

    code, stdout, _ = run_cli(*protect_args(protector_file, output, "--list", str(list_path), "--images", str(images)))

    assert code == 1
    rows = read_manifest(tmp_path / "out.manifest.csv")
    assert {r.input for r in rows if r.status == "ok"} == {"café 1.jpg", "good.jpg", "sub/inner.jpg"}
    failed = {r.input: r.error for r in rows if r.status == "failed"}
    assert "missing.jpg: listed in" in failed["missing.jpg"] and "not found" in failed["missing.jpg"]
    for line_no, quoted, cause in ((5, '"../secret.jpg"', "'..' would leave the image root"),
                                   (6, '"sub/../../secret.jpg"', "'..' would leave the image root"),
                                   (7, f'"{secret}"', "absolute paths are not allowed"),
                                   (8, '"..\\secret.jpg"', "'..' would leave the image root"),
                                   (9, '"good.jpg"', "duplicate name 'good.jpg'")):
        assert failed[quoted].startswith(f"{list_path}:{line_no}: ") and cause in failed[quoted]
    for name in ("link.jpg", "hard.jpg"):  # tar members that are links are never followed
        assert failed[name].startswith(f"{name}: listed in") and "not found" in failed[name]
    assert len(failed) == len(lines) - 3
    for line in failed.values():
        assert f"  {line}" in stdout
    written = sorted(str(p.relative_to(output)) for p in output.rglob("*") if p.is_file())
    assert written == ["café 1.jpg", "good.jpg", "protect-run.json", "sub/inner.jpg"]  # the secret never came out
    assert tree_state(root) == outside_before  # nothing written or changed beside the image root


# ============================================================ 2. nothing lost on a crash

_HANG_IN_FSYNC = """
import os, sys, time
flag = sys.argv[1]
real_fsync = os.fsync

def hang(fd):  # a photo's bytes are in its temporary file; the rename has not happened yet
    if ".jpg." not in os.readlink(f"/proc/self/fd/{fd}"):
        return real_fsync(fd)  # protect-run.json is written before any photo
    open(flag, "w").close()
    time.sleep(300)

os.fsync = hang
from protector.cli import main
sys.exit(main(["protect", *sys.argv[2:]]))
"""


@pytest.mark.slow
def test_sigkill_while_replacing_outputs_keeps_the_old_files_whole(tmp_path, protector_file):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(photo(48, 40, 50 + i)).save(folder / f"p{i}.png")
    reference = tmp_path / "reference"
    assert run_cli(*protect_args(protector_file, reference, "--input", str(folder)))[0] == 0

    output = tmp_path / "out"
    output.mkdir()
    old = {f"p{i}.jpg": encoded(Image.fromarray(photo(48, 40, 90 + i)), "JPEG") for i in range(3)}
    for name, data in old.items():
        (output / name).write_bytes(data)
    flag = tmp_path / "in_fsync"
    args = protect_args(protector_file, output, "--input", str(folder), "--overwrite")[1:]
    process = subprocess.Popen([sys.executable, "-c", _HANG_IN_FSYNC, str(flag), *args], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not flag.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert flag.exists(), "the run never reached a write"
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    temporaries = list(output.glob(".p*.jpg.*.tmp"))
    assert len(temporaries) == 1 and temporaries[0].stat().st_size > 0  # killed mid-write
    assert {p.name: p.read_bytes() for p in output.glob("*.jpg")} == old  # every old output whole
    assert not (tmp_path / "out.manifest.csv").exists()

    code, stdout, _ = run_cli(*protect_args(protector_file, output, "--input", str(folder), "--overwrite"))
    assert code == 0 and "written: 3" in stdout
    assert sorted(p.name for p in output.iterdir()) == ["p0.jpg", "p1.jpg", "p2.jpg",
                                                        "protect-run.json"]  # no .tmp, no journal
    for name in old:
        assert (output / name).read_bytes() == (reference / name).read_bytes()


# ============================================================ 4. untrusted files

SOURCE_FILES = sorted([*(REPO / "protector").rglob("*.py"), REPO / "infer.py", REPO / "train.py",
                       *(REPO / "bench").rglob("*.py")])


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def test_every_torch_load_passes_weights_only_true_and_nothing_unpickles():
    torch_loads, problems = 0, []
    for path in SOURCE_FILES:
        if not path.is_file():
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if not isinstance(node, ast.Call):
                continue
            name, where = _dotted(node.func), f"{path.relative_to(REPO)}:{node.lineno}"
            keywords = {k.arg: k.value for k in node.keywords}
            if name in ("torch.load", "torch.serialization.load"):
                torch_loads += 1
                flag = keywords.get("weights_only")
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    problems.append(f"{where}: {name} without weights_only=True")
            elif name in ("pickle.load", "pickle.loads", "pickle.Unpickler", "torch.jit.load", "dill.load"):
                problems.append(f"{where}: {name} would run code from the file")
            elif name.endswith("np.load") or name.endswith("numpy.load"):
                flag = keywords.get("allow_pickle")
                if flag is not None and not (isinstance(flag, ast.Constant) and flag.value is False):
                    problems.append(f"{where}: {name} with allow_pickle")
    assert torch_loads >= 2  # the scan does see the package's loaders
    assert problems == []


@pytest.mark.parametrize("fmt", ["EPS", "ICO", "PPM", "TGA"])
def test_only_photo_decoders_reach_untrusted_bytes(fmt):
    # Pillow would open these (EPS by running Ghostscript); a .jpg holding one is refused.
    data = encoded(Image.fromarray(photo(48, 40, 63)), fmt)
    assert Image.open(io.BytesIO(data)).format == fmt
    with pytest.raises(ImageReadError, match=r"^disguised\.jpg: not an image, or not one of the formats read here"):
        read_photo(data, name="disguised.jpg")


class _CreatesFile:
    """Unpickling this calls open(marker, "w"), which creates the file: a stand-in for any code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-pickle"])
def test_protector_file_with_pickle_payload_is_not_executed(tmp_path, legacy):
    marker = tmp_path / "payload_ran"
    generator = UNetGenerator(base_channels=8, depth=2)
    payload = {"format": "protector", "version": 1, "generator_class": "UNetGenerator",
               "generator_init": generator.config, "eps": EPS, "state_dict": generator.state_dict(),
               "meta": {"trained_by": _CreatesFile(marker)}}
    evil = tmp_path / "protector.pt"
    torch.save(payload, evil, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(ProtectorFileError) as info:
        load_protector(evil)
    assert str(info.value).startswith(f"{evil}: not a readable protector file")
    assert not marker.exists()

    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(photo(48, 40, 60)).save(folder / "a.png")
    code, _, stderr = run_cli(*protect_args(evil, tmp_path / "out", "--input", str(folder)))
    assert code == 2 and f"{evil}: not a readable protector file" in stderr
    assert not marker.exists()
    assert not (tmp_path / "out" / "a.jpg").exists()


@pytest.fixture(scope="module")
def classifier_checkpoint(tmp_path_factory) -> Path:
    """A resnet18 Places365 checkpoint in the official layout (random weights, real format)."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=365)
    path = tmp_path_factory.mktemp("weights") / "resnet18_places365.pth.tar"
    state = {"module." + key: value for key, value in model.state_dict().items()}
    torch.save({"epoch": 90, "arch": "resnet18", "state_dict": state, "best_prec1": 54.0}, path)
    return path


@pytest.fixture(scope="module")
def classifier_payload(tmp_path_factory, classifier_checkpoint) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("evil_weights")
    marker = folder / "payload_ran"
    checkpoint = torch.load(classifier_checkpoint, weights_only=True)
    checkpoint["best_prec1"] = _CreatesFile(marker)
    path = folder / "resnet18_places365.pth.tar"
    torch.save(checkpoint, path)
    return path, marker


# case -> (extra flags for the checkpoint, expected exit code, fragments of the message)
CLASSIFIER_CASES = {
    "unpinned-refused": (lambda ckpt: [], 2, ["no sha256 is pinned", "--allow-unpinned"]),
    "sha256-mismatch": (lambda ckpt: ["--sha256", "0" * 64], 2, ["sha256 mismatch", "0" * 64]),
    "sha256-verified": (lambda ckpt: ["--sha256", sha256_file(ckpt)], 0, []),
    "unpinned-accepted-explicitly": (lambda ckpt: ["--allow-unpinned"], 0, []),
}


@pytest.mark.parametrize("case", list(CLASSIFIER_CASES))
def test_classifier_checkpoint_is_verified_before_use(tmp_path, protector_file, classifier_checkpoint, case):
    extra, expected_code, fragments = CLASSIFIER_CASES[case]
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(photo(48, 40, 61)).save(folder / "a.png")
    with pytest.warns() if case == "unpinned-accepted-explicitly" else contextlib.nullcontext() as caught:
        code, stdout, stderr = run_cli(*protect_args(
            protector_file, tmp_path / "out", "--input", str(folder), "--classifier", "resnet18",
            "--classifier-checkpoint", str(classifier_checkpoint), *extra(classifier_checkpoint)))
    assert code == expected_code, stderr
    if expected_code == 2:
        assert f"{classifier_checkpoint}:" in stderr
        assert sha256_file(classifier_checkpoint) in stderr  # the actual digest, so it can be pinned
        for fragment in fragments:
            assert fragment in stderr
        assert not (tmp_path / "out" / "a.jpg").exists()
    else:
        row = read_manifest(tmp_path / "out.manifest.csv")[0]
        assert row.status == "ok" and row.clean_top1 is not None and row.protected_top1 is not None
    if case == "unpinned-accepted-explicitly":
        assert any("unpinned" in str(w.message) and sha256_file(classifier_checkpoint) in str(w.message)
                   for w in caught)


def test_classifier_checkpoint_with_pickle_payload_is_not_executed(tmp_path, protector_file, classifier_payload):
    evil, marker = classifier_payload
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(photo(48, 40, 62)).save(folder / "a.png")
    # Its true sha256 is given, so the checksum passes and only safe loading stands in the way.
    code, _, stderr = run_cli(*protect_args(protector_file, tmp_path / "out", "--input", str(folder),
                                            "--classifier", "resnet18", "--classifier-checkpoint", str(evil),
                                            "--sha256", sha256_file(evil)))
    assert code == 2
    assert f"{evil}:" in stderr and "may contain code and was not loaded" in stderr
    assert not marker.exists()


def test_nima_weights_are_never_unpickled(tmp_path):
    marker = tmp_path / "payload_ran"
    weights = tmp_path / "weights_mobilenet_aesthetic_0.07.hdf5"
    torch.save({"model_weights": _CreatesFile(marker)}, weights)
    with pytest.raises(NIMAWeightsError, match="not the expected NIMA weights"):
        load_nima(weights)  # checked against the pinned sha256 first
    with pytest.raises(NIMAWeightsError, match=r"not a readable HDF5 file") as info:
        load_nima(weights, allow_unpinned=True)  # accepted unverified: h5py still refuses it
    assert str(info.value).startswith(str(weights))
    assert not marker.exists()


def test_lightning_resume_from_a_checkpoint_with_pickle_payload_is_refused(tmp_path):
    """`fit --ckpt_path` goes through Lightning's loader: with this torch it is weights_only too."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader, TensorDataset

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(2, 1)

        def training_step(self, batch, batch_idx):
            return self.layer(batch[0]).pow(2).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    def trainer(steps: int) -> pl.Trainer:
        return pl.Trainer(max_steps=steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
                          default_root_dir=tmp_path, accelerator="cpu")

    loader = DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=4)
    first = trainer(1)
    first.fit(Tiny(), loader)
    checkpoint_path = tmp_path / "last.ckpt"
    first.save_checkpoint(checkpoint_path)
    checkpoint = torch.load(checkpoint_path, weights_only=True)
    marker = tmp_path / "payload_ran"
    checkpoint["hyper_parameters"] = {"note": _CreatesFile(marker)}
    torch.save(checkpoint, checkpoint_path)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        trainer(2).fit(Tiny(), loader, ckpt_path=checkpoint_path)
    assert not marker.exists()


# ============================================================ 5. privacy of the output


def _exif_with_location() -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    exif[0x010F] = "PhoneMaker"
    exif[0x8825] = {1: "N", 2: (52.0, 22.0, 1.5), 3: "E", 4: (4.0, 53.0, 2.0)}  # GPS IFD
    exif[700] = b"<x:xmpmeta>secret-xmp-location</x:xmpmeta>"  # XMP, as TIFF stores it
    exif[33723] = b"\x1c\x02\x5a\x00\x08Secretly"  # IPTC city, as TIFF stores it
    loaded = Image.Exif()
    loaded.load(exif.tobytes())  # Pillow writes nested IFDs (GPS) only from a loaded Exif
    return loaded


@pytest.mark.parametrize("fmt", ["webp", "tiff"])
def test_same_format_output_drops_gps_xmp_iptc_icc_applies_orientation(tmp_path, protector_file, fmt):
    folder = tmp_path / "in"
    folder.mkdir()
    image = Image.fromarray(photo(48, 40, 70))
    exif = _exif_with_location()
    source = folder / f"phone.{'webp' if fmt == 'webp' else 'tif'}"
    if fmt == "webp":
        image.save(source, "WEBP", lossless=True, exif=exif.tobytes(), icc_profile=PLANTED_ICC,
                   xmp=b"<x:xmpmeta>secret-xmp-location</x:xmpmeta>")
    else:
        image.save(source, "TIFF", exif=exif, icc_profile=PLANTED_ICC)
    data = source.read_bytes()
    assert b"secret-xmp-location" in data and b"PhoneMaker" in data
    assert Image.open(source).getexif().get_ifd(0x8825)  # the GPS block is there

    code, _, _ = run_cli(*protect_args(protector_file, tmp_path / "out", "--input", str(folder), "--format", "same"))
    assert code == 0
    written_path = tmp_path / "out" / source.name
    written = written_path.read_bytes()
    for leak in (b"secret-xmp-location", b"xmpmeta", b"PhoneMaker", b"Secretly", b"PLANTED"):
        assert leak not in written, leak
    out = Image.open(written_path)
    assert out.format == ("WEBP" if fmt == "webp" else "TIFF")
    tags = out.getexif()
    assert not tags.get_ifd(0x8825) and 0x8825 not in tags and 0x8769 not in tags  # no GPS, no Exif IFD
    assert not {0x0112, 0x010F, 700, 33723} & set(tags)  # orientation, make, XMP, IPTC
    assert "xmp" not in out.info and "exif" not in out.info
    assert "icc_profile" not in out.info  # applied while reading: the pixels are sRGB, no text travels
    assert out.size == (40, 48)  # orientation applied: portrait now
    assert data == source.read_bytes()  # input untouched


# ============================================================ 6. property-based


def _seed_files() -> dict[str, bytes]:
    base = Image.fromarray(photo(32, 24, 80))
    exif = base.getexif()
    exif[0x0112] = 8
    exif[0x8825] = {1: "N", 2: (52.0, 22.0, 1.5)}
    return {
        "jpeg-exif-icc": encoded(base, "JPEG", exif=exif.tobytes(), icc_profile=ICC),
        "jpeg-progressive-cmyk": encoded(base.convert("CMYK"), "JPEG", progressive=True),
        "mpo": encoded(base, "MPO", save_all=True, append_images=[base.convert("L").convert("RGB")]),
        "png-16bit": encoded(Image.fromarray(photo(32, 24, 81)[..., 0].astype(np.uint16) * 257), "PNG"),
        "png-palette-alpha": encoded(base.convert("P"), "PNG", transparency=0),
        "apng": encoded(base, "PNG", save_all=True, append_images=[base.rotate(90)]),
        "gif-animated": encoded(base.convert("P"), "GIF", save_all=True, append_images=[base.rotate(90).convert("P")]),
        "tiff-pages": encoded(base, "TIFF", save_all=True, append_images=[base.rotate(90)]),
        "tiff-exif": encoded(base, "TIFF", exif=exif.tobytes()),
        "webp-exif": encoded(base, "WEBP", exif=exif.tobytes()),
        "bmp": encoded(base, "BMP"),
    }


SEED_FILES = _seed_files()
_mutation = st.tuples(st.sampled_from(["set", "delete", "insert"]), st.floats(0, 1, exclude_max=True),
                      st.binary(min_size=1, max_size=8))


def _mutate(data: bytes, mutations: list[tuple[str, float, bytes]]) -> bytes:
    buffer = bytearray(data)
    for op, where, payload in mutations:
        position = int(where * len(buffer)) if buffer else 0
        if op == "set":
            buffer[position : position + len(payload)] = payload
        elif op == "delete":
            del buffer[position : position + len(payload)]
        else:
            buffer[position:position] = payload
    return bytes(buffer)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about the corrupt EXIF it skips
@settings(max_examples=400, deadline=None)
@given(seed=st.sampled_from(sorted(SEED_FILES)), mutations=st.lists(_mutation, min_size=1, max_size=6))
def test_mutated_valid_images_raise_only_image_read_error(seed, mutations):
    data = _mutate(SEED_FILES[seed], mutations)
    try:
        decoded = read_photo(data, name="mutated.jpg")
    except ImageReadError as err:
        assert str(err).startswith("mutated.jpg: ")
        return
    assert decoded.pixels.dtype == np.uint8 and decoded.pixels.ndim == 3 and decoded.pixels.shape[2] == 3


_name_part = st.sampled_from(["..", ".", "", "a", "b.jpg", "sub", "é 1.jpg", "C:", " ", "~", "secret.jpg"])
_list_name = st.lists(_name_part, min_size=1, max_size=5).flatmap(
    lambda parts: st.sampled_from(["/", "\\"]).map(lambda sep: sep.join(parts))
) | st.sampled_from(["/etc/passwd", "\\\\server\\share\\a.jpg", "C:\\a.jpg", "sub/b.jpg", "b.jpg"])


@pytest.fixture(scope="module")
def plan_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("plan")
    (root / "images" / "sub").mkdir(parents=True)
    for name in ("images/b.jpg", "images/sub/b.jpg", "images/é 1.jpg", "secret.jpg", "images/a"):
        (root / name).write_bytes(SEED_FILES["jpeg-exif-icc"])
    return root


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(_list_name, min_size=1, max_size=8))
def test_list_entries_never_reach_outside_the_image_root_or_the_output(plan_root, names):
    list_path = plan_root / "list.csv"
    list_path.write_text("".join(f'"{name}"\n' for name in names), encoding="utf-8")
    images, output = plan_root / "images", plan_root / "out"
    try:
        plan = build_plan(output, list_path=list_path, images=images)
    except ListFormatError as err:  # a problem with the list as a whole
        assert str(err).startswith(str(list_path))
        return
    assert len(plan.items) >= 1
    for item in plan.items:
        if item.error is not None:
            assert item.error.strip()
            continue
        assert (images / item.key).resolve().is_relative_to(images.resolve())
        assert (output / item.output).resolve().is_relative_to(output.resolve())
