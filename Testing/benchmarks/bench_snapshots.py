"""Benchmark: outline snapshots (PNG) on a CT-sized volume, ours against peers measured in the same run.

Volume: 256×256×120 voxels, 0.9×0.9×2.0 mm, a body with an organ-like structure; fixed mask and a moving mask
shifted by (4, -3, 2) mm. Timed:

* ours: :func:`rendering.render_snapshots` (Slicer slice logic + resliced outlines + FreeType text, no GL):
  the first call (set-up included), then single axial snapshots and full sets (3 views + 9-tile montage);
* peer "slicer-gl": the offscreen Slicer slice view of ``shared/notes/headless-slicer-core.md`` (VTK EGL
  render window, the segmentations 2D displayable manager drawing both outlines), frame + PNG, when EGL works;
* peer "matplotlib": ``imshow`` + ``contour`` of the axial slice (numpy indexing, no reslicing), ``savefig``,
  when matplotlib is importable (it is not a dependency).

Target: <= 0.5 s per snapshot after the first. Prints seconds and ratios (ours / peer); asserts nothing.

    python Testing/benchmarks/bench_snapshots.py [--size 256 256 120] [--repeat 10] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")  # the GL peer; ours needs no GL

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

from RegistrationQualityLib import rendering  # noqa: E402
from RegistrationQualityLib.context import Context  # noqa: E402


def phantom(size, spacing):
    nx, ny, nz = size
    k, j, i = np.ogrid[:nz, :ny, :nx]
    x, y, z = i * spacing[0], j * spacing[1], k * spacing[2]
    cx, cy, cz = nx * spacing[0] / 2, ny * spacing[1] / 2, nz * spacing[2] / 2
    body = ((x - cx) / (0.42 * nx * spacing[0])) ** 2 + ((y - cy) / (0.35 * ny * spacing[1])) ** 2 <= 1
    body = np.broadcast_to(body, (nz, ny, nx))
    rng = np.random.default_rng(0)
    arr = np.where(body, 40.0, -1000.0) + rng.normal(0, 15, (nz, ny, nx))

    def organ(shift):
        return (((x - cx - 35 - shift[0]) / 28) ** 2 + ((y - cy + 10 - shift[1]) / 22) ** 2
                + ((z - cz - shift[2]) / 40) ** 2) <= 1

    fixed = organ((0, 0, 0))
    arr[fixed] = 120 + rng.normal(0, 15, int(fixed.sum()))
    image = sitk.GetImageFromArray(arr.astype(np.int16))
    image.SetSpacing(spacing)
    masks = []
    for m in (fixed, organ((4.0, -3.0, 2.0))):
        mask = sitk.GetImageFromArray(m.astype(np.uint8))
        mask.CopyInformation(image)
        masks.append(mask)
    return image, masks[0], masks[1], np.asarray(fixed), np.asarray(organ((4.0, -3.0, 2.0)))


def ours(ctx, image, fixed, moving, out, repeat):
    overlays = [(fixed, rendering.FIXED_COLOR, "fixed"), (moving, rendering.MOVING_COLOR, "moving")]
    t = time.perf_counter()
    first = rendering.render_snapshots(ctx, image, overlays, out / "first", views=("axial",), montage=False)
    t_first = time.perf_counter() - t
    singles = []
    for n in range(repeat):
        t = time.perf_counter()
        rendering.render_snapshots(ctx, image, overlays, out / f"single{n}", views=("axial",), montage=False)
        singles.append(time.perf_counter() - t)
    sets = []
    for n in range(max(2, repeat // 3)):
        t = time.perf_counter()
        paths = rendering.render_snapshots(ctx, image, overlays, out / f"set{n}")
        sets.append(time.perf_counter() - t)
    renderer = rendering.get_renderer(ctx)
    from RegistrationQualityLib.rendering import _prepare_overlay

    items = [_prepare_overlay(ctx, o, i) for i, o in enumerate(overlays)]
    from RegistrationQualityLib.context import TemporaryNodes

    frames = []
    with TemporaryNodes(ctx) as tmp:
        bg = rendering._prepare_background(ctx, tmp, image, None)
        for n in range(repeat):
            t = time.perf_counter()
            rgb = renderer.render_slice(bg, "axial", items[0].centroid, 512, 512, items, title="t", legend=[("a", "#FFFFFF")])
            rendering.write_png(rgb, out / f"frame{n}.png")
            frames.append(time.perf_counter() - t)
    return {"first": t_first, "single": statistics.median(singles), "set": statistics.median(sets),
            "set_pngs": len(paths), "frame": statistics.median(frames), "example": first[0]}


def peer_slicer_gl(image, fixed, moving, out, repeat):
    """The notes' offscreen slice view: EGL render window + segmentations displayable manager."""
    import slicer
    import vtkmodules.vtkInteractionStyle  # noqa: F401
    import vtkmodules.vtkRenderingOpenGL2  # noqa: F401
    from vtkmodules.vtkCommonCore import vtkCollection
    from vtkmodules.vtkIOImage import vtkPNGWriter
    from vtkmodules.vtkRenderingCore import (
        vtkActor2D,
        vtkImageMapper,
        vtkRenderer,
        vtkRenderWindow,
        vtkRenderWindowInteractor,
        vtkWindowToImageFilter,
    )

    from RegistrationQualityLib import io

    ctx = Context.headless()
    t0 = time.perf_counter()
    vol = io.image_to_volume(ctx, image, "fixed")
    d = vol.GetDisplayNode()
    d.AutoWindowLevelOff()
    d.SetWindowLevelMinMax(*rendering.percentile_range(image))
    for mask, color in ((fixed, (0, 0.447, 0.698)), (moving, (0.902, 0.624, 0))):
        seg = io.labelmap_image_to_segmentation(ctx, mask, "s")
        seg.GetSegmentation().GetNthSegment(0).SetColor(*color)
        seg.GetDisplayNode().SetVisibility2DFill(False)
    W = H = 512
    sl = slicer.vtkMRMLSliceLogic()
    sl.SetMRMLApplicationLogic(ctx.app)
    sl.SetMRMLScene(ctx.scene)
    sn = sl.AddSliceNode("Red")
    c = vtkCollection()
    c.AddItem(sl)
    ctx.app.SetSliceLogics(c)
    sn.SetOrientation("Axial")
    sn.SetDimensions(W, H, 1)
    sl.GetSliceCompositeNode().SetBackgroundVolumeID(vol.GetID())
    sl.FitSliceToBackground(W, H)
    rw = vtkRenderWindow()
    rw.SetOffScreenRendering(1)
    rw.SetSize(W, H)
    ren = vtkRenderer()
    rw.AddRenderer(ren)
    iren = vtkRenderWindowInteractor()
    iren.SetRenderWindow(rw)
    mapper = vtkImageMapper()
    mapper.SetInputConnection(sl.GetImageDataConnection())
    mapper.SetColorWindow(255)
    mapper.SetColorLevel(127.5)
    actor = vtkActor2D()
    actor.SetMapper(mapper)
    ren.AddViewProp(actor)
    f = slicer.vtkMRMLSliceViewDisplayableManagerFactory.GetInstance()
    f.SetMRMLApplicationLogic(ctx.app)
    if not f.IsDisplayableManagerRegistered("vtkMRMLSegmentationsDisplayableManager2D"):
        f.RegisterDisplayableManager("vtkMRMLSegmentationsDisplayableManager2D")
    dms = f.InstantiateDisplayableManagers(ren)
    dms.SetMRMLDisplayableNode(sn)

    def frame(path, z):
        sn.JumpSliceByOffsetting(0, 0, z)
        rw.Render()
        grab = vtkWindowToImageFilter()
        grab.SetInput(rw)
        grab.ReadFrontBufferOff()
        grab.Update()
        w = vtkPNGWriter()
        w.SetFileName(str(path))
        w.SetInputConnection(grab.GetOutputPort())
        w.Write()

    z0 = image.GetSize()[2] * image.GetSpacing()[2] / 2
    frame(out / "gl_first.png", z0)
    t_first = time.perf_counter() - t0
    times = []
    for n in range(repeat):
        t = time.perf_counter()
        frame(out / f"gl{n}.png", z0 + (n % 3))
        times.append(time.perf_counter() - t)
    return {"first": t_first, "frame": statistics.median(times)}


