"""Regenerate the elastix >= 5.1 reference data in this folder (run by hand; needs itk-elastix, ~1-2 min).

Registers the test images of ``test_elastix.py`` (oblique, anisotropic, non-zero origins) with itk-elastix
(Euler -> Affine -> BSpline, the same parameter text as the tests' Debian-elastix run) and keeps what a newer
elastix writes: ``TransformParameters.{0,1,2}.txt`` with the 5.1+ key ``InitialTransformParameterFileName``
(elastix writes it relative to its working folder: ``run/TransformParameters.N.txt``, which the reader must find
beside the file), plus reference points: ``points_lps.csv`` (fixed points, LPS) and
``transformix_{0,1,2}_lps.csv`` (itk-elastix transformix's OutputPoint for each stage).

    pip install itk-elastix && python Testing/data_elastix/make_data.py
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def main() -> int:
    import itk
    import SimpleITK as sitk
    from test_elastix import _images, _registration_parameters

    fixed, moving = _images()
    points = np.random.default_rng(21).uniform([-15.0, 15.0, 0.0], [25.0, 55.0, 40.0], size=(60, 3))
    np.savetxt(HERE / "points_lps.csv", points, delimiter=",", fmt="%.6f")
    start = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="rq-elastix-data-") as tmp:
        os.chdir(tmp)
        sitk.WriteImage(fixed, "fixed.mha")
        sitk.WriteImage(moving, "moving.mha")
        parameters = itk.ParameterObject.New()
        for t in ("EulerTransform", "AffineTransform", "BSplineTransform"):
            Path(f"p_{t}.txt").write_text(_registration_parameters(t))
            parameters.AddParameterFile(f"p_{t}.txt")
        Path("run").mkdir()
        itk.elastix_registration_method(itk.imread("fixed.mha", itk.F), itk.imread("moving.mha", itk.F),
                                        parameter_object=parameters, output_directory="run", log_to_console=False)
        rows = "".join(f"{p[0]:.6f} {p[1]:.6f} {p[2]:.6f}\n" for p in points)
        Path("points.txt").write_text(f"point\n{len(points)}\n{rows}")
        for stage in range(3):
            tp = itk.ParameterObject.New()
            tp.ReadParameterFile(f"run/TransformParameters.{stage}.txt")
            out = Path(f"tx{stage}")
            out.mkdir()
            f = itk.TransformixFilter.New(itk.imread("moving.mha", itk.F))
            f.SetTransformParameterObject(tp)
            f.SetFixedPointSetFileName("points.txt")
            f.SetOutputDirectory(str(out))
            f.SetComputeDeformationField(False)
            f.UpdateLargestPossibleRegion()
            text = (out / "outputpoints.txt").read_text()
            mapped = [[float(v) for v in m.split()] for m in re.findall(r"OutputPoint = \[([^\]]*)\]", text)]
            np.savetxt(HERE / f"transformix_{stage}_lps.csv", np.array(mapped), delimiter=",", fmt="%.6f")
            shutil.copy(f"run/TransformParameters.{stage}.txt", HERE / f"TransformParameters.{stage}.txt")
        os.chdir(start)
    print("written to", HERE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
