"""Landmark TRE: point files, matching by label, analytic transforms (rigid, affine, B-spline, grid), scene outputs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from RegistrationQualityLib import io, transforms
from RegistrationQualityLib import landmarks as lmk
from RegistrationQualityLib.errors import BadInputError

from conftest import OBLIQUE, make_image, rotation_matrix, run_elastix_tool

FLIP = np.array([-1.0, -1.0, 1.0])  # LPS <-> RAS


def _vtk_matrix(m4):
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    vm = vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            vm.SetElement(r, c, float(m4[r][c]))
    return vm


def _linear_node(ctx, matrix3, translation, name="T"):
    """A linear transform node whose FromParent (resampling, fixed -> moving) is x -> M x + t (RAS)."""
    m4 = np.eye(4)
    m4[:3, :3], m4[:3, 3] = matrix3, translation
    node = ctx.add_node("vtkMRMLLinearTransformNode", name)
    node.SetMatrixTransformFromParent(_vtk_matrix(m4))
    return node


def _random_points(n, seed=1, scale=40.0):
    return np.random.default_rng(seed).uniform(-scale, scale, size=(n, 3))


def _labels(n):
    return [f"L{i:02d}" for i in range(n)]


# ---------------------------------------------------------------------------------------------------
# elastix / transformix point files
# ---------------------------------------------------------------------------------------------------
def test_elastix_point_file_is_lps_and_labelled_by_one_based_index(tmp_path):
    text = "point\n3\n1.25 2 3\n-4 5e1 6\n0.5\t-0.25   7\n"
    lm = lmk.parse_elastix_points(text, "pts.txt")
    assert lm.labels == ["1", "2", "3"]
    np.testing.assert_array_equal(lm.ras, [[-1.25, -2, 3], [4, -50, 6], [-0.5, 0.25, 7]])
    (tmp_path / "pts.txt").write_text(text)
    via_io = io.read_landmarks(tmp_path / "pts.txt")  # io dispatches .txt starting with "point" here
    np.testing.assert_array_equal(via_io.ras, lm.ras)
    assert via_io.labels == lm.labels


def test_elastix_index_file_needs_and_uses_the_image_geometry(tmp_path):
    image = make_image(np.zeros((6, 7, 8), np.float32), spacing=(0.5, 1.5, 2.0), origin=(3, -4, 5), direction=OBLIQUE)
    text = "index\n2\n1.4 2.6 3\n0 0 0\n"
    (tmp_path / "idx.txt").write_text(text)
    with pytest.raises(BadInputError, match=r"idx\.txt: an 'index' point file holds voxel indices"):
        io.read_landmarks(tmp_path / "idx.txt")
    lm = lmk.read_elastix_points(tmp_path / "idx.txt", image=image)
    expected = [image.TransformIndexToPhysicalPoint((1, 3, 3)), image.TransformIndexToPhysicalPoint((0, 0, 0))]
    np.testing.assert_allclose(lm.ras, np.array(expected) * FLIP, atol=1e-12)
    # the same by hand: origin + D * diag(spacing) * rounded index, LPS -> RAS
    by_hand = np.array([3, -4, 5]) + OBLIQUE @ (np.array([1, 3, 3]) * [0.5, 1.5, 2.0])
    np.testing.assert_allclose(lm.ras[0], by_hand * FLIP, atol=1e-12)


def test_transformix_output_points_take_output_point(tmp_path):
    text = (
        "Point\t0\t; InputIndex = [ 3 3 2 ]\t; InputPoint = [ 1.250000 2.000000 3.000000 ]\t; "
        "OutputIndexFixed = [ 2 2 5 ]\t; OutputPoint = [ 2.750000 0.000000 6.000000 ]\t; "
        "Deformation = [ 1.500000 -2.000000 3.000000 ]\n"
        "Point\t1\t; InputIndex = [ 27 6 5 ]\t; InputPoint = [ -4.000000 50.000000 6.000000 ]\t; "
        "OutputIndexFixed = [ 26 5 8 ]\t; OutputPoint = [ -2.500000 48.000000 9.000000 ]\t; "
        "Deformation = [ 1.500000 -2.000000 3.000000 ]\n"
    )
    (tmp_path / "outputpoints.txt").write_text(text)
    lm = io.read_landmarks(tmp_path / "outputpoints.txt")
    assert lm.labels == ["1", "2"]  # point n -> label n+1, as the input point file's labels
    np.testing.assert_array_equal(lm.ras, [[-2.75, 0, 6], [2.5, -48, 9]])
    inputs = lmk.parse_elastix_points(text, "out", field_name="InputPoint")
    np.testing.assert_array_equal(inputs.ras, [[-1.25, -2, 3], [4, -50, 6]])


@pytest.mark.parametrize(
    "text, message",
    [
        ("point\n3\n1 2 3\n4 5 6\n7\n", r"f\.txt: declares 3 points but holds 7 numbers"),
        ("point\n2\n1 2\n4 5\n", r"f\.txt: 2 points of 2 coordinates; 3D landmarks are needed"),
        ("point\nthree\n1 2 3\n", r"f\.txt: point count 'three' is not an integer"),
        ("point\n1\n1 x 3\n", r"f\.txt: point 1: 'x' is not a number"),
        ("point\n1\n1 nan 3\n", r"f\.txt: point 1: coordinate 'nan' is not finite"),
        ("point\n0\n", r"f\.txt: no landmarks in the file"),
        ("Point\t0\t; InputPoint = [ 1 2 3 ]\n", r"f\.txt: line 1: no 'OutputPoint = \[ \.\.\. \]'"),
        ("Point\t0\t; OutputPoint = [ 1 2 ]\n", r"f\.txt: line 1: OutputPoint has 2 coordinates"),
    ],
)
def test_bad_elastix_point_files(tmp_path, text, message):
    (tmp_path / "f.txt").write_text(text)
    with pytest.raises(BadInputError, match=message) as err:
        io.read_landmarks(tmp_path / "f.txt")
    assert "\n" not in str(err.value)


ELASTIX_AFFINE = """(Transform "AffineTransform")
(NumberOfParameters 12)
(TransformParameters {params})
(CenterOfRotationPoint {center})
(InitialTransformParametersFileName "NoInitialTransform")
(HowToCombineTransforms "Compose")
(FixedImageDimension 3)
(MovingImageDimension 3)
(FixedInternalImagePixelType "float")
(MovingInternalImagePixelType "float")
(Size 10 10 10)
(Index 0 0 0)
(Spacing {spacing})
(Origin {origin})
(Direction {direction})
(UseDirectionCosines "true")
(ResampleInterpolator "FinalBSplineInterpolator")
(FinalBSplineInterpolationOrder 3)
(Resampler "DefaultResampler")
(DefaultPixelValue 0)
(ResultImageFormat "nii")
(ResultImagePixelType "float")
"""


@pytest.mark.elastix
@pytest.mark.skipif(shutil.which("transformix") is None, reason="transformix not installed")
def test_transformix_points_agree_with_our_reader_and_analytic_affine(ctx, tmp_path):
    a = rotation_matrix((1, -2, 0.5), 35.0) @ np.diag([1.1, 0.9, 1.2])
    t, c = np.array([2.0, -3.0, 4.5]), np.array([10.0, 5.0, -2.0])
    spacing, origin, direction = (0.8, 1.5, 2.0), (3.0, -4.0, 5.0), OBLIQUE
    (tmp_path / "tp.txt").write_text(ELASTIX_AFFINE.format(
        params=" ".join(f"{v:.17g}" for v in list(a.ravel()) + list(t)), center=" ".join(map(str, c)),
        spacing=" ".join(map(str, spacing)), origin=" ".join(map(str, origin)),
        direction=" ".join(f"{v:.17g}" for v in direction.T.ravel()),  # elastix lists the direction column-major
    ))
    lps = _random_points(5, seed=3)
    (tmp_path / "pts.txt").write_text("point\n5\n" + "\n".join(" ".join(f"{v:.10f}" for v in p) for p in lps))
    (tmp_path / "idx.txt").write_text("index\n2\n1.4 2.6 3\n7 0 9\n")
    for name in ("pts", "idx"):
        (tmp_path / name).mkdir()
        run_elastix_tool(["transformix", "-def", str(tmp_path / f"{name}.txt"), "-tp", str(tmp_path / "tp.txt"),
                        "-out", str(tmp_path / name)], check=True, capture_output=True, timeout=60)
    out = io.read_landmarks(tmp_path / "pts" / "outputpoints.txt")
    expected_lps = (a @ (lps - c).T).T + c + t
    assert out.labels == io.read_landmarks(tmp_path / "pts.txt").labels == ["1", "2", "3", "4", "5"]
    np.testing.assert_allclose(out.lps, expected_lps, atol=1e-5)  # transformix prints 6 decimals
    # index files: our rounding and geometry equal transformix's InputPoint
    image = make_image(np.zeros((10, 10, 10), np.float32), spacing=spacing, origin=origin, direction=direction)
    ours = lmk.read_elastix_points(tmp_path / "idx.txt", image=image)
    theirs = lmk.read_elastix_points(tmp_path / "idx" / "outputpoints.txt", field_name="InputPoint")
    np.testing.assert_allclose(ours.ras, theirs.ras, atol=1e-5)
    # and TRE of the analytic affine (as a Slicer node) against transformix's output points is ~0
    node = _linear_node(ctx, FLIP[:, None] * a * FLIP[None, :], FLIP * (t + c - a @ c))
    result = lmk.compute_tre(io.read_landmarks(tmp_path / "pts.txt"), out, node)
    assert result.summary("after")["max_mm"] < 2e-5
    assert result.summary("before")["max_mm"] > 1.0


# ---------------------------------------------------------------------------------------------------
# TRE with analytic linear transforms
# ---------------------------------------------------------------------------------------------------
def _pair_with_known_errors(matrix3, translation, n=8, seed=1):
    """Fixed points f, known residuals e, moving points m = M f + t - e  =>  T(f) - m = e."""
    f = _random_points(n, seed)
    e = np.random.default_rng(seed + 100).normal(0, 2.0, size=(n, 3))
    m = (matrix3 @ f.T).T + translation - e
    return f, m, e


def test_rigid_large_rotation_tre_is_the_known_residual(ctx):
    rot = rotation_matrix((0.3, -1, 2), 150.0)
    t = np.array([12.0, -7.0, 30.0])
    f, m, e = _pair_with_known_errors(rot, t)
    node = _linear_node(ctx, rot, t)
    result = lmk.compute_tre(io.Landmarks(_labels(8), f), io.Landmarks(_labels(8), m), node, fixed_space_variant=True)
    np.testing.assert_allclose(result.after_mm, np.linalg.norm(e, axis=1), atol=1e-9)
    np.testing.assert_allclose(result.error_vectors_ras, e, atol=1e-9)
    np.testing.assert_allclose(result.before_mm, np.linalg.norm(f - m, axis=1), atol=1e-12)
    # rigid: the fixed-space variant has the same lengths (|R^-1 e| = |e|)
    np.testing.assert_allclose(result.fixed_space_mm, np.linalg.norm(e, axis=1), atol=1e-9)
    assert not result.outside_domain.any()
    d = result.as_dict()
    norms = np.linalg.norm(e, axis=1)
    assert d["after"]["mean_mm"] == pytest.approx(norms.mean(), abs=1e-9)
    assert d["after"]["std_mm"] == pytest.approx(np.sqrt(np.mean((norms - norms.mean()) ** 2)), abs=1e-9)  # population
    assert d["after"]["median_mm"] == pytest.approx(np.sort(norms)[3:5].mean(), abs=1e-9)
    assert d["after"]["max_mm"] == pytest.approx(norms.max(), abs=1e-9)
    s = np.sort(norms)  # type-7 percentile by hand: position 0.95 * (n - 1) = 6.65
    assert d["after"]["p95_mm"] == pytest.approx(s[6] + 0.65 * (s[7] - s[6]), abs=1e-9)
    assert d["after"]["count"] == d["before"]["count"] == 8
    assert d["unmatched"] == {"fixed_only": [], "moving_only": []}
    assert [p["label"] for p in d["points"]] == _labels(8)
    json.dumps(d)  # plain JSON


def test_scaling_affine_after_and_fixed_space_variant(ctx):
    a = np.diag([1.3, 0.7, 1.6]) @ rotation_matrix((1, 1, 0), 20.0)
    t = np.array([-5.0, 4.0, 2.0])
    f, m, e = _pair_with_known_errors(a, t, n=6, seed=7)
    node = _linear_node(ctx, a, t)
    result = lmk.compute_tre(io.Landmarks(_labels(6), f), io.Landmarks(_labels(6), m), node, fixed_space_variant=True)
    np.testing.assert_allclose(result.after_mm, np.linalg.norm(e, axis=1), atol=1e-9)
    # f - T^-1(m) = f - A^-1 (m - t) = A^-1 e: different from |e| for a scaling transform
    expected_fixed_space = np.linalg.norm(np.linalg.solve(a, e.T).T, axis=1)
    np.testing.assert_allclose(result.fixed_space_mm, expected_fixed_space, atol=1e-9)
    assert not np.allclose(expected_fixed_space, result.after_mm, atol=1e-3)
    d = result.as_dict()
    assert d["fixed_space_after"]["mean_mm"] == pytest.approx(expected_fixed_space.mean(), abs=1e-9)
    assert "T^-1" in d["fixed_space_after"]["definition"]
    assert d["points"][0]["fixed_space_after_mm"] == pytest.approx(expected_fixed_space[0], abs=1e-9)
    assert "fixed_space_after" not in lmk.compute_tre(io.Landmarks(_labels(6), f), io.Landmarks(_labels(6), m),
                                                      node).as_dict()


def test_no_transform_means_identity(ctx):
    f, m, _ = _pair_with_known_errors(np.eye(3), np.zeros(3), n=4)
    result = lmk.compute_tre(io.Landmarks(_labels(4), f), io.Landmarks(_labels(4), m))
    np.testing.assert_allclose(result.after_mm, result.before_mm)
    assert result.as_dict()["transform"] is None


def test_lps_and_ras_files_of_the_same_points_give_identical_results(ctx, tmp_path):
    rot = rotation_matrix((1, 0, 1), 100.0)
    t = np.array([3.0, 1.0, -2.0])
    f, m, e = _pair_with_known_errors(rot, t, n=5, seed=11)
    labels = ["apex", "carina", "T4", "L-1", "x y"]

    def write_csv(path, pts, system):
        pts = pts * FLIP if system == "LPS" else pts
        rows = [f"{lab},{p[0]:.17g},{p[1]:.17g},{p[2]:.17g}\n" for lab, p in zip(labels, pts)]
        path.write_text("label,x,y,z\n" + "".join(rows))

    def write_mrk(path, pts):  # LPS, Slicer's default for .mrk.json
        cps = [{"label": lab, "position": (p * FLIP).tolist()} for lab, p in zip(labels, pts)]
        markup = {"type": "Fiducial", "coordinateSystem": "LPS", "controlPoints": cps}
        path.write_text(json.dumps({"markups": [markup]}))

    def write_fcsv(path, pts):  # RAS
        lines = ["# Markups fiducial file version = 4.11", "# CoordinateSystem = 0"]
        lines += [f"vtkMRMLMarkupsFiducialNode_{i},{p[0]:.17g},{p[1]:.17g},{p[2]:.17g},0,0,0,1,1,1,0,{lab},,"
                  for i, (lab, p) in enumerate(zip(labels, pts))]
        path.write_text("\n".join(lines) + "\n")

    write_csv(tmp_path / "f_lps.csv", f, "LPS")
    write_csv(tmp_path / "f_ras.csv", f, "RAS")
    write_mrk(tmp_path / "m.mrk.json", m)
    write_fcsv(tmp_path / "m.fcsv", m)
    node = _linear_node(ctx, rot, t)
    results = [
        lmk.compute_tre(io.read_landmarks(tmp_path / "f_lps.csv"), io.read_landmarks(tmp_path / "m.fcsv"), node),
        lmk.compute_tre(tmp_path / "f_ras.csv", tmp_path / "m.mrk.json", node, coordinate_system="RAS"),  # paths
    ]
    a, b = (r.as_dict() for r in results)
    for key in ("before", "after"):
        for stat, value in a[key].items():
            assert b[key][stat] == pytest.approx(value, abs=1e-9)
    assert [p["label"] for p in a["points"]] == [p["label"] for p in b["points"]] == labels
    np.testing.assert_allclose(results[0].after_mm, np.linalg.norm(e, axis=1), atol=1e-9)
    np.testing.assert_allclose(results[1].after_mm, np.linalg.norm(e, axis=1), atol=1e-9)
    # the same RAS file read as LPS is a different point set: the option is honoured
    wrong = lmk.compute_tre(tmp_path / "f_ras.csv", tmp_path / "m.mrk.json", node, coordinate_system="LPS")
    assert not np.allclose(wrong.after_mm, results[0].after_mm)


def test_matching_is_by_label_not_order(ctx):
    rot = rotation_matrix((0, 0, 1), 90.0)
    f, m, e = _pair_with_known_errors(rot, np.zeros(3), n=7, seed=5)
    labels = _labels(7)
    node = _linear_node(ctx, rot, np.zeros(3))
    perm = np.random.default_rng(2).permutation(7)
    shuffled = lmk.compute_tre(io.Landmarks(labels, f), io.Landmarks([labels[i] for i in perm], m[perm]), node)
    assert shuffled.labels == labels  # fixed order
    np.testing.assert_allclose(shuffled.after_mm, np.linalg.norm(e, axis=1), atol=1e-9)
    # matching by order would have given other numbers
    by_order = lmk.compute_tre(io.Landmarks(labels, f), io.Landmarks(labels, m[perm]), node)
    assert not np.allclose(by_order.after_mm, shuffled.after_mm)


def test_unmatched_labels_are_reported_on_both_sides(ctx):
    f = io.Landmarks(["a", "b", "c", "only-fixed"], _random_points(4, 1))
    m = io.Landmarks(["c", "new", "a", "b", "other"], _random_points(5, 2))
    result = lmk.compute_tre(f, m)
    assert result.labels == ["a", "b", "c"]
    assert result.as_dict()["unmatched"] == {"fixed_only": ["only-fixed"], "moving_only": ["new", "other"]}
    assert result.unmatched_warning() == ("landmarks: 3 matched by label, 1 only in the fixed landmarks "
                                          "(only-fixed); 2 only in the moving landmarks (new, other): those are "
                                          "left out of TRE")
    np.testing.assert_allclose(result.before_mm[2], np.linalg.norm(f.ras[2] - m.ras[0]))
    with pytest.raises(BadInputError, match=r"^landmarks: no label in common between fixed \(a, b\) and moving \(x\)$"):
        lmk.compute_tre(io.Landmarks(["a", "b"], f.ras[:2]), io.Landmarks(["x"], m.ras[:1]))


def test_duplicate_and_empty_sets_are_bad_input(ctx):
    pts = _random_points(3)
    with pytest.raises(BadInputError, match=r"^moving landmarks \(m\.csv\): duplicate landmark label\(s\) b; "):
        lmk.compute_tre(io.Landmarks(["a", "b", "c"], pts), io.Landmarks(["a", "b", "b"], pts, source="m.csv"))
    with pytest.raises(BadInputError, match=r"duplicate landmark label\(s\) a"):  # " a" and "a" are one label
        lmk.compute_tre(io.Landmarks(["a", " a", "c"], pts), io.Landmarks(["a", "b", "c"], pts))
    with pytest.raises(BadInputError, match=r"^fixed landmarks: no landmarks \(empty set\)$"):
        lmk.compute_tre(io.Landmarks([], np.zeros((0, 3))), io.Landmarks(["a"], pts[:1]))
    empty = ctx.add_node("vtkMRMLMarkupsFiducialNode", "moving pts")
    with pytest.raises(BadInputError, match=r"^moving landmarks \(node 'moving pts'\): no landmarks \(empty set\)$"):
        lmk.compute_tre(io.Landmarks(["a"], pts[:1]), empty)
    with pytest.raises(BadInputError, match=r"^transform: not a transform node$"):
        lmk.compute_tre(io.Landmarks(["a"], pts[:1]), io.Landmarks(["a"], pts[:1]), empty)


def test_markups_nodes_are_read_in_world_space_and_not_modified(ctx):
    rot = rotation_matrix((2, 1, 0), 60.0)
    t = np.array([1.0, 2.0, 3.0])
    f, m, e = _pair_with_known_errors(rot, t, n=4, seed=9)
    fixed_node = io.landmarks_to_node(ctx, io.Landmarks(_labels(4), f), "F")
    shift = np.array([0.0, 0.0, 25.0])  # the moving node lives under a translation: world = local + shift
    moving_node = io.landmarks_to_node(ctx, io.Landmarks(_labels(4), m - shift), "M")
    parent = ctx.add_node("vtkMRMLLinearTransformNode", "shift")
    m4 = np.eye(4)
    m4[:3, 3] = shift
    parent.SetMatrixTransformToParent(_vtk_matrix(m4))
    moving_node.SetAndObserveTransformNodeID(parent.GetID())
    before = io.landmarks_from_node(moving_node, world=False).ras.copy()
    result = lmk.compute_tre(fixed_node, moving_node, _linear_node(ctx, rot, t))
    np.testing.assert_allclose(result.after_mm, np.linalg.norm(e, axis=1), atol=1e-9)
    np.testing.assert_array_equal(io.landmarks_from_node(moving_node, world=False).ras, before)
    assert moving_node.GetTransformNodeID() == parent.GetID()
    # a control point without a position is skipped and reported, its partner becomes unmatched
    fixed_node.UnsetNthControlPointPosition(1)
    d = lmk.compute_tre(fixed_node, moving_node, _linear_node(ctx, rot, t)).as_dict()
    assert [p["label"] for p in d["points"]] == ["L00", "L02", "L03"]
    assert d["skipped"] == [{"label": "L01", "side": "fixed"}]
    assert d["unmatched"] == {"fixed_only": [], "moving_only": ["L01"]}


# ---------------------------------------------------------------------------------------------------
# Deformable: B-spline (.tfm written by SimpleITK) and grid transforms with analytic displacement
# ---------------------------------------------------------------------------------------------------
def _linear_bspline_tfm(path, a_lps, b_lps):
    """A cubic ITK B-spline whose coefficients sample u(x) = A x + b (LPS) at the control points.

    Cubic B-splines reproduce linear functions, so inside the transform domain the displacement is exactly
    A x + b; outside it ITK gives 0 and Slicer decays towards 0 (partial support). Returns the SimpleITK
    transform and its domain box in continuous coefficient-grid index (1 .. n-2).
    """
    import SimpleITK as sitk

    image = make_image(np.zeros((12, 10, 8), np.float32), spacing=(2.0, 2.5, 3.0), origin=(-10, 5, -20),
                       direction=OBLIQUE)
    tx = sitk.BSplineTransformInitializer(image, [3, 4, 3], 3)
    fp = np.array(tx.GetFixedParameters())
    size, origin, spacing, direction = fp[0:3].astype(int), fp[3:6], fp[6:9], fp[9:18].reshape(3, 3)
    k, j, i = np.meshgrid(*(np.arange(s) for s in size[::-1]), indexing="ij")
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1).astype(float)
    nodes = origin + (direction @ (ijk * spacing).T).T
    disp = nodes @ np.asarray(a_lps).T + b_lps
    tx.SetParameters(tuple(np.concatenate([disp[:, 0], disp[:, 1], disp[:, 2]]).tolist()))
    sitk.WriteTransform(tx, str(path))
    return tx, (origin, spacing, direction, size)


def _index_to_lps(geom, idx):
    origin, spacing, direction, _ = geom
    return origin + direction @ (np.asarray(idx, float) * spacing)


def test_bspline_tre_is_analytic_inside_and_flagged_outside(ctx, tmp_path):
    a = np.array([[0.05, -0.02, 0.01], [0.03, 0.04, -0.05], [-0.01, 0.02, 0.06]])
    b = np.array([1.5, -2.0, 0.75])
    tx, geom = _linear_bspline_tfm(tmp_path / "bspline.tfm", a, b)
    node = transforms.load_transform(ctx, tmp_path / "bspline.tfm")
    assert node.IsA("vtkMRMLBSplineTransformNode")
    size = geom[3]
    rng = np.random.default_rng(4)
    inside_idx = rng.uniform(1.05, size - 2 - 0.05, size=(6, 3))  # domain: coefficient index 1 .. n-2
    outside_idx = np.array([[0.4, 2.0, 2.0], [2.0, size[1] - 1.5, 2.0], [-3.0, -3.0, -3.0]])
    f_lps = np.array([_index_to_lps(geom, i) for i in np.vstack([inside_idx, outside_idx])])
    t_lps = f_lps + f_lps @ a.T + b  # analytic T(f) inside the domain
    e = rng.normal(0, 1.0, size=f_lps.shape)
    m_lps = t_lps - e * FLIP  # RAS residual e
    labels = _labels(len(f_lps))
    result = lmk.compute_tre(io.Landmarks(labels, f_lps * FLIP), io.Landmarks(labels, m_lps * FLIP), node)
    np.testing.assert_array_equal(result.outside_domain, [False] * 6 + [True] * 3)
    np.testing.assert_allclose(result.after_mm[:6], np.linalg.norm(e[:6], axis=1), atol=1e-6)
    np.testing.assert_allclose(result.error_vectors_ras[:6], e[:6], atol=1e-6)
    # and equal to SimpleITK's own transform of the points (independent B-spline evaluation)
    sitk_mapped = np.array([tx.TransformPoint(tuple(p)) for p in f_lps[:6]])
    np.testing.assert_allclose(result.fixed_mapped_ras[:6], sitk_mapped * FLIP, atol=1e-6)
    assert result.as_dict()["outside_domain_count"] == 3
    assert [p["outside_domain"] for p in result.as_dict()["points"]][-3:] == [True, True, True]
    # fixed-space variant goes through Slicer's iterative B-spline inverse: T(T^-1(m)) == m, residual reported
    mapped_back = lmk._map_points(lmk._world_transforms(node)[0], result.moving_mapped_ras[:6])
    np.testing.assert_allclose(mapped_back, result.moving_ras[:6], atol=1e-3)
    np.testing.assert_allclose(result.inverse_residual_mm[:6], np.linalg.norm(mapped_back - result.moving_ras[:6],
                                                                              axis=1), atol=1e-12)
    d = lmk.compute_tre(io.Landmarks(labels, f_lps * FLIP), io.Landmarks(labels, m_lps * FLIP), node,
                        fixed_space_variant=True).as_dict()
    assert d["points"][0]["inverse_residual_mm"] == pytest.approx(result.inverse_residual_mm[0], abs=1e-12)
    assert d["fixed_space_after"]["max_inverse_residual_mm"] == pytest.approx(result.inverse_residual_mm.max())


def test_domain_is_checked_where_each_component_receives_the_point(ctx, tmp_path):
    """B-spline under a parent translation: T = FromWorld = B o (parent FromParent); the flag follows the shift."""
    a, b = np.zeros((3, 3)), np.array([1.0, 2.0, 3.0])
    _, geom = _linear_bspline_tfm(tmp_path / "bs.tfm", a, b)
    node = transforms.load_transform(ctx, tmp_path / "bs.tfm")
    centre_lps = _index_to_lps(geom, (geom[3] - 1) / 2.0)
    half_extent = np.abs(_index_to_lps(geom, geom[3] - 2) - centre_lps).max() + 10.0  # certainly beyond the domain
    shift = np.array([0.0, 0.0, 2 * half_extent])
    parent = _linear_node(ctx, np.eye(3), shift, "parent")  # parent FromParent: x -> x + shift (RAS)
    node.SetAndObserveTransformNodeID(parent.GetID())
    f_ras = np.array([centre_lps * FLIP, centre_lps * FLIP - shift])
    labels = ["shifted out", "shifted in"]
    result = lmk.compute_tre(io.Landmarks(labels, f_ras), io.Landmarks(labels, f_ras), node)
    np.testing.assert_array_equal(result.outside_domain, [True, False])
    # inside: constant displacement b (LPS) after the parent's shift
    np.testing.assert_allclose(result.fixed_mapped_ras[1], f_ras[1] + shift + b * FLIP, atol=1e-6)


def _linear_grid_node(ctx, a_ras, b_ras):
    """Oblique vtkOrientedGridTransform (FromParent) with displacement A x + b sampled at its nodes (RAS).

    Trilinear interpolation reproduces a linear field exactly inside the grid; outside, Slicer keeps the
    edge displacement. Returns the node and a function giving grid index -> RAS position.
    """
    import slicer
    from vtkmodules.util.numpy_support import numpy_to_vtk
    from vtkmodules.vtkCommonDataModel import vtkImageData

    dims, spacing, origin = (6, 5, 7), np.array([4.0, 3.0, 2.5]), np.array([-10.0, 8.0, -6.0])
    direction = rotation_matrix((1, 2, -1), 40.0)
    k, j, i = np.meshgrid(*(np.arange(s) for s in dims[::-1]), indexing="ij")
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1).astype(float)
    pos = origin + (direction @ (ijk * spacing).T).T
    disp = pos @ np.asarray(a_ras).T + b_ras
    grid = vtkImageData()
    grid.SetDimensions(*dims)
    grid.SetSpacing(*spacing)
    grid.SetOrigin(*origin)
    grid.GetPointData().SetScalars(numpy_to_vtk(np.ascontiguousarray(disp), deep=1))
    transform = slicer.vtkOrientedGridTransform()
    transform.SetDisplacementGridData(grid)
    transform.SetGridDirectionMatrix(_vtk_matrix(np.block([[direction, np.zeros((3, 1))], [np.zeros((1, 3)), 1]])))
    transform.SetInterpolationModeToLinear()
    node = ctx.add_node("vtkMRMLGridTransformNode", "grid")
    node.SetAndObserveTransformFromParent(transform)
    return node, (lambda idx: origin + direction @ (np.asarray(idx, float) * spacing)), np.array(dims)


def test_grid_transform_tre_is_analytic_and_flags_points_off_the_grid(ctx):
    a = np.array([[0.04, 0.01, 0.0], [-0.02, 0.05, 0.03], [0.0, -0.03, 0.02]])
    b = np.array([-1.0, 0.5, 2.0])
    node, to_ras, dims = _linear_grid_node(ctx, a, b)
    rng = np.random.default_rng(8)
    idx = np.vstack([rng.uniform(0.1, dims - 1.1, size=(5, 3)), [[-0.5, 1, 1], [1, 1, dims[2] - 0.5]]])
    f = np.array([to_ras(i) for i in idx])
    e = rng.normal(0, 1.5, size=f.shape)
    m = f + f @ a.T + b - e
    labels = _labels(len(f))
    result = lmk.compute_tre(io.Landmarks(labels, f), io.Landmarks(labels, m), node, fixed_space_variant=True)
    np.testing.assert_array_equal(result.outside_domain, [False] * 5 + [True] * 2)
    # VTK's grid interpolation reproduces the linear field to ~2e-6 mm (measured), not to double precision
    np.testing.assert_allclose(result.after_mm[:5], np.linalg.norm(e[:5], axis=1), atol=1e-5)
    # fixed-space variant: f - T^-1(m) with T(x) = (I + A) x + b exactly inside the grid
    expected = f - np.linalg.solve(np.eye(3) + a, (m - b).T).T
    np.testing.assert_allclose(result.fixed_space_mm[:5], np.linalg.norm(expected[:5], axis=1), atol=1e-3)


def test_inverted_grid_component_is_checked_at_its_output(ctx):
    """A grid stored as ToParent: FromParent is its inverse, whose grid lies in the inverse's output space."""
    a, b = np.zeros((3, 3)), np.array([0.0, 0.0, 30.0])  # pure shift by 30 mm along S
    node, to_ras, dims = _linear_grid_node(ctx, a, b)
    transform = node.GetTransformFromParent()
    node.SetAndObserveTransformToParent(transform)  # now FromParent = inverse: x -> x - b
    centre = to_ras((dims - 1) / 2.0)
    f = np.array([centre + b, centre])  # the first lands on the grid centre, the second 30 mm away
    result = lmk.compute_tre(io.Landmarks(["on", "off"], f), io.Landmarks(["on", "off"], f), node)
    np.testing.assert_allclose(result.fixed_mapped_ras[0], centre, atol=1e-4)
    # checking the inverse's input instead would give the opposite flags
    from RegistrationQualityLib.transforms import _outside_support

    np.testing.assert_array_equal(_outside_support(transform, f), [True, False])
    np.testing.assert_array_equal(result.outside_domain, [False, True])


