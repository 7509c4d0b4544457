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


# The largest budget BENCHMARKS.md measures is 8/255; generator attacks in the literature use up
# to 10/255 (CDA, LTP). Twice the largest measured budget is the most `protect` accepts without
# --allow-large-eps: above it nothing says the protection or the photo's look are what was measured
# (eps 1.0 may replace a photo by anything).
MEASURED_EPS_MAX = 8 / 255
LARGE_EPS = 16 / 255
ALLOW_LARGE_EPS_FLAG = "--allow-large-eps"


class BudgetError(ValueError):
    """A protector's budget far outside what the project measured, without the flag that accepts it."""


def large_budget_note(eps: float) -> str | None:
    """The summary's warning for a budget above LARGE_EPS, or None within it."""
    if eps <= LARGE_EPS + 1e-9:
        return None
    return (f"{eps * 255:.3g}/255 is far above the largest budget measured ({MEASURED_EPS_MAX * 255:.0f}/255, "
            "BENCHMARKS.md): the photos may change visibly, and nothing here measured how")


def check_budget(eps: float, allow_large: bool, source: str) -> str | None:
    """Refuse a budget above LARGE_EPS unless `allow_large`; return the summary's note for it.

    Raises:
        BudgetError: naming `source` (the protector file), its budget and the flag.
    """
    note = large_budget_note(eps)
    if note is not None and not allow_large:
        raise BudgetError(f"{source}: its budget eps = {eps:.4g} ({note}); refused without {ALLOW_LARGE_EPS_FLAG}, "
                          "which accepts it and names it in the summary")
    return note
