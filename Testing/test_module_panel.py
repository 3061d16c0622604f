"""The Slicer panel, headless: the .ui and the module file are parsed (they need Slicer's Qt), and the library
code path the panel runs (``RegistrationQualityLib.panel`` and the logic's methods) is executed on real scenes.

Slicer facts the static checks rely on (Base/Python/slicer/parameterNodeWrapper in Slicer 5.8): ``connectGui``
binds widgets whose ``SlicerParameterName`` dynamic property names a field; a bool binds to QCheckBox or a
(checkable) QPushButton, a float to QDoubleSpinBox/ctkDoubleSpinBox/ctkSliderWidget (the slider needs bounds), a
FloatRange to ctkRangeWidget (needs RangeBounds), a node type to qMRMLNodeComboBox, a str to QLabel/QLineEdit.
"""

from __future__ import annotations

import ast
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import SHIFT_LPS, write_shift_case

ROOT = Path(__file__).resolve().parents[1]
MODULE_FILE = ROOT / "RegistrationQuality" / "RegistrationQuality.py"
UI_FILE = ROOT / "RegistrationQuality" / "Resources" / "UI" / "RegistrationQuality.ui"
SAMPLE_CASE = ROOT / "Resources" / "SampleCase"

# widget classes that hold no state and do nothing: they need no code (layout helpers and static text)
CONTAINERS = {"qMRMLWidget", "ctkCollapsibleButton", "QGroupBox", "QWidget", "QFrame"}
BINDABLE = {  # field type -> widget classes the GUI connectors accept at v5.8.1 (guiConnectors.py canRepresent:
    # lines 159, 192, 228, 292, 358 (QComboBox/ctkComboBox: int, float, str, bool), 455, 486, 519, 551, 680). v5.10.0
    # accepts more (ctkCheckablePushButton for bool, the float widgets for int): 5.8.1's lists work on both.
    "bool": {"QCheckBox", "ctkCheckBox", "QPushButton", "QComboBox", "ctkComboBox"},
    "int": {"QSlider", "QSpinBox", "QComboBox", "ctkComboBox"},
    "float": {"QDoubleSpinBox", "ctkDoubleSpinBox", "ctkSliderWidget", "qMRMLSliderWidget", "qMRMLSpinBox",
              "ctkDoubleSlider", "QComboBox", "ctkComboBox"},
    "FloatRange": {"ctkRangeWidget", "ctkDoubleRangeSlider", "qMRMLRangeWidget"},
    "str": {"QLabel", "QLineEdit", "QTextEdit", "QComboBox", "ctkComboBox"},
    "node": {"qMRMLNodeComboBox"},
}


# ---------------------------------------------------------------------------------------------------
# Parsing helpers
# ---------------------------------------------------------------------------------------------------
def ui_tree():
    return ET.parse(UI_FILE)


def ui_widgets() -> dict:
    """name -> <widget> element of every named widget of the .ui."""
    return {w.get("name"): w for w in ui_tree().iter("widget")}


def direct_property(widget, name):
    for p in widget.findall("property"):
        if p.get("name") == name:
            return p
    return None


def property_text(widget, name):
    p = direct_property(widget, name)
    if p is None:
        return None
    child = list(p)[0]
    if child.tag == "stringlist":
        return [s.text for s in child.findall("string")]
    return child.text or ""


def bound_widgets() -> dict:
    """SlicerParameterName -> list of widget elements bound to it."""
    out: dict = {}
    for name, w in ui_widgets().items():
        p = direct_property(w, "SlicerParameterName")
        if p is not None:
            assert p.get("stdset") == "0", f"{name}: SlicerParameterName must be a dynamic property (stdset=0)"
            out.setdefault(p.find("string").text, []).append(w)
    return out


def module_source() -> str:
    return MODULE_FILE.read_text(encoding="utf-8")


def module_tree():
    return ast.parse(module_source(), str(MODULE_FILE))


def module_class(name):
    for node in module_tree().body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node
    raise AssertionError(f"class {name} not found in the module file")


def parameter_class():
    """The @parameterNodeWrapper dataclass of the module file."""
    found = [n for n in module_tree().body if isinstance(n, ast.ClassDef)
             and any(ast.unparse(d) == "parameterNodeWrapper" for d in n.decorator_list)]
    assert len(found) == 1, "the module file needs exactly one @parameterNodeWrapper class"
    return found[0]


def parameter_fields() -> dict:
    """field name -> (annotation source, default value or None)."""
    fields = {}
    for node in parameter_class().body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            default = ast.literal_eval(node.value) if node.value is not None else None
            fields[node.target.id] = (ast.unparse(node.annotation), default)
    return fields


# ---------------------------------------------------------------------------------------------------
# Slicer's parameter node serializers, modelled (Base/Python/slicer/parameterNodeWrapper, same rules at v5.8.1 and
# v5.10.0; line numbers "5.8.1/5.10.0"). The wrapper writes every field's default when it is built
# (wrapper.py _initMethod, line 138/138), and every write goes through the field's validators, so a default that
# its serializer rejects makes the class unusable. Testing/test_slicer_wrapper.py runs Slicer's real code.
# ---------------------------------------------------------------------------------------------------
class Range:
    """Stand-in for slicer.parameterNodeWrapper.FloatRange (a parameterPack of two floats)."""

    def __init__(self, minimum=0.0, maximum=0.0):
        self.minimum, self.maximum = minimum, maximum

    def __eq__(self, other):
        return isinstance(other, Range) and (self.minimum, self.maximum) == (other.minimum, other.maximum)

    def __repr__(self):
        return f"Range({self.minimum}, {self.maximum})"


class _Annotation:
    def __init__(self, *args):
        self.args = args


class WithinRange(_Annotation):
    """validators.py WithinRange.validate (line 93/93): minimum <= value <= maximum."""

    def validate(self, value):
        if not self.args[0] <= value <= self.args[1]:
            raise ValueError(f"Value must be within range [{self.args[0]}, {self.args[1]}], is {value}")


class Minimum(_Annotation):
    """validators.py Minimum (line 98/98)."""

    def validate(self, value):
        if value < self.args[0]:
            raise ValueError(f"Value must be greater than {self.args[0]}, is {value}")


class Maximum(_Annotation):
    """validators.py Maximum (line 112/112)."""

    def validate(self, value):
        if value > self.args[0]:
            raise ValueError(f"Value must be less than {self.args[0]}, is {value}")


class Choice(_Annotation):
    """validators.py Choice (line 126/126)."""

    def validate(self, value):
        if value not in self.args[0]:
            raise ValueError(f"Value is {value}, but must be in one of the following: {self.args[0]}")


class Exclude(_Annotation):
    """validators.py Exclude (line 140/140)."""

    def validate(self, value):
        if value in self.args[0]:
            raise ValueError(f"Value is {value}, but must not be an excluded value")


class RangeBounds(_Annotation):
    pass


class Decimals(_Annotation):  # guiConnectors.py display annotations: no validation
    pass


class SingleStep(_Annotation):
    pass


class Default(_Annotation):
    pass


class SlicerSerializer:
    """What Slicer's serializer of one annotation accepts: ``can(type)`` (``canSerialize``), ``validate(value)``
    (the ValidatedSerializer's validators), ``default`` (``Serializer.default()``)."""

    def __init__(self, can, validators, default):
        self.can, self.validators, self.default = can, list(validators), default

    def validate(self, value):
        for validator in self.validators:
            validator(value)

    def write(self, value):
        """ValidatedSerializer.write (serializers.py line 159/162): validate, then write."""
        self.validate(value)


def _is_instance(classes):  # validators.py IsInstance.validate (line 78/78): None passes
    def check(value):
        if value is not None and not isinstance(value, classes):
            raise TypeError(f"Value must be of type '{classes}', is type '{type(value)}' value '{value}'")
    return check


