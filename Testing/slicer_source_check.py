"""Build the module's parameter node class with Slicer's own parameterNodeWrapper code, headless.

    python Testing/slicer_source_check.py SLICER_SOURCE_DIR

SLICER_SOURCE_DIR: a Slicer source tree (a checkout of Slicer/Slicer at some tag, or the folder
``Testing/test_slicer_source.py`` exports from a git clone). Its ``Base/Python/slicer/parameterNodeWrapper``
package (pure Python) is loaded as ``slicer.parameterNodeWrapper`` on top of slicer-core's ``slicer`` package,
the module file's ``@parameterNodeWrapper`` class is built with it on a real ``vtkMRMLScriptedModuleNode``, and
the panel's parameter node methods (compiled from the module file) are run against it. Prints one JSON object.

What cannot exist headless is stood in for, nothing else:
- ``qt`` and ``ctk`` modules, and ``slicer.q*`` names (slicer-core has no Qt): every name the package reads from
  them (at import only in annotations and base classes: QWidget, QPushButton, QLabel, QLineEdit, QTextEdit,
  QColor, ctkPathLineEdit, ctkDirectoryButton, ctkCheckablePushButton, ctkColorPickerButton, qMRMLNodeComboBox)
  is an empty class;
- except ``qt.QDoubleSpinBox``: a spin box with Qt's documented behaviour (``value`` rounded to ``decimals``,
  ``valueChanged`` emitted only when the value changes), so that Slicer's real float connector
  (``QDoubleSpinBoxCtkSliderWidgetToFloatConnector``) binds it;
- the panel's results table view (an object with ``setMRMLTableNode``).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
import types
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULE_FILE = ROOT / "RegistrationQuality" / "RegistrationQuality.py"


class Signal:
    def __init__(self):
        self.slots = []

    def connect(self, slot):
        self.slots.append(slot)

    def disconnect(self, slot):
        self.slots.remove(slot)

    def emit(self, *args):
        """As PythonQt: a slot gets as many of the signal's arguments as it takes."""
        import inspect

        for slot in list(self.slots):
            parameters = inspect.signature(slot).parameters.values()
            if any(p.kind == p.VAR_POSITIONAL for p in parameters):
                slot(*args)
            else:
                slot(*args[:len([p for p in parameters if p.default is p.empty])])


class StandInWidget:
    def __init__(self, *args, **kwargs):
        self._properties = {}

    def setProperty(self, name, value):
        self._properties[name] = value

    def property(self, name):
        return self._properties.get(name)


class QDoubleSpinBox(StandInWidget):
    """Qt's QDoubleSpinBox as far as the connector uses it: setting ``value`` rounds it to ``decimals`` and clamps
    it to [minimum, maximum]; ``valueChanged`` is emitted only when the value changes."""

    def __init__(self, decimals=2):
        super().__init__()
        self.decimals, self.minimum, self.maximum, self.singleStep = decimals, 0.0, 99.99, 1.0
        self._value = 0.0
        self.valueChanged = Signal()

    @property
    def value(self):
        return self._value

    @value.setter
    def value(self, v):
        v = min(max(round(float(v), self.decimals), self.minimum), self.maximum)
        if v != self._value:
            self._value = v
            self.valueChanged.emit(v)


class TableView(StandInWidget):
    def __init__(self):
        super().__init__()
        self.table = "unset"

    def setMRMLTableNode(self, node):
        self.table = node


def install_stand_ins():
    made = {}

    def stand_in(module_name):
        def __getattr__(name):
            if name.startswith("__"):
                raise AttributeError(name)
            return made.setdefault((module_name, name), type(name, (StandInWidget,), {}))
        return __getattr__

    for name in ("qt", "ctk"):
        module = types.ModuleType(name)
        module.__getattr__ = stand_in(name)
        sys.modules[name] = module
    sys.modules["qt"].QDoubleSpinBox = QDoubleSpinBox
    import slicer

    qt_names = stand_in("slicer")

    def slicer_getattr(name):
        if name.startswith("q"):
            return qt_names(name)
        raise AttributeError(name)

    slicer.__getattr__ = slicer_getattr
    return made


