"""Headless Chromium for the report's render test: install it if missing, take screenshots.

Debian's ``chromium`` package is installed on demand (only as root) so a fresh container can
run the suite; a failed installation fails the test loudly instead of skipping it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
INSTALL_TIMEOUT_S = 900.0
SCREENSHOT_TIMEOUT_S = 120.0


class ChromiumUnavailable(RuntimeError):
    """Chromium is absent and could not be installed."""


def ensure_chromium() -> Path:
    """Return the Chromium binary, installing Debian's package first when it is missing.

    Raises ``ChromiumUnavailable`` when it is missing and cannot be installed (not root, no
    apt-get, or apt-get failed).
    """
    if CHROMIUM.exists():
        return CHROMIUM
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ChromiumUnavailable(
            f"{CHROMIUM} is missing and cannot be installed here (needs root and apt-get); "
            "install it with: apt-get install -y --no-install-recommends chromium"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
    ):
        try:
            done = subprocess.run(
                cmd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, env=env, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise ChromiumUnavailable(f"{' '.join(cmd)} timed out") from exc
        if done.returncode != 0:
            raise ChromiumUnavailable(
                f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}"
            )
    if not CHROMIUM.exists():
        raise ChromiumUnavailable(f"chromium installed but {CHROMIUM} is still missing")
    return CHROMIUM


def screenshot(
    chromium: Path, page: Path, png: Path, profile: Path, *, size: str = "1400,1000"
) -> subprocess.CompletedProcess[str]:
    """Render ``page`` headless into ``png``; every network feature that could phone home is
    off, and the subprocess is killed after ``SCREENSHOT_TIMEOUT_S``."""
    cmd = [
        str(chromium),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--screenshot={png}",
        f"--window-size={size}",
        page.resolve().as_uri(),
    ]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=SCREENSHOT_TIMEOUT_S, check=False
    )
