"""The case page ``report.html``: one self-contained page (plain HTML + CSS + inline SVG, images as data URIs,
no scripts, no external resources) that a clinician can read at a glance."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from .charts import jacobian_histogram_svg, tre_chart_svg
from .markup import TOOL_NAME, _change, _data_uri, _digits, _e, _fmt, _table
from .rows import CHECK_NAMES, _is_number
from .style import BLUE, CSS, VERMILLION
from .surface_section import surface_section

# Segment metrics shown in the table: key, column title, unit, True if larger is better.
# (Jaccard = Dice / (2 - Dice) adds nothing at a glance; it is in report.json and metrics.csv.)
SEGMENT_COLUMNS = (
    ("dice", "Dice", "", True),
    ("hausdorff_percentile_mm", "HD{p}", "mm", False),
    ("hausdorff_mm", "Hausdorff max", "mm", False),
    ("mean_surface_distance_mm", "Mean surface dist.", "mm", False),
)
SIMILARITY_METRICS = (  # key, title, higher is better, unit for formatting ("" = 3 decimals, None = free)
    ("ncc", "Normalised cross-correlation", True, ""),
    ("nmi", "Normalised mutual information", True, ""),
    ("mse", "Mean squared error", False, None),
    ("mae", "Mean absolute error", False, None),
)
# Intensity differences mean something only between images in the same units: information only (uncoloured)
# unless the user declares the same modality (evaluate --same-modality, report.json options.same_modality).
SAME_MODALITY_ONLY = ("mse", "mae")


def _segment_name(name) -> str:
    """A segment's display name: a bare label value reads as "label 3"."""
    text = "" if name is None else str(name)
    return f"label {text}" if text.isdigit() else text


def _check_text(check: Mapping) -> str:
    name = check.get("name", "")
    title, unit, symbol = CHECK_NAMES.get(name, (name.replace("_", " "), "", ""))
    symbol = {">=": "≥", "<=": "≤", ">": ">", "<": "<"}.get(check.get("comparison"), symbol)
    subject = check.get("subject")
    if subject and name in ("min_dice", "max_hausdorff"):
        what = f"{_e(title)} of <b>{_e(_segment_name(subject))}</b>"
    elif subject:
        what = f"{_e(title)} ({_e(subject)})"
    else:
        what = _e(title)
    value = check.get("value")
    if value is None:
        shown = "could not be computed"
    else:
        shown = f"is {_fmt(value, unit, _digits(unit))}"
    return f"{what} {shown}; required {symbol} {_fmt(check.get('limit'), unit, _digits(unit))}"


def _verdict_block(report: Mapping) -> str:
    verdict = report.get("verdict") or "no checks"
    checks = report.get("checks") or []
    failing = [c for c in checks if not c.get("passed")]
    cls = {"pass": "pass", "fail": "fail"}.get(verdict, "none")
    word = {"pass": "✔ PASS", "fail": "✘ FAIL"}.get(verdict, "NO CHECKS")
    if verdict == "pass":
        what = f"All {len(checks)} requested check{'s' if len(checks) != 1 else ''} passed."
    elif verdict == "fail":
        what = f"{len(failing)} of {len(checks)} requested check{'s' if len(checks) != 1 else ''} failed."
    else:
        what = "No pass/fail limits were requested: read the numbers below."
    has_list = verdict == "fail" and failing
    out = [f'<div class="banner {cls}{" has-list" if has_list else ""}" role="status" id="verdict">'
           f'<div class="word">{word}</div><div class="what">{_e(what)}</div></div>']
    if has_list:
        out.append('<ul class="failing">' + "".join(f"<li>{_check_text(c)}</li>" for c in failing) + "</ul>")
    return "".join(out)


