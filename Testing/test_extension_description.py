"""The top-level CMakeLists.txt and RegistrationQuality.json pass the Slicer Extensions Index checks.

The checks are re-implemented from Slicer/ExtensionsIndex ``scripts/check_description_files.py`` (branch main,
commit 07f1d1b; line numbers below), which reads the top-level CMakeLists.txt *as text* with regular expressions
(no CMake variable is expanded), and from Slicer's extension template
(``Utilities/Templates/Extensions/Default/CMakeLists.txt`` at v5.10.0) and catalogue entry schema
(``Schemas/slicer-extension-catalog-entry-schema-v1.0.1.json`` at v5.10.0). The network checks of the script
(downloading the images, the repository's GitHub topics) are replaced by checking that each URL names a PNG file of
this repository.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CMAKE = ROOT / "CMakeLists.txt"
ENTRY = ROOT / "RegistrationQuality.json"
RAW_PREFIX = "https://raw.githubusercontent.com/RegistrationQuality/SlicerRegistrationQuality/main/"

# check_description_files.py, check_cmakelists_content
PROJECT_PATTERN = r"project\s*\(\s*([^\s\)\n\r]+)"  # line 402
ICON_PATTERN = r'set\s*\(EXTENSION_ICONURL\s*"([^"]+)"[ ]*\)'  # line 424
SCREENSHOTS_PATTERN = r'set\s*\(EXTENSION_SCREENSHOTURLS\s*"([^"]+)"\)'  # line 440
# the keys the extension template sets (v5.10.0 lines 7-12), plus the category every index entry has
TEMPLATE_KEYS = ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                 "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS")
# the template's first line at v5.10.0 (line 1); v5.8.1 had 3.16.3...3.19.7
TEMPLATE_CMAKE_MINIMUM = "cmake_minimum_required(VERSION 3.20.6...3.22.6 FATAL_ERROR)"
# the catalogue entry schema v1.0.1: properties and required keys
SCHEMA_PROPERTIES = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
                     "build_subdirectory", "enabled", "tier"}
SCHEMA_REQUIRED = {"$schema", "category", "scm_url"}


def cmake_errors(content: str, extension_name: str) -> list:
    """check_cmakelists_content's errors for ``content`` (lines 369-457), the image checks reduced to what can be
    checked offline: the URL starts with 'http' (validate_image_url, line 277) and, here, names an existing PNG of
    this repository."""
    errors = []
    projects = re.findall(PROJECT_PATTERN, content, re.IGNORECASE | re.MULTILINE)
    name = projects[0].strip().strip('"').strip("'") if projects else None
    if name is None:
        errors.append("No project() declaration found in CMakeLists.txt")
    elif name != extension_name:
        errors.append(f"project name '{name}' does not match extension description file name '{extension_name}'")

    def image(url, key):
        if not url.startswith("http"):
            errors.append(f"{key} '{url}' should be a valid URL starting with 'http'")
        elif not url.startswith(RAW_PREFIX) or not url.lower().endswith(".png"):
            errors.append(f"{key} '{url}' is not a raw PNG URL of this repository")
        elif not (ROOT / url[len(RAW_PREFIX):]).is_file():
            errors.append(f"{key} '{url}' names no file of this repository")
        elif (ROOT / url[len(RAW_PREFIX):]).read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
            errors.append(f"{key} '{url}' is not a PNG file")

    icons = re.findall(ICON_PATTERN, content, re.IGNORECASE | re.MULTILINE)
    if icons:
        image(icons[0].strip(), "EXTENSION_ICONURL")
    else:
        errors.append("No EXTENSION_ICONURL found in CMakeLists.txt.")
    shots = re.findall(SCREENSHOTS_PATTERN, content, re.IGNORECASE | re.MULTILINE)
    if shots:
        for url in shots[0].split():
            image(url.strip(), "EXTENSION_SCREENSHOTURLS")
    else:
        errors.append("No EXTENSION_SCREENSHOTURLS found in CMakeLists.txt.")
    return errors


def cmake_values(content: str) -> dict:
    return {m.group(1): m.group(2) for m in re.finditer(r'^set\((EXTENSION_\w+) "([^"]*)"\)', content, re.MULTILINE)}


def test_cmakelists_passes_the_index_checks():
    content = CMAKE.read_text(encoding="utf-8")
    assert cmake_errors(content, ENTRY.stem) == []


def test_the_checks_reject_urls_built_from_variables():
    """What the index's checker saw before: a URL made of a CMake variable is not expanded (the file is text)."""
    old = ('project(RegistrationQuality)\nset(RQ_RAW_URL "https://raw.githubusercontent.com/x/y/main")\n'
           'set(EXTENSION_ICONURL "${RQ_RAW_URL}/RegistrationQuality.png")\n'
           'set(EXTENSION_SCREENSHOTURLS "${RQ_RAW_URL}/docs/images/panel.png")\n')
    errors = cmake_errors(old, "RegistrationQuality")
    assert len(errors) == 2 and all("should be a valid URL starting with 'http'" in e for e in errors)
    assert cmake_errors(old.replace("RegistrationQuality)", "Other)"), "RegistrationQuality")[0].startswith(
        "project name 'Other'")


