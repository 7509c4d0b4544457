"""fetch/check against a local HTTP server on 127.0.0.1: download, resume, corruption, extraction."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import io
import re
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import save_shaped_resnet50
from protector.cli import main
from protector.data.fetch import (
    OFFICIAL_FILES,
    ChecksumError,
    DownloadError,
    OfficialFile,
    check,
    fetch,
    offline_help,
)

# `protector.data.fetch` as an attribute is the function re-exported by the package;
# the module itself comes from the import system.
fetch_module = importlib.import_module("protector.data.fetch")


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        server = self.server
        requested_range = self.headers.get("Range")
        server.requests.append((self.path, requested_range))
        data = server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        if requested_range and server.honor_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", requested_range).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.cut_after is not None:
            # Promise the whole body, send part of it, hang up: a dropped connection.
            self.wfile.write(body[: server.cut_after])
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.honor_range = True
        self.cut_after: int | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


@pytest.fixture
def server(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _tar(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


PAYLOAD = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
LABELS = b"Places365_val_00000001.jpg 165\nPlaces365_val_00000002.jpg 358\n"
DEVKIT = _tar([("../places365_val.txt", b"evil"), ("places365_val.txt", LABELS)])
WEIGHTS = b"not really a checkpoint"


@pytest.fixture
def table(server, monkeypatch) -> dict[str, OfficialFile]:
    """OFFICIAL_FILES pointed at the local server: a pinned file, an archive and a member, weights."""
    server.files = {"/images.tar": PAYLOAD, "/devkit.tar": DEVKIT, "/model.pth.tar": WEIGHTS}
    files = {
        "images.tar": OfficialFile(
            "images.tar", "images.tar", (server.url("/images.tar"),), "images",
            md5=hashlib.md5(PAYLOAD).hexdigest(), sha256=hashlib.sha256(PAYLOAD).hexdigest(), size=len(PAYLOAD),
        ),
        "devkit.tar": OfficialFile(
            "devkit.tar", "devkit.tar", (server.url("/devkit.tar"),), "devkit", md5=hashlib.md5(DEVKIT).hexdigest()
        ),
        "places365_val.txt": OfficialFile(
            "places365_val.txt", "places365_val.txt", (server.url("/devkit.tar"),), "labels",
            md5=hashlib.md5(LABELS).hexdigest(), archive="devkit.tar",
        ),
        "model.pth.tar": OfficialFile(
            "model.pth.tar", "model.pth.tar", (server.url("/model.pth.tar"),), "weights", in_weights=True
        ),
    }
    monkeypatch.setattr(fetch_module, "OFFICIAL_FILES", files)
    return files


def test_full_download_then_nothing_to_do(tmp_path, server, table):
    root, weights = tmp_path / "data", tmp_path / "weights"
    results = fetch(root, weights_dir=weights, progress=True)
    assert [(r.name, r.action) for r in results] == [
        ("images.tar", "downloaded"),
        ("devkit.tar", "downloaded"),
        ("places365_val.txt", "extracted"),
        ("model.pth.tar", "downloaded"),
    ]
    assert (root / "images.tar").read_bytes() == PAYLOAD
    assert (root / "places365_val.txt").read_bytes() == LABELS
    assert not (tmp_path / "places365_val.txt").exists()  # the '../' member was not followed
    assert (weights / "model.pth.tar").read_bytes() == WEIGHTS
    assert not list(tmp_path.rglob("*.part"))
    assert [s.state for s in check(root, weights)] == ["ok", "ok", "ok", "unpinned"]

    server.requests.clear()
    again = fetch(root, weights_dir=weights, progress=False)
    assert {r.action for r in again} == {"present"}
    assert server.requests == []


def test_resume_from_truncated_part(tmp_path, server, table):
    part = tmp_path / "images.tar.part"
    part.write_bytes(PAYLOAD[:100_000])
    [result] = fetch(tmp_path, names=["images.tar"], weights_dir=tmp_path, progress=False)
    assert result.action == "resumed"
    assert server.requests == [("/images.tar", "bytes=100000-")]
    assert (tmp_path / "images.tar").read_bytes() == PAYLOAD
    assert not part.exists()


def test_complete_part_is_accepted_on_416(tmp_path, server, table):
    (tmp_path / "images.tar.part").write_bytes(PAYLOAD)
    [result] = fetch(tmp_path, names=["images.tar"], weights_dir=tmp_path, progress=False)
    assert result.action == "resumed"
    assert (tmp_path / "images.tar").read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_cleanly(tmp_path, server, table):
    server.honor_range = False
    (tmp_path / "images.tar.part").write_bytes(PAYLOAD[:100_000])
    [result] = fetch(tmp_path, names=["images.tar"], weights_dir=tmp_path, progress=False)
    assert result.action == "downloaded"
    assert server.requests == [("/images.tar", "bytes=100000-")]
    assert (tmp_path / "images.tar").read_bytes() == PAYLOAD  # not prefix + whole file


def test_stale_part_with_wrong_bytes_is_replaced(tmp_path, server, table):
    (tmp_path / "images.tar.part").write_bytes(b"\0" * 100_000)
    [result] = fetch(tmp_path, names=["images.tar"], weights_dir=tmp_path, progress=False)
    assert result.action == "downloaded"
    assert [r for _, r in server.requests] == ["bytes=100000-", None]
    assert (tmp_path / "images.tar").read_bytes() == PAYLOAD


def test_corrupt_download_is_rejected_and_removed(tmp_path, server, table):
    corrupt = bytearray(PAYLOAD)
    corrupt[1234] ^= 0xFF
    server.files["/images.tar"] = bytes(corrupt)
    with pytest.raises(ChecksumError) as info:
        fetch(tmp_path, names=["images.tar"], weights_dir=tmp_path, progress=False)
    err = info.value
    assert err.algorithm == "md5" and err.expected == table["images.tar"].md5
    assert err.actual == hashlib.md5(corrupt).hexdigest()
    assert "images.tar" in str(err) and err.expected in str(err) and err.actual in str(err)
    assert not (tmp_path / "images.tar").exists()
    assert not (tmp_path / "images.tar.part").exists()


def test_oversized_download_is_stopped(tmp_path, server, table):
    server.files["/images.tar"] = PAYLOAD + b"extra"
    with pytest.raises(ChecksumError, match=r"images\.tar: size mismatch: expected 300,000 bytes, got more"):
        fetch(tmp_path, names=["images.tar"], weights_dir=tmp_path, progress=False)
    assert not list(tmp_path.iterdir())


def test_dropped_connection_keeps_part_and_next_run_resumes(tmp_path, server, table):
    server.cut_after = 120_000
    with pytest.raises(DownloadError) as info:
        fetch(tmp_path, names=["images.tar"], weights_dir=tmp_path, progress=False)
    assert server.url("/images.tar") in str(info.value)
    assert (tmp_path / "images.tar.part").read_bytes() == PAYLOAD[:120_000]
    assert not (tmp_path / "images.tar").exists()

    server.cut_after = None
    [result] = fetch(tmp_path, names=["images.tar"], weights_dir=tmp_path, progress=False)
    assert result.action == "resumed"
    assert (tmp_path / "images.tar").read_bytes() == PAYLOAD


def test_unreachable_file_explains_the_manual_route(tmp_path, server, table):
    del server.files["/model.pth.tar"]
    with pytest.raises(DownloadError) as info:
        fetch(tmp_path, names=["model.pth.tar"], weights_dir=tmp_path / "w", progress=False)
    message = str(info.value)
    assert "404" in message
    assert f"download {server.url('/model.pth.tar')}" in message
    assert str(tmp_path / "w" / "model.pth.tar") in message


def test_one_unreachable_file_does_not_stop_the_others(tmp_path, server, table):
    del server.files["/devkit.tar"]
    with pytest.raises(DownloadError) as info:
        fetch(tmp_path, weights_dir=tmp_path / "w", progress=False)
    message = str(info.value)
    assert message.startswith("2 file(s) not fetched")
    assert "places365_val.txt: needs devkit.tar, which could not be downloaded" in message
    assert [(r.name, r.action) for r in info.value.results] == [
        ("images.tar", "downloaded"),
        ("model.pth.tar", "downloaded"),
    ]
    assert [path for path, _ in server.requests].count("/devkit.tar") == 1
    assert (tmp_path / "images.tar").read_bytes() == PAYLOAD


def test_extracted_files_without_their_archive_are_enough_offline(tmp_path, server, table, capsys):
    """Offline with places365_val.txt already extracted: the devkit tar is not needed (also when kept as it is)."""
    from protector.cli import main

    (tmp_path / "images.tar").write_bytes(PAYLOAD)
    (tmp_path / "places365_val.txt").write_bytes(LABELS)
    (tmp_path / "model.pth.tar").write_bytes(WEIGHTS)
    server.files.clear()  # offline
    results = fetch(tmp_path, weights_dir=tmp_path, progress=False)
    assert [(r.name, r.action) for r in results] == [
        ("images.tar", "present"), ("devkit.tar", "not needed"), ("places365_val.txt", "present"),
        ("model.pth.tar", "present")]
    assert not (tmp_path / "devkit.tar").exists() and server.requests == []
    by_name = {s.name: s for s in check(tmp_path, tmp_path)}
    assert by_name["devkit.tar"].state == "not needed" and all(s.ok for s in by_name.values())
    assert main(["data", "check", "--root", str(tmp_path), "--weights", str(tmp_path)]) == 0
    capsys.readouterr()

    # A re-packed labels file, kept on purpose (make run KEEP_MISMATCHED=1): still no devkit needed.
    (tmp_path / "places365_val.txt").write_bytes(LABELS + b"\n")
    with pytest.raises(DownloadError):
        fetch(tmp_path, weights_dir=tmp_path, progress=False)
    results = fetch(tmp_path, weights_dir=tmp_path, progress=False, keep_mismatched=True)
    assert [(r.name, r.action) for r in results][1:3] == [("devkit.tar", "not needed"), ("places365_val.txt", "kept")]


def test_offline_message_lists_each_download_once_with_the_total(tmp_path, server, table):
    server.files.clear()  # offline: every download fails
    with pytest.raises(DownloadError) as info:
        fetch(tmp_path, weights_dir=tmp_path / "w", progress=False)
    message = str(info.value)
    assert message.count("Without network access") == 1 and message.count("then run `make run`") == 1
    for url in ("/images.tar", "/devkit.tar", "/model.pth.tar"):
        assert message.count(f"download {server.url(url)}") == 1, message
    assert f"save as  {tmp_path / 'images.tar'}" in message
    assert f"save as  {tmp_path / 'w' / 'model.pth.tar'}" in message
    assert f"places365_val.txt  ->  save as  {tmp_path / 'places365_val.txt'}" in message
    # The devkit and the weights have no pinned size here: the total is a lower bound.
    assert "3 download(s), at least 0.00 GB in all" in message


def test_offline_total_of_the_real_table(tmp_path):
    """The real files: about 0.69 GB when nothing is there, each download named once."""
    help_text = offline_help(check(tmp_path, tmp_path / "weights"))
    assert help_text.startswith("9 download(s), about 0.69 GB in all")
    assert help_text.count("filelist_places365-standard.tar  (") == 1
    assert help_text.rstrip().endswith("then run `make run` (or `protector data fetch`) again.")


def test_member_alone_brings_its_archive(tmp_path, server, table):
    results = fetch(tmp_path, names=["places365_val.txt"], weights_dir=tmp_path, progress=False)
    assert [(r.name, r.action) for r in results] == [("devkit.tar", "downloaded"), ("places365_val.txt", "extracted")]
    assert (tmp_path / "places365_val.txt").read_bytes() == LABELS


def test_unknown_name(tmp_path, table):
    with pytest.raises(ValueError, match="unknown file"):
        fetch(tmp_path, names=["nope.txt"], weights_dir=tmp_path, progress=False)


def test_check_reports_missing_bad_and_unpinned(tmp_path, server, table):
    weights = tmp_path / "w"
    statuses = check(tmp_path, weights)
    assert [s.state for s in statuses] == ["missing"] * 4
    assert not any(s.ok for s in statuses)

    (tmp_path / "images.tar").write_bytes(PAYLOAD[:-1] + b"\0")  # right size, wrong bytes
    (tmp_path / "devkit.tar").write_bytes(b"short")
    weights.mkdir()
    (weights / "model.pth.tar").write_bytes(b"anything")
    by_name = {s.name: s for s in check(tmp_path, weights)}
    assert by_name["images.tar"].state == "bad" and "md5 expected" in by_name["images.tar"].detail
    assert by_name["devkit.tar"].state == "bad"
    assert by_name["model.pth.tar"].state == "unpinned"
    assert by_name["model.pth.tar"].detail == "present, checksum not pinned"
    assert by_name["model.pth.tar"].ok

    help_text = offline_help(list(by_name.values()))
    assert f"download {server.url('/images.tar')}" in help_text
    assert f"save as  {tmp_path / 'images.tar'}" in help_text
    assert f"places365_val.txt  ->  save as  {tmp_path / 'places365_val.txt'}" in help_text
    assert "model.pth.tar" not in help_text

    # fetch replaces the bad file with a verified one
    fetch(tmp_path, names=["images.tar"], weights_dir=weights, progress=False)
    assert (tmp_path / "images.tar").read_bytes() == PAYLOAD


# ------------------------------------------------------------ the real table


def test_official_table_is_complete(shared):
    names = set(OFFICIAL_FILES)
    assert names == {
        "val_256.tar", "filelist_places365-standard.tar", "places365_val.txt", "categories_places365.txt",
        "MEPP18val.csv", "MEPP18test.csv", "MEPP18test_manual.csv", "MEPP18senscats.txt",
        "MEPP19test.csv", "MEPP19test_manual.csv", "resnet50_places365.pth.tar",
    }
    val = OFFICIAL_FILES["val_256.tar"]
    assert val.md5 == "e27b17d8d44f4af9a78502beb927f808" and val.size == 525_158_400
    assert val.urls == ("http://data.csail.mit.edu/places/places365/val_256.tar",)
    weights = OFFICIAL_FILES["resnet50_places365.pth.tar"]
    assert weights.in_weights and not weights.pinned
    for file in OFFICIAL_FILES.values():
        assert file.urls and all(u.startswith(("http://", "https://")) for u in file.urls)
        assert file.archive is None or OFFICIAL_FILES[file.archive].archive is None
        if file.name.startswith("MEPP"):
            assert file.dest == file.name
            assert file.urls[0].endswith(file.name)
            assert "82b3352c75c3e3bba736fc837864bbead83138b1" in file.urls[0] or (
                "e1af8b9bea164706de48cf1d1724f512d94eec27" in file.urls[0]
            )
            local = shared.path(f"data/mepp/{file.name}")
            assert hashlib.sha256(local.read_bytes()).hexdigest() == file.sha256
            assert local.stat().st_size == file.size
    categories = shared.path("standin/categories_places365.txt").read_bytes()
    assert hashlib.md5(categories).hexdigest() == OFFICIAL_FILES["categories_places365.txt"].md5


def test_real_mepp_copies_check_ok(tmp_path, shared):
    for file in OFFICIAL_FILES.values():
        if file.name.startswith("MEPP"):
            (tmp_path / file.name).write_bytes(shared.path(f"data/mepp/{file.name}").read_bytes())
    states = {s.name: s.state for s in check(tmp_path, tmp_path / "weights")}
    assert all(states[n] == "ok" for n in states if n.startswith("MEPP"))
    assert states["val_256.tar"] == "missing"


def test_destination_path_of_weights_is_under_weights_dir(tmp_path):
    path = OFFICIAL_FILES["resnet50_places365.pth.tar"].path(tmp_path / "data", tmp_path / "w")
    assert path == Path(tmp_path / "w" / "resnet50_places365.pth.tar")


def test_present_file_with_another_checksum_is_used_offline_only_when_opted_in(tmp_path, server, table, capsys):
    """An offline re-packed copy: refused by default (the server is gone), kept and named with the opt-in."""
    from protector.cli import main

    (tmp_path / "images.tar").write_bytes(PAYLOAD[:-1] + b"x")
    server.files.clear()  # offline: nothing can be downloaded again
    with pytest.raises(DownloadError):
        fetch(tmp_path, names=["images.tar"], weights_dir=tmp_path, progress=False)
    results = fetch(tmp_path, names=["images.tar"], weights_dir=tmp_path, progress=False, keep_mismatched=True)
    assert [(r.name, r.action) for r in results] == [("images.tar", "kept")]
    assert "md5 expected" in results[0].detail or "sha256 expected" in results[0].detail
    assert (tmp_path / "images.tar").read_bytes() == PAYLOAD[:-1] + b"x"  # untouched

    assert main(["data", "fetch", "--root", str(tmp_path), "--weights", str(tmp_path), "--only", "images.tar",
                 "--keep-mismatched", "--no-progress"]) == 0
    assert "1 file(s) kept although they differ from the official ones" in capsys.readouterr().err


def test_a_directory_in_the_way_is_named_and_the_other_files_still_come(tmp_path, server, table):
    (tmp_path / "images.tar").mkdir()
    with pytest.raises(DownloadError) as info:
        fetch(tmp_path, weights_dir=tmp_path, progress=False)
    message = str(info.value)
    assert message.startswith("1 file(s) not fetched")
    assert f"{tmp_path / 'images.tar'}: is a directory" in message and "move it away" in message
    assert (tmp_path / "model.pth.tar").read_bytes() == WEIGHTS
    assert (tmp_path / "images.tar").is_dir()


# ------------------------------------------------------------ suspicious downloads


@pytest.fixture
def attack_model_table(server, monkeypatch) -> OfficialFile:
    """Only the real attack-model entry (no pinned checksum), served by the local server."""
    file = dataclasses.replace(OFFICIAL_FILES["resnet50_places365.pth.tar"], urls=(server.url("/resnet50.pth.tar"),))
    monkeypatch.setattr(fetch_module, "OFFICIAL_FILES", {file.name: file})
    return file


def test_suspicious_input_is_refused_an_html_page_is_never_kept_as_the_attack_model(
        tmp_path, server, attack_model_table, capsys) -> None:
    server.files = {"/resnet50.pth.tar": b"<!DOCTYPE html><html><body>Service unavailable</body></html>\n"}
    weights = tmp_path / "w"
    assert main(["data", "fetch", "--root", str(tmp_path), "--weights", str(weights), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "resnet50_places365.pth.tar: not a resnet50 Places365 checkpoint: not a PyTorch checkpoint; it is a " \
           "text file (an HTML error page" in err
    assert not any(weights.iterdir())  # neither the file nor its .part

    # Saved by hand (or by an older version): check calls it bad, not "unpinned present"; fetch replaces it.
    (weights / "resnet50_places365.pth.tar").write_bytes(server.files["/resnet50.pth.tar"])
    status = check(tmp_path, weights)[0]
    assert status.state == "bad" and not status.ok
    assert status.detail.startswith("content expected a resnet50 Places365 checkpoint, got not a PyTorch checkpoint")
    # --keep-mismatched keeps re-packed data, never a checkpoint that does not load.
    server.files = {"/resnet50.pth.tar": save_shaped_resnet50(tmp_path / "good.pth.tar").read_bytes()}
    [result] = fetch(tmp_path, weights_dir=weights, progress=False, keep_mismatched=True)
    assert result.action == "downloaded"
    status = check(tmp_path, weights)[0]
    assert status.state == "unpinned" and status.detail == "present, loads as a resnet50 checkpoint, checksum not pinned"


def test_suspicious_input_is_refused_a_checkpoint_of_another_architecture(tmp_path, server, attack_model_table):
    import torchvision

    resnet18 = tmp_path / "r18.pth.tar"
    torch.save({"arch": "resnet18", "state_dict": torchvision.models.resnet18(num_classes=365).state_dict()}, resnet18)
    server.files = {"/resnet50.pth.tar": resnet18.read_bytes()}
    with pytest.raises(ChecksumError, match="not a resnet50 Places365 checkpoint .the file says arch='resnet18'"):
        fetch(tmp_path, weights_dir=tmp_path / "w", progress=False)
    assert not any((tmp_path / "w").iterdir())