def peer_matplotlib(image, fixed_arr, moving_arr, out, repeat):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arr = sitk.GetArrayViewFromImage(image)
    lo, hi = np.percentile(arr, [1, 99])
    k = int(np.argwhere(fixed_arr)[:, 0].mean())
    sx, sy = image.GetSpacing()[:2]
    times = []
    for n in range(repeat + 1):
        t = time.perf_counter()
        fig = plt.figure(figsize=(5.12, 5.12), dpi=100)
        ax = fig.add_axes([0, 0, 1, 1])
        ax.imshow(arr[k], cmap="gray", vmin=lo, vmax=hi, aspect=sy / sx, interpolation="bilinear")
        ax.contour(fixed_arr[k], levels=[0.5], colors=["#0072B2"], linewidths=2)
        ax.contour(moving_arr[k], levels=[0.5], colors=["#E69F00"], linewidths=2)
        ax.set_axis_off()
        fig.savefig(out / f"mpl{n}.png")
        plt.close(fig)
        times.append(time.perf_counter() - t)
    return {"first": times[0], "frame": statistics.median(times[1:])}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=3, default=(256, 256, 120))
    parser.add_argument("--spacing", type=float, nargs=3, default=(0.9, 0.9, 2.0))
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--keep", help="keep the PNGs in this folder")
    args = parser.parse_args()
    out = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="rq-bench-snapshots-"))
    out.mkdir(parents=True, exist_ok=True)
    image, fixed, moving, fixed_arr, moving_arr = phantom(tuple(args.size), tuple(args.spacing))
    print(f"volume {args.size} voxels, spacing {args.spacing} mm; {args.repeat} repeats, medians")
    ctx = Context.headless()
    r = ours(ctx, image, fixed, moving, out, args.repeat)
    print(f"ours: first snapshot (set-up included) {r['first']:.3f} s")
    print(f"ours: one axial snapshot (render_snapshots call: overlays, background node, PNG) {r['single']:.3f} s")
    print(f"ours: full set (3 views + montage = {r['set_pngs']} PNGs) {r['set']:.3f} s "
          f"= {r['set'] / r['set_pngs']:.3f} s per PNG")
    print(f"ours: one 512x512 frame on a reused renderer (render_slice + PNG) {r['frame']:.3f} s")
    peers = {}
    ok, reason = True, ""
    try:
        peers["slicer-gl"] = peer_slicer_gl(image, fixed, moving, out, args.repeat)
    except Exception as exc:  # no EGL here
        ok, reason = False, f"{type(exc).__name__}: {exc}"
    if not ok:
        print(f"slicer-gl peer skipped: {reason}")
    try:
        peers["matplotlib"] = peer_matplotlib(image, fixed_arr, moving_arr, out, args.repeat)
    except ImportError as exc:
        print(f"matplotlib peer skipped: {exc}")
    for name, p in peers.items():
        print(f"{name}: first {p['first']:.3f} s, then per 512x512 frame + PNG {p['frame']:.3f} s; "
              f"ratio ours/{name} (frame) {r['frame'] / p['frame']:.2f}, (whole axial snapshot call) "
              f"{r['single'] / p['frame']:.2f}")
    print(f"target <= 0.5 s per snapshot after the first: {'met' if r['single'] <= 0.5 else 'NOT met'}")
    print(f"example: {r['example']}")
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