def _not_none(value):  # validators.py NotNone (line 58/58)
    if value is None:
        raise ValueError("Value must not be None")


def _is_none(value):  # validators.py IsNone (line 47/47)
    if value is not None:
        raise ValueError("Value must be None")


def slicer_serializer(tp) -> SlicerSerializer:
    """The serializer Slicer builds for the (evaluated) annotation ``tp`` (serializers.py createSerializer,
    line 216/219), or an exception where Slicer raises one."""
    import typing

    import slicer

    if typing.get_origin(tp) is typing.Annotated:
        base, *extras = typing.get_args(tp)
        inner = slicer_serializer(base)
        checks = [a.validate for a in extras if isinstance(a, (WithinRange, Minimum, Maximum, Choice, Exclude))]
        return SlicerSerializer(inner.can, inner.validators + checks, inner.default)
    if tp in (int, float):  # NumberSerializer (line 233/236): NotNone, IsInstance, default 0
        return SlicerSerializer(lambda t: t in (int, float), [_not_none, _is_instance((int, float) if tp is float
                                                                                       else int)], 0)
    if tp is bool:  # BoolSerializer (line 348/351): default False
        return SlicerSerializer(lambda t: t is bool, [_not_none, _is_instance(bool)], False)
    if tp is str:  # StringSerializer (line 272/275): default ""
        return SlicerSerializer(lambda t: t is str, [_not_none, _is_instance(str)], "")
    if tp is Range:  # FloatRange: a parameterPack (stand-in)
        return SlicerSerializer(lambda t: t is Range, [_not_none, _is_instance(Range)], Range())
    if tp is type(None):  # NoneSerializer (line 828/899): canSerialize isinstance(None, type_), IsNone
        return SlicerSerializer(lambda t: isinstance(None, t), [_is_none], {})
    if isinstance(tp, type) and issubclass(tp, slicer.vtkMRMLNode):
        # NodeSerializer (line 382/385): canSerialize issubclass(type_, vtkMRMLNode), IsInstance only, default None
        return SlicerSerializer(lambda t: isinstance(t, type) and issubclass(t, slicer.vtkMRMLNode),
                                [_is_instance(tp)], None)
    if typing.get_origin(tp) is typing.Union:  # UnionSerializer (line 871/942)
        members = [slicer_serializer(arg) for arg in typing.get_args(tp)]
        # default (line 897/977): None for Optional[X] (two members, the second None), else the first member's
        if len(members) == 2 and typing.get_args(tp)[1] is type(None):
            default = None
        else:
            default = members[0].default

        def find_best(value):  # _findBestSerializer (line 916/996)
            raised = None
            for member in members:
                if member.can(type(value)):
                    try:
                        member.validate(value)
                        return
                    except Exception as error:
                        raised = error
            if raised is not None:
                raise raised
            raise TypeError(f"Unable to write value '{value}' of type '{type(value)}'")

        return SlicerSerializer(lambda t: True, [find_best], default)
    raise Exception(f"Unable to create serializer for type: {tp}")  # _makeAppropriateSerializer (line 213/216)


def annotation_namespace() -> dict:
    import typing

    import slicer

    names = {name: getattr(slicer, name) for name in dir(slicer) if name.startswith("vtkMRML")}
    return {**names, "Union": typing.Union, "Optional": typing.Optional, "Annotated": typing.Annotated,
            "FloatRange": Range, "WithinRange": WithinRange, "RangeBounds": RangeBounds, "Default": Default,
            "Minimum": Minimum, "Maximum": Maximum, "Choice": Choice, "Exclude": Exclude, "Decimals": Decimals,
            "SingleStep": SingleStep}


def evaluated(annotation: str):
    return eval(annotation, annotation_namespace())  # noqa: S307 - the module file's own annotations


def field_default(annotation: str, default):
    """The default the wrapper writes (wrapper.py _processClass, line 312/316): the class attribute, else a
    Default(...) annotation, else the serializer's default."""
    if default is not None:
        return default
    found = re.search(r"Default\(FloatRange\(([-\d.e+]+), ([-\d.e+]+)\)\)", annotation)
    if found:
        return Range(float(found.group(1)), float(found.group(2)))
    return slicer_serializer(evaluated(annotation)).default


def field_kind(annotation: str) -> str:
    """bool / float / int / str / FloatRange / node (a node class or a union of node classes and None)."""
    import typing

    tp = evaluated(annotation)
    if typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    for kind, python_type in (("bool", bool), ("float", float), ("int", int), ("str", str), ("FloatRange", Range)):
        if tp is python_type:
            return kind
    import slicer

    members = typing.get_args(tp) if typing.get_origin(tp) is typing.Union else (tp,)
    # guiConnectors' node combo box connector requires util.isNodeOrUnionOfNodes (util.py line 56/56): node
    # classes and None only
    assert all(m is type(None) or (isinstance(m, type) and issubclass(m, slicer.vtkMRMLNode)) for m in members), (
        f"unexpected field type {annotation}")
    return "node"


def node_classes(annotation: str) -> list:
    return re.findall(r"vtkMRML\w+", annotation)


def is_input(field: str) -> bool:
    return not field.startswith("result")


# ---------------------------------------------------------------------------------------------------
# The .ui file
# ---------------------------------------------------------------------------------------------------
def test_ui_is_valid_designer_xml():
    tree = ui_tree()
    root = tree.getroot()
    assert root.tag == "ui" and root.get("version") == "4.0"
    assert root.findtext("class") == "RegistrationQuality"
    top = root.find("widget")
    assert top.get("class") == "qMRMLWidget" and top.get("name") == "RegistrationQuality"
    names = [w.get("name") for w in root.iter("widget")]
    assert all(names) and len(names) == len(set(names)), "every widget has a unique name"
    layouts = [x.get("name") for x in root.iter("layout")]
    assert len(layouts) == len(set(layouts))
    declared = {c.findtext("class") for c in root.iter("customwidget")}
    used = {w.get("class") for w in root.iter("widget")}
    custom = {c for c in used if c.startswith(("ctk", "qMRML"))}
    assert custom <= declared, f"custom widgets not declared: {sorted(custom - declared)}"


def test_widgets_the_code_uses_exist_and_none_is_unused():
    widgets = ui_widgets()
    used = set(re.findall(r"self\.ui\.(\w+)", module_source()))
    assert used, "the module uses no .ui widget"
    assert used <= set(widgets), f"used by the code but not in the .ui: {sorted(used - set(widgets))}"
    bound = {w.get("name") for ws in bound_widgets().values() for w in ws}
    unused = []
    for name, w in widgets.items():
        cls = w.get("class")
        static_label = cls == "QLabel" and name.endswith("Label") and name not in bound
        if cls in CONTAINERS or static_label or name in used or name in bound:
            continue
        unused.append(f"{name} ({cls})")
    assert not unused, f"controls in the .ui that no code reads, binds or connects: {unused}"


def test_every_parameter_name_is_a_field_and_every_input_is_bound():
    fields = parameter_fields()
    bound = bound_widgets()
    assert set(bound) <= set(fields), f"SlicerParameterName without a field: {sorted(set(bound) - set(fields))}"
    duplicated = {k: [w.get("name") for w in v] for k, v in bound.items() if len(v) > 1}
    assert not duplicated, f"fields bound to several widgets: {duplicated}"
    inputs = {f for f in fields if is_input(f)}
    assert inputs - set(bound) == set(), f"inputs with no widget: {sorted(inputs - set(bound))}"
    # the panel's inputs cover what the evaluation takes from the user
    for needed in ("fixedVolume", "movingVolume", "registeredVolume", "transform", "fixedSegmentation",
                   "movingSegmentation", "fixedLandmarks", "movingLandmarks", "fixedThreshold", "movingThreshold",
                   "percentile", "minDice", "maxHausdorff", "maxTre", "maxFolding"):
        assert needed in inputs


