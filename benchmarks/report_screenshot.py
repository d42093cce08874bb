"""Render a sweep's analysis/report.html in headless Chromium and save a PNG screenshot.

    python benchmarks/report_screenshot.py runs/<sweep> [--out report.png] [--size 1400,2400]

The page must render offline: Chromium runs with networking features off, so a report that needed
a CDN would show up broken in the picture. Needs Debian's `chromium` (apt-get install chromium).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def chromium() -> str | None:
    return next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)


def screenshot(page: Path, png: Path, size: str = "1400,2400", timeout: float = 120) -> Path:
    """Chromium headless: page (a local HTML file) -> png. Raises RuntimeError when it fails."""
    exe = chromium()
    if exe is None:
        raise RuntimeError("chromium is not installed (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
               f"--screenshot={png.resolve()}", f"--window-size={size}", "--hide-scrollbars",
               page.resolve().as_uri()]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0 or not png.is_file():
        raise RuntimeError(f"chromium failed ({out.returncode}): {out.stderr[-2000:]}")
    return png


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep", type=Path)
    ap.add_argument("--out", type=Path, default=None, help="PNG path (default: <sweep>/analysis/report.png)")
    ap.add_argument("--size", default="1400,2400", help="window width,height in pixels")
    args = ap.parse_args()
    page = args.sweep / "analysis" / "report.html"
    if not page.is_file():
        print(f"{page} does not exist: run the analysis first (hpc-mle resume, or the launcher)", file=sys.stderr)
        return 2
    png = screenshot(page, args.out or args.sweep / "analysis" / "report.png", args.size)
    print(f"{png} ({png.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
