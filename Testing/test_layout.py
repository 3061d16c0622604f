"""Extension layout: CMake lists match the files, the library stays Qt-free, the module file is thin, ruff clean."""

from __future__ import annotations

import ast
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = ROOT / "RegistrationQuality"
LIB_DIR = MODULE_DIR / "RegistrationQualityLib"
SAMPLE_CASE = ROOT / "Resources" / "SampleCase"

# The library's modules (one concern each); every one must exist and be listed in the module's CMakeLists.
LIBRARY_FILES = ["__init__.py", "__main__.py", "errors.py", "context.py", "io.py", "cli.py", "resample.py",
                 "metrics.py", "surface.py", "ndv.py", "heatmap.py", "elastix.py",
                 "landmarks.py", "segmentation.py", "rendering.py", "deformation.py",
                 "similarity.py", "transforms.py", "kernels.py", "kernels_bspline.py", "segment_kernels.py", "evaluate.py", "cohort.py", "samplecase.py",
                 "commands.py", "measures.py", "checks.py", "profiles.py",
                 "report/__init__.py",
                 "report/folder.py", "report/rows.py", "report/style.py", "report/markup.py", "report/charts.py",
                 "report/case_page.py", "report/cohort_page.py", "report/cohort_data.py", "report/cohort_script.py",
                 "report/review_page.py", "cohort_stats.py", "report/surface_section.py"]


# ---------------------------------------------------------------------------------------------------
# CMake
# ---------------------------------------------------------------------------------------------------
def cmake_sets(path: Path) -> dict:
    """``set(NAME v1 v2 ...)`` blocks of a CMake file (comments removed, ${VAR} of earlier sets expanded)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|#[^\n]*', lambda m: m.group(0) if m.group(0).startswith('"') else "",
                  path.read_text(encoding="utf-8"))
    values: dict = {}
    for name, body in re.findall(r"\bset\(\s*(\w+)\s+(.*?)\)", text, flags=re.S):
        items = re.findall(r'"[^"]*"|\S+', body)
        items = [item.strip('"') for item in items]
        expanded = []
        for item in items:
            for var, val in values.items():
                item = item.replace("${" + var + "}", " ".join(val))
            expanded.append(item)
        values[name] = expanded
    return values


def test_cmake_sets_parser():
    """The parser the layout tests rely on, on a made-up snippet (comments, quotes, variables)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "CMakeLists.txt"
        p.write_text('set(A Foo)\n# set(B nope)\nset(B\n  ${A}.py  # comment\n  "x y#z"\n  )\n', encoding="utf-8")
        assert cmake_sets(p) == {"A": ["Foo"], "B": ["Foo.py", "x y#z"]}


def module_cmake() -> dict:
    return cmake_sets(MODULE_DIR / "CMakeLists.txt")


