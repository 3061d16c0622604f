"""Benchmark: summary.html and review.html of a 5,000-case cohort, page size and time to interactive in Chromium.

The cohort folder is fabricated (Testing/review_helpers.py): summary rows with plausible numbers (every 7th case
failing, every 97th not evaluated), a placeholder report.html and four small snapshot PNGs per case (hard links),
no evaluation. Then:

* the pages are written by ``cohort.write_summary`` (timed: outliers, ranks, both pages);
* each page is opened ``--repeat`` times in headless Chromium (selenium + chromedriver) from ``file://``;
  ``window.rqReadyMs`` (navigation start to the page's script done: data parsed, plots drawn, first table page /
  first case shown, keys bound) and ``window.rqPaintedMs`` (the next frame after that) are read;
* one interaction each: a search in summary.html (highlight in every strip plot + table filter) and a "next case"
  key in review.html, timed inside the page.

Targets (issue 17): each page < 5 MB and interactive < 2 s. Prints the numbers; asserts nothing.

    python Testing/benchmarks/bench_review.py [--cases 5000] [--methods 1] [--repeat 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from RegistrationQualityLib import cohort  # noqa: E402

from review_helpers import fabricated_rows, write_case_files  # noqa: E402


def browser(downloads: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1200", f"--user-data-dir={downloads / 'profile'}",
                "--disable-background-networking", "--no-first-run"):
        options.add_argument(arg)
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def open_timed(driver, path: Path) -> tuple[float, float]:
    driver.get("about:blank")
    driver.get(path.as_uri())
    for _ in range(400):
        ready, painted = driver.execute_script("return [window.rqReadyMs, window.rqPaintedMs]")
        if ready is not None and painted is not None:
            return float(ready), float(painted)
        time.sleep(0.025)
    raise RuntimeError(f"{path.name} did not become ready")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--methods", type=int, default=1, help="registrations (methods) per case")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", help="write the cohort here and keep it")
    args = parser.parse_args()
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="rq-bench-review-"))
    try:
        methods = ("",) if args.methods == 1 else tuple(f"m{k}" for k in range(args.methods))
        rows = fabricated_rows(args.cases, seed=1, methods=methods, broken_every=97)
        t = time.perf_counter()
        write_case_files(folder, rows)
        files_s = time.perf_counter() - t
        t = time.perf_counter()
        written = cohort.write_summary(rows, folder)
        pages_s = time.perf_counter() - t
        outliers = sum(1 for r in written if r["outlier_columns"])
        print(f"cohort: {args.cases} cases x {len(methods)} method(s) = {len(rows)} registrations, {outliers} "
              f"outliers; case files {files_s:.1f} s; write_summary (outliers, ranks, summary.csv, both pages) "
              f"{pages_s:.2f} s")
        for name in ("summary.html", "review.html"):
            size = (folder / name).stat().st_size
            print(f"{name}: {size / 1e6:.2f} MB ({'<' if size < 5e6 else '>='} 5 MB target)")
        driver = browser(folder)
        try:
            for name in ("summary.html", "review.html"):
                times = [open_timed(driver, folder / name) for _ in range(args.repeat)]
                ready = [r for r, _ in times]
                painted = [p for _, p in times]
                print(f"{name}: interactive {statistics.median(ready):.0f} ms median (max {max(ready):.0f}), "
                      f"painted {statistics.median(painted):.0f} ms median (max {max(painted):.0f}) over "
                      f"{args.repeat} loads ({'<' if max(painted) < 2000 else '>='} 2 s target)")
            open_timed(driver, folder / "summary.html")
            ms = driver.execute_script("""const s = document.getElementById('search'), t = performance.now();
                s.value = 'case00042'; s.dispatchEvent(new Event('input')); return performance.now() - t;""")
            print(f"summary.html: search + highlight in every plot + table filter {ms:.1f} ms")
            open_timed(driver, folder / "review.html")
            ms = driver.execute_script("""const t = performance.now();
                document.dispatchEvent(new KeyboardEvent('keydown', {key: 'j', bubbles: true}));
                return performance.now() - t;""")
            print(f"review.html: next case (j) {ms:.1f} ms")
        finally:
            driver.quit()
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