# ---------------------------------------------------------------------------------------------------
# Scene outputs
# ---------------------------------------------------------------------------------------------------
@pytest.fixture
def affine_result(ctx):
    a = np.diag([1.2, 0.9, 1.1]) @ rotation_matrix((0, 1, 1), 45.0)
    t = np.array([4.0, -3.0, 8.0])
    f, m, e = _pair_with_known_errors(a, t, n=5, seed=21)
    node = _linear_node(ctx, a, t)
    return lmk.compute_tre(io.Landmarks(_labels(5), f), io.Landmarks(_labels(5), m), node, True), node, a, t, e


def test_table_node_has_a_row_per_landmark_and_summary_rows(ctx, affine_result):
    result, *_ = affine_result
    rows = io.table_node_to_rows(lmk.tre_to_table_node(ctx, result))
    assert [r["kind"] for r in rows] == ["landmark"] * 5 + ["summary"] * 6
    assert [r["label"] for r in rows] == _labels(5) + ["mean", "std", "median", "p95", "max", "count"]
    np.testing.assert_allclose([r["after_mm"] for r in rows[:5]], result.after_mm)
    np.testing.assert_allclose([[r["error_R_mm"], r["error_A_mm"], r["error_S_mm"]] for r in rows[:5]],
                               result.error_vectors_ras)
    summary = {r["label"]: r for r in rows[5:]}
    assert summary["mean"]["after_mm"] == pytest.approx(result.after_mm.mean())
    assert summary["max"]["before_mm"] == pytest.approx(result.before_mm.max())
    assert summary["count"]["after_mm"] == 5
    assert summary["p95"]["fixed_space_after_mm"] == pytest.approx(np.percentile(result.fixed_space_mm, 95))