def test_bound_widgets_fit_their_field_types_and_show_the_defaults():
    fields = parameter_fields()
    for name, ws in bound_widgets().items():
        annotation, default = fields[name]
        kind = field_kind(annotation)
        w = ws[0]
        cls = w.get("class")
        assert cls in BINDABLE[kind], f"{name}: {kind} cannot bind to {cls}"
        if kind == "bool":
            if cls == "QPushButton":
                assert property_text(w, "checkable") == "true", f"{w.get('name')} must be checkable"
            assert (property_text(w, "checked") == "true") == bool(default), f"{w.get('name')}: default {default}"
        elif kind == "float":
            bounds = re.search(r"WithinRange\(([-\d.e+]+), ([-\d.e+]+)\)", annotation)
            if cls in ("ctkSliderWidget", "qMRMLSliderWidget"):
                assert bounds, f"{name}: a slider needs WithinRange"
            if bounds:
                assert float(property_text(w, "minimum")) == float(bounds.group(1)), name
                assert float(property_text(w, "maximum")) == float(bounds.group(2)), name
            assert float(property_text(w, "value")) == pytest.approx(default), f"{name}: .ui value != default"
        elif kind == "FloatRange":
            assert "RangeBounds(" in annotation and "Default(" in annotation, name
        elif kind == "node":
            assert property_text(w, "nodeTypes") == node_classes(annotation), name
            assert property_text(w, "noneEnabled") == "true", f"{name}: None must be selectable (optional input)"


def test_enable_connections_match_the_initial_state():
    """A checkbox enabling a widget through a .ui connection: the widget starts enabled iff the box starts ticked
    (the connection only fires on changes)."""
    widgets = ui_widgets()
    count = 0
    for c in ui_tree().getroot().find("connections"):
        if c.findtext("slot") != "setEnabled(bool)":
            continue
        sender, receiver = widgets[c.findtext("sender")], widgets[c.findtext("receiver")]
        assert c.findtext("signal") == "toggled(bool)"
        ticked = property_text(sender, "checked") == "true"
        enabled = property_text(receiver, "enabled") != "false"
        assert ticked == enabled, f"{receiver.get('name')} enabled={enabled} but {sender.get('name')} ticked={ticked}"
        count += 1
    assert count >= 5


def test_mrml_widgets_receive_the_scene():
    connected = {c.findtext("receiver") for c in ui_tree().getroot().find("connections")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"
                 and c.findtext("sender") == "RegistrationQuality" and c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"}
    mrml = {n for n, w in ui_widgets().items() if w.get("class").startswith("qMRML") and w.get("class") != "qMRMLWidget"}
    assert mrml and mrml == connected


# ---------------------------------------------------------------------------------------------------
# The module file
# ---------------------------------------------------------------------------------------------------
HEAVY = ("numpy", "SimpleITK", "vtk", "vtkmodules", "scipy", "RegistrationQualityLib", "itk", "pandas")


def test_module_imports_nothing_heavy_at_load():
    for node in module_tree().body:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        for name in names:
            assert not any(name == h or name.startswith(h + ".") for h in HEAVY), (
                f"line {node.lineno}: {name} is imported at module load (import it inside the function)")
    # and the library is used lazily, inside functions
    assert "from RegistrationQualityLib" in module_source()


def methods(class_name) -> set:
    return {n.name for n in module_class(class_name).body if isinstance(n, ast.FunctionDef)}


def test_methods_the_widget_calls_exist():
    widget, logic = module_class("RegistrationQualityWidget"), methods("RegistrationQualityLogic")
    own = methods("RegistrationQualityWidget")
    inherited = {"resourcePath", "setup", "cleanup", "enter", "exit", "addObserver", "removeObserver",
                 "removeObservers"}
    for node in ast.walk(widget):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute):
            if ast.unparse(node.value) == "self.logic":
                assert node.attr in logic, f"line {node.lineno}: RegistrationQualityLogic.{node.attr} does not exist"
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "self"):
            assert node.func.attr in own | inherited, f"line {node.lineno}: self.{node.func.attr}() does not exist"


# what the wrapper class adds (wrapper.py _processClass, lines 333-350 at v5.8.1 and 337-354 at v5.10.0) and its
# instance attribute parameterNode (_initMethod); GetID: `p` is also a node in a few places
WRAPPER_ATTRIBUTES = {"StartModify", "EndModify", "connectGui", "connectParametersToGui", "disconnectGui",
                      "parameterNode", "GetID", "allParameters"}


def test_parameter_fields_the_code_reads_exist():
    """Every ``p.x`` / ``self._parameterNode.x`` / ``parameterNode.x`` / getattr(p, side + "Threshold") is a field."""
    fields = set(parameter_fields())
    tree = module_tree()
    names = {"p", "parameterNode", "self._parameterNode"}
    seen = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and ast.unparse(node.value) in names:
            assert node.attr in fields | WRAPPER_ATTRIBUTES, f"line {node.lineno}: parameter node has no {node.attr}"
            seen.add(node.attr)
    for suffix in re.findall(r'side \+ "(\w+)"', module_source()):
        assert {"fixed" + suffix, "moving" + suffix} <= fields
    assert {f for f in fields if is_input(f)} <= seen | {"fixedThreshold", "movingThreshold"}, (
        f"inputs the code never reads: {sorted({f for f in fields if is_input(f)} - seen)}")


def test_compute_sets_every_result_field():
    """compute() sets every result field (nodes, status, report): nothing of a previous run is left stale."""
    source = ast.unparse([n for n in module_class("RegistrationQualityLogic").body
                          if isinstance(n, ast.FunctionDef) and n.name == "compute"][0])
    for name in parameter_fields():
        if not is_input(name):
            assert f"p.{name} =" in source, f"compute() does not set {name}"


# ---------------------------------------------------------------------------------------------------
# The logic's methods, executed headless (compiled from the module file; the Slicer wrapper is replaced by an
# attribute bag with the dataclass's fields and defaults)
# ---------------------------------------------------------------------------------------------------
class ParameterBag(SimpleNamespace):
    """The parameterNodeWrapper's attribute access, without Slicer: fields with their defaults, written through the
    serializer rules above (a default or a value Slicer's serializer rejects raises here as it does in Slicer)."""

    allParameters = parameter_fields()

    def __init__(self, **values):
        object.__setattr__(self, "_serializers", {k: slicer_serializer(evaluated(a))
                                                  for k, (a, _d) in self.allParameters.items()})
        super().__init__()
        for name, (annotation, default) in self.allParameters.items():
            setattr(self, name, field_default(annotation, default))  # _initMethod writes every default
        for name, value in values.items():
            setattr(self, name, value)
        self.modifications = 0

    def __setattr__(self, name, value):
        if name in self.allParameters:
            self._serializers[name].write(value)
        super().__setattr__(name, value)

    def StartModify(self):
        return 0

    def EndModify(self, was):
        self.modifications += 1


def headless_logic(ctx):
    """RegistrationQualityLogic's panel methods compiled from the module file, with context() -> ctx."""
    wanted = {"evaluationRequest", "compute", "removeResultNodes", "saveReport", "thresholdDefaults",
              "slicerElastixInputs", "loadSampleCase", "showResults"}
    namespace = {"_": lambda text: text, "RegistrationQualityParameterNode": ParameterBag, "json": json,
                 "Path": Path, "__file__": str(MODULE_FILE)}
    helpers = [n for n in module_tree().body if isinstance(n, ast.FunctionDef)
               and n.name in ("sampleCaseFolder", "sampleCaseSpec", "_thresholdCleanup")]
    exec(compile(ast.Module(body=helpers, type_ignores=[]), str(MODULE_FILE), "exec"), namespace)
    body = []
    for fn in module_class("RegistrationQualityLogic").body:
        if isinstance(fn, ast.FunctionDef) and fn.name in wanted:
            body.append(fn)
    assert {f.name for f in body} == wanted
    cls = ast.ClassDef(name="HeadlessLogic", bases=[], keywords=[], body=body, decorator_list=[])
    code = compile(ast.fix_missing_locations(ast.Module(body=[cls], type_ignores=[])), str(MODULE_FILE), "exec")
    exec(code, namespace)
    logic = namespace["HeadlessLogic"]()
    logic.context = lambda: ctx
    logic._thresholdCache = {}
    return logic


