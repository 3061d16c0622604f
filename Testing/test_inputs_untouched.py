"""Inputs are never touched (issue 11): files stay byte-identical, input MRML nodes (voxels, geometry, segments,
control points, transforms, their parent transforms, display state) stay unchanged, temporary nodes leave the scene
and temporary files are deleted — after a successful run and after a run that fails half way."""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

from RegistrationQualityLib import io
from RegistrationQualityLib.errors import BadInputError
from RegistrationQualityLib.evaluate import EvaluationInputs, EvaluationOptions, evaluate

import bad_inputs
from conftest import run_cli


def _file_hashes(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def case(tmp_path):
    return bad_inputs.write_good_case(tmp_path / "case")


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """A private temporary folder for tempfile (what the library creates there must be gone afterwards)."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _file_inputs(case) -> EvaluationInputs:
    return EvaluationInputs(
        fixed=case / "fixed.nrrd", moving=case / "moving.nrrd", transform=case / "TransformParameters.0.txt",
        fixed_segmentation=case / "fixed_labels.nrrd", moving_segmentation=case / "moving_labels.nrrd",
        fixed_landmarks=case / "fixed.csv", moving_landmarks=case / "moving.csv", threshold=["300", "2"])


def test_input_files_untouched_by_evaluate_and_compare(ctx, case, tmp_path, private_tmp):
    before = _file_hashes(case)
    result = evaluate(ctx, _file_inputs(case), EvaluationOptions(min_dice=0.9, snapshots=False),
                      output_dir=tmp_path / "report")
    assert result.verdict == "pass"  # a real run: the translation is undone exactly
    from RegistrationQualityLib.metrics import compare_files

    assert compare_files(case / "fixed_labels.nrrd", case / "moving_labels.nrrd")["segments"][0]["dice"] < 1.0
    assert _file_hashes(case) == before
    assert list(private_tmp.iterdir()) == []


def test_input_files_untouched_by_the_cli(case, tmp_path):
    before = _file_hashes(case)
    tmp = tmp_path / "cli-tmp"
    tmp.mkdir()
    res = run_cli("evaluate", "--fixed", "fixed.nrrd", "--moving", "moving.nrrd", "--transform", "good.tfm",
                  "--fixed-segmentation", "fixed_labels.nrrd", "--moving-segmentation", "moving_labels.nrrd",
                  "--fixed-landmarks", "fixed.csv", "--moving-landmarks", "moving.csv", "--max-tre", "0.01",
                  "--output", tmp_path / "out", cwd=case, env={"TMPDIR": str(tmp)})
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))["verdict"] == "pass"
    assert _file_hashes(case) == before
    assert list(tmp.iterdir()) == []


# -- MRML nodes ------------------------------------------------------------------------------------------------
def _vtk_matrix(m) -> list:
    return [m.GetElement(r, c) for r in range(4) for c in range(4)]


def _node_state(node) -> dict:
    """Everything a run could change about an input node, as plain values."""
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    state = {"class": node.GetClassName(), "name": node.GetName(), "mtime": node.GetMTime(),
             "parent": node.GetTransformNodeID() if hasattr(node, "GetTransformNodeID") else None,
             "attributes": {a: node.GetAttribute(a) for a in node.GetAttributeNames() or ()}}
    if hasattr(node, "GetNumberOfDisplayNodes"):
        state["display"] = [(d.GetID(), d.GetMTime(), d.GetVisibility(), d.GetColor(), d.GetOpacity())
                            for d in (node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes()))]
    if node.IsA("vtkMRMLVolumeNode"):
        m = vtkMatrix4x4()
        node.GetIJKToRASMatrix(m)
        img = node.GetImageData()
        state["ijk_to_ras"] = _vtk_matrix(m)
        state["voxels"] = hashlib.sha256(vtk_to_numpy(img.GetPointData().GetScalars()).tobytes()).hexdigest()
        state["image_mtime"] = img.GetMTime()
    if node.IsA("vtkMRMLSegmentationNode"):
        seg = node.GetSegmentation()
        state["representations"] = (seg.GetSourceRepresentationName(),
                                    [seg.ContainsRepresentation(r) for r in ("Binary labelmap", "Closed surface",
                                                                             "Planar contour", "Fractional labelmap")])
        state["segments"] = []
        for sid in seg.GetSegmentIDs():
            s = seg.GetSegment(sid)
            lab = s.GetRepresentation("Binary labelmap")
            arr = vtk_to_numpy(lab.GetPointData().GetScalars()) if lab is not None else np.zeros(0)
            state["segments"].append((sid, s.GetName(), s.GetColor(), s.GetLabelValue(),
                                      hashlib.sha256(arr.tobytes()).hexdigest(), s.GetMTime()))
    if node.IsA("vtkMRMLMarkupsNode"):
        state["points"] = [(node.GetNthControlPointLabel(i), tuple(node.GetNthControlPointPosition(i)),
                            node.GetNthControlPointPositionStatus(i)) for i in range(node.GetNumberOfControlPoints())]
        state["locked"] = node.GetLocked()
    if node.IsA("vtkMRMLTransformNode"):
        m = vtkMatrix4x4()
        node.GetMatrixTransformToParent(m)
        state["to_parent"] = _vtk_matrix(m)
        p = [0.0, 0.0, 0.0]
        node.GetTransformFromParent().TransformPoint([1.0, 2.0, 3.0], p)
        state["from_parent_point"] = p
    return state


def _scene_state(ctx) -> dict:
    scene = ctx.scene
    classes: dict = {}
    for i in range(scene.GetNumberOfNodes()):
        name = scene.GetNthNode(i).GetClassName()
        classes[name] = classes.get(name, 0) + 1
    return classes


def _scene_xml(ctx) -> str:
    ctx.scene.SetSaveToXMLString(1)
    ctx.scene.Commit()
    return ctx.scene.GetSceneXMLString()


@pytest.fixture
def node_inputs(ctx, case):
    """Every input as a node; the moving side sits under a 'moving pose' transform that has its own parent."""
    import SimpleITK as sitk

    fixed = io.load_volume(ctx, case / "fixed.nrrd", "fixed")
    moving = io.load_volume(ctx, case / "moving.nrrd", "moving")
    fixed_seg = io.load_segmentation(ctx, case / "fixed_labels.nrrd", "fixed seg")
    moving_seg = io.load_segmentation(ctx, case / "moving_labels.nrrd", "moving seg")
    fixed_lm = io.landmarks_to_node(ctx, io.read_landmarks(case / "fixed.csv"), "fixed landmarks")
    moving_lm = io.landmarks_to_node(ctx, io.read_landmarks(case / "moving.csv"), "moving landmarks")
    registration = io.load_transform(ctx, case / "good.tfm", "registration")
    # identity poses (the numbers stay analytic) that are real parent transforms of the moving inputs
    sitk.WriteTransform(sitk.Euler3DTransform(), str(case / "pose.tfm"))
    pose = io.load_transform(ctx, case / "pose.tfm", "moving pose")
    outer = io.load_transform(ctx, case / "pose.tfm", "scanner")
    pose.SetAndObserveTransformNodeID(outer.GetID())
    for node in (moving, moving_seg, moving_lm):
        node.SetAndObserveTransformNodeID(pose.GetID())
    for node in (fixed_seg, moving_seg):
        node.GetDisplayNode().SetOpacity(0.35)
    fixed.GetDisplayNode().SetAutoWindowLevel(False)
    fixed.GetDisplayNode().SetWindowLevel(123.0, 45.0)
    nodes = {"fixed": fixed, "moving": moving, "fixed_segmentation": fixed_seg, "moving_segmentation": moving_seg,
             "fixed_landmarks": fixed_lm, "moving_landmarks": moving_lm, "transform": registration}
    # the first evaluation of a transform chain updates it lazily (MTime of the pose and its children moves once):
    # read every state once so that the baseline is taken after that
    _all_states(nodes, [pose, outer])
    return nodes, [pose, outer]


def _all_states(nodes, extra):
    states = {k: _node_state(n) for k, n in nodes.items()}
    states.update({n.GetName(): _node_state(n) for n in extra})
    for key in ("fixed", "moving"):
        d = nodes[key].GetDisplayNode()
        states[key]["window_level"] = (d.GetWindow(), d.GetLevel(), d.GetAutoWindowLevel())
    return states


def test_input_nodes_untouched_and_temporaries_removed(ctx, node_inputs, tmp_path, private_tmp):
    nodes, extra = node_inputs
    states, classes, xml = _all_states(nodes, extra), _scene_state(ctx), _scene_xml(ctx)
    result = evaluate(ctx, EvaluationInputs(threshold=["300", "2"], **nodes),
                      EvaluationOptions(min_dice=0.9, max_tre=0.01, snapshots=False), output_dir=tmp_path / "report")
    assert result.verdict == "pass", result.failed_checks
    assert result.report["landmarks"]["after"]["max_mm"] == pytest.approx(0.0, abs=1e-6)
    assert _all_states(nodes, extra) == states
    assert _scene_state(ctx) == classes
    assert _scene_xml(ctx) == xml
    assert list(private_tmp.iterdir()) == []


def test_scene_outputs_are_the_only_new_nodes(ctx, node_inputs, tmp_path):
    """With scene outputs (the Slicer panel) the result nodes are added; nothing else changes."""
    nodes, extra = node_inputs
    states, before = _all_states(nodes, extra), ctx.scene.GetNumberOfNodes()
    result = evaluate(ctx, EvaluationInputs(**nodes), EvaluationOptions(scene_outputs=True, snapshots=False))
    assert _all_states(nodes, extra) == states
    assert result.nodes
    added = {ctx.scene.GetNthNode(i).GetID() for i in range(before, ctx.scene.GetNumberOfNodes())}
    owned = set()
    for node in result.nodes.values():
        owned.add(node.GetID())
        for get in ("GetNumberOfDisplayNodes", "GetNumberOfStorageNodes"):
            nth = "GetNthDisplayNode" if "Display" in get else "GetNthStorageNode"
            for i in range(getattr(node, get)() if hasattr(node, get) else 0):
                owned.add(getattr(node, nth)(i).GetID())
    assert added <= owned | {n.GetID() for n in _color_nodes(ctx, added)}, added - owned


def _color_nodes(ctx, ids):
    return [ctx.scene.GetNodeByID(i) for i in ids if ctx.scene.GetNodeByID(i).IsA("vtkMRMLColorNode")]


# -- failing half way ---------------------------------------------------------------------------------------------
LATE_STAGES = [  # (function to break, its error, snapshots on)
    ("RegistrationQualityLib.evaluate._similarity", RuntimeError("injected failure in the similarity stage"), False),
    ("RegistrationQualityLib.deformation.DeformationStatistics.finish", BadInputError("transform", "injected bad input late"), False),
    ("RegistrationQualityLib.report.folder.render_html", RuntimeError("injected failure while writing the report"), True),
]


@pytest.mark.parametrize("target, error, snapshots", LATE_STAGES, ids=["similarity", "deformation",
                                                                       "report-writing-after-snapshots"])
def test_failure_half_way_leaves_nothing_behind(ctx, node_inputs, case, tmp_path, private_tmp, monkeypatch, target,
                                                error, snapshots):
    if snapshots:
        from RegistrationQualityLib.rendering import rendering_available

        ok, reason = rendering_available()
        if not ok:
            pytest.skip(f"offscreen rendering unavailable: {reason}")
    nodes, extra = node_inputs
    states, classes, xml = _all_states(nodes, extra), _scene_state(ctx), _scene_xml(ctx)
    files = _file_hashes(case)
    calls = []

    def fail(*args, **kwargs):
        calls.append(target)
        raise error

    monkeypatch.setattr(target, fail)
    inputs = EvaluationInputs(threshold=["300", "2"], **dict(nodes, fixed=case / "fixed.nrrd",
                                                              transform=case / "TransformParameters.0.txt"))
    out = tmp_path / "report"
    with pytest.raises(type(error), match="injected"):
        evaluate(ctx, inputs, EvaluationOptions(min_dice=0.9, snapshots=snapshots), output_dir=out)
    assert calls == [target]  # the failure happened where intended, after the earlier stages ran
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".report.")] == []
    assert _all_states(nodes, extra) == states
    assert _scene_state(ctx) == classes
    assert _scene_xml(ctx) == xml
    assert _file_hashes(case) == files
    assert list(private_tmp.iterdir()) == []


def test_compare_segments_adds_only_its_table(ctx, node_inputs):
    from RegistrationQualityLib.metrics import compare_segments

    nodes, extra = node_inputs
    states, before = _all_states(nodes, extra), {ctx.scene.GetNthNode(i).GetID()
                                                 for i in range(ctx.scene.GetNumberOfNodes())}
    results, table = compare_segments(ctx, nodes["fixed_segmentation"], nodes["moving_segmentation"])
    assert results[0]["dice"] == pytest.approx(0.8)  # 5x6x6 cubes overlapping 4/5 after a 1-voxel shift
    after = {ctx.scene.GetNthNode(i).GetID() for i in range(ctx.scene.GetNumberOfNodes())}
    assert after - before == {table.GetID()} and before <= after
    assert _all_states(nodes, extra) == states