def _tiles(report: Mapping) -> str:
    tiles = []
    segments = [s for s in report.get("segments") or [] if isinstance(s.get("after"), Mapping)]
    scored = [s for s in segments if _is_number(s["after"].get("dice"))]
    if scored:
        worst = min(scored, key=lambda s: s["after"]["dice"])
        before = (worst.get("before") or {}).get("dice")
        tiles.append(("Lowest Dice after", _fmt(worst["after"]["dice"], "", 3),
                      f"{_e(_segment_name(worst.get('name')))} · before {_fmt(before, '', 3)}"))
    scored = [s for s in segments if _is_number(s["after"].get("hausdorff_percentile_mm"))]
    if scored:
        worst = max(scored, key=lambda s: s["after"]["hausdorff_percentile_mm"])
        before = (worst.get("before") or {}).get("hausdorff_percentile_mm")
        p = _percentile_label(report)
        tiles.append((f"Largest HD{p} after", _fmt(worst["after"]["hausdorff_percentile_mm"], "mm", 2),
                      f"{_e(_segment_name(worst.get('name')))} · before {_fmt(before, 'mm', 2)}"))
    landmarks = report.get("landmarks") or {}
    after = landmarks.get("after") or {}
    if _is_number(after.get("mean_mm")):
        before = (landmarks.get("before") or {}).get("mean_mm")
        tiles.append(("Mean TRE after", _fmt(after["mean_mm"], "mm", 2),
                      f"max {_fmt(after.get('max_mm'), 'mm', 2)} · before: mean {_fmt(before, 'mm', 2)}"))
    jacobian = (report.get("deformation") or {}).get("jacobian") or {}
    if _is_number(jacobian.get("folding_percent")) or _is_number(jacobian.get("min")):
        tiles.append(("Folding (J ≤ 0)", _fmt(jacobian.get("folding_percent"), "%", 3),
                      f"min J {_fmt(jacobian.get('min'), '', 3)}"))
    if not tiles:
        return ""
    return '<div class="tiles">' + "".join(
        f'<div class="tile"><div class="k">{k}</div><div class="v">{v}</div><div class="d">{d}</div></div>'
        for k, v, d in tiles) + "</div>"


def _percentile_label(report: Mapping) -> str:
    p = (report.get("options") or {}).get("percentile")
    return f"{p:g}" if _is_number(p) else "p"


def _geometry_text(geometry) -> tuple[str, str]:
    if not isinstance(geometry, Mapping):
        return "", ""
    size = geometry.get("size")
    spacing = geometry.get("spacing_mm")
    size_text = " × ".join(str(int(s)) for s in size) if isinstance(size, (list, tuple)) else _e(size)
    spacing_text = (" × ".join(f"{float(s):.3g}" for s in spacing) + " mm") if isinstance(spacing, (list, tuple)) \
        else _e(spacing)
    pixel = geometry.get("pixel_type")
    if pixel:
        size_text += f" <span class='null'>({_e(pixel)})</span>"
    return size_text, _e(spacing_text) if not isinstance(spacing, (list, tuple)) else spacing_text


INPUT_ROLES = (("fixed", "Fixed image"), ("moving", "Moving image"), ("transform", "Transform"),
               ("registered", "Registered image"), ("fixed_segmentation", "Fixed segmentation"),
               ("moving_segmentation", "Moving segmentation"), ("fixed_landmarks", "Fixed landmarks"),
               ("moving_landmarks", "Moving landmarks"))


def _inputs_section(report: Mapping) -> str:
    inputs = report.get("inputs") or {}
    rows = []
    for key, title in INPUT_ROLES:
        item = inputs.get(key)
        if not isinstance(item, Mapping):
            continue
        path = item.get("path") or item.get("node") or ""
        name = os.path.basename(str(path).rstrip("/\\")) or str(path)
        size, spacing = _geometry_text(item.get("geometry"))
        details = []
        if item.get("kind"):
            details.append(_e(item["kind"]))
        if item.get("count") is not None:
            details.append(f"{_e(item['count'])} points")
        if size:
            details.append(f"{size}; {spacing}")
        rows.append((_e(title), f'<span class="path" title="{_e(path)}">{_e(name)}</span>', "; ".join(details)))
    threshold = inputs.get("threshold")
    if threshold:
        text = ", ".join(str(t) for t in threshold) if isinstance(threshold, (list, tuple)) else str(threshold)
        rows.append(("Threshold", _e(text), "segmentations made by thresholding the images" +
                     _threshold_details(report)))
    source = report.get("segments_source")
    if source and not threshold:
        rows.append(("Segments from", _e(source), ""))
    if not rows:
        return ""
    return '<section id="inputs"><h2>Inputs</h2>' + _table(("Role", "File", "Details"), rows) + "</section>"