@pytest.fixture
def shift_nodes(ctx, tmp_path):
    """The analytic shift case (conftest) loaded as the panel sees it: nodes in the scene."""
    from RegistrationQualityLib import io
    from RegistrationQualityLib.transforms import load_transform

    case = write_shift_case(tmp_path)
    return SimpleNamespace(
        case=case,
        fixed=io.load_volume(ctx, case / "fixed.nrrd", name="fixed"),
        moving=io.load_volume(ctx, case / "moving.nrrd", name="moving"),
        fixed_seg=io.load_segmentation(ctx, case / "fixed_labels.nrrd", name="fixed seg"),
        moving_seg=io.load_segmentation(ctx, case / "moving_labels.nrrd", name="moving seg"),
        fixed_lm=io.landmarks_to_node(ctx, io.read_landmarks(case / "fixed.csv"), name="fixed lm"),
        moving_lm=io.landmarks_to_node(ctx, io.read_landmarks(case / "moving.csv"), name="moving lm"),
        good=load_transform(ctx, case / "good.tfm", name="good"),
        identity=load_transform(ctx, case / "identity.tfm", name="identity"),
    )


def test_threshold_defaults_from_the_histogram(ctx, shift_nodes):
    from RegistrationQualityLib import panel

    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(shift_nodes.case / "fixed.nrrd")))
    d = panel.threshold_defaults(shift_nodes.fixed)
    assert d["bounds"] == (float(arr.min()), float(arr.max()))
    # two classes around 100 and 500 (noise sigma 5): Otsu's level separates them exactly
    t, hi = d["suggested"]
    assert int((arr > t).sum()) == int((arr > 300).sum()) and hi == float(arr.max()) and d["otsu"] == d["suggested"]
    assert d["decimals"] == 0 and d["step"] == 1.0  # int16 image
    m = panel.threshold_defaults(shift_nodes.moving)
    assert m["bounds"] == pytest.approx((0.5, 3.5)) and 0.5 < m["suggested"][0] < 3.5
    assert m["decimals"] == 3 and m["step"] == pytest.approx(0.001)  # float image spanning 3 units


def test_threshold_spec_is_exact_and_checked():
    from RegistrationQualityLib import panel
    from RegistrationQualityLib.errors import BadInputError
    from RegistrationQualityLib.segmentation import parse_threshold_spec

    spec = panel.threshold_spec(Range(-0.3, 0.1 + 0.2))
    parsed = parse_threshold_spec(spec)
    assert (parsed.lower, parsed.upper) == (-0.3, 0.1 + 0.2)  # repr keeps every bit
    assert panel.threshold_spec(None) is None
    with pytest.raises(BadInputError, match="threshold: lower bound 2 is above upper bound 1"):
        panel.threshold_spec((2, 1))


def test_panel_compute_with_a_tolerance_profile(ctx, shift_nodes):
    """The panel's profile field reaches evaluate: the built-in tg132 profile's checks run, with its data-dependent
    TRE limit (the fixed image's largest voxel dimension, 3 mm here), and a ticked limit replaces the profile's."""
    logic = headless_logic(ctx)
    n = shift_nodes
    p = ParameterBag(fixedVolume=n.fixed, movingVolume=n.moving, transform=n.good, fixedSegmentation=n.fixed_seg,
                     movingSegmentation=n.moving_seg, fixedLandmarks=n.fixed_lm, movingLandmarks=n.moving_lm,
                     useThreshold=False, profile="tg132", checkTrePoint=True, maxTrePoint=0.25)
    rep = logic.compute(p).report
    assert rep["profile"]["name"] == "tg132"
    by_name = {}
    for c in rep["checks"]:
        by_name.setdefault(c["name"], []).append(c)
    assert {"max_tre", "min_dice", "max_mean_distance"} <= set(by_name)
    assert by_name["max_tre"][0]["limit"] == pytest.approx(3.0)  # largest voxel dimension of the fixed image
    assert by_name["max_tre_point"][0]["limit"] == pytest.approx(0.25)  # the ticked limit, not the profile's 5 mm
    assert by_name["max_tre"][0]["status"] == "pass"


def test_panel_compute_on_the_shift_case(ctx, shift_nodes, tmp_path):
    """The Compute button's path (logic.compute on the parameter node) against the analytic answers."""
    from RegistrationQualityLib import panel

    logic = headless_logic(ctx)
    n = shift_nodes
    p = ParameterBag(fixedVolume=n.fixed, movingVolume=n.moving, transform=n.good, fixedSegmentation=n.fixed_seg,
                     movingSegmentation=n.moving_seg, fixedLandmarks=n.fixed_lm, movingLandmarks=n.moving_lm,
                     checkDice=True, minDice=0.85, checkTre=True, maxTre=0.5)
    p.fixedThreshold = Range(*logic.thresholdDefaults(n.fixed)["suggested"])
    p.movingThreshold = Range(*logic.thresholdDefaults(n.moving)["suggested"])
    inputs_before = {node.GetID(): node.GetMTime() for node in (n.fixed, n.moving, n.fixed_seg, n.moving_seg)}

    result = logic.compute(p)
    rep = result.report
    seg = {s["name"]: s for s in rep["segments"]}
    assert set(seg) == {"3", "threshold"}
    for s in seg.values():
        assert s["after"]["dice"] > 0.85 > s["before"]["dice"]
    assert rep["landmarks"]["before"]["mean_mm"] == pytest.approx(float(np.linalg.norm(SHIFT_LPS)), abs=1e-6)
    assert rep["landmarks"]["after"]["max_mm"] == pytest.approx(0.0, abs=1e-6)
    assert result.verdict == "pass" and p.resultStatus.startswith("Verdict: PASS")
    assert {node.GetID(): node.GetMTime() for node in (n.fixed, n.moving, n.fixed_seg, n.moving_seg)} == inputs_before

    # the summary table in the scene: one row per summary row, translated headers, the check column
    table = p.resultSummaryTable
    rows = panel.summary_rows(rep)
    assert table.GetNumberOfRows() == len(rows) and table.GetTable().GetColumnName(0) == "Measure"
    dice3 = next(r for r in rows if r["key"] == "dice" and r["subject"] == "3")
    assert dice3["after"] == f"{seg['3']['after']['dice']:.3f}" and dice3["check"] == "pass (≥ 0.85)"
    tre = next(r for r in rows if r["key"] == "tre_mean_mm")
    assert tre["subject"] == "3 landmarks" and tre["before"] == f"{np.linalg.norm(SHIFT_LPS):.2f}"
    # result nodes: TRE vectors (one line per landmark), Jacobian, contours, checkerboard, difference
    assert p.resultTreVectors.GetPolyData().GetNumberOfLines() == 3
    assert p.resultJacobian is not None and p.resultMetricsTable is not None and p.resultTreTable is not None
    for field in ("resultCheckerboard", "resultDifference", "resultContoursFixed", "resultContoursBefore",
                  "resultContoursAfter"):
        assert getattr(p, field) is not None and ctx.scene.GetNodeByID(getattr(p, field).GetID()), field
    assert p.resultContoursAfter.GetDisplayNode().GetVisibility() and not \
        p.resultContoursBefore.GetDisplayNode().GetVisibility()
    assert json.loads(p.resultReport)["verdict"] == "pass"

    # a second computation (identity transform) replaces the result nodes and fails the checks
    old = [getattr(p, f).GetID() for f in ParameterBag.allParameters
           if f.startswith("result") and f not in ("resultStatus", "resultReport") and getattr(p, f) is not None]
    p.transform = n.identity
    result = logic.compute(p)
    assert result.verdict == "fail" and "FAILED min_dice" in p.resultStatus
    assert all(ctx.scene.GetNodeByID(i) is None for i in old)

    # save report: an empty folder is used as is; the saved numbers are the shown ones
    out = logic.saveReport(p, tmp_path / "report")
    saved = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert saved["verdict"] == "fail" and saved["landmarks"] == rep_landmarks_of(p)
    assert (out / "report.html").is_file() and (out / "metrics.csv").is_file()
    # a non-empty, non-report folder gets a subfolder named after the case
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("x")
    assert logic.saveReport(p, tmp_path / "busy") == tmp_path / "busy" / "RegistrationQuality-moving"


