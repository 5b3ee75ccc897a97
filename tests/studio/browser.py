"""A real Chromium for the browser tests: Debian's `chromium`, driven by Playwright (no browser download).

`make test` installs the package (`apt-get install chromium`, as root, in .ci/run's path); set CHROMIUM
to use another Chromium or Chrome binary. Without one the browser tests fail with this message: they
are part of the suite, and a machine without a browser must say so rather than pass quietly.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# Debian's /usr/bin/chromium is a shell wrapper; Playwright wants the binary itself.
CANDIDATES = ("/usr/lib/chromium/chromium", "chromium", "chromium-browser", "google-chrome")
# Without the background-networking flags a closed network refuses Chromium's own connections noisily.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MISSING = (
    "no Chromium for the studio's browser tests: run `make test` as root (it installs Debian's chromium), "
    "or `sudo apt-get install chromium`, or set CHROMIUM=/path/to/chromium; "
    "deselect them with `-m 'not browser'` only if you must"
)


def find_chromium() -> str | None:
    """The Chromium binary to drive: $CHROMIUM, else the first of CANDIDATES that exists."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    for name in CANDIDATES:
        found = name if Path(name).is_file() else shutil.which(name)
        if found:
            return found
    return None


def launch_chromium(playwright, user_data_dir: Path):
    """A headless Chromium context with a fresh profile (`user_data_dir`)."""
    executable = find_chromium()
    if executable is None:
        raise RuntimeError(MISSING)
    return playwright.chromium.launch_persistent_context(
        str(user_data_dir), executable_path=executable, args=FLAGS, headless=True,
        viewport={"width": 1400, "height": 1000}, accept_downloads=True,
    )  # fmt: skip
