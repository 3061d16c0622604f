"""Registration Quality: the 3D Slicer module (a thin shell around ``RegistrationQualityLib``).

Everything that computes lives in ``RegistrationQualityLib`` (Qt-free, tested headless on slicer-core). This file
only adapts it to the Slicer application: module metadata and sample data (``RegistrationQuality``), the panel
(``RegistrationQualityWidget``, loads ``Resources/UI/RegistrationQuality.ui``), the logic facade used by the panel,
the Python console and batch mode (``RegistrationQualityLogic``, whose library context is built from the
application with ``Context.from_application(slicer)``), and the self-test (``RegistrationQualityTest``).
"""

import logging
import os
from pathlib import Path
from typing import Annotated, Union

import qt
import slicer
from slicer import (
    vtkMRMLLabelMapVolumeNode,
    vtkMRMLMarkupsFiducialNode,
    vtkMRMLModelNode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLSegmentationNode,
    vtkMRMLTableNode,
    vtkMRMLTransformNode,
)
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import (
    Default,
    FloatRange,
    RangeBounds,
    SlicerParameterNamePropertyName,
    WithinRange,
    parameterNodeWrapper,
)
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

SAMPLE_CATEGORY = "Registration Quality"
SAMPLE_NAME = "RegistrationQualityHeadPhantom"
DOCS_URL = "https://github.com/RegistrationQuality/SlicerRegistrationQuality/blob/main/docs/"


