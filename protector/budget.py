"""The perturbation budget as people write it: ``2/255`` or ``0.0078``.

One rule for every place a budget is read from text (``evaluate --eps``, its argparse type);
standard library only, so the command line and the evaluation both use it without either
importing the other.
"""

from __future__ import annotations


def parse_budget(text: str) -> float:
    """A budget as a fraction of the pixel range in (0, 1]: ``2/255`` or ``0.0078``.

    Raises:
        ValueError: not a number or fraction, or outside (0, 1]; the message names the text.

    Example:
        >>> round(parse_budget("2/255") * 255, 6)
        2.0
    """
    try:
        if "/" in text:
            numerator, denominator = text.split("/", 1)
            value = float(numerator) / float(denominator)
        else:
            value = float(text)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"{text!r}: expected a number like 0.0078 or a fraction like 2/255") from None
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{text}: must be in (0, 1], a fraction of the pixel range (e.g. 2/255)")
    return value