def test_mapped_landmarks_node_holds_the_moving_points_in_fixed_space(ctx, affine_result):
    result, node, a, t, _ = affine_result
    expected = np.linalg.solve(a, (result.moving_ras - t).T).T  # T^-1(m)
    from_result = io.landmarks_from_node(lmk.mapped_landmarks_node(ctx, result))
    np.testing.assert_allclose(from_result.ras, expected, atol=1e-9)
    assert from_result.labels == result.labels
    moving = io.Landmarks(result.labels + ["extra"], np.vstack([result.moving_ras, [[1.0, 2.0, 3.0]]]))
    mapped = lmk.mapped_landmarks_node(ctx, moving, node, name="mapped")
    assert mapped.GetNumberOfControlPoints() == 6 and mapped.GetParentTransformNode() is None
    np.testing.assert_allclose(io.landmarks_from_node(mapped).ras[:5], expected, atol=1e-9)


@pytest.mark.parametrize("space", ["fixed", "moving"])
def test_error_vectors_model_has_one_line_per_landmark_coloured_by_tre(ctx, affine_result, space):
    from vtkmodules.util.numpy_support import vtk_to_numpy

    result, *_ = affine_result
    model = lmk.error_vectors_node(ctx, result, space=space)
    poly = model.GetPolyData()
    assert model.IsA("vtkMRMLModelNode") and poly.GetNumberOfLines() == 5
    pts = vtk_to_numpy(poly.GetPoints().GetData())
    lines = vtk_to_numpy(poly.GetLines().GetConnectivityArray()).reshape(5, 2)
    start, end = (result.fixed_ras, result.moving_mapped_ras) if space == "fixed" else (result.fixed_mapped_ras,
                                                                                        result.moving_ras)
    np.testing.assert_allclose(pts[lines[:, 0]], start, atol=1e-9)
    np.testing.assert_allclose(pts[lines[:, 1]], end, atol=1e-9)
    if space == "moving":  # exactly the error vectors
        np.testing.assert_allclose(pts[lines[:, 0]] - pts[lines[:, 1]], result.error_vectors_ras, atol=1e-9)
    scalars = vtk_to_numpy(poly.GetPointData().GetArray("TRE_mm"))
    np.testing.assert_allclose(scalars[lines[:, 0]], result.after_mm)
    display = model.GetDisplayNode()
    assert display.GetScalarVisibility() and display.GetActiveScalarName() == "TRE_mm"
    assert display.GetScalarRange()[1] == pytest.approx(result.after_mm.max())
    assert display.GetColorNodeID() is not None and display.GetVisibility2D()