#
# RegistrationQuality
#
class RegistrationQuality(ScriptedLoadableModule):
    """Module metadata; registers the sample case with the Sample Data module once Slicer has started."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Registration Quality")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Registration")]
        self.parent.dependencies = []
        self.parent.contributors = ["RegistrationQuality maintainers"]
        self.parent.helpText = _(
            "Is this registration good? Compares segmentations before and after registration (Dice, Hausdorff, "
            "surface distances), landmark target registration error (TRE), deformation sanity (Jacobian "
            "determinant, folding) and shows contour overlays. The same logic runs headless: "
            "<code>registration-quality evaluate</code>."
        )
        # the project's own documentation (getDefaultModuleDocumentationLink() points at Slicer's documentation
        # site, which has no page for an extension module)
        self.parent.helpText += "<p>" + _('Documentation: <a href="{url}">the panel</a>, <a href="{index}">all '
                                          "pages</a>.").format(url=DOCS_URL + "panel.md", index=DOCS_URL + "index.md") + "</p>"
        self.parent.acknowledgementText = _(
            "Built on 3D Slicer's MRML and module logics (slicer-core), SimpleITK and VTK. elastix result files "
            "are read directly; no registration is run by this module."
        )
        slicer.app.connect("startupCompleted()", registerSampleData)


def sampleCaseFolder():
    """The sample case folder (with ``case.json``) or None (the library finds it: installed extension or source
    tree)."""
    from RegistrationQualityLib.samplecase import find_sample_case

    return find_sample_case()


def sampleCaseSpec(folder):
    from RegistrationQualityLib.samplecase import read_case_spec

    return read_case_spec(folder)


def registerSampleData():
    """Register the sample case (local files of the extension) with the Sample Data module."""
    import SampleData

    folder = sampleCaseFolder()
    if folder is None:
        logging.warning("RegistrationQuality: sample case folder not found; not registered with Sample Data")
        return
    spec = sampleCaseSpec(folder)
    entries = [  # (case.json key, node name, Slicer file type)
        ("fixed", "RQ fixed DWI", "VolumeFile"),
        ("moving", "RQ moving CBF", "VolumeFile"),
        ("fixed_segmentation" if "fixed_segmentation" in spec else "fixed_labels", "RQ fixed segmentation",
         "SegmentationFile"),  # .seg.nrrd: named segments
        ("moving_segmentation" if "moving_segmentation" in spec else "moving_labels", "RQ moving segmentation",
         "SegmentationFile"),
        ("fixed_landmarks", "RQ fixed landmarks", "MarkupsFile"),
        ("moving_landmarks", "RQ moving landmarks", "MarkupsFile"),
    ]
    paths = [folder / spec[key] for key, _name, _type in entries]
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category=SAMPLE_CATEGORY,
        sampleName=SAMPLE_NAME,
        # local files: SampleData copies them into its cache with urllib (file:// URIs) and loads them
        uris=[path.as_uri() for path in paths],
        fileNames=["RQ-" + path.name for path in paths],
        nodeNames=[name for _key, name, _type in entries],
        loadFileTypes=[file_type for _key, _name, file_type in entries],
        # a cached copy is used only while its checksum matches: an updated sample case is copied again
        checksums=["SHA256:" + fileSha256(path) for path in paths],
        thumbnailFileName=os.path.join(os.path.dirname(__file__), "Resources", "Icons", "RegistrationQuality.png"),
        # the button loads the whole case through the library, including the two elastix registrations
        customDownloader=downloadSampleCase,
    )


def fileSha256(path):
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def downloadSampleCase(source=None):
    """Sample Data's button: load the sample case and show the fixed image in the slice views (fitted), as the
    other Sample Data entries do. Returns the loaded nodes by role."""
    nodes = RegistrationQualityLogic().loadSampleCase()
    slicer.util.setSliceViewerLayers(background=nodes["fixed"], foreground=None, fit=True)
    return nodes


def connectParameterNodeGui(parameterNode, ui):
    """Bind the widgets of ``ui`` whose ``SlicerParameterName`` property names a field; return the tag to pass to
    ``parameterNode.disconnectGui``.

    The same widgets as ``connectGui(ui)`` binds (for a non-widget ``ui``: its attributes that have the property),
    through ``connectParametersToGui``, which returns the tag in every Slicer version; ``connectGui`` itself returns
    None before 5.10 (``disconnectGui(None)`` then leaves the connection in place).
    """
    mapping = {}
    for widget in vars(ui).values():
        name = widget.property(SlicerParameterNamePropertyName) if hasattr(widget, "property") else None
        if name:
            mapping[name] = widget
    return parameterNode.connectParametersToGui(mapping)


#
# RegistrationQualityParameterNode
#
@parameterNodeWrapper
class RegistrationQualityParameterNode:
    """The panel's state, saved with the scene (a QA session can be reopened).

    Inputs are bound to the .ui widgets through their ``SlicerParameterName`` property. Fields named ``result...``
    are outputs of the last computation: result nodes (removed and replaced by the next computation), the status
    line and the report (JSON text, so that "Save report" also works after the scene is reopened).
    """

    # Inputs
    fixedVolume: vtkMRMLScalarVolumeNode
    movingVolume: vtkMRMLScalarVolumeNode
    registeredVolume: vtkMRMLScalarVolumeNode
    transform: vtkMRMLTransformNode
    # a union of node types must include None (its default): Slicer's UnionSerializer writes every default when the
    # wrapper is built and no node member accepts None (see Testing/test_module_panel.py, node unions need None)
    fixedSegmentation: Union[vtkMRMLSegmentationNode, vtkMRMLLabelMapVolumeNode, None]
    movingSegmentation: Union[vtkMRMLSegmentationNode, vtkMRMLLabelMapVolumeNode, None]
    fixedLandmarks: vtkMRMLMarkupsFiducialNode
    movingLandmarks: vtkMRMLMarkupsFiducialNode
    # Threshold (each image in its own units; bounds: RegistrationQualityLib.panel.THRESHOLD_LIMIT)
    useThreshold: bool = True
    fixedThreshold: Annotated[FloatRange, RangeBounds(-1.0e6, 1.0e6), Default(FloatRange(0, 0))]
    movingThreshold: Annotated[FloatRange, RangeBounds(-1.0e6, 1.0e6), Default(FloatRange(0, 0))]
    # Threshold clean-up (RegistrationQualityLib.segmentation.Cleanup; the CLI's --fill-holes, --largest-component,
    # --min-island-cc, --closing-mm)
    fillHoles: bool = True
    largestComponent: bool = True
    minIslandCc: Annotated[float, WithinRange(0.0, 1.0e6)] = 0.0
    closingMm: Annotated[float, WithinRange(0.0, 100.0)] = 0.0
    # Options: Hausdorff percentile and pass/fail limits (a limit is checked when its box is ticked)
    percentile: Annotated[float, WithinRange(0.0, 100.0)] = 95.0
    checkDice: bool = False
    minDice: Annotated[float, WithinRange(0.0, 1.0)] = 0.8
    checkHausdorff: bool = False
    maxHausdorff: Annotated[float, WithinRange(0.0, 1000.0)] = 5.0
    checkTre: bool = False
    maxTre: Annotated[float, WithinRange(0.0, 1000.0)] = 2.0
    checkFolding: bool = False
    maxFolding: Annotated[float, WithinRange(0.0, 100.0)] = 0.1
    checkTrePoint: bool = False
    maxTrePoint: Annotated[float, WithinRange(0.0, 1000.0)] = 5.0
    checkHausdorffMax: bool = False
    maxHausdorffMax: Annotated[float, WithinRange(0.0, 1000.0)] = 10.0
    checkMeanDistance: bool = False
    maxMeanDistance: Annotated[float, WithinRange(0.0, 1000.0)] = 2.0
    checkNsd: bool = False
    minNsd: Annotated[float, WithinRange(0.0, 1.0)] = 0.8
    checkNdv: bool = False
    maxNdv: Annotated[float, WithinRange(0.0, 100.0)] = 0.1
    # tolerance profile: a built-in name or a profile file; empty = none (RegistrationQualityLib.profiles)
    profile: str = ""
    # Display
    showContours: bool = True
    contoursAfter: bool = True
    showCheckerboard: bool = False
    showDifference: bool = False
    showJacobian: bool = False
    showTreVectors: bool = True
    showHeatmaps: bool = False
    # Results of the last computation
    resultStatus: str = ""
    resultReport: str = ""
    resultSummaryTable: vtkMRMLTableNode
    resultMetricsTable: vtkMRMLTableNode
    resultTreTable: vtkMRMLTableNode
    resultTreVectors: vtkMRMLModelNode
    resultJacobian: vtkMRMLScalarVolumeNode
    resultFolding: vtkMRMLSegmentationNode  # the J <= 0 voxels of resultJacobian as a segment
    resultCheckerboard: vtkMRMLScalarVolumeNode
    resultDifference: vtkMRMLScalarVolumeNode
    resultContoursFixed: vtkMRMLSegmentationNode
    resultContoursBefore: vtkMRMLSegmentationNode
    resultContoursAfter: vtkMRMLSegmentationNode


#
# RegistrationQualityWidget
#
class RegistrationQualityWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: gathers inputs from the parameter node, calls the logic, shows the results.

    Nothing is computed here: thresholds, metrics, result and display nodes all come from the library through
    ``RegistrationQualityLogic``. ``computeFromParameterNode()`` is what the Compute button runs (and the
    self-test calls).
    """

    def __init__(self, parent=None):
        # attributes first: without a parent, ScriptedLoadableModuleWidget.__init__ calls setup() itself
        VTKObservationMixin.__init__(self)  # parameter node and scene observation
        self.logic = None
        self.ui = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._volumeIDs = {"fixed": None, "moving": None}  # volumes the threshold sliders are set up for
        self._movingID = None  # moving volume the SlicerElastix auto-fill last looked at
        self._displayState = None
        self._updating = False
        self._running = False
        self._cancelRequested = False
        ScriptedLoadableModuleWidget.__init__(self, parent)

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/RegistrationQuality.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)  # the .ui forwards the scene to every MRML widget
        self.logic = RegistrationQualityLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.loadSampleCaseButton.connect("clicked(bool)", self.onLoadSampleCase)
        self.ui.loadSampleCaseButton.enabled = sampleCaseFolder() is not None
        self.ui.findElastixButton.connect("clicked(bool)", self.onFindElastixResult)
        self.ui.otsuButton.connect("clicked(bool)", self.onOtsuButton)
        self.ui.histogramDefaultsButton.connect("clicked(bool)", self.onHistogramDefaultsButton)
        self.ui.computeButton.connect("clicked(bool)", self.onComputeButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.saveReportButton.connect("clicked(bool)", self.onSaveReportButton)
        self.ui.progressBar.hide()
        self.ui.cancelButton.enabled = False

        self.initializeParameterNode()

    def cleanup(self):
        self.disconnectParameterNode()
        self.removeObservers()

    def onReload(self):
        """Developer mode's Reload: also reload ``RegistrationQualityLib`` (Slicer reloads only the module file).

        The library's modules are dropped from ``sys.modules``: the module file imports them inside functions, so
        the next use imports the edited source.
        """
        import sys

        for name in [n for n in sys.modules if n == "RegistrationQualityLib" or n.startswith("RegistrationQualityLib.")]:
            del sys.modules[name]
        ScriptedLoadableModuleWidget.onReload(self)

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        self.disconnectParameterNode()

    def onSceneStartClose(self, caller, event):
        self.setParameterNode(None)
        self.ui.resultsTableView.setMRMLTableNode(None)  # the table node is removed with the scene

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    # -- parameter node ------------------------------------------------------------------------------------
    @staticmethod
    def _modifiedEvent():
        import vtk

        return vtk.vtkCommand.ModifiedEvent

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode):
        """Show ``inputParameterNode`` (a wrapper from ``logic.getParameterNode()``, one per node) in the panel.

        The GUI is connected once per entering the module: connecting the same node again while connected would
        bind every widget twice, and the second binding writes each widget's rounded value back.
        """
        if inputParameterNode is self._parameterNode and (inputParameterNode is None or
                                                          self._parameterNodeGuiTag is not None):
            return
        self.disconnectParameterNode()
        self._parameterNode = inputParameterNode
        self._volumeIDs = {"fixed": None, "moving": None}
        self._movingID = None
        self._displayState = None
        if self._parameterNode:
            # every bound widget has a "SlicerParameterName" dynamic property in the .ui
            self._parameterNodeGuiTag = connectParameterNodeGui(self._parameterNode, self.ui)
            self.addObserver(self._parameterNode, self._modifiedEvent(), self.onParameterNodeModified)
            self.ui.resultsTableView.setMRMLTableNode(self._parameterNode.resultSummaryTable)
        self.onParameterNodeModified()

    def disconnectParameterNode(self):
        """Disconnect the GUI from the parameter node (it stays the panel's node until another is set)."""
        if self._parameterNode is not None and self._parameterNodeGuiTag is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, self._modifiedEvent(), self.onParameterNodeModified)
        self._parameterNodeGuiTag = None

    def onParameterNodeModified(self, caller=None, event=None):
        """Follow the inputs: SlicerElastix auto-fill, threshold slider ranges, display, button states."""
        p = self._parameterNode
        if p is None or self._updating:
            return
        self._updating = True
        try:
            moving = p.movingVolume
            movingID = moving.GetID() if moving else None
            if movingID != self._movingID:
                # a newly chosen moving volume brings its SlicerElastix result; a reopened scene keeps its inputs
                userChange = self._movingID is not None or not (p.registeredVolume or p.transform)
                self._movingID = movingID
                if moving and userChange:
                    self.fillFromSlicerElastix(overwrite=True, quiet=True)
            for side in ("fixed", "moving"):
                self._updateThresholdSlider(side)
            self._applyDisplay()
            self._updateButtons()
        finally:
            self._updating = False

    def _updateButtons(self):
        p = self._parameterNode
        ready = bool(p and p.fixedVolume and p.movingVolume and (p.registeredVolume or p.transform))
        self.ui.computeButton.enabled = ready and not self._running
        self.ui.computeButton.toolTip = (_("Compute the quality metrics before and after registration.") if ready else
                                         _("Select the fixed and moving volumes and a registered volume or a "
                                           "transform."))
        self.ui.saveReportButton.enabled = bool(p and p.resultReport) and not self._running
        self.ui.otsuButton.enabled = bool(p and p.useThreshold and (p.fixedVolume or p.movingVolume))
        self.ui.histogramDefaultsButton.enabled = self.ui.otsuButton.enabled
        self.ui.findElastixButton.enabled = bool(p and p.movingVolume)

    # -- inputs ---------------------------------------------------------------------------------------------
    def fillFromSlicerElastix(self, overwrite=True, quiet=False):
        """Fill the registered volume and transform (and the fixed volume if empty) from SlicerElastix's
        result for the moving volume. Returns the source description or None."""
        p = self._parameterNode
        found = self.logic.slicerElastixInputs(p.movingVolume) if p and p.movingVolume else None
        if not found:
            if not quiet:
                p.resultStatus = _("No SlicerElastix result found for the moving volume.")
            return None
        wasModified = p.StartModify()
        try:
            if found["fixed"] is not None and not p.fixedVolume:
                p.fixedVolume = found["fixed"]
            for field, key in (("registeredVolume", "registered"), ("transform", "transform")):
                if found[key] is not None and (overwrite or not getattr(p, field)):
                    setattr(p, field, found[key])
            p.resultStatus = _("Inputs filled from the SlicerElastix result ({source}).").format(source=found["source"])
        finally:
            p.EndModify(wasModified)
        return found["source"]

    def _thresholdWidget(self, side):
        return self.ui.fixedThresholdRangeWidget if side == "fixed" else self.ui.movingThresholdRangeWidget

    def _updateThresholdSlider(self, side, resetValues=False):
        """Slider bounds from the volume's histogram; default range when the volume changed (or on request)."""
        p = self._parameterNode
        node = p.fixedVolume if side == "fixed" else p.movingVolume
        nodeID = node.GetID() if node else None
        if nodeID == self._volumeIDs[side] and not resetValues:
            return
        previous, self._volumeIDs[side] = self._volumeIDs[side], nodeID
        if node is None or node.GetImageData() is None:
            return
        try:
            defaults = self.logic.thresholdDefaults(node)
        except Exception as error:  # e.g. no finite voxel: say so, the panel stays usable
            logging.warning(f"RegistrationQuality: no threshold defaults for {node.GetName()}: {error}")
            p.resultStatus = _("No threshold defaults for {name}: {error}").format(name=node.GetName(), error=error)
            return
        lo, hi = defaults["bounds"]
        widget = self._thresholdWidget(side)
        # ctkRangeWidget::setDecimals / setRange re-clamp and round the shown values and emit valuesChanged, which
        # the GUI connector writes into the parameter node: keep the node's exact values (set below when needed)
        wasBlocked = widget.blockSignals(True)
        try:
            widget.decimals = defaults["decimals"]
            widget.singleStep = defaults["step"]
            widget.setRange(lo, hi if hi > lo else lo + defaults["step"])
        finally:
            widget.blockSignals(wasBlocked)
        field = side + "Threshold"
        current = getattr(p, field)
        degenerate = current.minimum >= current.maximum or current.minimum < lo or current.maximum > hi
        if resetValues or previous is not None or degenerate:
            setattr(p, field, FloatRange(*defaults["suggested"]))

    def onHistogramDefaultsButton(self):
        with slicer.util.tryWithErrorDisplay(_("Failed to compute the threshold defaults."), waitCursor=True):
            for side in ("fixed", "moving"):
                self._updateThresholdSlider(side, resetValues=True)

    def onOtsuButton(self):
        """Both ranges from Otsu's threshold of each image (level to maximum)."""
        with slicer.util.tryWithErrorDisplay(_("Failed to compute Otsu thresholds."), waitCursor=True):
            p = self._parameterNode
            for side in ("fixed", "moving"):
                node = p.fixedVolume if side == "fixed" else p.movingVolume
                if node is None:
                    continue
                otsu = self.logic.thresholdDefaults(node)["otsu"]
                if otsu is None:
                    raise ValueError(_("{name}: Otsu's threshold is undefined (the image is constant).").format(
                        name=node.GetName()))
                setattr(p, side + "Threshold", FloatRange(*otsu))

    def onFindElastixResult(self):
        with slicer.util.tryWithErrorDisplay(_("Failed to look up the SlicerElastix result."), waitCursor=True):
            self.fillFromSlicerElastix(overwrite=True, quiet=False)

    def onLoadSampleCase(self):
        with slicer.util.tryWithErrorDisplay(_("Failed to load the sample case."), waitCursor=True):
            nodes = self.logic.loadSampleCase()
            p = self._parameterNode
            wasModified = p.StartModify()
            try:
                p.fixedVolume, p.movingVolume = nodes["fixed"], nodes["moving"]
                p.registeredVolume, p.transform = None, nodes["good"]
                p.fixedSegmentation, p.movingSegmentation = nodes["fixed_segmentation"], nodes["moving_segmentation"]
                p.fixedLandmarks, p.movingLandmarks = nodes["fixed_landmarks"], nodes["moving_landmarks"]
                p.resultStatus = _("Sample case loaded: {count} nodes. Transform: the good registration; the "
                                   "imperfect one is in the transform list.").format(count=len(nodes))
            finally:
                p.EndModify(wasModified)
            slicer.util.setSliceViewerLayers(background=nodes["fixed"], foreground=None, fit=True)

    # -- compute --------------------------------------------------------------------------------------------
    def onComputeButton(self):
        with slicer.util.tryWithErrorDisplay(_("Failed to compute the registration quality."), waitCursor=True):
            self.computeFromParameterNode()

    def onSaveReportButton(self):
        """Write the last computation's report (HTML, JSON, CSV) to a folder chosen by the user and open it."""
        folder = qt.QFileDialog.getExistingDirectory(
            slicer.util.mainWindow(), _("Folder for the report (a new subfolder is made unless it is empty)"))
        if not folder:
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to save the report."), waitCursor=True):
            html = self.logic.saveReport(self._parameterNode, folder) / "report.html"
            slicer.util.showStatusMessage(_("Report saved: {path}").format(path=str(html)), 5000)
            qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(html)))

    def onCancelButton(self):
        self._cancelRequested = True
        self.ui.cancelButton.enabled = False

    def _onProgress(self, text, fraction):
        self.ui.progressBar.value = int(round(100 * fraction))
        self.ui.progressBar.setFormat(_("{stage} (%p%)").format(stage=text))
        slicer.app.processEvents()  # paint the bar and let the Cancel button be clicked

    def _setRunning(self, running):
        self._running = running
        self._cancelRequested = False
        self.ui.cancelButton.enabled = running
        self.ui.progressBar.setVisible(running)
        self.ui.progressBar.value = 0
        for section in (self.ui.inputsCollapsibleButton, self.ui.thresholdCollapsibleButton,
                        self.ui.optionsCollapsibleButton):
            section.enabled = not running
        self._updateButtons()

    def computeFromParameterNode(self):
        """Evaluate the registration described by the parameter node; show and return the EvaluationResult.

        Returns None when the user cancelled. Errors (one-line ``BadInputError`` messages naming the input)
        propagate to the caller: the Compute button shows them in an error dialog.
        """
        p = self._parameterNode
        self._setRunning(True)
        try:
            self.logic.ensureNumba(announce=self._onProgress)  # first use: installs the compiled kernels' package
            result = self.logic.compute(p, progress=self._onProgress, cancel=lambda: self._cancelRequested)
        except InterruptedError:
            p.resultStatus = _("Cancelled: the previous results are kept.")
            return None
        finally:
            self._setRunning(False)
        self.ui.resultsTableView.setMRMLTableNode(p.resultSummaryTable)
        self._applyDisplay(force=True)
        return result

    # -- display --------------------------------------------------------------------------------------------
    def _applyDisplay(self, force=False):
        """Show the result nodes the Display toggles ask for (only when a toggle or a result node changed)."""
        p = self._parameterNode
        if p is None:
            return
        previous = self._displayState
        # checkerboard and difference are alternative backgrounds: ticking one unticks the other
        if previous is not None and p.showCheckerboard and p.showDifference:
            if not previous[3]:  # the checkerboard was just ticked
                p.showDifference = False
            else:
                p.showCheckerboard = False
        self.ui.contoursAfterButton.text = (_("Showing: after registration") if p.contoursAfter else
                                            _("Showing: before registration"))
        nodes = (p.fixedVolume, p.resultCheckerboard, p.resultDifference, p.resultJacobian, p.resultFolding,
                 p.resultTreVectors, p.resultContoursFixed, p.resultContoursBefore, p.resultContoursAfter)
        state = (tuple(n.GetID() if n else None for n in nodes), p.showContours, p.contoursAfter,
                 p.showCheckerboard, p.showDifference, p.showJacobian, p.showTreVectors, p.showHeatmaps)
        self._displayState = state
        # entering the module only records the state: the views change when the user (or a computation) asks
        if force or (previous is not None and state != previous):
            self.logic.showResults(p)


