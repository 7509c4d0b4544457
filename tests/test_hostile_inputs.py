"""Reliability, round 3: five classes of hostile or mistaken input, each run through the commands.

1. A training config runs no command (only classes of allowed modules are built; search paths need consent).
2. Small file, large cost: bytes and decoded pixels are bounded before anything is read.
3. A refused or interrupted command damages no result (inputs checked first, one run per folder).
4. A user's mistake is one line, never a hang or a traceback (criteria, NIMA weights).
5. Suspicious inputs are refused or flagged (a checkpoint that does not load, a huge budget).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from protector.classifiers import ClassPathError, ExternalClassifier, import_class
from protector.cli import main
from protector.commands.train import run_lightning_cli
from protector.data.criteria import PrivacyCriteriaError, read_privacy_criteria
from protector.export import ProtectorFileError, load_protector, save_protector
from protector.generator import BoundedProtector, UNetGenerator
from protector.images import ImageReadError, read_photo
from protector.limits import MAX_PHOTO_BYTES
from protector.nima import NIMAWeightsError, load_nima
from protector.protect.folder_lock import LOCK_NAME, FolderBusyError, folder_lock
from protector.search_paths import SearchPathError

REPO = Path(__file__).resolve().parents[1]
TERABYTE = 1 << 40


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(stderr: str) -> str:
    """The one `error:` line of a refused command (warnings aside); fails on a traceback."""
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, stderr
    return errors[0]


def tree_digest(*roots: Path) -> dict[str, str]:
    """sha256 of every file under (or at) `roots`: what a refused command must leave as it was."""
    files = [p for root in roots for p in ([root] if root.is_file() else sorted(root.rglob("*"))) if p.is_file()]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def sparse_file(path: Path, size: int = TERABYTE) -> Path:
    """A file that claims `size` bytes and occupies none (a hole): reading it whole would need them all."""
    with open(path, "wb") as file:
        file.truncate(size)
    return path


def photo(width: int = 64, height: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(40, 200, 3)
    pixels = np.stack([base[c] + 40 * np.sin((x * (c + 1) + y) / (9 + 4 * c)) for c in range(3)], axis=2)
    return np.clip(pixels, 0, 255).astype(np.uint8)


TINY_NET = """
import torch
from torch import nn

class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, 365)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))
"""


@pytest.fixture
def protect_case(tmp_path: Path) -> dict[str, Path]:
    """Two photos, a tiny protector file, a tiny classifier's code, an output place."""
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(photo(64, 48, 0)).save(photos / "a.jpg", quality=95)
    Image.fromarray(photo(56, 40, 1)).save(photos / "b.png")
    torch.manual_seed(0)
    protector = save_protector(tmp_path / "run" / "protector.pt",
                               BoundedProtector(UNetGenerator(base_channels=8, depth=2), 4 / 255))
    models = tmp_path / "models"
    models.mkdir()
    (models / "tiny_hostile_net.py").write_text(TINY_NET)
    return {"photos": photos, "protector": protector, "models": models, "out": tmp_path / "out",
            "manifest": tmp_path / "out.manifest.csv", "tmp": tmp_path}


def protect_args(case: dict[str, Path], *extra: str) -> list[str]:
    return ["protect", "--protector", str(case["protector"]), "--input", str(case["photos"]),
            "--output", str(case["out"]), "--num-workers", "0", "--no-progress", *extra]


ZIPPED = ("--run-code", "team_run", "--zip")


# --------------------------------------------------------------------------- 1. configs run no command


@pytest.fixture
def marker(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "path", list(sys.path))
    # The real stand-in imported by an earlier test would answer the import instead of the planted one.
    monkeypatch.delitem(sys.modules, "squeezenet_places", raising=False)
    yield tmp_path / "command-ran.marker"
    for name, module in list(sys.modules.items()):  # a planted module imported with consent goes
        if str(tmp_path) in str(getattr(module, "__file__", "") or ""):
            del sys.modules[name]