def test_error_vectors_as_tubes_keep_the_colouring(ctx, affine_result):
    from vtkmodules.util.numpy_support import vtk_to_numpy

    result, *_ = affine_result
    poly = lmk.error_vectors_node(ctx, result, space="moving", tube_radius_mm=0.5).GetPolyData()
    assert poly.GetNumberOfPolys() + poly.GetNumberOfStrips() > 0
    scalars = vtk_to_numpy(poly.GetPointData().GetArray("TRE_mm"))
    assert scalars.min() == pytest.approx(result.after_mm.min())
    assert scalars.max() == pytest.approx(result.after_mm.max())
    # every tube vertex lies within the radius of its segment
    pts = vtk_to_numpy(poly.GetPoints().GetData())
    start, end = result.fixed_mapped_ras, result.moving_ras
    d = np.min([_segment_distance(pts, s, e) for s, e in zip(start, end)], axis=0)
    assert d.max() == pytest.approx(0.5, abs=1e-6)


def _segment_distance(p, a, b):
    ab = b - a
    t = np.clip((p - a) @ ab / (ab @ ab), 0, 1)
    return np.linalg.norm(p - (a + t[:, None] * ab), axis=1)


ELASTIX_BSPLINE = """(Transform "BSplineTransform")
(NumberOfParameters {n})
(TransformParameters {params})
(InitialTransformParametersFileName "{initial}")
(HowToCombineTransforms "Compose")
(FixedImageDimension 3)
(MovingImageDimension 3)
(FixedInternalImagePixelType "float")
(MovingInternalImagePixelType "float")
(Size 10 10 10)
(Index 0 0 0)
(Spacing 1 1 1)
(Origin 0 0 0)
(Direction 1 0 0 0 1 0 0 0 1)
(UseDirectionCosines "true")
(GridSize {size})
(GridIndex 0 0 0)
(GridSpacing {spacing})
(GridOrigin {origin})
(GridDirection 1 0 0 0 1 0 0 0 1)
(BSplineTransformSplineOrder 3)
(UseCyclicTransform "false")
(ResampleInterpolator "FinalBSplineInterpolator")
(FinalBSplineInterpolationOrder 3)
(Resampler "DefaultResampler")
(DefaultPixelValue 0)
(ResultImageFormat "nii")
(ResultImagePixelType "float")
"""


