"""Makes the README's screenshots: the demo's week-1 report and the widget's example page.

    make demo && .venv/bin/python docs/screenshots.py [--report .feedback-loop/demo/week-1/report.html]

Uses Debian's Chromium through Playwright (what `make test` installs) and a local stack for the widget.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from playwright.sync_api import sync_playwright

from feedback_loop.dal.store import FeedbackTable
from feedback_loop.local.stack import LocalStack
from feedback_loop.logic.keys import create_key

IMAGES = Path(__file__).resolve().parent / "images"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", default=".feedback-loop/demo/week-1/report.html")
    args = parser.parse_args()
    IMAGES.mkdir(exist_ok=True)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as playwright, LocalStack() as stack:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1200, "height": 1500}, device_scale_factor=1)
        page.goto(Path(args.report).resolve().as_uri())
        page.screenshot(path=str(IMAGES / "report.png"))

        key = create_key(FeedbackTable(stack.table_name), "screenshots").plaintext
        page = browser.new_page(viewport={"width": 900, "height": 760}, device_scale_factor=1)
        page.goto(f"{stack.api_url}/widget/#key={key}&request=req_123")
        page.click("[data-fl=down]")
        page.fill("[data-fl=comment]", "It forgot to say how long the old key stays valid.")
        page.wait_for_function("() => document.getElementById('summary').textContent.includes('explicit_thumbs_down')")
        page.screenshot(path=str(IMAGES / "widget.png"))  # voted, the comment typed, not sent yet
        browser.close()
    print(f"wrote {IMAGES / 'report.png'} and {IMAGES / 'widget.png'}")


if __name__ == "__main__":
    main()
