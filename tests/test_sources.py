"""Image sources: folders, val_256.tar read in place, malicious archives, DataLoader workers."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import DataLoader, Dataset

from protector.data.sources import FolderSource, SourceError, TarSource, open_source
from protector.images import encode_photo, read_photo


def jpeg(seed: int, size: int = 32) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return encode_photo(pixels, "jpeg", quality=90)


def add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


@pytest.fixture
def val_tar(tmp_path) -> tuple[Path, dict[str, bytes]]:
    """A val_256.tar in the real layout: a val_256/ folder entry, then the JPEGs under it."""
    files = {f"Places365_val_{i:08d}.jpg": jpeg(i) for i in range(1, 7)}
    path = tmp_path / "val_256.tar"
    with tarfile.open(path, "w") as archive:
        folder = tarfile.TarInfo("val_256")
        folder.type = tarfile.DIRTYPE
        archive.addfile(folder)
        for name, data in files.items():
            add_bytes(archive, f"val_256/{name}", data)
    return path, files


@pytest.fixture
def evil_tar(tmp_path) -> Path:
    """Regular images plus members that must never be listed or read."""
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(jpeg(99))
    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as archive:
        add_bytes(archive, "val_256/Places365_val_00000001.jpg", jpeg(1))
        add_bytes(archive, "val_256/Places365_val_00000002.jpg", jpeg(2))
        add_bytes(archive, "../escape.jpg", jpeg(3))
        add_bytes(archive, "val_256/../../escape2.jpg", jpeg(4))
        add_bytes(archive, "/abs.jpg", jpeg(5))
        link = tarfile.TarInfo("val_256/symlink.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, str(secret)
        archive.addfile(link)
        hard = tarfile.TarInfo("val_256/hardlink.jpg")
        hard.type, hard.linkname = tarfile.LNKTYPE, "val_256/Places365_val_00000001.jpg"
        archive.addfile(hard)
        for kind, name in ((tarfile.CHRTYPE, "val_256/dev.jpg"), (tarfile.FIFOTYPE, "val_256/fifo.jpg")):
            special = tarfile.TarInfo(name)
            special.type = kind
            archive.addfile(special)
    return path


# ------------------------------------------------------------------ tar


def test_tar_read_in_place_with_or_without_prefix(val_tar):
    path, files = val_tar
    source = TarSource(path)
    assert source.names() == sorted(files)
    assert source.prefix == "val_256"
    for name, data in files.items():
        assert source.read_bytes(name) == data
        assert source.read_bytes(f"val_256/{name}") == data
        assert name in source and f"val_256/{name}" in source and f"./val_256/{name}" in source
    pixels = read_photo(source.read_bytes("Places365_val_00000003.jpg")).pixels
    assert pixels.shape == (32, 32, 3)
    assert "6 images under val_256/" in source.describe()
    assert not list(path.parent.glob("val_256")), "nothing may be extracted"


def test_tar_missing_name_raises_file_not_found_naming_source(val_tar):
    source = TarSource(val_tar[0])
    with pytest.raises(FileNotFoundError, match=r"val_256\.tar.*Places365_val_00000099\.jpg"):
        source.read_bytes("Places365_val_00000099.jpg")
    assert "Places365_val_00000099.jpg" not in source
    assert 3 not in source


def test_malicious_members_are_never_exposed_or_read(evil_tar):
    source = TarSource(evil_tar)
    assert source.names() == ["Places365_val_00000001.jpg", "Places365_val_00000002.jpg"]
    assert sorted(source.ignored) == sorted(
        ["../escape.jpg", "val_256/../../escape2.jpg", "/abs.jpg", "val_256/symlink.jpg",
         "val_256/hardlink.jpg", "val_256/dev.jpg", "val_256/fifo.jpg"]
    )
    for name in ("symlink.jpg", "val_256/symlink.jpg", "hardlink.jpg", "dev.jpg", "fifo.jpg",
                 "../escape.jpg", "escape.jpg", "/abs.jpg", "abs.jpg", "escape2.jpg"):
        assert name not in source
        with pytest.raises(FileNotFoundError):
            source.read_bytes(name)


def test_compressed_and_truncated_archives_give_clear_errors(val_tar, tmp_path):
    path, _ = val_tar
    gz = tmp_path / "val_256.tar.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    with pytest.raises(SourceError, match="not an uncompressed tar"):
        TarSource(gz)
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(path.read_bytes()[: 512 * 3 + 100])  # inside the second member's data
    with pytest.raises(SourceError, match="truncated"):
        source = TarSource(truncated)
        for name in source.names():
            source.read_bytes(name)


def test_tar_threads_and_pickling(val_tar):
    path, files = val_tar
    source = TarSource(path)
    names = sorted(files) * 20
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(source.read_bytes, names))
    assert results == [files[n] for n in names]
    clone = pickle.loads(pickle.dumps(source))
    assert clone._fd is None  # the handle is not carried along; the clone opens its own
    assert clone.read_bytes("Places365_val_00000002.jpg") == files["Places365_val_00000002.jpg"]
    source.close()
    assert source.read_bytes("Places365_val_00000001.jpg") == files["Places365_val_00000001.jpg"]


class _Digests(Dataset):
    def __init__(self, source, names):
        self.source, self.names = source, names

    def __len__(self):
        return len(self.names)

    def __getitem__(self, i):
        digest = hashlib.sha256(self.source.read_bytes(self.names[i])).hexdigest()
        return {"name": self.names[i], "sha": digest, "pid": os.getpid(), "fd_pid": getattr(self.source, "_fd_pid", None)}


def test_tar_in_dataloader_workers(val_tar):
    path, files = val_tar
    source = TarSource(path)
    source.read_bytes("Places365_val_00000001.jpg")  # the parent holds an open handle before the fork
    names = sorted(files) * 4
    loader = DataLoader(_Digests(source, names), batch_size=3, num_workers=2, collate_fn=list)
    items = [item for batch in loader for item in batch]
    assert sorted(i["name"] for i in items) == sorted(names)
    assert all(i["sha"] == hashlib.sha256(files[i["name"]]).hexdigest() for i in items)
    worker_pids = {i["pid"] for i in items}
    assert os.getpid() not in worker_pids and len(worker_pids) == 2
    assert all(i["fd_pid"] == i["pid"] for i in items), "each worker must read through its own handle"


# ------------------------------------------------------------------ folder


@pytest.fixture
def photo_folder(tmp_path) -> Path:
    root = tmp_path / "photos"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".hidden").mkdir()
    (root / "b.jpg").write_bytes(jpeg(1))
    (root / "A.PNG").write_bytes(jpeg(2))
    (root / "sub" / "c.jpeg").write_bytes(jpeg(3))
    (root / "sub" / "deeper" / "d.jpg").write_bytes(jpeg(4))
    (root / "notes.txt").write_text("not an image")
    (root / "._b.jpg").write_bytes(b"AppleDouble")
    (root / ".hidden" / "e.jpg").write_bytes(jpeg(5))
    (root / "folder.jpg").mkdir()
    return root


def test_folder_lists_images_sorted_posix(photo_folder):
    source = FolderSource(photo_folder)
    assert source.names() == ["A.PNG", "b.jpg", "sub/c.jpeg", "sub/deeper/d.jpg"]
    assert FolderSource(photo_folder, recursive=False).names() == ["A.PNG", "b.jpg"]
    assert source.read_bytes("sub/deeper/d.jpg") == (photo_folder / "sub/deeper/d.jpg").read_bytes()
    assert source.read_bytes("sub\\c.jpeg") == (photo_folder / "sub/c.jpeg").read_bytes()
    assert "b.jpg" in source and "./sub//c.jpeg" in source
    assert "folder.jpg" not in source and "missing.jpg" not in source


def test_folder_refuses_escaping_names(photo_folder):
    outside = photo_folder.parent / "outside.jpg"
    outside.write_bytes(jpeg(7))
    source = FolderSource(photo_folder / "sub")
    for name in ("../outside.jpg", "../b.jpg", str(outside), "deeper/../../b.jpg"):
        assert name not in source
        with pytest.raises(FileNotFoundError, match="refusing"):
            source.read_bytes(name)
    with pytest.raises(FileNotFoundError, match=r"folder .*sub: no file named 'nope\.jpg'"):
        source.read_bytes("nope.jpg")


def test_open_source_dispatch(photo_folder, val_tar, tmp_path):
    assert isinstance(open_source(photo_folder), FolderSource)
    assert isinstance(open_source(val_tar[0]), TarSource)
    with pytest.raises(FileNotFoundError, match="not found"):
        open_source(tmp_path / "nowhere")
    with pytest.raises(SourceError, match="expected a folder"):
        open_source(photo_folder / "notes.txt")


def test_folder_source_works_in_workers(photo_folder):
    source = FolderSource(photo_folder)
    names = source.names()
    loader = DataLoader(_Digests(source, names), batch_size=2, num_workers=2, collate_fn=list)
    got = {i["name"]: i["sha"] for batch in loader for i in batch}
    assert got == {n: hashlib.sha256((photo_folder / n).read_bytes()).hexdigest() for n in names}