#
# RegistrationQualityLogic
#
def _thresholdCleanup(parameterNode):
    """The parameter node's threshold clean-up (RegistrationQualityLib.segmentation.Cleanup)."""
    from RegistrationQualityLib.segmentation import Cleanup

    p = parameterNode
    return Cleanup(fill_holes=bool(p.fillHoles), largest_component=bool(p.largestComponent),
                   min_island_cc=float(p.minIslandCc), closing_mm=float(p.closingMm))


class RegistrationQualityLogic(ScriptedLoadableModuleLogic):
    """Facade over ``RegistrationQualityLib`` for the panel, the Python console and batch mode.

    >>> logic = slicer.util.getModuleLogic("RegistrationQuality")  # or RegistrationQualityLogic()
    >>> nodes = logic.loadSampleCase()
    >>> result = logic.evaluate(fixed=nodes["fixed"], moving=nodes["moving"], transform=nodes["good"])
    >>> result.report["landmarks"], result.verdict
    """

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self._context = None
        self._thresholdCache = {}
        self._parameterNodeWrapper = None

    def getParameterNode(self):
        """The typed wrapper of the scene's parameter node; the same wrapper as long as the node is the same."""
        node = super().getParameterNode()
        if self._parameterNodeWrapper is None or self._parameterNodeWrapper.parameterNode is not node:
            self._parameterNodeWrapper = RegistrationQualityParameterNode(node)
        return self._parameterNodeWrapper

    def context(self):
        """The library's Context on the application's scene and module logics (rebuilt if the scene changed)."""
        from RegistrationQualityLib.context import Context

        if self._context is None or self._context.scene is not slicer.mrmlScene:
            self.ensureNumba()
            self._context = Context.from_application(slicer)
        return self._context

    # numba compiles the library's per-voxel kernels; the same pin as the package's pyproject.toml
    NUMBA_REQUIREMENT = "numba==0.68.1"

    def ensureNumba(self, announce=None):
        """Install numba into Slicer's Python on first use (``slicer.util.pip_install``); True when it installed.

        ``announce(text, fraction)``: shows the message (the panel's progress bar) before the download starts.
        """
        import importlib.util

        if importlib.util.find_spec("numba") is not None:
            return False
        message = _("Installing numba (compiled kernels of the evaluation; first use only)...")
        logging.info(message)
        if announce is not None:
            announce(message, 0.0)
        slicer.util.pip_install(self.NUMBA_REQUIREMENT)
        return True

    def loadSampleCase(self, registrations=None):
        """Load the sample case; returns nodes by role.

        Roles: ``fixed``, ``moving`` (volumes), ``fixed_segmentation``, ``moving_segmentation`` (one named segment
        per label), ``fixed_landmarks``, ``moving_landmarks`` (markups), and one transform node per registration
        (``good``, ``imperfect``: the elastix resampling transform fixed -> moving).
        """
        from RegistrationQualityLib import io
        from RegistrationQualityLib.transforms import load_transform

        folder = sampleCaseFolder()
        if folder is None:
            raise ValueError(_("The sample case folder (Resources/SampleCase) is missing from this installation."))
        spec = sampleCaseSpec(folder)
        ctx = self.context()
        nodes = {
            "fixed": io.load_volume(ctx, folder / spec["fixed"], name="RQ fixed DWI"),
            "moving": io.load_volume(ctx, folder / spec["moving"], name="RQ moving CBF"),
        }
        for side in ("fixed", "moving"):
            # the named .seg.nrrd when the case has one, else the labelmap (segments named from case.json below)
            key = f"{side}_segmentation" if spec.get(f"{side}_segmentation") else f"{side}_labels"
            seg = io.load_segmentation(ctx, folder / spec[key], name=f"RQ {side} segmentation")
            segmentation = seg.GetSegmentation()
            for i in range(segmentation.GetNumberOfSegments()):
                segment = segmentation.GetNthSegment(i)
                segment.SetName(spec["labels"].get(str(segment.GetLabelValue()), segment.GetName()))
            nodes[f"{side}_segmentation"] = seg
            landmarks = io.read_landmarks(folder / spec[f"{side}_landmarks"])
            nodes[f"{side}_landmarks"] = io.landmarks_to_node(ctx, landmarks, name=f"RQ {side} landmarks")
        for name, registration in spec["registrations"].items():
            if registrations is None or name in registrations:
                nodes[name] = load_transform(ctx, folder / registration["transform"], name=f"RQ {name} registration")
        return nodes

    def evaluate(self, outputDir=None, progress=None, cancel=None, **inputs):
        """Evaluate one registration (nodes or file paths) with the library; returns its EvaluationResult.

        Keyword arguments are ``EvaluationInputs`` fields (``fixed``, ``moving``, ``transform``, ``elastix_dir``,
        ``registered``, ``fixed_segmentation``, ...) and ``EvaluationOptions`` fields (``percentile``,
        ``min_dice``, ``max_tre``, ...). ``outputDir``: write the report folder (HTML, JSON, CSV, snapshots).
        """
        import dataclasses

        from RegistrationQualityLib import evaluate as rq_evaluate

        input_fields = {f.name for f in dataclasses.fields(rq_evaluate.EvaluationInputs)}
        option_fields = {f.name for f in dataclasses.fields(rq_evaluate.EvaluationOptions)}
        unknown = set(inputs) - input_fields - option_fields
        if unknown:
            raise TypeError(f"unknown evaluate argument(s): {', '.join(sorted(unknown))}")
        evaluation_inputs = rq_evaluate.EvaluationInputs(**{k: v for k, v in inputs.items() if k in input_fields})
        options = rq_evaluate.EvaluationOptions(**{k: v for k, v in inputs.items() if k in option_fields})
        return rq_evaluate.evaluate(self.context(), evaluation_inputs, options, output_dir=outputDir,
                                    progress=progress, cancel=cancel)

    # -- the panel's requests --------------------------------------------------------------------------------
    def thresholdDefaults(self, volumeNode):
        """Slider bounds, default range and Otsu range of a volume (cached until its image data changes)."""
        from RegistrationQualityLib import panel

        key = (volumeNode.GetID(), volumeNode.GetImageData().GetMTime())
        if key not in self._thresholdCache:
            self._thresholdCache = {key: panel.threshold_defaults(volumeNode),
                                    **{k: v for k, v in self._thresholdCache.items() if k[0] != key[0]}}
        return self._thresholdCache[key]

    def slicerElastixInputs(self, movingVolume):
        """{"fixed", "registered", "transform", "source"} from SlicerElastix's result for the volume, or None."""
        from RegistrationQualityLib import panel

        return panel.slicer_elastix_inputs(self.context(), movingVolume)

    @staticmethod
    def evaluationRequest(parameterNode):
        """(EvaluationInputs, EvaluationOptions) of a parameter node (scene outputs on, no snapshots)."""
        from RegistrationQualityLib import panel

        p = parameterNode
        return panel.evaluation_request(
            p.fixedVolume, p.movingVolume, registered=p.registeredVolume, transform=p.transform,
            fixed_segmentation=p.fixedSegmentation, moving_segmentation=p.movingSegmentation,
            fixed_landmarks=p.fixedLandmarks, moving_landmarks=p.movingLandmarks,
            fixed_threshold=p.fixedThreshold if p.useThreshold else None,
            moving_threshold=p.movingThreshold if p.useThreshold else None,
            cleanup=_thresholdCleanup(p),
            percentile=p.percentile,
            min_dice=p.minDice if p.checkDice else None,
            max_hausdorff=p.maxHausdorff if p.checkHausdorff else None,
            max_tre=p.maxTre if p.checkTre else None,
            max_folding=p.maxFolding if p.checkFolding else None,
            max_tre_point=p.maxTrePoint if p.checkTrePoint else None,
            max_hausdorff_max=p.maxHausdorffMax if p.checkHausdorffMax else None,
            max_mean_distance=p.maxMeanDistance if p.checkMeanDistance else None,
            min_nsd=p.minNsd if p.checkNsd else None,
            max_ndv=p.maxNdv if p.checkNdv else None,
            profile=p.profile.strip() or None,
            case_id=p.movingVolume.GetName() if p.movingVolume else None,
        )

    def compute(self, parameterNode, progress=None, cancel=None):
        """Evaluate the parameter node's registration; store result nodes, status and report in it.

        ``progress(text, fraction)`` and ``cancel() -> bool`` are passed to the library's ``evaluate``
        (cancel raises InterruptedError). The previous result nodes are replaced only when the new ones exist.
        Returns the EvaluationResult.
        """
        from RegistrationQualityLib import panel
        from RegistrationQualityLib.evaluate import evaluate, summary_lines

        p = parameterNode
        inputs, options = self.evaluationRequest(p)
        ctx = self.context()
        previous_heatmaps = panel.heatmap_models(ctx)  # replaced by this computation's (not parameters)
        result = evaluate(ctx, inputs, options, progress=progress, cancel=cancel)
        created = list(result.nodes.values())
        try:
            display = panel.display_nodes(
                ctx, p.fixedVolume, p.movingVolume, registered=p.registeredVolume, transform=p.transform,
                fixed_threshold=p.fixedThreshold if p.useThreshold else None,
                moving_threshold=p.movingThreshold if p.useThreshold else None,
                fixed_segmentation=p.fixedSegmentation, moving_segmentation=p.movingSegmentation,
                state="after" if p.contoursAfter else "before", cleanup=_thresholdCleanup(p))
            created += [n for n in display.values() if n is not None]
            headers = {"measure": _("Measure"), "subject": _("Subject"), "before": _("Before"), "after": _("After"),
                       "unit": _("Unit"), "check": _("Check")}
            summary = panel.summary_table_node(ctx, result.report, name=_("Registration quality summary"),
                                               headers=headers)
            created.append(summary)
        except BaseException:
            ctx.remove_nodes(created)  # nothing half made stays in the scene
            raise
        self.removeResultNodes(p)
        ctx.remove_nodes(previous_heatmaps)
        verdict = {"pass": _("PASS"), "review": _("REVIEW"), "fail": _("FAIL"),
                   "no checks": _("no checks requested")}[result.verdict]
        failed = summary_lines(result)[1:]
        wasModified = p.StartModify()
        try:
            p.resultSummaryTable = summary
            p.resultMetricsTable = result.nodes.get("metrics_table")
            p.resultTreTable = result.nodes.get("tre_table")
            p.resultTreVectors = result.nodes.get("tre_vectors")
            p.resultJacobian = result.nodes.get("jacobian")
            p.resultFolding = result.nodes.get("folding")
            p.resultCheckerboard = display["checkerboard"]
            p.resultDifference = display["difference"]
            p.resultContoursFixed = display["contours_fixed"]
            p.resultContoursBefore = display["contours_before"]
            p.resultContoursAfter = display["contours_after"]
            p.resultReport = panel.report_json(result.report)
            p.resultStatus = "\n".join([_("Verdict: {verdict}").format(verdict=verdict), *failed,
                                        *result.report.get("warnings", [])])
        finally:
            p.EndModify(wasModified)
        return result

    def removeResultNodes(self, parameterNode):
        """Remove the result nodes of the previous computation from the scene (and from the parameter node)."""
        p = parameterNode
        fields = [name for name in RegistrationQualityParameterNode.allParameters
                  if name.startswith("result") and name not in ("resultStatus", "resultReport")]
        nodes = [getattr(p, name) for name in fields]
        for name in fields:
            setattr(p, name, None)
        self.context().remove_nodes([n for n in nodes if n is not None])

    def showResults(self, parameterNode):
        """Apply the Display toggles of the parameter node to the slice views and the result nodes."""
        from RegistrationQualityLib import panel

        p = parameterNode
        return panel.show_results(
            self.context(), fixed=p.fixedVolume, checkerboard=p.resultCheckerboard, difference=p.resultDifference,
            jacobian=p.resultJacobian, tre_vectors=p.resultTreVectors, folding=p.resultFolding,
            contours=(p.resultContoursFixed, p.resultContoursBefore, p.resultContoursAfter),
            show_contours=p.showContours, contours_after=p.contoursAfter, show_checkerboard=p.showCheckerboard,
            show_difference=p.showDifference, show_jacobian=p.showJacobian, show_tre_vectors=p.showTreVectors,
            show_heatmaps=p.showHeatmaps)

    def saveReport(self, parameterNode, folder):
        """Write the last computation's report folder (report.html, report.json, metrics.csv); returns its path.

        ``folder``: used as is when empty or a previous report folder, else a subfolder named after the moving
        volume is made in it (:func:`RegistrationQualityLib.panel.report_folder`).
        """
        from RegistrationQualityLib import panel
        from RegistrationQualityLib.report import write_report

        if not parameterNode.resultReport:
            raise ValueError(_("Nothing to save yet: compute first."))
        report = panel.report_from_json(parameterNode.resultReport)
        return write_report(report, panel.report_folder(folder, report.get("case_id")))


