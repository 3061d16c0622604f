"""Benchmark: threshold clean-up (segmentation.Cleanup) on a CT-size mask.

Mask: 512×512×300 voxels, 0.7×0.7×2.0 mm, a body-like ellipsoid with lungs (air cavities), a table below it,
noise islands and pores: the Otsu-like "tissue" threshold of a CT. Times each step of ``clean_mask`` alone and
the default clean-up, best of N, in this process, beside SimpleITK's filters for the same steps; and Otsu's
threshold of a CT-like int16 image (``segmentation.otsu_threshold``, the run-free histogram kernel) beside
SimpleITK's ``OtsuThreshold`` on the float32 image it reproduces (both values printed: they must be equal).
Asserts nothing.

    python Testing/benchmarks/bench_cleanup.py [--size 512 512 300] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "RegistrationQuality"))


def ct_mask(size, spacing):
    import SimpleITK as sitk

    ni, nj, nk = size
    rng = np.random.default_rng(0)
    k, j, i = np.ogrid[:nk, :nj, :ni]
    x, y, z = (i - ni / 2) * spacing[0], (j - nj / 2) * spacing[1], (k - nk / 2) * spacing[2]
    body = (x / 160) ** 2 + (y / 110) ** 2 + (z / 320) ** 2 <= 1
    lungs = (((abs(x) - 70) / 50) ** 2 + (y / 70) ** 2 + ((z - 60) / 150) ** 2) <= 1
    table = (y > 125) & (y < 140) & (abs(x) < 200)
    arr = (body & ~lungs) | table
    arr |= rng.random(arr.shape) < 0.002  # noise islands in the air, pores in the tissue
    arr &= rng.random(arr.shape) > 0.002
    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.SetSpacing(tuple(float(s) for s in spacing))
    return img


def _itk_otsu(image) -> float:
    import SimpleITK as sitk

    f = sitk.OtsuThresholdImageFilter()
    f.SetNumberOfHistogramBins(256)
    f.Execute(sitk.Cast(image, sitk.sitkFloat32))
    return float(f.GetThreshold())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=3, default=[512, 512, 300])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from RegistrationQualityLib import segmentation as seg

    mask = ct_mask(args.size, (0.7, 0.7, 2.0))
    steps = {  # closing last: it is the slow one
        "fill holes": seg.Cleanup(fill_holes=True, largest_component=False),
        "largest component": seg.Cleanup(fill_holes=False, largest_component=True),
        "islands < 1 cc": seg.Cleanup(fill_holes=False, largest_component=False, min_island_cc=1.0),
        "default (largest component, holes filled)": seg.Cleanup(),
        "closing 2 mm": seg.Cleanup(fill_holes=False, largest_component=False, closing_mm=2.0),
    }
    import SimpleITK as sitk

    print(f"mask {args.size} voxels ({np.prod(args.size) / 1e6:.0f} M)")
    runs = {name: (lambda c=cleanup: seg.clean_mask(mask, c)) for name, cleanup in steps.items()}
    runs["reference: SimpleITK BinaryFillhole"] = lambda: sitk.BinaryFillhole(mask, False, 1)
    runs["reference: ConnectedComponent + Relabel"] = lambda: sitk.RelabelComponent(sitk.ConnectedComponent(mask))
    rng = np.random.default_rng(1)
    ct = sitk.GetImageFromArray(np.where(sitk.GetArrayViewFromImage(mask) > 0,
                                         rng.normal(40, 30, mask.GetSize()[::-1]),
                                         rng.normal(-900, 60, mask.GetSize()[::-1])).astype(np.int16))
    print(f"Otsu of the int16 CT-like image: ours {seg.otsu_threshold(ct)!r}, SimpleITK (float32) "
          f"{_itk_otsu(ct)!r}")
    runs["Otsu threshold (ours)"] = lambda: seg.otsu_threshold(ct)
    runs["reference: SimpleITK OtsuThreshold (float32)"] = lambda: _itk_otsu(ct)
    for name, run in runs.items():
        best = float("inf")
        for _ in range(args.repeat):
            t = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - t)
        print(f"{name:45s} {best:6.2f} s")


if __name__ == "__main__":
    main()
