#!/usr/bin/env python3
"""Render the Registration Quality panel (the module's .ui) to a PNG for the docs, without Slicer.

Development helper, not a dependency: needs PySide6-Essentials (``pip install PySide6-Essentials``) and runs
offscreen (``QT_QPA_PLATFORM=offscreen`` is set here). Slicer's custom widgets (qMRMLWidget,
ctkCollapsibleButton, ctkRangeWidget, qMRMLNodeComboBox, qMRMLTableView) are replaced by plain Qt placeholders
of the same class name. The panel is filled as it looks after "Load sample case" and "Compute": node names of
the sample case, threshold ranges from each image's histogram and the results table computed headless by the
library (``RegistrationQualityLib.panel``) on ``Resources/SampleCase``.

    python scripts/render_panel_screenshot.py [--output docs/images/panel.png] [--width 500] [--case DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UI_FILE = ROOT / "RegistrationQuality" / "Resources" / "UI" / "RegistrationQuality.ui"
CASE = ROOT / "Resources" / "SampleCase"


def sample_case_state(case: Path = CASE):
    """Node names, threshold ranges and the summary rows of the sample case's good registration (headless)."""
    from RegistrationQualityLib import io, panel
    from RegistrationQualityLib.context import Context
    from RegistrationQualityLib.evaluate import evaluate

    spec = json.loads((case / "case.json").read_text(encoding="utf-8"))
    ctx = Context.headless()
    fixed = io.load_volume(ctx, case / spec["fixed"], name="RQ fixed DWI")
    moving = io.load_volume(ctx, case / spec["moving"], name="RQ moving CBF")
    good = io.load_transform(ctx, case / spec["registrations"]["good"]["transform"], name="RQ good registration")
    segs = {side: io.load_segmentation(ctx, case / spec[f"{side}_labels"], name=f"RQ {side} segmentation")
            for side in ("fixed", "moving")}
    for seg in segs.values():
        s = seg.GetSegmentation()
        for i in range(s.GetNumberOfSegments()):
            s.GetNthSegment(i).SetName(spec["labels"][str(s.GetNthSegment(i).GetLabelValue())])
    marks = {side: io.landmarks_to_node(ctx, io.read_landmarks(case / spec[f"{side}_landmarks"]),
                                        name=f"RQ {side} landmarks") for side in ("fixed", "moving")}
    thresholds = {"fixed": panel.threshold_defaults(fixed), "moving": panel.threshold_defaults(moving)}
    limit = 0.5 * (spec["measured_tre_mm"]["good"]["mean"] + spec["measured_tre_mm"]["imperfect"]["mean"])
    inputs, options = panel.evaluation_request(
        fixed, moving, transform=good, fixed_segmentation=segs["fixed"], moving_segmentation=segs["moving"],
        fixed_landmarks=marks["fixed"], moving_landmarks=marks["moving"],
        fixed_threshold=thresholds["fixed"]["suggested"], moving_threshold=thresholds["moving"]["suggested"],
        max_tre=round(limit, 1))
    result = evaluate(ctx, inputs, options)
    names = {"fixedVolumeSelector": fixed.GetName(), "movingVolumeSelector": moving.GetName(),
             "registeredVolumeSelector": "None", "transformSelector": good.GetName(),
             "fixedSegmentationSelector": segs["fixed"].GetName(),
             "movingSegmentationSelector": segs["moving"].GetName(),
             "fixedLandmarksSelector": marks["fixed"].GetName(), "movingLandmarksSelector": marks["moving"].GetName()}
    return names, thresholds, panel.summary_rows(result.report), result, round(limit, 1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(ROOT / "docs" / "images" / "panel.png"))
    parser.add_argument("--width", type=int, default=500)
    parser.add_argument("--case", default=str(CASE), help="sample case folder (with case.json)")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    names, thresholds, rows, result, tre_limit = sample_case_state(Path(args.case))

    from PySide6.QtCore import Property, QFile, Qt, qInstallMessageHandler
    from PySide6.QtUiTools import QUiLoader
    from PySide6.QtWidgets import (
        QApplication,
        QComboBox,
        QDoubleSpinBox,
        QGroupBox,
        QHBoxLayout,
        QHeaderView,
        QSlider,
        QTableWidget,
        QTableWidgetItem,
        QWidget,
    )

    def quiet(mode, context, message):  # the placeholders lack Slicer's signals: drop the .ui connection warnings
        if "No such signal" not in message and "QObject::connect" not in message:
            sys.stderr.write(message + "\n")

    qInstallMessageHandler(quiet)
    app = QApplication.instance() or QApplication(sys.argv[:1])

    class qMRMLWidget(QWidget):  # noqa: N801 - Slicer's class names
        pass

    class ctkCollapsibleButton(QGroupBox):  # noqa: N801
        def _get_text(self):
            return self.title()

        def _set_text(self, text):
            self.setTitle("▼ " + text)

        text = Property(str, _get_text, _set_text)

    class ctkRangeWidget(QWidget):  # noqa: N801
        def __init__(self, parent=None):
            super().__init__(parent)
            lay = QHBoxLayout(self)
            lay.setContentsMargins(0, 0, 0, 0)
            self.low, self.high = QDoubleSpinBox(), QDoubleSpinBox()
            self.slider = QSlider(Qt.Horizontal)
            for w in (self.low, self.slider, self.high):
                lay.addWidget(w)

        def set_state(self, bounds, values, decimals):
            for box in (self.low, self.high):
                box.setDecimals(decimals)
                box.setRange(*bounds)
            self.low.setValue(values[0])
            self.high.setValue(values[1])
            self.slider.setRange(0, 100)
            self.slider.setValue(int(100 * (values[0] - bounds[0]) / max(bounds[1] - bounds[0], 1e-9)))

    class qMRMLNodeComboBox(QComboBox):  # noqa: N801
        pass

    class qMRMLTableView(QTableWidget):  # noqa: N801
        pass

    loader = QUiLoader()
    for cls in (qMRMLWidget, ctkCollapsibleButton, ctkRangeWidget, qMRMLNodeComboBox, qMRMLTableView):
        loader.registerCustomWidget(cls)
    ui_file = QFile(str(UI_FILE))
    ui_file.open(QFile.ReadOnly)
    panel_widget = loader.load(ui_file)
    ui_file.close()
    if panel_widget is None:
        raise SystemExit(f"could not load {UI_FILE}: {loader.errorString()}")

    def child(name):
        w = panel_widget.findChild(QWidget, name)
        if w is None:
            raise SystemExit(f"{name} not found in the .ui")
        return w

    for name, text in names.items():
        child(name).addItem(text)
    for side in ("fixed", "moving"):
        d = thresholds[side]
        child(f"{side}ThresholdRangeWidget").set_state(d["bounds"], d["suggested"], d["decimals"])
    child("checkTreCheckBox").setChecked(True)
    child("maxTreSpinBox").setEnabled(True)
    child("maxTreSpinBox").setValue(tre_limit)
    child("computeButton").setEnabled(True)
    child("saveReportButton").setEnabled(True)
    child("progressBar").hide()
    child("statusLabel").setText(f"Verdict: {result.verdict.upper()}")
    table = child("resultsTableView")
    headers = ["Measure", "Subject", "Before", "After", "Unit", "Check"]
    keys = ["measure", "subject", "before", "after", "unit", "check"]
    # the rows a reader looks at first: every Dice, one Hausdorff, the TRE, folding and NCC
    shown = [r for r in rows if r["measure"] in ("Dice", "TRE mean", "TRE max", "Folding (J ≤ 0)", "NCC")
             or (r["measure"].startswith("Hausdorff") and r["subject"] == "threshold")]
    table.setColumnCount(len(headers))
    table.setRowCount(len(shown))
    table.setHorizontalHeaderLabels(headers)
    for i, row in enumerate(shown):
        for j, key in enumerate(keys):
            table.setItem(i, j, QTableWidgetItem(row[key]))
    table.verticalHeader().hide()
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
    table.setMinimumHeight(330)

    panel_widget.resize(args.width, 100)
    panel_widget.adjustSize()
    panel_widget.resize(args.width, panel_widget.sizeHint().height())
    panel_widget.show()
    app.processEvents()
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not panel_widget.grab().save(str(out)):
        raise SystemExit(f"could not write {out}")
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
