"""Render a run's report in headless Chromium and save the screenshot the README shows (docs/report.png).

    .venv/bin/python scripts/docs_screenshot.py runs/arithmetic [--out docs/report.png]

Needs ``chromium``, ``chromedriver`` and ``selenium`` (``scripts/setup.sh`` installs them as root). It writes
into the repository, so it is a script, not a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from star_kit.report import write_report

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1500"]


def browser(profile: str):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        sys.exit("chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download anything
    options = Options()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    return driver


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished run directory (e.g. runs/arithmetic)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "report.png")
    args = parser.parse_args()
    from selenium.webdriver.support.ui import WebDriverWait

    html_path, _ = write_report(args.run)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        driver = browser(profile)
        try:
            driver.get(html_path.resolve().as_uri())
            WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
            errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
            if errors:
                sys.exit(f"the report logged errors in the browser: {errors}")
            rows = driver.find_elements("css selector", "#list li.st-rationalized") or \
                driver.find_elements("css selector", "#list li.row")
            if rows:
                rows[0].click()
            driver.set_window_size(1400, 1450)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(args.out))
        finally:
            driver.quit()
    print(f"{args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
