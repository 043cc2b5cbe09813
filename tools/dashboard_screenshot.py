"""The README's dashboard screenshot: serve a study output with `python -m federated.dashboard` (the real
command, on a free loopback port), open a study's page in the system's Chromium (Playwright) and save one
section of it as a PNG.

    python -m examples.monitoring.run_monitoring
    python -m tools.dashboard_screenshot --output demo/monitoring/output/runs --max-height 1290

Without --study it takes the newest study under --output; --section names the page's section (`monitoring`,
`pooled`, `matrix`, ...; `page` for the whole page).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ADDRESS = re.compile(r"^dashboard: (http://\S+/)")


def _serve(output: Path) -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen([sys.executable, "-m", "federated.dashboard", "--output", str(output), "--port", "0"],
                              stderr=subprocess.PIPE, text=True)
    assert server.stderr is not None
    for line in server.stderr:  # the command prints its address once it listens
        if match := ADDRESS.match(line.strip()):
            return server, match.group(1)
    server.wait()
    raise SystemExit(f"the dashboard did not start (exit code {server.returncode})")


def _palette(path: Path) -> None:
    """Rewrite the PNG with a 256-colour palette: a page of text and flat colours reads the same, at a third
    of the size (what a README image in git should weigh)."""
    from PIL import Image

    with Image.open(path) as image:
        reduced = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    reduced.save(path, optimize=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.dashboard_screenshot", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, required=True, help="what `python -m federated.dashboard --output` serves")
    parser.add_argument("--study", help="the study's folder name under --output (default: the newest)")
    parser.add_argument("--section", default="monitoring", help="the section's id, or `page`")
    parser.add_argument("--out", type=Path, default=Path("docs/img/dashboard-monitoring.png"))
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--max-height", type=int, default=0, help="cut the image to this many pixels (0: all of it)")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    study = args.study or max((p for p in args.output.iterdir() if (p / "results.json").is_file()),
                              key=lambda p: p.stat().st_mtime).name
    server, url = _serve(args.output)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, headless=True,
                                                 args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            page = browser.new_page(viewport={"width": args.width, "height": 900})
            page.goto(f"{url}study/{study}")
            page.wait_for_load_state("load")  # the charts are <img>s: loaded with the page
            args.out.parent.mkdir(parents=True, exist_ok=True)
            if args.section == "page":
                page.screenshot(path=str(args.out), full_page=True)
            else:
                box = page.locator(f"#{args.section}").bounding_box()
                assert box is not None, f"no section #{args.section} on the page"
                height = min(box["height"], args.max_height or box["height"])
                page.screenshot(path=str(args.out), full_page=True,
                                clip={"x": 0, "y": box["y"], "width": page.evaluate("document.documentElement.scrollWidth"),
                                      "height": height})
            browser.close()
    finally:
        server.terminate()
        server.wait()
    _palette(args.out)
    print(f"{args.out}: {args.out.stat().st_size // 1024} KB ({study}, section {args.section})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
