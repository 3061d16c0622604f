"""Write RegistrationQuality/RegistrationQualityLib/kernels_bspline.py: the unrolled cubic B-spline tensor sums of
kernels.chain_slab (run ``python scripts/gen_bspline_kernels.py`` after changing this file; the output is
committed, so that numba can cache it).

Why generated: LLVM vectorises a loop over voxels only when its body is straight-line code on 1-D arrays indexed
from 0, with the run's 4×4×4 coefficients as scalars. Writing the 64 terms out by hand would be error-prone;
this script writes them in one fixed order (x, then y, then z: the order of the scalar formula).
"""

from __future__ import annotations

from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "RegistrationQuality" / "RegistrationQualityLib" / "kernels_bspline.py"


def _coef(zz: int, yy: int, xx: int, q: int) -> str:
    return f"c{((zz * 4 + yy) * 4 + xx) * 3 + q}"


def tensor_sum(name: str, with_dx: bool) -> str:
    """``name(c, wa, wb, wc, o, i, e)``: o[q, t] = Σ c[z,y,x,q]·wa[x, t]·wb[y, t]·wc[z, t] for the 3 components q
    and the voxels t = i..e-1 (and, ``with_dx``, o[3+q, t] = the same with ``da`` = wa's derivative weights)."""
    args = "c, wa, wb, wc, da, o, i, e" if with_dx else "c, wa, wb, wc, o, i, e"
    lines = ["@njit(cache=True)", f"def {name}({args}):"]
    doc = ("Value (o[0..2]) and x-derivative (o[3..5]) of the tensor sum over one run of voxels"
           if with_dx else "The tensor sum over one run of voxels (o[0..2])")
    lines.append(f'    """{doc}; ``c``: the run\'s 192 coefficients (z, y, x, component); ``wa``/``wb``/``wc``'
                 ' (4, ni): weights along x/y/z at the row\'s voxels; voxels i..e-1 (generated code)."""')
    lines += [f"    c{i} = c[{i}]" for i in range(192)]
    for a in "abc":
        lines += [f"    w{a}{k} = w{a}[{k}, i:e]" for k in range(4)]
    if with_dx:
        lines += [f"    da{k} = da[{k}, i:e]" for k in range(4)]
    outs = 6 if with_dx else 3
    lines += [f"    o{q} = o[{q}, i:e]" for q in range(outs)]
    lines.append("    for t in range(e - i):")
    body = [f"x{k} = wa{k}[t]" for k in range(4)]
    if with_dx:
        body += [f"e{k} = da{k}[t]" for k in range(4)]
    for zz in range(4):
        for yy in range(4):
            body.append(f"wy = wb{yy}[t]")
            for q in range(3):
                terms = " + ".join(f"{_coef(zz, yy, xx, q)} * x{xx}" for xx in range(4))
                body.append(f"r{q} = {terms}")
                if with_dx:
                    terms = " + ".join(f"{_coef(zz, yy, xx, q)} * e{xx}" for xx in range(4))
                    body.append(f"s{q} = {terms}")
            op = "=" if yy == 0 else "+="
            for q in range(3):
                body.append(f"y{q} {op} r{q} * wy")
                if with_dx:
                    body.append(f"yx{q} {op} s{q} * wy")
        body.append(f"wz = wc{zz}[t]")
        op = "=" if zz == 0 else "+="
        for q in range(3):
            body.append(f"v{q} {op} y{q} * wz")
            if with_dx:
                body.append(f"g{q} {op} yx{q} * wz")
    body += [f"o{q}[t] = v{q}" for q in range(3)]
    if with_dx:
        body += [f"o{3 + q}[t] = g{q}" for q in range(3)]
    lines += ["        " + b for b in body]
    return "\n".join(lines) + "\n"


RUN = 32  # voxels per call of tensor_sum_jacobian: its scratch rows lie RUN apart (constant offsets)


