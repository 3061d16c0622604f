"""Fuzzing every parser we wrote (issue 11): mutated valid files either parse correctly or raise BadInputError.

Parsers: elastix TransformParameters (``elastix.read_parameter_file``, ``read_transform_chain``,
``load_transform_parameters`` into a scene), landmarks ``.mrk.json`` / ``.fcsv`` / CSV (``io.read_landmarks``),
elastix/transformix point files (``landmarks.parse_elastix_points``), the cohort manifest (``cohort.read_manifest``)
and the ``--threshold`` spec (``segmentation.parse_threshold_spec``).

Mutations of a valid seed: truncate, flip bytes, drop / duplicate / swap lines, replace a number by garbage, insert
random text; for ``.mrk.json`` also structural mutations (any JSON value in place of any part of the document). A
successful parse must satisfy the parser's contract (finite coordinates, unique labels, finite matrices, documented
value ranges); the unmutated seeds are checked to parse to their known values.

Budget: ``RQ_FUZZ_EXAMPLES`` examples per parser (default 150, a few seconds each). For a longer local run:
``RQ_FUZZ_EXAMPLES=5000 python -m pytest Testing/test_fuzz_parsers.py --hypothesis-show-statistics``.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from RegistrationQualityLib import cohort, elastix, io, landmarks, segmentation
from RegistrationQualityLib.errors import BadInputError
from RegistrationQualityLib.transforms import load_transform

EXAMPLES = int(os.environ.get("RQ_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("RQ_FUZZ_RANDOM"),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

GARBAGE = ["", "nan", "-inf", "1e999", "abc", "0x1F", "1,5", "--2", "1e", ".", "+", "１２", "1_0", "\x00", "\u00e9",
           "9" * 400, "-0", "1e-400", '"', "(", ")", "//", ";", ",", "[", "]", "{", "}", "#", "\t", "\r"]
_NUMBER = re.compile(rb"[-+]?\d+\.?\d*(?:[eE][-+]?\d+)?")

# -- mutations ------------------------------------------------------------------------------------------------
mutation = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("flip"), st.floats(0, 1), st.integers(1, 255)),
    st.tuples(st.just("drop_line"), st.floats(0, 1)),
    st.tuples(st.just("duplicate_line"), st.floats(0, 1)),
    st.tuples(st.just("swap_lines"), st.floats(0, 1), st.floats(0, 1)),
    st.tuples(st.just("number"), st.floats(0, 1), st.sampled_from(GARBAGE)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.text(max_size=12)),
)
mutations = st.lists(mutation, min_size=1, max_size=4)


def _at(fraction, n):
    return min(int(fraction * n), max(n - 1, 0))


def mutate(data: bytes, ops) -> bytes:
    for op in ops:
        kind = op[0]
        lines = data.splitlines(keepends=True)
        if kind == "truncate":
            data = data[: _at(op[1], len(data) + 1)]
        elif kind == "flip" and data:
            i = _at(op[1], len(data))
            data = data[:i] + bytes([data[i] ^ op[2]]) + data[i + 1:]
        elif kind == "drop_line" and lines:
            del lines[_at(op[1], len(lines))]
            data = b"".join(lines)
        elif kind == "duplicate_line" and lines:
            i = _at(op[1], len(lines))
            lines.insert(i, lines[i])
            data = b"".join(lines)
        elif kind == "swap_lines" and len(lines) > 1:
            i, j = _at(op[1], len(lines)), _at(op[2], len(lines))
            lines[i], lines[j] = lines[j], lines[i]
            data = b"".join(lines)
        elif kind == "number":
            found = list(_NUMBER.finditer(data))
            if found:
                m = found[_at(op[1], len(found))]
                data = data[: m.start()] + op[2].encode("utf-8") + data[m.end():]
        elif kind == "insert":
            i = _at(op[1], len(data) + 1)
            data = data[:i] + op[2].encode("utf-8", "surrogatepass") + data[i:]
    return data


@pytest.fixture(scope="module")
def work():
    folder = Path(tempfile.mkdtemp(prefix="rq-fuzz-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _outcome(call):
    """Run ``call``; BadInputError is an accepted outcome (checked to be one line), anything else propagates."""
    try:
        value = call()
    except BadInputError as exc:
        text = str(exc)
        assert text and "\n" not in text and "Traceback" not in text
        event("BadInputError")
        return None
    event("parsed")
    return value


# -- elastix TransformParameters --------------------------------------------------------------------------------
AFFINE = """// elastix TransformParameters written by a test
(Transform "AffineTransform")
(NumberOfParameters 12)
(TransformParameters 1.01 0.02 -0.01 0.0 0.98 0.03 0.01 0.0 1.02 2.5 -1.25 0.75)
(InitialTransformParametersFileName "TransformParameters.0.txt")
(HowToCombineTransforms "Compose")
(FixedImageDimension 3)
(MovingImageDimension 3)
(FixedInternalImagePixelType "float")
(Size 12 12 12)
(Index 0 0 0)
(Spacing 1.0000000000 1.0000000000 1.0000000000)
(Origin 0.0000000000 0.0000000000 0.0000000000)
(Direction 1.0 0.0 0.0 0.0 1.0 0.0 0.0 0.0 1.0)
(UseDirectionCosines "true")
(CenterOfRotationPoint 5.5 5.5 5.5)
(ResampleInterpolator "FinalBSplineInterpolator")
(DefaultPixelValue 0.000000)
"""
EULER = """(Transform "EulerTransform")
(NumberOfParameters 6)
(TransformParameters 0.05 -0.02 0.1 1 2 3)
(InitialTransformParametersFileName "NoInitialTransform")
(HowToCombineTransforms "Compose")
(FixedImageDimension 3)
(MovingImageDimension 3)
(CenterOfRotationPoint 1.0 2.0 3.0)
(ComputeZYX "false")
"""


def _bspline_text():
    coefficients = " ".join(f"{0.1 * math.sin(i):.4f}" for i in range(3 * 4 * 4 * 4))
    return f"""(Transform "BSplineTransform")