def _threshold_details(report: Mapping) -> str:
    """"; fixed Otsu: > 38.9 (1073 cc; raw 1065 cc); moving ...; clean-up: largest component, holes filled"."""
    from ..segmentation import cleanup_from_dict

    entry = next((e for e in report.get("segments") or [] if isinstance(e, Mapping) and e.get("threshold")), None)
    if entry is None:
        return ""

    def g(v):
        return "?" if not _is_number(v) else f"{v:.4g}"

    parts = []
    for side in ("fixed", "moving"):
        t = entry["threshold"].get(side) or {}
        lo, hi = t.get("lower"), t.get("upper")
        if t.get("method") == "otsu" and lo is not None:
            text = f"Otsu: > {g(lo)}"
        else:
            text = " ≤ ".join([g(lo)] * (lo is not None) + ["v"] + [g(hi)] * (hi is not None))
        if t.get("volume_cc") is not None:
            text += f" ({g(t['volume_cc'])} cc; raw {g(t.get('raw_volume_cc'))} cc)"
        parts.append(f"{side} {text}")
    if entry["threshold"].get("after_from"):
        parts.append(f"after: {entry['threshold']['after_from']}")
    cleanup = entry["threshold"].get("cleanup")
    if isinstance(cleanup, Mapping):
        try:
            parts.append(f"clean-up: {cleanup_from_dict(dict(cleanup))}")
        except Exception:  # a hand-edited report.json: show it as it is
            parts.append(f"clean-up: {dict(cleanup)}")
    return "; " + _e("; ".join(parts))


def _snapshots_section(report: Mapping, snapshot_relpaths, base_dir) -> str:
    snapshots = report.get("snapshots") or []
    if not snapshots:
        return ""
    out = ['<section id="snapshots"><h2>Snapshots</h2><div class="snaps">']
    for number, snap in enumerate(snapshots):
        rel = str(snap.get("file", ""))
        source = None
        if snapshot_relpaths and rel in snapshot_relpaths:
            source = snapshot_relpaths[rel]
        elif base_dir is not None:
            source = Path(base_dir) / rel
        uri = _data_uri(source) if source is not None else None
        title, caption = snap.get("title") or Path(rel).stem, snap.get("caption") or ""
        # the image is embedded; the link opens the full-size file when the page sits in its report folder
        image = (f'<a href="{_e(rel)}"><img src="{uri}" alt="{_e(title)}"></a>' if uri else
                 f'<div class="missing">image {_e(rel)} is not available</div>')
        cls = ' class="lead"' if number == 0 else ""
        out.append(f"<figure{cls}>{image}<figcaption><b>{_e(title)}</b>"
                   f"{'. ' + _e(caption) if caption else ''}</figcaption></figure>")
    out.append("</div></section>")
    return "".join(out)


