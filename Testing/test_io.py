"""I/O layer: geometry round trips (oblique, flipped, anisotropic), formats, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from RegistrationQualityLib import io, transforms
from RegistrationQualityLib.errors import BadInputError

from conftest import FLIPPED, OBLIQUE, make_image, run_cli

LPS = np.diag([-1.0, -1.0, 1.0])


def expected_ijk_to_ras(image):
    d = np.array(image.GetDirection()).reshape(3, 3)
    m = np.eye(4)
    m[:3, :3] = LPS @ d @ np.diag(image.GetSpacing())
    m[:3, 3] = LPS @ np.array(image.GetOrigin())
    return m


@pytest.mark.parametrize("direction", [None, OBLIQUE, FLIPPED], ids=["axial", "oblique", "flipped"])
@pytest.mark.parametrize("ext", [".nrrd", ".nii.gz", ".mha"])
def test_volume_round_trip_keeps_geometry(ctx, tmp_path, direction, ext):
    rng = np.random.default_rng(1)
    arr = rng.integers(-1000, 3000, size=(5, 6, 7)).astype(np.int16)
    img = make_image(arr, spacing=(0.7, 1.3, 2.9), origin=(10.5, -20.25, 33.0), direction=direction)
    path = tmp_path / f"vol{ext}"
    sitk.WriteImage(img, str(path))

    node = io.load_volume(ctx, path)
    np.testing.assert_allclose(io.node_ijk_to_ras(node), expected_ijk_to_ras(img), atol=1e-5)
    # a voxel index maps to the same physical point as in SimpleITK (LPS -> RAS)
    ijk = (3, 1, 4)
    ras = io.node_ijk_to_ras(node) @ np.array([*ijk, 1.0])
    np.testing.assert_allclose(LPS @ ras[:3], img.TransformIndexToPhysicalPoint(ijk), atol=1e-5)

    back = io.volume_to_image(node)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), arr)
    np.testing.assert_allclose(back.GetSpacing(), img.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(back.GetOrigin(), img.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(back.GetDirection(), img.GetDirection(), atol=1e-6)

    # written by Slicer's storage node, read by SimpleITK: identical geometry
    out = tmp_path / "written.nrrd"
    io.save_node(node, out)
    again = sitk.ReadImage(str(out))
    np.testing.assert_allclose(again.GetDirection(), img.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(again.GetOrigin(), img.GetOrigin(), atol=1e-5)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(again), arr)


def test_dicom_series_folder(ctx, tmp_path):
    arr = (np.arange(4 * 5 * 6).reshape(4, 5, 6) * 10).astype(np.int16)
    img = make_image(arr, spacing=(0.9, 0.9, 3.0), origin=(-50, -60, 20))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series = "1.2.826.0.1.3680043.2.1125.1.1"
    for k in range(arr.shape[0]):  # GDCM's writer resets the C locale too: keep this test from leaking it
        sl = img[:, :, k]
        sl.SetMetaData("0020|000e", series)
        sl.SetMetaData("0020|0032", "\\".join(str(v) for v in img.TransformIndexToPhysicalPoint((0, 0, k))))
        sl.SetMetaData("0020|0037", "1\\0\\0\\0\\1\\0")
        sl.SetMetaData("0020|0013", str(k + 1))
        sl.SetMetaData("0008|0060", "MR")
        writer.SetFileName(str(tmp_path / f"s{k:03d}.dcm"))
        with io.locale_preserved():
            writer.Execute(sl)
    import locale

    before = locale.setlocale(locale.LC_ALL)
    node = io.load_volume(ctx, tmp_path)
    assert locale.setlocale(locale.LC_ALL) == before  # GDCM's setlocale("C") does not leak out of the reader
    back = io.volume_to_image(node)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), arr)
    np.testing.assert_allclose(back.GetSpacing(), (0.9, 0.9, 3.0), atol=1e-4)
    res = run_cli("info", tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["size"] == [6, 5, 4]
    np.testing.assert_allclose(back.GetOrigin(), (-50, -60, 20), atol=1e-4)


def test_labelmap_file_to_segmentation_one_segment_per_label(ctx, tmp_path):
    arr = np.zeros((6, 8, 10), np.uint8)
    arr[1:3, 2:5, 3:7] = 2
    arr[4, 5:7, 1:3] = 7
    img = make_image(arr, spacing=(1.0, 2.0, 3.0), direction=OBLIQUE)
    path = tmp_path / "labels.nii.gz"
    sitk.WriteImage(img, str(path))
    seg = io.load_segmentation(ctx, path)
    segmentation = seg.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 2
    names = sorted(segmentation.GetNthSegment(i).GetName() for i in range(2))
    assert names == ["2", "7"]
    lab = io.segmentation_to_labelmap_image(ctx, seg, reference_node=io.image_to_volume(ctx, img, "ref"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(lab), arr)


def test_float_labelmap_with_integer_values_is_accepted_and_fraction_is_refused(tmp_path):
    arr = np.zeros((3, 4, 5), np.float32)
    arr[1, 1, 1] = 3.0
    p = tmp_path / "ok.nrrd"
    sitk.WriteImage(make_image(arr), str(p))
    lab = io.read_labelmap(p)
    assert sitk.GetArrayFromImage(lab)[1, 1, 1] == 3
    arr[0, 0, 0] = 0.5
    p2 = tmp_path / "frac.nrrd"
    sitk.WriteImage(make_image(arr), str(p2))
    with pytest.raises(BadInputError, match=r"frac.nrrd: non-integer labelmap"):
        io.read_labelmap(p2)


def test_transform_file_round_trip_is_fromparent(ctx, tmp_path):
    t = sitk.Euler3DTransform((1.0, 2.0, 3.0), 0.1, -0.2, 0.3, (5.0, -4.0, 2.0))
    path = tmp_path / "rigid.tfm"
    sitk.WriteTransform(t, str(path))
    node = transforms.load_transform(ctx, path)
    p_lps = (10.0, 20.0, -5.0)
    expected_lps = np.array(t.TransformPoint(p_lps))
    got_ras = np.array(node.GetTransformFromParent().TransformPoint(list(LPS @ np.array(p_lps))))
    np.testing.assert_allclose(LPS @ got_ras, expected_lps, atol=1e-6)


def test_landmark_formats_and_coordinate_systems_agree(tmp_path):
    lps = {"A": (1.0, 2.0, 3.0), "B": (-4.5, 5.5, 6.0)}
    (tmp_path / "lps.mrk.json").write_text(json.dumps({"markups": [{"type": "Fiducial", "coordinateSystem": "LPS",
        "controlPoints": [{"label": k, "position": list(v)} for k, v in lps.items()]}]}))
    (tmp_path / "ras.mrk.json").write_text(json.dumps({"markups": [{"type": "Fiducial", "coordinateSystem": "RAS",
        "controlPoints": [{"label": k, "position": [-v[0], -v[1], v[2]]} for k, v in lps.items()]}]}))
    (tmp_path / "old.fcsv").write_text("# Markups fiducial file version = 4.6\n# CoordinateSystem = 0\n"
        "# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID\n"
        + "".join(f"vtkMRML_{i},{-v[0]},{-v[1]},{v[2]},0,0,0,1,1,1,0,{k},,\n" for i, (k, v) in enumerate(lps.items())))
    (tmp_path / "new.fcsv").write_text("# Markups fiducial file version = 5.0\n# CoordinateSystem = LPS\n"
        + "".join(f"{i},{v[0]},{v[1]},{v[2]},0,0,0,1,1,1,0,{k},,\n" for i, (k, v) in enumerate(lps.items())))
    (tmp_path / "pts.csv").write_text("label,x,y,z\n" + "".join(f"{k},{v[0]},{v[1]},{v[2]}\n" for k, v in lps.items()))
    for name in ("lps.mrk.json", "ras.mrk.json", "old.fcsv", "new.fcsv", "pts.csv"):
        lm = io.read_landmarks(tmp_path / name)
        assert lm.labels == ["A", "B"], name
        np.testing.assert_allclose(lm.lps, np.array(list(lps.values())), err_msg=name)


def test_landmarks_node_round_trip_matches_slicer_reader(ctx, tmp_path):
    lm = io.Landmarks(["p1", "p2"], np.array([[1.0, 2.0, 3.0], [4.0, -5.0, 6.0]]))
    node = io.landmarks_to_node(ctx, lm, "pts")
    path = tmp_path / "pts.mrk.json"
    io.save_node(node, path)
    back = io.read_landmarks(path)  # our parser on Slicer's writer (LPS)
    np.testing.assert_allclose(back.ras, lm.ras)
    nid = ctx.logic("Markups").LoadMarkups(str(path), "again")  # Slicer's reader
    again = io.landmarks_from_node(ctx.scene.GetNodeByID(nid))
    np.testing.assert_allclose(again.ras, lm.ras)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.nrrd", None, r"missing.nrrd: image file not found"),
        ("empty.nrrd", b"", r"empty.nrrd: empty file \(0 bytes\)"),
        ("text.nii.gz", b"this is not an image\n", r"text.nii.gz: "),
        ("bad.nrrd", b"NRRD0004\ntype: float\ndimension: 3\nsizes: 2 2\nencoding: raw\n\n", r"bad.nrrd: corrupt NRRD"),
        ("huge.nrrd", b"NRRD0004\ntype: float\ndimension: 3\nsizes: 100000 100000 100000\nendian: little\nencoding: raw\n\nx",
         r"huge.nrrd: header claims \[100000, 100000, 100000\] voxels"),
    ],
)
def test_bad_image_files_give_one_line_naming_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(BadInputError, match=message) as info:
        io.read_image(path)
    assert "\n" not in str(info.value)


def test_4d_2d_vector_volumes_are_refused(tmp_path):
    four = sitk.Image([4, 4, 4, 3], sitk.sitkFloat32)
    sitk.WriteImage(four, str(tmp_path / "four.nii.gz"))
    with pytest.raises(BadInputError, match=r"four.nii.gz: 4D volume \(3 time points\)"):
        io.read_image(tmp_path / "four.nii.gz")
    sitk.WriteImage(sitk.Image([4, 4], sitk.sitkUInt8), str(tmp_path / "flat.nrrd"))
    with pytest.raises(BadInputError, match=r"flat.nrrd: 2D image"):
        io.read_image(tmp_path / "flat.nrrd")
    sitk.WriteImage(sitk.Image([4, 4, 4], sitk.sitkVectorFloat32, 3), str(tmp_path / "vec.nrrd"))
    with pytest.raises(BadInputError, match=r"vec.nrrd: vector volume \(3 components\)"):
        io.read_image(tmp_path / "vec.nrrd")


def test_scalar_image_as_displacement_field_is_refused(ctx, tmp_path):
    sitk.WriteImage(sitk.Image([4, 4, 4], sitk.sitkFloat32), str(tmp_path / "scalar.nrrd"))
    with pytest.raises(BadInputError, match=r"scalar.nrrd: not a displacement field"):
        transforms.load_transform(ctx, tmp_path / "scalar.nrrd")


def test_unknown_transform_format(ctx, tmp_path):
    (tmp_path / "t.xyz").write_text("hello")
    with pytest.raises(BadInputError, match=r"t.xyz: unknown transform format"):
        transforms.load_transform(ctx, tmp_path / "t.xyz")


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("bad.mrk.json", "{not json", r"bad.mrk.json: malformed JSON"),
        ("none.mrk.json", json.dumps({"markups": []}), r"none.mrk.json: not a markups file"),
        ("dup.csv", "a,1,2,3\na,4,5,6\n", r"dup.csv: duplicate landmark label\(s\) a"),
        ("nan.csv", "a,1,x,3\n", r"nan.csv: line 1, column y: 'x' is not a number"),
        ("cols.fcsv", "# columns = id,x,y,z,label\n1,2,3\n", r"cols.fcsv: line 2: 3 columns"),
        ("empty.csv", "label,x,y,z\n", r"empty.csv: no landmarks"),
    ],
)
def test_bad_landmark_files(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(BadInputError, match=message):
        io.read_landmarks(tmp_path / name)


def test_cli_info_and_bad_input_exit_status(tmp_path, oblique_image):
    path = tmp_path / "img.nrrd"
    sitk.WriteImage(oblique_image, str(path))
    res = run_cli("info", path)
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["size"] == [11, 9, 7]
    np.testing.assert_allclose(info["direction"], OBLIQUE.ravel(), atol=1e-6)
    res = run_cli("info", tmp_path / "nope.nrrd")
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "nope.nrrd: image file not found" in res.stderr
    assert "Traceback" not in res.stderr


def test_cli_usage_error_is_one_line():
    res = run_cli("compare", "a.nrrd")
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    res = run_cli("compare", "a.nrrd", "b.nrrd", "--percentile", "120")
    assert res.returncode == 2 and "outside 0-100" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_cli_help_lists_subcommands():
    res = run_cli("--help")
    assert res.returncode == 0
    for cmd in ("compare", "evaluate", "cohort", "info", "demo"):
        assert cmd in res.stdout
