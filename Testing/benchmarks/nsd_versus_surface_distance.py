"""NSD three ways on test shapes: ours (boundary-voxel counts), DeepMind surface-distance (surfel areas) and
MONAI's ``compute_surface_dice`` (its default ``use_subvoxels=False`` counts edge voxels, as ours does).

Shapes (one grid each): two balls of radius 9 mm whose centres are 3 mm apart along x, on a 1 mm isotropic
grid and on a 0.7×0.7×2.0 mm grid; and a 20×20×20 mm cube against the same cube shifted by 1.5 mm. Tolerances
1, 2 and 3 mm. surface-distance (``pip install surface-distance``) is optional: without it only ours is printed.
The numbers are quoted in docs/metrics.md. Asserts nothing.

    python Testing/benchmarks/nsd_versus_surface_distance.py
"""

from __future__ import annotations

import numpy as np

from RegistrationQualityLib.metrics import compare_masks


def balls(spacing, offset_mm=3.0, radius=9.0):
    shape = tuple(int(np.ceil(40 / s)) for s in spacing[::-1])
    k, j, i = np.indices(shape)
    x, y, z = i * spacing[0], j * spacing[1], k * spacing[2]
    c = 20.0
    a = (x - c) ** 2 + (y - c) ** 2 + (z - c) ** 2 <= radius ** 2
    b = (x - c - offset_mm) ** 2 + (y - c) ** 2 + (z - c) ** 2 <= radius ** 2
    return a, b


def cubes(spacing, shift_mm=1.5):
    shape = tuple(int(np.ceil(40 / s)) for s in spacing[::-1])
    k, j, i = np.indices(shape)
    x, y, z = i * spacing[0], j * spacing[1], k * spacing[2]
    a = (abs(x - 20) <= 10) & (abs(y - 20) <= 10) & (abs(z - 20) <= 10)
    b = (abs(x - 20 - shift_mm) <= 10) & (abs(y - 20) <= 10) & (abs(z - 20) <= 10)
    return a, b


def main():
    try:
        import surface_distance as sd
    except ImportError:
        sd = None
    tolerances = (1.0, 2.0, 3.0)
    cases = [("balls r=9 mm, 3 mm apart, 1 mm grid", balls((1.0, 1.0, 1.0))),
             ("balls r=9 mm, 3 mm apart, 0.7×0.7×2 mm grid", balls((0.7, 0.7, 2.0))),
             ("cube 20 mm vs shifted 1.5 mm, 1 mm grid", cubes((1.0, 1.0, 1.0))),
             ("cube 20 mm vs shifted 1.5 mm, 0.7×0.7×2 mm grid", cubes((0.7, 0.7, 2.0)))]
    spacings = [(1.0, 1.0, 1.0), (0.7, 0.7, 2.0), (1.0, 1.0, 1.0), (0.7, 0.7, 2.0)]
    print("| shape | τ (mm) | ours = MONAI default | surface-distance (surfels) |")
    print("|---|---|---|---|")
    for (title, (a, b)), spacing in zip(cases, spacings):
        ours = compare_masks(a, b, spacing, nsd_tolerances=tolerances)
        theirs = None
        if sd is not None:
            # surface-distance takes arrays indexed like its spacing: give it (k, j, i) with (z, y, x) spacing
            dists = sd.compute_surface_distances(a, b, spacing[::-1])
        for t in tolerances:
            if sd is not None:
                theirs = sd.compute_surface_dice_at_tolerance(dists, t)
            key = "nsd_" + f"{t:g}".replace(".", "_") + "mm"
            print(f"| {title} | {t:g} | {ours[key]:.4f} | {'-' if theirs is None else f'{theirs:.4f}'} |")


if __name__ == "__main__":
    main()