def rep_landmarks_of(p):
    return json.loads(p.resultReport)["landmarks"]


def test_progress_and_cancel_keep_the_previous_results(ctx, shift_nodes):
    """The Compute button's progress bar gets increasing fractions; Cancel (between stages) leaves the previous
    results and the scene as they were."""
    logic = headless_logic(ctx)
    n = shift_nodes
    p = ParameterBag(fixedVolume=n.fixed, movingVolume=n.moving, transform=n.good, fixedLandmarks=n.fixed_lm,
                     movingLandmarks=n.moving_lm, fixedThreshold=Range(300, 1000), movingThreshold=Range(2, 10))
    seen = []
    logic.compute(p, progress=lambda text, fraction: seen.append((text, fraction)))
    fractions = [f for _t, f in seen]
    assert len(seen) >= 5 and fractions == sorted(fractions) and 0 <= fractions[0] and fractions[-1] < 1
    assert seen[0][0].startswith("load")
    before = {f: getattr(p, f) for f in ParameterBag.allParameters if f.startswith("result")}
    node_count = ctx.scene.GetNumberOfNodes()
    calls = []

    def cancel():  # the user clicks Cancel during the third stage
        calls.append(1)
        return len(calls) >= 3

    p.transform = n.identity
    with pytest.raises(InterruptedError):
        logic.compute(p, cancel=cancel)
    assert {f: getattr(p, f) for f in before} == before
    assert ctx.scene.GetNumberOfNodes() == node_count
    assert all(ctx.scene.GetNodeByID(v.GetID()) is not None for v in before.values() if hasattr(v, "GetID"))


def test_display_toggles_set_the_slice_views_and_visibility(ctx, shift_nodes):
    """showResults(): backgrounds are alternatives (checkerboard first), the Jacobian is the foreground, contours
    and TRE vectors follow their boxes; on every slice composite node of the scene."""
    logic = headless_logic(ctx)
    n = shift_nodes
    composites = [ctx.add_node("vtkMRMLSliceCompositeNode", name) for name in ("Red", "Green", "Yellow")]
    p = ParameterBag(fixedVolume=n.fixed, movingVolume=n.moving, transform=n.good, fixedLandmarks=n.fixed_lm,
                     movingLandmarks=n.moving_lm, fixedThreshold=Range(300, 1000), movingThreshold=Range(2, 10))
    logic.compute(p)

    def layers():
        assert len({(c.GetBackgroundVolumeID(), c.GetForegroundVolumeID()) for c in composites}) == 1
        return composites[0].GetBackgroundVolumeID(), composites[0].GetForegroundVolumeID()

    logic.showResults(p)
    assert layers() == (n.fixed.GetID(), None)
    p.showCheckerboard, p.showDifference, p.showJacobian = True, True, True
    logic.showResults(p)
    assert layers() == (p.resultCheckerboard.GetID(), p.resultJacobian.GetID())
    assert composites[0].GetForegroundOpacity() == 0.5
    p.showCheckerboard = False
    logic.showResults(p)
    assert layers() == (p.resultDifference.GetID(), p.resultJacobian.GetID())
    visible = {f: getattr(p, f).GetDisplayNode().GetVisibility()
               for f in ("resultContoursFixed", "resultContoursBefore", "resultContoursAfter", "resultTreVectors")}
    assert visible == {"resultContoursFixed": 1, "resultContoursBefore": 0, "resultContoursAfter": 1,
                       "resultTreVectors": 1}
    p.contoursAfter, p.showTreVectors = False, False
    logic.showResults(p)
    assert p.resultContoursBefore.GetDisplayNode().GetVisibility() and not \
        p.resultContoursAfter.GetDisplayNode().GetVisibility()
    assert not p.resultTreVectors.GetDisplayNode().GetVisibility()
    p.showContours = False
    logic.showResults(p)
    assert not any(getattr(p, f).GetDisplayNode().GetVisibility()
                   for f in ("resultContoursFixed", "resultContoursBefore", "resultContoursAfter"))


def test_display_nodes_match_an_independent_resampling(ctx, shift_nodes):
    """Difference node = |fixed - moving resampled by SimpleITK through the same translation|; contours from
    thresholds hold the thresholded voxels."""
    from RegistrationQualityLib import io, panel

    n = shift_nodes
    nodes = panel.display_nodes(ctx, n.fixed, n.moving, transform=n.good, fixed_threshold=(300, 1000),
                                moving_threshold=(2, 10))
    fixed = sitk.ReadImage(str(n.case / "fixed.nrrd"), sitk.sitkFloat32)
    moving = sitk.ReadImage(str(n.case / "moving.nrrd"), sitk.sitkFloat32)
    reference = sitk.Resample(moving, fixed, sitk.TranslationTransform(3, tuple(SHIFT_LPS)), sitk.sitkLinear, 0.0)
    expected = np.abs(sitk.GetArrayFromImage(fixed) - sitk.GetArrayFromImage(reference))
    got = sitk.GetArrayFromImage(io.volume_to_image(nodes["difference"]))
    inner = (slice(2, -2),) * 3  # away from the moving field of view's edge
    assert np.abs(got[inner] - expected[inner]).max() < 1e-3
    assert io.volume_to_image(nodes["checkerboard"]).GetSize() == fixed.GetSize()
    labels = io.segmentation_to_labelmap_image(ctx, nodes["contours_fixed"], n.fixed)
    arr = sitk.GetArrayFromImage(fixed)
    assert int((sitk.GetArrayFromImage(labels) > 0).sum()) == int(((arr >= 300) & (arr <= 1000)).sum())
    assert nodes["contours_after"].GetDisplayNode().GetVisibility()
    assert not nodes["contours_before"].GetDisplayNode().GetVisibility()


def test_display_contours_from_segmentations(ctx, shift_nodes):
    from RegistrationQualityLib import panel

    n = shift_nodes
    shown = n.moving_seg.GetDisplayNode().GetVisibility2DFill()
    nodes = panel.display_nodes(ctx, n.fixed, n.moving, transform=n.good, fixed_segmentation=n.fixed_seg,
                                moving_segmentation=n.moving_seg, state="before")
    assert nodes["contours_after"].GetTransformNodeID() == n.good.GetID()
    assert nodes["contours_before"].GetTransformNodeID() is None
    assert nodes["contours_before"].GetDisplayNode().GetVisibility()
    assert not nodes["contours_after"].GetDisplayNode().GetVisibility()
    assert not nodes["contours_fixed"].GetDisplayNode().GetVisibility2DFill()  # outlines only
    assert n.moving_seg.GetDisplayNode().GetVisibility2DFill() == shown  # the input's display is untouched
    for key in ("contours_fixed", "contours_before", "contours_after"):
        assert nodes[key].GetSegmentation().GetNumberOfSegments() == 1


