"""Render a sweep's analysis/report.html in headless Chromium and save a PNG screenshot.

    python benchmarks/report_screenshot.py runs/<sweep> [--out report.png] [--size 1400,2400]

The page must render offline: Chromium runs with networking features off, so a report that needed
a CDN would show up broken in the picture. Needs Debian's `chromium` (apt-get install chromium).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def chromium() -> str | None:
    return next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)


def _chromium(args: list[str], page: Path, timeout: float) -> subprocess.CompletedProcess:
    """Headless Chromium on a local page with networking features off and a throwaway profile."""
    exe = chromium()
    if exe is None:
        raise RuntimeError("chromium is not installed (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
               *args, page.resolve().as_uri()]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def screenshot(page: Path, png: Path, size: str = "1400,2400", timeout: float = 120) -> Path:
    """Chromium headless: page (a local HTML file) -> png. Raises RuntimeError when it fails."""
    out = _chromium([f"--screenshot={png.resolve()}", f"--window-size={size}", "--hide-scrollbars"], page, timeout)
    if out.returncode != 0 or not png.is_file():
        raise RuntimeError(f"chromium failed ({out.returncode}): {out.stderr[-2000:]}")
    return png


MEASURE = """<script>addEventListener("load", () => {
  const boxes = [...document.querySelectorAll(".scroll")];
  document.body.dataset.layout = JSON.stringify({
    page: document.documentElement.scrollWidth, window: innerWidth, tables: boxes.length,
    scrolling: boxes.filter(b => b.scrollWidth > b.clientWidth).map(b => b.querySelector("caption").textContent)});
});</script>"""


def layout(page: Path, width: int = 1400, timeout: float = 120) -> dict:
    """How wide the laid-out page is at a window `width`: {page, window, tables, scrolling} in CSS pixels,
    `scrolling` = the captions of the tables whose box scrolls sideways. Measured on a copy with a small script added (the
    report itself has none)."""
    with tempfile.TemporaryDirectory(prefix="layout-") as tmp:
        copy = Path(tmp) / page.name
        copy.write_text(page.read_text(encoding="utf-8").replace("</body>", MEASURE + "</body>"), encoding="utf-8")
        out = _chromium([f"--window-size={width},1000", "--dump-dom"], copy, timeout)
    found = re.search(r'data-layout="([^"]*)"', out.stdout)
    if out.returncode != 0 or not found:
        raise RuntimeError(f"chromium failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(found.group(1).replace("&quot;", '"'))


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
    width = int(args.size.split(",")[0])
    found = layout(page, width)
    print(f"layout: page {found['page']} px in a {found['window']} px window; {found['tables']} tables, scrolling in "
          f"their box: {', '.join(found['scrolling']) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
