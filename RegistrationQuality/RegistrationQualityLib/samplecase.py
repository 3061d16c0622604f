"""The bundled sample case (``Resources/SampleCase``, described by its ``case.json``): where it is and what it lists.

One place for the CLI's ``demo`` command, the Slicer module (Sample Data registration, "Load sample case") and the
tests. Installed extension: ``<module dir>/Resources/SampleCase`` (the library lives in ``<module dir>/
RegistrationQualityLib``); source tree: ``<repository>/Resources/SampleCase``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import BadInputError

CASE_FILE = "case.json"


def find_sample_case() -> Path | None:
    """The sample case folder next to the installed module or in the source tree, or None when neither has it."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "Resources" / "SampleCase"
        if (candidate / CASE_FILE).is_file():
            return candidate
    return None


def sample_case_folder(explicit=None) -> Path:
    """``explicit`` (checked: it must hold a case.json), else the bundled sample case; BadInputError naming
    ``--case`` when there is none."""
    if explicit:
        folder = Path(explicit)
        if not (folder / CASE_FILE).is_file():
            raise BadInputError("--case", f"{os.fspath(folder)} holds no {CASE_FILE} (not a sample case folder)")
        return folder
    folder = find_sample_case()
    if folder is None:
        raise BadInputError("--case", "the sample case folder was not found (give --case DIR)")
    return folder


def read_case_spec(folder) -> dict:
    """The sample case's ``case.json`` (file names relative to the folder, labels, registrations, measured values)."""
    path = Path(folder) / CASE_FILE
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise BadInputError(path, f"cannot read the sample case description: {err}") from None
    if not isinstance(spec, dict):
        raise BadInputError(path, "is not a JSON object")
    return spec
