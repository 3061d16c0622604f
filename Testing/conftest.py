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
