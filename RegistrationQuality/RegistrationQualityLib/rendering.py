"""PNG snapshots of outlines on the fixed image; checkerboard and difference volumes.

Snapshots are made by Slicer's own slice pipeline (``vtkMRMLSliceLogic``: reslice, window/level, colour table)
whose output is exactly the pixels a Slicer slice view shows: RAS-aligned axial/coronal/sagittal planes in
radiological convention (patient left on the screen right in axial and coronal views, anterior up in axial,
superior up in coronal and sagittal, anterior on the screen left in sagittal) and square screen pixels in
millimetres (the aspect ratio follows the spacing). The outlines of each overlay are resliced with the same
XY->RAS matrix (nearest voxel) and painted inside the structure's border; the patient direction letters, the
slice position, the title and the legend are drawn by VTK's FreeType text renderer into the image.

No OpenGL is involved (no render window, no EGL/OSMesa, no X display): snapshots work on any headless
machine where ``slicer-core`` imports. :func:`rendering_available` still reports whether the text renderer
works, and the tests use it to skip with a reason if not.

One slice logic is kept per context and reused: the first snapshot pays the set-up, later ones cost tens of
milliseconds each (see ``Testing/benchmarks/bench_snapshots.py``).
"""

from __future__ import annotations

import contextlib
import math
import weakref
from pathlib import Path

import numpy as np

from .context import TemporaryNodes
from .errors import BadInputError, require
from .io import _sitk, image_to_volume, volume_to_image
from .segmentation import FIXED_COLOR, MOVING_COLOR, OUTLINE_THICKNESS, parse_color

VIEWS = ("axial", "coronal", "sagittal")
_ORIENTATIONS = {"axial": "Axial", "coronal": "Coronal", "sagittal": "Sagittal"}
# (screen width axis, screen height axis) of each view, as RAS axis indices
_VIEW_AXES = {"axial": (0, 1), "coronal": (0, 2), "sagittal": (1, 2)}
_NORMAL_AXIS = {"axial": 2, "coronal": 1, "sagittal": 0}
_AXIS_LETTERS = (("L", "R"), ("P", "A"), ("I", "S"))  # (negative, positive) RAS direction

HEADER_HEIGHT = 44  # pixels of the title/legend band on top of each snapshot
MIN_WIDTH = 360  # narrower views are letterboxed so the header stays legible
MIN_HEIGHT = 96  # flatter views (a thin slab seen from the side) are letterboxed too
DEFAULT_SIZE = 512  # pixels along the longest side of a view
BACKGROUND_PERCENTILES = (1.0, 99.0)


# ---------------------------------------------------------------------------------------------------
# Availability
# ---------------------------------------------------------------------------------------------------
_AVAILABLE: tuple[bool, str] | None = None


def rendering_available() -> tuple[bool, str]:
    """``(True, "")`` when snapshots can be made here, else ``(False, reason)`` (cached).

    Snapshots need no OpenGL: Slicer's slice pipeline reslices on the CPU and text is drawn by VTK's FreeType
    text renderer into an image. What can be missing is VTK's FreeType module (a VTK built without it).
    """
    global _AVAILABLE
    if _AVAILABLE is None:
        try:
            rgba = _text_rgba("Ag", 12, (1.0, 1.0, 1.0))
            _AVAILABLE = (True, "") if rgba[..., 3].max() > 0 else (False, "VTK's FreeType text renderer drew nothing")
        except Exception as exc:  # ImportError, or a VTK without FreeType
            _AVAILABLE = (False, f"VTK FreeType text rendering unavailable ({exc.__class__.__name__}: {exc})")
    return _AVAILABLE


def _text_rgba(text: str, size: int, color, bold: bool = True) -> np.ndarray:
    """RGBA uint8 array (rows top to bottom) of ``text`` drawn by VTK's FreeType renderer (no window, no GL)."""
    import vtkmodules.vtkRenderingFreeType  # noqa: F401  (registers the FreeType text renderer)
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkRenderingCore import vtkTextProperty, vtkTextRenderer

    renderer = vtkTextRenderer.GetInstance()
    if renderer is None:
        raise RuntimeError("no text renderer")
    prop = vtkTextProperty()
    prop.SetFontFamilyToArial()
    prop.SetFontSize(int(size))
    prop.SetColor(*(float(c) for c in color))
    prop.SetBold(bool(bold))
    image = vtkImageData()
    dims = [0, 0]
    if not renderer.RenderString(prop, str(text), image, dims, 72):
        raise RuntimeError(f"could not render the text '{text}'")
    w, h, _ = image.GetDimensions()
    rgba = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(h, w, 4)
    return np.ascontiguousarray(rgba[: max(dims[1], 1), : max(dims[0], 1)][::-1])


def draw_text(rgb: np.ndarray, text: str, x: float, y: float, size: int = 14, color=(1.0, 1.0, 1.0),
              halign: str = "left", valign: str = "top", bold: bool = True, halo: bool = True) -> int:
    """Draw ``text`` into an RGB array in place, anchored at pixel (x, y) (rows top to bottom); returns its width.

    ``halign``: left/center/right of the text at x; ``valign``: top/center/bottom at y. ``halo``: a dark
    one-pixel outline so the text stays legible on any background.
    """
    color_layer, alpha, dark = _text_layers(str(text), int(size), tuple(float(c) for c in color), bool(bold))
    th, tw = alpha.shape[:2]
    x0 = int(round(x - {"left": 0, "center": tw / 2, "right": tw}[halign]))
    y0 = int(round(y - {"top": 0, "center": th / 2, "bottom": th}[valign]))
    if halo:
        _blend(rgb, np.zeros_like(color_layer), dark, x0, y0)
    _blend(rgb, color_layer, alpha, x0, y0)
    return tw


_TEXT_CACHE: dict = {}  # (text, size, colour, bold) -> layers: the letters and labels repeat on every view


def _text_layers(text: str, size: int, color: tuple, bold: bool):
    """(colour layer, alpha, halo alpha) float32 arrays of a text, drawn once by FreeType and kept."""
    key = (text, size, color, bold)
    if key not in _TEXT_CACHE:
        rgba = _text_rgba(text, size, color, bold)
        alpha = rgba[..., 3:4].astype(np.float32) / 255.0
        dark = np.zeros_like(alpha)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                dark = np.maximum(dark, np.roll(np.roll(alpha, dy, axis=0), dx, axis=1))
        if len(_TEXT_CACHE) > 512:
            _TEXT_CACHE.clear()
        _TEXT_CACHE[key] = (rgba[..., :3].astype(np.float32), alpha, dark * 0.75)
    return _TEXT_CACHE[key]


def _blend(rgb, layer, alpha, x0, y0) -> None:
    h, w = rgb.shape[:2]
    th, tw = layer.shape[:2]
    ys, xs = max(0, -y0), max(0, -x0)
    ye, xe = min(th, h - y0), min(tw, w - x0)
    if ye <= ys or xe <= xs:
        return
    region = rgb[y0 + ys: y0 + ye, x0 + xs: x0 + xe].astype(np.float32)
    a = alpha[ys:ye, xs:xe]
    rgb[y0 + ys: y0 + ye, x0 + xs: x0 + xe] = np.round(region * (1 - a) + layer[ys:ye, xs:xe] * a).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------
# Checkerboard and difference volumes
# ---------------------------------------------------------------------------------------------------
def _as_image(image_or_node, name: str):
    if hasattr(image_or_node, "GetImageData"):
        return volume_to_image(image_or_node)
    require(image_or_node is not None, name, "no image given")
    return image_or_node


def _check_same_grid(fixed, registered, name: str = "registered image") -> None:
    same = (
        fixed.GetSize() == registered.GetSize()
        and np.allclose(fixed.GetSpacing(), registered.GetSpacing(), rtol=1e-5, atol=1e-6)
        and np.allclose(fixed.GetOrigin(), registered.GetOrigin(), atol=1e-4)
        and np.allclose(fixed.GetDirection(), registered.GetDirection(), atol=1e-6)
    )
    require(same, name, "not on the fixed image's grid (resample it onto the fixed image first)")


def _normalized(image):
    """Float32 copy linearly mapped so its 1st..99th percentiles (finite voxels) become 0..1."""
    sitk = _sitk()
    out = sitk.GetImageFromArray(_scaled(sitk.GetArrayViewFromImage(image), percentile_range(image)))
    out.CopyInformation(image)
    return out