def _segments_section(report: Mapping) -> str:
    segments = report.get("segments") or []
    if not segments:
        return ""
    p = _percentile_label(report)
    header = ["Segment"] + [title.format(p=p) + (f"<br><small>{unit}</small>" if unit else "") for _, title, unit, _
                            in SEGMENT_COLUMNS] + ["Volume (cc)<br><small>fixed / moving</small>", "Status"]
    rows = []
    for seg in segments:
        before = seg.get("before") if isinstance(seg.get("before"), Mapping) else {}
        after = seg.get("after") if isinstance(seg.get("after"), Mapping) else {}
        label, name = seg.get("label"), seg.get("name")
        if label is None or str(name) == str(label):
            name = _e(_segment_name(name if name is not None else label))
        else:
            name = f'{_e(name)} <span class="null">(label {_e(label)})</span>'
        cells = [name]
        for key, _title, unit, higher in SEGMENT_COLUMNS:
            cells.append(_change(before.get(key), after.get(key), higher, unit))
        volumes = (f"{_fmt(after.get('reference_volume_cc'), '', 2)} / "
                   f"{_fmt(after.get('compared_volume_cc'), '', 2)}")
        statuses = []
        for stage, values in (("before", before), ("after", after)):
            status = values.get("status")
            if status not in (None, "ok"):
                statuses.append(f'<span class="reason">{stage}: {_e(status)}</span>')
        cells += [volumes, "<br>".join(statuses) or "ok"]
        rows.append(cells)
    numeric = set(range(1, len(SEGMENT_COLUMNS) + 2))
    legend = ('<p class="legend">Each cell reads <i>before → after</i> registration. '
              '<span class="better">▲/▼ in green</span> = improved, <span class="worse">▲/▼ in orange-red</span>'
              ' = worse, — = could not be computed (reason in Status). Volumes are after registration (moving '
              'segmentation resampled onto the fixed grid). Distances are symmetric; directed values are in '
              'report.json.</p>')
    return ('<section id="segments"><h2>Segments</h2>' + _table(header, rows, numeric) + legend + "</section>")


def _landmarks_section(report: Mapping) -> str:
    landmarks = report.get("landmarks")
    if not isinstance(landmarks, Mapping):
        return ""
    before, after = landmarks.get("before") or {}, landmarks.get("after") or {}
    rows = []
    for key, title in (("mean_mm", "Mean"), ("std_mm", "Standard deviation"), ("median_mm", "Median"),
                       ("p95_mm", "95th percentile"), ("max_mm", "Maximum"),
                       ("worst30_mean_mm", "Mean of the worst 30 %")):
        if key in before or key in after:
            rows.append((title, _change(before.get(key), after.get(key), False, "mm")))
    if _is_number(after.get("improved_fraction")):
        rows.append(("Fraction of landmarks whose error decreased", _fmt(after["improved_fraction"], "", 2)))
    count = after.get("count", before.get("count"))
    if count is not None:
        rows.append(("Matched landmarks", _e(count)))
    out = ['<section id="landmarks"><h2>Landmarks: target registration error</h2><div class="two"><div>',
           _table(("TRE", "before → after (mm)"), rows, {1}), "</div><div>"]
    limit = (report.get("options") or {}).get("max_tre")
    chart = tre_chart_svg(landmarks.get("points") or [], limit)
    if chart:
        above = (f'<span class="key" style="background:{VERMILLION}"></span>after, above the limit'
                 if _is_number(limit) else "")
        outside = any(p.get("outside_domain") for p in landmarks.get("points") or [])
        out.append(f'<p class="legend"><span class="key" style="background:#8C8C8C"></span>before'
                   f'<span class="key" style="background:{BLUE}"></span>after registration{above}; worst first.'
                   f'{" * = outside the transform domain." if outside else ""}</p>{chart}')
    out.append("</div></div>")
    unmatched = landmarks.get("unmatched") or {}
    if isinstance(unmatched, Mapping):
        parts = [(title, unmatched.get(key) or []) for key, title in
                 (("fixed_only", "only in the fixed landmarks"), ("moving_only", "only in the moving landmarks"))]
    else:
        parts = [("unmatched", list(unmatched))]
    for title, labels in parts:
        if labels:
            out.append(f'<p class="reason">Not used ({_e(title)}): {_e(", ".join(str(v) for v in labels))}</p>')
    out.append("</section>")
    return "".join(out)