def test_module_cmake_lists_existing_files():
    sets = module_cmake()
    listed = sets["MODULE_PYTHON_SCRIPTS"] + sets["MODULE_PYTHON_RESOURCES"]
    assert "RegistrationQuality.py" in listed
    missing = [f for f in listed if not (MODULE_DIR / f).is_file()]
    assert not missing, f"listed in RegistrationQuality/CMakeLists.txt but missing: {missing}"
    text = (MODULE_DIR / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "slicerMacroBuildScriptedModule" in text
    assert re.search(r"slicer_add_python_unittest\(\s*SCRIPT\s+\$\{MODULE_NAME\}\.py\s*\)", text)


def test_every_library_file_is_listed_and_exists():
    scripts = set(module_cmake()["MODULE_PYTHON_SCRIPTS"])
    on_disk = {f"RegistrationQualityLib/{p.relative_to(LIB_DIR).as_posix()}" for p in LIB_DIR.rglob("*.py")}
    expected = {f"RegistrationQualityLib/{name}" for name in LIBRARY_FILES}
    assert not (expected - on_disk), f"library modules not written yet: {sorted(expected - on_disk)}"
    assert not (on_disk - scripts), f"library files missing from MODULE_PYTHON_SCRIPTS: {sorted(on_disk - scripts)}"
    assert not (expected - scripts), f"MODULE_PYTHON_SCRIPTS lacks {sorted(expected - scripts)}"


def test_module_resources_are_listed():
    """Every file under RegistrationQuality/Resources is installed (listed as a resource)."""
    resources = set(module_cmake()["MODULE_PYTHON_RESOURCES"])
    on_disk = {p.relative_to(MODULE_DIR).as_posix() for p in (MODULE_DIR / "Resources").rglob("*") if p.is_file()}
    assert on_disk <= resources, f"not listed: {sorted(on_disk - resources)}"
    assert "Resources/UI/RegistrationQuality.ui" in resources
    assert "Resources/Icons/RegistrationQuality.png" in resources


def test_sample_case_files_are_listed():
    """The sample case is installed with the extension: the CMake list equals the folder's files."""
    listed = module_cmake()["RQ_SAMPLE_CASE_FILES"]
    on_disk = sorted(p.relative_to(SAMPLE_CASE).as_posix() for p in SAMPLE_CASE.rglob("*")
                     if p.is_file() and "__pycache__" not in p.parts)
    assert sorted(listed) == on_disk


def test_extension_metadata():
    top = cmake_sets(ROOT / "CMakeLists.txt")
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS"):
        assert top.get(key) and all(top[key]), f"{key} is not set in CMakeLists.txt"
    assert top["EXTENSION_CATEGORY"] == ["Registration"]
    text = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    assert re.search(r"add_subdirectory\(\s*RegistrationQuality\s*\)", text)
    assert re.search(r"project\(\s*RegistrationQuality\s*\)", text)
    # the icon and screenshot URLs name files of this repository
    for key in ("EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        for url in " ".join(top[key]).split():  # Slicer's convention: space-separated URLs in one string
            relative = url.split("/main/", 1)[1]
            assert (ROOT / relative).is_file(), f"{key} points to {relative}, which is not in the repository"


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_icons_are_128_png():
    assert png_size(ROOT / "RegistrationQuality.png") == (128, 128)
    assert png_size(MODULE_DIR / "Resources" / "Icons" / "RegistrationQuality.png") == (128, 128)


# ---------------------------------------------------------------------------------------------------
# The library never uses Slicer's GUI or application globals
# ---------------------------------------------------------------------------------------------------
FORBIDDEN_MODULES = ("qt", "ctk", "slicer.util", "slicer.ScriptedLoadableModule", "ScriptedLoadableModule",
                     "slicer.app", "slicer.mrmlScene", "slicer.modules", "slicer.parameterNodeWrapper", "slicer.i18n",
                     "PythonQt", "__main__")
FORBIDDEN_SLICER_ATTRIBUTES = ("app", "mrmlScene", "modules", "util", "ScriptedLoadableModule", "parameterNodeWrapper",
                               "i18n")


def _forbidden_module(name: str) -> bool:
    return any(name == m or name.startswith(m + ".") for m in FORBIDDEN_MODULES)


def forbidden_uses(source: str, filename: str = "<string>") -> list[str]:
    """Qt/GUI imports and Slicer application globals used by Python source (AST scan, aliases followed)."""
    tree = ast.parse(source, filename)
    problems = []
    slicer_names = {"slicer"}  # names bound to the slicer package (import slicer as s)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _forbidden_module(alias.name):
                    problems.append(f"line {node.lineno}: import {alias.name}")
                if alias.name == "slicer" and alias.asname:
                    slicer_names.add(alias.asname)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if _forbidden_module(node.module):
                problems.append(f"line {node.lineno}: from {node.module} import ...")
            elif node.module == "slicer":
                for alias in node.names:
                    if alias.name in FORBIDDEN_SLICER_ATTRIBUTES or alias.name == "*":
                        problems.append(f"line {node.lineno}: from slicer import {alias.name}")
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                if _forbidden_module(node.args[0].value):
                    problems.append(f"line {node.lineno}: {name}('{node.args[0].value}')")
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in slicer_names
                and node.attr in FORBIDDEN_SLICER_ATTRIBUTES):
            problems.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
              and len(node.args) >= 2 and isinstance(node.args[0], ast.Name) and node.args[0].id in slicer_names
              and isinstance(node.args[1], ast.Constant) and node.args[1].value in FORBIDDEN_SLICER_ATTRIBUTES):
            problems.append(f"line {node.lineno}: getattr({node.args[0].id}, '{node.args[1].value}')")
    return problems


@pytest.mark.parametrize("snippet", [
    "import qt", "import ctk", "import slicer.util", "from slicer.util import arrayFromVolume",
    "from slicer import util", "from slicer.ScriptedLoadableModule import *", "import slicer\nslicer.app.processEvents()",
    "import slicer\nscene = slicer.mrmlScene", "import slicer\nslicer.modules.volumes.logic()",
    "import slicer as s\ns.mrmlScene.Clear()", "import slicer\nslicer.util.getNode('x')",
    "import importlib\nimportlib.import_module('qt')", "import slicer\ngetattr(slicer, 'mrmlScene')",
    "def f():\n    from qt import QTimer", "from slicer import *",
])
def test_scanner_flags_forbidden_uses(snippet):
    assert forbidden_uses(snippet), f"not flagged: {snippet!r}"


