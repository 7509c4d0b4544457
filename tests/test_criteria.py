"""protector.data.criteria: the packaged mapping of the sensitive categories to the ten criteria."""

from __future__ import annotations

import pytest

from protector.data.criteria import (
    CRITERIA,
    PrivacyCriteriaError,
    SensitiveCategory,
    criteria_of_senscats,
    read_privacy_criteria,
)
from protector.data.lists import read_senscats


def test_packaged_mapping_covers_exactly_the_60_sensitive_categories(shared) -> None:
    senscats = read_senscats(shared.path("data/mepp/MEPP18senscats.txt"))
    mapping = read_privacy_criteria()
    assert len(senscats) == 60
    assert {index: category.name for index, category in mapping.items()} == senscats
    assert criteria_of_senscats(senscats, mapping)[52] == ("home", "no_street_clothes")


def test_every_criterion_has_a_category_and_the_header_says_whose_judgement() -> None:
    mapping = read_privacy_criteria()
    assert len(mapping) == 60
    assert {c for category in mapping.values() for c in category.criteria} == set(CRITERIA)
    assert mapping[18] == SensitiveCategory("/a/army_base", 18, ("military", "security"))
    from importlib import resources

    header = (resources.files("protector.data") / "privacy_criteria.csv").read_text(encoding="utf-8")
    assert "own judgement" in header and "not the organizers'" in header


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("/b/bedroom,52,home\n", "first line that is not a comment"),
        ("category,index,criteria\n/b/bedroom,52\n", ":2: expected category,index,criteria"),
        ("category,index,criteria\n/b/bedroom,x,home\n", "index 'x'"),
        ("category,index,criteria\n/b/bedroom,52,home;pets\n", "one or more of home"),
        ("category,index,criteria\n/b/bedroom,52,\n", "one or more of home"),
        ("category,index,criteria\n/b/bedroom,52,home;home\n", "given twice"),
        ("category,index,criteria\n/b/bedroom,52,home\n/b/bedroom,53,home\n", "given twice"),
        ("# only a comment\ncategory,index,criteria\n", "no categories"),
    ],
)
def test_malformed_files_name_file_line_and_cause(tmp_path, body, message) -> None:
    path = tmp_path / "criteria.csv"
    path.write_text(body)
    with pytest.raises(PrivacyCriteriaError, match=message) as err:
        read_privacy_criteria(path)
    assert str(path) in str(err.value)


def test_missing_file_is_named(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_privacy_criteria(tmp_path / "nope.csv")


def test_senscats_must_be_covered_with_the_same_index(tmp_path) -> None:
    path = tmp_path / "criteria.csv"
    path.write_text("\ufeffcategory,index,criteria\n/b/bedroom,52,home\n/b/bar,39,alcohol\n")
    mapping = read_privacy_criteria(path)
    assert criteria_of_senscats({52: "/b/bedroom"}, mapping) == {52: ("home",)}  # extra rows are ignored
    with pytest.raises(PrivacyCriteriaError, match="/b/beach.*--criteria"):
        criteria_of_senscats({52: "/b/bedroom", 48: "/b/beach"}, mapping)
    with pytest.raises(PrivacyCriteriaError, match="/b/bedroom is 7 in the senscats list but 52"):
        criteria_of_senscats({7: "/b/bedroom"}, mapping)
