"""Configs are code: a training config may only name the project's classes unless the user allows more."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from protector.commands.train import run_lightning_cli
from protector.config_guard import ConfigClassError, check_class_paths, split_allowances

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))


@pytest.fixture
def planted_module(tmp_path, monkeypatch) -> Path:
    """An importable module that leaves a marker file when it is imported (a stand-in for a command)."""
    marker = tmp_path / "imported.marker"
    (tmp_path / "planted_mod.py").write_text(textwrap.dedent(f"""
        from pathlib import Path
        from torch import nn
        Path({str(marker)!r}).write_text("code ran")

        class Planted(nn.Module):
            def __init__(self):
                super().__init__()
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(REPO)
    return marker


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_passes(config) -> None:
    check_class_paths(["fit", "--config", str(config)])


def test_ordinary_values_are_not_class_paths() -> None:
    check_class_paths(["fit", "--classifier-checkpoint", "resnet50_places365.pth.tar", "--model.eps", "0.0078",
                       "--checkpoint.save_top_k", "-1", "--data.images=data/val_256.tar", "--model.loss", "relativistic",
                       "--trainer.logger", "pytorch_lightning.loggers.CSVLogger"])


@pytest.mark.parametrize("how", ["config file", "inline yaml", "bare value", "flag=value", "nested class_path"])
def test_a_foreign_class_is_refused_before_it_is_imported(planted_module, tmp_path, capsys, how) -> None:
    config = tmp_path / "evil.yaml"
    config.write_text("model:\n  generator:\n    class_path: planted_mod.Planted\n")
    nested = tmp_path / "nested.yaml"
    nested.write_text("model:\n  classifier:\n    class_path: protector.classifiers.ExternalClassifier\n"
                      "    init_args:\n      class_path: planted_mod.Planted\n")
    extra = {
        "config file": ["--config", str(config)],
        "inline yaml": ["--model.generator", '{"class_path": "planted_mod.Planted"}'],
        "bare value": ["--model.generator", "planted_mod.Planted"],
        "flag=value": ["--model.generator=planted_mod.Planted"],
        "nested class_path": ["--config", str(nested)],
    }[how]
    assert run_lightning_cli(["fit", "--config", "configs/debug.yaml", *extra, "--trainer.logger=false"]) == 1
    error = capsys.readouterr().err
    assert "'planted_mod.Planted' is outside the project's modules" in error
    assert "--allow-class-path planted_mod" in error
    assert not planted_module.exists()  # refused before anything was imported


def test_the_user_can_allow_a_module_on_the_command_line(planted_module, tmp_path) -> None:
    config = tmp_path / "mine.yaml"
    config.write_text("model:\n  generator:\n    class_path: planted_mod.Planted\n")
    given, allowed = split_allowances(["fit", "--config", str(config), "--allow-class-path", "planted_mod"])
    assert given == ["fit", "--config", str(config)] and allowed == ("planted_mod",)
    check_class_paths(given, allowed)
    # A config cannot allow itself: the allowance is read from the command line only.
    config.write_text("allow-class-path: planted_mod\nmodel:\n  generator:\n    class_path: planted_mod.Planted\n")
    with pytest.raises(ConfigClassError):
        check_class_paths(["fit", "--config", str(config)])
    config.write_text("model:\n  generator:\n    class_path: planted_mod.Planted\n")
    run_lightning_cli(["fit", "--config", str(config), "--allow-class-path=planted_mod", "--print_config"])
    assert planted_module.exists()  # allowed, so LightningCLI imported it