def _planted_folder(tmp_path: Path, marker: Path) -> Path:
    """A folder holding a module with the stand-in's allowed name that runs a command on import."""
    folder = tmp_path / "planted"
    folder.mkdir()
    (folder / "squeezenet_places.py").write_text(textwrap.dedent(f"""
        open({str(marker)!r}, "w").write("code ran")
        from torch import nn
        class StandinPlaces365(nn.Module):
            pass
    """))
    return folder


CALL = "pytorch_lightning.trainer.connectors.signal_connector.call"  # that is subprocess.call


@pytest.mark.parametrize("how", ["config file", "flag value", "nested config file", "value naming a .txt config"])
def test_config_cannot_run_commands_through_a_function_under_an_allowed_name(shared, marker, tmp_path, capsys,
                                                                            how) -> None:
    shared.path("standin/squeezenet_places.py")  # configs/debug.yaml's stand-in: skip without ../shared outside CI
    classifier = (f"class_path: protector.classifiers.ExternalClassifier\ninit_args:\n  class_path: {CALL}\n"
                  f"  init_args: {{args: [touch, {marker}]}}\n")
    (tmp_path / "classifier.txt").write_text(classifier)
    (tmp_path / "classifier.yaml").write_text(classifier)
    (tmp_path / "outer.yaml").write_text(f"model:\n  classifier: {tmp_path / 'classifier.yaml'}\n")
    (tmp_path / "evil.yaml").write_text("model:\n  classifier:\n" + textwrap.indent(classifier, "    "))
    extra = {
        "config file": ["--config", str(tmp_path / "evil.yaml")],
        "flag value": ["--model.classifier.init_args.class_path", CALL],
        "nested config file": ["--config", str(tmp_path / "outer.yaml")],
        "value naming a .txt config": ["--model.classifier", str(tmp_path / "classifier.txt")],
    }[how]
    code = run_lightning_cli(["fit", "--config", "configs/debug.yaml", *extra, "--trainer.logger=false",
                              "--trainer.default_root_dir", str(tmp_path / "run")])
    assert code != 0
    assert not marker.exists()  # subprocess.call never ran
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "is a function from subprocess, not a class" in err or "'subprocess.call' is not allowed" in err


@pytest.mark.parametrize("how", ["config file", "nested config file", "flag value"])
def test_config_cannot_run_commands_through_a_planted_search_path(marker, tmp_path, capsys, how) -> None:
    planted = _planted_folder(tmp_path, marker)
    classifier = (f"class_path: protector.classifiers.ExternalClassifier\ninit_args:\n"
                  f"  class_path: squeezenet_places.StandinPlaces365\n  search_path: {planted}\n")
    (tmp_path / "classifier.yaml").write_text(classifier)
    (tmp_path / "outer.yaml").write_text(f"model:\n  classifier: {tmp_path / 'classifier.yaml'}\n")
    (tmp_path / "evil.yaml").write_text("model:\n  classifier:\n" + textwrap.indent(classifier, "    "))
    extra = {
        "config file": ["--config", str(tmp_path / "evil.yaml")],
        "nested config file": ["--config", str(tmp_path / "outer.yaml")],
        "flag value": ["--model.classifier.init_args.search_path", str(planted)],
    }[how]
    code = run_lightning_cli(["fit", "--config", "configs/debug.yaml", *extra, "--trainer.logger=false",
                              "--trainer.default_root_dir", str(tmp_path / "run")])
    assert code == 1
    assert not marker.exists()
    line = one_error_line(capsys.readouterr().err)
    assert f"search_path {planted}" in line and f"--allow-search-path {planted}" in line


def test_config_cannot_run_commands_a_search_path_is_used_only_with_consent(marker, tmp_path) -> None:
    planted = _planted_folder(tmp_path, marker)
    with pytest.raises(SearchPathError, match="--allow-search-path"):
        ExternalClassifier("squeezenet_places.StandinPlaces365", search_path=str(planted))
    assert not marker.exists()
    from protector.search_paths import allow_search_paths

    with allow_search_paths([planted]):  # what --allow-search-path / --classifier-path do
        ExternalClassifier("squeezenet_places.StandinPlaces365", search_path=str(planted))
    assert marker.exists()
    # Only for the import: left first on sys.path, the folder would shadow every later import.
    assert str(planted.resolve()) not in sys.path


