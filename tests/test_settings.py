"""protector.settings: every setting that changes a protected file's bytes, checked once, recorded, read back."""

from __future__ import annotations

import pytest

from protector.settings import ProtectionSettings, check_quality


@pytest.mark.parametrize("quality", [0, 101, 90.5, True, -3])
def test_quality_has_one_rule(quality) -> None:
    with pytest.raises(ValueError, match="quality"):
        check_quality(quality)
    with pytest.raises(ValueError, match="quality"):
        ProtectionSettings(quality=quality)


@pytest.mark.parametrize(("changes", "message"), [
    ({"fmt": "gif"}, "--format"),
    ({"eps": 0.0}, "--eps"),
    ({"eps": 1.5}, "--eps"),
    ({"views": "everything"}, "--views"),
    ({"views_per_step": 0}, "--views-per-step"),
    ({"working_side": 8}, "--working-side"),
    ({"refine_steps": -1}, "--refine-steps"),
    ({"full_size_steps": -1}, "--full-size-steps"),
    ({"extra_steps": -1}, "--extra-steps"),
    ({"refine_loss": "hinge"}, "--refine-loss"),
    ({"refine_loss": "sensitive_safe", "refine_steps": 2}, "--senscats"),
    ({"edit_strength": 0.0}, "--enhance off"),
    ({"tiling": (100, 64, 64, 8)}, "overlap"),
])
def test_out_of_range_settings_are_refused_with_the_flag(changes, message) -> None:
    with pytest.raises(ValueError, match=message):
        ProtectionSettings(**changes)


def test_record_round_trip() -> None:
    settings = ProtectionSettings(quality=75, eps=3 / 255, refine_steps=2, refine_loss="sensitive_safe",
                                  senscats_sha256="ab" * 32, edit_strength=0.5, views="as-is", working_side=None)
    assert ProtectionSettings.from_record(settings.to_record()) == settings


def test_a_record_written_before_views_reads_as_the_file_as_it_is() -> None:
    old = {"format": "jpeg", "fmt": "jpeg", "quality": 80, "refine_steps": 2, "refine_loss": "topk",
           "enhance_strength": 0.0, "tiling": [4194304, 1024, 128, 64], "precision": "32-true", "attack_model": None}
    settings = ProtectionSettings.from_record(old)
    assert settings.views == "as-is" and settings.working_side is None and settings.full_size_steps == 0
    assert settings.quality == 80 and settings.edit_strength is None  # 0.0 was "no edit" there


def test_an_older_records_format_is_read() -> None:
    old = {"format": "png", "quality": 90, "refine_steps": 0, "refine_loss": None, "enhance_strength": None}
    settings = ProtectionSettings.from_record(old)
    assert settings.fmt == "png" and settings.refine_loss == "topk"


def test_the_refine_loss_defaults_to_what_the_views_need() -> None:
    assert ProtectionSettings(views="shared", refine_steps=10).refine_loss == "ce"
    assert ProtectionSettings(views="classifiers", refine_steps=10).refine_loss == "ce"
    assert ProtectionSettings(views="as-is", working_side=None, refine_steps=2).refine_loss == "topk"
    assert ProtectionSettings(views="shared", refine_steps=10, refine_loss="topk").refine_loss == "topk"



def test_a_record_written_before_full_size_steps_reads_as_none_taken() -> None:
    record = ProtectionSettings(views="shared", refine_steps=10).to_record()
    del record["full_size_steps"]
    assert ProtectionSettings.from_record(record).full_size_steps == 0
    assert ProtectionSettings().full_size_steps == 0


def test_extra_steps_default_to_what_the_views_measured_and_need_refine_steps() -> None:
    assert ProtectionSettings(views="classifiers", refine_steps=10).extra_steps == 10
    assert ProtectionSettings(views="shared", refine_steps=10).extra_steps == 0
    assert ProtectionSettings(views="as-is", working_side=None, refine_steps=2).extra_steps == 0
    assert ProtectionSettings(views="as-is", working_side=None, refine_steps=2, extra_steps=3).extra_steps == 3
    assert ProtectionSettings(views="classifiers", refine_steps=0, extra_steps=5).extra_steps == 0
    record = ProtectionSettings(views="classifiers", refine_steps=10).to_record()
    del record["extra_steps"]  # written before extra steps existed: none were taken
    assert ProtectionSettings.from_record(record).extra_steps == 0