def test_slicer_elastix_autofill(ctx, shift_nodes):
    """A SlicerElastix parameter node (ModuleName=Elastix with its node references) fills the inputs."""
    from RegistrationQualityLib import panel

    n = shift_nodes
    assert panel.slicer_elastix_inputs(ctx, n.moving) is None
    pnode = ctx.add_node("vtkMRMLScriptedModuleNode", "Elastix")
    pnode.SetAttribute("ModuleName", "Elastix")
    pnode.SetNodeReferenceID("FixedVolume", n.fixed.GetID())
    pnode.SetNodeReferenceID("MovingVolume", n.moving.GetID())
    pnode.SetNodeReferenceID("OutputTransform", n.good.GetID())
    found = panel.slicer_elastix_inputs(ctx, n.moving)
    assert found["fixed"] is n.fixed and found["transform"] is n.good and found["registered"] is None
    assert "Elastix" in found["source"]
    logic = headless_logic(ctx)
    assert logic.slicerElastixInputs(n.moving)["transform"] is n.good


def test_evaluation_request_maps_every_option(ctx, shift_nodes):
    """The parameter node -> evaluate() mapping: limits only when ticked, thresholds only when enabled."""
    logic = headless_logic(ctx)
    n = shift_nodes
    p = ParameterBag(fixedVolume=n.fixed, movingVolume=n.moving, transform=n.good, useThreshold=False,
                     percentile=90.0, checkHausdorff=True, maxHausdorff=3.5, checkFolding=True, maxFolding=0.2)
    inputs, options = logic.evaluationRequest(p)
    assert inputs.fixed is n.fixed and inputs.transform is n.good and inputs.threshold is None
    assert (options.percentile, options.min_dice, options.max_hausdorff, options.max_tre, options.max_folding) == (
        90.0, None, 3.5, None, 0.2)
    assert options.scene_outputs and not options.snapshots and inputs.case_id == "moving"
    p.useThreshold, p.fixedThreshold, p.movingThreshold = True, Range(1.5, 2.5), Range(-1, 7)
    inputs, _options = logic.evaluationRequest(p)
    assert inputs.threshold == ["1.5:2.5", "-1.0:7.0"]
    # the newer checks and the tolerance profile: off / none unless ticked / given
    assert (options.max_tre_point, options.max_hausdorff_max, options.max_mean_distance, options.min_nsd,
            options.max_ndv, options.profile) == (None,) * 6
    p.checkTrePoint, p.maxTrePoint, p.checkHausdorffMax, p.maxHausdorffMax = True, 4.5, True, 9.0
    p.checkMeanDistance, p.maxMeanDistance, p.checkNsd, p.minNsd, p.checkNdv, p.maxNdv = True, 1.5, True, 0.7, True, 0.3
    p.profile = " tg132 "
    _inputs, opts = logic.evaluationRequest(p)
    assert (opts.max_tre_point, opts.max_hausdorff_max, opts.max_mean_distance, opts.min_nsd, opts.max_ndv,
            opts.profile) == (4.5, 9.0, 1.5, 0.7, 0.3, "tg132")
    # the threshold clean-up fields reach evaluate (defaults: holes filled, largest component, as the CLI)
    from RegistrationQualityLib.segmentation import Cleanup, cleanup_from_dict

    assert cleanup_from_dict(_options.threshold_cleanup) == Cleanup()
    p.fillHoles, p.largestComponent, p.minIslandCc, p.closingMm = False, True, 2.5, 1.5
    _inputs, options = logic.evaluationRequest(p)
    assert cleanup_from_dict(options.threshold_cleanup) == Cleanup(fill_holes=False, largest_component=True,
                                                                   min_island_cc=2.5, closing_mm=1.5)


def test_report_json_roundtrip_and_folder_choice(tmp_path):
    from RegistrationQualityLib import panel
    from RegistrationQualityLib.errors import BadInputError

    report = {"verdict": "pass", "x": np.float32(1.5), "y": float("nan"), "z": np.arange(3)}
    assert panel.report_from_json(panel.report_json(report)) == {"verdict": "pass", "x": 1.5, "y": None,
                                                                  "z": [0, 1, 2]}
    with pytest.raises(BadInputError, match="saved report: not a RegistrationQuality report"):
        panel.report_from_json("[1]")
    assert panel.report_folder(tmp_path / "new") == tmp_path / "new"
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "report.json").write_text("{}")
    assert panel.report_folder(tmp_path / "old", "x") == tmp_path / "old"
    assert panel.report_folder(tmp_path, "a b/c") == tmp_path / "RegistrationQuality-a_b_c"


@pytest.mark.skipif(not (SAMPLE_CASE / "case.json").is_file(), reason="sample case not generated")
def test_panel_compute_on_the_sample_case(ctx):
    """The self-test's path, headless: loadSampleCase() then compute(); the good registration's TRE equals
    transformix's (case.json), the imperfect one fails a limit halfway between them."""
    spec = json.loads((SAMPLE_CASE / "case.json").read_text(encoding="utf-8"))
    measured = spec["measured_tre_mm"]
    logic = headless_logic(ctx)
    nodes = logic.loadSampleCase()
    names = nodes["fixed_segmentation"].GetSegmentation()
    assert {names.GetNthSegment(i).GetName() for i in range(names.GetNumberOfSegments())} == set(
        spec["labels"].values())
    assert nodes["fixed_landmarks"].GetNumberOfControlPoints() == nodes["moving_landmarks"].GetNumberOfControlPoints()
    p = ParameterBag(fixedVolume=nodes["fixed"], movingVolume=nodes["moving"], transform=nodes["good"],
                     fixedSegmentation=nodes["fixed_segmentation"], movingSegmentation=nodes["moving_segmentation"],
                     fixedLandmarks=nodes["fixed_landmarks"], movingLandmarks=nodes["moving_landmarks"],
                     checkTre=True, maxTre=0.5 * (measured["good"]["mean"] + measured["imperfect"]["mean"]))
    p.fixedThreshold = Range(*logic.thresholdDefaults(p.fixedVolume)["suggested"])
    p.movingThreshold = Range(*logic.thresholdDefaults(p.movingVolume)["suggested"])
    result = logic.compute(p)
    rep = result.report
    assert rep["landmarks"]["after"]["mean_mm"] == pytest.approx(measured["good"]["mean"], abs=0.05)
    assert rep["landmarks"]["before"]["mean_mm"] == pytest.approx(measured["identity"]["mean"], abs=0.05)
    assert result.verdict == "pass"
    assert {e["name"] for e in rep["segments"]} == set(spec["labels"].values()) | {"threshold"}
    for entry in rep["segments"]:
        assert entry["after"]["dice"] > entry["before"]["dice"], entry["name"]
    p.transform = nodes["imperfect"]
    result = logic.compute(p)
    assert result.report["landmarks"]["after"]["mean_mm"] == pytest.approx(measured["imperfect"]["mean"], abs=0.05)
    assert result.verdict == "fail"