@pytest.mark.elastix
@pytest.mark.skipif(shutil.which("transformix") is None, reason="transformix not installed")
def test_elastix_affine_plus_bspline_chain_matches_transformix_and_flags_its_domain(ctx, tmp_path):
    """TRE of transformix's own output points through elastix.load_transform_parameters is ~0 inside the
    B-spline domain; points flagged outside are exactly those transformix leaves to the affine alone."""
    from RegistrationQualityLib import elastix

    a = rotation_matrix((0, 0, 1), 25.0) @ np.diag([1.1, 0.95, 1.05])
    t, c = np.array([3.0, -2.0, 1.0]), np.array([5.0, 5.0, 5.0])
    (tmp_path / "affine.txt").write_text(ELASTIX_AFFINE.format(
        params=" ".join(f"{v:.17g}" for v in list(a.ravel()) + list(t)), center="5 5 5", spacing="1 1 1",
        origin="0 0 0", direction="1 0 0 0 1 0 0 0 1"))
    size, spacing, origin = np.array([7, 6, 8]), np.array([6.0, 7.0, 5.0]), np.array([-12.0, -15.0, -10.0])
    coeffs = np.random.default_rng(12).normal(0, 1.5, size=3 * int(np.prod(size)))
    (tmp_path / "bspline.txt").write_text(ELASTIX_BSPLINE.format(
        n=coeffs.size, params=" ".join(f"{v:.17g}" for v in coeffs), initial=str(tmp_path / "affine.txt"),
        size=" ".join(map(str, size)), spacing=" ".join(map(str, spacing)), origin=" ".join(map(str, origin))))
    # fixed points (LPS): inside and outside the B-spline domain [origin + spacing, origin + (size - 2) spacing)
    # as seen after the affine, which is applied first
    rng = np.random.default_rng(13)
    targets = np.vstack([origin + spacing * rng.uniform(1.1, size - 2.1, size=(6, 3)),
                         origin + spacing * np.array([[0.5, 2, 2], [2, 2, size[2] - 1.5], [-2, -2, -2]])])
    f_lps = np.linalg.solve(a, (targets - c - t).T).T + c  # affine^-1(target)
    (tmp_path / "pts.txt").write_text(f"point\n{len(f_lps)}\n" + "".join(
        " ".join(f"{v:.10f}" for v in p) + "\n" for p in f_lps))
    run_elastix_tool(["transformix", "-def", str(tmp_path / "pts.txt"), "-tp", str(tmp_path / "bspline.txt"), "-out",
                    str(tmp_path)], check=True, capture_output=True, timeout=60)
    out = io.read_landmarks(tmp_path / "outputpoints.txt")
    node = elastix.load_transform_parameters(ctx, tmp_path / "bspline.txt")
    result = lmk.compute_tre(io.read_landmarks(tmp_path / "pts.txt"), out, node)
    np.testing.assert_array_equal(result.outside_domain, [False] * 6 + [True] * 3)
    assert result.after_mm[:6].max() < 1e-4  # transformix prints 6 decimals
    # outside: transformix applies the affine only (elastix B-spline gives no displacement there)
    np.testing.assert_allclose(out.lps[6:], targets[6:], atol=1e-5)
    assert result.before_mm.min() > 0.5