def _deformation_section(report: Mapping) -> str:
    deformation = report.get("deformation")
    if not isinstance(deformation, Mapping):
        return ""
    jac = deformation.get("jacobian") or {}
    rows = [(title, _fmt(jac.get(key), unit, _digits(unit) if unit else 3)) for key, title, unit in (
        ("min", "Minimum J", ""), ("max", "Maximum J", ""), ("mean", "Mean J", ""), ("std", "Standard deviation",
                                                                                     ""),
        ("folding_percent", "Folding (J ≤ 0)", "%"), ("folding_volume_cc", "Folding volume", "cc"),
        ("sdlogj", "SD of log J", ""), ("sdlogj_learn2reg", "SDlogJ, Learn2Reg convention (log(J + 3))", ""),
        ("ndv_percent", "Non-diffeomorphic volume (NDV, 10 stencils)", "%"), ("ndv_cc", "NDV", "cc"))
        if key in jac]
    if jac.get("sdlogj_excluded_voxels"):
        rows.append(("Voxels excluded from SD log J (J ≤ 0)", _fmt(jac.get("sdlogj_excluded_voxels"))))
    displacement = deformation.get("displacement_mm") or {}
    for key, title in (("mean", "Mean displacement"), ("p95", "95th percentile displacement"),
                       ("max", "Maximum displacement")):
        if key in displacement:
            rows.append((title, _fmt(displacement.get(key), "mm", 2)))
    region = jac.get("region")
    out = ['<section id="deformation"><h2>Deformation</h2>']
    if region:
        out.append(f'<p class="sub">Region: {_e(region)}</p>')
    out.append('<div class="two"><div>' + _table(("Quantity", "Value"), rows, {1}) + "</div><div>")
    hist = deformation.get("jacobian_histogram") or {}
    out.append(jacobian_histogram_svg(hist.get("edges") or [], hist.get("counts") or []))
    out.append("</div></div>")
    out.append(_jacobian_regions_table(deformation.get("jacobian_by_region")))
    out.append("</section>")
    return "".join(out)


def _jacobian_regions_table(by_region) -> str:
    """The Jacobian in both named regions (moving domain, fixed mask), side by side."""
    if not isinstance(by_region, Mapping):
        return ""
    regions = [r for r in (by_region.get("moving_domain"), by_region.get("fixed_mask")) if isinstance(r, Mapping)]
    if not regions:
        return ""
    quantities = (("voxels", "Voxels", None), ("min", "Minimum J", ""), ("max", "Maximum J", ""),
                  ("mean", "Mean J", ""), ("folding_voxels", "Folding voxels (J ≤ 0)", None),
                  ("folding_percent", "Folding (J ≤ 0)", "%"), ("folding_volume_cc", "Folding volume", "cc"),
                  ("sdlogj", "SD of log J", ""))
    rows = [(title, *(_fmt(r.get(key), unit or "", (_digits(unit) if unit else 3) if unit is not None else None)
                      for r in regions)) for key, title, unit in quantities]
    header = ("Jacobian by region", *(_e(r.get("region") or "") for r in regions))
    return "<h3>Jacobian in each region</h3>" + _table(header, rows, set(range(1, len(regions) + 1)))


def _similarity_section(report: Mapping) -> str:
    similarity = report.get("similarity")
    if not isinstance(similarity, Mapping):
        return ""
    before, after = similarity.get("before") or {}, similarity.get("after") or {}
    same_modality = bool((report.get("options") or {}).get("same_modality"))
    rows = []
    for key, title, higher, unit in SIMILARITY_METRICS:
        if key not in before and key not in after:
            continue
        if key in SAME_MODALITY_ONLY and not same_modality:
            rows.append((f"{_e(title)} ({_e(key.upper())})",
                         '<span class="info" title="the images are not declared to share intensity units">'
                         "information only (not judged without --same-modality)</span>",
                         _change(before.get(key), after.get(key), higher, unit, judged=False)))
        else:
            rows.append((f"{_e(title)} ({_e(key.upper())})", "higher" if higher else "lower",
                         _change(before.get(key), after.get(key), higher, unit)))
    details = []
    if similarity.get("region"):
        details.append(f"region: {_e(similarity['region'])}")
    if similarity.get("bins"):
        details.append(f"{_e(similarity['bins'])} histogram bins for NMI")
    sub = f'<p class="sub">{"; ".join(details)}</p>' if details else ""
    return ('<section id="similarity"><h2>Image similarity</h2>' + sub +
            _table(("Metric", "Better when", "before → after"), rows, {2}) + "</section>")


