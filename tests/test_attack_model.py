"""protector.attack_model: fetched once into the user cache (from a local server here), then checked every time;
and `protector protect FOLDER` with nothing else."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from test_readme_commands import readme_commands

from protector.attack_model import AttackModelUnavailable, cached_attack_model
from protector.checksums import ChecksumError
from protector.classifiers import CheckpointError

REPO = Path(__file__).resolve().parents[1]


def save_official_resnet50(path: Path) -> Path:
    """A random ResNet50 saved exactly like CSAIL's file: DataParallel keys in an epoch/arch/state_dict dict."""
    torch.manual_seed(0)
    model = torchvision.models.resnet50(num_classes=365)
    state = {"module." + key: value for key, value in model.state_dict().items()}
    torch.save({"epoch": 90, "arch": "resnet50", "state_dict": state, "best_prec1": 54.7}, path,
               _use_new_zipfile_serialization=False)
    return path


@pytest.fixture(autouse=True)
def _online(monkeypatch):
    """These tests download, from the local server only."""
    monkeypatch.delenv("PROTECTOR_OFFLINE", raising=False)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A local HTTP server with the official-format checkpoint and an HTML error page."""
    root = tmp_path_factory.mktemp("www")
    save_official_resnet50(root / "resnet50_places365.pth.tar")
    (root / "error.html").write_text("<!doctype html><html><body>503 Service Unavailable</body></html>")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_first_use_downloads_and_records_then_works_offline(tmp_path, served):
    root, base = served
    path, digest = cached_attack_model(directory=tmp_path, url=f"{base}/resnet50_places365.pth.tar", progress=False)
    assert path == tmp_path / "resnet50_places365.pth.tar"
    assert path.read_bytes() == (root / "resnet50_places365.pth.tar").read_bytes()
    assert (tmp_path / "resnet50_places365.pth.tar.sha256").read_text().split()[0] == digest
    # Offline afterwards: an unreachable URL is never asked.
    again = cached_attack_model(directory=tmp_path, url="http://127.0.0.1:9/nothing", progress=False)
    assert again == (path, digest)


def test_a_file_changed_since_it_was_fetched_is_refused(tmp_path, served):
    _, base = served
    path, _ = cached_attack_model(directory=tmp_path, url=f"{base}/resnet50_places365.pth.tar", progress=False)
    with open(path, "ab") as file:
        file.write(b"tampered")
    with pytest.raises(ChecksumError):
        cached_attack_model(directory=tmp_path, progress=False)


def test_an_html_page_is_not_kept_as_the_attack_model(tmp_path, served):
    _, base = served
    with pytest.raises(CheckpointError):
        cached_attack_model(directory=tmp_path, url=f"{base}/error.html", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_offline_without_the_file_says_what_to_fetch_and_where(tmp_path):
    with pytest.raises(AttackModelUnavailable) as caught:
        cached_attack_model(directory=tmp_path, url="http://127.0.0.1:9/resnet50_places365.pth.tar", progress=False)
    message = str(caught.value)
    assert "http://127.0.0.1:9/resnet50_places365.pth.tar" in message
    assert str(tmp_path / "resnet50_places365.pth.tar") in message and "run the same command again" in message


def test_offline_flag_downloads_nothing(tmp_path, served, monkeypatch):
    _, base = served
    monkeypatch.setenv("PROTECTOR_OFFLINE", "1")
    with pytest.raises(AttackModelUnavailable, match="PROTECTOR_OFFLINE"):
        cached_attack_model(directory=tmp_path, url=f"{base}/resnet50_places365.pth.tar", progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_protect_a_folder_with_nothing_else(tmp_path):
    """A fresh user: the attack model in the cache (a random ResNet50 in the official format), one command."""
    cache = tmp_path / "cache"
    cache.mkdir()
    save_official_resnet50(cache / "resnet50_places365.pth.tar")
    (cache / "categories_places365.txt").write_text("".join(f"/s/scene_{i} {i}\n" for i in range(365)))
    photos = tmp_path / "holiday"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for name in ("beach.jpg", "room.png"):
        Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(photos / name)
    env = {"PROTECTOR_CACHE": str(cache), "PATH": "/usr/bin:/bin"}
    # The README's "Protect your own photos" block, as written, after its `make install`.
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parents[1])
    install, protect_command, evaluate_command = readme_commands("Protect your own photos")
    assert install == "make install"
    assert protect_command == ".venv/bin/protector protect holiday/"
    result = subprocess.run(["bash", "-c", protect_command], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=1200)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "holiday-protected"
    assert sorted(p.name for p in out.glob("*.jpg")) == ["beach.jpg", "room.jpg"]
    assert (tmp_path / "holiday-protected.manifest.csv").is_file()
    for name in ("beach", "room"):
        before = np.asarray(Image.open(photos / f"{name}{'.jpg' if name == 'beach' else '.png'}").convert("RGB"))
        after = np.asarray(Image.open(out / f"{name}.jpg"))
        assert after.shape == before.shape
    assert "Protected 2 photo(s)" in result.stdout and "Removed from every file" in result.stdout
    assert "resized to a common classifier input" in result.stdout
    # ... and checked with the same attack model, again with nothing to name.
    assert "--views" in evaluate_command
    report = subprocess.run(["bash", "-c", evaluate_command], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=1200)
    assert report.returncode == 0, report.stderr
    results = json.loads((tmp_path / "report/results.json").read_text())
    assert [view["view"] for view in results["views"]][:2] == ["as-is", "short-512"]