def test_config_cannot_run_commands_external_classifier_checks_before_calling(marker, tmp_path) -> None:
    with pytest.raises(ClassPathError, match="is a function from subprocess, not a class"):
        ExternalClassifier(CALL, init_args={"args": ["touch", str(marker)]})
    assert not marker.exists()
    with pytest.raises(ClassPathError, match="is a function from torchvision.models.resnet, not a class"):
        ExternalClassifier("torchvision.models.resnet18")
    (tmp_path / "origin_mod.py").write_text("from torch import nn\nclass Net(nn.Module):\n    pass\n")
    (tmp_path / "reexport_mod.py").write_text("from origin_mod import Net\n")
    with pytest.raises(ClassPathError, match="re-exported from another module"):
        import_class("reexport_mod.Net", tmp_path)


def test_config_cannot_run_commands_a_re_export_counts_only_from_an_allowed_library(marker) -> None:
    from protector.config_guard import ConfigClassError, check_class_paths

    # torchmetrics.Metric (an nn.Module) as pytorch_lightning.core.module imports it: not an allowed library.
    with pytest.raises(ConfigClassError, match="is torchmetrics.metric.Metric, re-exported from another module"):
        check_class_paths(["fit", "--model.generator", "pytorch_lightning.core.module.Metric"])
    # pytorch_lightning's own re-exports of lightning_fabric are fine.
    check_class_paths(["fit", "--trainer.plugins=pytorch_lightning.plugins.environments.LightningEnvironment",
                       "--trainer.logger", "pytorch_lightning.loggers.CSVLogger"])


def test_config_cannot_run_commands_shipped_configs_still_parse(shared, marker, tmp_path) -> None:
    cli = run_lightning_cli(["fit", "--config", "configs/debug.yaml", "--trainer.logger=false", "--print_config"])
    assert cli == 0


# --------------------------------------------------------------------------- 2. small file, large cost


def test_small_file_large_cost_a_terabyte_sparse_photo_fails_alone(protect_case, capsys) -> None:
    sparse_file(protect_case["photos"] / "huge.jpg")
    code, out, err = run_main(capsys, *protect_args(protect_case))
    assert code == 1 and "Traceback" not in err
    assert "huge.jpg: 1.0 TiB is more than any photo this command reads (1.0 GiB at most); not read" in out
    written = sorted(p.name for p in protect_case["out"].iterdir())
    assert written == ["a.jpg", "b.jpg", "protect-run.json"]  # the good photos beside it are written
    assert protect_case["manifest"].is_file()


def test_small_file_large_cost_a_few_kb_photo_claiming_64_megapixels_fails_alone(protect_case, capsys) -> None:
    Image.new("RGB", (8000, 8000), (90, 120, 200)).save(protect_case["photos"] / "flat.webp", lossless=True)
    assert (protect_case["photos"] / "flat.webp").stat().st_size < 4096
    code, out, err = run_main(capsys, *protect_args(protect_case))
    assert code == 1 and "Traceback" not in err
    assert "flat.webp: claims 8000x8000 = 64,000,000 pixels from a file of" in out
    assert sorted(p.name for p in protect_case["out"].glob("*.jpg")) == ["a.jpg", "b.jpg"]


def test_small_file_large_cost_plausible_photos_are_still_read(tmp_path) -> None:
    # A one-colour RGB PNG holds 284 pixels a byte: accepted at any size.
    path = tmp_path / "flat.png"
    Image.new("RGB", (4000, 4000), (10, 20, 30)).save(path)
    assert read_photo(path).pixels.shape == (4000, 4000, 3)
    # Up to 4 MP (one pass, no tiles) any ratio is accepted: a 2048x2048 WebP of a few hundred bytes.
    small = tmp_path / "flat.webp"
    Image.new("RGB", (2048, 2048), (10, 20, 30)).save(small, lossless=True)
    assert small.stat().st_size < 1024
    assert read_photo(small).pixels.shape == (2048, 2048, 3)
    big = tmp_path / "flat4096.webp"
    Image.new("RGB", (4096, 4096), (10, 20, 30)).save(big, lossless=True)
    with pytest.raises(ImageReadError, match="claims 4096x4096 = 16,777,216 pixels"):
        read_photo(big)


