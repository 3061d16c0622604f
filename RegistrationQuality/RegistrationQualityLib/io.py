"""Files <-> MRML nodes and SimpleITK images, the same API inside and outside Slicer.

Geometry conventions
--------------------
Files and SimpleITK images are in LPS; the MRML world is RAS. A volume node's ``IJKToRAS`` matrix equals
``diag(-1, -1, 1) · [D·S | O]`` where D, S, O are the SimpleITK direction, spacing and origin (LPS).
:func:`volume_to_image` / :func:`image_to_volume` convert exactly (no resampling, geometry kept to the bit),
ignoring parent transforms: callers that want world space resample explicitly.

Every reader validates its input and raises :class:`~RegistrationQualityLib.errors.BadInputError` with a
one-line message naming the file and the problem; nothing here modifies an input node or file.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import BadInputError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])  # the one LPS <-> RAS flip (its own inverse)
_FLIP = np.diag(LPS_TO_RAS)  # the same as a vector, for point arrays

IMAGE_EXTENSIONS = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd", ".hdr", ".img", ".img.gz", ".tif", ".tiff")
TRANSFORM_EXTENSIONS = (".tfm", ".h5", ".hdf5", ".txt", ".mat")

# A header that claims more than this many bytes of voxel data is refused before anything is allocated.
MAX_IMAGE_BYTES = 8 * 1024**3


def _sitk():
    import SimpleITK as sitk  # warnings are silenced by the headless entry points only (context.py)

    return sitk


def _name(path) -> str:
    return os.fspath(path)


def file_extension(path) -> str:
    """Lower-case extension including double ones such as ``.nii.gz`` and ``.seg.nrrd``."""
    name = Path(path).name.lower()
    for double in (".nii.gz", ".seg.nrrd", ".mrk.json", ".img.gz", ".seg.nhdr"):
        if name.endswith(double):
            return double
    return Path(name).suffix


def check_file(path, what: str = "file") -> Path:
    """The path as a Path if it is an existing, non-empty, readable file; else BadInputError."""
    p = Path(path)
    if not p.exists():
        raise BadInputError(_name(path), f"{what} not found")
    if p.is_dir():
        raise BadInputError(_name(path), f"is a folder; a {what} is needed")
    if p.stat().st_size == 0:
        raise BadInputError(_name(path), "empty file (0 bytes)")
    if not os.access(p, os.R_OK):
        raise BadInputError(_name(path), "file is not readable (permission denied)")
    return p


# ---------------------------------------------------------------------------------------------------
# Images (SimpleITK, LPS)
# ---------------------------------------------------------------------------------------------------
def _itk_reason(exc: Exception, data: bool = False) -> str:
    """A short reason from an ITK exception text (which spans many lines and names C++ files).

    ``data``: the header was read fine and the voxel data failed (a NRRD reader error then concerns the data).
    """
    text = str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if line.lower().startswith("description:"):
            return line.split(":", 1)[1].strip()
    teem = [line for line in lines if line.startswith("[nrrd]")]
    if teem:  # the NRRD reader's own diagnosis is the last line of its chain
        what = "truncated or corrupt NRRD voxel data" if data else "corrupt NRRD header"
        return what + " (" + teem[-1].split(":", 1)[-1].strip() + ")"
    for line in text.splitlines():
        if "Could not create IO object" in line or "Unable to determine ImageIO" in line:
            return "not a readable image (unknown format or corrupt header)"
    return ""


@contextlib.contextmanager
def locale_preserved():
    """Restore the C library's locale after the block: ITK's GDCM (DICOM) resets it to "C", which turns
    Python's default text encoding into ASCII for the rest of the process (Slicer's included)."""
    import locale

    saved = locale.setlocale(locale.LC_ALL)
    try:
        yield
    finally:
        try:
            locale.setlocale(locale.LC_ALL, saved)
        except locale.Error:  # pragma: no cover - the saved locale always exists
            pass


def read_image_information(path):
    """Read only the header: returns a ``sitk.ImageFileReader`` with the information loaded.

    A folder is read as a DICOM series (the first series found). Raises BadInputError when the file is
    missing, empty, of an unknown format, has a corrupt header, or claims an absurd size.
    """
    sitk = _sitk()
    p = Path(path)
    if p.is_dir():
        with locale_preserved():
            series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(p))
            files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(p), series[0]) if series else ()
        if not series:
            raise BadInputError(_name(path), "folder holds no DICOM series")
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(files)
        reader.MetaDataDictionaryArrayUpdateOn()
        return reader
    check_file(path, "image file")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        reason = _itk_reason(exc)
        if not reason or "ImageIO" in reason:
            reason = "not a readable image (unknown format or corrupt header)"
        raise BadInputError(_name(path), reason) from None
    size = reader.GetSize()
    if any(s <= 0 for s in size):
        raise BadInputError(_name(path), f"empty image (size {list(size)})")
    voxels = math.prod(size) * max(1, reader.GetNumberOfComponents())
    nbytes = voxels * _bytes_per_component(reader.GetPixelID())
    if nbytes > MAX_IMAGE_BYTES:
        raise BadInputError(
            _name(path), f"header claims {list(size)} voxels ({nbytes / 1024**3:.1f} GiB); refusing to allocate it"
        )
    return reader


def _bytes_per_component(pixel_id) -> int:
    sitk = _sitk()
    sizes = {
        sitk.sitkUInt8: 1, sitk.sitkInt8: 1, sitk.sitkUInt16: 2, sitk.sitkInt16: 2, sitk.sitkUInt32: 4,
        sitk.sitkInt32: 4, sitk.sitkUInt64: 8, sitk.sitkInt64: 8, sitk.sitkFloat32: 4, sitk.sitkFloat64: 8,
        sitk.sitkVectorUInt8: 1, sitk.sitkVectorInt8: 1, sitk.sitkVectorUInt16: 2, sitk.sitkVectorInt16: 2,
        sitk.sitkVectorUInt32: 4, sitk.sitkVectorInt32: 4, sitk.sitkVectorFloat32: 4, sitk.sitkVectorFloat64: 8,
    }
    return sizes.get(pixel_id, 8)


def describe_dimension(reader_or_image) -> tuple[int, int]:
    """(spatial dimension, number of components) of a reader with information or an image."""
    return reader_or_image.GetDimension(), reader_or_image.GetNumberOfComponentsPerPixel() if hasattr(
        reader_or_image, "GetNumberOfComponentsPerPixel"
    ) else reader_or_image.GetNumberOfComponents()


def check_scalar_3d(image, name: str, what: str = "a scalar 3D volume"):
    """Raise BadInputError unless ``image`` is a 3D single-component image; returns it."""
    dim, comps = describe_dimension(image)
    if dim == 4:
        raise BadInputError(name, f"4D volume ({image.GetSize()[3]} time points); {what} is needed")
    if dim == 2:
        raise BadInputError(name, f"2D image; {what} is needed")
    if dim != 3:
        raise BadInputError(name, f"{dim}D image; {what} is needed")
    if comps != 1:
        raise BadInputError(name, f"vector volume ({comps} components); {what} is needed")
    return image


def read_image(path, scalar: bool = True, check_finite: bool = False):
    """Read a 3D image file or DICOM folder as a SimpleITK image (LPS geometry as in the file).

    ``scalar``: refuse 2D, 4D and vector images with a clear message. ``check_finite``: refuse NaN/inf
    voxels (for images whose every voxel must be a number).
    """
    sitk = _sitk()
    reader = read_image_information(path)
    if scalar and isinstance(reader, sitk.ImageFileReader):
        check_scalar_3d(reader, _name(path))
    if isinstance(reader, sitk.ImageFileReader):
        check_nifti_data_size(path)
    try:
        with locale_preserved():
            image = reader.Execute()
    except RuntimeError as exc:
        reason = _itk_reason(exc, data=True) or "could not read the voxel data (truncated or corrupt file)"
        raise BadInputError(_name(path), reason) from None
    if scalar:
        check_scalar_3d(image, _name(path))
    if check_finite:
        check_finite_image(image, _name(path))
    return image


def raw_vector_field(path, size):
    """A read-only ``np.memmap`` (k, j, i, 3) of the voxels of an *uncompressed* NRRD / MetaImage (.mha, .mhd)
    3-vector image of ``size`` (i, j, k), or None for any other layout (then read it with :func:`read_image`).

    Only the voxel layout is taken from the header here (encoding, type, byte order, where the data starts);
    the geometry comes from ITK's reader as for every image. Pages are read from the file when touched, so a
    streamed pass over a displacement field never holds the whole field in memory.
    """
    p = Path(path)
    ext = file_extension(p)
    try:
        with open(p, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return None
    layout = _nrrd_layout(head, p) if ext in (".nrrd", ".nhdr") else (
        _meta_layout(head, p) if ext in (".mha", ".mhd") else None)
    if layout is None:
        return None
    data_path, offset, dtype = layout
    shape = (int(size[2]), int(size[1]), int(size[0]), 3)
    try:
        if offset is None:  # "at the end of the file" (MetaImage HeaderSize -1)
            offset = data_path.stat().st_size - int(np.prod(shape)) * dtype.itemsize
        if offset < 0 or data_path.stat().st_size < offset + int(np.prod(shape)) * dtype.itemsize:
            return None
        return np.memmap(data_path, dtype=dtype, mode="r", offset=offset, shape=shape)
    except (OSError, ValueError):
        return None


def _header_lines(head: bytes, end: bytes):
    cut = head.find(end)
    if cut < 0:
        return None, None
    return head[:cut].decode("latin-1").splitlines(), cut + len(end)


def _nrrd_layout(head: bytes, path: Path):
    """(data file, byte offset, dtype) of a raw-encoded 4-D NRRD whose first axis is the 3 vector components."""
    if not head.startswith(b"NRRD"):
        return None
    lines, length = _header_lines(head, b"\n\n")
    if lines is None:
        return None
    fields = {}
    for line in lines[1:]:
        if line.startswith("#") or ":" not in line or ":=" in line:
            continue
        key, value = line.split(":", 1)
        fields[key.strip().lower()] = value.strip()
    types = {"float": "f4", "double": "f8"}
    try:
        sizes = [int(v) for v in fields.get("sizes", "").split()]
    except ValueError:
        return None
    if (fields.get("encoding") != "raw" or fields.get("type") not in types or len(sizes) != 4 or sizes[0] != 3
            or int(fields.get("line skip", fields.get("lineskip", "0")) or 0) != 0):
        return None
    endian = ">" if fields.get("endian") == "big" else "<"
    skip = int(fields.get("byte skip", fields.get("byteskip", "0")) or 0)
    detached = fields.get("data file", fields.get("datafile"))
    if skip < 0:
        return None
    if detached:
        if detached.split()[0] == "LIST" or "%" in detached:
            return None
        return (path.parent / detached), skip, np.dtype(endian + types[fields["type"]])
    return path, length + skip, np.dtype(endian + types[fields["type"]])


def _meta_layout(head: bytes, path: Path):
    """(data file, byte offset, dtype) of an uncompressed MetaImage with 3 channels per voxel."""
    text = head.decode("latin-1")
    fields, offset = {}, None
    pos = 0
    for line in text.splitlines(keepends=True):
        pos += len(line.encode("latin-1"))
        if "=" not in line:
            return None
        key, value = (part.strip() for part in line.split("=", 1))
        fields[key.lower()] = value
        if key.lower() == "elementdatafile":
            offset = pos
            break
    if offset is None:
        return None
    types = {"MET_FLOAT": "f4", "MET_DOUBLE": "f8"}
    if (fields.get("compresseddata", "False").lower() == "true" or fields.get("elementtype") not in types
            or fields.get("elementnumberofchannels") != "3" or fields.get("ndims") != "3"):
        return None
    msb = fields.get("binarydatabyteordermsb", fields.get("elementbyteordermsb", "False")).lower() == "true"
    dtype = np.dtype((">" if msb else "<") + types[fields["elementtype"]])
    data = fields["elementdatafile"]
    header_size = int(fields.get("headersize", "0") or 0)
    if data == "LOCAL":
        return path, (None if header_size == -1 else offset + max(header_size, 0)), dtype
    if data.split()[0] == "LIST" or "%" in data:
        return None
    return path.parent / data, (None if header_size == -1 else max(header_size, 0)), dtype


def _nifti_data_end(head: bytes):
    """Bytes a single-file NIfTI-1/-2 needs (voxel offset + voxel data) from its header; None if not NIfTI."""
    import struct

    for endian in "<>":
        (sizeof_hdr,) = struct.unpack(endian + "i", head[:4]) if len(head) >= 4 else (0,)
        if sizeof_hdr == 348 and len(head) >= 348:
            dims = struct.unpack(endian + "8h", head[40:56])
            (bitpix,) = struct.unpack(endian + "h", head[72:74])
            (offset,) = struct.unpack(endian + "f", head[108:112])
            header = 352
        elif sizeof_hdr == 540 and len(head) >= 540:
            (bitpix,) = struct.unpack(endian + "h", head[14:16])
            dims = struct.unpack(endian + "8q", head[16:80])
            (offset,) = struct.unpack(endian + "q", head[168:176])
            header = 544
        else:
            continue
        n = dims[0]
        if not 1 <= n <= 7 or bitpix <= 0 or any(d < 1 for d in dims[1:n + 1]) or not math.isfinite(offset):
            return None  # the image reader judges such headers
        return max(int(offset), header) + math.prod(dims[1:n + 1]) * bitpix // 8
    return None


def check_nifti_data_size(path) -> None:
    """Refuse a .nii / .nii.gz whose voxel data is shorter than its header says.

    ITK's NIfTI reader silently pads missing voxel data with zeros, which would turn a truncated download into
    plausible wrong numbers. Other formats' readers report truncation themselves.
    """
    import gzip
    import zlib

    ext = file_extension(path)
    if ext not in (".nii", ".nii.gz"):
        return
    try:
        with (gzip.open if ext == ".nii.gz" else open)(path, "rb") as f:
            need = _nifti_data_end(f.read(544))
            if need is None:
                return
            if ext == ".nii":
                have = os.path.getsize(path)
            else:
                f.seek(need - 1)  # decompresses up to there (or to the end of a short stream)
                have = need if f.read(1) else f.tell()
    except (OSError, EOFError, zlib.error) as exc:
        raise BadInputError(_name(path), f"truncated or corrupt gzip data ({exc})") from None
    if have < need:
        raise BadInputError(_name(path), f"truncated NIfTI file: its header needs {need} bytes of header and voxel "
                            f"data, the file holds {have}")


def check_finite_image(image, name: str) -> None:
    sitk = _sitk()
    if image.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        arr = sitk.GetArrayViewFromImage(image)
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise BadInputError(name, f"{bad} voxels are NaN or infinite")


def read_labelmap(path):
    """Read a labelmap file as an integer SimpleITK image (UInt8/16/32 as fits, or Int32 for negatives).

    Float files are accepted only when every voxel is an integer value; otherwise BadInputError
    ("non-integer labelmap").
    """
    image = read_image(path)
    return as_integer_labelmap(image, _name(path))


def as_integer_labelmap(image, name: str):
    sitk = _sitk()
    pid = image.GetPixelID()
    integer_ids = (sitk.sitkUInt8, sitk.sitkInt8, sitk.sitkUInt16, sitk.sitkInt16, sitk.sitkUInt32, sitk.sitkInt32,
                   sitk.sitkUInt64, sitk.sitkInt64)
    if pid in integer_ids:
        return image
    arr = sitk.GetArrayViewFromImage(image)
    if not np.all(np.isfinite(arr)):
        raise BadInputError(name, "labelmap has NaN or infinite voxels; integer labels are needed")
    if not np.array_equal(arr, np.round(arr)):
        sample = arr[arr != np.round(arr)].flat[0]
        raise BadInputError(name, f"non-integer labelmap values (e.g. {float(sample):g}); integer labels are needed")
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if lo < -(2**31) or hi >= 2**31:
        raise BadInputError(name, f"label values out of range ({lo:g}..{hi:g})")
    out = sitk.GetImageFromArray(arr.astype(np.int32))
    out.CopyInformation(image)
    return out


def image_ijk_to_ras(image) -> np.ndarray:
    """4×4 IJK→RAS matrix of a SimpleITK image (LPS direction/spacing/origin)."""
    d = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    s = np.array(image.GetSpacing(), dtype=float)
    o = np.array(image.GetOrigin(), dtype=float)
    m = np.eye(4)
    m[:3, :3] = LPS_TO_RAS @ d @ np.diag(s)
    m[:3, 3] = LPS_TO_RAS @ o
    return m


def geometry_from_ijk_to_ras(m) -> tuple[tuple, tuple, tuple]:
    """(origin, spacing, direction) in LPS, SimpleITK order, from a 4×4 IJK→RAS matrix."""
    m = np.asarray(m, dtype=float)
    lps = LPS_TO_RAS @ m[:3, :3]
    spacing = np.linalg.norm(lps, axis=0)
    direction = lps / spacing
    origin = LPS_TO_RAS @ m[:3, 3]
    return tuple(origin.tolist()), tuple(spacing.tolist()), tuple(direction.ravel().tolist())


def node_ijk_to_ras(node) -> np.ndarray:
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    m = vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return vtk_to_matrix(m)


def vtk_to_matrix(m) -> np.ndarray:
    """4×4 numpy array of a vtkMatrix4x4."""
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def matrix_to_vtk(m):
    """vtkMatrix4x4 of a 4×4 array-like."""
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    vm = vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            vm.SetElement(r, c, float(m[r][c]))
    return vm


def geometry_dict(image) -> dict:
    """Plain-JSON description of an image grid (for reports)."""
    return {
        "size": list(image.GetSize()),
        "spacing_mm": [round(v, 6) for v in image.GetSpacing()],
        "origin_lps_mm": [round(v, 6) for v in image.GetOrigin()],
        "direction": [round(v, 6) for v in image.GetDirection()],
        "pixel_type": image.GetPixelIDTypeAsString(),
    }


# ---------------------------------------------------------------------------------------------------
# Volume nodes <-> SimpleITK images
# ---------------------------------------------------------------------------------------------------
def volume_to_image(node):
    """SimpleITK image (copy of the voxels, LPS geometry) of a scalar or labelmap volume node.

    The node's parent transform is ignored (the image is in the node's local frame). Multi-component
    nodes give a vector image.
    """
    sitk = _sitk()
    from vtkmodules.util.numpy_support import vtk_to_numpy

    if node is None or node.GetImageData() is None:
        name = node.GetName() if node is not None else "volume"
        raise BadInputError(f"node '{name}'", "volume has no image data")
    img = node.GetImageData()
    dims = img.GetDimensions()
    scalars = img.GetPointData().GetScalars()
    if scalars is None or 0 in dims:
        raise BadInputError(f"node '{node.GetName()}'", "volume has no voxels")
    comps = scalars.GetNumberOfComponents()
    arr = vtk_to_numpy(scalars)
    shape = (dims[2], dims[1], dims[0]) + ((comps,) if comps > 1 else ())
    arr = np.array(arr.reshape(shape), copy=True)
    image = sitk.GetImageFromArray(arr, isVector=comps > 1)
    origin, spacing, direction = geometry_from_ijk_to_ras(node_ijk_to_ras(node))
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    return image


def image_to_volume(ctx, image, name: str = "volume", labelmap: bool = False, node=None):
    """Create (or fill ``node``) a scalar/labelmap volume node from a SimpleITK image, geometry exact."""
    sitk = _sitk()
    from vtkmodules.util.numpy_support import numpy_to_vtk
    from vtkmodules.vtkCommonDataModel import vtkImageData

    arr = sitk.GetArrayViewFromImage(image)
    comps = image.GetNumberOfComponentsPerPixel()
    size = image.GetSize()
    vtk_img = vtkImageData()
    vtk_img.SetDimensions(*size)
    flat = np.ascontiguousarray(arr).reshape(-1, comps) if comps > 1 else np.ascontiguousarray(arr).ravel()
    vtk_arr = numpy_to_vtk(flat, deep=1)
    vtk_img.GetPointData().SetScalars(vtk_arr)
    if node is None:
        if labelmap:
            node = ctx.add_node("vtkMRMLLabelMapVolumeNode", name)
        elif comps > 1:
            node = ctx.add_node("vtkMRMLVectorVolumeNode", name)
        else:
            node = ctx.add_node("vtkMRMLScalarVolumeNode", name)
    node.SetIJKToRASMatrix(matrix_to_vtk(image_ijk_to_ras(image)))
    node.SetAndObserveImageData(vtk_img)
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    return node


def color_table_node(ctx, name: str, colors) -> object:
    """The scene's user colour table ``name`` (vtkMRMLColorTableNode), made from ``colors`` — a list of
    (entry name, (r, g, b)) — when the scene has none of that name yet (created once per scene)."""
    nodes = ctx.scene.GetNodesByName(name)
    for i in range(nodes.GetNumberOfItems()):
        node = nodes.GetItemAsObject(i)
        if node.IsA("vtkMRMLColorTableNode"):
            return node
    node = ctx.add_node("vtkMRMLColorTableNode", name)
    node.SetTypeToUser()
    node.SetNumberOfColors(len(colors))
    node.SetNamesInitialised(True)
    for i, (entry, rgb) in enumerate(colors):
        node.SetColor(i, entry, *[float(c) for c in rgb], 1.0)
    node.SetAttribute("Category", "RegistrationQuality")
    return node


def load_volume(ctx, path, name: str | None = None, labelmap: bool = False):
    """Load an image file (or DICOM folder) as a scalar (or labelmap) volume node."""
    image = read_labelmap(path) if labelmap else read_image(path)
    return image_to_volume(ctx, image, name or node_name_from_path(path), labelmap=labelmap)


def node_name_from_path(path) -> str:
    name = Path(path).name
    ext = file_extension(path)
    return name[: -len(ext)] if ext and name.lower().endswith(ext) else name


# ---------------------------------------------------------------------------------------------------
# Segmentations
# ---------------------------------------------------------------------------------------------------
def load_segmentation(ctx, path, name: str | None = None):
    """Load a ``.seg.nrrd`` or a labelmap file as a segmentation node (one segment per label value).

    Segments from labelmap files are named after their label value (``"1"``, ``"2"``, ...) unless the
    file carries names; each segment keeps its label value (``segment.GetLabelValue()``).
    """
    name = name or node_name_from_path(path)
    if file_extension(path) in (".seg.nrrd", ".seg.nhdr"):
        check_file(path, "segmentation file")
        seg = ctx.logic("Segmentations").LoadSegmentationFromFile(str(path), False, name)
        if seg is None:
            raise BadInputError(_name(path), "not a readable segmentation file")
        return seg
    labels = read_labelmap(path)
    return labelmap_image_to_segmentation(ctx, labels, name)


def labelmap_image_to_segmentation(ctx, labels, name: str, segment_names: dict | None = None):
    """Segmentation node with one segment per non-zero label of an integer SimpleITK image."""
    from .context import TemporaryNodes

    with TemporaryNodes(ctx) as tmp:
        lab = tmp.add(image_to_volume(ctx, labels, name + " labels", labelmap=True))
        seg = ctx.add_node("vtkMRMLSegmentationNode", name)
        seg.CreateDefaultDisplayNodes()
        if not ctx.logic("Segmentations").ImportLabelmapToSegmentationNode(lab, seg):
            ctx.remove_nodes([seg])
            raise BadInputError(name, "could not import the labelmap into a segmentation")
    segmentation = seg.GetSegmentation()
    for i in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(i)
        value = segment.GetLabelValue()
        segment.SetName((segment_names or {}).get(value, str(value)))
    return seg


def _node_ids(scene, class_name: str) -> set:
    nodes = scene.GetNodesByClass(class_name)
    return {nodes.GetItemAsObject(i).GetID() for i in range(nodes.GetNumberOfItems())}


def segmentation_to_labelmap_image(ctx, seg_node, reference_node=None, segment_ids=None):
    """Integer SimpleITK image of a segmentation's segments (their label values) on a reference grid.

    ``reference_node``: a volume node whose grid to use (default: the segmentation's own geometry).
    Parent transforms are ignored here; use the resampling helpers for world-space comparison.
    """
    from vtkmodules.vtkCommonCore import vtkStringArray

    from .context import TemporaryNodes

    sitk = _sitk()
    ids = vtkStringArray()
    segmentation = seg_node.GetSegmentation()
    wanted = list(segment_ids if segment_ids is not None else segmentation.GetSegmentIDs())
    for sid in wanted:
        ids.InsertNextValue(sid)
    with TemporaryNodes(ctx) as tmp:
        lab = tmp.add(ctx.add_node("vtkMRMLLabelMapVolumeNode", seg_node.GetName() + " export"))
        colors_before = _node_ids(ctx.scene, "vtkMRMLColorTableNode")
        ok = ctx.logic("Segmentations").ExportSegmentsToLabelmapNode(seg_node, ids, lab, reference_node)
        for node_id in _node_ids(ctx.scene, "vtkMRMLColorTableNode") - colors_before:  # "<name>_ColorTable"
            tmp.add(ctx.scene.GetNodeByID(node_id))
        if not ok:
            raise BadInputError(seg_node, "could not export the segments to a labelmap")
        image = volume_to_image(lab)
    # the export numbers segments 1..N in the order given: give each its own label value back
    arr = sitk.GetArrayFromImage(image).astype(np.int32)
    lut = np.zeros(len(wanted) + 1, np.int32)
    for i, sid in enumerate(wanted, 1):
        lut[i] = segmentation.GetSegment(sid).GetLabelValue() or i
    out = sitk.GetImageFromArray(lut[np.clip(arr, 0, len(wanted))])
    out.CopyInformation(image)
    return out


# ---------------------------------------------------------------------------------------------------
# Transforms
# ---------------------------------------------------------------------------------------------------
def is_elastix_parameter_file(path) -> bool:
    """True when the file looks like an elastix TransformParameters text file."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    text = head.decode("latin-1")
    return "(Transform " in text or '(Transform "' in text or "(NumberOfParameters" in text


# ---------------------------------------------------------------------------------------------------
# Landmarks (markups): our own parsers, strict, coordinate-system aware
# ---------------------------------------------------------------------------------------------------
@dataclass
class Landmarks:
    """Named points in RAS (mm). ``labels[i]`` names ``ras[i]``; labels are unique."""

    labels: list
    ras: np.ndarray
    source: str = ""
    skipped: list = field(default_factory=list)  # labels of points without a position

    @property
    def lps(self) -> np.ndarray:
        return self.ras * np.array([-1.0, -1.0, 1.0])

    def __len__(self) -> int:
        return len(self.labels)

    def as_dict(self) -> dict:
        return {label: self.ras[i] for i, label in enumerate(self.labels)}


def check_unique_labels(labels, source) -> None:
    """BadInputError naming the labels that appear more than once (at most five shown)."""
    seen, dups = set(), []
    for label in labels:
        if label in seen and label not in dups:
            dups.append(label)
        seen.add(label)
    if dups:
        shown = ", ".join(dups[:5]) + (" ..." if len(dups) > 5 else "")
        raise BadInputError(source, f"duplicate landmark label(s) {shown}; labels must be unique")


def _finish_landmarks(labels, points, source, coordinate_system, skipped=()) -> Landmarks:
    if not labels:
        raise BadInputError(source, "no landmarks in the file")
    check_unique_labels(labels, source)
    pts = np.array(points, dtype=float).reshape(-1, 3)
    if coordinate_system == "LPS":
        pts = pts * np.array([-1.0, -1.0, 1.0])
    return Landmarks(list(labels), pts, source=source, skipped=list(skipped))


def parse_coordinate(text, source, where) -> float:
    """A finite float from a coordinate cell; BadInputError ``source: where: '<text>' is not a number`` (or not
    finite) otherwise, the text cut to 20 characters."""
    try:
        value = float(str(text).strip())
    except (TypeError, ValueError):
        raise BadInputError(source, f"{where}: '{str(text)[:20]}' is not a number") from None
    if not math.isfinite(value):
        raise BadInputError(source, f"{where}: coordinate '{str(text)[:20]}' is not finite")
    return value


def _coordinate_system(value, source, where="coordinate system") -> str:
    v = str(value).strip().upper()
    if v in ("LPS", "1"):
        return "LPS"
    if v in ("RAS", "0"):
        return "RAS"
    raise BadInputError(source, f"{where} '{value}' is neither LPS nor RAS")


def read_landmarks(path, coordinate_system: str | None = None) -> Landmarks:
    """Read landmarks from ``.mrk.json``, ``.fcsv`` or CSV ``label,x,y,z``.

    Coordinate systems: ``.mrk.json`` uses its ``coordinateSystem`` (Slicer's default LPS when absent);
    ``.fcsv`` its ``# CoordinateSystem = LPS|RAS|1|0`` header (RAS when absent, as in old files); CSV is
    LPS unless ``coordinate_system="RAS"``. ``coordinate_system`` overrides only for CSV.
    """
    p = check_file(path, "landmark file")
    source = _name(path)
    ext = file_extension(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise BadInputError(source, "not a text file (cannot decode as UTF-8)") from None
    if ext == ".mrk.json" or (ext == ".json"):
        return _parse_mrk_json(text, source)
    if ext == ".fcsv":
        return _parse_fcsv(text, source)
    if ext == ".txt" and text.lstrip()[:5].lower() in ("point", "index"):
        return parse_elastix_points(text, source)
    if ext in (".csv", ".txt", ".tsv"):
        return _parse_csv(text, source, _coordinate_system(coordinate_system or "LPS", source))
    raise BadInputError(source, f"unknown landmark format '{ext}'; use .mrk.json, .fcsv or .csv")


def _parse_mrk_json(text, source) -> Landmarks:
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
        raise BadInputError(source, f"malformed JSON ({msg})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("markups"), list) or not doc["markups"]:
        raise BadInputError(source, "not a markups file (no 'markups' list)")
    labels, points, skipped = [], [], []
    systems = set()
    for mi, markup in enumerate(doc["markups"]):
        if not isinstance(markup, dict):
            raise BadInputError(source, f"markups[{mi}] is not an object")
        cs = _coordinate_system(markup.get("coordinateSystem", "LPS"), source, f"markups[{mi}].coordinateSystem")
        systems.add(cs)
        cps = markup.get("controlPoints", [])
        if not isinstance(cps, list):
            raise BadInputError(source, f"markups[{mi}].controlPoints is not a list")
        for ci, cp in enumerate(cps):
            where = f"markups[{mi}].controlPoints[{ci}]"
            if not isinstance(cp, dict):
                raise BadInputError(source, f"{where} is not an object")
            label = cp.get("label")
            label = str(label if label not in (None, "") else cp.get("id", ci + 1))
            pos = cp.get("position")
            if pos is None or cp.get("positionStatus") == "undefined":
                skipped.append(label)
                continue
            if not isinstance(pos, list) or len(pos) != 3:
                raise BadInputError(source, f"{where}.position must be a list of 3 numbers")
            xyz = [parse_coordinate(v, source, f"{where}.position") if not isinstance(v, bool) else parse_coordinate("bool", source, where)
                   for v in pos]
            if cs == "LPS":
                xyz = [-xyz[0], -xyz[1], xyz[2]]
            labels.append(label)
            points.append(xyz)
    # points are already RAS here
    return _finish_landmarks(labels, points, source, "RAS", skipped)


FCSV_DEFAULT_COLUMNS = ["id", "x", "y", "z", "ow", "ox", "oy", "oz", "vis", "sel", "lock", "label", "desc",
                        "associatedNodeID"]


def _parse_fcsv(text, source) -> Landmarks:
    cs = "RAS"
    columns = list(FCSV_DEFAULT_COLUMNS)
    labels, points = [], []
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            body = stripped[1:].strip()
            key, sep, value = body.partition("=")
            key = key.strip().lower()
            if sep and key == "coordinatesystem":
                cs = _coordinate_system(value, source, f"line {lineno}: CoordinateSystem")
            elif sep and key == "columns":
                columns = [c.strip() for c in value.split(",")]
            continue
        row = next(csv.reader([line]))
        if not all(c in columns for c in ("x", "y", "z")):
            raise BadInputError(source, "the '# columns' header lacks x, y or z")
        idx = {c: columns.index(c) for c in ("x", "y", "z")}
        need = max(idx.values()) + 1
        if len(row) < need:
            raise BadInputError(source, f"line {lineno}: {len(row)} columns, at least {need} needed (x, y, z)")
        xyz = [parse_coordinate(row[idx[c]], source, f"line {lineno}, column {c}") for c in ("x", "y", "z")]
        label = ""
        if "label" in columns and columns.index("label") < len(row):
            label = row[columns.index("label")].strip()
        if not label:
            label = row[columns.index("id")].strip() if "id" in columns and columns.index("id") < len(row) else ""
        labels.append(label or str(len(labels) + 1))
        points.append(xyz)
    return _finish_landmarks(labels, points, source, cs)


def _parse_csv(text, source, cs: str) -> Landmarks:
    """CSV ``label,x,y,z`` (header optional; a header may name the columns label/name, x, y, z)."""
    labels, points = [], []
    header = None
    for lineno, row in enumerate(csv.reader(text.splitlines()), 1):
        cells = [c.strip() for c in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if header is None:
            lowered = [c.lower() for c in cells]
            header = lowered if {"x", "y", "z"} <= set(lowered) else ["label", "x", "y", "z"]
            if header is lowered:
                continue
        idx = {c: header.index(c) for c in ("x", "y", "z")}
        lab_i = header.index("label") if "label" in header else (header.index("name") if "name" in header else None)
        need = max(idx.values()) + 1
        if len(cells) < need:
            raise BadInputError(source, f"line {lineno}: {len(cells)} columns, expected label,x,y,z")
        xyz = [parse_coordinate(cells[idx[c]], source, f"line {lineno}, column {c}") for c in ("x", "y", "z")]
        label = cells[lab_i] if lab_i is not None and lab_i < len(cells) else ""
        labels.append(label or str(len(labels) + 1))
        points.append(xyz)
    return _finish_landmarks(labels, points, source, cs)


# ---------------------------------------------------------------------------------------------------
# Label-name tables (--labels)
# ---------------------------------------------------------------------------------------------------
LABEL_TABLE_FORMATS = "a Slicer colour table (.ctbl/.txt: value name r g b a), an ITK-SNAP label description " \
    "file (value r g b a vis mesh \"name\") or CSV value,name"
_MAX_LABEL = 2**31 - 1


def _label_value(text, source, lineno) -> int:
    t = str(text).strip()
    if not re.fullmatch(r"\+?\d{1,10}", t) or int(t) > _MAX_LABEL:
        raise BadInputError(source, f"line {lineno}: label value '{t[:20]}' is not an integer 0..{_MAX_LABEL}")
    return int(t)


def _label_name(text, source, lineno) -> str:
    name = " ".join(str(text).split())
    if not name:
        raise BadInputError(source, f"line {lineno}: empty label name")
    if len(name) > 200 or any(ord(c) < 32 for c in name):
        raise BadInputError(source, f"line {lineno}: label name is not plain text of at most 200 characters")
    return name


def read_label_table(path) -> dict:
    """``{label value: name}`` from a label-name table (``--labels``); value 0 (background) is dropped.

    Formats (detected from the content): CSV ``value,name`` (an optional header row naming the columns, e.g.
    Slicer's ``LabelValue,Name,...`` colour-table CSV); an ITK-SNAP label description file (``IDX R G B A VIS
    MSH "LABEL"``, ``#`` comments); a Slicer colour table ``.ctbl``/``.txt`` (``value name r g b a``, ``#``
    comments). BadInputError ``path: line N: ...`` for anything else (duplicate values, non-integer values,
    empty names, no labels).
    """
    p = check_file(path, "label table")
    source = _name(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise BadInputError(source, "not a text file (cannot decode as UTF-8)") from None
    if "\x00" in text:
        raise BadInputError(source, "not a text file (NUL bytes)")
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)]
    lines = [(n, line) for n, line in lines if line and not line.startswith("#")]
    if not lines:
        raise BadInputError(source, f"no labels; expected {LABEL_TABLE_FORMATS}")
    table: dict = {}

    def put(value, name, lineno):
        if value in table:
            raise BadInputError(source, f"line {lineno}: label value {value} appears twice")
        table[value] = name

    first = lines[0][1]
    if "," in first and '"' not in first.split(",")[0]:  # CSV
        rows = list(csv.reader([line for _, line in lines]))
        value_col, name_col, start = 0, 1, 0
        header = [c.strip().lower() for c in rows[0]]
        if not re.fullmatch(r"\+?\d+", header[0] if header else ""):
            values = [i for i, c in enumerate(header) if c in ("value", "labelvalue", "label_value", "label", "id")]
            names = [i for i, c in enumerate(header) if c in ("name", "label_name", "labelname", "structure")]
            if not values or not names:
                raise BadInputError(source, f"line {lines[0][0]}: CSV header needs a value and a name column "
                                    "(e.g. value,name)")
            value_col, name_col, start = values[0], names[0], 1
        for (lineno, _), row in zip(lines[start:], rows[start:]):
            if len(row) <= max(value_col, name_col):
                raise BadInputError(source, f"line {lineno}: expected value,name")
            put(_label_value(row[value_col], source, lineno), _label_name(row[name_col], source, lineno), lineno)
    elif '"' in first:  # ITK-SNAP label description
        for lineno, line in lines:
            m = re.fullmatch(r'(\S+)((?:\s+\S+){6})\s+"([^"]*)"', line)
            if m is None:
                raise BadInputError(source, f"line {lineno}: expected ITK-SNAP 'IDX R G B A VIS MSH \"LABEL\"'")
            put(_label_value(m.group(1), source, lineno), _label_name(m.group(3), source, lineno), lineno)
    else:  # Slicer colour table
        for lineno, line in lines:
            cells = line.split()
            if len(cells) < 2:
                raise BadInputError(source, f"line {lineno}: expected Slicer colour table 'value name r g b a'")
            put(_label_value(cells[0], source, lineno), _label_name(cells[1], source, lineno), lineno)
    table.pop(0, None)
    if not table:
        raise BadInputError(source, "no labels other than 0 (background)")
    return table


# elastix / transformix point files
_OUTPUT_LINE = re.compile(r"^\s*Point\s+(\d+)\s*;", re.IGNORECASE)
_FIELD = r"{name}\s*=\s*\[([^\]]*)\]"


def parse_elastix_points(text: str, source: str, image=None, field_name: str = "OutputPoint") -> Landmarks:
    """Landmarks (RAS) from an elastix/transformix point file's text.

    Two formats are recognised:

    * elastix/transformix *input* point files: first token ``point`` or ``index``, then the number of points,
      then 3 coordinates per point (whitespace separated, as elastix reads them). ``point`` coordinates are
      physical LPS mm. ``index`` coordinates are voxel indices of ``image`` (a SimpleITK image or anything with
      ``TransformIndexToPhysicalPoint``); like elastix, each index is rounded to the nearest integer first. An
      ``index`` file without ``image`` is a :class:`BadInputError`. Labels are the 1-based point number as a
      string (``"1"``, ``"2"``, ...).
    * transformix ``outputpoints.txt``: lines ``Point <n> ; InputIndex = [..] ; InputPoint = [..] ; ...
      ; OutputPoint = [..] ...``. The ``OutputPoint`` (physical LPS) is read, or ``field_name`` (e.g.
      ``"InputPoint"``). Labels are ``n + 1`` as a string, so they match the labels of the input point file
      transformix was given.
    """
    if _OUTPUT_LINE.match(text.lstrip().splitlines()[0] if text.strip() else ""):
        return _parse_transformix_output(text, source, field_name)
    tokens = text.split()
    if not tokens:
        raise BadInputError(source, "empty point file")
    kind = tokens[0].lower()
    if kind not in ("point", "index"):
        raise BadInputError(
            source, f"first word is '{tokens[0][:20]}'; an elastix point file starts with point or index"
        )
    if len(tokens) < 2:
        raise BadInputError(source, "no point count after the first line")
    try:
        count = int(tokens[1])
    except ValueError:
        raise BadInputError(source, f"point count '{tokens[1][:20]}' is not an integer") from None
    if count <= 0:
        raise BadInputError(source, "no landmarks in the file (count 0)")
    numbers = tokens[2:]
    if len(numbers) != 3 * count:
        if count and len(numbers) == 2 * count:
            raise BadInputError(source, f"{count} points of 2 coordinates; 3D landmarks are needed")
        raise BadInputError(source, f"declares {count} points but holds {len(numbers)} numbers (3 per point expected)")
    values = [parse_coordinate(tok, source, f"point {n // 3 + 1}") for n, tok in enumerate(numbers)]
    coords = np.array(values, dtype=float).reshape(count, 3)
    if kind == "index":
        if image is None:
            raise BadInputError(
                source, "an 'index' point file holds voxel indices; the image they refer to is needed "
                "(use read_elastix_points(path, image=...) or a 'point' file in physical LPS mm)"
            )
        lps = []
        for ijk in coords:
            rounded = [int(math.floor(v + 0.5)) for v in ijk]  # elastix rounds indices (itk::Math::Round)
            lps.append(image.TransformIndexToPhysicalPoint(rounded))
        coords = np.array(lps, dtype=float)
    labels = [str(i + 1) for i in range(count)]
    return Landmarks(labels, coords * _FLIP + 0.0, source=source)


def _parse_transformix_output(text: str, source: str, field_name: str) -> Landmarks:
    pattern = re.compile(_FIELD.format(name=re.escape(field_name)))
    labels, points = [], []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        head = _OUTPUT_LINE.match(line)
        if head is None:
            raise BadInputError(source, f"line {lineno}: not a transformix output point line ('Point <n> ; ...')")
        found = pattern.search(line)
        if found is None:
            raise BadInputError(source, f"line {lineno}: no '{field_name} = [ ... ]'")
        cells = found.group(1).split()
        if len(cells) != 3:
            raise BadInputError(source, f"line {lineno}: {field_name} has {len(cells)} coordinates; 3D is needed")
        xyz = [parse_coordinate(c, source, f"line {lineno}") for c in cells]
        labels.append(str(int(head.group(1)) + 1))
        points.append(xyz)
    if not labels:
        raise BadInputError(source, "no landmarks in the file")
    dups = sorted({lab for lab in labels if labels.count(lab) > 1}, key=labels.index)
    if dups:
        raise BadInputError(source, f"duplicate point number(s) {', '.join(str(int(d) - 1) for d in dups[:5])}")
    return Landmarks(labels, np.array(points, dtype=float) * _FLIP + 0.0, source=source)


def read_elastix_points(path, image=None, field_name: str = "OutputPoint") -> Landmarks:
    """Read an elastix/transformix point file; ``image`` (SimpleITK image) resolves ``index`` files."""
    p = check_file(path, "landmark file")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise BadInputError(str(path), "not a text file (cannot decode as UTF-8)") from None
    return parse_elastix_points(text, str(path), image=image, field_name=field_name)


def landmarks_to_node(ctx, landmarks: Landmarks, name: str = "landmarks"):
    """A markups fiducial node with the landmarks (RAS, labels kept, locked)."""
    node = ctx.add_node("vtkMRMLMarkupsFiducialNode", name)
    for label, p in zip(landmarks.labels, landmarks.ras):
        node.AddControlPoint(float(p[0]), float(p[1]), float(p[2]), label)
    node.SetLocked(True)
    return node


def landmarks_from_node(node, world: bool = True) -> Landmarks:
    """Landmarks of a markups node (world RAS through parent transforms by default)."""
    labels, points = [], []
    n = node.GetNumberOfControlPoints()
    skipped = []
    for i in range(n):
        label = node.GetNthControlPointLabel(i) or str(i + 1)
        if not node.GetNthControlPointPositionVisibility(i) and hasattr(node, "GetNthControlPointPositionStatus"):
            if node.GetNthControlPointPositionStatus(i) != node.PositionDefined:
                skipped.append(label)
                continue
        p = [0.0, 0.0, 0.0]
        if world:
            node.GetNthControlPointPositionWorld(i, p)
        else:
            node.GetNthControlPointPosition(i, p)
        labels.append(label)
        points.append(p)
    return _finish_landmarks(labels, points, f"node '{node.GetName()}'", "RAS", skipped)


# ---------------------------------------------------------------------------------------------------
# Saving nodes, tables
# ---------------------------------------------------------------------------------------------------
def save_node(node, path) -> None:
    """Write a volume, segmentation, transform, markups or table node with the matching storage node."""
    import slicer

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if node.IsA("vtkMRMLSegmentationNode"):
        storage = slicer.vtkMRMLSegmentationStorageNode()
    elif node.IsA("vtkMRMLVolumeNode"):
        storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    elif node.IsA("vtkMRMLTransformNode"):
        storage = slicer.vtkMRMLTransformStorageNode()
    elif node.IsA("vtkMRMLMarkupsNode"):
        storage = slicer.vtkMRMLMarkupsJsonStorageNode()
    elif node.IsA("vtkMRMLTableNode"):
        storage = slicer.vtkMRMLTableStorageNode()
    else:
        raise BadInputError(node, f"cannot save a {node.GetClassName()}")
    storage.SetFileName(str(path))
    if not storage.WriteData(node):
        raise BadInputError(_name(path), f"could not write {node.GetClassName()}")


def rows_to_table_node(ctx, rows: list[dict], name: str = "table", node=None, column_properties=None):
    """A vtkMRMLTableNode from a list of flat dicts (column order of first appearance).

    ``column_properties``: {column: {"unit", "description", "long_name"}} set as the table node's column unit
    label, description and long name (what Slicer's table view shows as tooltips, as Segment Statistics does).
    """
    from vtkmodules.vtkCommonCore import vtkDoubleArray, vtkStringArray

    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    numeric = {c: all(isinstance(r.get(c), (int, float)) and not isinstance(r.get(c), bool) or r.get(c) is None
                      for r in rows) for c in columns}
    if node is None:
        node = ctx.add_node("vtkMRMLTableNode", name)
    table = node.GetTable()
    table.Initialize()
    for c in columns:
        arr = vtkDoubleArray() if numeric[c] else vtkStringArray()
        arr.SetName(c)
        arr.SetNumberOfValues(len(rows))
        for i, r in enumerate(rows):
            v = r.get(c)
            if numeric[c]:
                arr.SetValue(i, float("nan") if v is None else float(v))
            else:
                arr.SetValue(i, "" if v is None else str(v))
        table.AddColumn(arr)
    for column, props in (column_properties or {}).items():
        if column not in columns:
            continue
        if props.get("unit"):
            node.SetColumnUnitLabel(column, str(props["unit"]))
        if props.get("description"):
            node.SetColumnDescription(column, str(props["description"]))
        if props.get("long_name"):
            node.SetColumnLongName(column, str(props["long_name"]))
    node.Modified()
    return node


def table_node_to_rows(node) -> list[dict]:
    table = node.GetTable()
    rows = []
    for r in range(table.GetNumberOfRows()):
        row = {}
        for c in range(table.GetNumberOfColumns()):
            col = table.GetColumn(c)
            v = col.GetValue(r)
            row[col.GetName()] = v if isinstance(v, str) else float(v)
        rows.append(row)
    return rows


def write_csv(rows: list[dict], path) -> None:
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
