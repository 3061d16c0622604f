"""Intensity similarity between the fixed image and the moving image on the fixed grid, before and after.

Definitions (over the voxels of the region R: the mask, or the whole fixed grid; voxels where either image is
NaN/inf are left out and counted):

* ``ncc`` — normalised cross-correlation (Pearson): Σ(a−ā)(b−b̄) / sqrt(Σ(a−ā)² · Σ(b−b̄)²), in [−1, 1];
  null when either image is constant over R.
* ``nmi`` — normalised mutual information (Studholme, Hill & Hawkes, Pattern Recognition 32:71, 1999):
  (H(A) + H(B)) / H(A, B), from a joint histogram of ``bins`` × ``bins`` equal-width bins (default 64), each
  image's bins spanning its own [min, max] over R (the max falls in the last bin). 1 for independent
  images, 2 for images that determine each other bin for bin (identical images); null when both are constant.
* ``mi`` — mutual information H(A) + H(B) − H(A, B) in nats (natural logarithm), same histogram.
* ``mse`` — mean of (a − b)²; ``mae`` — mean of |a − b| (intensity units² / units).

``before`` = the moving image resampled onto the fixed grid in world space without the registration,
``after`` = resampled through the registration's resampling transform (:func:`resample.resample_image`).
Computed by compiled passes over the voxels, in float64: count, sums and ranges (:func:`kernels.similarity_pass1`),
then the centred sums (:func:`kernels.similarity_pass2`) and the joint histogram (:func:`kernels.similarity_joint`).
"""

from __future__ import annotations

import math

import numpy as np

from .errors import BadInputError, require
from .io import _sitk

DEFAULT_BINS = 64
KEYS = ("ncc", "nmi", "mi", "mse", "mae")


def _array(image, name: str) -> np.ndarray:
    sitk = _sitk()
    if isinstance(image, sitk.Image):
        require(image.GetNumberOfComponentsPerPixel() == 1, name, "a scalar image is needed")
        return sitk.GetArrayViewFromImage(image)
    return np.asarray(image)


def _same_grid(a, b) -> bool:
    sitk = _sitk()
    if not (isinstance(a, sitk.Image) and isinstance(b, sitk.Image)):
        return True
    if a.GetSize() != b.GetSize():
        return False
    scale = max(1.0, *(abs(v) for v in a.GetOrigin()))
    return (np.allclose(a.GetOrigin(), b.GetOrigin(), rtol=0, atol=1e-6 * scale)
            and np.allclose(a.GetSpacing(), b.GetSpacing(), rtol=1e-6, atol=0)
            and np.allclose(a.GetDirection(), b.GetDirection(), rtol=0, atol=1e-6))


def _entropy(counts: np.ndarray, total: int) -> float:
    p = counts[counts > 0] / total
    return float(-(p * np.log(p)).sum())