#
# RegistrationQualityTest
#
class RegistrationQualityTest(ScriptedLoadableModuleTest):
    """Self-test in the Slicer application (``slicer_add_python_unittest``): loads the sample case, evaluates its
    registrations through the logic and through the panel's Compute path, and checks the numbers against the
    values the sample case generator measured with transformix (``case.json``: ``measured_tre_mm``)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_LoadSampleCase()
        self.setUp()
        self.test_EvaluateSampleCase()
        self.setUp()
        self.test_PanelComputesSampleCase()

    def test_LoadSampleCase(self):
        self.delayDisplay("Loading the sample case")
        logic = RegistrationQualityLogic()
        nodes = logic.loadSampleCase()
        spec = sampleCaseSpec(sampleCaseFolder())
        self.assertEqual(nodes["fixed"].GetImageData().GetDimensions(), tuple(spec["geometry"]["fixed"]["size"]))
        self.assertEqual(nodes["moving"].GetImageData().GetDimensions(), tuple(spec["geometry"]["moving"]["size"]))
        names = {nodes["fixed_segmentation"].GetSegmentation().GetNthSegment(i).GetName()
                 for i in range(nodes["fixed_segmentation"].GetSegmentation().GetNumberOfSegments())}
        self.assertEqual(names, set(spec["labels"].values()))
        self.assertEqual(nodes["fixed_landmarks"].GetNumberOfControlPoints(),
                         nodes["moving_landmarks"].GetNumberOfControlPoints())
        self.delayDisplay("Test passed")

    def test_EvaluateSampleCase(self):
        self.delayDisplay("Evaluating the sample case's registrations")
        logic = RegistrationQualityLogic()
        nodes = logic.loadSampleCase()
        spec = sampleCaseSpec(sampleCaseFolder())
        measured = spec["measured_tre_mm"]
        tre = {}
        for name in ("good", "imperfect"):
            result = logic.evaluate(fixed=nodes["fixed"], moving=nodes["moving"], transform=nodes[name],
                                    fixed_landmarks=nodes["fixed_landmarks"], moving_landmarks=nodes["moving_landmarks"],
                                    snapshots=False)
            tre[name] = result.report["landmarks"]["after"]["mean_mm"]
            # the library's TRE equals transformix's (recorded by the sample case generator)
            self.assertAlmostEqual(tre[name], measured[name]["mean"], delta=0.05)
        self.assertLess(tre["good"], tre["imperfect"])
        self.assertLess(tre["imperfect"], measured["identity"]["mean"])
        self.delayDisplay("Test passed")

    def test_PanelComputesSampleCase(self):
        """The Compute button's code path on the sample case: inputs from the parameter node, result nodes and
        the results table in the scene, display toggles, pass/fail limits, save report."""
        import tempfile

        self.delayDisplay("Computing the sample case through the panel")
        spec = sampleCaseSpec(sampleCaseFolder())
        measured = spec["measured_tre_mm"]
        slicer.util.selectModule("RegistrationQuality")
        widget = slicer.util.getModuleWidget("RegistrationQuality")
        nodes = widget.logic.loadSampleCase()
        p = widget.logic.getParameterNode()
        p.fixedVolume, p.movingVolume, p.transform = nodes["fixed"], nodes["moving"], nodes["good"]
        p.fixedSegmentation, p.movingSegmentation = nodes["fixed_segmentation"], nodes["moving_segmentation"]
        p.fixedLandmarks, p.movingLandmarks = nodes["fixed_landmarks"], nodes["moving_landmarks"]
        # threshold sliders were set from each image's histogram: a non-empty range inside the image's values
        for side, volume in (("fixed", nodes["fixed"]), ("moving", nodes["moving"])):
            lo, hi = volume.GetImageData().GetScalarRange()
            value = getattr(p, side + "Threshold")
            self.assertTrue(lo <= value.minimum < value.maximum <= hi, f"{side} threshold {value}")
        # a TRE limit halfway between the good and the imperfect registration's measured mean TRE
        limit = 0.5 * (measured["good"]["mean"] + measured["imperfect"]["mean"])
        p.checkTre, p.maxTre = True, limit

        result = widget.computeFromParameterNode()
        report = result.report
        self.assertAlmostEqual(report["landmarks"]["after"]["mean_mm"], measured["good"]["mean"], delta=0.05)
        self.assertAlmostEqual(report["landmarks"]["before"]["mean_mm"], measured["identity"]["mean"], delta=0.05)
        self.assertEqual(result.verdict, "pass")
        names = {entry["name"] for entry in report["segments"]}
        self.assertEqual(names, set(spec["labels"].values()) | {"threshold"})
        for entry in report["segments"]:  # a good registration improves the overlap of every structure
            self.assertGreater(entry["after"]["dice"], entry["before"]["dice"], entry["name"])

        # result nodes in the scene, the results table in the view
        self.assertEqual(widget.ui.resultsTableView.mrmlTableNode().GetID(), p.resultSummaryTable.GetID())
        from RegistrationQualityLib.panel import summary_rows

        self.assertEqual(p.resultSummaryTable.GetNumberOfRows(), len(summary_rows(report)))
        self.assertEqual(p.resultTreVectors.GetPolyData().GetNumberOfLines(), report["landmarks"]["after"]["count"])
        self.assertIsNotNone(p.resultJacobian)
        self.assertIsNotNone(p.resultContoursAfter)

        # display toggles (slice views: every slice composite node of the layout, none without a main window)
        composites = list(slicer.util.getNodesByClass("vtkMRMLSliceCompositeNode"))
        p.showCheckerboard = True
        for composite in composites:
            self.assertEqual(composite.GetBackgroundVolumeID(), p.resultCheckerboard.GetID())
        p.showDifference = True  # alternative backgrounds: the checkerboard is unticked
        self.assertFalse(p.showCheckerboard)
        p.showJacobian = True
        for composite in composites:
            self.assertEqual(composite.GetBackgroundVolumeID(), p.resultDifference.GetID())
            self.assertEqual(composite.GetForegroundVolumeID(), p.resultJacobian.GetID())
        p.showTreVectors = False
        self.assertFalse(p.resultTreVectors.GetDisplayNode().GetVisibility())
        p.contoursAfter = False
        self.assertTrue(p.resultContoursBefore.GetDisplayNode().GetVisibility())
        self.assertFalse(p.resultContoursAfter.GetDisplayNode().GetVisibility())

        # the imperfect registration fails the same limit; the previous result nodes are replaced
        previous = p.resultSummaryTable.GetID()
        p.transform = nodes["imperfect"]
        result = widget.computeFromParameterNode()
        self.assertEqual(result.verdict, "fail")
        self.assertAlmostEqual(result.report["landmarks"]["after"]["mean_mm"], measured["imperfect"]["mean"],
                               delta=0.05)
        self.assertIsNone(slicer.mrmlScene.GetNodeByID(previous))

        # save report: the folder holds the report of the last computation
        with tempfile.TemporaryDirectory() as tmp:
            folder = widget.logic.saveReport(p, tmp)
            self.assertTrue((Path(folder) / "report.html").is_file())
            import json

            saved = json.loads((Path(folder) / "report.json").read_text(encoding="utf-8"))
            self.assertEqual(saved["verdict"], "fail")
        self.delayDisplay("Test passed")
