"""Were these the images elastix registered? Swapped or wrong ``--fixed``/``--moving`` caught before measuring.

elastix writes the fixed image's grid into every TransformParameters file (``Size``, ``Spacing``, ``Origin``,
``Direction`` -- the direction matrix column by column, ITK's matrix transposed; checked against a real elastix
run in ``Testing/test_elastix_inputs.py``) and its log names the ``-f`` and ``-m`` files. Comparing both with the
given images:

* **Geometry** (the parameter file against ``--fixed``): the distance ``d`` (mm) between corresponding corners of
  the two fields of view (voxel boxes: index -0.5 .. size-0.5, through spacing, direction and origin), the worst
  of the 8 corners. ``d <= 0.01 * smallest spacing`` and the same size: the same grid (rounding of the written
  numbers). Else ``d <= largest spacing`` (the same field of view within a voxel, e.g. a resampled or
  re-exported copy): a warning naming both grids. Else a clear mismatch: :class:`BadInputError` naming the
  image and the parameter file, and saying so when ``--moving`` has the registered fixed grid (swapped inputs).
* **Names** (the log's ``-f``/``-m`` against the given paths; file names without folders and extensions): the
  log's fixed name is the given moving one and its moving name the given fixed one -> BadInputError (swapped).
  Other differences are a warning, only when the geometry could not vouch for the images (no parameter file).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .elastix import read_parameter_file
from .errors import BadInputError

SAME_GRID_FRACTION = 0.01  # corner distance below this fraction of the smallest spacing: the same grid
NEAR_GRID_VOXELS = 1.0  # corner distance up to this many of the largest spacing: same field of view (warning)

_EXTENSIONS = (".nii.gz", ".seg.nrrd", ".nrrd", ".nhdr", ".nii", ".mha", ".mhd", ".hdr", ".img", ".vtk", ".tif",
               ".tiff", ".dcm")


def _stem(name) -> str:
    base = Path(str(name).strip().strip('"')).name.lower()
    for ext in _EXTENSIONS:
        if base.endswith(ext):
            return base[: -len(ext)]
    return base


def parameter_file_grid(path) -> dict | None:
    """``{"size", "spacing", "origin", "direction"}`` (direction row-major, like SimpleITK) of the fixed grid in
    an elastix TransformParameters file; ``None`` when the file does not state it."""
    pf = read_parameter_file(path)
    if not all(pf.has(k) for k in ("Size", "Spacing", "Origin")):
        return None
    direction = pf.numbers("Direction", 9, default=np.eye(3).ravel()).reshape(3, 3).T  # written column by column
    return {"size": [int(v) for v in pf.integers("Size", 3)], "spacing": [float(v) for v in pf.numbers("Spacing", 3)],
            "origin": [float(v) for v in pf.numbers("Origin", 3)],
            "direction": [float(v) for v in direction.ravel()]}


def _grid_of(image) -> dict:
    return {"size": list(image.GetSize()), "spacing": list(image.GetSpacing()), "origin": list(image.GetOrigin()),
            "direction": list(image.GetDirection())}


def _corners(grid: dict) -> np.ndarray:
    size = np.asarray(grid["size"], float)
    idx = np.array([[i, j, k] for i in (-0.5, size[0] - 0.5) for j in (-0.5, size[1] - 0.5)
                    for k in (-0.5, size[2] - 0.5)])
    d = np.asarray(grid["direction"], float).reshape(3, 3)
    return idx * np.asarray(grid["spacing"], float) @ d.T + np.asarray(grid["origin"], float)


def corner_distance_mm(a: dict, b: dict) -> float:
    """Largest distance (mm) between corresponding field-of-view corners of two grids."""
    return float(np.max(np.linalg.norm(_corners(a) - _corners(b), axis=1)))


def _describe(grid: dict) -> str:
    return (f"size {grid['size']}, spacing {[round(v, 4) for v in grid['spacing']]} mm, origin "
            f"{[round(v, 3) for v in grid['origin']]}")


def check_registered_images(parameter_file, fixed_image, moving_image, fixed_source: str, moving_source: str,
                            log_fixed: str | None = None, log_moving: str | None = None) -> list:
    """Compare the given fixed/moving images with what elastix registered (module docstring).

    ``parameter_file``: a TransformParameters file or ``None``; ``fixed_image``/``moving_image``: SimpleITK
    images; ``*_source``: how the user named them (paths, or node names); ``log_*``: the log's ``-f``/``-m``.
    Returns warnings; raises BadInputError for a clear mismatch.
    """
    warnings = []
    if log_fixed and log_moving and _stem(log_fixed) != _stem(log_moving):
        given_f, given_m = _stem(os.path.basename(fixed_source)), _stem(os.path.basename(moving_source))
        if _stem(log_fixed) == given_m and _stem(log_moving) == given_f:
            raise BadInputError(f"--fixed {fixed_source}", f"elastix registered it as the moving image (elastix.log: "
                                f"-f {log_fixed}, -m {log_moving}); --fixed and --moving look swapped")
    grid = parameter_file_grid(parameter_file) if parameter_file is not None else None
    if grid is None:
        if log_fixed and _stem(log_fixed) != _stem(os.path.basename(fixed_source)):
            warnings.append(f"--fixed {fixed_source}: elastix.log names the fixed image {log_fixed}; the parameter "
                            "file states no grid to confirm it is the same image")
        return warnings
    given = _grid_of(fixed_image)
    d = corner_distance_mm(grid, given)
    same_size = list(grid["size"]) == list(given["size"])
    if same_size and d <= SAME_GRID_FRACTION * min(given["spacing"]):
        return warnings
    pf = os.fspath(parameter_file)
    if d <= NEAR_GRID_VOXELS * max(given["spacing"]):
        warnings.append(f"--fixed {fixed_source}: grid differs from the fixed grid elastix registered ({pf}: "
                        f"{_describe(grid)}; given: {_describe(given)}); the fields of view agree within "
                        f"{d:.3g} mm, so the registration is evaluated on the given grid")
        return warnings
    hint = ""
    if moving_image is not None and list(moving_image.GetSize()) == list(grid["size"]) and \
            corner_distance_mm(grid, _grid_of(moving_image)) <= NEAR_GRID_VOXELS * max(grid["spacing"]):
        hint = f"; --moving {moving_source} has that grid: --fixed and --moving look swapped"
    raise BadInputError(f"--fixed {fixed_source}", f"not the fixed image elastix registered: {pf} has "
                        f"{_describe(grid)}, the image {_describe(given)} (field-of-view corners up to {d:.3g} mm "
                        f"apart){hint}")