def _checks_section(report: Mapping) -> str:
    checks = report.get("checks") or []
    if not checks:
        return ""
    rows = []
    for c in checks:
        name = c.get("name", "")
        title, unit, symbol = CHECK_NAMES.get(name, (name.replace("_", " "), "", ""))
        symbol = {">=": "≥", "<=": "≤", ">": ">", "<": "<"}.get(c.get("comparison"), symbol)
        badge = '<span class="badge pass">✔ pass</span>' if c.get("passed") else \
            '<span class="badge fail">✘ fail</span>'
        subject = _segment_name(c.get("subject")) if name in ("min_dice", "max_hausdorff") else c.get("subject")
        rows.append((_e(title), _e(subject or "—"), _fmt(c.get("value"), unit, _digits(unit)),
                     f"{symbol} {_fmt(c.get('limit'), unit, _digits(unit))}", badge))
    return ('<section id="checks"><h2>Checks</h2>' +
            _table(("Check", "Subject", "Value", "Required", "Result"), rows, {2, 3}) + "</section>")


def _elastix_section(report: Mapping) -> str:
    """The elastix provenance (``elastix.ElastixResult.provenance()``): run, then one row per stage and resolution."""
    elastix = report.get("elastix")
    if not isinstance(elastix, Mapping):
        return ""

    def path(value):
        return f'<span class="path" title="{_e(value)}">{_e(os.path.basename(str(value)))}</span>'

    rows = []
    for key, title in (("elastix_version", "elastix version"), ("fixed_image", "Fixed image (-f)"),
                       ("moving_image", "Moving image (-m)"), ("transform_parameters", "Final TransformParameters"),
                       ("result_image", "Result image (not used unless given as --registered)"),
                       ("total_seconds", "Total time")):
        value = elastix.get(key)
        if value is None:
            continue
        text = _fmt(value, "s") if key == "total_seconds" else (path(value) if key in (
            "transform_parameters", "result_image") else _e(value))
        rows.append((_e(title), text))
    out = ['<section id="elastix"><h2>Registration provenance (elastix)</h2>', _table(None, rows)]
    stage_rows = []
    for stage in elastix.get("stages") or []:
        if not isinstance(stage, Mapping):
            continue
        resolutions = [r for r in stage.get("resolutions") or [] if isinstance(r, Mapping)] or [{}]
        for r in resolutions:
            stage_rows.append((_e(stage.get("index")), _e(stage.get("transform") or "—"),
                               _e(stage.get("metric") or "—"), _e(stage.get("optimizer") or "—"),
                               _fmt(r.get("resolution")), _fmt(r.get("iterations")),
                               _fmt(r.get("final_metric")), _e(r.get("stop") or "—"), _fmt(r.get("seconds"), "s")))
        stage_rows.append(("", _e(f"stage {stage.get('index')} final metric value"), "", "", "", "",
                           _fmt(stage.get("final_metric")), "", _fmt(stage.get("seconds"), "s")))
    if stage_rows:
        out.append(_table(("Stage", "Transform", "Metric", "Optimizer", "Resolution", "Iterations",
                           "Final metric value", "Stopping condition", "Time"), stage_rows, {4, 5, 6, 8}))
    warnings = elastix.get("warnings") or []
    if warnings:
        out.append('<h3>Warnings in the elastix log</h3><ul class="warnings">' +
                   "".join(f'<li class="reason">{_e(w)}</li>' for w in warnings) + "</ul>")
    out.append("</section>")
    return "".join(out)


def _warnings_section(report: Mapping) -> str:
    warnings = report.get("warnings") or []
    if not warnings:
        return ""
    return ('<section id="warnings"><h2>Warnings</h2><ul class="warnings">' +
            "".join(f'<li class="reason">{_e(w)}</li>' for w in warnings) + "</ul></section>")


def _options_section(report: Mapping) -> str:
    options = report.get("options") or {}
    titles = {"percentile": "Hausdorff percentile", "min_dice": "Minimum Dice", "max_hausdorff":
              "Maximum Hausdorff (mm)", "max_tre": "Maximum TRE (mm)", "max_folding": "Maximum folding (%)",
              "min_nsd": "Minimum NSD", "max_ndv": "Maximum non-diffeomorphic volume (%)"}
    rows = [(_e(titles.get(k, k.replace("_", " "))), "not requested" if v is None else _fmt(v))
            for k, v in options.items()]
    if not rows:
        return ""
    return "<h3>Options</h3>" + _table(("Option", "Value"), rows, {1})


