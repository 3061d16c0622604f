"""Distance heat map: the fixed segment's surface coloured by its signed distance to the registered segment.

* **Surface**: the closed boundary surface of the fixed (reference) segment's voxels — VTK's discrete flying
  edges at the label boundary (vertices half-way between a voxel inside and one outside), in physical RAS mm
  through the grid's IJK→RAS matrix (spacing and direction cosines honoured).
* **Scalar** ``SignedDistance_mm`` at each vertex: the distance to the registered (compared) segment's
  boundary voxels — the boundary and distances of ``compare`` (metrics.py: exact Maurer distances between
  voxel centres) sampled trilinearly at the vertex — **positive where the vertex lies inside the registered
  segment** (the registered segment extends beyond the fixed surface there: it sticks out) and **negative
  where the registered segment falls short** of the fixed surface. This is the sign of the signed surface
  distances in surface.py seen from the other side: red = registered too far out, blue = not far enough.
* **Legend**: a diverging blue-white-red table over the symmetric range ``[−R, R]``, R = the largest absolute
  vertex value (at least one voxel), so 0 is white.

Library functions take arrays or a :class:`~context.Context` (scene outputs); the offscreen picture for the
report uses an EGL/OSMesa render window and is skipped with a reason where none can be created.
"""

from __future__ import annotations

import numpy as np

from .io import color_table_node
from .metrics import boundary_voxels, distance_to_set

ARRAY_NAME = "SignedDistance_mm"
COLOR_NODE_NAME = "RegistrationQuality signed distance (diverging, centre 0)"
_BLUE, _RED = np.array([0.02, 0.19, 0.58]), np.array([0.70, 0.01, 0.15])


def diverging_rgb(t: np.ndarray) -> np.ndarray:
    """RGB (0..1) of the diverging table at ``t`` in [−1, 1]: blue at −1, white at 0, red at +1."""
    t = np.clip(np.asarray(t, dtype=float), -1.0, 1.0)[..., None]
    end = np.where(t > 0, _RED, _BLUE)
    return (1 - np.abs(t)) + np.abs(t) * end


def signed_distance_map(compared_mask: np.ndarray, spacing) -> np.ndarray:
    """Distance (mm, float64) of every voxel centre to ``∂B`` (compare's boundary voxels), + inside B, − outside."""
    b = np.asarray(compared_mask, dtype=bool)
    d = distance_to_set(boundary_voxels(b), spacing, np.ones(b.shape, dtype=bool)).reshape(b.shape)
    return np.where(b, d, -d)


def sample_trilinear(volume: np.ndarray, points_kji: np.ndarray) -> np.ndarray:
    """Trilinear samples of a (k, j, i) array at continuous (k, j, i) positions (clamped to the array)."""
    v = np.asarray(volume, dtype=np.float64)
    p = np.asarray(points_kji, dtype=np.float64)
    shape = np.array(v.shape)
    p = np.clip(p, 0, shape - 1)
    base = np.minimum(np.floor(p).astype(int), np.maximum(shape - 2, 0))
    frac = p - base
    out = np.zeros(len(p))
    for corner in np.ndindex(2, 2, 2):
        idx = np.minimum(base + np.array(corner), shape - 1)
        w = np.prod(np.where(np.array(corner), frac, 1 - frac), axis=1)
        out += w * v[idx[:, 0], idx[:, 1], idx[:, 2]]
    return out


def _surface_index_space(mask: np.ndarray):
    """vtkPolyData of the mask's label boundary, points in (i, j, k) index units."""
    from vtkmodules.util.numpy_support import numpy_to_vtk
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkFiltersGeneral import vtkDiscreteFlyingEdges3D

    img = vtkImageData()
    img.SetDimensions(mask.shape[2], mask.shape[1], mask.shape[0])
    img.GetPointData().SetScalars(numpy_to_vtk(np.ascontiguousarray(mask, np.uint8).ravel(), deep=1))
    fe = vtkDiscreteFlyingEdges3D()
    fe.SetInputData(img)
    fe.SetValue(0, 1)
    fe.ComputeNormalsOff()
    fe.ComputeGradientsOff()
    fe.ComputeScalarsOff()
    fe.Update()
    out = fe.GetOutput()
    return out