@pytest.mark.parametrize("snippet", [
    "import slicer\nscene = slicer.vtkMRMLScene()", "import slicer\nslicer.vtkSlicerVolumesLogic()",
    "def f(slicer_module):\n    return slicer_module.mrmlScene", "from vtkmodules.util.numpy_support import vtk_to_numpy",
    "import SimpleITK as sitk\nsitk.ReadImage('x')", "from .io import read_image",
])
def test_scanner_allows_vtk_classes_and_parameters(snippet):
    assert forbidden_uses(snippet) == []


def test_library_is_qt_free_and_uses_no_application_globals():
    files = sorted(LIB_DIR.rglob("*.py"))
    assert len(files) >= 6
    problems = {}
    for path in files:
        found = forbidden_uses(path.read_text(encoding="utf-8"), str(path))
        if found:
            problems[path.relative_to(ROOT).as_posix()] = found
    assert not problems, f"RegistrationQualityLib uses Slicer GUI/application globals: {problems}"


def test_library_imports_without_slicer_gui_in_a_fresh_interpreter():
    """Importing every library module pulls in neither qt nor ctk (nor the Slicer application)."""
    modules = sorted("RegistrationQualityLib." + ".".join(p.relative_to(LIB_DIR).with_suffix("").parts)
                     for p in LIB_DIR.rglob("*.py") if p.stem != "__main__")
    modules = [m[: -len(".__init__")] if m.endswith(".__init__") else m for m in modules]
    assert "RegistrationQualityLib.report.folder" in modules
    code = ("import importlib, sys\n"
            f"for m in {modules!r}:\n"
            "    importlib.import_module(m)\n"
            "bad = [m for m in ('qt', 'ctk', 'slicer.ScriptedLoadableModule') if m in sys.modules]\n"
            "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == ""


# ---------------------------------------------------------------------------------------------------
# The Slicer module file: parse only (it imports slicer's GUI, unavailable headless)
# ---------------------------------------------------------------------------------------------------
def module_tree():
    return ast.parse((MODULE_DIR / "RegistrationQuality.py").read_text(encoding="utf-8"), "RegistrationQuality.py")


def test_module_file_has_the_four_scripted_classes():
    classes = {n.name: [b.id if isinstance(b, ast.Name) else ast.unparse(b) for b in n.bases]
               for n in module_tree().body if isinstance(n, ast.ClassDef)}
    assert "ScriptedLoadableModule" in classes["RegistrationQuality"]
    assert "ScriptedLoadableModuleWidget" in classes["RegistrationQualityWidget"]
    assert "ScriptedLoadableModuleLogic" in classes["RegistrationQualityLogic"]
    assert "ScriptedLoadableModuleTest" in classes["RegistrationQualityTest"]


def test_module_file_does_no_work_at_import():
    """Top level: docstring, imports, constants, functions and classes only (no calls, no library import)."""
    tree = module_tree()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            assert not any(n.startswith("RegistrationQualityLib") for n in names), (
                f"line {node.lineno}: the library is imported lazily inside the logic, not at module load")
            continue
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # docstring
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            continue
        pytest.fail(f"line {node.lineno}: statement executed at import: {ast.unparse(node)[:80]}")


def test_module_logic_builds_the_context_from_the_application():
    source = (MODULE_DIR / "RegistrationQuality.py").read_text(encoding="utf-8")
    assert "Context.from_application(slicer)" in source
    assert "registerCustomSampleDataSource" in source


def test_names_the_module_file_uses_from_the_library_exist():
    """Every ``from RegistrationQualityLib.x import name`` / ``rq.attr`` in the module file resolves."""
    tree = module_tree()
    lib_names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("RegistrationQualityLib"):
            for alias in node.names:
                lib_names[alias.asname or alias.name] = (node.module, alias.name)
    assert lib_names, "the module file does not use the library"
    import importlib

    # names also bound to something else somewhere in the file (a local variable) are not checked for attributes
    rebound = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    rebound |= {a.arg for n in ast.walk(tree) if isinstance(n, ast.arguments) for a in n.args + n.kwonlyargs}

    for local, (module, name) in lib_names.items():
        mod = importlib.import_module(module)
        target = getattr(mod, name, None)
        if target is None:  # a submodule (from RegistrationQualityLib import io)
            target = importlib.import_module(f"{module}.{name}")
        if local in rebound:
            continue
        # attributes used on it (e.g. io.load_volume, rq_evaluate.EvaluationInputs)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == local:
                assert hasattr(target, node.attr), f"{module}.{name}.{node.attr} does not exist"


def test_ui_file_has_the_widgets_the_module_uses():
    import xml.etree.ElementTree as ET

    ui = ET.parse(MODULE_DIR / "Resources" / "UI" / "RegistrationQuality.ui")
    names = {w.get("name") for w in ui.iter("widget")}
    used = set(re.findall(r"self\.ui\.(\w+)", (MODULE_DIR / "RegistrationQuality.py").read_text(encoding="utf-8")))
    assert used, "the widget uses no .ui widget"
    assert used <= names, f"widgets used but not in the .ui: {sorted(used - names)}"


# ---------------------------------------------------------------------------------------------------
# Lint
# ---------------------------------------------------------------------------------------------------
def test_ruff_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    out = subprocess.run([ruff, "check", "--no-cache", str(ROOT)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_moved_names_keep_their_old_import_paths():
    """The report package and the commands module re-export what scripts, the module file and docs import."""
    from RegistrationQualityLib import commands, evaluate, report, samplecase
    from RegistrationQualityLib.report import case_page, cohort_page, folder, rows

    assert report.write_report is folder.write_report and report.render_html is case_page.render_html
    assert report.metrics_rows is rows.metrics_rows and report.summary_html is cohort_page.summary_html
    for name in report.__all__:
        assert hasattr(report, name), name
    for name in ("inputs_from_args", "summary_lines", "run_evaluate_cli", "run_demo_cli", "batch_main", "demo_cases",
                 "DEMO_LIMITS"):
        assert getattr(evaluate, name) is getattr(commands, name), name
    assert evaluate.sample_case_folder is samplecase.sample_case_folder
    with pytest.raises(AttributeError):
        evaluate.no_such_name  # noqa: B018
    # the one sample-case finder: the repository's Resources/SampleCase from the source tree
    assert samplecase.find_sample_case() == SAMPLE_CASE
    assert samplecase.read_case_spec(SAMPLE_CASE)["registrations"]


# -- the library's import graph ---------------------------------------------------------------------------------
def module_name(path: Path) -> str:
    """Dotted name inside the library: ``io``, ``report.folder``, ``report`` (a package's __init__)."""
    parts = list(path.relative_to(LIB_DIR).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sibling_imports(path: Path) -> set:
    """The library modules a library file imports (relative imports anywhere in the file, deferred ones too)."""
    parts = module_name(path).split(".") if module_name(path) else []
    is_package = path.name == "__init__.py"
    modules = {module_name(p) for p in LIB_DIR.rglob("*.py")}
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom) or node.level == 0:
            continue
        base = parts if is_package else parts[:-1]
        base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
        target = ".".join(base + ([node.module] if node.module else []))
        for alias in node.names:  # "from . import io" names a module; "from .io import x" the module io
            candidate = f"{target}.{alias.name}" if target else alias.name
            out.add(candidate if candidate in modules else target)
    out.discard(module_name(path))
    out.discard("")
    return out


def import_cycles(graph: dict) -> list:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_import_cycle_finder_finds_cycles():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_library_import_graph_is_acyclic():
    graph = {}
    for path in LIB_DIR.rglob("*.py"):
        graph[module_name(path)] = sibling_imports(path)
    assert "transforms" in graph and "io" in graph["transforms"]
    # PEP 562 re-exports of names that moved to commands (evaluate.__getattr__): not a dependency of evaluate
    graph["evaluate"] = graph["evaluate"] - {"commands"}
    assert import_cycles(graph) == []


def test_builtin_profiles_are_installed_and_packaged():
    """The tolerance profiles (package data) are in the module's CMake resources and pyproject's package-data."""
    resources = set(module_cmake()["MODULE_PYTHON_RESOURCES"])
    on_disk = {p.relative_to(MODULE_DIR).as_posix() for p in (LIB_DIR / "profiles").glob("*.json")}
    assert on_disk and on_disk <= resources, f"not listed: {sorted(on_disk - resources)}"
    assert 'RegistrationQualityLib = ["profiles/*.json"]' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")


def test_generated_bspline_kernels_are_up_to_date():
    """kernels_bspline.py is what scripts/gen_bspline_kernels.py writes (regenerate after editing the script)."""
    import importlib.util

    script = LIB_DIR.parents[1] / "scripts" / "gen_bspline_kernels.py"
    spec = importlib.util.spec_from_file_location("gen_bspline_kernels", script)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert (LIB_DIR / "kernels_bspline.py").read_text() == gen.source()
