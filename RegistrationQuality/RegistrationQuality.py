"""Registration Quality: the 3D Slicer module (a thin shell around ``RegistrationQualityLib``).

Everything that computes lives in ``RegistrationQualityLib`` (Qt-free, tested headless on slicer-core). This file
only adapts it to the Slicer application: module metadata and sample data (``RegistrationQuality``), the panel
(``RegistrationQualityWidget``, loads ``Resources/UI/RegistrationQuality.ui``), the logic facade used by the panel,
the Python console and batch mode (``RegistrationQualityLogic``, whose library context is built from the
application with ``Context.from_application(slicer)``), and the self-test (``RegistrationQualityTest``).
"""

import json
import logging
import os
from pathlib import Path

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)

SAMPLE_CATEGORY = "Registration Quality"
SAMPLE_NAME = "RegistrationQualityHeadPhantom"


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
        self.parent.helpText += self.getDefaultModuleDocumentationLink()
        self.parent.acknowledgementText = _(
            "Built on 3D Slicer's MRML and module logics (slicer-core), SimpleITK and VTK. elastix result files "
            "are read directly; no registration is run by this module."
        )
        slicer.app.connect("startupCompleted()", registerSampleData)


def sampleCaseFolder():
    """The sample case folder (with ``case.json``) or None.

    Installed extension: ``<module dir>/Resources/SampleCase``; source tree (module added as an additional module
    path): ``<repository>/Resources/SampleCase``.
    """
    here = Path(__file__).resolve().parent
    for candidate in (here / "Resources" / "SampleCase", here.parent / "Resources" / "SampleCase"):
        if (candidate / "case.json").is_file():
            return candidate
    return None


def sampleCaseSpec(folder):
    return json.loads((Path(folder) / "case.json").read_text(encoding="utf-8"))


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
        ("fixed_labels", "RQ fixed segmentation", "SegmentationFile"),
        ("moving_labels", "RQ moving segmentation", "SegmentationFile"),
        ("fixed_landmarks", "RQ fixed landmarks", "MarkupsFile"),
        ("moving_landmarks", "RQ moving landmarks", "MarkupsFile"),
    ]
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category=SAMPLE_CATEGORY,
        sampleName=SAMPLE_NAME,
        # local files: SampleData copies them into its cache with urllib (file:// URIs) and loads them
        uris=[(folder / spec[key]).as_uri() for key, _name, _type in entries],
        fileNames=["RQ-" + Path(spec[key]).name for key, _name, _type in entries],
        nodeNames=[name for _key, name, _type in entries],
        loadFileType=[file_type for _key, _name, file_type in entries],
        thumbnailFileName=os.path.join(os.path.dirname(__file__), "Resources", "Icons", "RegistrationQuality.png"),
        # the button loads the whole case through the library, including the two elastix registrations
        customDownloader=lambda source: RegistrationQualityLogic().loadSampleCase(),
    )


#
# RegistrationQualityWidget
#
class RegistrationQualityWidget(ScriptedLoadableModuleWidget):
    """The panel: gathers inputs, calls the logic, shows results. Placeholder .ui until the panel issue lands."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        self.logic = None
        self.ui = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/RegistrationQuality.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = RegistrationQualityLogic()
        self.ui.loadSampleCaseButton.connect("clicked(bool)", self.onLoadSampleCase)
        self.ui.loadSampleCaseButton.enabled = sampleCaseFolder() is not None
        self.layout.addStretch(1)

    def onLoadSampleCase(self):
        with slicer.util.tryWithErrorDisplay(_("Failed to load the sample case."), waitCursor=True):
            nodes = self.logic.loadSampleCase()
            slicer.util.setSliceViewerLayers(background=nodes["fixed"], foreground=nodes["moving"],
                                             foregroundOpacity=0.5, fit=True)
            self.ui.statusLabel.text = _("Sample case loaded: {count} nodes.").format(count=len(nodes))


#
# RegistrationQualityLogic
#
class RegistrationQualityLogic(ScriptedLoadableModuleLogic):
    """Facade over ``RegistrationQualityLib`` for the panel, the Python console and batch mode.

    >>> logic = slicer.util.getModuleLogic("RegistrationQuality")  # or RegistrationQualityLogic()
    >>> nodes = logic.loadSampleCase()
    >>> result = logic.evaluate(fixed=nodes["fixed"], moving=nodes["moving"], transform=nodes["good"])
    """

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self._context = None

    def context(self):
        """The library's Context on the application's scene and module logics (rebuilt if the scene changed)."""
        from RegistrationQualityLib.context import Context

        if self._context is None or self._context.scene is not slicer.mrmlScene:
            self._context = Context.from_application(slicer)
        return self._context

    def loadSampleCase(self, registrations=None):
        """Load the sample case; returns nodes by role.

        Roles: ``fixed``, ``moving`` (volumes), ``fixed_segmentation``, ``moving_segmentation`` (one named segment
        per label), ``fixed_landmarks``, ``moving_landmarks`` (markups), and one transform node per registration
        (``good``, ``imperfect``: the elastix resampling transform fixed -> moving).
        """
        from RegistrationQualityLib import io

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
            seg = io.load_segmentation(ctx, folder / spec[f"{side}_labels"], name=f"RQ {side} segmentation")
            segmentation = seg.GetSegmentation()
            for i in range(segmentation.GetNumberOfSegments()):
                segment = segmentation.GetNthSegment(i)
                segment.SetName(spec["labels"].get(str(segment.GetLabelValue()), segment.GetName()))
            nodes[f"{side}_segmentation"] = seg
            landmarks = io.read_landmarks(folder / spec[f"{side}_landmarks"])
            nodes[f"{side}_landmarks"] = io.landmarks_to_node(ctx, landmarks, name=f"RQ {side} landmarks")
        for name, registration in spec["registrations"].items():
            if registrations is None or name in registrations:
                nodes[name] = io.load_transform(ctx, folder / registration["transform"], name=f"RQ {name} registration")
        return nodes

    def evaluate(self, outputDir=None, progress=None, **inputs):
        """Evaluate one registration (nodes or file paths) with the library; returns its EvaluationResult.

        Keyword arguments are ``EvaluationInputs`` fields (``fixed``, ``moving``, ``transform``, ``elastix_dir``,
        ``registered``, ``fixed_segmentation``, ...) and ``EvaluationOptions`` fields (``percentile``,
        ``min_dice``, ``max_tre``, ...).
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
        return rq_evaluate.evaluate(self.context(), evaluation_inputs, options, output_dir=outputDir, progress=progress)


#
# RegistrationQualityTest
#
class RegistrationQualityTest(ScriptedLoadableModuleTest):
    """Self-test in the Slicer application (``slicer_add_python_unittest``): loads the sample case, evaluates both
    registrations and checks that the good one has a smaller landmark TRE than the imperfect one and than the
    unregistered pair, with the values recorded in the sample case's ``case.json``."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_LoadSampleCase()
        self.setUp()
        self.test_EvaluateSampleCase()

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