@pytest.mark.render
def test_error_vectors_render_in_a_3d_view_coloured_by_magnitude(ctx):
    """Slicer's model displayable manager draws the tubes; the worst error is red, the smallest blue-green."""
    import slicer
    import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  (registers the OpenGL render window)
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkRenderingCore import (
        vtkRenderer,
        vtkRenderWindow,
        vtkRenderWindowInteractor,
        vtkWindowToImageFilter,
    )

    f = np.array([[-20.0, 0, 0], [20, 0, 0], [0, 20, 0]])
    m = f + np.array([[5.0, 0, 0], [0, 10, 0], [0, 0, 15]])
    result = lmk.compute_tre(io.Landmarks(["a", "b", "c"], f), io.Landmarks(["a", "b", "c"], m))
    lmk.error_vectors_node(ctx, result, space="moving", tube_radius_mm=1.5)
    view = ctx.add_node("vtkMRMLViewNode", "View1")
    size = 200
    window = vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetSize(size, size)
    renderer = vtkRenderer()
    window.AddRenderer(renderer)
    interactor = vtkRenderWindowInteractor()
    interactor.SetRenderWindow(window)
    factory = slicer.vtkMRMLThreeDViewDisplayableManagerFactory.GetInstance()
    factory.SetMRMLApplicationLogic(ctx.app)
    if not factory.IsDisplayableManagerRegistered("vtkMRMLModelDisplayableManager"):
        factory.RegisterDisplayableManager("vtkMRMLModelDisplayableManager")
    managers = factory.InstantiateDisplayableManagers(renderer)
    managers.SetMRMLDisplayableNode(view)
    renderer.ResetCamera()
    window.Render()
    grab = vtkWindowToImageFilter()
    grab.SetInput(window)
    grab.ReadFrontBufferOff()
    grab.Update()
    pixels = vtk_to_numpy(grab.GetOutput().GetPointData().GetScalars()).reshape(size, size, -1)[..., :3].astype(int)
    colours = []
    for start, end in zip(result.fixed_mapped_ras, result.moving_ras):
        renderer.SetWorldPoint(*((start + end) / 2), 1.0)
        renderer.WorldToDisplay()
        x, y, _ = renderer.GetDisplayPoint()
        colours.append(pixels[int(round(y)), int(round(x))])  # grabbed rows are bottom first, as display y
    smallest, _, largest = colours  # TRE 5, 10, 15 mm on a 0..15 mm scale
    assert largest[0] > 200 and largest[1] < 60 and largest[2] < 60  # red
    assert smallest[0] < 60 and max(smallest[1], smallest[2]) > 150  # blue-green
    assert np.count_nonzero(pixels.max(axis=2) > 30) > 100  # something was drawn besides the three probes