(NumberOfParameters 192)
(TransformParameters {coefficients})
(InitialTransformParametersFileName "NoInitialTransform")
(HowToCombineTransforms "Compose")
(FixedImageDimension 3)
(MovingImageDimension 3)
(GridSize 4 4 4)
(GridIndex 0 0 0)
(GridSpacing 5.0 5.0 5.0)
(GridOrigin -5.0 -5.0 -5.0)
(GridDirection 1 0 0 0 1 0 0 0 1)
(BSplineTransformSplineOrder 3)
(UseCyclicTransform "false")
"""


ELASTIX_SEEDS = {"affine-chain": AFFINE, "euler": EULER, "bspline": _bspline_text()}


def _check_chain(chain):
    assert chain, "an empty chain parsed"
    for comp in chain:
        if isinstance(comp, elastix.LinearComponent):
            assert comp.matrix.shape == (4, 4) and np.all(np.isfinite(comp.matrix))
        elif isinstance(comp, elastix.BSplineComponent):
            assert np.all(comp.size >= 4) and np.all(comp.spacing > 0)
            assert comp.coefficients.shape == (3, *comp.size[::-1])
            assert np.all(np.isfinite(comp.coefficients))
        else:
            assert Path(comp.path).is_file()


@FUZZ
@given(seed=st.sampled_from(sorted(ELASTIX_SEEDS)), ops=mutations, mutate_initial=st.booleans())
def test_fuzz_elastix_transform_parameters(work, fuzz_ctx, seed, ops, mutate_initial):
    folder = work / "elastix"
    folder.mkdir(exist_ok=True)
    initial = EULER.encode()
    (folder / "TransformParameters.0.txt").write_bytes(mutate(initial, ops) if mutate_initial else initial)
    path = folder / "TransformParameters.1.txt"
    path.write_bytes(mutate(ELASTIX_SEEDS[seed].encode(), ops))

    pf = _outcome(lambda: elastix.read_parameter_file(path))
    if pf is not None:
        assert "Transform" in pf.entries and all(isinstance(v, list) for v in pf.entries.values())
    chain = _outcome(lambda: elastix.read_transform_chain(path))
    if chain is not None:
        _check_chain(chain)
    before = fuzz_ctx.scene.GetNumberOfNodes()
    node = _outcome(lambda: load_transform(fuzz_ctx, path))
    if node is not None:
        assert chain is not None, "the node loaded but the chain did not parse"
        p = [0.0, 0.0, 0.0]
        node.GetTransformFromParent().TransformPoint([1.0, 2.0, 3.0], p)
        assert np.all(np.isfinite(p))
        fuzz_ctx.remove_nodes([node])
    assert fuzz_ctx.scene.GetNumberOfNodes() == before


@pytest.fixture(scope="module")
def fuzz_ctx():
    from RegistrationQualityLib.context import Context

    context = Context.headless()
    yield context
    context.scene.Clear(1)


# -- landmarks -----------------------------------------------------------------------------------------------
MRK_JSON = json.dumps({
    "@schema": "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/Schema/"
               "markups-schema-v1.0.3.json#",
    "markups": [{"type": "Fiducial", "coordinateSystem": "LPS", "coordinateUnits": "mm", "controlPoints": [
        {"id": "1", "label": "F-1", "position": [-12.5, 3.25, 40.0], "orientation": [-1, 0, 0, 0, -1, 0, 0, 0, 1],
         "selected": True, "locked": False, "visibility": True, "positionStatus": "defined"},
        {"id": "2", "label": "F-2", "position": [8.0, -2.0, 1e-3], "positionStatus": "defined"},
        {"id": "3", "label": "F-3", "position": [0, 0, 0], "positionStatus": "undefined"},
    ]}],
}, indent=2)
FCSV = """# Markups fiducial file version = 5.8
# CoordinateSystem = LPS
# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID
vtkMRMLMarkupsFiducialNode_0,-12.5,3.25,40,0,0,0,1,1,1,0,F-1,,vtkMRMLScalarVolumeNode1
vtkMRMLMarkupsFiducialNode_1,8,-2,0.001,0,0,0,1,1,1,0,F-2,,vtkMRMLScalarVolumeNode1
"""
CSV = "label,x,y,z\nF-1,-12.5,3.25,40\nF-2,8,-2,0.001\n\"F,3\",1e1,-0.5,7\n"
LANDMARK_SEEDS = {"seed.mrk.json": MRK_JSON, "seed.fcsv": FCSV, "seed.csv": CSV}


def _check_landmarks(lm):
    assert len(lm) >= 1 and len(lm.labels) == lm.ras.shape[0] and lm.ras.shape[1:] == (3,)
    assert len(set(lm.labels)) == len(lm.labels)
    assert np.all(np.isfinite(lm.ras))
    assert all(isinstance(label, str) for label in lm.labels)


@FUZZ
@given(name=st.sampled_from(sorted(LANDMARK_SEEDS)), ops=mutations)
def test_fuzz_landmark_files(work, name, ops):
    path = work / name
    path.write_bytes(mutate(LANDMARK_SEEDS[name].encode(), ops))
    lm = _outcome(lambda: io.read_landmarks(path))
    if lm is not None:
        _check_landmarks(lm)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)


def _json_paths(doc, path=()):
    yield path
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _json_paths(value, path + (key,))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from _json_paths(value, path + (i,))


@FUZZ
@given(where=st.floats(0, 1), value=json_values)
def test_fuzz_mrk_json_structure(work, where, value):
    """Any JSON value in place of any part of a valid markups document (type confusion, missing keys)."""
    doc = json.loads(MRK_JSON)
    paths = list(_json_paths(doc))
    path = paths[_at(where, len(paths))]
    if path:
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = value
    else:
        doc = value
    (work / "structure.mrk.json").write_text(json.dumps(doc), encoding="utf-8")
    lm = _outcome(lambda: io.read_landmarks(work / "structure.mrk.json"))
    if lm is not None:
        _check_landmarks(lm)


def test_landmark_seeds_parse_as_written(work):
    """The unmutated seeds parse to the known points (LPS files -> RAS), so the fuzzer starts from valid input."""
    expect_ras = {"F-1": [12.5, -3.25, 40.0], "F-2": [-8.0, 2.0, 0.001]}
    for name, text in LANDMARK_SEEDS.items():
        (work / name).write_text(text)
        lm = io.read_landmarks(work / name)
        for label, ras in expect_ras.items():
            np.testing.assert_allclose(lm.as_dict()[label], ras)
    assert io.read_landmarks(work / "seed.mrk.json").skipped == ["F-3"]
    np.testing.assert_allclose(io.read_landmarks(work / "seed.csv").as_dict()["F,3"], [-10.0, 0.5, 7.0])


# -- elastix / transformix point files -------------------------------------------------------------------------
POINTS = "point\n3\n-12.5 3.25 40\n8 -2 0.001\n1e1 -0.5 7\n"
OUTPUT_POINTS = (
    "Point\t0\t; InputIndex = [ 1 2 3 ]\t; InputPoint = [ -12.500000 3.250000 40.000000 ]\t; OutputIndexFixed = "
    "[ 1 2 3 ]\t; OutputPoint = [ -11.000000 4.000000 41.500000 ]\t; Deformation = [ 1.5 0.75 1.5 ]\n"
    "Point\t1\t; InputIndex = [ 5 6 7 ]\t; InputPoint = [ 8.000000 -2.000000 0.001000 ]\t; OutputIndexFixed = "
    "[ 5 6 7 ]\t; OutputPoint = [ 9.500000 -1.250000 1.501000 ]\t; Deformation = [ 1.5 0.75 1.5 ]\n"
)
POINT_SEEDS = {"input": POINTS, "output": OUTPUT_POINTS}


@FUZZ
@given(seed=st.sampled_from(sorted(POINT_SEEDS)), ops=mutations)
def test_fuzz_elastix_point_files(seed, ops):
    text = mutate(POINT_SEEDS[seed].encode(), ops).decode("utf-8", "replace")
    lm = _outcome(lambda: landmarks.parse_elastix_points(text, "points.txt"))
    if lm is not None:
        _check_landmarks(lm)


def test_point_seeds_parse_as_written():
    lm = landmarks.parse_elastix_points(POINTS, "points.txt")
    assert lm.labels == ["1", "2", "3"]
    np.testing.assert_allclose(lm.lps, [[-12.5, 3.25, 40], [8, -2, 0.001], [10, -0.5, 7]])
    out = landmarks.parse_elastix_points(OUTPUT_POINTS, "outputpoints.txt")
    assert out.labels == ["1", "2"]
    np.testing.assert_allclose(out.lps, [[-11, 4, 41.5], [9.5, -1.25, 1.501]])


# -- cohort manifest ---------------------------------------------------------------------------------------------
MANIFEST = (
    "case_id,fixed,moving,transform,fixed_landmarks,moving_landmarks,threshold,min_dice,max_tre\n"
    "case-01,c1/fixed.nrrd,c1/moving.nrrd,c1/TransformParameters.0.txt,c1/f.csv,c1/m.csv,300;2,0.8,2.5\n"
    "case-02,/data/c2/fixed.nii.gz,/data/c2/moving.nii.gz,,,,otsu,,\n"
    "case.03,\"c 3/fixed.nrrd\",\"c 3/moving.nrrd\",c3/t.tfm,,,,0.75,\n"
)


@FUZZ
@given(ops=mutations)
def test_fuzz_cohort_manifest(work, ops):
    path = work / "manifest.csv"
    path.write_bytes(mutate(MANIFEST.encode(), ops))
    cases = _outcome(lambda: cohort.read_manifest(path))
    if cases is not None:
        assert cases and len({c["case_id"] for c in cases}) == len(cases)
        for case in cases:
            assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", case["case_id"])
            assert case.get("fixed") and case.get("moving")
            assert set(case) <= set(cohort.COLUMNS) | {"line"}
            for key in cohort.PATH_COLUMNS:
                if key in case:
                    assert Path(case[key]).is_absolute()
            for key in cohort.NUMBER_COLUMNS:
                if key in case:
                    assert isinstance(case[key], float)


def test_manifest_seed_parses_as_written(work):
    (work / "manifest.csv").write_text(MANIFEST)
    cases = cohort.read_manifest(work / "manifest.csv")
    assert [c["case_id"] for c in cases] == ["case-01", "case-02", "case.03"]
    assert cases[0]["threshold"] == ["300", "2"] and cases[0]["min_dice"] == 0.8
    assert cases[2]["fixed"] == os.fspath(work.resolve() / "c 3" / "fixed.nrrd")


# -- --threshold spec ----------------------------------------------------------------------------------------------
@FUZZ
@given(text=st.one_of(
    st.text(max_size=24),
    st.builds(lambda a, b, sep: f"{a}{sep}{b}", st.sampled_from(["", "1", "-2.5", "1e3", "nan", " 7 "] + GARBAGE),
              st.sampled_from(["", "3", "1e999", "-1", ".5", "x"] + GARBAGE), st.sampled_from([":", "", "::", " : "])),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
))
def test_fuzz_threshold_spec(text):
    spec = _outcome(lambda: segmentation.parse_threshold_spec(text))
    if spec is not None:
        if spec.method == "otsu":
            assert text.strip().lower() == "otsu"
        else:
            assert spec.method == "range" and (spec.lower is not None or spec.upper is not None)
            for v in (spec.lower, spec.upper):
                assert v is None or math.isfinite(v)
            if spec.lower is not None and spec.upper is not None:
                assert spec.lower <= spec.upper


def test_threshold_seed_specs():
    assert segmentation.parse_threshold_spec("300").lower == 300.0
    s = segmentation.parse_threshold_spec(" -2.5 : 1e3 ")
    assert (s.method, s.lower, s.upper) == ("range", -2.5, 1000.0)
    assert segmentation.parse_threshold_spec(":4").upper == 4.0
    assert segmentation.parse_threshold_spec("OTSU").method == "otsu"