def heatmap_polydata(reference_mask: np.ndarray, compared_mask: np.ndarray, ijk_to_ras, spacing):
    """(vtkPolyData in RAS with point array ``SignedDistance_mm``, vertex values) for two (k, j, i) masks of one
    grid (``ijk_to_ras`` 4×4, ``spacing`` (x, y, z) mm); None when the reference segment is empty."""
    from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
    from vtkmodules.vtkCommonCore import vtkPoints
    from vtkmodules.vtkFiltersCore import vtkPolyDataNormals

    a = np.asarray(reference_mask, dtype=bool)
    b = np.asarray(compared_mask, dtype=bool)
    if not a.any():
        return None, None
    # crop to both segments plus a margin; pad so the surface closes at the array edge (edge = outside)
    nz = np.argwhere(a | b)
    lo, hi = nz.min(axis=0), nz.max(axis=0) + 1
    sl = tuple(slice(int(s), int(e)) for s, e in zip(lo, hi))
    a_c, b_c = np.pad(a[sl], 1), np.pad(b[sl], 1)
    offset = lo - 1  # (k, j, i) index of crop voxel 0
    poly = _surface_index_space(a_c)
    pts = vtk_to_numpy(poly.GetPoints().GetData()).astype(np.float64)  # (i, j, k) in the crop
    if b_c.any():
        values = sample_trilinear(signed_distance_map(b_c, spacing), pts[:, ::-1])
    else:
        values = np.full(len(pts), np.nan)  # nothing to measure to
    ijk = pts + offset[::-1]
    m = np.asarray(ijk_to_ras, dtype=float)
    ras = ijk @ m[:3, :3].T + m[:3, 3]
    points = vtkPoints()
    points.SetData(numpy_to_vtk(np.ascontiguousarray(ras), deep=1))
    poly.SetPoints(points)
    arr = numpy_to_vtk(values.astype(np.float32), deep=1)
    arr.SetName(ARRAY_NAME)
    poly.GetPointData().AddArray(arr)
    poly.GetPointData().SetActiveScalars(ARRAY_NAME)
    normals = vtkPolyDataNormals()
    normals.SetInputData(poly)
    normals.SplittingOff()
    normals.ConsistencyOn()
    normals.AutoOrientNormalsOn()
    normals.Update()
    return normals.GetOutput(), values


