"""Render an evaluation's report.html to a PNG with a headless Chromium, to look at it.

The report is judged by eye (the gallery above all); this makes the page a picture that can
be looked at without a desktop. Chromium's own ``--screenshot`` takes the window, not the
whole page, so the window is made as tall as ``--height``; images the page loads lazily load
because they are inside that window.

    python bench/screenshot_report.py RUN/report/report.html --out /tmp/report.png --height 5000

Needs a Chromium on PATH (Debian: ``apt-get install chromium``); nothing is installed here.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit(f"no headless browser found (looked for {', '.join(BROWSERS)}); "
                     "on Debian: apt-get install chromium")


def screenshot(page: Path, out: Path, width: int, height: int, browser: str, timeout: float = 120.0) -> Path:
    """Write a `width` x `height` PNG of `page` (a local HTML file) to `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:  # a throwaway profile: nothing of the user's is read
        command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                   f"--user-data-dir={profile}", f"--window-size={width},{height}",
                   # Time for every image of the page to load before the picture is taken.
                   "--virtual-time-budget=10000", f"--screenshot={out.resolve()}", page.resolve().as_uri()]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0 or not out.is_file():
        raise SystemExit(f"{browser} failed (exit {result.returncode}):\n{result.stderr[-2000:]}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("page", type=Path, help="report.html written by protector evaluate")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--width", type=int, default=1280, help="window width in CSS pixels. Default: 1280")
    parser.add_argument("--height", type=int, default=4000, help="window height: how much of the page. Default: 4000")
    parser.add_argument("--browser", help="browser executable. Default: the first of " + ", ".join(BROWSERS))
    args = parser.parse_args()
    if not args.page.is_file():
        raise SystemExit(f"{args.page}: no such file")
    path = screenshot(args.page, args.out, args.width, args.height, args.browser or find_browser())
    print(path)


if __name__ == "__main__":
    sys.exit(main())
