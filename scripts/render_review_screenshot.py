#!/usr/bin/env python3
"""Screenshot of the demo cohort's review page (``rq-demo/cohort/review.html``) for the README, in headless Chromium.

Development helper: needs selenium and Debian's chromium + chromium-driver (the test extra and scripts/setup.sh).
Runs ``registration-quality demo`` first unless ``--demo DIR`` names an existing demo folder, then rates the two
registrations with the keyboard (reviewer "AB"; the imperfect one "fail" with a note) so the page looks as it does
in use, and saves the window.

    python scripts/render_review_screenshot.py [--output docs/images/review.png] [--demo DIR] [--size 1400 1150]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(ROOT / "docs" / "images" / "review.png"))
    parser.add_argument("--demo", help="an existing demo output folder (default: run the demo in a temporary one)")
    parser.add_argument("--size", type=int, nargs=2, default=(1400, 1150), metavar=("WIDTH", "HEIGHT"))
    args = parser.parse_args()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    with tempfile.TemporaryDirectory() as tmp:
        demo = Path(args.demo) if args.demo else Path(tmp) / "demo"
        if not args.demo:
            env = dict(os.environ, VTK_DEFAULT_OPENGL_WINDOW="vtkEGLRenderWindow")
            subprocess.run([sys.executable, "-m", "RegistrationQualityLib", "demo", "--output", str(demo)],
                           check=True, env=env, stdout=subprocess.DEVNULL)
        options = webdriver.ChromeOptions()
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    f"--window-size={args.size[0]},{args.size[1]}", f"--user-data-dir={Path(tmp) / 'profile'}",
                    "--hide-scrollbars", "--disable-background-networking", "--no-first-run"):
            options.add_argument(arg)
        options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
        try:
            driver.get((demo / "cohort" / "review.html").as_uri())
            while driver.execute_script("return document.documentElement.dataset.ready") != "1":
                time.sleep(0.05)
            for keys in ("1", "AB", Keys.ENTER, "j", "3", "n", "lesion about 1 cm off; rigid only", Keys.ENTER):
                ActionChains(driver).send_keys(keys).perform()
            driver.execute_script("document.querySelectorAll('img').forEach(i => i.decode && i.decode())")
            time.sleep(0.5)
            driver.save_screenshot(args.output)
        finally:
            driver.quit()
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