# ---------------------------------------------------------------------------------------------------
# CLI: registration-quality evaluate --fixed-landmarks/--moving-landmarks
# ---------------------------------------------------------------------------------------------------
def test_evaluate_cli_reports_tre_matched_by_label(tmp_path):
    import SimpleITK as sitk

    from conftest import run_cli

    rng = np.random.default_rng(30)
    for name in ("fixed", "moving"):
        sitk.WriteImage(make_image(rng.normal(100, 10, (12, 12, 12)).astype(np.float32), spacing=(2.0, 2.0, 2.0),
                                   origin=(-11.0, -11.0, -11.0)), str(tmp_path / f"{name}.nrrd"))
    euler = sitk.Euler3DTransform((1.0, 2.0, -1.0), 1.2, -0.4, 2.0, (3.0, -2.0, 5.0))  # ~130° in total
    sitk.WriteTransform(euler, str(tmp_path / "rigid.tfm"))
    labels = ["A", "B", "C", "D"]
    f_lps = _random_points(4, seed=31, scale=10.0)
    e_lps = rng.normal(0, 1.0, size=(4, 3))
    m_lps = np.array([euler.TransformPoint(tuple(p)) for p in f_lps]) - e_lps
    (tmp_path / "fixed.csv").write_text("label,x,y,z\n" + "".join(
        f"{lab},{p[0]:.17g},{p[1]:.17g},{p[2]:.17g}\n" for lab, p in zip(labels + ["only-fixed"], np.vstack(
            [f_lps, [[1.0, 2.0, 3.0]]]))))
    cps = [{"label": lab, "position": p.tolist()} for lab, p in zip(labels[::-1], m_lps[::-1])]  # shuffled
    cps.append({"label": "only-moving", "position": [0.0, 0.0, 0.0]})
    (tmp_path / "moving.mrk.json").write_text(json.dumps(
        {"markups": [{"type": "Fiducial", "coordinateSystem": "LPS", "controlPoints": cps}]}))
    common = ["evaluate", "--fixed", "fixed.nrrd", "--moving", "moving.nrrd", "--transform", "rigid.tfm",
              "--fixed-landmarks", "fixed.csv", "--no-snapshots"]
    res = run_cli(*common, "--moving-landmarks", "moving.mrk.json", "--output", tmp_path / "out", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    rep = json.loads((tmp_path / "out" / "report.json").read_text())["landmarks"]
    assert [p["label"] for p in rep["points"]] == labels
    np.testing.assert_allclose([p["after_mm"] for p in rep["points"]], np.linalg.norm(e_lps, axis=1), atol=1e-6)
    np.testing.assert_allclose([p["before_mm"] for p in rep["points"]], np.linalg.norm(f_lps - m_lps, axis=1),
                               atol=1e-6)
    assert rep["after"]["mean_mm"] == pytest.approx(np.linalg.norm(e_lps, axis=1).mean(), abs=1e-6)
    assert set(rep["before"]) >= {"mean_mm", "std_mm", "median_mm", "p95_mm", "max_mm", "count"}
    assert rep["unmatched"] == {"fixed_only": ["only-fixed"], "moving_only": ["only-moving"]}
    warning = ("landmarks: 4 matched by label, 1 only in the fixed landmarks (only-fixed); 1 only in the moving "
               "landmarks (only-moving): those are left out of TRE")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert warning in report["warnings"]
    assert res.stderr == f"registration-quality: warning: {warning}\n"
    html = (tmp_path / "out" / "report.html").read_text()
    assert "only-fixed" in html and "only_in" not in html and "{'" not in html
    # duplicate labels: exit 2, one stderr line naming the file and the label
    (tmp_path / "dup.csv").write_text("label,x,y,z\nA,1,2,3\nB,4,5,6\nA,7,8,9\n")
    res = run_cli(*common, "--moving-landmarks", "dup.csv", "--output", tmp_path / "out2", cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [res.stderr.strip()] and "dup.csv" in res.stderr
    assert "duplicate landmark label(s) A" in res.stderr
