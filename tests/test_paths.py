"""protector.paths: names from lists and archives cannot leave their root."""

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protector.paths import UnsafePathError, safe_relative_name, sha256_file


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Places365_val_00000001.jpg", "Places365_val_00000001.jpg"),
        ("./val_256//a.jpg", "val_256/a.jpg"),
        ("sub\\dir\\b.png", "sub/dir/b.png"),
        ("  spaced name é.jpg ", "spaced name é.jpg"),
    ],
)
def test_safe_names_are_normalized(name, expected):
    assert safe_relative_name(name) == expected


@pytest.mark.parametrize("name", ["../../x.jpg", "a/../../x.jpg", "/etc/passwd", "C:\\x.jpg", "\\\\host\\x", "", ".", "a\x00b"])
def test_escaping_names_are_rejected(name):
    with pytest.raises(UnsafePathError):
        safe_relative_name(name)


@given(st.text(max_size=40))
def test_accepted_names_never_escape(name):
    try:
        safe = safe_relative_name(name)
    except UnsafePathError:
        return
    assert not safe.startswith("/") and ".." not in safe.split("/")


def test_sha256_file(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 3_000_000)
    assert sha256_file(path, chunk_bytes=1 << 16) == hashlib.sha256(b"x" * 3_000_000).hexdigest()