@pytest.mark.parametrize("what", ["list", "protector", "classifier checkpoint", "nima", "criteria", "zip"])
def test_small_file_large_cost_every_handed_file_is_bounded_before_it_is_read(protect_case, capsys, what) -> None:
    huge = sparse_file(protect_case["tmp"] / {"zip": "team_run.zip"}.get(what, "huge.bin"))
    before = tree_digest(protect_case["photos"])
    if what == "criteria":
        with pytest.raises(PrivacyCriteriaError, match="is more than any criteria file"):
            read_privacy_criteria(huge)
        return
    if what == "nima":
        with pytest.raises(NIMAWeightsError, match="is more than any NIMA weights file"):
            load_nima(huge)
        return
    argv = {
        "list": ["protect", "--protector", str(protect_case["protector"]), "--list", str(huge), "--images",
                 str(protect_case["photos"]), "--output", str(protect_case["out"])],
        "protector": ["protect", "--protector", str(huge), "--input", str(protect_case["photos"]),
                      "--output", str(protect_case["out"])],
        "classifier checkpoint": protect_args(protect_case, "--classifier", "resnet50", "--classifier-checkpoint",
                                              str(huge), "--allow-unpinned"),
        "zip": ["submission", "check", str(huge), "--list", str(protect_case["tmp"] / "list.txt")],
    }[what]
    (protect_case["tmp"] / "list.txt").write_text("a.jpg\n")
    code, _, err = run_main(capsys, *argv)
    assert code == 2
    line = one_error_line(err)
    assert str(huge) in line and "1.0 TiB is more than any" in line
    assert not protect_case["out"].exists()
    assert tree_digest(protect_case["photos"]) == before


def test_small_file_large_cost_a_huge_run_record_is_refused_not_read(protect_case, capsys) -> None:
    protect_case["out"].mkdir()
    sparse_file(protect_case["out"] / "protect-run.json")
    code, _, err = run_main(capsys, *protect_args(protect_case))
    assert code == 2
    line = one_error_line(err)
    assert "protect-run.json cannot be read as a run record" in line and "1.0 TiB is more than any run record" in line
    assert sorted(p.name for p in protect_case["out"].iterdir()) == ["protect-run.json"]


@pytest.mark.parametrize("kind", ["sparse terabyte", "FIFO"])
def test_small_file_large_cost_a_resume_checkpoint_is_measured_before_lightning_reads_it(shared, marker, tmp_path,
                                                                                         capsys, kind) -> None:
    ckpt = tmp_path / "last.ckpt"
    sparse_file(ckpt) if kind == "sparse terabyte" else os.mkfifo(ckpt)
    code = run_lightning_cli(["fit", "--config", "configs/debug.yaml", "--trainer.logger=false", "--ckpt_path",
                              str(ckpt), "--trainer.default_root_dir", str(tmp_path / "run")])
    assert code == 1
    line = one_error_line(capsys.readouterr().err)
    assert str(ckpt) in line
    assert ("1.0 TiB is more than any checkpoint" if kind == "sparse terabyte" else "is a FIFO") in line


def test_small_file_large_cost_the_photo_bound_is_the_documented_one() -> None:
    assert MAX_PHOTO_BYTES == 1 << 30


# --------------------------------------------------------------------------- 3. nothing damaged by a refusal


@pytest.fixture
def finished_run(protect_case, capsys) -> dict[str, Path]:
    code, _, _ = run_main(capsys, *protect_args(protect_case, *ZIPPED))
    assert code == 0 and (protect_case["out"] / "team_run.zip").is_file()
    return protect_case


def _unchanged(case: dict[str, Path]) -> dict[str, str]:
    return tree_digest(case["out"], case["manifest"])


@pytest.mark.parametrize("bad", ["nima weights are an HTML page", "empty senscats", "nima weights are a FIFO",
                                 "eps 1.0 protector", "a missing classifier checkpoint"])
