"""List parsers: the real MEPP files with their quirks, generated edge cases, random input."""

from __future__ import annotations

import os

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protector.data.lists import (
    ListEntry,
    ListFormatError,
    ParsedList,
    read_categories,
    read_image_list,
    read_labels_table,
    read_mepp_list,
    read_places365_val,
    read_senscats,
)

MEPP_COUNTS = {
    "MEPP18val.csv": (3000, True),
    "MEPP18test.csv": (3000, False),
    "MEPP18test_manual.csv": (60, False),
    "MEPP19test.csv": (600, False),
    "MEPP19test_manual.csv": (60, True),
}


def write(tmp_path: Path, name: str, data: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


# ------------------------------------------------------------------ real files


@pytest.mark.parametrize("filename", sorted(MEPP_COUNTS))
def test_real_mepp_lists(shared, filename):
    path = shared.path(f"data/mepp/{filename}")
    count, labelled = MEPP_COUNTS[filename]
    entries = read_mepp_list(path)
    assert len(entries) == count
    assert len({e.name for e in entries}) == count
    assert all(e.name.startswith("Places365_val_") and e.name.endswith(".jpg") for e in entries)
    if labelled:
        assert all(e.label is not None and 0 <= e.label < 365 for e in entries)
    else:
        assert all(e.label is None for e in entries)
    assert read_image_list(path) == entries  # the sniffer picks the MEPP format


def test_real_mepp18val_first_line_and_class_balance(shared):
    entries = read_mepp_list(shared.path("data/mepp/MEPP18val.csv"))
    assert entries[0] == ListEntry("Places365_val_00000013.jpg", 49)
    per_class: dict[int, int] = {}
    for entry in entries:
        per_class[entry.label] = per_class.get(entry.label, 0) + 1
    assert len(per_class) == 60 and set(per_class.values()) == {50}


def test_real_mepp19_manual_is_a_labelled_subset_of_mepp19test(shared):
    test = {e.name for e in read_mepp_list(shared.path("data/mepp/MEPP19test.csv"))}
    manual = read_mepp_list(shared.path("data/mepp/MEPP19test_manual.csv"))
    assert manual[0] == ListEntry("Places365_val_00015483.jpg", 230)
    assert {e.name for e in manual} <= test
    senscats = read_senscats(shared.path("data/mepp/MEPP18senscats.txt"))
    assert {e.label for e in manual} == set(senscats)


def test_real_senscats(shared):
    senscats = read_senscats(shared.path("data/mepp/MEPP18senscats.txt"))
    assert len(senscats) == 60
    assert senscats[52] == "/b/bedroom"
    assert senscats[1] == "/a/airplane_cabin"  # first line: after the BOM, before a trailing space
    assert senscats[48] == "/b/beach"  # trailing space
    assert all(0 <= i < 365 and name.startswith("/") and name == name.strip() for i, name in senscats.items())


def test_real_categories_agree_with_senscats(shared):
    categories = read_categories(shared.path("standin/categories_places365.txt"))
    assert len(categories) == 365
    assert categories[0] == "/a/airfield" and categories[364] == "/z/zen_garden"
    for index, name in read_senscats(shared.path("data/mepp/MEPP18senscats.txt")).items():
        assert categories[index] == name


def test_real_standin_table(shared):
    entries = read_labels_table(shared.path("standin/images.tsv"))
    assert len(entries) == 1404
    assert entries[0] == ListEntry("bsds500_100075.jpg", None)  # -1 = unknown
    known = [e for e in entries if e.label is not None]
    assert len(known) == 1404 - 424
    assert all(0 <= e.label < 365 for e in known)
    assert read_image_list(shared.path("standin/images.tsv")) == entries
    on_disk = {p.name for p in shared.path("standin/images").iterdir()}
    assert {e.name for e in entries} <= on_disk


# ------------------------------------------------------------ generated cases


def test_bom_crlf_quotes_blank_lines_and_spaces(tmp_path):
    path = write(tmp_path, "l.csv", '\ufeff"a.jpg","3"\r\n\r\n  "sub/b.jpg" , "12" \r\n\n"c.jpg",""\r\n')
    assert read_mepp_list(path) == [ListEntry("a.jpg", 3), ListEntry("sub/b.jpg", 12), ListEntry("c.jpg", None)]


def test_old_mac_line_ends(tmp_path):
    path = write(tmp_path, "l.csv", "a.jpg,1\rb.jpg,2\r")
    assert read_image_list(path) == [ListEntry("a.jpg", 1), ListEntry("b.jpg", 2)]


def test_names_are_normalized(tmp_path):
    path = write(tmp_path, "l.csv", "./x//a.jpg\nsub\\b.jpg\n")
    assert read_mepp_list(path) == [ListEntry("x/a.jpg", None), ListEntry("sub/b.jpg", None)]


def test_places365_val_and_sniffing(tmp_path):
    path = write(tmp_path, "places365_val.txt", "Places365_val_00000001.jpg 165\r\nPlaces365_val_00000002.jpg   358 \n")
    assert read_places365_val(path) == {"Places365_val_00000001.jpg": 165, "Places365_val_00000002.jpg": 358}
    assert read_image_list(path) == [
        ListEntry("Places365_val_00000001.jpg", 165),
        ListEntry("Places365_val_00000002.jpg", 358),
    ]


def test_csv_table_with_extra_columns_and_any_case_header(tmp_path):
    path = write(tmp_path, "t.csv", '\ufeffNote, FILE ,Label\r\nx,"a, b.jpg",7\r\ny,c.jpg,-1\r\nz,d.jpg,\r\n')
    expected = [ListEntry("a, b.jpg", 7), ListEntry("c.jpg", None), ListEntry("d.jpg", None)]
    assert read_labels_table(path) == expected
    assert read_image_list(path) == expected


def test_table_without_label_column(tmp_path):
    path = write(tmp_path, "t.tsv", "file\tsource\na.jpg\tcam\n")
    assert read_image_list(path) == [ListEntry("a.jpg", None)]


@pytest.mark.parametrize(
    "text, line_no, words",
    [
        ('"a.jpg","1"\n"b.jpg","x"\n', 2, "label 'x'"),
        ('"a.jpg","1"\n"b.jpg","-2"\n', 2, "label '-2'"),
        ('"a.jpg","1"\n"b.jpg","1.0"\n', 2, "label '1.0'"),
        ('"a.jpg","1"\n"b.jpg"\n', 2, "expected 2 field"),
        ('"a.jpg"\n"b.jpg","3"\n', 2, "expected 1 field"),
        ('a.jpg,1\n\nb.jpg,2\na.jpg,3\n', 4, "duplicate name 'a.jpg' (first on line 1)"),
        ('a.jpg,1\n./a.jpg,1\n', 2, "duplicate"),
        ('"a.jpg,1\n', 1, "unbalanced quotes"),
        ('a.jpg,1\n"b.jpg,1\n', 2, "cannot parse the line (unbalanced quotes)"),
        ("a.jpg,1,2\n", 1, "expected 'name' or 'name,label'"),
    ],
)
def test_malformed_mepp_lines_name_file_and_line(tmp_path, text, line_no, words):
    path = write(tmp_path, "bad.csv", text)
    with pytest.raises(ListFormatError) as info:
        read_image_list(path)
    assert f"bad.csv:{line_no}:" in str(info.value)
    assert words in str(info.value)


@pytest.mark.parametrize("name", ["../../x.jpg", "/etc/passwd", "a/../../b.jpg", "C:\\x.jpg", "..", "\\\\host\\x.jpg"])
def test_escaping_names_rejected(tmp_path, name):
    path = write(tmp_path, "l.tsv", f"file\tlabel\nok.jpg\t1\n{name}\t2\n")
    with pytest.raises(ListFormatError, match=r"l\.tsv:3:"):
        read_image_list(path)
    lenient = read_image_list(path, strict=False)
    assert isinstance(lenient, ParsedList)
    assert lenient.entries == [ListEntry("ok.jpg", 1)]
    assert [(r.line_no, r.raw) for r in lenient.rejected] == [(3, f"{name}\t2")]


def test_lenient_parse_keeps_going(tmp_path):
    path = write(tmp_path, "l.csv", 'a.jpg,1\n../b.jpg,2\nc.jpg,x\na.jpg,1\nd.jpg,4\nonly\n"e.jpg,5\nf.jpg,6\n')
    parsed = read_image_list(path, strict=False)
    assert parsed.entries == [ListEntry("a.jpg", 1), ListEntry("d.jpg", 4), ListEntry("f.jpg", 6)]
    reasons = {r.line_no: r.reason for r in parsed.rejected}
    assert set(reasons) == {2, 3, 4, 6, 7}
    assert "'..'" in reasons[2] and "label 'x'" in reasons[3]
    assert "duplicate" in reasons[4] and "expected 2 field" in reasons[6]
    assert "unbalanced quotes" in reasons[7]


def test_file_level_problems(tmp_path):
    with pytest.raises(ListFormatError, match="not UTF-8"):
        read_image_list(write(tmp_path, "latin1.csv", "caf\xe9.jpg\n".encode("latin-1")))
    with pytest.raises(ListFormatError, match="empty list"):
        read_image_list(write(tmp_path, "empty.csv", "\ufeff\r\n \n"))
    with pytest.raises(ListFormatError, match="category list"):
        read_image_list(write(tmp_path, "cats.txt", "/a/airfield 0\n"))
    with pytest.raises(ListFormatError, match="'file' column"):
        read_labels_table(write(tmp_path, "t.csv", "name,label\na.jpg,1\n"))
    with pytest.raises(ListFormatError, match="appears twice"):
        read_labels_table(write(tmp_path, "t2.csv", "file,label,file\na,1,b\n"))
    with pytest.raises(FileNotFoundError, match="nothere.csv"):
        read_image_list(tmp_path / "nothere.csv")
    with pytest.raises(ListFormatError, match="is a directory"):
        read_image_list(tmp_path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.timeout(60)
def test_a_fifo_given_as_a_list_fails_at_once_instead_of_hanging(tmp_path):
    os.mkfifo(tmp_path / "list.csv")  # nothing ever writes to it: reading would block forever
    with pytest.raises(ListFormatError, match="is a FIFO, not a regular file"):
        read_image_list(tmp_path / "list.csv")
    with pytest.raises(ListFormatError, match="is a FIFO"):
        read_categories(tmp_path / "list.csv")


def test_categories_must_be_contiguous_and_unique(tmp_path):
    assert read_categories(write(tmp_path, "c.txt", "/a/b 1\n/a/a 0\n")) == ["/a/a", "/a/b"]
    with pytest.raises(ListFormatError, match="missing \\[1\\]"):
        read_categories(write(tmp_path, "c1.txt", "/a/a 0\n/a/c 2\n"))
    with pytest.raises(ListFormatError, match=r"c2\.txt:2: index 0 given twice"):
        read_categories(write(tmp_path, "c2.txt", "/a/a 0\n/a/b 0\n"))
    with pytest.raises(ListFormatError, match=r"c3\.txt:2: category '/a/a' given twice"):
        read_categories(write(tmp_path, "c3.txt", "/a/a 0\n/a/a 1\n"))


def test_senscats_line_without_index(tmp_path):
    # The 2018 repository once published this file with "/a/amusement_park " lacking its index.
    path = write(tmp_path, "s.txt", "\ufeff/a/airplane_cabin 1 \n/a/amusement_park \n")
    with pytest.raises(ListFormatError, match=r"s\.txt:2: expected '/x/category index'"):
        read_senscats(path)


def test_places365_val_rejects_unknown_labels_and_duplicates(tmp_path):
    with pytest.raises(ListFormatError, match=r"v\.txt:1"):
        read_places365_val(write(tmp_path, "v.txt", "a.jpg -1\n"))
    with pytest.raises(ListFormatError, match=r"v2\.txt:2: duplicate"):
        read_places365_val(write(tmp_path, "v2.txt", "a.jpg 1\na.jpg 1\n"))


# ------------------------------------------------------------ property tests

PARSERS = [
    read_mepp_list,
    read_places365_val,
    read_categories,
    read_senscats,
    read_labels_table,
    read_image_list,
    lambda p: read_image_list(p, strict=False),
]

# Text built from the characters the formats care about, so the parsers' branches get hit.
list_text = st.lists(
    st.sampled_from(list('ab./\\"\',;\t \r\n-0123456789\ufeff\x00é') + ["file", "label", ".jpg", "..", "/a/b "]),
    max_size=60,
).map("".join)


@pytest.mark.parametrize("parser", PARSERS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=200), list_text.map(lambda s: s.encode("utf-8"))))
def test_random_input_raises_only_list_format_error(tmp_path, parser, data):
    path = tmp_path / "random.txt"
    path.write_bytes(data)
    try:
        result = parser(path)
    except ListFormatError:
        return
    entries = result.entries if isinstance(result, ParsedList) else result
    if isinstance(entries, list) and entries and isinstance(entries[0], ListEntry):
        names = [e.name for e in entries]
        assert len(names) == len(set(names))
        assert all(not n.startswith("/") and ".." not in n.split("/") for n in names)
        assert all(e.label is None or e.label >= 0 for e in entries)
