"""Shared fixtures: a clean headless Slicer scene per test, synthetic images with awkward geometry."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")


@pytest.fixture
def ctx():
    """A fresh MRML scene with slicer-core's module logics (kept alive for the test)."""
    from RegistrationQualityLib.context import Context

    context = Context.headless()
    yield context
    context.scene.Clear(1)


def rotation_matrix(axis, degrees):
    a = np.asarray(axis, dtype=float)
    a = a / np.linalg.norm(a)
    t = math.radians(degrees)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(t) * k + (1 - math.cos(t)) * k @ k


def make_image(array_kji, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=None):
    """SimpleITK image from a (k, j, i) numpy array with the given LPS geometry."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.asarray(array_kji))
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetOrigin(tuple(float(o) for o in origin))
    if direction is not None:
        img.SetDirection(tuple(float(v) for v in np.asarray(direction, dtype=float).ravel()))
    return img


OBLIQUE = rotation_matrix((1, 2, 3), 30.0)
FLIPPED = np.diag([-1.0, 1.0, -1.0]) @ rotation_matrix((0, 0, 1), 10.0)


@pytest.fixture
def oblique_image():
    rng = np.random.default_rng(0)
    arr = rng.normal(100, 20, size=(7, 9, 11)).astype(np.float32)
    return make_image(arr, spacing=(0.8, 1.5, 2.5), origin=(-12.5, 30.0, 7.25), direction=OBLIQUE)


def run_cli(*args, cwd=None, env=None):
    """Run the console script in a subprocess; returns CompletedProcess (text)."""
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "RegistrationQualityLib", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=e, timeout=600)


# -- an analytic registration case: a ball, moving = fixed shifted by SHIFT_LPS ----------------------------
SHIFT_LPS = np.array([6.0, -3.0, 4.0])  # moving = fixed content moved by this (mm)


def ball(shape, spacing, origin, direction, center_lps, radius, value=1):
    img = make_image(np.zeros(shape, np.float32), spacing, origin, direction)
    k, j, i = np.indices(shape)
    idx = np.stack([i.ravel(), j.ravel(), k.ravel()], 1).astype(float)
    d = np.array(img.GetDirection()).reshape(3, 3)
    pts = idx * np.array(spacing) @ d.T + np.array(origin)
    inside = (np.linalg.norm(pts - center_lps, axis=1) <= radius).reshape(shape)
    return inside.astype(np.float32) * value


def write_shift_case(tmp_path):
    import SimpleITK as sitk

    """Fixed (axial, 1.5x1.5x3 mm) and moving (oblique, 1.2 mm) images of a ball; moving = fixed shifted."""
    f_geo = dict(spacing=(1.5, 1.5, 3.0), origin=(-30.0, -30.0, -30.0), direction=None)
    m_geo = dict(spacing=(1.2, 1.2, 1.2), origin=(-25.0, -40.0, -28.0), direction=OBLIQUE)
    center = np.array([2.0, 1.0, 0.0])
    f_arr = ball((21, 41, 41), **f_geo, center_lps=center, radius=12)
    m_arr = ball((50, 50, 50), **m_geo, center_lps=center + SHIFT_LPS, radius=12)
    rng = np.random.default_rng(0)
    fixed = make_image((f_arr * 400 + 100 + rng.normal(0, 5, f_arr.shape)).astype(np.int16), **f_geo)
    moving = make_image((m_arr * 3.0 + 0.5).astype(np.float32), **m_geo)
    sitk.WriteImage(fixed, str(tmp_path / "fixed.nrrd"))
    sitk.WriteImage(moving, str(tmp_path / "moving.nrrd"))
    sitk.WriteImage(make_image(f_arr.astype(np.uint8) * 3, **f_geo), str(tmp_path / "fixed_labels.nrrd"))
    sitk.WriteImage(make_image(m_arr.astype(np.uint8) * 3, **m_geo), str(tmp_path / "moving_labels.nrrd"))
    t = sitk.TranslationTransform(3, tuple(SHIFT_LPS))  # resampling transform: fixed point -> moving point
    sitk.WriteTransform(t, str(tmp_path / "good.tfm"))
    sitk.WriteTransform(sitk.TranslationTransform(3, (0.0, 0.0, 0.0)), str(tmp_path / "identity.tfm"))
    pts = {"A": (0.0, 0.0, 0.0), "B": (10.0, -5.0, 3.0), "C": (-8.0, 7.0, -6.0)}
    (tmp_path / "fixed.csv").write_text("label,x,y,z\n" + "".join(f"{k},{v[0]},{v[1]},{v[2]}\n" for k, v in pts.items()))
    moved = {k: np.array(v) + SHIFT_LPS for k, v in pts.items()}
    (tmp_path / "moving.csv").write_text(
        "label,x,y,z\n" + "".join(f"{k},{v[0]},{v[1]},{v[2]}\n" for k, v in reversed(moved.items())))
    return tmp_path


def run_elastix_tool(cmd, **kwargs):
    """subprocess.run for the elastix/transformix executables (independent references), retried once when the
    tool itself crashed (killed by a signal, e.g. Debian elastix 5.0.1 aborting with "std::system_error:
    Operation not permitted" when threads cannot be started on a loaded machine). A tool that ran and failed
    (exit status > 0) is not retried: its failure stays the test's failure."""
    proc = subprocess.run(cmd, **kwargs)
    if proc.returncode < 0:
        proc = subprocess.run(cmd, **kwargs)
    return proc