def test_refused_command_keeps_results_a_rerun_refused_for_an_input_touches_nothing(finished_run, capsys,
                                                                                 bad) -> None:
    case = finished_run
    before = _unchanged(case)
    html = case["tmp"] / "nima.hdf5"
    html.write_text("<!DOCTYPE html><html><body>404</body></html>")
    empty = case["tmp"] / "senscats.txt"
    empty.write_text("")
    fifo = case["tmp"] / "nima-fifo.hdf5"
    os.mkfifo(fifo)
    big = case["tmp"] / "big.pt"
    save_protector(big, BoundedProtector(UNetGenerator(base_channels=8, depth=2), 1.0))
    classify = ("--classifier", "tiny_hostile_net.TinyNet", "--classifier-path", str(case["models"]))
    extra = {
        "nima weights are an HTML page": ("--nima", str(html)),
        "empty senscats": (*classify, "--refine-steps", "1", "--refine-loss", "sensitive_safe",
                           "--senscats", str(empty)),
        "nima weights are a FIFO": ("--nima", str(fifo)),
        "eps 1.0 protector": ("--protector", str(big)),
        "a missing classifier checkpoint": ("--classifier", "resnet50", "--classifier-checkpoint",
                                            str(case["tmp"] / "missing.pth.tar"), "--allow-unpinned"),
    }[bad]
    code, _, err = run_main(capsys, *protect_args(case, *ZIPPED, *extra))
    assert code == 2
    one_error_line(err)
    assert _unchanged(case) == before  # the zip, the manifest, the record and the photos as they were


def test_refused_command_keeps_results_a_second_run_into_a_busy_folder_refuses(finished_run, capsys) -> None:
    case = finished_run
    before = _unchanged(case)
    with folder_lock(case["out"]):  # another run holds the folder
        code, _, err = run_main(capsys, *protect_args(case, *ZIPPED, "--overwrite"))
    assert code == 2
    line = one_error_line(err)
    assert f"another protect run (pid {os.getpid()} on " in line and "choose another --output folder" in line
    assert _unchanged(case) == before
    # Released, the next run goes through; no lock file is left in the folder to publish.
    code, out, _ = run_main(capsys, *protect_args(case, *ZIPPED))
    assert code == 0 and "skipped (already there): 2" in out
    assert not (case["out"] / LOCK_NAME).exists()