def checkerboard_image(fixed, registered, squares=8, normalize: bool = True):
    """Checkerboard of two images on the same grid: alternate blocks show fixed and registered voxels.

    ``squares``: number of blocks along each axis (an int or three ints, i/j/k). ``normalize``: map each image's
    1st..99th percentiles to 0..1 first (images in different units or modalities stay comparable). Returns a
    Float32 SimpleITK image on the fixed grid; the block at voxel (0, 0, 0) shows the fixed image.
    """
    sitk = _sitk()
    fixed = _as_image(fixed, "fixed image")
    registered = _as_image(registered, "registered image")
    _check_same_grid(fixed, registered)
    # slice by slice into one float32 array: no normalised float copies of the two whole volumes
    block = _board_blocks(fixed, squares)
    a = sitk.GetArrayViewFromImage(fixed)
    b = sitk.GetArrayViewFromImage(registered)
    ranges = (percentile_range(fixed), percentile_range(registered)) if normalize else None
    ni, nj, nk = fixed.GetSize()
    plane = (np.arange(nj)[:, None] // block[1] + np.arange(ni)[None, :] // block[0])
    out = np.empty((nk, nj, ni), np.float32)
    for k in range(nk):
        take_fixed = (plane + k // block[2]) % 2 == 0
        fa, fb = _scaled(a[k], ranges[0] if ranges else None), _scaled(b[k], ranges[1] if ranges else None)
        np.copyto(out[k], np.where(take_fixed, fa, fb))
    board = sitk.GetImageFromArray(out)
    board.CopyInformation(fixed)
    return board


def _board_blocks(fixed, squares) -> list:
    """Block size (voxels along i, j, k) of the checkerboard: ITK's CheckerBoardImageFilter pattern (block =
    index // (size // pattern); an even block sum shows the fixed image)."""
    pattern = [int(squares)] * 3 if np.isscalar(squares) else [int(s) for s in squares]
    require(len(pattern) == 3 and all(s >= 1 for s in pattern), "squares", f"{squares!r}: need 1 or more per axis")
    pattern = [min(s, n) for s, n in zip(pattern, fixed.GetSize())]
    return [max(1, n // p) for n, p in zip(fixed.GetSize(), pattern)]


def _scaled(values, value_range):
    """float32 ``(values - low) / (high - low)`` (``value_range`` None: the values as float32): the snapshots'
    normalisation of an image to its :func:`percentile_range`."""
    out = np.asarray(values).astype(np.float32)
    if value_range is not None:
        lo, hi = value_range
        out -= np.float32(lo)
        if hi > lo:
            out /= np.float32(hi - lo)
    return out


def _board_window(fixed, registered, block, ranges) -> tuple[float, float]:
    """:func:`auto_window` of :func:`checkerboard_image`, from the board's voxels :func:`_sample_values` would
    look at, computed at those voxels only (the board itself is never built)."""
    sitk = _sitk()
    a = sitk.GetArrayViewFromImage(fixed).reshape(-1)
    b = sitk.GetArrayViewFromImage(registered).reshape(-1)
    ni, nj, _nk = fixed.GetSize()
    flat = np.arange(0, a.size, a.size // 500_000 if a.size > 1_000_000 else 1)
    k, rest = np.divmod(flat, ni * nj)
    j, i = np.divmod(rest, ni)
    take_fixed = (i // block[0] + j // block[1] + k // block[2]) % 2 == 0
    fa = _scaled(a[flat], ranges[0] if ranges else None)
    fb = _scaled(b[flat], ranges[1] if ranges else None)
    values = np.where(take_fixed, fa, fb)
    return _auto_window(values[np.isfinite(values)])


def difference_image(fixed, registered, normalize: bool = False):
    """Absolute difference ``|fixed - registered|`` voxel by voxel (Float32, on the fixed grid).

    In the images' own units (same modality); with ``normalize`` each image is first mapped so its
    1st..99th percentiles become 0..1.
    """
    sitk = _sitk()
    fixed = _as_image(fixed, "fixed image")
    registered = _as_image(registered, "registered image")
    _check_same_grid(fixed, registered)
    a = _normalized(fixed) if normalize else sitk.Cast(fixed, sitk.sitkFloat32)
    b = _normalized(registered) if normalize else sitk.Cast(registered, sitk.sitkFloat32)
    b.CopyInformation(a)
    return sitk.Abs(sitk.Subtract(a, b))


def _volume_with_window(ctx, image, name: str):
    node = image_to_volume(ctx, image, name)
    lo, hi = auto_window(image)
    display = node.GetDisplayNode()
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(lo, hi)
    return node


def checkerboard_node(ctx, fixed, registered, squares=8, name: str = "checkerboard", normalize: bool = True):
    """Scalar volume node of :func:`checkerboard_image`, windowed by :func:`auto_window`."""
    return _volume_with_window(ctx, checkerboard_image(fixed, registered, squares, normalize), name)


def difference_node(ctx, fixed, registered, name: str = "absolute difference", normalize: bool = False):
    """Scalar volume node of :func:`difference_image`, windowed by :func:`auto_window`."""
    return _volume_with_window(ctx, difference_image(fixed, registered, normalize), name)


def _sample_values(image_or_array) -> np.ndarray:
    """The voxel values the automatic windows look at: every voxel, or above 1 000 000 voxels a regular subsample
    (every ``size // 500 000``-th voxel in memory order, >= 500 000 values), finite ones only. No whole-volume
    copy: the subsample is taken from the array view first (identical to filtering first when all voxels are
    finite)."""
    sitk = _sitk()
    arr = image_or_array if isinstance(image_or_array, np.ndarray) else sitk.GetArrayViewFromImage(image_or_array)
    values = arr.reshape(-1)
    if values.size > 1_000_000:
        values = values[:: values.size // 500_000]
    if values.dtype.kind == "f":
        values = values[np.isfinite(values)]
    return values


def percentile_range(image_or_array, percentiles=BACKGROUND_PERCENTILES) -> tuple[float, float]:
    """(low, high) percentiles of the finite voxels (see :func:`_sample_values`): the snapshots' normalisation."""
    return _percentiles(_sample_values(image_or_array), percentiles)


def _percentiles(values, percentiles=BACKGROUND_PERCENTILES) -> tuple[float, float]:
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(values, percentiles))
    if hi <= lo:
        lo, hi = float(values.min()), float(values.max())
    if hi <= lo:  # constant: mid-grey
        lo, hi = lo - 0.5, lo + 0.5
    return lo, hi


def auto_window(image_or_array) -> tuple[float, float]:
    """Automatic display window (low, high) of the snapshots' background and of the scene volumes made here.

    The 1st..99th percentiles of the *object's* voxels: the finite voxels above the Otsu threshold of the image
    (air around a body, the zero background of an MR volume are left out, so soft tissue keeps its contrast).
    Falls back to the percentiles of all voxels when that object is under 1 % of the voxels or uniform, and to
    min..max when the percentiles coincide (a constant image is mid-grey). Computed on :func:`_sample_values`.
    """
    return _auto_window(_sample_values(image_or_array))


def _auto_window(values) -> tuple[float, float]:
    from .segmentation import otsu_threshold

    if values.size == 0:
        return 0.0, 1.0
    sitk = _sitk()
    t = otsu_threshold(sitk.GetImageFromArray(values.astype(np.float32).reshape(1, 1, -1)))
    if t is not None:
        above = values[values > t]
        if above.size >= 0.01 * values.size and above.min() < above.max():  # a uniform object: see it all
            return _percentiles(above)
    return _percentiles(values)


# ---------------------------------------------------------------------------------------------------
# PNG helpers (VTK only)
# ---------------------------------------------------------------------------------------------------
def read_png(path) -> np.ndarray:
    """RGB uint8 array (rows top to bottom) of a PNG file."""
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkIOImage import vtkPNGReader

    p = Path(path)
    require(p.is_file(), str(path), "PNG file not found")
    reader = vtkPNGReader()
    reader.SetFileName(str(p))
    reader.Update()
    img = reader.GetOutput()
    w, h, _ = img.GetDimensions()
    scalars = img.GetPointData().GetScalars()
    require(scalars is not None and w > 0, str(path), "not a readable PNG image")
    comps = scalars.GetNumberOfComponents()
    arr = vtk_to_numpy(scalars).reshape(h, w, comps)[::-1]
    if comps == 1:
        arr = np.repeat(arr, 3, axis=2)
    return np.ascontiguousarray(arr[:, :, :3])


def write_png(rgb: np.ndarray, path) -> str:
    """Write an (H, W, 3) uint8 array (rows top to bottom) as PNG; returns the path as str.

    Encoded here (PNG: 8-bit RGB, no filter, zlib level 3; the PNG specification's chunks and CRCs): about twice
    as fast as libpng's adaptive filtering through vtkPNGWriter and as small on these pictures (flat areas)."""
    import struct
    import zlib

    rgb = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))
    require(rgb.ndim == 3 and rgb.shape[2] == 3, str(path), "an (H, W, 3) RGB array is needed")
    h, w = rgb.shape[:2]
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rgb.reshape(h, w * 3)], axis=1)  # filter type 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(raw.tobytes(), 3)) + chunk(b"IEND", b"")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(png)
    return str(path)


def _pad_to(arr: np.ndarray, height: int, width: int, value: int = 0) -> np.ndarray:
    out = np.full((height, width, 3), value, np.uint8)
    out[: arr.shape[0], : arr.shape[1]] = arr
    return out


def side_by_side(before_png, after_png, out, gap: int = 8) -> str:
    """Put two PNGs next to each other (left: before, right: after) with a ``gap``-pixel grey separator."""
    return write_png(_side_by_side(read_png(before_png), read_png(after_png), gap), out)


def _side_by_side(a: np.ndarray, b: np.ndarray, gap: int = 8) -> np.ndarray:
    h = max(a.shape[0], b.shape[0])
    sep = np.full((h, gap, 3), 96, np.uint8)
    return np.concatenate([_pad_to(a, h, a.shape[1]), sep, _pad_to(b, h, b.shape[1])], axis=1)


def tile(images: list, columns: int, gap: int = 2) -> np.ndarray:
    """Tile equally sized RGB arrays row by row (``columns`` per row) with ``gap``-pixel dark separators."""
    h, w = images[0].shape[:2]
    rows = int(math.ceil(len(images) / columns))
    out = np.full((rows * h + (rows - 1) * gap, columns * w + (columns - 1) * gap, 3), 40, np.uint8)
    for n, img in enumerate(images):
        r, c = divmod(n, columns)
        out[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = img
    return out


# ---------------------------------------------------------------------------------------------------
# The renderer
# ---------------------------------------------------------------------------------------------------
def orientation_letters(slice_to_ras) -> dict:
    """Patient-direction letters at the screen edges of a slice view from its SliceToRAS matrix (4×4 or 3×3)."""
    m = np.asarray(slice_to_ras, dtype=float)[:3, :3]

    def letter(v):
        axis = int(np.argmax(np.abs(v)))
        return _AXIS_LETTERS[axis][1 if v[axis] > 0 else 0]

    return {"right": letter(m[:, 0]), "left": letter(-m[:, 0]), "top": letter(m[:, 1]), "bottom": letter(-m[:, 1])}


def _matrix_to_numpy(m) -> np.ndarray:
    from .io import vtk_to_matrix

    return vtk_to_matrix(m)


def _numpy_to_matrix(a):
    from .io import matrix_to_vtk

    return matrix_to_vtk(a)


class LabelMask:
    """One label of a label image as an overlay: the voxels of ``image`` equal to ``value`` (no mask is built).

    ``box``: ``(lo, hi)`` exclusive (k, j, i) index box of those voxels when known (e.g. ``LabelSource.stats``),
    so the outline's centre and extent are found without scanning the whole image."""

    def __init__(self, image, value: int, box=None):
        self.image, self.value, self.box = image, int(value), box


class Overlay:
    """A mask to outline: voxels in their own index space plus how to reach them from the world (RAS).

    The voxels are not copied: ``arr_kji`` is kept as given (e.g. the view of a SimpleITK image) and only the
    pixels of a drawn slice are looked up (:func:`sample_pixels`)."""

    def __init__(self, arr_kji, ijk_to_ras, color, label, from_world=None, to_world=None, value=None, box=None,
                 keep=None):
        """``arr_kji``: 3D array, non-zero inside (or equal to ``value`` when given); ``ijk_to_ras``: 4×4 matrix
        of its indices (local frame). ``from_world`` (vtkAbstractTransform, world -> local RAS) and ``to_world``
        (local -> world) when the mask sits under a parent transform. ``box``: (lo, hi) (k, j, i) index box of the
        inside voxels when known. ``keep``: an object owning the array's memory (kept alive with the overlay)."""
        self.color, self.label = color, label
        self.distances = None  # heatmap.OutlineDistances: the outline coloured by signed distance (see below)
        self.rgb = np.round(np.array(parse_color(color)) * 255).astype(np.uint8)
        self.arr, self.value, self._keep = np.asarray(arr_kji), value, keep
        self.ijk_to_ras = np.asarray(ijk_to_ras, dtype=float)
        self.ras_to_ijk = np.linalg.inv(self.ijk_to_ras)
        self.from_world = from_world
        if from_world is not None and from_world.IsA("vtkMatrix4x4"):  # linear: one matrix, the fast path
            to_world_matrix = np.linalg.inv(_matrix_to_numpy(from_world))
            self.ras_to_ijk = self.ras_to_ijk @ _matrix_to_numpy(from_world)
            self.ijk_to_ras = to_world_matrix @ self.ijk_to_ras
            self.from_world = to_world = None
        # centroid and bounds (voxel-centre box) in the world, from per-axis projections of the inside voxels'
        # index box (no index arrays, no whole-volume mask)
        self.centroid = self.bounds = None
        if box is None:
            from .metrics import _foreground_box

            box = _foreground_box(self.arr if value is None else self.arr == value)
        if box is None:
            return
        lo_kji = np.asarray(box[0], int)
        crop = self.arr[tuple(slice(int(s), int(e)) for s, e in zip(box[0], box[1]))]
        inside = crop != 0 if value is None else crop == value
        counts = [np.count_nonzero(inside, axis=(1, 2)), np.count_nonzero(inside, axis=(0, 2)),
                  np.count_nonzero(inside, axis=(0, 1))]  # per k, j, i of the box
        total = int(counts[0].sum())
        if total:
            mean_kji = [o + float(np.dot(np.arange(c.size), c)) / total for o, c in zip(lo_kji, counts)]
            lo = [int(o + np.flatnonzero(c)[0]) for o, c in zip(lo_kji, counts)][::-1]  # i, j, k
            hi = [int(o + np.flatnonzero(c)[-1]) for o, c in zip(lo_kji, counts)][::-1]
            local = (self.ijk_to_ras @ np.array([*mean_kji[::-1], 1.0]))[:3]
            corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])],
                               dtype=float)
            pts = (self.ijk_to_ras @ np.c_[corners, np.ones(8)].T).T[:, :3]
            if to_world is not None:
                local = np.array(to_world.TransformPoint(*local))
                pts = np.array([to_world.TransformPoint(*p) for p in pts])
            self.centroid = local
            self.bounds = np.ravel(np.column_stack([pts.min(axis=0), pts.max(axis=0)]))

    def legend_entry(self) -> tuple:
        """(text, colour) of the legend, with the colour range when coloured by signed distance."""
        if self.distances is None:
            return self.label, self.color
        return f"{self.label} by signed distance", self.color, self.distances.value_range

    def distance_colours(self, ring: np.ndarray, xy_to_ras) -> np.ndarray:
        """uint8 RGB of the ``ring`` pixels of this outline coloured by :attr:`distances`: each pixel on the drawn
        mask's border takes the signed distance of its voxel, the rest of the (few pixels thick) ring the value
        of the nearest border pixel."""
        h, w = ring.shape
        lattice = self.distances.lattice
        (k, j, i), _inside = pixel_indices(lattice.GetSize()[::-1], np.linalg.inv(_image_ijk_to_ras(lattice)),
                                           xy_to_ras, w, h)
        border = ring & outline_pixels(self.reslice(xy_to_ras, w, h), 1)
        values = np.full(ring.shape, np.nan, np.float32)
        values[border] = self.distances.values(k[border], j[border], i[border])
        known = border.copy()
        for _ in range(OUTLINE_THICKNESS + 4):  # grow the border's values through the ring, a pixel at a time
            todo = ring & ~known
            if not todo.any():
                break
            grown_v, grown_k = values.copy(), known.copy()
            for src, dst in (((slice(None, -1), slice(None)), (slice(1, None), slice(None))),
                             ((slice(1, None), slice(None)), (slice(None, -1), slice(None))),
                             ((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
                             ((slice(None), slice(1, None)), (slice(None), slice(None, -1)))):
                take = todo[dst] & known[src] & ~grown_k[dst]
                grown_v[dst][take] = values[src][take]
                grown_k[dst][take] = True
            values, known = grown_v, grown_k
        return self.distances.rgb(values[ring])

    def reslice(self, xy_to_ras: np.ndarray, width: int, height: int) -> np.ndarray:
        """The mask on the view's pixels (nearest voxel), rows top to bottom, as booleans."""
        values = sample_pixels(self.arr, self.ras_to_ijk, xy_to_ras, width, height, self.from_world)
        return values != 0 if self.value is None else values == self.value


_INDEX_CACHE: dict = {}  # the last views' pixel -> voxel lookups (overlays of one grid share them); a few MB,
# emptied when a snapshot_session ends and when a renderer closes
_INDEX_CACHE_SIZE = 6


def pixel_indices(shape_kji, ras_to_ijk, xy_to_ras, width: int, height: int, from_world=None):
    """((k, j, i) integer index arrays of the nearest voxel of each view pixel, inside flags), (height, width)
    arrays with rows top to bottom. Nearest voxel as ``vtkImageReslice`` finds it (round half up, a half voxel of
    border around the grid); ``from_world``: a world -> local vtkAbstractTransform applied point by point."""
    width, height = int(width), int(height)
    key = None
    if from_world is None:
        key = (tuple(shape_kji), np.asarray(ras_to_ijk, float).tobytes(), np.asarray(xy_to_ras, float).tobytes(),
               width, height)
        if key in _INDEX_CACHE:
            return _INDEX_CACHE[key]
    x = np.arange(width, dtype=float)[None, :]
    y = np.arange(height - 1, -1, -1, dtype=float)[:, None]  # row 0 is the top of the view (largest y)
    r = np.asarray(ras_to_ijk, float)
    if from_world is None:  # pixel -> voxel index is one affine map
        m = r @ np.asarray(xy_to_ras, float)
        ijk = [m[a, 0] * x + m[a, 1] * y + m[a, 3] for a in range(3)]
    else:  # any transform Slicer can hold (grid, B-spline, composite): point by point
        from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
        from vtkmodules.vtkCommonCore import vtkPoints

        m = np.asarray(xy_to_ras, float)
        ras = np.stack(np.broadcast_arrays(*[m[a, 0] * x + m[a, 1] * y + m[a, 3] for a in range(3)]), axis=-1)
        src, dst = vtkPoints(), vtkPoints()
        src.SetData(numpy_to_vtk(np.ascontiguousarray(ras.reshape(-1, 3)), deep=1))
        from_world.TransformPoints(src, dst)
        ras = vtk_to_numpy(dst.GetData()).reshape(height, width, 3).astype(float)
        ijk = [ras @ r[a, :3] + r[a, 3] for a in range(3)]
    inside = np.ones((height, width), bool)
    index = []
    for a, n in enumerate(shape_kji[::-1]):  # i, j, k
        v = np.broadcast_to(ijk[a], (height, width))
        inside &= (v >= -0.5) & (v <= n - 0.5)
        index.append(np.clip(np.floor(v + 0.5), 0, n - 1).astype(np.intp))
    result = (index[2], index[1], index[0]), inside
    if key is not None:
        _remember(key, result)
    return result


def _remember(key, value) -> None:
    while len(_INDEX_CACHE) >= _INDEX_CACHE_SIZE:
        _INDEX_CACHE.pop(next(iter(_INDEX_CACHE)))
    _INDEX_CACHE[key] = value


def _flat_indices(shape_kji, ras_to_ijk, xy_to_ras, width: int, height: int, from_world=None):
    """(flat index into the C-ordered array of the nearest voxel of each pixel, inside flags): one gather."""
    (k, j, i), inside = pixel_indices(shape_kji, ras_to_ijk, xy_to_ras, width, height, from_world)
    key = None if from_world is not None else ("flat", id(k))
    cached = _INDEX_CACHE.get(key) if key is not None else None
    if cached is not None and cached[0] is k:
        return cached[1], inside
    flat = (k * shape_kji[1] + j) * shape_kji[2] + i
    if key is not None:
        _remember(key, (k, flat))  # k held: its id stays unique while cached
    return flat, inside


def sample_pixels(arr_kji, ras_to_ijk, xy_to_ras, width: int, height: int, from_world=None, background=0.0):
    """A (k, j, i) array's voxels on a view's pixels (nearest voxel), rows top to bottom; ``background`` outside.
    Only the drawn pixels are looked up (no copy of the array)."""
    arr = np.asarray(arr_kji)
    if arr.flags.c_contiguous:
        flat, inside = _flat_indices(arr.shape, ras_to_ijk, xy_to_ras, width, height, from_world)
        values = np.take(arr.reshape(-1), flat)
    else:  # never flattened (that would copy the array)
        (k, j, i), inside = pixel_indices(arr.shape, ras_to_ijk, xy_to_ras, width, height, from_world)
        values = arr[k, j, i]
    dtype = np.result_type(arr.dtype, np.asarray(background).dtype) if np.isnan(background) else arr.dtype
    return np.where(inside, values, np.asarray(background, dtype=dtype)).astype(dtype, copy=False)


def outline_pixels(mask: np.ndarray, thickness: int) -> np.ndarray:
    """Pixels of a 2D boolean mask within ``thickness`` pixels of its border (4-neighbour erosion), inside it."""
    interior = mask.copy()
    for _ in range(int(thickness)):
        eroded = interior.copy()
        eroded[1:, :] &= interior[:-1, :]
        eroded[:-1, :] &= interior[1:, :]
        eroded[:, 1:] &= interior[:, :-1]
        eroded[:, :-1] &= interior[:, 1:]
        eroded[0, :] = eroded[-1, :] = False  # the view's edge counts as outside
        eroded[:, 0] = eroded[:, -1] = False
        interior = eroded
    return mask & ~interior


class SnapshotRenderer:
    """A slice view without a window, bound to a context's scene: one Slicer slice logic, reused.

    The slice logic reslices the background volume exactly as a Slicer slice view does (orientation presets,
    field of view, square pixels, window/level through the display node); its output *is* the view's pixels,
    read directly (no OpenGL). The outlines are resliced here with the same XY->RAS matrix and painted on those
    pixels, so only the requested overlays appear whatever else the scene holds; text is drawn by VTK's FreeType
    renderer. Created lazily by :func:`get_renderer`; it adds one hidden slice node (and its composite node) to
    the scene, which :meth:`close` removes. The slice node has a parent layout node, so Slicer's layout manager
    makes no view for it (see ``__init__``).
    """

    _count = 0

    def __init__(self, ctx):
        import slicer

        ok, reason = rendering_available()
        if not ok:
            raise RuntimeError(reason)
        self.ctx = ctx
        SnapshotRenderer._count += 1
        self.layout_name = f"RQSnapshot{SnapshotRenderer._count}"
        self.slice_logic = sl = slicer.vtkMRMLSliceLogic()
        if ctx.app is not None:
            sl.SetMRMLApplicationLogic(ctx.app)
        before = _node_ids(ctx.scene)
        sl.SetMRMLScene(ctx.scene)
        # Keep the view out of the application's layout. Slicer's layout manager makes a view widget for every view
        # node added without a parent layout node (qMRMLLayoutManager.cxx onNodeAddedEvent, qMRMLLayoutViewFactory
        # .cxx onNodeAdded) and, when a batch process ends, for every view node of the scene
        # (qMRMLLayoutViewFactory::onSceneModified). So the slice node gets a parent layout node before it is added
        # (vtkMRMLSliceLogic::AddSliceNode adds it at once), and the renderer removes its nodes when the scene
        # starts a batch process (loading or closing a scene); get_renderer() then builds a new one.
        self._batch_observer = None
        self.owner_node = ctx.add_node("vtkMRMLScriptedModuleNode", f"{self.layout_name} view owner")
        self.owner_node.SetHideFromEditors(True)
        # as vtkMRMLSliceLogic::AddSliceNode (the scene's default slice node brings the orientation presets), with
        # the parent set first; CreateNodeByClass returns a reference the caller owns
        sn = ctx.scene.CreateNodeByClass("vtkMRMLSliceNode")
        sn.UnRegister(None)
        sn.SetName(self.layout_name)
        sn.SetLayoutName(self.layout_name)
        sn.SetHideFromEditors(True)
        sn.SetAndObserveParentLayoutNodeID(self.owner_node.GetID())
        self.slice_node = ctx.scene.AddNode(sn)
        sl.SetSliceNode(self.slice_node)
        sl.UpdateSliceNodeFromLayout()
        self.composite_node = sl.GetSliceCompositeNode()
        self.composite_node.SetHideFromEditors(True)
        self.last_absent: set = set()  # labels of the overlays the last view did not cross
        self.session = None  # the caches of an open snapshot_session
        # owner, slice node, its composite node and the slice model the logic makes for 3D views: removed by close()
        self.own_node_ids = [i for i in _node_ids(ctx.scene) if i not in before]
        self._batch_observer = ctx.scene.AddObserver(ctx.scene.StartBatchProcessEvent, self._on_batch_start)

    def is_valid(self) -> bool:
        node = self.slice_node
        return node is not None and self.ctx.scene.GetNodeByID(node.GetID() or "") is node

    def _on_batch_start(self, caller=None, event=None) -> None:
        self.close()

    def close(self) -> None:
        """Remove the slice node, its composite node, its slice model and their owner node from the scene."""
        if self._batch_observer is not None:
            self.ctx.scene.RemoveObserver(self._batch_observer)
            self._batch_observer = None
        if self.composite_node is not None:
            self.composite_node.SetBackgroundVolumeID(None)
        self.slice_logic.SetMRMLScene(None)
        for node_id in reversed(self.own_node_ids):
            node = self.ctx.scene.GetNodeByID(node_id)
            if node is not None:
                self.ctx.scene.RemoveNode(node)
        self.own_node_ids = []
        self.slice_node = self.composite_node = self.owner_node = None

    def place(self, background_node, view: str, point_ras, width: int, height: int, snap: bool = True) -> np.ndarray:
        """Set the view up (orientation, whole background in view, plane through ``point_ras``).

        ``snap``: move the plane to the nearest voxel centre of the background (as Slicer's slice offset slider),
        so the outlines and the background come from the same voxel slice. Returns the plane's RAS centre.
        """
        sn, sl = self.slice_node, self.slice_logic
        self.composite_node.SetBackgroundVolumeID(background_node.GetID())
        self.composite_node.SetForegroundVolumeID(None)
        self.composite_node.SetLabelVolumeID(None)
        sn.SetOrientation(_ORIENTATIONS[view])
        sn.SetDimensions(int(width), int(height), 1)
        sl.FitSliceToBackground(int(width), int(height))
        sn.JumpSliceByOffsetting(*(float(v) for v in point_ras))
        if snap:
            sl.SnapSliceOffsetToIJK()
        sn.UpdateMatrices()
        return _matrix_to_numpy(sn.GetSliceToRAS())[:3, 3].copy()

    def _pixels(self, width: int, height: int) -> np.ndarray:
        """The slice logic's RGBA output as RGB uint8, rows top to bottom."""
        from vtkmodules.util.numpy_support import vtk_to_numpy

        port = self.slice_logic.GetImageDataConnection()
        producer = port.GetProducer()
        producer.Update(port.GetIndex())
        image = producer.GetOutputDataObject(port.GetIndex())
        w, h, _ = image.GetDimensions()
        scalars = image.GetPointData().GetScalars() if image is not None else None
        if scalars is None or (w, h) != (width, height):
            return np.zeros((height, width, 3), np.uint8)
        arr = vtk_to_numpy(scalars).reshape(h, w, -1)
        if arr.shape[2] == 1:
            arr = np.repeat(arr, 3, axis=2)
        return np.array(arr[::-1, :, :3], dtype=np.uint8)

    def background_pixels(self, node, width: int, height: int) -> np.ndarray:
        """The current view's pixels of another background volume (same plane and field of view), RGB rows top
        to bottom; the view's own background is restored."""
        current = self.composite_node.GetBackgroundVolumeID()
        self.composite_node.SetBackgroundVolumeID(node.GetID())
        try:
            return self._pixels(int(width), int(height))
        finally:
            self.composite_node.SetBackgroundVolumeID(current)

    def render_slice(self, background_node, view: str, point_ras, width: int, height: int, overlays=(),
                     label: str | None = None, letters: bool = True, title: str = "", legend=(),
                     snap: bool = True, tint=None) -> np.ndarray:
        """RGB array (rows top to bottom) of one slice view through ``point_ras`` with the overlays' outlines.

        The view is ``width`` × ``height`` pixels (see :meth:`place`). ``overlays``: :class:`Overlay` objects; the
        first is outlined :data:`OUTLINE_THICKNESS` + 2 pixels wide, the others :data:`OUTLINE_THICKNESS`, drawn
        on top, inside each structure's border (as Slicer draws labelmap outlines): where outlines coincide both
        stay visible. ``letters``: patient directions at the four edges. ``label``: text at the top left
        (``None``: the plane position, e.g. ``"S 12.5 mm"``). With a ``title`` or ``legend`` a header band of
        :data:`HEADER_HEIGHT` pixels is added above the view. ``tint(rgb, xy_to_ras) -> rgb`` recolours the
        background pixels before outlines and text (the Jacobian map).
        """
        width, height = int(width), int(height)
        center = self.place(background_node, view, point_ras, width, height, snap)
        # the same background, window and plane again (the after panel of a before|after pair, the fixed image's
        # picture): the pixels of the first time, within a snapshot_session
        cache = getattr(background_node, "_rq_pixels", None)
        key = (getattr(background_node, "_rq_window", None), view, tuple(np.round(center, 4)), width, height)
        if cache is not None and key in cache:
            rgb = cache[key].copy()
        else:
            rgb = self._pixels(width, height)
            if cache is not None:
                cache[key] = rgb.copy()
        xy_to_ras = _matrix_to_numpy(self.slice_node.GetXYToRAS())
        if tint is not None:
            rgb = tint(rgb, xy_to_ras)
        absent = set()
        for i, overlay in enumerate(overlays):
            ring = outline_pixels(overlay.reslice(xy_to_ras, width, height),
                                  OUTLINE_THICKNESS + 2 if i == 0 else OUTLINE_THICKNESS)
            rgb[ring] = overlay.rgb if overlay.distances is None else overlay.distance_colours(ring, xy_to_ras)
            if not ring.any():
                absent.add(overlay.label)
        self.last_absent = absent
        # say so when an overlay does not cross this slice (an empty view is not "perfect overlap")
        legend = _mark_absent(legend, absent, overlays, "not in this slice")
        if letters:
            edge = orientation_letters(_matrix_to_numpy(self.slice_node.GetSliceToRAS()))
            draw_text(rgb, edge["left"], 5, height / 2, 15, valign="center")
            draw_text(rgb, edge["right"], width - 5, height / 2, 15, halign="right", valign="center")
            draw_text(rgb, edge["top"], width / 2, 3, 15, halign="center")
            draw_text(rgb, edge["bottom"], width / 2, height - 3, 15, halign="center", valign="bottom")
        label = _position_text(view, center) if label is None else label
        if label:
            draw_text(rgb, label, 6, 4, 12, color=(0.95, 0.9, 0.45), bold=False)
        if title or legend:
            rgb = np.concatenate([render_header(width, title, legend), rgb], axis=0)
        return rgb


def _mark_absent(legend, absent: set, overlays, why: str) -> list:
    labels = {o.legend_entry()[0]: o.label for o in overlays}  # legend text -> overlay label
    empty = {o.label for o in overlays if o.centroid is None}
    out = []
    for entry in legend:
        label = labels.get(entry[0], entry[0])
        if label in absent:
            entry = (f"{entry[0]} ({'empty' if label in empty else why})", *entry[1:])
        out.append(tuple(entry))
    return out


def render_header(width: int, title: str, legend=()) -> np.ndarray:
    """RGB band (:data:`HEADER_HEIGHT` pixels high): ``title`` on the first line, coloured legend entries below."""
    band = np.zeros((HEADER_HEIGHT, int(width), 3), np.uint8)
    if title:
        draw_text(band, title, 8, 4, 14, halo=False)
    x = 8
    for entry in legend:
        text, color = entry[0], entry[1]
        x += draw_text(band, "\u2014 " + text, x, HEADER_HEIGHT - 4, 14, color=parse_color(color), valign="bottom",
                       halo=False) + 6
        if len(entry) > 2:  # an outline coloured by signed distance: its colour bar, -R .. +R mm
            x = _draw_colour_bar(band, x, entry[2]) + 18
        else:
            x += 12
    return band


COLOUR_BAR_WIDTH = 72  # pixels of the signed-distance colour bar in a snapshot's legend


def _draw_colour_bar(band, x: int, value_range) -> int:
    """Draw ``-R [blue-white-red bar] +R mm`` at ``x`` on the legend line; returns the x after it."""
    from .heatmap import diverging_rgb

    low, high = value_range
    y1 = HEADER_HEIGHT - 7
    x += draw_text(band, f"{low:+.1f}", x, HEADER_HEIGHT - 4, 12, valign="bottom", bold=False, halo=False) + 4
    bar = np.round(diverging_rgb(np.linspace(-1, 1, COLOUR_BAR_WIDTH)) * 255).astype(np.uint8)
    x1 = min(x + COLOUR_BAR_WIDTH, band.shape[1])
    band[y1 - 10:y1, x:x1] = bar[None, : x1 - x]
    x = x1 + 4
    return x + draw_text(band, f"{high:+.1f} mm", x, HEADER_HEIGHT - 4, 12, valign="bottom", bold=False, halo=False)


def _remove_added_volume_display_nodes(ctx, before: set) -> None:
    """The slice layer logic adds a hidden display node per background volume: remove those added since
    ``before`` (node IDs of the scene before rendering)."""
    for node_id in set(_node_ids(ctx.scene)) - before:
        node = ctx.scene.GetNodeByID(node_id)
        if node is not None and node.IsA("vtkMRMLVolumeDisplayNode"):
            ctx.scene.RemoveNode(node)


def _node_ids(scene) -> list:
    return [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())]


_RENDERERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def get_renderer(ctx) -> SnapshotRenderer:
    """The context's snapshot renderer (created on first use, rebuilt if its slice node left the scene)."""
    renderer = _RENDERERS.get(ctx)
    if renderer is None or not renderer.is_valid():
        if renderer is not None:
            renderer.close()
        renderer = _RENDERERS[ctx] = SnapshotRenderer(ctx)
    return renderer


def close_renderer(ctx) -> None:
    """Remove the context's snapshot renderer (its slice node) from the scene, if any."""
    renderer = _RENDERERS.pop(ctx, None)
    if renderer is not None:
        renderer.close()
    _INDEX_CACHE.clear()


# ---------------------------------------------------------------------------------------------------
# Snapshots
# ---------------------------------------------------------------------------------------------------
def _cached_overlay(ctx, item, index) -> Overlay:
    """:func:`_prepare_overlay`, once per (mask, colour, label) within a :func:`snapshot_session`."""
    parts = tuple(item) if isinstance(item, (tuple, list)) else (item,)
    return _cached(ctx, f"overlay {index} {parts[1:]!r}", parts[0], lambda: _prepare_overlay(ctx, item, index))


def mask_centroid(ctx, mask):
    """Centroid (RAS, mm) of a mask's inside voxels (``None`` when empty), as its outline's centre: computed once
    with the overlay within a :func:`snapshot_session`."""
    return _cached_overlay(ctx, (mask, FIXED_COLOR, "fixed"), 0).centroid


def _prepare_overlay(ctx, item, index) -> Overlay:
    """:class:`Overlay` of one ``(mask_or_segmentation, color, label[, distances])`` item; ``distances``: a
    :class:`heatmap.OutlineDistances` on the mask's lattice colours the outline by signed distance."""
    if not isinstance(item, (tuple, list)):
        item = (item,)
    obj = item[0]
    color = item[1] if len(item) > 1 and item[1] is not None else (FIXED_COLOR, MOVING_COLOR)[min(index, 1)]
    label = item[2] if len(item) > 2 and item[2] else f"overlay {index + 1}"
    parse_color(color)
    distances = item[3] if len(item) > 3 else None
    overlay = _prepare_overlay_of(ctx, obj, color, label)
    overlay.distances = distances
    return overlay


def _prepare_overlay_of(ctx, obj, color, label) -> Overlay:
    from .io import image_ijk_to_ras

    sitk = _sitk()
    from_world = to_world = None
    if hasattr(obj, "IsA") and obj.IsA("vtkMRMLSegmentationNode"):
        require(obj.GetSegmentation().GetNumberOfSegments() > 0, obj, "segmentation has no segments to outline")
        if obj.GetParentTransformNode() is not None:
            from_world, to_world = _world_transforms(obj)
        arr, ijk_to_ras = _merged_labelmap(obj)
        return Overlay(arr, ijk_to_ras, color, label, from_world, to_world)
    value = box = None
    if isinstance(obj, LabelMask):
        mask, value, box = obj.image, obj.value, obj.box
    elif hasattr(obj, "IsA") and obj.IsA("vtkMRMLVolumeNode"):
        mask = volume_to_image(obj)
        if obj.GetParentTransformNode() is not None:
            from_world, to_world = _world_transforms(obj)
    else:
        mask = obj
    require(hasattr(mask, "GetSize") and mask.GetDimension() == 3, label,
            "overlay must be a 3D mask image, a labelmap volume node or a segmentation node")
    return Overlay(sitk.GetArrayViewFromImage(mask), image_ijk_to_ras(mask), color, label, from_world, to_world,
                   value=value, box=box, keep=mask)


def _merged_labelmap(segmentation_node):
    """(array kji, ijk_to_ras) of all segments merged, in the segmentation's own frame (no scene nodes made)."""
    import slicer
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    merged = slicer.vtkOrientedImageData()
    segmentation_node.GenerateMergedLabelmapForAllSegments(merged, 0)  # 0: the reference geometry
    extent = merged.GetExtent()
    dims = [extent[1] - extent[0] + 1, extent[3] - extent[2] + 1, extent[5] - extent[4] + 1]
    scalars = merged.GetPointData().GetScalars()
    require(scalars is not None and min(dims) > 0, segmentation_node, "segmentation has no voxels to outline")
    arr = vtk_to_numpy(scalars).reshape(dims[2], dims[1], dims[0])
    m = vtkMatrix4x4()
    merged.GetImageToWorldMatrix(m)
    shift = np.eye(4)
    shift[:3, 3] = extent[0::2]  # array index 0 is voxel index extent[0] (etc.)
    return arr, _matrix_to_numpy(m) @ shift


def _world_transforms(node):
    """(world -> node, node -> world) transforms of a node's parent chain: (vtkMatrix4x4, None) when linear."""
    import slicer
    from vtkmodules.vtkCommonTransforms import vtkGeneralTransform

    parent = node.GetParentTransformNode()
    if parent.IsTransformToWorldLinear():
        from vtkmodules.vtkCommonMath import vtkMatrix4x4

        m = vtkMatrix4x4()
        parent.GetMatrixTransformFromWorld(m)
        return m, None
    from_world, to_world = vtkGeneralTransform(), vtkGeneralTransform()
    slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(None, node.GetParentTransformNode(), from_world)
    slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(node.GetParentTransformNode(), None, to_world)
    return from_world, to_world


def _prepare_background(ctx, tmp, fixed, window_level):
    """A temporary scalar volume node showing ``fixed`` (image: its voxels shared, never copied; node: voxels
    shared, transform observed), windowed to ``window_level`` or :func:`auto_window` (once per image within a
    :func:`snapshot_session`)."""
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    node = tmp.add(ctx.add_node("vtkMRMLScalarVolumeNode", "snapshot background"))
    node.SetHideFromEditors(True)
    # our own display node: CreateDefaultDisplayNodes would compute an automatic window over every voxel
    display = tmp.add(ctx.add_node("vtkMRMLScalarVolumeDisplayNode", "snapshot background display"))
    display.SetHideFromEditors(True)
    display.AutoWindowLevelOff()  # set below; an automatic window would scan every voxel
    grey = ctx.scene.GetNodeByID("vtkMRMLColorTableNodeGrey")
    if grey is not None:
        display.SetAndObserveColorNodeID(grey.GetID())
    node.SetAndObserveDisplayNodeID(display.GetID())
    if hasattr(fixed, "GetImageData"):
        from vtkmodules.util.numpy_support import vtk_to_numpy

        require(fixed.GetImageData() is not None, fixed, "volume has no image data")
        m = vtkMatrix4x4()
        fixed.GetIJKToRASMatrix(m)
        node.SetIJKToRASMatrix(m)
        node.SetAndObserveImageData(fixed.GetImageData())  # shared, never written
        if fixed.GetTransformNodeID():
            node.SetAndObserveTransformNodeID(fixed.GetTransformNodeID())

        def values():
            scalars = fixed.GetImageData().GetPointData().GetScalars()
            arr = vtk_to_numpy(scalars) if scalars is not None else np.zeros(1)
            return arr[:, 0] if arr.ndim > 1 else arr
    else:
        require(hasattr(fixed, "GetSize") and fixed.GetDimension() == 3, "fixed image", "a 3D image is needed")
        node.SetIJKToRASMatrix(_numpy_to_matrix(_image_ijk_to_ras(fixed)))
        node.SetAndObserveImageData(shared_image_data(fixed))

        def values():
            return _sitk().GetArrayViewFromImage(fixed)
    lo, hi = window_level if window_level is not None else _cached(ctx, "auto_window", fixed,
                                                                   lambda: auto_window(values()))
    display.SetWindowLevelMinMax(float(lo), float(hi))
    renderer = _RENDERERS.get(ctx)
    if renderer is not None and renderer.session is not None:  # drawn slices of this image, for render_slice
        node._rq_pixels = _cached(ctx, "pixels", fixed, dict)
        node._rq_window = (float(lo), float(hi))
    return node


def shared_image_data(image):
    """vtkImageData of a scalar SimpleITK image *sharing* its voxel buffer (no copy; read only: VTK filters never
    write their input). The image is kept alive with the data object."""
    from vtkmodules.util.numpy_support import numpy_to_vtk
    from vtkmodules.vtkCommonDataModel import vtkImageData

    require(image.GetNumberOfComponentsPerPixel() == 1, "image", "a scalar image is needed")
    arr = _sitk().GetArrayViewFromImage(image)
    data = vtkImageData()
    data.SetDimensions(*image.GetSize())
    scalars = numpy_to_vtk(arr.reshape(-1), deep=0)  # keeps a reference to the view
    data.GetPointData().SetScalars(scalars)
    data._rq_image = image  # the buffer's owner lives as long as the data object's Python attributes
    return data


def _image_ijk_to_ras(image):
    from .io import image_ijk_to_ras

    return image_ijk_to_ras(image)


# ---------------------------------------------------------------------------------------------------
# One batch of snapshots of the same images: computed once, reused
# ---------------------------------------------------------------------------------------------------
class _Session:
    """Caches of a :func:`snapshot_session`: {(kind, id(object)): (object, value)} (the object is held so its
    id stays unique while the session lasts)."""

    def __init__(self):
        self.cache: dict = {}


@contextlib.contextmanager
def snapshot_session(ctx):
    """Within this block, snapshots of the same images and masks reuse what was computed for them: the automatic
    window of each background image, each overlay's centre and extent, the checkerboard's normalisations. Use it
    around a batch of snapshots of one registration (``evaluate`` does); the inputs must not change inside."""
    renderer = get_renderer(ctx)
    previous, renderer.session = renderer.session, _Session()
    try:
        yield
    finally:
        renderer.session = previous
        _INDEX_CACHE.clear()


def _cached(ctx, kind: str, obj, make):
    renderer = _RENDERERS.get(ctx)
    session = renderer.session if renderer is not None else None
    if session is None:
        return make()
    key = (kind, id(obj))
    if key not in session.cache:
        session.cache[key] = (obj, make())
    return session.cache[key][1]


def _view_size(bounds, view: str, size: int) -> tuple[int, int]:
    """Pixel size (width, height) of a view of RAS ``bounds``: square pixels, longest side ``size``."""
    ax_w, ax_h = _VIEW_AXES[view]
    ext_w = max(bounds[2 * ax_w + 1] - bounds[2 * ax_w], 1e-3)
    ext_h = max(bounds[2 * ax_h + 1] - bounds[2 * ax_h], 1e-3)
    scale = size / max(ext_w, ext_h)
    return max(int(round(ext_w * scale)), 16), max(int(round(ext_h * scale)), 16)


def _position_text(view: str, point) -> str:
    axis = _NORMAL_AXIS[view]
    value = float(point[axis])
    letter = _AXIS_LETTERS[axis][1] if value >= 0 else _AXIS_LETTERS[axis][0]
    return f"{letter} {abs(value):.1f} mm"


def render_snapshots(ctx, fixed_image_or_node, overlays=(), output_dir=".", views=VIEWS, montage: bool = True,
                     prefix: str = "", title: str = "", size: int = DEFAULT_SIZE, center_ras=None,
                     montage_slices: int = 9, window_level=None) -> list:
    """Write PNG snapshots of outlines on the fixed image; returns the written paths (views first, then montage).

    ``overlays``: ``[(mask_or_segmentation, color, label), ...]``, each a SimpleITK mask (non-zero = inside;
    any grid, placed by its LPS geometry), a labelmap volume node or a segmentation node (all its segments);
    nodes are placed in the world through their parent transforms, as Slicer shows them. The first overlay is
    the reference (fixed): drawn wider, under the others. ``views``: any of ``"axial"``, ``"coronal"``,
    ``"sagittal"``, each written to ``<prefix><view>.png`` through ``center_ras`` (default: the first overlay's
    centroid, else the volume centre), snapped to the nearest voxel slice. ``montage``: ``<prefix>montage.png``,
    up to ``montage_slices`` axial slices evenly spread over the first overlay's superior-inferior extent (else
    the middle 80 % of the volume). The background is windowed to ``window_level = (low, high)`` (default:
    :func:`auto_window`, the 1st..99th percentiles of the voxels above the image's Otsu threshold). Each PNG has a header band (:data:`HEADER_HEIGHT` pixels) with ``title`` and the
    legend, then the view, ``size`` pixels along its longest side, square pixels (millimetres are millimetres
    in every direction). Temporary nodes are removed; inputs are not modified.
    """
    out_dir = Path(output_dir)
    return [write_png(rgb, out_dir / name) for name, rgb in _snapshot_images(
        ctx, fixed_image_or_node, overlays, out_dir, views, montage, prefix, title, size, center_ras, montage_slices,
        window_level)]


def _snapshot_images(ctx, fixed_image_or_node, overlays, out_dir, views, montage, prefix, title, size, center_ras,
                     montage_slices, window_level) -> list:
    """[(file name, RGB array)] of :func:`render_snapshots` (nothing written)."""
    views = tuple(views or ())
    for view in views:
        require(view in _ORIENTATIONS, "views", f"unknown view '{view}' (use axial, coronal, sagittal)")
    require(int(size) >= 32, "size", f"{size} pixels is too small")
    out_dir.mkdir(parents=True, exist_ok=True)
    renderer = get_renderer(ctx)
    written = []
    items = [_cached_overlay(ctx, item, i) for i, item in enumerate(overlays or ())]
    legend = [item.legend_entry() for item in items]
    before = set(_node_ids(ctx.scene))
    try:
        with TemporaryNodes(ctx) as tmp:
            try:
                written += _render_all(ctx, renderer, tmp, fixed_image_or_node, items, legend, views, montage,
                                       prefix, title, size, center_ras, montage_slices, window_level)
            finally:  # let go of the background before it is removed (no pipeline updates on removal)
                renderer.composite_node.SetBackgroundVolumeID(None)
    finally:
        _remove_added_volume_display_nodes(ctx, before)
    return written


def _render_all(ctx, renderer, tmp, fixed_image_or_node, items, legend, views, montage, prefix, title, size,
                center_ras, montage_slices, window_level) -> list:
    written = []
    background = _prepare_background(ctx, tmp, fixed_image_or_node, window_level)
    bounds = [0.0] * 6
    background.GetRASBounds(bounds)
    volume_center = (np.array(bounds[::2]) + np.array(bounds[1::2])) / 2
    first = items[0] if items else None
    if center_ras is not None:
        center = np.asarray(center_ras, float)
    elif first is not None and first.centroid is not None:
        center = np.asarray(first.centroid, float)
    else:
        center = volume_center
    for view in views:
        w, h = _view_size(bounds, view, int(size))
        image = renderer.render_slice(background, view, center, max(w, MIN_WIDTH), max(h, MIN_HEIGHT), items,
                                      title=_join(title, view), legend=legend)
        written.append((f"{prefix}{view}.png", image))
    if montage and montage_slices > 0:
        n = int(montage_slices)
        if first is not None and first.bounds is not None:
            zmin, zmax = first.bounds[4], first.bounds[5]
        else:
            zmin, zmax = bounds[4] + 0.1 * (bounds[5] - bounds[4]), bounds[5] - 0.1 * (bounds[5] - bounds[4])
        columns = int(math.ceil(math.sqrt(n)))
        w, h = _view_size(bounds, "axial", min(max(96, int(size) * 2 // columns), int(size)))
        points = []  # evenly spread, snapped to voxel slices, without repeats
        for i in range(n):
            z = zmin + (i + 0.5) * (zmax - zmin) / n if zmax > zmin else zmin
            p = renderer.place(background, "axial", (center[0], center[1], z), w, h)
            if not any(np.allclose(p, q, atol=1e-3) for q in points):
                points.append(p)
        columns = int(math.ceil(math.sqrt(len(points))))
        tiles, absent = [], {item.label for item in items}
        for i, p in enumerate(points):
            tiles.append(renderer.render_slice(background, "axial", p, w, h, items, letters=i == 0))
            absent &= renderer.last_absent
        grid = tile(tiles, columns)
        legend = _mark_absent(legend, absent, items, "not in these slices")
        header = render_header(grid.shape[1], _join(title, f"axial montage ({len(points)} slices)"), legend)
        written.append((f"{prefix}montage.png",
                        np.concatenate([_pad_to(header, HEADER_HEIGHT, grid.shape[1]), grid], axis=0)))
    return written


def _join(*parts) -> str:
    return " \u2014 ".join(p for p in parts if p)


def render_before_after(ctx, fixed_image_or_node, fixed_segmentation, moving_before, moving_after, output_dir,
                        views=VIEWS, montage: bool = True, labels=("fixed", "moving"), size: int = DEFAULT_SIZE,
                        fixed_color=FIXED_COLOR, moving_color=MOVING_COLOR, singles: bool = True,
                        outline_distances=None) -> dict:
    """Before/after snapshots: fixed outline with the moving outline before and after registration.

    ``moving_before``: the moving segmentation in world space as loaded (e.g. resampled onto the fixed grid
    without transform); ``moving_after``: resampled through the registration. Writes ``before_<view>.png``,
    ``after_<view>.png`` (unless ``singles`` is False) and side-by-side ``before_after_<view>.png`` (and the
    montages) in ``output_dir``; all views go through the same point (the fixed segmentation's centroid) so the
    pairs are comparable. ``outline_distances``: a :class:`heatmap.OutlineDistances` of the fixed segments to the
    registered ones; the fixed outline *after* registration is then coloured by that signed distance (legend:
    the heat maps' colours and range). Returns ``{"before": [...], "after": [...], "side_by_side": [...]}``.
    """
    out = Path(output_dir)
    common = {"views": views, "montage": montage, "size": size, "center_ras": None, "montage_slices": 9,
              "window_level": None}
    fixed_overlay = (fixed_segmentation, fixed_color, labels[0])
    before = _snapshot_images(ctx, fixed_image_or_node, [fixed_overlay, (moving_before, moving_color, labels[1])],
                              out, prefix="before_", title="before registration", **common)
    fixed_after = fixed_overlay if outline_distances is None else (*fixed_overlay, outline_distances)
    after = _snapshot_images(ctx, fixed_image_or_node, [fixed_after, (moving_after, moving_color, labels[1])],
                             out, prefix="after_", title="after registration", **common)
    written = {"before": [], "after": [], "side_by_side": []}
    for (b_name, b_rgb), (a_name, a_rgb) in zip(before, after):
        if singles:
            written["before"].append(write_png(b_rgb, out / b_name))
            written["after"].append(write_png(a_rgb, out / a_name))
        name = b_name.replace("before_", "before_after_", 1)
        written["side_by_side"].append(write_png(_side_by_side(b_rgb, a_rgb), out / name))
    return written


def render_checkerboard(ctx, fixed, registered, output_dir, squares=8, views=("axial",), overlays=(),
                        prefix: str = "checkerboard_", size: int = DEFAULT_SIZE, normalize: bool = True) -> list:
    """Snapshots of the fixed/registered checkerboard (:func:`checkerboard_image`), optionally with outlines.

    The board is composed on the drawn pixels only: each pixel shows the fixed or the registered image by the
    block of its nearest voxel, each image windowed so that its values appear as on the normalised board under
    the board's :func:`auto_window` (computed from the board's voxels at :func:`_sample_values`' subsample)."""
    fixed = _as_image(fixed, "fixed image")
    registered = _as_image(registered, "registered image")
    _check_same_grid(fixed, registered)
    block = _board_blocks(fixed, squares)
    ranges = (_cached(ctx, "percentile_range", fixed, lambda: percentile_range(fixed)),
              _cached(ctx, "percentile_range", registered, lambda: percentile_range(registered))) \
        if normalize else None
    lo_b, hi_b = _board_window(fixed, registered, block, ranges)

    def window(value_range):  # the board's window in the image's own units
        if value_range is None:
            return lo_b, hi_b
        lo, hi = value_range
        return lo + lo_b * (hi - lo), lo + hi_b * (hi - lo)

    title = f"checkerboard fixed / registered ({squares} squares)"
    items = [_cached_overlay(ctx, item, i) for i, item in enumerate(overlays or ())]
    legend = [item.legend_entry() for item in items]
    ras_to_ijk = np.linalg.inv(_image_ijk_to_ras(fixed))
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    renderer = get_renderer(ctx)
    written = []
    before = set(_node_ids(ctx.scene))
    try:
        with TemporaryNodes(ctx) as tmp:
            try:
                f_node = _prepare_background(ctx, tmp, fixed, window(ranges[0] if ranges else None))
                r_node = _prepare_background(ctx, tmp, registered, window(ranges[1] if ranges else None))
                bounds = [0.0] * 6
                f_node.GetRASBounds(bounds)
                center = items[0].centroid if items and items[0].centroid is not None else _center_of(fixed)

                def compose(rgb, xy_to_ras):
                    h, w = rgb.shape[:2]
                    (k, j, i), _inside = pixel_indices(fixed.GetSize()[::-1], ras_to_ijk, xy_to_ras, w, h)
                    take_registered = (i // block[0] + j // block[1] + k // block[2]) % 2 == 1
                    other = renderer.background_pixels(r_node, w, h)
                    rgb[take_registered] = other[take_registered]
                    return rgb

                for view in views:
                    w, h = _view_size(bounds, view, int(size))
                    image = renderer.render_slice(f_node, view, center, max(w, MIN_WIDTH), max(h, MIN_HEIGHT), items,
                                                  title=_join(title, view), legend=legend, tint=compose)
                    written.append(write_png(image, out_dir / f"{prefix}{view}.png"))
            finally:
                renderer.composite_node.SetBackgroundVolumeID(None)
    finally:
        _remove_added_volume_display_nodes(ctx, before)
    return written


# Jacobian map: log2 J from -1 (J = 0.5, compression) to +1 (J = 2, expansion) on a diverging blue-white-red
# scale (ColorBrewer RdBu end points); J <= 0 (folding) filled dark and ringed in yellow.
JACOBIAN_COMPRESSION = (0.13, 0.40, 0.67)  # #2166AC
JACOBIAN_EXPANSION = (0.70, 0.09, 0.17)  # #B2182B
FOLDING_COLOR = "#F0E442"  # Okabe & Ito yellow
JACOBIAN_ALPHA = 0.65


def jacobian_rgb(jacobian: np.ndarray) -> np.ndarray:
    """(..., 3) float RGB in 0..1 of Jacobian values: white at J = 1, blue towards J = 0.5 and below, red towards
    J = 2 and above (log2 scale, saturated beyond); J <= 0 near black. NaN: white (callers mask it)."""
    j = np.asarray(jacobian, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.clip(np.log2(np.where(j > 0, j, 1.0)), -1.0, 1.0)
    white = np.ones(3)
    a = np.abs(t)[..., None]
    end = np.where((t < 0)[..., None], np.array(JACOBIAN_COMPRESSION), np.array(JACOBIAN_EXPANSION))
    rgb = white * (1 - a) + end * a
    rgb[j <= 0] = (0.08, 0.08, 0.08)
    return rgb


class JacobianPicture:
    """What the Jacobian snapshot needs of J on the fixed grid, gathered while the registration is sampled (a
    consumer of :func:`transforms.stream`; or :meth:`from_array`): J rounded to bfloat16 (the upper half of its
    float32 bits, rounded: 8 bits of precision, float32's range, signs and NaN kept; the colour scale needs far
    less), the number of J <= 0 voxels and the position of the smallest finite J. Half of a float32 J map, filled
    by two cheap passes per slab; the float J map itself is not needed."""

    def __init__(self, fixed_image):
        size = fixed_image.size if hasattr(fixed_image, "ijk_to_lps") else fixed_image.GetSize()
        self.shape = tuple(int(n) for n in size)[::-1]
        self.bits = np.full(self.shape, 0x7FC0, np.uint16)  # NaN until a slab is given
        self.folded = 0  # voxels with J <= 0
        self.min_value, self.min_index = np.inf, None  # smallest finite J and its first (k, j, i)

    @classmethod
    def from_array(cls, jacobian_kji, fixed_image) -> JacobianPicture:
        """The picture of a whole J map (NaN = not computed), slab by slab."""
        jac = np.asarray(jacobian_kji)
        picture = cls(fixed_image)
        require(jac.shape == picture.shape, "jacobian", f"array {jac.shape} is not on the fixed grid {picture.shape}")
        step = max(1, 4_000_000 // max(1, jac.shape[1] * jac.shape[2]))
        for k0 in range(0, jac.shape[0], step):
            picture.add(k0, np.asarray(jac[k0:k0 + step], dtype=np.float32))
        return picture

    def consume(self, slab) -> None:
        self.add(slab.k0, slab.jacobian())

    def add(self, k0: int, det: np.ndarray) -> None:
        """J of slices ``k0 ..`` (float32 (k, j, i))."""
        det = np.ascontiguousarray(det, dtype=np.float32)
        rounded = det.view(np.uint32) + np.uint32(0x8000)  # round to nearest (a NaN stays a NaN)
        np.right_shift(rounded, 16, out=rounded)
        np.copyto(self.bits[k0:k0 + det.shape[0]], rounded, casting="unsafe")
        self.folded += int(np.count_nonzero(det <= 0))
        flat = det.reshape(-1)
        low = float(np.fmin.reduce(flat)) if flat.size else np.nan  # NaN ignored
        if low < self.min_value:
            first = int(np.argmax(flat == low))
            plane = det.shape[1] * det.shape[2]
            self.min_value = low
            self.min_index = (k0 + first // plane, *divmod(first % plane, det.shape[2]))

    @staticmethod
    def folding(bits) -> np.ndarray:
        """J <= 0 of stored bits, on the bits (+0, and -0 .. -inf; NaN excluded): no float copy."""
        bits = np.asarray(bits)
        return (bits == 0) | ((bits >= 0x8000) & (bits <= 0xFF80))

    def values(self, bits) -> np.ndarray:
        """float32 J of stored bits (e.g. those of the drawn pixels)."""
        return (np.asarray(bits, np.uint32) << 16).view(np.float32)

    def finish(self) -> JacobianPicture:
        return self


def worst_folding_point(jacobian_kji, image) -> tuple:
    """(RAS point, voxels) of the largest face-connected region of J <= 0 on ``image``'s grid (its centroid), or of
    the minimum J when nothing folds (voxels 0); ``None`` point when there is no finite value. ``jacobian_kji``:
    a J array or a :class:`JacobianPicture`."""
    picture = jacobian_kji if isinstance(jacobian_kji, JacobianPicture) else \
        JacobianPicture.from_array(jacobian_kji, image)
    if picture.folded:
        from .kernels import face_components

        nk, nj, ni = picture.shape
        lin = np.flatnonzero(picture.folding(picture.bits))  # the folding voxels only: no grid-sized labels
        labels = face_components(lin, ni, nj, nk)
        sizes = np.bincount(labels)
        largest = lin[labels == int(np.argmax(sizes))]  # ties: the component met first in scan order
        kji = np.stack(np.unravel_index(largest, picture.shape), axis=1).mean(axis=0)
        voxels = int(largest.size)
    elif picture.min_index is not None:
        kji, voxels = np.array(picture.min_index, float), 0
    else:
        return None, 0
    lps = np.array(image.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in kji[::-1])))
    return lps * np.array([-1.0, -1.0, 1.0]), voxels


def render_jacobian(ctx, fixed, jacobian_kji, output_dir, views=("axial", "coronal"), size: int = DEFAULT_SIZE,
                    prefix: str = "jacobian_", center_ras=None) -> list:
    """PNG views of the Jacobian determinant over the fixed image, through the worst folding region.

    ``jacobian_kji``: J on the fixed grid (NaN = not computed), or its :class:`JacobianPicture`. Colours:
    :func:`jacobian_rgb` blended (``JACOBIAN_ALPHA``) over the grey fixed image; voxels with J <= 0 filled dark and
    outlined in :data:`FOLDING_COLOR`. The plane goes through ``center_ras`` (default:
    :func:`worst_folding_point`). Writes ``<prefix><view>.png``; returns the paths.
    """
    picture = jacobian_kji if isinstance(jacobian_kji, JacobianPicture) else None
    if picture is None:
        jac = np.asarray(jacobian_kji)
        require(jac.shape == tuple(fixed.GetSize())[::-1], "jacobian", f"array {jac.shape} is not on the fixed grid "
                f"{tuple(fixed.GetSize())[::-1]}")
        picture = JacobianPicture.from_array(jac, fixed)
    require(picture.shape == tuple(fixed.GetSize())[::-1], "jacobian", "not on the fixed grid")
    point, voxels = worst_folding_point(picture, fixed)
    if center_ras is None:
        center_ras = point if point is not None else _center_of(fixed)
    ras_to_ijk = np.linalg.inv(_image_ijk_to_ras(fixed))
    folding_rgb = np.round(np.array(parse_color(FOLDING_COLOR)) * 255).astype(np.uint8)
    where = f"largest folding region ({voxels} voxels)" if voxels else "no folding"
    legend = [("J = 0.5 (compression)", "#2166AC"), ("J = 2 (expansion)", "#B2182B"), ("J ≤ 0 (folding)",
                                                                                       FOLDING_COLOR)]
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    renderer = get_renderer(ctx)
    written = []
    before = set(_node_ids(ctx.scene))
    try:
        with TemporaryNodes(ctx) as tmp:
            try:
                background = _prepare_background(ctx, tmp, fixed, None)
                bounds = [0.0] * 6
                background.GetRASBounds(bounds)

                def tint(rgb, xy_to_ras):
                    h, w = rgb.shape[:2]
                    j = picture.values(sample_pixels(picture.bits, ras_to_ijk, xy_to_ras, w, h, background=0x7FC0))
                    inside = np.isfinite(j)
                    blended = rgb.astype(float)
                    blended[inside] = (1 - JACOBIAN_ALPHA) * blended[inside] + \
                        JACOBIAN_ALPHA * 255.0 * jacobian_rgb(j[inside])
                    out = np.clip(np.round(blended), 0, 255).astype(np.uint8)
                    out[outline_pixels(inside & (j <= 0), OUTLINE_THICKNESS)] = folding_rgb
                    return out

                for view in views:
                    w, h = _view_size(bounds, view, int(size))
                    rgb = renderer.render_slice(background, view, center_ras, max(w, MIN_WIDTH), max(h, MIN_HEIGHT),
                                                title=_join(f"Jacobian, {where}", view), legend=legend,
                                                tint=tint)
                    written.append(write_png(rgb, out_dir / f"{prefix}{view}.png"))
            finally:
                renderer.composite_node.SetBackgroundVolumeID(None)
    finally:
        _remove_added_volume_display_nodes(ctx, before)
    return written


def _center_of(image) -> np.ndarray:
    size = np.array(image.GetSize(), float)
    lps = np.array(image.TransformContinuousIndexToPhysicalPoint(tuple(((size - 1) / 2).tolist())))
    return lps * np.array([-1.0, -1.0, 1.0])


__all__ = [
    "BadInputError", "FIXED_COLOR", "MOVING_COLOR", "HEADER_HEIGHT", "VIEWS", "SnapshotRenderer", "checkerboard_image",
    "checkerboard_node", "close_renderer", "difference_image", "difference_node", "get_renderer",
    "orientation_letters", "auto_window", "percentile_range", "read_png", "render_before_after", "render_checkerboard",
    "render_jacobian", "render_snapshots", "rendering_available", "side_by_side", "write_png", "JacobianPicture",
    "LabelMask", "snapshot_session",
]