def legend_range(values, spacing) -> tuple[float, float]:
    """Symmetric colour range ``(−R, R)``: R = max |value| (NaN ignored), at least the smallest voxel size."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    r = float(np.max(np.abs(v))) if v.size else 0.0
    r = max(r, float(min(spacing)))
    return -r, r


def vertex_rows(polydata) -> list[dict]:
    """Per-vertex rows (R, A, S mm, signed distance mm) for a table export."""
    from vtkmodules.util.numpy_support import vtk_to_numpy

    pts = vtk_to_numpy(polydata.GetPoints().GetData())
    vals = vtk_to_numpy(polydata.GetPointData().GetArray(ARRAY_NAME))
    return [{"R (mm)": float(p[0]), "A (mm)": float(p[1]), "S (mm)": float(p[2]),
             "Signed distance (mm)": None if not np.isfinite(v) else float(v)} for p, v in zip(pts, vals)]


# ---------------------------------------------------------------------------------------------------
# Scene outputs
# ---------------------------------------------------------------------------------------------------
def color_node(ctx):
    """The diverging colour table (blue − / white 0 / red +) of heat maps; created once per scene."""
    rgb = diverging_rgb(np.linspace(-1, 1, 255))
    return color_table_node(ctx, COLOR_NODE_NAME, [(str(i), c) for i, c in enumerate(rgb.tolist())])


def heatmap_model_node(ctx, polydata, name: str, value_range, visible: bool = True):
    """Model node of a heat-map surface, coloured by ``SignedDistance_mm`` over ``value_range`` with a colour
    legend; hidden when ``visible`` is False (the panel's toggle shows it)."""
    import slicer

    node = ctx.add_node("vtkMRMLModelNode", name)
    node.SetAndObservePolyData(polydata)
    node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    display.SetActiveScalarName(ARRAY_NAME)
    display.SetActiveAttributeLocation(0)  # point data
    display.SetAndObserveColorNodeID(color_node(ctx).GetID())
    display.SetScalarRangeFlag(display.UseManualScalarRange)
    display.SetScalarRange(float(value_range[0]), float(value_range[1]))
    display.SetScalarVisibility(True)
    display.SetVisibility(bool(visible))
    legend = slicer.vtkMRMLColorLegendDisplayNode()
    legend.SetName(f"{name} legend")
    ctx.scene.AddNode(legend)
    node.AddAndObserveDisplayNodeID(legend.GetID())
    legend.SetAndObservePrimaryDisplayNode(display)
    legend.SetTitleText("Signed distance (mm)")
    legend.SetVisibility(bool(visible))
    node.SetAttribute("RegistrationQuality.role", "heatmap")
    return node


def set_visible(model_node, visible: bool) -> None:
    """Show or hide a heat-map model and its legend (the panel's toggle)."""
    for i in range(model_node.GetNumberOfDisplayNodes()):
        d = model_node.GetNthDisplayNode(i)
        if d is not None:
            d.SetVisibility(bool(visible))


# ---------------------------------------------------------------------------------------------------
# Offscreen picture for the report
# ---------------------------------------------------------------------------------------------------
def render_png(polydata, value_range, path, title: str = "", size=(520, 420)) -> tuple[str | None, str]:
    """Render the surface with its legend offscreen to ``path`` -> (path or None, reason when skipped).

    The picture shows a smoothed copy of the surface (windowed sinc, 15 iterations; the vertex values are
    carried along unchanged), without the voxel staircase. Several pictures: :class:`Painter` (one window)."""
    painter = Painter(size)
    try:
        return painter.render(polydata, value_range, path, title)
    finally:
        painter.close()


class Painter:
    """One offscreen render window (EGL/OSMesa) for several heat-map pictures: the OpenGL context and its shaders
    are made once. :meth:`render` returns (path or None, reason when skipped); :meth:`close` frees the window."""

    def __init__(self, size=(520, 420)):
        self.size, self.window, self.reason = tuple(int(v) for v in size), None, ""
        try:
            import vtkmodules.vtkRenderingFreeType  # noqa: F401  (text of the legend)
            import vtkmodules.vtkRenderingOpenGL2  # noqa: F401
            from vtkmodules.vtkRenderingCore import vtkRenderWindow
        except ImportError as exc:  # pragma: no cover - VTK without rendering modules
            self.reason = f"VTK rendering modules unavailable ({exc})"
            return
        window = vtkRenderWindow()
        window.SetOffScreenRendering(1)
        if not hasattr(window, "SupportsOpenGL") or not window.SupportsOpenGL():
            self.reason = (f"no offscreen OpenGL ({window.GetClassName()}: set "
                           "VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow)")
            return
        window.SetSize(*self.size)
        self.window = window

    def close(self) -> None:
        if self.window is not None:
            self.window.Finalize()
            self.window = None

    def render(self, polydata, value_range, path, title: str = "") -> tuple[str | None, str]:
        if self.window is None:
            return None, self.reason or "the offscreen window is closed"
        from vtkmodules.vtkCommonCore import vtkLookupTable
        from vtkmodules.vtkFiltersCore import vtkPolyDataNormals, vtkWindowedSincPolyDataFilter
        from vtkmodules.vtkIOImage import vtkPNGWriter
        from vtkmodules.vtkRenderingAnnotation import vtkScalarBarActor
        from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper, vtkRenderer, vtkWindowToImageFilter

        lut = vtkLookupTable()
        n = 255
        lut.SetNumberOfTableValues(n)
        rgb = diverging_rgb(np.linspace(-1, 1, n))
        for i in range(n):
            lut.SetTableValue(i, *rgb[i].tolist(), 1.0)
        lut.SetTableRange(*value_range)
        lut.SetNanColor(0.6, 0.6, 0.6, 1.0)
        lut.Build()
        smooth = vtkWindowedSincPolyDataFilter()  # the picture only: the staircase of the voxels smoothed away
        smooth.SetInputData(polydata)
        smooth.SetNumberOfIterations(15)
        smooth.SetPassBand(0.1)
        smooth.NormalizeCoordinatesOn()
        shaded = vtkPolyDataNormals()
        shaded.SetInputConnection(smooth.GetOutputPort())
        shaded.SplittingOff()
        shaded.Update()
        mapper = vtkPolyDataMapper()
        mapper.SetInputData(shaded.GetOutput())
        mapper.SetLookupTable(lut)
        mapper.SetScalarRange(*value_range)
        mapper.SetScalarModeToUsePointFieldData()
        mapper.SelectColorArray(ARRAY_NAME)
        mapper.ScalarVisibilityOn()
        actor = vtkActor()
        actor.SetMapper(mapper)
        actor.GetProperty().SetAmbient(0.3)
        actor.GetProperty().SetDiffuse(0.7)
        actor.GetProperty().SetSpecular(0.0)
        bar = vtkScalarBarActor()
        bar.SetLookupTable(lut)
        bar.SetTitle("mm")
        bar.SetNumberOfLabels(5)
        bar.SetMaximumWidthInPixels(80)
        bar.GetLabelTextProperty().SetColor(0.1, 0.1, 0.1)
        bar.GetTitleTextProperty().SetColor(0.1, 0.1, 0.1)
        renderer = vtkRenderer()
        renderer.SetBackground(1.0, 1.0, 1.0)
        renderer.AddActor(actor)
        renderer.AddViewProp(bar)
        self.window.AddRenderer(renderer)
        camera = renderer.GetActiveCamera()  # anterior view (RAS: looking from +A towards −A), S up
        b = polydata.GetBounds()
        centre = [(b[0] + b[1]) / 2, (b[2] + b[3]) / 2, (b[4] + b[5]) / 2]
        camera.SetFocalPoint(*centre)
        camera.SetPosition(centre[0], centre[1] + 1.0, centre[2])
        camera.SetViewUp(0, 0, 1)
        renderer.ResetCamera()
        camera.Elevation(20)
        camera.Azimuth(30)
        renderer.ResetCameraClippingRange()
        try:
            self.window.Render()
            grab = vtkWindowToImageFilter()
            grab.SetInput(self.window)
            grab.ShouldRerenderOff()  # just rendered: read those pixels back, no second frame
            grab.Update()
            writer = vtkPNGWriter()
            writer.SetCompressionLevel(3)  # as the snapshots: faster, files barely larger
            writer.SetFileName(str(path))
            writer.SetInputData(grab.GetOutput())
            writer.Write()
        finally:
            self.window.RemoveRenderer(renderer)
        return str(path), ""


# ---------------------------------------------------------------------------------------------------
# Segment pairs of two label sources (compare's comparison grid and matching)
# ---------------------------------------------------------------------------------------------------
def _segment_pairs(reference, compared, lattice, by: str = "label", names=None):
    """(name, reference crop or None, compared crop, (k, j, i) of crop voxel 0, aligned reference) of the matched
    segment pairs of two :class:`~metrics.LabelSource` on ``lattice``'s voxel lattice (as ``compare_sources``
    aligns them): each pair cropped to the union box of both segments plus one voxel; ``names``: only these."""
    from .metrics import _align, _crop, _union_box, match_segments

    ref = _align(reference, lattice)
    cmp = _align(compared, lattice)
    for _label, name, rseg, cseg in match_segments(reference, compared, by):
        if names is not None and name not in names:
            continue
        r_stat = ref.stats[rseg.layer].get(rseg.label) if rseg else None
        c_stat = cmp.stats[cseg.layer].get(cseg.label) if cseg else None
        if r_stat is None:
            yield name, None, None, None
            continue
        lo, hi = _union_box([(s[0], s[1]) for s in (r_stat, c_stat) if s is not None])
        lo, hi = np.array(lo) - 1, np.array(hi) + 1
        a = _crop(ref, rseg.layer, rseg.label, lo, hi)
        b = _crop(cmp, cseg.layer, cseg.label, lo, hi) if c_stat else np.zeros(a.shape, bool)
        yield name, a, b, lo


def segment_heatmaps(reference, compared, lattice, by: str = "label", names=None):
    """[(segment name, vtkPolyData or None, vertex values or None)] for the matched segment pairs of two
    :class:`~metrics.LabelSource` on ``lattice``'s voxel lattice (as ``compare_sources`` aligns them);
    ``names``: only these segments (all when None). The surface is the reference segment's, the distances to
    the compared segment."""
    from .io import image_ijk_to_ras

    full = image_ijk_to_ras(lattice)
    spacing = lattice.GetSpacing()
    out = []
    for name, a, b, lo in _segment_pairs(reference, compared, lattice, by, names):
        if a is None:
            out.append((name, None, None))
            continue
        shift = np.eye(4)
        shift[:3, 3] = lo[::-1]
        poly, values = heatmap_polydata(a, b, full @ shift, spacing)
        out.append((name, poly, values))
    return out


class OutlineDistances:
    """The signed distance (mm) at the voxels of the reference segments' borders, for colouring the fixed outline
    of a slice snapshot: per matched segment pair, :func:`signed_distance_map` of the compared (registered)
    segment on their crop (positive inside the compared segment: it extends beyond the reference there),
    looked up at the reference segment's voxels. ``value_range``: :func:`legend_range` of the values at every
    boundary voxel of the reference segments (``metrics.boundary_voxels``), as the heat maps' legend.

    ``lattice``: the voxel lattice of the outline drawn (its voxel indices are what :meth:`values` takes)."""

    def __init__(self, reference, compared, lattice, by: str = "label", names=None):
        from .metrics import boundary_voxels

        self.lattice = lattice
        self.spacing = lattice.GetSpacing()
        self.parts = []  # (lo, reference crop, signed distances (float32) on the crop)
        border_values = []
        for _name, a, b, lo in _segment_pairs(reference, compared, lattice, by, names):
            if a is None or not a.any():
                continue
            sd = signed_distance_map(b, self.spacing).astype(np.float32) if b.any() else \
                np.full(a.shape, np.nan, np.float32)
            self.parts.append((np.asarray(lo), a, sd))
            border_values.append(sd[boundary_voxels(a)])
        values = np.concatenate(border_values) if border_values else np.empty(0)
        self.value_range = legend_range(values, self.spacing)

    def values(self, k, j, i) -> np.ndarray:
        """Signed distances at voxel indices (arrays of one shape) of the lattice; NaN outside every reference
        segment (or where its compared segment is empty)."""
        out = np.full(np.shape(k), np.nan, np.float32)
        for lo, a, sd in self.parts:
            kk, jj, ii = k - lo[0], j - lo[1], i - lo[2]
            inside = (kk >= 0) & (jj >= 0) & (ii >= 0) & (kk < a.shape[0]) & (jj < a.shape[1]) & (ii < a.shape[2])
            inside &= np.isnan(out)
            sel = np.flatnonzero(inside)
            if sel.size == 0:
                continue
            kk, jj, ii = kk.reshape(-1)[sel], jj.reshape(-1)[sel], ii.reshape(-1)[sel]
            mine = a[kk, jj, ii]
            out.reshape(-1)[sel[mine]] = sd[kk[mine], jj[mine], ii[mine]]
        return out

    def rgb(self, values) -> np.ndarray:
        """uint8 RGB of signed distances: :func:`diverging_rgb` over ``value_range`` (NaN: grey, as the heat maps)."""
        v = np.asarray(values, dtype=float)
        rgb = diverging_rgb(np.nan_to_num(v / self.value_range[1]))
        rgb[~np.isfinite(v)] = 0.6
        return np.round(rgb * 255).astype(np.uint8)