def test_cmakelists_follows_the_extension_template():
    content = CMAKE.read_text(encoding="utf-8")
    assert content.splitlines()[0] == TEMPLATE_CMAKE_MINIMUM
    values = cmake_values(content)
    assert set(TEMPLATE_KEYS) <= set(values), sorted(set(TEMPLATE_KEYS) - set(values))
    assert "${" not in "".join(values.values()), "literal values only (the checker does not expand variables)"
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_ICONURL"):
        assert values[key].startswith("https://"), key
    # contributors: "Firstname Lastname (Organisation)", comma separated (template line 8: "John Doe (AnyWare Corp.)")
    for contributor in values["EXTENSION_CONTRIBUTORS"].split(","):
        assert re.fullmatch(r"[^(),]+ \([^()]+\)", contributor.strip()), contributor
    description = values["EXTENSION_DESCRIPTION"]
    assert "\n" not in description and len(description) <= 300
    assert len(re.findall(r"[.!?](?:\s|$)", description)) <= 2  # "1-2 sentences" (index PR template, tier 1)
    assert values["EXTENSION_DEPENDS"] == "NA"


def test_catalogue_entry_passes_the_index_checks():
    raw = ENTRY.read_bytes()
    assert b"\r" not in raw  # check_json_file_format: LF line endings only (line 111)
    entry = json.loads(raw)
    assert SCHEMA_REQUIRED <= set(entry) <= SCHEMA_PROPERTIES
    assert entry["$schema"].startswith("https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/"
                                       "slicer-extension-catalog-entry-schema-v1.0.1.json")
    assert isinstance(entry["tier"], int) and 1 <= entry["tier"] <= 5  # schema: integer 1..5
    assert not ENTRY.stem.lower().startswith("slicer")  # check_extension_name (line 195)
    scm = urllib.parse.urlsplit(entry["scm_url"])
    assert scm.scheme in ("git", "https")  # check_scm_url_syntax (line 182)
    repo = Path(scm.path).stem
    assert repo.startswith("Slicer")  # check_git_repository_name (line 222)
    content = CMAKE.read_text(encoding="utf-8")
    values = cmake_values(content)
    assert entry["category"] == values["EXTENSION_CATEGORY"] == "Registration"  # ACCEPTED_EXTENSION_CATEGORIES
    # consistent with the CMakeLists (PR template, tier 1): no extension dependencies, same repository
    assert entry["build_dependencies"] == [] and values["EXTENSION_DEPENDS"] == "NA"
    assert values["EXTENSION_HOMEPAGE"].startswith(f"https://github.com{scm.path.removesuffix('.git')}")
    assert RAW_PREFIX.startswith(f"https://raw.githubusercontent.com{scm.path.removesuffix('.git')}/"
                                 f"{entry['scm_revision']}/")
    # check_license_file: a license file in the repository root (line 489)
    assert any((ROOT / name).is_file() for name in ("LICENSE", "LICENCE", "License.txt", "license.txt",
                                                    "LICENSE.txt", "COPYING", "COPYING.txt"))


@pytest.mark.parametrize("key", ["EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"])
def test_image_urls_are_literal(key):
    line = next(x for x in CMAKE.read_text(encoding="utf-8").splitlines() if x.startswith(f"set({key} "))
    assert "${" not in line and "https://" in line