# ---------------------------------------------------------------------------------------------------
# Slicer rules the module file must follow (each models Slicer's source; Testing/test_slicer_wrapper.py runs the
# real wrapper code when a Slicer source checkout is given)
# ---------------------------------------------------------------------------------------------------
def test_node_unions_need_none():
    """Node unions need None. Base/Python/slicer/parameterNodeWrapper/serializers.py: the UnionSerializer's
    default is its first member's (``default``, line 897 at v5.8.1 / 977 at v5.10.0), a NodeSerializer's is None
    (line 396 / 399), and ``_findBestSerializer`` (line 916 / 996) finds no node member whose ``canSerialize``
    takes NoneType, so writing the default at construction (wrapper.py ``_initMethod`` line 138 / 138) raises
    ``TypeError: Unable to write value 'None'``. A NoneSerializer member (line 828 / 899) takes it; util.py
    ``isNodeOrUnionOfNodes`` (line 56 / 56): "Union[NodeType1, NodeType2, ..., None] ... the None is necessary"."""
    bad = "Union[vtkMRMLSegmentationNode, vtkMRMLLabelMapVolumeNode]"
    with pytest.raises(TypeError, match="Unable to write value 'None'"):
        slicer_serializer(evaluated(bad)).write(field_default(bad, None))
    good = "Union[vtkMRMLSegmentationNode, vtkMRMLLabelMapVolumeNode, None]"
    serializer = slicer_serializer(evaluated(good))
    import slicer

    for value in (None, slicer.vtkMRMLSegmentationNode(), slicer.vtkMRMLLabelMapVolumeNode()):
        serializer.write(value)
    with pytest.raises(TypeError):  # a scalar volume is neither member (IsInstance, validators.py line 78 / 78)
        serializer.write(slicer.vtkMRMLScalarVolumeNode())
    # every field of the module's class: its default passes its serializer (ParameterBag builds them all)
    unions = [name for name, (a, _d) in parameter_fields().items() if a.startswith("Union[")]
    assert unions == ["fixedSegmentation", "movingSegmentation"]
    bag = ParameterBag()
    assert bag.fixedSegmentation is None and bag.fixedThreshold == Range(0, 0) and bag.percentile == 95.0
    with pytest.raises(ValueError):  # WithinRange (validators.py line 93 / 93)
        bag.minDice = 1.5
    with pytest.raises(TypeError):
        bag.fixedVolume = slicer.vtkMRMLSegmentationNode()


NATIVE_WARNINGS_PROBE = r"""
import json, sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, sys.argv[1])  # Testing/
import SimpleITK as sitk
import slicer
from vtkmodules.vtkCommonCore import vtkLogger, vtkObject

from conftest import write_shift_case
from RegistrationQualityLib import elastix, io
from RegistrationQualityLib.context import LOGIC_CLASSES, Context
from RegistrationQualityLib.evaluate import EvaluationInputs, EvaluationOptions, evaluate
from RegistrationQualityLib.transforms import load_transform


def state():
    return [vtkObject.GetGlobalWarningDisplay(), vtkLogger.GetCurrentVerbosityCutoff(),
            bool(sitk.ProcessObject.GetGlobalWarningDisplay())]


# the application's scene, application logic and module logics (slicer-core's classes stand in for them)
scene = slicer.vtkMRMLScene()
app = slicer.vtkSlicerApplicationLogic()
app.SetMRMLScene(scene)
colors = app.GetColorLogic()
colors.SetMRMLScene(scene)
colors.AddDefaultColorNodes()
app.SetModuleLogic("Colors", colors)
modules = {"colors": SimpleNamespace(logic=lambda: colors)}
for name, class_name in LOGIC_CLASSES.items():
    logic = getattr(slicer, class_name)()
    logic.SetMRMLApplicationLogic(app)
    logic.SetMRMLScene(scene)
    app.SetModuleLogic(name, logic)
    modules[name.lower()] = SimpleNamespace(logic=lambda logic=logic: logic)
application = SimpleNamespace(mrmlScene=scene, app=SimpleNamespace(applicationLogic=lambda: app),
                              modules=SimpleNamespace(**modules))
out = {"start": state()}
ctx = Context.from_application(application)
case = write_shift_case(Path(sys.argv[2]))
io._sitk(), elastix._sitk()
result = evaluate(ctx, EvaluationInputs(fixed=str(case / "fixed.nrrd"), moving=str(case / "moving.nrrd"),
                                         transform=str(case / "good.tfm")), EvaluationOptions(snapshots=False))
out["application"] = state()
out["verdict"] = result.verdict
Context.headless()
out["headless"] = state()
print(json.dumps(out))
"""


