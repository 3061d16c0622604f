"""review.html and summary.html in a real browser (Chromium driven by selenium): keys, ratings that survive a
reload, the exported ratings.csv merged back, flicker, search, highlighting in the strip plots.

One browser for the module; the cohort is fabricated (summary rows and solid-colour snapshots, no evaluation), so
the module runs in seconds.
"""

from __future__ import annotations

import csv
import shutil
import time

import numpy as np
import pytest

from RegistrationQualityLib import cohort

from review_helpers import COLOURS, write_case_files


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        return "Chromium is not installed (Debian package 'chromium')"
    if not shutil.which("chromedriver"):
        return "chromedriver is not installed (Debian package 'chromium-driver')"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))


def row(case_id, verdict, dice, tre, status="ok", failed="", error=""):
    folder = f"cases/{case_id}"
    return {"case_id": case_id, "method": "", "status": status, "verdict": verdict, "error": error, "segments": 3,
            "min_dice_before": 0.5, "min_dice_after": dice, "mean_tre_before_mm": 6.0, "mean_tre_after_mm": tre,
            "failed_checks": failed, "worst_segment": "lesion", "report": None if status != "ok" else
            f"{folder}/report.html"}


# review order by design: not evaluated, failing, review, outlier (TRE far from the rest), then the lowest Dice first
EXPECTED_ORDER = ["broken", "bad", "rev", "odd", "ok-b", "ok-a", "ok-c", "ok-d", "ok-e"]


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("review")
    rows = [row("ok-a", "pass", 0.90, 1.0), row("ok-b", "pass", 0.85, 1.1),
            row("broken", None, None, None, status="failed", error="bad input: moving.nrrd: file not found"),
            row("bad", "fail", 0.50, 1.2, failed="min_dice[lesion]"), row("odd", "pass", 0.91, 30.0),
            row("rev", "review", 0.80, 1.3), row("ok-c", "pass", 0.92, 1.05), row("ok-d", "pass", 0.93, 0.95),
            row("ok-e", "pass", 0.94, 1.15)]
    write_case_files(folder, rows)
    written = cohort.write_summary(rows, folder)
    assert [r["case_id"] for r in written if r["outlier_columns"]] == ["bad", "odd"]  # Dice 0.5; TRE 30 mm
    return folder


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1300", f"--user-data-dir={tmp_path_factory.mktemp('profile')}",
                "--disable-background-networking", "--no-first-run"):
        options.add_argument(arg)
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.downloads = downloads
    yield driver
    driver.quit()


def open_page(browser, path):
    browser.get(path.as_uri())
    for _ in range(100):
        if browser.execute_script("return document.documentElement.dataset.ready") == "1":
            return
        time.sleep(0.05)
    raise AssertionError(f"{path.name} did not become ready: {browser.get_log('browser')}")


def fresh(browser, path):
    """Open ``path`` with an empty localStorage (cleared while no review page is open, so no page saves on
    leaving)."""
    browser.get("about:blank")
    browser.execute_cdp_cmd("Storage.clearDataForOrigin", {"origin": "file://", "storageTypes": "local_storage"})
    open_page(browser, path)
    assert browser.execute_script("return localStorage.length") <= 1


def keys(browser, *sequence):
    from selenium.webdriver.common.action_chains import ActionChains

    for item in sequence:
        ActionChains(browser).send_keys(item).perform()


def shown(browser) -> str:
    return browser.execute_script("return document.body.dataset.case")


