"""protector protect / infer.py: names, formats, zip, manifest, metadata, sizes, tiling, devices."""

from __future__ import annotations

import csv
import io
import re
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms
from PIL.PngImagePlugin import PngInfo

from protector.classifiers import import_class
from protector.export import save_protector
from protector.generator import BoundedProtector, UNetGenerator
from protector.images import read_photo, to_tensor
from protector.losses import SensitiveSafe
from protector.paths import sha256_file
from protector.protect import ProtectOptions, protect
from protector.protect.batching import SizeBatchSampler, size_batches
from protector.protect.naming import check_run_code, find_collisions, output_name
from protector.protect.tiling import TiledProtector, tile_spans

REPO = Path(__file__).resolve().parents[1]
EPS = 4 / 255

# A small real CNN the CLI can import by class path (module.Class); weights fixed by a seed.
TINY_NET_SOURCE = '''
import torch
from torch import nn


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.head = nn.Linear(8, 365)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator))
        self.eval()

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))
'''


def natural_photo(width: int, height: int, seed: int) -> np.ndarray:
    """A smooth photo-like image (gradients and a disc), so JPEG stays close to it."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(40, 200, 3)
    pixels = np.stack([base[c] + 40 * np.sin((x * (c + 1) + y) / (9 + 4 * c)) for c in range(3)], axis=2)
    disc = (x - width * 0.6) ** 2 + (y - height * 0.4) ** 2 < (min(width, height) * 0.25) ** 2
    pixels[disc] = rng.uniform(0, 255, 3)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def save_image(path: Path, pixels: np.ndarray, **options) -> Path:
    Image.fromarray(pixels).save(path, **options)
    return path


@pytest.fixture
def protector_file(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save_protector(tmp_path / "run" / "protector.pt",
                          BoundedProtector(UNetGenerator(base_channels=8, depth=2), EPS))


@pytest.fixture
def tiny_net_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "tiny_protect_net.py").write_text(TINY_NET_SOURCE)
    return folder


@pytest.fixture
def photo_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    save_image(folder / "a.jpg", natural_photo(64, 48, 0), quality=95)
    save_image(folder / "b.png", natural_photo(64, 48, 1))
    save_image(folder / "c.webp", natural_photo(50, 70, 2), lossless=True)
    save_image(folder / "d.jpeg", natural_photo(64, 48, 3), quality=95)
    return folder


def image_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix in (".jpg", ".png", ".zip")}


def run_infer(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "infer.py"), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def manifest_of(output: Path) -> Path:
    """Where a run puts its manifest: beside the output folder, never in it (it names the originals)."""
    return output.parent / f"{output.name}.manifest.csv"


def read_manifest_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------ the command line


def test_infer_external_contract(tmp_path, protector_file, photo_dir):
    out = tmp_path / "out"
    result = run_infer("--protector", str(protector_file), "--input", str(photo_dir), "--output", str(out),
                       "--format", "jpeg", "--quality", "90")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.glob("*.jpg")) == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    for stem, source in (("a", "a.jpg"), ("b", "b.png"), ("c", "c.webp"), ("d", "d.jpeg")):
        written = Image.open(out / f"{stem}.jpg")
        assert written.format == "JPEG"
        assert written.size == Image.open(photo_dir / source).size
    assert "written: 4" in result.stdout and "failed: 0" in result.stdout
    assert "max |delta| on the saved files" in result.stdout and "images/s" in result.stdout
    assert "GPU available" not in result.stderr and "Tip:" not in result.stderr  # Lightning's per-run noise


def test_infer_run_code_zip_and_manifest_predictions(tmp_path, protector_file, photo_dir, tiny_net_dir):
    out = tmp_path / "submission"
    result = run_infer("--protector", str(protector_file), "--input", str(photo_dir), "--output", str(out),
                       "--run-code", "team_run", "--zip", "--classifier", "tiny_protect_net.TinyNet",
                       "--classifier-path", str(tiny_net_dir), "--num-workers", "0", "--no-progress")
    assert result.returncode == 0, result.stderr
    expected = ["team_run_a.jpg", "team_run_b.jpg", "team_run_c.jpg", "team_run_d.jpg"]
    assert sorted(p.name for p in out.glob("*.jpg")) == expected
    with zipfile.ZipFile(out / "team_run.zip") as archive:
        assert archive.namelist() == expected
        for name in expected:
            assert archive.read(name) == (out / name).read_bytes()

    # The manifest's predictions are those of the classifier on the files as written.
    model = import_class("tiny_protect_net.TinyNet", tiny_net_dir)().eval()
    rows = read_manifest_csv(manifest_of(out))
    assert [r["output"] for r in rows] == expected
    with torch.no_grad():
        for row in rows:
            assert row["status"] == "ok" and row["error"] == ""
            written = read_photo(out / row["output"]).pixels
            clean = read_photo(photo_dir / row["input"]).pixels
            assert (int(row["width"]), int(row["height"])) == (clean.shape[1], clean.shape[0])
            assert int(row["protected_top1"]) == int(model(to_tensor(written)[None]).argmax())
            assert int(row["clean_top1"]) == int(model(to_tensor(clean)[None]).argmax())
            assert row["sha256"] == sha256_file(out / row["output"])
            assert int(row["max_delta_8bit"]) == int(np.abs(written.astype(int) - clean.astype(int)).max())


def test_cli_refuses_zip_without_run_code(tmp_path, protector_file, photo_dir, capsys):
    import argparse

    from protector.commands import protect as protect_command

    parser = argparse.ArgumentParser()
    protect_command.add_arguments(parser)
    args = parser.parse_args(["--protector", str(protector_file), "--input", str(photo_dir), "--output",
                              str(tmp_path / "o"), "--zip"])
    assert protect_command.run(args) == 2
    assert "--run-code" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------ in-process runs


def run_protect(output: Path, inputs: list[Path], **options) -> object:
    options.setdefault("num_workers", 0)
    options.setdefault("progress", False)
    torch.manual_seed(0)
    protector = BoundedProtector(UNetGenerator(base_channels=8, depth=2), EPS).eval()
    return protect(ProtectOptions(output=output, inputs=inputs, **options), protector=protector)


def _jpeg_segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def test_metadata_stripped_orientation_applied_no_icc_profile(tmp_path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    landscape = natural_photo(80, 48, 5)
    image = Image.fromarray(landscape)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    exif[0x010F] = "PhoneMaker"
    exif[0x8825] = {1: "N", 2: (52.0, 22.0, 1.5), 3: "E", 4: (4.0, 53.0, 2.0)}  # GPS IFD
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95, exif=exif.tobytes(), icc_profile=icc, comment=b"secret comment")
    data = buffer.getvalue()
    xmp = _jpeg_segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta>secret-xmp-location</x:xmpmeta>")
    iptc = _jpeg_segment(0xED, b"Photoshop 3.0\x008BIM\x04\x04\x00\x00\x00\x00\x00\x0c\x1c\x02\x5a\x00\x08Secretly")
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "phone.jpg").write_bytes(data[:2] + xmp + iptc + data[2:])
    source_bytes = (folder / "phone.jpg").read_bytes()
    assert b"secret-xmp-location" in source_bytes and b"Photoshop 3.0" in source_bytes
    assert Image.open(folder / "phone.jpg").getexif().get_ifd(0x8825)  # the GPS block is there

    summary = run_protect(tmp_path / "out", [folder])
    assert summary.written == 1
    written = (tmp_path / "out" / "phone.jpg").read_bytes()
    for leak in (b"Exif\x00\x00", b"secret-xmp-location", b"http://ns.adobe.com/xap", b"Photoshop 3.0", b"8BIM",
                 b"secret comment", b"PhoneMaker"):
        assert leak not in written, leak
    out = Image.open(io.BytesIO(written))
    assert len(out.getexif()) == 0
    assert "comment" not in out.info and "exif" not in out.info and "xmp" not in out.info
    assert "icc_profile" not in out.info  # its colours applied while reading; a profile is free text
    assert out.size == (48, 80)  # orientation applied: portrait now
    upright = read_photo(folder / "phone.jpg").pixels
    assert np.abs(np.asarray(out.convert("RGB"), dtype=int) - upright.astype(int)).mean() < 4
    assert (folder / "phone.jpg").read_bytes() == source_bytes  # input untouched


def _png_chunks(data: bytes) -> list[bytes]:
    chunks, position = [], 8
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        chunks.append(kind)
        position += 12 + length
    return chunks


def test_png_same_format_drops_text_exif_and_icc(tmp_path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    info = PngInfo()
    info.add_text("Location", "52.3N 4.9E")
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta>secret</x:xmpmeta>")
    folder = tmp_path / "in"
    folder.mkdir()
    image = Image.fromarray(natural_photo(40, 36, 6))
    exif = image.getexif()
    exif[0x010F] = "PhoneMaker"
    image.save(folder / "shot.png", pnginfo=info, icc_profile=icc, exif=exif.tobytes())
    assert {b"tEXt", b"iTXt", b"eXIf"} <= set(_png_chunks((folder / "shot.png").read_bytes()))

    run_protect(tmp_path / "out", [folder], fmt="same")
    data = (tmp_path / "out" / "shot.png").read_bytes()
    chunks = set(_png_chunks(data))
    assert not chunks & {b"tEXt", b"iTXt", b"zTXt", b"eXIf", b"tIME"}
    assert b"iCCP" not in chunks and "icc_profile" not in Image.open(io.BytesIO(data)).info


def test_any_size_kept_and_png_delta_within_budget(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    sizes = [(37, 53), (64, 48), (37, 53), (120, 33), (33, 120)]
    for i, (w, h) in enumerate(sizes):
        save_image(folder / f"p{i}.png", natural_photo(w, h, i))
    summary = run_protect(tmp_path / "out", [folder], fmt="png", batch_size=4)
    assert summary.written == 5 and summary.failed == 0
    # PNG is lossless: the saved change is the protector's, within eps after 8-bit rounding.
    assert 0 < summary.max_delta_8bit <= round(EPS * 255)
    for i, (w, h) in enumerate(sizes):
        assert Image.open(tmp_path / "out" / f"p{i}.png").size == (w, h)


def test_recursive_keeps_layout_and_ignores_output_inside_input(tmp_path):
    folder = tmp_path / "album"
    (folder / "2019" / "summer").mkdir(parents=True)
    save_image(folder / "top.jpg", natural_photo(40, 40, 0))
    save_image(folder / "2019" / "summer" / "beach photo ü.png", natural_photo(40, 40, 1))
    out = folder / "protected"
    first = run_protect(out, [folder], recursive=True, run_code="rt_1")
    assert first.written == 2
    assert (out / "rt_1_top.jpg").is_file()
    assert (out / "2019" / "summer" / "rt_1_beach photo ü.jpg").is_file()
    second = run_protect(out, [folder], recursive=True, run_code="rt_1")
    assert (second.written, second.skipped, second.failed) == (0, 2, 0)  # its own outputs are not inputs


def test_list_with_tar_source(tmp_path):
    import tarfile

    folder = tmp_path / "val_256"
    folder.mkdir()
    names = ["Places365_val_00000001.jpg", "Places365_val_00000002.jpg"]
    for i, name in enumerate(names):
        save_image(folder / name, natural_photo(64, 64, i), quality=95)
    with tarfile.open(tmp_path / "val_256.tar", "w") as archive:
        archive.add(folder, arcname="val_256")
    (tmp_path / "list.csv").write_text("\n".join(names) + "\n")
    summary = protect(ProtectOptions(output=tmp_path / "out", list_path=tmp_path / "list.csv",
                                     images=tmp_path / "val_256.tar", run_code="rteam_base", num_workers=2,
                                     progress=False),  # workers read the tar in place, each on its own handle
                      protector=BoundedProtector(UNetGenerator(base_channels=8, depth=2), EPS).eval())
    assert summary.written == 2
    assert sorted(p.name for p in (tmp_path / "out").glob("*.jpg")) == [f"rteam_base_{n}" for n in names]


# ------------------------------------------------------------------ naming and batching


def test_output_names():
    assert output_name("Places365_val_00014191.jpg", "jpeg", "rteam_base") == "rteam_base_Places365_val_00014191.jpg"
    assert output_name("sub/a.png", "jpeg") == "sub/a.jpg"
    assert output_name("a.JPEG", "same") == "a.JPEG"
    assert output_name("anim.gif", "same") == "anim.png"
    assert output_name("x.tiff", "png") == "x.png"
    assert find_collisions({"a.jpg": "a.jpg", "a.png": "a.jpg", "B.jpg": "B.jpg", "b.png": "b.jpg", "c.jpg": "c.jpg"}) == {
        "a.jpg": ["a.png"], "a.png": ["a.jpg"], "B.jpg": ["b.png"], "b.png": ["B.jpg"]}
    with pytest.raises(ValueError, match="run code"):
        check_run_code("../evil")


def test_size_batches_and_rank_shards():
    sizes = [(64, 64), (32, 48), (64, 64), None, (64, 64), (32, 48), (4000, 3000)]
    batches = size_batches(sizes, batch_size=2, max_batch_pixels=10_000_000)
    assert batches == [[0, 2], [4], [1, 5], [3], [6]]
    assert all(len({sizes[i] for i in b}) == 1 for b in batches)
    assert size_batches([(4000, 3000)] * 3, batch_size=8, max_batch_pixels=16_000_000) == [[0], [1], [2]]
    shards = [list(SizeBatchSampler(sizes, 2, 10_000_000, rank=r, world_size=3)) for r in range(3)]
    flat = [i for shard in shards for batch in shard for i in batch]
    assert sorted(flat) == list(range(len(sizes)))  # disjoint and complete


# ------------------------------------------------------------------ very large photos


def test_tile_spans_cover_and_align():
    for length in (1, 63, 64, 65, 300, 1000):
        spans = tile_spans(length, 64, 16, 8)
        assert spans[0][0] == 0 and spans[-1][1] == length
        assert all(start % 8 == 0 for start, _ in spans)
        assert all(b[0] <= a[1] - 16 for a, b in zip(spans, spans[1:]))  # overlap >= 16


def test_tiled_output_equals_untiled_away_from_seams():
    torch.manual_seed(0)
    protector = BoundedProtector(UNetGenerator(base_channels=8, depth=2), EPS).eval()
    x = torch.rand(1, 3, 150, 230)
    tile, overlap = 96, 32
    tiled = TiledProtector(protector, max_pixels=64 * 64, tile=tile, overlap=overlap, align=4)
    with torch.no_grad():
        whole = protector(x)
        pieces = tiled(x)
    assert (pieces - x).abs().max() <= EPS + 1e-6 and pieces.min() >= 0 and pieces.max() <= 1
    # Pixels inside exactly one tile, >= `overlap` from its inner edges, see the same context.
    rows, cols = tile_spans(150, tile, overlap, 4), tile_spans(230, tile, overlap, 4)

    def exclusive(spans, length):
        count = np.zeros(length, int)
        for start, stop in spans:
            count[start:stop] += 1
        return count == 1

    mask = torch.from_numpy(exclusive(rows, 150)[:, None] & exclusive(cols, 230)[None, :])
    assert mask.float().mean() > 0.1
    assert (pieces - whole).abs()[..., mask].max() < 1e-5
    assert (pieces - whole).abs().mean() < EPS / 10  # seams blend, they do not jump


def test_large_photo_tiled_through_protect_matches_untiled(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    save_image(folder / "big.png", natural_photo(300, 200, 9))
    run_protect(tmp_path / "whole", [folder], fmt="png")
    summary = run_protect(tmp_path / "tiled", [folder], fmt="png", tile_max_pixels=128 * 128, tile=128,
                          tile_overlap=48, tile_align=4)
    assert summary.written == 1
    whole = np.asarray(Image.open(tmp_path / "whole" / "big.png"), dtype=int)
    tiled = np.asarray(Image.open(tmp_path / "tiled" / "big.png"), dtype=int)
    assert tiled.shape == whole.shape
    assert np.abs(tiled - whole).max() <= 1  # 8-bit rounding of near-identical values
    assert (tiled != whole).mean() < 0.05


# ------------------------------------------------------------------ devices


@pytest.mark.slow
def test_ddp_two_cpu_processes_write_the_same_files(tmp_path, protector_file, photo_dir):
    for i in range(4):
        save_image(photo_dir / f"extra{i}.png", natural_photo(64, 48, 10 + i))
    single = run_infer("--protector", str(protector_file), "--input", str(photo_dir), "--output",
                       str(tmp_path / "single"), "--batch-size", "2", "--num-workers", "0", "--no-progress")
    assert single.returncode == 0, single.stderr
    ddp = run_infer("--protector", str(protector_file), "--input", str(photo_dir), "--output",
                    str(tmp_path / "ddp"), "--batch-size", "2", "--num-workers", "0", "--no-progress",
                    "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp")
    assert ddp.returncode == 0, ddp.stderr
    assert image_files(tmp_path / "ddp") == image_files(tmp_path / "single")
    rows = read_manifest_csv(manifest_of(tmp_path / "ddp"))
    assert len(rows) == 8 and all(r["status"] == "ok" for r in rows)
    assert not list(tmp_path.glob(".ddp.manifest.csv.rank*")) and not (tmp_path / "ddp" / "manifest.csv").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bf16_on_gpu_keeps_the_budget(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    save_image(folder / "p.png", natural_photo(96, 64, 0))
    summary = run_protect(tmp_path / "out", [folder], fmt="png", accelerator="gpu", devices=1)
    assert summary.written == 1 and summary.nan_count == 0
    assert summary.max_delta_8bit <= round(EPS * 255)


def test_refine_steps_push_the_clean_prediction_down_within_budget(tmp_path, photo_dir, tiny_net_dir):
    model = import_class("tiny_protect_net.TinyNet", tiny_net_dir)().eval()
    for name, steps in (("plain", 0), ("refined", 3)):
        torch.manual_seed(0)
        protector = BoundedProtector(UNetGenerator(base_channels=8, depth=2), EPS).eval()
        options = ProtectOptions(output=tmp_path / name, inputs=[photo_dir], fmt="png", refine_steps=steps,
                                 num_workers=0, progress=False)
        protect(options, protector=protector, classifier=model)
    margins = {}
    with torch.no_grad():
        for name in ("plain", "refined"):
            total = 0.0
            for row in read_manifest_csv(manifest_of(tmp_path / name)):
                assert row["status"] == "ok"
                assert int(row["max_delta_8bit"]) <= round(EPS * 255)  # PNG: the budget holds on disk
                logits = model(to_tensor(read_photo(tmp_path / name / row["output"]).pixels)[None])[0]
                clean = int(row["clean_top1"])
                total += float(logits[clean] - logits.scatter(0, torch.tensor([clean]), float("-inf")).max())
            margins[name] = total
    assert margins["refined"] < margins["plain"]


def test_refine_loss_sensitive_safe_pushes_the_whole_set_down(tmp_path, photo_dir, tiny_net_dir):
    # The "sensitive" set: the top-3 classes of every clean photo. The same 5 refine steps with
    # --refine-loss sensitive_safe leave every written file with less of the set's probability
    # mass (against the 5th class outside it) than the default top-5 margin does.
    model = import_class("tiny_protect_net.TinyNet", tiny_net_dir)().eval()
    photos = sorted(p for p in photo_dir.iterdir())
    with torch.no_grad():
        clean_tops = {p.stem: model(to_tensor(read_photo(p).pixels)[None])[0].topk(3).indices.tolist() for p in photos}
    sensitive = sorted({c for top in clean_tops.values() for c in top})
    senscats = tmp_path / "senscats.txt"
    senscats.write_text("".join(f"/x/class_{c} {c}\n" for c in sensitive))
    objective = SensitiveSafe(sensitive, k=5, kappa=100.0)
    scores = {}
    for loss in ("topk", "sensitive_safe"):
        torch.manual_seed(0)
        protector = BoundedProtector(UNetGenerator(base_channels=8, depth=2), EPS).eval()
        options = ProtectOptions(output=tmp_path / loss, inputs=[photo_dir], fmt="png", refine_steps=5,
                                 refine_loss=loss, senscats=senscats, num_workers=0, progress=False)
        protect(options, protector=protector, classifier=model)
        with torch.no_grad():
            for row in read_manifest_csv(manifest_of(tmp_path / loss)):
                assert row["status"] == "ok" and int(row["max_delta_8bit"]) <= round(EPS * 255)
                logits = model(to_tensor(read_photo(tmp_path / loss / row["output"]).pixels)[None])
                clean = torch.tensor([clean_tops[Path(row["input"]).stem][0]])
                scores[loss, row["input"]] = objective(logits, clean).item()
    for photo in photos:
        assert scores["sensitive_safe", photo.name] < scores["topk", photo.name]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"refine_loss": "sensitive_safe", "refine_steps": 2}, "needs the sensitive categories"),
        ({"refine_loss": "margin", "refine_steps": 0}, "--refine-steps 0"),
    ],
)
def test_refine_loss_settings_are_checked(tmp_path, photo_dir, options, match):
    with pytest.raises(ValueError, match=match):
        ProtectOptions(output=tmp_path / "o", inputs=[photo_dir], **options).check()


def test_refine_loss_flags_reach_the_options():
    import argparse

    from protector.commands import protect as protect_command

    parser = argparse.ArgumentParser()
    protect_command.add_arguments(parser)
    args = parser.parse_args(["--protector", "p.pt", "--output", "o", "--refine-steps", "10",
                              "--refine-loss", "sensitive_safe", "--senscats", "MEPP18senscats.txt"])
    options = protect_command.options_from_args(args)
    assert (options.refine_loss, options.senscats, options.refine_steps) == (
        "sensitive_safe", Path("MEPP18senscats.txt"), 10)
    # Unset: the default of the views (ProtectionSettings), ce over views, topk for the file as it is.
    assert parser.parse_args(["--protector", "p.pt", "--output", "o"]).refine_loss is None


def test_refine_needs_a_classifier(tmp_path, photo_dir):
    with pytest.raises(ValueError, match="--refine-steps needs the attack model"):
        run_protect(tmp_path / "o", [photo_dir], refine_steps=2)


def test_guided_protector_needs_the_classifier_and_uses_its_gradient(tmp_path, photo_dir, tiny_net_dir):
    torch.manual_seed(0)
    guided = save_protector(tmp_path / "guided.pt",
                            BoundedProtector(UNetGenerator(base_channels=8, depth=2, guided=True), EPS))
    refused = run_infer("--protector", str(guided), "--input", str(photo_dir), "--output", str(tmp_path / "x"))
    # Without --classifier the guide is the task's attack model from the user cache: offline and
    # not cached, the run stops and says what to fetch.
    assert refused.returncode == 2 and "attack model" in refused.stderr and "--classifier" in refused.stderr
    assert not (tmp_path / "x").exists()  # refused before anything was written

    model = import_class("tiny_protect_net.TinyNet", tiny_net_dir)().eval()
    margins = {}
    for name, checkpoint in (("plain", None), ("guided", guided)):
        if checkpoint is None:
            torch.manual_seed(0)
            checkpoint = save_protector(tmp_path / "plain.pt",
                                        BoundedProtector(UNetGenerator(base_channels=8, depth=2), EPS))
        result = run_infer("--protector", str(checkpoint), "--input", str(photo_dir), "--output",
                           str(tmp_path / name), "--format", "png", "--classifier", "tiny_protect_net.TinyNet",
                           "--classifier-path", str(tiny_net_dir), "--num-workers", "0", "--no-progress")
        assert result.returncode == 0, result.stderr
        total = 0.0
        with torch.no_grad():
            for row in read_manifest_csv(manifest_of(tmp_path / name)):
                assert row["status"] == "ok" and int(row["max_delta_8bit"]) <= round(EPS * 255)
                logits = model(to_tensor(read_photo(tmp_path / name / row["output"]).pixels)[None])[0]
                clean = int(row["clean_top1"])
                total += float(logits[clean] - logits.scatter(0, torch.tensor([clean]), float("-inf")).max())
        margins[name] = total
    # Even untrained, the guided generator follows the classifier's gradient: a soft FGSM.
    assert margins["guided"] < margins["plain"]


class _DimmedReference(BoundedProtector):
    """A protector whose reference is not the input: stands in for an enhancement stage."""

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        return x * 0.5 + 0.25


@pytest.mark.parametrize("tiled", [False, True])
def test_budget_is_measured_from_the_protectors_reference(tmp_path, tiny_net_dir, tiled):
    # Generator, refinement, tiling and the writer's delta all read the budget's centre from
    # one place: with a reference far from the input, every output sits within eps of it.
    folder = tmp_path / "in"
    folder.mkdir()
    save_image(folder / "p.png", natural_photo(200, 160, 3))
    model = import_class("tiny_protect_net.TinyNet", tiny_net_dir)().eval()
    torch.manual_seed(0)
    protector = _DimmedReference(UNetGenerator(base_channels=8, depth=2), EPS).eval()
    tiles = {"tile_max_pixels": 96 * 96, "tile": 96, "tile_overlap": 32, "tile_align": 4} if tiled else {}
    options = ProtectOptions(output=tmp_path / "out", inputs=[folder], fmt="png", refine_steps=2, num_workers=0,
                             progress=False, **tiles)
    summary = protect(options, protector=protector, classifier=model)
    assert summary.written == 1 and summary.max_delta_8bit <= round(EPS * 255)
    written = to_tensor(read_photo(tmp_path / "out" / "p.png").pixels)[None]
    clean = to_tensor(read_photo(folder / "p.png").pixels)[None]
    assert (written - protector.reference(clean)).abs().max() <= EPS + 0.5 / 255
    assert (written - clean).abs().max() > 0.1  # far from the input: the reference is what counts


def test_refine_loss_is_part_of_what_made_the_files(tmp_path, photo_dir, tiny_net_dir):
    # Another refine loss writes other bytes: a rerun with it into the same folder must not
    # skip the files the first loss wrote.
    from protector.protect.provenance import ForeignOutputError

    model = import_class("tiny_protect_net.TinyNet", tiny_net_dir)().eval()
    torch.manual_seed(0)
    protector = BoundedProtector(UNetGenerator(base_channels=8, depth=2), EPS).eval()
    options = ProtectOptions(output=tmp_path / "out", inputs=[photo_dir], fmt="png", refine_steps=1,
                             num_workers=0, progress=False)
    protect(options, protector=protector, classifier=model)
    options.refine_loss = "margin"
    with pytest.raises(ForeignOutputError, match="not made by this protector"):
        protect(options, protector=protector, classifier=model)


def test_nima_before_and_after_in_manifest_and_summary(tmp_path, photo_dir, shared):
    from protector.nima import load_nima, nima_scores

    weights = shared.path("nima/weights_mobilenet_aesthetic_0.07.hdf5")
    torch.manual_seed(0)
    protector = BoundedProtector(UNetGenerator(base_channels=8, depth=2), EPS).eval()
    out = tmp_path / "out"
    options = ProtectOptions(output=out, inputs=[photo_dir], nima=weights, num_workers=0, progress=False)
    summary = protect(options, protector=protector)
    nima = load_nima(weights)
    rows = read_manifest_csv(manifest_of(out))
    assert len(rows) == 4 and summary.nima_measured == 4
    with torch.no_grad():
        for row in rows:
            clean = to_tensor(read_photo(photo_dir / row["input"]).pixels)[None]
            written = to_tensor(read_photo(out / row["output"]).pixels)[None]
            assert float(row["nima_original"]) == pytest.approx(nima_scores(nima(clean))[0].item(), abs=1e-3)
            assert float(row["nima_protected"]) == pytest.approx(nima_scores(nima(written))[0].item(), abs=1e-3)
    assert summary.nima_before == pytest.approx(np.mean([float(r["nima_original"]) for r in rows]))
    assert summary.nima_after == pytest.approx(np.mean([float(r["nima_protected"]) for r in rows]))
    assert "NIMA mean:" in summary.format()
    # Without --nima the columns stay empty and the summary says nothing of NIMA.
    plain = protect(ProtectOptions(output=tmp_path / "plain", inputs=[photo_dir], num_workers=0, progress=False),
                    protector=protector)
    assert all(r["nima_original"] == r["nima_protected"] == "" for r in read_manifest_csv(manifest_of(tmp_path / "plain")))
    assert plain.nima_before is None and "NIMA" not in plain.format()


def test_progress_counts_photos_not_batches(tmp_path, photo_dir, capsys):
    """Four photos of two sizes are two batches; the bar says 4/4 photos (it said 0/2 for 100 s on a CPU)."""
    run_protect(tmp_path / "out", [photo_dir], progress=True, batch_size=8)
    err = capsys.readouterr().err
    assert re.search(r"protecting: 100%.*\b4/4 \[.*photo/s", err), err[-1000:]
    assert "/2 [" not in err