def test_refused_command_keeps_results_a_killed_run_does_not_hold_the_folder(tmp_path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from protector.protect.folder_lock import folder_lock\n"
         f"with folder_lock({str(folder)!r}):\n    print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(FolderBusyError, match=f"pid {holder.pid} on"):
            with folder_lock(folder):
                pass
    finally:
        holder.kill()  # SIGKILL: no clean-up runs
        holder.wait()
    with folder_lock(folder):  # the kernel dropped the dead run's lock
        pass


def test_refused_command_keeps_results_a_report_is_replaced_whole_or_not_at_all(finished_run, capsys,
                                                                               monkeypatch) -> None:
    case = finished_run
    report = case["tmp"] / "report"
    argv = ("evaluate", "--protected", str(case["out"]), "--original", str(case["photos"]), "--classifier",
            "tiny_hostile_net.TinyNet", "--classifier-path", str(case["models"]), "--out", str(report),
            "--device", "cpu", "--gallery", "2", "--run-code", "team_run")
    code, _, err = run_main(capsys, *argv)
    assert code == 0, err
    (report / "results.json").write_text('{"an": "earlier report"}')  # told apart from any new one
    before = tree_digest(report)
    assert {"results.json", "summary.md", "report.html"} <= {Path(p).name for p in before}
    import protector.images as images_module

    real = images_module._write_temporary

    def full_at_the_summary(folder, name, data):  # the disk fills after results.json and the plots
        if name == "summary.md":
            raise OSError(28, "No space left on device")
        return real(folder, name, data)

    monkeypatch.setattr(images_module, "_write_temporary", full_at_the_summary)
    code, _, err = run_main(capsys, *argv)
    assert code == 2 and "cannot be written (No space left on device" in one_error_line(err)
    assert tree_digest(report) == before  # the earlier results.json is not paired with a half-new report
    assert sorted(p.name for p in report.iterdir() if p.name.startswith(".")) == []
    monkeypatch.undo()
    code, _, _ = run_main(capsys, *argv)
    assert code == 0 and (report / "summary.md").is_file()


# --------------------------------------------------------------------------- 4. a mistake is one line


@pytest.mark.parametrize("kind", ["FIFO", "folder"])
def test_user_mistake_is_one_line_criteria_that_is_a_fifo_or_a_folder(tmp_path, kind) -> None:
    path = tmp_path / "criteria.csv"
    os.mkfifo(path) if kind == "FIFO" else path.mkdir()
    with pytest.raises(PrivacyCriteriaError, match=f"is a {'FIFO' if kind == 'FIFO' else 'directory'}, not a "
                                                   "regular file; give a criteria file"):
        read_privacy_criteria(path)  # returns at once: a FIFO is opened without blocking


@pytest.mark.parametrize("kind", ["FIFO", "folder", "unreadable"])
def test_user_mistake_is_one_line_nima_weights_that_cannot_be_read(tmp_path, monkeypatch, kind) -> None:
    path = tmp_path / "weights.hdf5"
    if kind == "FIFO":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    else:
        path.write_bytes(b"\x89HDF\r\n\x1a\n")

        def failing_read(*args, **kwargs):
            raise OSError(5, "Input/output error")

        monkeypatch.setattr("protector.nima.sha256_file", failing_read)
    expected = {"FIFO": "is a FIFO, not a regular file", "folder": "is a directory, not a regular file",
                "unreadable": "NIMA weights cannot be read (Input/output error)"}[kind]
    with pytest.raises(NIMAWeightsError, match=re.escape(expected)):
        load_nima(path)


def test_user_mistake_is_one_line_evaluate_criteria_fifo(protect_case, capsys) -> None:
    fifo = protect_case["tmp"] / "criteria.csv"
    os.mkfifo(fifo)
    senscats = protect_case["tmp"] / "senscats.txt"
    senscats.write_text("/b/bedroom 52\n")
    code, _, err = run_main(capsys, "evaluate", "--protected", str(protect_case["photos"]), "--original",
                            str(protect_case["photos"]), "--classifier", "tiny_hostile_net.TinyNet",
                            "--classifier-path", str(protect_case["models"]), "--senscats", str(senscats),
                            "--criteria", str(fifo), "--out", str(protect_case["tmp"] / "report"), "--device", "cpu")
    assert code == 2
    assert "criteria.csv: is a FIFO, not a regular file" in one_error_line(err)


# --------------------------------------------------------------------------- 5. suspicious inputs


def test_suspicious_input_is_refused_a_protector_with_a_huge_budget(protect_case, capsys) -> None:
    big = save_protector(protect_case["tmp"] / "big.pt", BoundedProtector(UNetGenerator(base_channels=8, depth=2), 1.0))
    code, _, err = run_main(capsys, *protect_args(protect_case, "--protector", str(big)))
    assert code == 2
    line = one_error_line(err)
    assert "its budget eps = 1 (255/255 is far above the largest budget measured (8/255" in line
    assert "--allow-large-eps" in line
    assert not protect_case["out"].exists()
    code, out, _ = run_main(capsys, *protect_args(protect_case, "--protector", str(big), "--allow-large-eps"))
    assert code == 0
    assert "budget: WARNING 255/255 is far above the largest budget measured" in out


def test_suspicious_input_is_refused_budgets_up_to_twice_the_measured_are_accepted(protect_case, capsys) -> None:
    edge = save_protector(protect_case["tmp"] / "edge.pt",
                          BoundedProtector(UNetGenerator(base_channels=8, depth=2), 16 / 255))
    code, out, _ = run_main(capsys, *protect_args(protect_case, "--protector", str(edge)))
    assert code == 0 and "WARNING" not in out
    assert load_protector(edge).eps == pytest.approx(16 / 255)


def test_suspicious_input_is_refused_a_protector_file_that_is_a_folder(tmp_path) -> None:
    with pytest.raises(ProtectorFileError, match="is a directory, not a regular file"):
        load_protector(tmp_path)


def test_suspicious_input_is_refused_a_photo_that_is_a_sparse_terabyte(tmp_path) -> None:
    with pytest.raises(ImageReadError, match="1.0 TiB is more than any photo"):
        read_photo(sparse_file(tmp_path / "x.jpg"))
