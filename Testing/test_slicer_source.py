"""Independent check against Slicer's own source (opt-in): the module's parameter node class is built by Slicer's
real ``parameterNodeWrapper`` code of v5.8.1 and v5.10.0, and the Sample Data call is bound to the real
``registerCustomSampleDataSource`` signature of both tags.

Set ``RQ_SLICER_GIT`` to a git clone (or mirror) of Slicer/Slicer that has the tags ``v5.8.1`` and ``v5.10.0``.
The files are read with ``git show TAG:PATH`` into a temporary folder (nothing of Slicer is kept in this
repository) and ``Testing/slicer_source_check.py`` runs on each tag in a fresh interpreter (its docstring says
exactly what is stood in for: the Qt/CTK names, a spin box and a table view).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SLICER_GIT = os.environ.get("RQ_SLICER_GIT")
TAGS = ("v5.8.1", "v5.10.0")
WRAPPER_DIR = "Base/Python/slicer/parameterNodeWrapper"

pytestmark = pytest.mark.skipif(not SLICER_GIT, reason="set RQ_SLICER_GIT to a Slicer/Slicer git clone with tags "
                                                      "v5.8.1 and v5.10.0 to check against Slicer's own code")


def git(*args) -> str:
    return subprocess.run(["git", "-C", SLICER_GIT, *args], check=True, capture_output=True, text=True).stdout


def export(tag: str, folder: Path) -> Path:
    """Slicer's parameterNodeWrapper package and SampleData.py at ``tag``, written under ``folder``."""
    names = git("ls-tree", "--name-only", f"{tag}:{WRAPPER_DIR}").split()
    assert "wrapper.py" in names and "serializers.py" in names, f"{tag}: no parameterNodeWrapper package"
    for path in [f"{WRAPPER_DIR}/{n}" for n in names if n.endswith(".py")] + [
            "Modules/Scripted/SampleData/SampleData.py"]:
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(git("show", f"{tag}:{path}"), encoding="utf-8")
    return folder


@pytest.fixture(scope="module", params=TAGS)
def slicer_source(request, tmp_path_factory):
    return request.param, export(request.param, tmp_path_factory.mktemp(request.param.replace(".", "_")))


@pytest.fixture(scope="module")
def checked(slicer_source):
    tag, source = slicer_source
    done = subprocess.run([sys.executable, str(ROOT / "Testing" / "slicer_source_check.py"), str(source)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return tag, json.loads(done.stdout.strip().splitlines()[-1])


def test_parameter_node_builds_with_slicers_wrapper(checked):
    tag, out = checked
    fields = [n.target.id for n in next(c for c in ast.parse((ROOT / "RegistrationQuality" / "RegistrationQuality.py")
                                                              .read_text(encoding="utf-8")).body
                                        if isinstance(c, ast.ClassDef) and c.name == "RegistrationQualityParameterNode").body
              if isinstance(n, ast.AnnAssign)]
    assert out["fields"] == sorted(fields)
    assert out["defaults"] == {"fixedSegmentation": None, "useThreshold": True, "percentile": 95.0,
                               "resultStatus": "", "fixedThreshold": [0.0, 0.0]}
    assert out["union_round_trips"] == {"segmentation": True, "labelmap": True, "none": True}
    assert out["union_rejects_scalar_volume"].startswith("TypeError")
    assert out["threshold_round_trip"] == [1.5, 65.6875]
    assert out["within_range_rejects"].startswith("ValueError")
    # the annotation the module had: Slicer's own wrapper cannot build it (the error)
    assert "Unable to write value 'None'" in out["union_without_none"]


def test_gui_connection_with_slicers_wrapper(checked):
    """connectGui returns None at v5.8.1 and the tag at v5.10.0; the module's connection (one wrapper, one
    connection, tag from connectParametersToGui) behaves the same on both, and two connections (the module's old
    setup()+enter()) write the spin box's rounded value back into the node."""
    tag, out = checked
    assert out["connectGui_returns"] == ("None" if tag == "v5.8.1" else "0")
    assert out["two_connections_value"] == 1.23
    assert out["module_connection"] == {
        "same_wrapper": True, "connections_after_setup_and_enter": 1, "value_set_from_code": 1.23456,
        "spin_box_shows": 1.23, "user_edit_reaches_node": 3.5, "connections_after_exit": 0,
        "edit_after_exit_ignored": 3.5, "panel_observer_after_exit": 0, "connections_after_reenter": 1,
        "spin_box_after_reenter": 3.5, "connections_after_scene_close": 0, "table_after_scene_close": None}


def test_sample_data_call_binds_to_the_real_signature(slicer_source, ctx):
    from test_module_panel import REGISTER_SAMPLE_DATA_PARAMETERS, SAMPLE_CASE, sample_data_registration

    tag, source = slicer_source
    tree = ast.parse((source / "Modules/Scripted/SampleData/SampleData.py").read_text(encoding="utf-8"))
    logic = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "SampleDataLogic")
    function = next(n for n in logic.body if isinstance(n, ast.FunctionDef) and n.name == "registerCustomSampleDataSource")
    parameters = tuple(a.arg for a in function.args.args)
    assert parameters == REGISTER_SAMPLE_DATA_PARAMETERS  # the recorded copy the always-on test uses
    if (SAMPLE_CASE / "case.json").is_file():
        args, _layers = sample_data_registration(ctx, parameters)
        assert set(args) <= set(parameters) and "loadFileType" not in args