def test_no_process_wide_silencing_in_the_application(tmp_path):
    """The Error Log: Slicer's application routes VTK's output window and vtkLogger into the Error Log for every
    module, so the library must not switch them off process-wide when it runs in the application. Here, in a fresh
    process: a whole evaluation on a context from ``Context.from_application`` (loading through io and the elastix
    helpers' SimpleITK) leaves VTK's global warning display, vtkLogger's verbosity cutoff (its stderr sink) and SimpleITK's global
    warning display as they were; ``Context.headless()`` (a headless entry point) turns them off."""
    import os
    import subprocess
    import sys

    env = {**os.environ}
    env.pop("RQ_NATIVE_WARNINGS", None)
    done = subprocess.run([sys.executable, "-c", NATIVE_WARNINGS_PROBE, str(ROOT / "Testing"), str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    from vtkmodules.vtkCommonCore import vtkLogger

    assert out["start"][0] == 1 and out["start"][2] is True and out["start"][1] != vtkLogger.VERBOSITY_OFF
    assert out["application"] == out["start"], out
    assert out["verdict"] in ("pass", "no checks")
    assert out["headless"] == [0, vtkLogger.VERBOSITY_OFF, False]


class LayoutManagerModel:
    """Which view nodes Slicer's layout manager makes view widgets for (Libs/MRML/Widgets):

    - a view node added outside a batch process, without a parent layout node: qMRMLLayoutManager.cxx
      ``qMRMLLayoutManagerPrivate::onNodeAddedEvent`` (lines 495-533 at v5.8.1, 485-521 at v5.10.0: "No explicit
      parent layout node means that view is handled by the main Slicer layout") and qMRMLLayoutViewFactory.cxx
      ``onNodeAdded`` (lines 351-367 / 338-355);
    - at the end of every batch process (scene load, import, close), every view node of the scene, parent or not:
      qMRMLLayoutViewFactory.cxx ``onSceneModified`` (lines 449-465 / 435-449), connected to
      ``vtkMRMLScene::EndBatchProcessEvent`` (lines 269-270 / 257).
    """

    def __init__(self, scene):
        import vtk

        self.scene = scene
        self.views: set = set()

        @vtk.calldata_type(vtk.VTK_OBJECT)
        def node_added(caller, event, node):
            if scene.IsBatchProcessing():
                return
            if node.IsA("vtkMRMLAbstractViewNode") and not node.GetParentLayoutNode():
                self.views.add(node.GetID())

        def scene_modified(caller, event):
            for i in range(scene.GetNumberOfNodes()):
                node = scene.GetNthNode(i)
                if node.IsA("vtkMRMLAbstractViewNode"):
                    self.views.add(node.GetID())

        self._callbacks = (node_added, scene_modified)
        self.tags = [scene.AddObserver(scene.NodeAddedEvent, node_added),
                     scene.AddObserver(scene.EndBatchProcessEvent, scene_modified)]

    def remove(self):
        for tag in self.tags:
            self.scene.RemoveObserver(tag)


def test_snapshot_renderer_views_never_join_the_main_layout(ctx, shift_nodes):
    """The snapshot renderer's slice node gets no view widget from the layout manager (rules in
    :class:`LayoutManagerModel`): it has a parent layout node when it is added, and it leaves the scene when a batch
    process starts (so none exists when one ends); snapshots still work after a scene close."""
    import slicer

    from RegistrationQualityLib import rendering

    layout = LayoutManagerModel(ctx.scene)
    try:
        control = slicer.vtkMRMLSliceLogic()
        control.SetMRMLScene(ctx.scene)
        red = control.AddSliceNode("Red")  # a main-layout view, for comparison: the model sees it
        assert red.GetID() in layout.views
        n = shift_nodes
        centre = [0.5 * (a + b) for a, b in zip(*[iter(n.fixed.GetImageData().GetBounds())] * 2)]
        renderer = rendering.get_renderer(ctx)
        pixels = renderer.render_slice(n.fixed, "axial", centre, 64, 48)
        assert pixels.shape == (48, 64, 3) and pixels.max() > 0
        own = set(renderer.own_node_ids)
        assert renderer.slice_node.GetID() in own and renderer.slice_node.GetParentLayoutNode() is not None
        assert not own & layout.views
        ctx.scene.StartState(ctx.scene.BatchProcessState)  # a scene load / import
        ctx.scene.EndState(ctx.scene.BatchProcessState)
        assert not own & layout.views and all(ctx.scene.GetNodeByID(i) is None for i in own)
        again = rendering.get_renderer(ctx)
        assert again is not renderer
        assert np.array_equal(again.render_slice(n.fixed, "axial", centre, 64, 48), pixels)
        ctx.scene.Clear(0)  # File / Close scene: slice nodes are singletons and would survive it
        assert not set(again.own_node_ids) & layout.views
        assert not {i for i in layout.views if ctx.scene.GetNodeByID(i) is not None
                    and ctx.scene.GetNodeByID(i).GetLayoutName().startswith("RQSnapshot")}
    finally:
        layout.remove()
        rendering.close_renderer(ctx)


# SampleDataLogic.registerCustomSampleDataSource's parameters, identical at both tags
# (Modules/Scripted/SampleData/SampleData.py line 457 at v5.8.1, line 510 at v5.10.0); loadFileType is the
# deprecated spelling of loadFileTypes ("deprecated, use loadFileTypes instead", line 475 / 528).
REGISTER_SAMPLE_DATA_PARAMETERS = ("category", "sampleName", "uris", "fileNames", "nodeNames", "customDownloader",
                                   "thumbnailFileName", "loadFileTypes", "loadFiles", "loadFileProperties",
                                   "checksums", "loadFileType")


def sample_data_registration(ctx, parameters=REGISTER_SAMPLE_DATA_PARAMETERS):
    """Run the module file's registerSampleData() against a SampleData stand-in whose
    registerCustomSampleDataSource has exactly ``parameters`` (keyword arguments, all defaulted); returns the
    arguments it got and the calls the custom downloader made to slicer.util.setSliceViewerLayers."""
    import inspect
    import sys

    recorded, layers = {}, []
    signature = inspect.Signature([inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)
                                   for name in parameters])

    def register(*args, **kwargs):
        recorded.update(signature.bind(*args, **kwargs).arguments)  # TypeError on an unknown argument

    stand_in = SimpleNamespace(SampleDataLogic=SimpleNamespace(registerCustomSampleDataSource=register))
    wanted = {"sampleCaseFolder", "sampleCaseSpec", "registerSampleData", "fileSha256", "downloadSampleCase"}
    body = [n for n in module_tree().body if (isinstance(n, ast.FunctionDef) and n.name in wanted)
            or (isinstance(n, ast.Assign) and ast.unparse(n.targets[0]) in ("SAMPLE_CATEGORY", "SAMPLE_NAME"))]
    namespace = {"__file__": str(MODULE_FILE), "os": __import__("os"), "logging": __import__("logging"),
                 "RegistrationQualityLogic": lambda: headless_logic(ctx),
                 "slicer": SimpleNamespace(util=SimpleNamespace(
                     setSliceViewerLayers=lambda **kwargs: layers.append(kwargs)))}
    exec(compile(ast.Module(body=body, type_ignores=[]), str(MODULE_FILE), "exec"), namespace)
    saved = sys.modules.get("SampleData")
    sys.modules["SampleData"] = stand_in
    try:
        namespace["registerSampleData"]()
    finally:
        if saved is None:
            del sys.modules["SampleData"]
        else:
            sys.modules["SampleData"] = saved
    return recorded, layers


@pytest.mark.skipif(not (SAMPLE_CASE / "case.json").is_file(), reason="sample case not generated")
def test_sample_data_registration_matches_slicer(ctx):
    """Sample Data: the arguments bind to registerCustomSampleDataSource's signature (above); SampleDataSource
    requires as many file names, node names, file types and checksums as URIs (SampleData.py line 205 / 205);
    checksums are ``SHA256:<digest>`` of the files (``<algo>:<digest>``, line 474 / 527, checked against the cached
    copy by downloadFile, line 957-969 / 1106-1118); the current ``loadFileTypes`` is used. The button runs the
    custom downloader (``s.customDownloader(s)``, line 393 / 446), which must show the fixed image and fit it, as
    Sample Data does for its own entries."""
    import hashlib
    from urllib.parse import unquote, urlparse

    args, layers = sample_data_registration(ctx)
    assert "loadFileType" not in args and "loadFileTypes" in args
    uris = args["uris"]
    assert len(uris) == len(args["fileNames"]) == len(args["nodeNames"]) == len(args["loadFileTypes"]) == len(
        args["checksums"]) == 6
    for uri, checksum in zip(uris, args["checksums"]):
        path = Path(unquote(urlparse(uri).path))
        assert path.is_file() and path.parent == SAMPLE_CASE
        assert checksum == "SHA256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    assert set(args["loadFileTypes"]) == {"VolumeFile", "SegmentationFile", "MarkupsFile"}
    assert Path(args["thumbnailFileName"]).is_file()
    nodes = args["customDownloader"](SimpleNamespace(sampleName=args["sampleName"]))
    assert nodes["fixed"].GetName() == "RQ fixed DWI"
    assert layers == [{"background": nodes["fixed"], "foreground": None, "fit": True}]
    # an argument the signature lacks fails (the stand-in binds like Python calls the real function)
    with pytest.raises(TypeError):
        sample_data_registration(ctx, parameters=tuple(p for p in REGISTER_SAMPLE_DATA_PARAMETERS if p != "checksums"))


def test_widget_sets_its_attributes_before_slicer_runs_setup():
    """ScriptedLoadableModuleWidget.__init__ calls ``self.setup()`` itself when built without a parent
    (Base/Python/slicer/ScriptedLoadableModule.py lines 106-107 at v5.8.1 and v5.10.0), so every attribute the
    widget's own __init__ sets must be set before that call, or it would undo what setup() made."""
    init = next(n for n in module_class("RegistrationQualityWidget").body
                if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    calls = [i for i, stmt in enumerate(init.body) if "ScriptedLoadableModuleWidget.__init__" in ast.unparse(stmt)]
    assignments = [i for i, stmt in enumerate(init.body) if isinstance(stmt, ast.Assign)
                   and ast.unparse(stmt.targets[0]).startswith("self.")]
    assert len(calls) == 1 and assignments and max(assignments) < calls[0] == len(init.body) - 1
    assigned = {ast.unparse(init.body[i].targets[0]) for i in assignments}
    assert {"self.logic", "self.ui", "self._parameterNode", "self._parameterNodeGuiTag"} <= assigned


def test_reload_also_reloads_the_library():
    """Developer mode's Reload (ScriptedLoadableModuleWidget.onReload -> slicer.util.reloadScriptedModule, util.py
    line 1399 at v5.8.1 / 1398 at v5.10.0) re-executes only the module file; the widget's onReload drops every
    RegistrationQualityLib module first, so the lazily imported library is read again."""
    import sys

    calls = []
    fn = next(n for n in module_class("RegistrationQualityWidget").body
              if isinstance(n, ast.FunctionDef) and n.name == "onReload")
    namespace = {"ScriptedLoadableModuleWidget": SimpleNamespace(onReload=lambda self: calls.append(
        sorted(n for n in sys.modules if n.split(".")[0] == "RegistrationQualityLib")))}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), str(MODULE_FILE), "exec"), namespace)
    import RegistrationQualityLib.panel  # noqa: F401 - loaded, so there is something to drop

    saved = {n: m for n, m in sys.modules.items() if n.split(".")[0] == "RegistrationQualityLib"}
    sys.modules["RegistrationQualityLibX"] = SimpleNamespace()  # a name that only starts alike stays
    try:
        namespace["onReload"](SimpleNamespace())
        assert calls == [[]] and "RegistrationQualityLibX" in sys.modules
    finally:
        sys.modules.update(saved)
        del sys.modules["RegistrationQualityLibX"]