def test_keyboard_review_survives_reload_and_exports_ratings(browser, cohort_dir):
    from selenium.webdriver.common.keys import Keys

    fresh(browser, cohort_dir / "review.html")
    seen = [shown(browser)]
    for _ in EXPECTED_ORDER[1:]:
        keys(browser, Keys.ARROW_RIGHT)
        seen.append(shown(browser))
    assert seen == EXPECTED_ORDER
    keys(browser, "j")
    assert shown(browser) == EXPECTED_ORDER[-1]  # the end: stays
    for _ in EXPECTED_ORDER[1:]:
        keys(browser, "k")
    assert shown(browser) == "broken"
    keys(browser, Keys.ARROW_LEFT)
    assert shown(browser) == "broken"

    keys(browser, "3")  # first rating: the reviewer's name is asked once
    assert "open" in browser.find_element("id", "who").get_attribute("class")
    keys(browser, "Dr. Tester", Keys.ENTER)
    assert "rated fail" in browser.find_element("id", "case").text
    keys(browser, "j", "1", "n", 'edge off, "lesion"', Keys.ENTER)
    page = browser.find_element("id", "case").text
    assert shown(browser) == "bad" and "rated pass" in page and 'edge off, "lesion"' in page
    keys(browser, "j", "2", "0")  # rated then cleared
    assert "rated" not in browser.find_element("css selector", ".mhead").text

    browser.refresh()  # the store survives; the page opens where the reviewer left
    open_page(browser, cohort_dir / "review.html")
    assert shown(browser) == "rev"
    assert "rated 2" in browser.find_element("id", "progress").text
    assert "Dr. Tester" in browser.find_element("id", "progress").text
    keys(browser, "k")
    assert "rated pass" in browser.find_element("id", "case").text

    browser.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow",
                                                          "downloadPath": str(browser.downloads)})
    browser.find_element("id", "export").click()
    target = browser.downloads / "ratings.csv"
    for _ in range(100):
        if target.is_file() and target.stat().st_size:
            break
        time.sleep(0.05)
    with open(target, newline="", encoding="utf-8") as f:
        exported = list(csv.DictReader(f))
    assert list(exported[0]) == ["case_id", "method", "rating", "note", "reviewer", "seconds", "rated_at"]
    assert [(r["case_id"], r["rating"], r["note"]) for r in exported] == [("broken", "fail", ""),
                                                                         ("bad", "pass", 'edge off, "lesion"')]
    assert {r["reviewer"] for r in exported} == {"Dr. Tester"}
    assert all(float(r["seconds"]) >= 0 and r["rated_at"].startswith("20") for r in exported)

    rows = cohort.run_review(cohort_dir, ratings=target)  # the exported file merges back
    by_id = {r["case_id"]: r for r in rows}
    assert by_id["bad"]["human_rating"] == "pass" and by_id["bad"]["rating_agrees"] == "no"
    assert by_id["broken"]["human_rating"] == "fail" and by_id["broken"]["rating_agrees"] == ""
    assert by_id["bad"]["human_note"] == 'edge off, "lesion"'


def flick_colour(browser):
    import io

    import SimpleITK as sitk

    png = browser.find_element("css selector", ".flick").screenshot_as_png
    path = io.BytesIO(png)
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".png") as f:
        f.write(path.getvalue())
        f.flush()
        pixels = sitk.GetArrayFromImage(sitk.ReadImage(f.name))[..., :3].astype(int)
    centre = pixels[pixels.shape[0] // 2, pixels.shape[1] // 2]
    for name, rgb in COLOURS.items():
        if np.all(np.abs(centre - np.array(rgb)) <= 12):
            return name
    return tuple(centre)


def test_flicker_and_fade_switch_the_image(browser, cohort_dir):
    fresh(browser, cohort_dir / "review.html")
    keys(browser, "j")  # 'bad' has snapshots
    assert flick_colour(browser) == "registered_axial.png"
    keys(browser, "f")
    assert browser.execute_script("return document.body.dataset.flicker") == "on"
    states = set()
    for _ in range(16):
        before = browser.execute_script("return document.querySelector('.flick').dataset.showing")
        colour = flick_colour(browser)
        if browser.execute_script("return document.querySelector('.flick').dataset.showing") == before:
            states.add((before, colour))  # no switch while the screenshot was taken
        time.sleep(0.1)
    assert states == {("fixed", "fixed_axial.png"), ("registered", "registered_axial.png")}
    keys(browser, "f")
    assert browser.execute_script("return document.body.dataset.flicker") == "off"
    browser.execute_script("const f = document.querySelector('.fader'); f.value = 0; f.dispatchEvent(new Event('input'))")
    assert flick_colour(browser) == "fixed_axial.png"


def test_search_and_unrated_only(browser, cohort_dir):
    from selenium.webdriver.common.keys import Keys

    fresh(browser, cohort_dir / "review.html")
    keys(browser, "/", "nothing-like-this", Keys.ENTER)
    assert "no case id matches" in browser.find_element("id", "search-info").text
    keys(browser, Keys.ESCAPE, "/", "ODD", Keys.ENTER)
    assert shown(browser) == "odd"
    assert "outlier" in browser.find_element("id", "case").text
    keys(browser, "k", "1")
    keys(browser, "Rev", Keys.ENTER)  # the reviewer's name
    keys(browser, "k", "k", "u")  # back to 'broken', then unrated only: 'rev' is skipped
    assert shown(browser) == "broken"
    keys(browser, "j", "j")
    assert shown(browser) == "odd"


def overlay_ink(browser) -> list:
    return browser.execute_script("""return Array.from(document.querySelectorAll('#plots canvas.overlay')).map(c => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
        for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; });""")


def test_summary_search_highlights_the_case_in_every_plot(browser, cohort_dir):
    open_page(browser, cohort_dir / "summary.html")
    assert overlay_ink(browser) and not any(overlay_ink(browser))
    box = browser.find_element("id", "search")
    box.send_keys("odd")
    ink = overlay_ink(browser)
    assert len(ink) >= 2 and all(n > 20 for n in ink)  # a ring in every plot
    table = browser.find_elements("css selector", "#case-rows tr")
    assert [t.get_attribute("data-row") is not None for t in table] == [True]
    assert "odd" in table[0].text and "mean_tre_after_mm" in table[0].text
    img = browser.find_element("css selector", "#case-rows img.thumb")
    assert img.get_attribute("loading") == "lazy"