DEFINITION_TITLES = {"tre": "TRE (target registration error)", "before_after": "Before / after",
                     "ncc": "NCC", "nmi": "NMI", "mse": "MSE", "mae": "MAE", "sdlogj": "SD of log J"}


def _definition_title(key: str) -> str:
    if key in DEFINITION_TITLES:
        return DEFINITION_TITLES[key]
    for suffix in ("_mm", "_cc", "_percent"):
        if key.endswith(suffix):
            key = key[: -len(suffix)]
    text = key.replace("_", " ")
    return text[:1].upper() + text[1:]


def _definitions_section(report: Mapping) -> str:
    definitions = report.get("definitions") or {}
    if not definitions:
        return ""
    items = "".join(f"<dt>{_e(_definition_title(k))}</dt><dd>{_e(v)}</dd>" for k, v in definitions.items())
    return f'<section id="definitions"><h2>Definitions</h2><dl class="defs">{items}</dl></section>'


def _software_section(report: Mapping) -> str:
    tool = report.get("tool") or {}
    rows = [(_e(k.replace("_", " ")), _e(v)) for k, v in tool.items() if v is not None]
    out = '<section id="software"><h2>Software and settings</h2><div class="two"><div>'
    if rows:
        out += "<h3>Software versions</h3>" + _table(("Component", "Version"), rows)
    return out + "</div><div>" + _options_section(report) + "</div></div></section>"


def render_html(report: Mapping, snapshot_relpaths: Mapping | None = None, base_dir=None) -> str:
    """The report as one self-contained HTML page (no scripts, no external resources).

    ``snapshot_relpaths`` maps each ``report["snapshots"][i]["file"]`` to the image to embed (a path or the
    PNG bytes); otherwise images are looked up under ``base_dir``. Images are embedded as base64 data URIs.
    Every string from the report is HTML-escaped.
    """
    case = report.get("case_id")
    tool = report.get("tool") or {}
    title = "Registration quality report" + (f" — {case}" if case else "")
    created = report.get("created")
    sub = " · ".join(x for x in (_e(created) if created else "",
                                 f"{_e(tool.get('name', TOOL_NAME))} {_e(tool.get('version', ''))}".strip()) if x)
    body = [_verdict_block(report), _tiles(report)]
    warnings = report.get("warnings") or []
    if warnings:
        body.append(f'<p class="reason">⚠ {len(warnings)} warning{"s" if len(warnings) != 1 else ""}: see '
                    f'<a href="#warnings">Warnings</a>.</p>')
    sections = [
        ("inputs", "Inputs", _inputs_section(report)),
        ("snapshots", "Snapshots", _snapshots_section(report, snapshot_relpaths, base_dir)),
        ("checks", "Checks", _checks_section(report)),
        ("segments", "Segments", _segments_section(report)),
        ("surface", "Surface agreement", surface_section(report)),
        ("landmarks", "Landmarks", _landmarks_section(report)),
        ("deformation", "Deformation", _deformation_section(report)),
        ("similarity", "Similarity", _similarity_section(report)),
        ("elastix", "Elastix", _elastix_section(report)),
        ("warnings", "Warnings", _warnings_section(report)),
        ("definitions", "Definitions", _definitions_section(report)),
        ("software", "Software", _software_section(report)),
    ]
    nav = " ".join(f'<a href="#{anchor}">{name}</a>' for anchor, name, content in sections if content)
    body.append(f"<nav>{nav}</nav>")
    body.extend(content for _, _, content in sections if content)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body><main>"
        f"<h1>{_e(title)}</h1><p class='sub'>{sub}</p>" + "".join(body) +
        f"<footer>Generated by {_e(tool.get('name', TOOL_NAME))} {_e(tool.get('version', ''))}. Numbers are in "
        "report.json and metrics.csv next to this page.</footer></main></body></html>\n"
    )
