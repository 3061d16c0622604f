"""Runtime context: the MRML scene plus the module logics the library works with.

The library never reaches for the application's scene or module globals: every entry point takes a
:class:`Context`. Inside the Slicer application the module file builds one from the application's scene
and logics (:meth:`Context.from_application`); headless, :meth:`Context.headless` bootstraps the
``slicer-core`` wheel (see ``shared/notes/headless-slicer-core.md``).
"""

from __future__ import annotations

import os

# Logics the library uses, by Slicer module name -> class name in the ``slicer`` namespace.
LOGIC_CLASSES = {
    "Volumes": "vtkSlicerVolumesLogic",
    "Segmentations": "vtkSlicerSegmentationsModuleLogic",
    "Markups": "vtkSlicerMarkupsLogic",
    "Transforms": "vtkSlicerTransformLogic",
    "Tables": "vtkSlicerTablesLogic",
    "SubjectHierarchy": "vtkSlicerSubjectHierarchyModuleLogic",
}


class Context:
    """A scene and its module logics, kept alive together.

    Attributes: ``scene`` (vtkMRMLScene), ``app`` (vtkMRMLApplicationLogic or None), ``logics`` (dict of
    module name -> logic; keys as in :data:`LOGIC_CLASSES` plus ``"Colors"``), ``headless`` (bool).
    """

    def __init__(self, scene, logics: dict, app=None, headless: bool = False):
        self.scene = scene
        self.logics = dict(logics)
        self.app = app
        self.headless = headless

    def logic(self, name: str):
        try:
            return self.logics[name]
        except KeyError:
            raise KeyError(f"the context has no '{name}' module logic") from None

    @classmethod
    def headless(cls) -> Context:
        """Bootstrap a fresh scene with slicer-core's logics (no Qt, no Slicer application)."""
        silence_native_warnings()
        import slicer

        scene = slicer.vtkMRMLScene()
        app = slicer.vtkSlicerApplicationLogic()
        app.SetMRMLScene(scene)
        colors = app.GetColorLogic()  # vtkMRMLColorLogic: vtkSlicerColorLogic wants Slicer's share/ folder
        colors.SetMRMLScene(scene)
        colors.AddDefaultColorNodes()
        app.SetModuleLogic("Colors", colors)  # the volumes logic finds colours by module name
        logics = {"Colors": colors}
        for name, class_name in LOGIC_CLASSES.items():
            logic = logics[name] = getattr(slicer, class_name)()
            logic.SetMRMLApplicationLogic(app)
            logic.SetMRMLScene(scene)  # the segmentations logic registers its converter rules here
            app.SetModuleLogic(name, logic)  # weak pointer: self.logics keeps them alive
        slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)
        return cls(scene, logics, app=app, headless=True)

    @classmethod
    def from_application(cls, slicer_module) -> Context:
        """Build a context from the running Slicer application (called by the module file only).

        ``slicer_module`` is the ``slicer`` package of the application; it is passed in so that the
        library itself never imports the application's globals.
        """
        modules = slicer_module.modules
        logics = {"Colors": modules.colors.logic()}
        for name in LOGIC_CLASSES:
            module = getattr(modules, name.lower(), None)
            if module is not None:
                logics[name] = module.logic()
        app = slicer_module.app.applicationLogic()
        return cls(slicer_module.mrmlScene, logics, app=app, headless=False)

    # -- temporary nodes -------------------------------------------------------------------------
    def add_node(self, class_name: str, name: str = ""):
        """Add a new node of ``class_name`` to the scene (with default display/storage as MRML does)."""
        return self.scene.AddNewNodeByClass(class_name, name)

    def remove_nodes(self, nodes) -> None:
        """Remove nodes (and their display/storage nodes) from the scene; ``None`` entries are skipped."""
        for node in nodes:
            if node is None or self.scene.GetNodeByID(node.GetID()) is None:
                continue
            if hasattr(node, "GetNumberOfDisplayNodes"):
                for i in reversed(range(node.GetNumberOfDisplayNodes())):
                    display = node.GetNthDisplayNode(i)
                    if display is not None:
                        self.scene.RemoveNode(display)
            if hasattr(node, "GetNumberOfStorageNodes"):
                for i in reversed(range(node.GetNumberOfStorageNodes())):
                    storage = node.GetNthStorageNode(i)
                    if storage is not None:
                        self.scene.RemoveNode(storage)
            self.scene.RemoveNode(node)


class TemporaryNodes:
    """Context manager collecting nodes to remove from the scene on exit, also on failure.

    >>> with TemporaryNodes(ctx) as tmp:
    ...     copy = tmp.add(ctx.add_node("vtkMRMLScalarVolumeNode", "work copy"))
    """

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.nodes: list = []

    def add(self, node):
        self.nodes.append(node)
        return node

    def keep(self, node):
        """Do not remove ``node`` on exit (it became a result)."""
        self.nodes = [n for n in self.nodes if n is not node]
        return node

    def __enter__(self) -> TemporaryNodes:
        return self

    def __exit__(self, *exc) -> None:
        self.ctx.remove_nodes(reversed(self.nodes))
        self.nodes = []


_SILENCED = False


def silence_native_warnings() -> None:
    """Keep VTK's and ITK's warning/error logging off stderr (the CLI also redirects fd 2).

    Process-wide (VTK's global warning display, vtkLogger's stderr, SimpleITK's global warning display), so only
    the headless entry points call it: the CLI, cohort workers and :meth:`Context.headless`. Never inside the
    Slicer application (:meth:`Context.from_application`), whose Error Log shows those messages for every module.
    """
    global _SILENCED
    if _SILENCED or os.environ.get("RQ_NATIVE_WARNINGS"):
        return
    _SILENCED = True
    try:
        from vtkmodules.vtkCommonCore import vtkLogger, vtkObject

        vtkObject.GlobalWarningDisplayOff()
        vtkLogger.SetStderrVerbosity(vtkLogger.VERBOSITY_OFF)
    except Exception:  # pragma: no cover - VTK without the logger
        pass
    try:
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalWarningDisplay(False)
    except Exception:  # pragma: no cover
        pass