def tensor_sum_jacobian(name: str) -> str:
    """``name(c, fr, o, n)``: value and the three derivatives (d/dgx, d/dgy, d/dgz) of the tensor sum for the voxels
    t = 0..n-1 (n <= RUN) in one pass. ``fr``: the fractional parts of the voxels' grid index along x, y, z at
    ``fr[t]``, ``fr[RUN + t]``, ``fr[2 RUN + t]``; ``o[q RUN + t]``: value (q = 0..2), d/dgx (3..5), d/dgy (6..8),
    d/dgz (9..11). The weights are made from ``fr`` in the loop (float64, then float32: what the weight rows of
    :func:`tensor_sum` hold), and every output is computed with the very operations, in the same order, as
    :func:`tensor_sum` given the weights of that derivative, so the results are bit for bit those of three tensor
    sums; the x sums over the weights serve the value, d/dy and d/dz, and the y sums the value and d/dz (576
    products per voxel instead of 1008). One input and one output array at constant offsets: LLVM needs a single
    runtime alias check to vectorise the loop (with a row array per weight it gives up: "too many memory
    checks")."""
    lines = ["@njit(cache=True)", f"def {name}(c, fr, o, n):"]
    lines.append('    """Value and d/dgx, d/dgy, d/dgz of the tensor sum over one run of at most RUN voxels (see'
                 ' scripts/gen_bspline_kernels.py; generated code)."""')
    lines += [f"    c{i} = c[{i}]" for i in range(192)]
    lines.append("    for t in range(n):")
    body = []
    for a, ax in enumerate("xyz"):
        body += [f"f = fr[t + {a * RUN}]" if a else "f = fr[t]", "h = 1.0 - f", "f2 = f * f", "f3 = f2 * f"]
        body += [f"w{ax}0 = np.float32(h * h * h * SIXTH)", f"w{ax}1 = np.float32((3.0 * f3 - 6.0 * f2 + 4.0) * SIXTH)",
                 f"w{ax}2 = np.float32((-3.0 * f3 + 3.0 * f2 + 3.0 * f + 1.0) * SIXTH)",
                 f"w{ax}3 = np.float32(f3 * SIXTH)", f"d{ax}0 = np.float32(-0.5 * h * h)",
                 f"d{ax}1 = np.float32(1.5 * f2 - 2.0 * f)", f"d{ax}2 = np.float32(-1.5 * f2 + f + 0.5)",
                 f"d{ax}3 = np.float32(0.5 * f2)"]
    for zz in range(4):
        for yy in range(4):
            for q in range(3):
                body.append(f"r{q} = " + " + ".join(f"{_coef(zz, yy, xx, q)} * wx{xx}" for xx in range(4)))
                body.append(f"s{q} = " + " + ".join(f"{_coef(zz, yy, xx, q)} * dx{xx}" for xx in range(4)))
            op = "=" if yy == 0 else "+="
            for q in range(3):
                body += [f"y{q} {op} r{q} * wy{yy}", f"yx{q} {op} s{q} * wy{yy}", f"yy{q} {op} r{q} * dy{yy}"]
        op = "=" if zz == 0 else "+="
        for q in range(3):
            body += [f"v{q} {op} y{q} * wz{zz}", f"g{q} {op} yx{q} * wz{zz}", f"h{q} {op} yy{q} * wz{zz}",
                     f"k{q} {op} y{q} * dz{zz}"]
    for q in range(3):
        body += [f"o[t + {q * RUN}] = v{q}" if q else "o[t] = v0", f"o[t + {(3 + q) * RUN}] = g{q}",
                 f"o[t + {(6 + q) * RUN}] = h{q}", f"o[t + {(9 + q) * RUN}] = k{q}"]
    lines += ["        " + b for b in body]
    return "\n".join(lines) + "\n"


def source() -> str:
    """The text of kernels_bspline.py."""
    return ('"""Generated by scripts/gen_bspline_kernels.py — do not edit. The cubic B-spline tensor sums over a run\n'
            'of voxels sharing one 4×4×4 support, written out so that the loop over voxels vectorises (see\n'
            'kernels.chain_slab)."""\n\n'
            "import numpy as np\nfrom numba import njit\n\n"
            f"RUN = {RUN}\nSIXTH = 1.0 / 6.0\n\n\n"
            + tensor_sum("tensor_sum", False) + "\n\n" + tensor_sum_jacobian("tensor_sum_jacobian"))


def main() -> None:
    text = source()
    OUT.write_text(text)
    print(f"wrote {OUT} ({len(text.splitlines())} lines)")


if __name__ == "__main__":
    main()
