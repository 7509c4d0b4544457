"""ICC profiles built byte by byte for tests: an Adobe-RGB-like matrix profile whose text tags
carry whatever a test plants (a device name, a tag someone slipped in)."""

from __future__ import annotations

import struct

# Adobe RGB (1998) colorants adapted to D50, as a colour-managed reader uses them.
ADOBE_RGB_D50 = {b"rXYZ": (0.6097, 0.3111, 0.0195), b"gXYZ": (0.2053, 0.6257, 0.0609),
                 b"bXYZ": (0.1492, 0.0632, 0.7446)}
D50 = (0.9642, 1.0, 0.8249)


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz(values: tuple[float, float, float]) -> bytes:
    return b"XYZ " + bytes(4) + b"".join(_s15(v) for v in values)


def _desc(text: str) -> bytes:
    ascii_text = text.encode("ascii") + b"\0"
    return (b"desc" + bytes(4) + struct.pack(">I", len(ascii_text)) + ascii_text
            + struct.pack(">II", 0, 0) + struct.pack(">HB", 0, 0) + bytes(67))


def _text(text: str) -> bytes:
    return b"text" + bytes(4) + text.encode("ascii") + b"\0"


def _gamma(value: float) -> bytes:
    return b"curv" + bytes(4) + struct.pack(">IH", 1, round(value * 256)) + bytes(2)


def rgb_profile(description: str, copyright_text: str = "no copyright", colorants=ADOBE_RGB_D50,
                gamma: float = 2.2) -> bytes:
    """An ICC v2 RGB display profile (matrix and gamma curves) with these text tags."""
    tags = [(b"desc", _desc(description)), (b"cprt", _text(copyright_text)), (b"wtpt", _xyz(D50))]
    tags += [(sig, _xyz(values)) for sig, values in colorants.items()]
    curve = _gamma(gamma)
    tags += [(b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for signature, body in tags:
        body += bytes(-len(body) % 4)
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = (struct.pack(">I", size) + bytes(4) + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ "
              + bytes(12) + b"acsp" + bytes(4) + bytes(4) + bytes(4) + bytes(4) + bytes(8) + struct.pack(">I", 0)
              + b"".join(_s15(v) for v in D50) + bytes(4) + bytes(16) + bytes(28))
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + data