def load_wrapper_package(source: Path):
    package_dir = source / "Base" / "Python" / "slicer" / "parameterNodeWrapper"
    spec = importlib.util.spec_from_file_location("slicer.parameterNodeWrapper", package_dir / "__init__.py",
                                                  submodule_search_locations=[str(package_dir)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    import slicer

    slicer.parameterNodeWrapper = module
    return module


def module_tree():
    return ast.parse(MODULE_FILE.read_text(encoding="utf-8"), str(MODULE_FILE))


def compile_nodes(nodes, namespace):
    code = compile(ast.fix_missing_locations(ast.Module(body=list(nodes), type_ignores=[])), str(MODULE_FILE), "exec",
                   dont_inherit=True)  # the module file has no postponed annotations
    exec(code, namespace)
    return namespace


def module_namespace(pnw):
    import slicer

    namespace = {name: getattr(slicer, name) for name in dir(slicer) if name.startswith("vtkMRML")}
    namespace.update({"Annotated": typing.Annotated, "Union": typing.Union, "slicer": slicer})
    namespace.update({name: getattr(pnw, name) for name in pnw.__all__ if hasattr(pnw, name)} if hasattr(pnw, "__all__")
                     else {name: getattr(pnw, name) for name in dir(pnw) if not name.startswith("_")})
    return namespace


def parameter_class_node(tree):
    found = [n for n in tree.body if isinstance(n, ast.ClassDef)
             and any(ast.unparse(d) == "parameterNodeWrapper" for d in n.decorator_list)]
    assert len(found) == 1
    return found[0]


def class_methods(tree, class_name, wanted):
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name)
    return [n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name in wanted]


def error_text(callable_):
    try:
        callable_()
    except Exception as error:  # report what Slicer's code raised (with its cause chain)
        texts = []
        while error is not None:
            texts.append(f"{type(error).__name__}: {error}")
            error = error.__cause__
        return " <- ".join(texts)
    return None


def run(source: Path) -> dict:
    made = install_stand_ins()
    pnw = load_wrapper_package(source)
    import slicer
    import vtk

    out = {"stand_ins": sorted(f"{m}.{n}" for m, n in made)}
    tree = module_tree()
    namespace = compile_nodes([parameter_class_node(tree)], module_namespace(pnw))
    cls = namespace["RegistrationQualityParameterNode"]
    scene = slicer.vtkMRMLScene()
    node = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", "RegistrationQuality")
    p = cls(node)  # writes every default through Slicer's serializers
    out["fields"] = sorted(cls.allParameters)
    out["defaults"] = {"fixedSegmentation": p.fixedSegmentation, "useThreshold": p.useThreshold,
                       "percentile": p.percentile, "resultStatus": p.resultStatus,
                       "fixedThreshold": [p.fixedThreshold.minimum, p.fixedThreshold.maximum]}

    # round trips through the node (a second wrapper reads what the first wrote)
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    lab = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    vol = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    reads = {}
    for label, value in (("segmentation", seg), ("labelmap", lab), ("none", None)):
        p.fixedSegmentation = value
        read = cls(node).fixedSegmentation
        reads[label] = (read.GetID() if read is not None else None) == (value.GetID() if value is not None else None)
    out["union_round_trips"] = reads
    out["union_rejects_scalar_volume"] = error_text(lambda: setattr(p, "fixedSegmentation", vol))
    p.fixedThreshold = pnw.FloatRange(1.5, 65.6875)
    out["threshold_round_trip"] = [cls(node).fixedThreshold.minimum, cls(node).fixedThreshold.maximum]
    out["within_range_rejects"] = error_text(lambda: setattr(p, "minDice", 1.5))

    # the annotation the module had before: Slicer's wrapper cannot build it
    bad = ast.parse("@parameterNodeWrapper\nclass Bad:\n"
                    "    seg: Union[vtkMRMLSegmentationNode, vtkMRMLLabelMapVolumeNode]\n").body
    bad_ns = compile_nodes(bad, module_namespace(pnw))
    out["union_without_none"] = error_text(lambda: bad_ns["Bad"](scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")))

    # GUI connection: connectGui's return value, and the module's way (one wrapper, one connection)
    def make_ui():
        ui = type("", (), {})()
        ui.maxTreSpinBox = QDoubleSpinBox(decimals=2)
        ui.maxTreSpinBox.setProperty(pnw.SlicerParameterNamePropertyName, "maxTre")
        ui.resultsTableView = TableView()
        return ui

    other = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")
    out["connectGui_returns"] = repr(cls(other).connectGui(make_ui()))

    # Slicer's template pattern as the module had it: setup() and enter() each connected a new wrapper
    ui = make_ui()
    twice = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")
    cls(twice).connectGui(ui)
    cls(twice).connectGui(ui)
    writer = cls(twice)
    writer.maxTre = 1.23456
    # what the node holds (the writer's own cache still says 1.23456: it ignores Modified while it writes)
    out["two_connections_value"] = cls(twice).maxTre

    # the module's widget and logic methods, compiled from the module file
    fns = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "connectParameterNodeGui"]
    module_ns = compile_nodes(fns, module_namespace(pnw))
    single = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")

    class LogicBase:
        def getParameterNode(self):
            return single

    logic_ns = dict(module_ns, RegistrationQualityParameterNode=cls, LogicBase=LogicBase)
    logic_cls = ast.ClassDef(name="HeadlessLogic", bases=[ast.Name("LogicBase", ast.Load())], keywords=[],
                             body=class_methods(tree, "RegistrationQualityLogic", {"getParameterNode"}),
                             decorator_list=[])
    compile_nodes([logic_cls], logic_ns)
    logic = logic_ns["HeadlessLogic"]()
    logic._parameterNodeWrapper = None

    from slicer.util import VTKObservationMixin

    widget_ns = dict(module_ns, VTKObservationMixin=VTKObservationMixin)
    wanted = {"setParameterNode", "disconnectParameterNode", "initializeParameterNode", "enter", "exit",
              "onSceneStartClose", "_modifiedEvent"}
    body = class_methods(tree, "RegistrationQualityWidget", wanted)
    widget_cls = ast.ClassDef(name="HeadlessWidget", bases=[ast.Name("VTKObservationMixin", ast.Load())],
                              keywords=[], body=body, decorator_list=[])
    compile_nodes([widget_cls], widget_ns)
    ui = make_ui()
    w = widget_ns["HeadlessWidget"]()
    VTKObservationMixin.__init__(w)
    w.logic, w.ui, w._parameterNode, w._parameterNodeGuiTag = logic, ui, None, None
    w.modified = 0

    def on_modified(caller=None, event=None):
        w.modified += 1

    w.onParameterNodeModified = on_modified
    steps = {}
    w.initializeParameterNode()  # setup()
    w.enter()  # the module is shown
    p = logic.getParameterNode()
    steps["same_wrapper"] = p is w._parameterNode and p is logic.getParameterNode()
    steps["connections_after_setup_and_enter"] = len(p._parameterGUIs)
    p.maxTre = 1.23456  # set from code (the self-test does this)
    steps["value_set_from_code"] = cls(single).maxTre  # a fresh wrapper reads what the node holds
    steps["spin_box_shows"] = ui.maxTreSpinBox.value
    ui.maxTreSpinBox.value = 3.5  # the user edits the box
    steps["user_edit_reaches_node"] = p.maxTre
    w.exit()
    steps["connections_after_exit"] = len(p._parameterGUIs)
    ui.maxTreSpinBox.value = 4.0
    steps["edit_after_exit_ignored"] = p.maxTre
    modified = w.modified
    p.percentile = 90.0
    steps["panel_observer_after_exit"] = w.modified - modified
    w.enter()
    steps["connections_after_reenter"] = len(p._parameterGUIs)
    steps["spin_box_after_reenter"] = ui.maxTreSpinBox.value
    w.onSceneStartClose(None, None)
    steps["connections_after_scene_close"] = len(p._parameterGUIs)
    steps["table_after_scene_close"] = ui.resultsTableView.table
    out["module_connection"] = steps
    out["vtk"] = vtk.vtkVersion.GetVTKVersion()
    return out


if __name__ == "__main__":
    print(json.dumps(run(Path(sys.argv[1])), default=repr))
