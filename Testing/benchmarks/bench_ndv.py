"""Benchmark: the non-diffeomorphic volume (ndv.py, numba per slab) beside the central-difference Jacobian and
Learn2Reg's SDlogJ, on a rough random displacement field; whole grid and a 20 % organ-like box mask.

    python Testing/benchmarks/bench_ndv.py [--size 512 512 300]

Prints seconds per call (the kernel's compile time is paid once, before timing; numba caches it on disk).
Asserts nothing.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from RegistrationQualityLib import ndv
from RegistrationQualityLib.deformation import Grid, jacobian_determinant


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, nargs=3, default=(256, 256, 150))
    args = parser.parse_args()
    grid = Grid(tuple(args.size), np.diag([0.7, 0.7, 2.0, 1.0]))
    u = np.random.default_rng(0).normal(0, 0.3, grid.shape + (3,)).astype(np.float32)
    ndv.non_diffeomorphic_volume(u[:4], Grid(tuple(args.size[:2]) + (4,), grid.ijk_to_lps))  # compile / load
    mask = np.zeros(grid.shape, bool)
    nk, nj, ni = grid.shape
    mask[nk // 5:4 * nk // 5, nj // 4:3 * nj // 4, ni // 4:3 * ni // 4] = True
    timings = {}
    t = time.perf_counter()
    jac = jacobian_determinant(u, grid)
    timings["central-difference J"] = time.perf_counter() - t
    t = time.perf_counter()
    ndv.non_diffeomorphic_volume(u, grid, None, jac)
    timings["NDV, whole grid"] = time.perf_counter() - t
    t = time.perf_counter()
    ndv.non_diffeomorphic_volume(u, grid, mask, jac)
    timings[f"NDV, box mask ({100 * mask.mean():.0f} %)"] = time.perf_counter() - t
    t = time.perf_counter()
    ndv.sdlogj_learn2reg(jac)
    timings["Learn2Reg SDlogJ"] = time.perf_counter() - t
    print(f"{np.prod(args.size) / 1e6:.1f} M voxels")
    for name, seconds in timings.items():
        print(f"  {name}: {seconds:.2f} s ({1e9 * seconds / np.prod(args.size):.1f} ns/voxel)")


if __name__ == "__main__":
    main()