def similarity(fixed_image, moving_on_fixed_grid, mask=None, bins: int = DEFAULT_BINS) -> dict:
    """NCC, NMI, MI, MSE and MAE between two images on the same grid, over ``mask`` (whole image when None).

    Images: SimpleITK images (same size and geometry) or numpy arrays of the same shape. ``mask``: boolean
    array, or a SimpleITK labelmap (non-zero = inside; resampled onto the fixed grid if on another grid).
    Returns ``{ncc, nmi, mi, mse, mae, voxels, nonfinite_voxels, bins}``; a value that cannot be computed is
    None and ``reason`` says why (empty mask, constant image).
    """
    from .deformation import mask_array

    require(int(bins) >= 2, "bins", f"{bins}: at least 2 histogram bins are needed")
    bins = int(bins)
    if not _same_grid(fixed_image, moving_on_fixed_grid):
        raise BadInputError("moving image", "not on the fixed grid (size, origin, spacing or direction differ); "
                            "resample it first")
    a = _array(fixed_image, "fixed image")
    b = _array(moving_on_fixed_grid, "moving image")
    require(a.shape == b.shape, "moving image", f"shape {b.shape} differs from the fixed image's {a.shape}")
    sitk = _sitk()
    ref = fixed_image if isinstance(fixed_image, sitk.Image) else None
    shape = a.shape
    a, b = a.reshape(-1), b.reshape(-1)
    m = None
    if mask is not None:
        m = mask_array(mask, ref)
        require(m.shape == shape, "mask", f"shape {m.shape} differs from the images' {shape}")
        m = m.reshape(-1)
    out: dict = dict.fromkeys(KEYS)
    from .kernels import similarity_joint, similarity_pass1, similarity_pass2

    use_mask = m is not None
    mflat = m if use_mask else np.zeros(1, bool)
    blocks = max(1, min(256, a.size // (1 << 16)))
    p1 = similarity_pass1(a, b, mflat, use_mask, blocks)
    stats = _Pass1(p1)
    out.update({"voxels": stats.n, "nonfinite_voxels": stats.nonfinite, "bins": bins})
    if stats.n == 0:
        out["reason"] = "empty mask" if stats.nonfinite == 0 else "no voxel with finite intensities in the mask"
        return out
    ma, mb = stats.sum_a / stats.n, stats.sum_b / stats.n
    # second pass: centred products, differences and the joint histogram (each image's own [min, max])
    sums = similarity_pass2(a, b, mflat, use_mask, blocks, ma, mb)
    joints = similarity_joint(a, b, mflat, use_mask, blocks, bins, stats.min_a, stats.max_a, stats.min_b,
                              stats.max_b)
    saa, sbb, sab, sdd, sad = (float(v) for v in sums.sum(axis=0))
    joint = joints.sum(axis=0)
    n = stats.n
    out["mse"] = sdd / n
    out["mae"] = sad / n
    reasons = []
    if saa > 0 and sbb > 0:
        out["ncc"] = float(sab / math.sqrt(saa * sbb))
    else:
        reasons.append("NCC undefined: " + ("fixed" if saa == 0 else "moving") + " image constant in the region")
    joint2 = joint.reshape(bins, bins)
    h_a = _entropy(joint2.sum(axis=1), n)
    h_b = _entropy(joint2.sum(axis=0), n)
    h_ab = _entropy(joint, n)
    out["mi"] = h_a + h_b - h_ab
    if h_ab > 0:
        out["nmi"] = (h_a + h_b) / h_ab
    else:
        reasons.append("NMI undefined: both images constant in the region")
    if reasons:
        out["reason"] = "; ".join(reasons)
    return out


class _Pass1:
    """Count, sums and per-image min/max of the voxels where both images are finite (from the kernel's blocks)."""

    def __init__(self, blocks: np.ndarray):
        self.n = int(blocks[:, 0].sum())
        self.nonfinite = int(blocks[:, 1].sum())
        self.sum_a = float(blocks[:, 2].sum())
        self.sum_b = float(blocks[:, 3].sum())
        self.min_a, self.max_a = float(blocks[:, 4].min()), float(blocks[:, 5].max())
        self.min_b, self.max_b = float(blocks[:, 6].min()), float(blocks[:, 7].max())


def domain_mask(ctx, moving_image, reference_image, transform_node=None) -> np.ndarray:
    """Boolean (k, j, i) mask of fixed-grid voxels whose sample point (x, or T(x)) lies inside the moving image.

    Outside, a resampled image holds only the background value, which would bias every similarity metric.
    Rule: ITK's nearest-neighbour one, continuous index ``-0.5 <= g < n - 0.5`` on every axis (without a
    transform computed by a compiled kernel, as :class:`InsideMoving` does through a registration).
    """
    from .resample import resample_image

    sitk = _sitk()
    if transform_node is None:
        from .kernels import inside_slab
        from .transforms import image_ijk_to_lps

        ni, nj, nk = reference_image.GetSize()
        out = np.empty((nk, nj, ni), dtype=bool)
        inside_slab(np.zeros((1, 1, 1, 3), np.float32), False, 0, nk, ni, nj,
                    np.ascontiguousarray(image_ijk_to_lps(reference_image)),
                    np.ascontiguousarray(np.linalg.inv(image_ijk_to_lps(moving_image))),
                    np.array(moving_image.GetSize(), np.float64), out)
        return out
    ones = sitk.Image(moving_image.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(moving_image)
    inside = resample_image(ctx, ones, reference_image, transform_node, interpolation="nearest", background=0)
    return sitk.GetArrayViewFromImage(inside) != 0


def similarity_before_after(ctx, fixed_image, moving_image, transform_node, mask=None, bins: int = DEFAULT_BINS,
                            inside_moving_only: bool = True) -> dict:
    """``{"before": {...}, "after": {...}}`` of :func:`similarity`, moving resampled without / with T.

    ``inside_moving_only``: restrict each stage to the voxels whose sample point lies inside the moving image
    (:func:`domain_mask`; the count left out is ``outside_moving_voxels``), so that the zero background is not
    compared with tissue. The two stages may therefore cover different voxels; ``voxels`` says how many.
    """
    from .deformation import mask_array
    from .resample import resample_image

    sitk = _sitk()
    base = mask_array(mask, fixed_image) if mask is not None else None
    moving = sitk.Cast(moving_image, sitk.sitkFloat32)
    result = {}
    for stage, node in (("before", None), ("after", transform_node)):
        resampled = resample_image(ctx, moving, fixed_image, node, interpolation="linear", background=0.0)
        region = base
        outside = 0
        if inside_moving_only:
            inside = domain_mask(ctx, moving_image, fixed_image, node)
            outside = int(np.count_nonzero(~inside if base is None else (base & ~inside)))
            region = inside if base is None else (base & inside)
        stats = similarity(fixed_image, resampled, mask=region, bins=bins)
        stats["outside_moving_voxels"] = outside
        if stats["voxels"] == 0 and inside_moving_only and outside:
            stats["reason"] = "no voxel of the region maps inside the moving image"
        result[stage] = stats
    result["region"] = "mask" if mask is not None else "whole image"
    result["bins"] = int(bins)
    return result


UNITS = {"ncc": "", "nmi": "", "mi": "nats", "mse": "intensity²", "mae": "intensity", "voxels": "voxels",
         "nonfinite_voxels": "voxels", "outside_moving_voxels": "voxels", "bins": ""}


def similarity_rows(result: dict, subject: str = "") -> list[dict]:
    """Flat rows ``{subject, group, metric, stage, value, unit, note}`` of :func:`similarity_before_after`."""
    rows = []
    for stage in ("before", "after"):
        stats = result.get(stage)
        if not stats:
            continue
        for key, value in stats.items():
            if key == "reason":
                continue
            rows.append({"subject": subject, "group": f"similarity.{stage}", "metric": key, "stage": stage,
                         "value": value, "unit": UNITS.get(key, ""),
                         "note": stats.get("reason", "") if value is None else ""})
    return rows


class InsideMoving:
    """Consumer of :func:`transforms.stream`: the (k, j, i) mask of fixed voxels x whose T(x) falls in a moving
    voxel (nearest neighbour: continuous index ``-0.5 <= g < n - 0.5`` on every axis)."""

    def __init__(self, moving_image, fixed_image):
        from .transforms import image_ijk_to_lps

        self.lps_to_index = np.ascontiguousarray(np.linalg.inv(image_ijk_to_lps(moving_image)))
        self.ijk_to_lps = np.ascontiguousarray(image_ijk_to_lps(fixed_image))
        self.size = np.array(moving_image.GetSize(), np.float64)
        self.out = np.empty(fixed_image.GetSize()[::-1], dtype=bool)

    def consume(self, slab) -> None:
        from .kernels import inside_slab

        nj, ni = slab.u.shape[1], slab.u.shape[2]
        inside_slab(slab.u, True, slab.k0, slab.k1, ni, nj, self.ijk_to_lps, self.lps_to_index, self.size,
                    self.out[slab.k0:slab.k1])

    def finish(self) -> np.ndarray:
        return self.out
