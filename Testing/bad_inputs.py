"""The bad-input matrix as data: tiny files that are wrong in exactly one way, and the expected outcome of each case.

``write_case_files(folder)`` writes a small valid registration case (12³ images, labelmaps, a translation, landmarks,
an elastix TransformParameters file) and, next to it, one broken file per failure mode. ``CASES`` lists the matrix
rows: each names the command (``compare`` or ``evaluate``), its options (file names relative to the case folder) and
the expected outcome: exit status 2 with one stderr line containing every ``expect`` fragment, or — for the rows
that are *not* bad input (empty segments) — exit 0 / 1 with nulls and reasons. Used by
``test_bad_input_matrix.py``; the list is documented in ``docs/bad-input.md``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SHAPE = (12, 12, 12)  # k, j, i
CUBE = (slice(3, 9), slice(3, 9), slice(3, 8))
SHIFT_LPS = (1.0, 0.0, 0.0)  # moving content = fixed content moved by this (mm); good.tfm maps fixed -> moving


def _image(arr, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), vector=False):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.asarray(arr), isVector=vector)
    img.SetSpacing(tuple(float(s) for s in spacing)[: img.GetDimension()])
    img.SetOrigin(tuple(float(o) for o in origin)[: img.GetDimension()])
    return img


def _write(img, path, compress=False):
    import SimpleITK as sitk

    sitk.WriteImage(img, str(path), compress)


def _cube(shift_i=0, value=1, dtype=np.uint8):
    arr = np.zeros(SHAPE, dtype)
    k, j, i = CUBE
    arr[k, j, slice(i.start + shift_i, i.stop + shift_i)] = value
    return arr


TP_HEADER = (
    '(Transform "{kind}")\n(NumberOfParameters {n})\n(TransformParameters {params})\n'
    '(InitialTransformParametersFileName "{initial}")\n(HowToCombineTransforms "Compose")\n'
    "(FixedImageDimension {dim})\n(MovingImageDimension {dim})\n"
    '(CenterOfRotationPoint 0 0 0)\n(Size 12 12 12)\n(Index 0 0 0)\n(Spacing 1 1 1)\n(Origin 0 0 0)\n'
    '(Direction 1 0 0 0 1 0 0 0 1)\n(UseDirectionCosines "true")\n'
)


def parameter_text(kind="TranslationTransform", params="1 0 0", n=None, initial="NoInitialTransform", dim=3):
    n = len(params.split()) if n is None else n
    return TP_HEADER.format(kind=kind, n=n, params=params, initial=initial, dim=dim)


def write_good_case(folder) -> Path:
    """A valid tiny case: moving = fixed shifted by SHIFT_LPS; good.tfm and TransformParameters.0.txt undo it."""
    import SimpleITK as sitk

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    fixed = (_cube(dtype=np.int16) * 300 + 100 + rng.normal(0, 3, SHAPE)).astype(np.int16)
    moving = (_cube(shift_i=1) * 3.0 + 0.5).astype(np.float32)
    _write(_image(fixed), folder / "fixed.nrrd")
    _write(_image(moving), folder / "moving.nrrd")
    _write(_image(_cube() * 2), folder / "fixed_labels.nrrd")
    _write(_image(_cube(shift_i=1) * 2), folder / "moving_labels.nrrd")
    sitk.WriteTransform(sitk.TranslationTransform(3, SHIFT_LPS), str(folder / "good.tfm"))
    (folder / "TransformParameters.0.txt").write_text(parameter_text(params="1 0 0"))
    pts = {"A": (4.0, 4.0, 4.0), "B": (6.0, 5.0, 7.0), "C": (3.0, 8.0, 5.0)}
    (folder / "fixed.csv").write_text("label,x,y,z\n" + "".join(f"{k},{x},{y},{z}\n" for k, (x, y, z) in pts.items()))
    (folder / "moving.csv").write_text(
        "label,x,y,z\n" + "".join(f"{k},{x + SHIFT_LPS[0]},{y},{z}\n" for k, (x, y, z) in pts.items()))
    return folder


def write_bad_files(folder) -> Path:
    """One broken file per failure mode, next to the good case (which must exist in ``folder``)."""
    folder = Path(folder)
    raw = folder / "_raw.nrrd"
    _write(_image(np.zeros(SHAPE, np.float32)), raw)
    header, _, data = raw.read_bytes().partition(b"\n\n")
    raw.unlink()
    nii = folder / "_raw.nii"
    _write(_image(np.zeros(SHAPE, np.float32)), nii)
    nii_bytes = bytearray(nii.read_bytes())
    nii.unlink()

    (folder / "empty.nrrd").write_bytes(b"")
    (folder / "text.nrrd").write_text("these are my notes about the patient, not an image\n")
    (folder / "truncated_header.nrrd").write_bytes(header[: len(header) // 2])
    (folder / "truncated_data.nrrd").write_bytes(header + b"\n\n" + data[: len(data) // 3])
    corrupt = header.replace(b"dimension: 3", b"dimension: banana")
    (folder / "corrupt_header.nrrd").write_bytes(corrupt + b"\n\n" + data)
    (folder / "huge.nrrd").write_bytes(header.replace(b"sizes: 12 12 12", b"sizes: 200000 200000 200000")
                                       + b"\n\n" + data[:64])
    bad_nii = bytearray(nii_bytes)
    bad_nii[40:42] = np.array([9], "<i2").tobytes()  # dim[0] (number of dimensions) must be 1..7
    (folder / "corrupt_header.nii").write_bytes(bytes(bad_nii))
    (folder / "truncated_data.nii").write_bytes(bytes(nii_bytes[: len(nii_bytes) // 2]))
    (folder / "truncated_header.nii").write_bytes(bytes(nii_bytes[:120]))
    huge = bytearray(nii_bytes)
    huge[42:48] = np.array([30000, 30000, 30000], "<i2").tobytes()  # dim[1..3]
    (folder / "huge.nii").write_bytes(bytes(huge[:400]))

    _write(_image(np.zeros((12, 12), np.float32)), folder / "slice_2d.nrrd")
    _write(_image(np.zeros((3, 12, 12, 12), np.float32), spacing=(1, 1, 1, 1), origin=(0, 0, 0, 0)),
           folder / "time_4d.nrrd")
    _write(_image(np.zeros(SHAPE + (3,), np.float32), vector=True), folder / "vector.nrrd")
    frac = (_cube() * 2).astype(np.float32)
    frac[5, 5, 5] = 1.5
    _write(_image(frac), folder / "fractional_labels.nrrd")
    nan_labels = (_cube() * 2).astype(np.float32)
    nan_labels[0, 0, 0] = np.nan
    _write(_image(nan_labels), folder / "nan_labels.nrrd")
    nan_img = np.full(SHAPE, 100.0, np.float32)
    nan_img[CUBE] = 400.0
    nan_img[0, 0, :4] = np.nan
    _write(_image(nan_img), folder / "nan_fixed.nrrd")
    inf_img = (_cube(shift_i=1) * 3.0 + 0.5).astype(np.float32)
    inf_img[11, 11, 11] = np.inf
    _write(_image(inf_img), folder / "inf_moving.nrrd")
    _write(_image(np.zeros((12, 12, 14), np.int16)), folder / "other_grid.nrrd")
    _write(_image(_cube() * 2, origin=(500.0, 500.0, 500.0)), folder / "far_labels.nrrd")
    _write(_image(_cube() * 0), folder / "no_labels.nrrd")
    three = _cube() * 2
    three[1:3, 1:3, 1:3] = 5  # label 5 only in this file
    _write(_image(three), folder / "labels_2_and_5.nrrd")
    seg = _image(_cube() * 2)
    for key, value in (("ID", "Segment_1"), ("Name", "liver"), ("LabelValue", "two"), ("Layer", "0")):
        seg.SetMetaData(f"Segment0_{key}", value)
    _write(seg, folder / "bad_label_value.seg.nrrd")
    seg.SetMetaData("Segment0_LabelValue", "2")
    _write(seg, folder / "_whole.seg.nrrd")
    whole = (folder / "_whole.seg.nrrd").read_bytes()
    (folder / "truncated_data.seg.nrrd").write_bytes(whole[: len(whole) - 100])
    (folder / "_whole.seg.nrrd").unlink()
    (folder / "a_folder").mkdir(exist_ok=True)
    (folder / "a_folder" / "readme.txt").write_text("not DICOM")

    shutil.copyfile(folder / "good.tfm", folder / "good.xyz")
    (folder / "garbage.tfm").write_text("#Insight Transform File V1.0\nthis is not a transform\n")
    (folder / "tp_unknown_type.txt").write_text(parameter_text(kind="SplineKernelTransform", params="1 2 3"))
    (folder / "tp_wrong_count.txt").write_text(parameter_text(kind="EulerTransform", params="0 0 0 1 0"))
    (folder / "tp_bad_number.txt").write_text(parameter_text(params="1 0,5 0"))
    (folder / "tp_missing_initial.txt").write_text(parameter_text(initial="TransformParameters.7.txt"))
    (folder / "tp_cycle_a.txt").write_text(parameter_text(initial="tp_cycle_b.txt"))
    (folder / "tp_cycle_b.txt").write_text(parameter_text(initial="tp_cycle_a.txt"))
    (folder / "tp_2d.txt").write_text(parameter_text(params="1 0", dim=2))
    (folder / "elastix_out_empty").mkdir(exist_ok=True)
    (folder / "elastix_out_empty" / "elastix.log").write_text("elastix crashed before writing anything\n")

    (folder / "malformed.mrk.json").write_text('{"@schema": "markups-schema-v1.0.3.json", "markups": [{"type": '
                                               '"Fiducial", "controlPoints": [{"label": "A", "position": [1.0, 2')
    (folder / "missing_columns.fcsv").write_text("# Markups fiducial file version = 5.8\n# CoordinateSystem = LPS\n"
                                                 "# columns = id,x,y,label\nvtkMRMLMarkupsFiducialNode_0,1,2,A\n")
    (folder / "non_numeric.csv").write_text("label,x,y,z\nA,4,4,4\nB,6,five,7\n")
    (folder / "duplicate_labels.csv").write_text("label,x,y,z\nA,4,4,4\nB,6,5,7\nA,3,8,5\n")
    (folder / "no_landmarks.csv").write_text("label,x,y,z\n")
    (folder / "other_labels.csv").write_text("label,x,y,z\nX,4,4,4\nY,6,5,7\n")
    (folder / "points_bad_count.txt").write_text("point\n3\n4 4 4\n6 5 7\n3\n")
    (folder / "notes.txt").write_text("not a report\n")
    (folder / "user_folder").mkdir(exist_ok=True)
    (folder / "user_folder" / "thesis.docx").write_text("precious\n")
    return folder


def write_case_files(folder) -> Path:
    write_good_case(folder)
    return write_bad_files(folder)


# ---------------------------------------------------------------------------------------------------------------
# The matrix
# ---------------------------------------------------------------------------------------------------------------
EVALUATE_BASE = {"fixed": "fixed.nrrd", "moving": "moving.nrrd", "transform": "good.tfm"}
PATH_OPTIONS = ("fixed", "moving", "transform", "elastix_dir", "registered", "fixed_segmentation",
                "moving_segmentation", "fixed_landmarks", "moving_landmarks")
NUMBER_OPTIONS = ("percentile", "min_dice", "max_hausdorff", "max_tre", "max_folding")


@dataclass
class Case:
    """One row: ``command`` with ``options`` (evaluate: option name -> value, None drops a base option;
    compare: ``reference``, ``compared``, ``percentile``). ``expect``: fragments of the one stderr line and of the
    BadInputError message. ``cli_only``: fragments checked only on the CLI line (argparse wording).
    ``previous_report``: a previous report sits at ``--output`` and must survive byte for byte."""

    id: str
    command: str
    options: dict
    expect: tuple = ()
    exit: int = 2
    previous_report: bool = False
    output: str | None = None  # evaluate: --output relative to the case folder (default: out/<id>)
    cli_only: tuple = ()
    api: bool = True  # also run through the module API
    extra_argv: tuple = ()  # raw extra CLI arguments (argparse-level cases)

    def evaluate_options(self) -> dict:
        opts = dict(EVALUATE_BASE)
        opts.update(self.options)
        return {k: v for k, v in opts.items() if v is not None}

    def output_path(self, folder, root="out") -> Path:
        return Path(folder) / (self.output or f"{root}/{self.id}")

    def argv(self, folder, root="out") -> list:
        folder = Path(folder)
        if self.command == "compare":
            args = ["compare", folder / self.options["reference"], folder / self.options["compared"]]
            if "percentile" in self.options:
                args += ["--percentile", self.options["percentile"]]
            return [str(a) for a in args] + list(self.extra_argv)
        args = ["evaluate"]
        for key, value in self.evaluate_options().items():
            flag = "--" + key.replace("_", "-")
            if key in PATH_OPTIONS:
                args += [flag, folder / value]
            elif key == "threshold":
                for spec in value:
                    args += [flag, spec]
            else:
                args += [flag, value]
        args += ["--no-snapshots", "--output", self.output_path(folder, root), *self.extra_argv]
        return [str(a) for a in args]

    def run_api(self, ctx, folder, root="api"):
        """The same case through the module logic (evaluate() / metrics.compare_files)."""
        folder = Path(folder)
        if self.command == "compare":
            from RegistrationQualityLib.metrics import compare_files

            return compare_files(folder / self.options["reference"], folder / self.options["compared"],
                                 float(self.options.get("percentile", 95.0)))
        from RegistrationQualityLib.evaluate import EvaluationInputs, EvaluationOptions, evaluate

        opts = self.evaluate_options()
        inputs = EvaluationInputs(**{k: folder / v for k, v in opts.items() if k in PATH_OPTIONS},
                                  threshold=opts.get("threshold"))
        options = EvaluationOptions(snapshots=False, **{k: float(v) for k, v in opts.items() if k in NUMBER_OPTIONS})
        return evaluate(ctx, inputs, options, output_dir=self.output_path(folder, root))


def compare(id, reference, compared, *expect, **kw) -> Case:
    return Case(id, "compare", {"reference": reference, "compared": compared, **kw.pop("options", {})},
                tuple(expect), **kw)


def evaluate(id, options, *expect, **kw) -> Case:
    return Case(id, "evaluate", dict(options), tuple(expect), **kw)


CASES = [
    # -- files that are not there or not images ----------------------------------------------------------------
    compare("missing-file", "does_not_exist.nrrd", "fixed_labels.nrrd", "does_not_exist.nrrd", "not found"),
    evaluate("missing-moving", {"moving": "moving_typo.nrrd"}, "moving_typo.nrrd", "not found",
             previous_report=True),
    evaluate("zero-byte-file", {"fixed": "empty.nrrd"}, "empty.nrrd", "empty file (0 bytes)"),
    compare("text-with-image-extension", "text.nrrd", "fixed_labels.nrrd", "text.nrrd", "not a readable image"),
    evaluate("folder-as-image", {"moving": "a_folder"}, "a_folder", "no DICOM series"),
    # -- corrupt headers and data ------------------------------------------------------------------------------
    evaluate("truncated-nrrd-header", {"fixed": "truncated_header.nrrd"}, "truncated_header.nrrd",
             "corrupt NRRD header"),
    evaluate("corrupt-nrrd-header", {"moving": "corrupt_header.nrrd"}, "corrupt_header.nrrd", "corrupt NRRD header",
             "banana", previous_report=True),
    compare("truncated-nrrd-data", "fixed_labels.nrrd", "truncated_data.nrrd", "truncated_data.nrrd",
            "truncated or corrupt NRRD voxel data"),
    compare("seg-nrrd-bad-label-value", "bad_label_value.seg.nrrd", "fixed_labels.nrrd", "bad_label_value.seg.nrrd",
            "segment 'liver'", "Segment0_LabelValue 'two'", "must be integers"),
    compare("seg-nrrd-truncated-data", "truncated_data.seg.nrrd", "fixed_labels.nrrd", "truncated_data.seg.nrrd",
            "truncated or corrupt NRRD voxel data"),
    compare("corrupt-nifti-header", "corrupt_header.nii", "fixed_labels.nrrd", "corrupt_header.nii",
            "not a readable image"),
    evaluate("truncated-nifti-header", {"fixed": "truncated_header.nii"}, "truncated_header.nii",
             "not a readable image"),
    evaluate("truncated-nifti-data", {"moving": "truncated_data.nii"}, "truncated_data.nii", "truncated NIfTI"),
    evaluate("absurd-size-nrrd", {"fixed": "huge.nrrd"}, "huge.nrrd", "refusing to allocate"),
    compare("absurd-size-nifti", "huge.nii", "fixed_labels.nrrd", "huge.nii", "refusing to allocate"),
    # -- wrong kind of image -----------------------------------------------------------------------------------
    evaluate("2d-image", {"fixed": "slice_2d.nrrd"}, "slice_2d.nrrd", "2D image", "3D"),
    evaluate("4d-volume", {"moving": "time_4d.nrrd"}, "time_4d.nrrd", "4D volume", "scalar 3D volume"),
    evaluate("vector-volume", {"moving": "vector.nrrd"}, "vector.nrrd", "3 components", "scalar 3D volume"),
    compare("4d-labelmap", "fixed_labels.nrrd", "time_4d.nrrd", "time_4d.nrrd", "4D"),
    compare("non-integer-labelmap", "fractional_labels.nrrd", "fixed_labels.nrrd", "fractional_labels.nrrd",
            "non-integer", "1.5"),
    compare("nan-labelmap", "fixed_labels.nrrd", "nan_labels.nrrd", "nan_labels.nrrd", "NaN"),
    # NaN/inf in an intensity image is not bad input: missing data, counted in the report's warnings, left out of
    # similarity and thresholds (inf would otherwise be clamped to the largest float by the resampler)
    evaluate("nan-voxels-in-image", {"fixed": "nan_fixed.nrrd"}, "nan_fixed.nrrd", "4 voxel(s) are NaN or infinite",
             exit=0),
    evaluate("inf-voxels-in-image", {"moving": "inf_moving.nrrd"}, "inf_moving.nrrd",
             "1 voxel(s) are NaN or infinite", exit=0),
    evaluate("registered-on-another-grid", {"transform": None, "registered": "other_grid.nrrd"}, "other_grid.nrrd",
             "fixed grid"),
    # -- transforms --------------------------------------------------------------------------------------------
    evaluate("unknown-transform-format", {"transform": "good.xyz"}, "good.xyz", "unknown transform format"),
    evaluate("garbage-itk-transform", {"transform": "garbage.tfm"}, "garbage.tfm", "not a readable transform"),
    evaluate("scalar-image-as-displacement-field", {"transform": "fixed.nrrd"}, "fixed.nrrd",
             "not a displacement field", "1 component"),
    evaluate("elastix-unknown-transform-type", {"transform": "tp_unknown_type.txt"}, "tp_unknown_type.txt",
             "SplineKernelTransform", "not supported"),
    evaluate("elastix-wrong-parameter-count", {"transform": "tp_wrong_count.txt"}, "tp_wrong_count.txt",
             "(TransformParameters)", "5 values", "needs 6"),
    evaluate("elastix-unparsable-number", {"transform": "tp_bad_number.txt"}, "tp_bad_number.txt",
             "'0,5' is not a number"),
    evaluate("elastix-missing-initial-transform", {"transform": "tp_missing_initial.txt"},
             "tp_missing_initial.txt", "InitialTransformParametersFileName", "TransformParameters.7.txt",
             "not found"),
    evaluate("elastix-initial-transform-cycle", {"transform": "tp_cycle_a.txt"}, "tp_cycle_a.txt", "cycle"),
    evaluate("elastix-2d-file-for-3d-images", {"transform": "tp_2d.txt"}, "tp_2d.txt", "2D transform",
             "3D images"),
    evaluate("elastix-dir-without-parameters", {"transform": None, "elastix_dir": "elastix_out_empty"},
             "elastix_out_empty", "TransformParameters"),
    # -- landmarks ---------------------------------------------------------------------------------------------
    evaluate("malformed-mrk-json", {"fixed_landmarks": "malformed.mrk.json", "moving_landmarks": "moving.csv"},
             "malformed.mrk.json", "malformed JSON"),
    evaluate("fcsv-missing-columns", {"fixed_landmarks": "fixed.csv", "moving_landmarks": "missing_columns.fcsv"},
             "missing_columns.fcsv", "lacks x, y or z"),
    evaluate("csv-non-numeric-coordinate", {"fixed_landmarks": "non_numeric.csv", "moving_landmarks": "moving.csv"},
             "non_numeric.csv", "line 3", "'five' is not a number"),
    evaluate("duplicate-landmark-labels", {"fixed_landmarks": "duplicate_labels.csv",
                                           "moving_landmarks": "moving.csv"}, "duplicate_labels.csv", "duplicate",
             "A"),
    evaluate("empty-landmark-set", {"fixed_landmarks": "fixed.csv", "moving_landmarks": "no_landmarks.csv"},
             "no_landmarks.csv", "no landmarks"),
    evaluate("no-common-landmark-label", {"fixed_landmarks": "fixed.csv", "moving_landmarks": "other_labels.csv"},
             "fixed.csv", "other_labels.csv", "no label in common"),
    evaluate("elastix-point-file-bad-count", {"fixed_landmarks": "points_bad_count.txt",
                                              "moving_landmarks": "moving.csv"}, "points_bad_count.txt",
             "declares 3 points but holds 7 numbers"),
    # -- segmentations -----------------------------------------------------------------------------------------
    evaluate("segmentation-not-overlapping", {"fixed_segmentation": "fixed_labels.nrrd",
                                              "moving_segmentation": "far_labels.nrrd"}, "far_labels.nrrd",
             "does not overlap"),
    # -- options -----------------------------------------------------------------------------------------------
    evaluate("landmarks-without-partner", {"fixed_landmarks": "fixed.csv"}, "--fixed-landmarks",
             "--moving-landmarks"),
    evaluate("segmentation-without-partner", {"moving_segmentation": "moving_labels.nrrd"},
             "--moving-segmentation", "--fixed-segmentation"),
    evaluate("check-without-its-data", {"min_dice": 0.8}, "--min-dice", "needs segmentations"),
    evaluate("no-registration-given", {"transform": None}, "--transform", "--registered"),
    evaluate("bad-threshold-spec", {"threshold": ["200:100"]}, "--threshold", "lower bound 200"),
    evaluate("output-is-an-existing-file", {}, "--output", "notes.txt", "existing file", output="notes.txt"),
    evaluate("output-under-a-file", {}, "--output", "notes.txt is a file", "cannot be created",
             output="notes.txt/report"),
    evaluate("output-is-a-user-folder", {}, "--output", "user_folder", "not a report folder", output="user_folder"),
    compare("percentile-above-100", "fixed_labels.nrrd", "moving_labels.nrrd", "percentile", "150 is outside 0-100",
            cli_only=("argument --percentile",), options={"percentile": 150}),
    evaluate("percentile-below-0", {"percentile": -5}, "--percentile", "-5", "outside 0-100"),
    # -- not bad input: empty segments give null + reason -----------------------------------------------------
    compare("empty-segment-compare", "labels_2_and_5.nrrd", "fixed_labels.nrrd", exit=0),
    evaluate("empty-segment-evaluate-check", {"threshold": ["5000"], "min_dice": 0.5}, exit=1),
]


def previous_report(folder) -> dict:
    """Write a complete-looking previous report at ``folder``; returns {relative path: bytes}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "report.json": json.dumps({"tool": {"name": "RegistrationQuality", "version": "0"}, "verdict": "pass",
                                   "checks": []}).encode(),
        "report.html": b"<html>previous</html>",
        "metrics.csv": b"section,subject,metric,stage,value,unit,note\n",
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files
