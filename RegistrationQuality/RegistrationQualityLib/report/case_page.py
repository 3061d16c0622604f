"""The case page ``report.html``: one self-contained page (plain HTML + CSS + inline SVG, images as data URIs,
no scripts, no external resources) that a clinician can read at a glance."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from .. import checks, measures
from ..checks import COMPARISON_SYMBOLS
from .charts import jacobian_histogram_svg, tre_chart_svg
from .markup import TOOL_NAME, _data_uri, _e, _fmt, _measure_change, _measure_value, _table
from .rows import _is_number
from .style import BLUE, CSS, VERMILLION
from .surface_section import surface_section

# Segment metrics shown in the table: key, column title, unit, True if larger is better.
# (Jaccard = Dice / (2 - Dice) adds nothing at a glance; it is in report.json and metrics.csv.)
# Intensity differences mean something only between images in the same units: information only (uncoloured)
# unless the user declares the same modality (evaluate --same-modality, report.json options.same_modality).
SAME_MODALITY_ONLY = ("mse", "mae")


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _segment_name(name) -> str:
    """A segment's display name: a bare label value reads as "label 3"."""
    text = "" if name is None else str(name)
    return f"label {text}" if text.isdigit() else text


def _check_spec(check: Mapping):
    """The registry's check of a report.json check record (None for a name this version does not know)."""
    name = check.get("name", "")
    return checks.get(name) if name in checks.names() else None


def _check_parts(check: Mapping, percentile) -> tuple:
    """(title, subject text, value html, required html) of a check record, from the check registry."""
    spec = _check_spec(check)
    title = spec.title_for(percentile) if spec else str(check.get("name", "")).replace("_", " ")
    unit = check.get("unit", spec.unit if spec else "")
    digits = spec.measure_spec.digits if spec else None
    symbol = checks.COMPARISON_SYMBOLS.get(check.get("comparison"), check.get("comparison") or "")
    subject = check.get("subject")
    if spec is not None and spec.statistic == "each":
        subject = _segment_name(subject)
    value = _fmt(check.get("value"), unit, digits)
    required = f"{symbol} {_fmt(check.get('limit'), unit, digits)}"
    return title, subject, value, required, spec


def _check_text(check: Mapping, percentile=None) -> str:
    title, subject, _value, required, spec = _check_parts(check, percentile)
    if subject and spec is not None and spec.statistic == "each":
        what = f"{_e(title)} of <b>{_e(subject)}</b>"
    elif subject:
        what = f"{_e(title)} ({_e(subject)})"
    else:
        what = _e(title)
    value = check.get("value")
    shown = "could not be computed" if value is None else f"is {_check_parts(check, percentile)[2]}"
    return f"{what} {shown}; required {required}"


def _verdict_block(report: Mapping) -> str:
    verdict = report.get("verdict") or "no checks"
    checks = report.get("checks") or []
    failing = [c for c in checks if not c.get("passed")]
    cls = {"pass": "pass", "fail": "fail", "review": "review"}.get(verdict, "none")
    word = {"pass": "✔ PASS", "fail": "✘ FAIL", "review": "⚠ REVIEW"}.get(verdict, "NO CHECKS")
    if verdict == "pass":
        what = f"All {len(checks)} requested check{'s' if len(checks) != 1 else ''} passed."
    elif verdict == "fail":
        what = f"{len(failing)} of {len(checks)} requested check{'s' if len(checks) != 1 else ''} failed."
    elif verdict == "review":
        what = (f"No check failed; {len(failing)} of {len(checks)} need review (between the pass and the review "
                "limit).")
    else:
        what = "No pass/fail limits were requested: read the numbers below."
    has_list = verdict in ("fail", "review") and failing
    out = [f'<div class="banner {cls}{" has-list" if has_list else ""}" role="status" id="verdict">'
           f'<div class="word">{word}</div><div class="what">{_e(what)}</div></div>']
    if has_list:
        p = (report.get("options") or {}).get("percentile")
        out.append('<ul class="failing">' + "".join(
            f"<li>{'needs review: ' if c.get('status') == 'review' else ''}{_check_text(c, p)}</li>" for c in failing)
            + "</ul>")
    profile = report.get("profile")
    if isinstance(profile, Mapping):
        data = "; ".join(f"{_e(k.replace('_', ' '))} = {_fmt(v)}" for k, v in (profile.get("data") or {}).items())
        out.append(f'<p class="profile">Tolerance profile <b>{_e(profile.get("name"))}</b>: '
                   f'{_e(profile.get("title"))}. Source: {_e(profile.get("source"))}'
                   + (f". Data-dependent limits from: {data}" if data else "") + "</p>")
    return "".join(out)


def _tiles(report: Mapping) -> str:
    tiles = []
    p = (report.get("options") or {}).get("percentile")
    segments = [s for s in report.get("segments") or [] if isinstance(s.get("after"), Mapping)]
    for key, worst_of in (("dice", min), ("hausdorff_percentile_mm", max)):
        m = measures.get(key)
        scored = [s for s in segments if _is_number(m.value_in(s["after"]))]
        if scored:
            worst = worst_of(scored, key=lambda s: m.value_in(s["after"]))
            before = m.value_in(worst.get("before") or {})
            word = "Lowest" if m.better == "higher" else "Largest"
            tiles.append((f"{word} {_e(m.short_for(p))} after", _measure_value(m, m.value_in(worst["after"])),
                          f"{_e(_segment_name(worst.get('name')))} · before {_measure_value(m, before)}"))
    landmarks = report.get("landmarks") or {}
    after = landmarks.get("after") or {}
    mean, worst_point = measures.get("tre_mean_mm"), measures.get("tre_max_mm")
    if _is_number(mean.value_in(after)):
        before = mean.value_in(landmarks.get("before") or {})
        tiles.append((f"{_e(mean.short)} after", _measure_value(mean, mean.value_in(after)),
                      f"max {_measure_value(worst_point, worst_point.value_in(after))} · before: mean "
                      f"{_measure_value(mean, before)}"))
    deformation = report.get("deformation") or {}
    folding, jmin = measures.get("jacobian_folding_percent"), measures.get("jacobian_min")
    if _is_number(folding.value_in(deformation)) or _is_number(jmin.value_in(deformation)):
        tiles.append((_e(folding.title), _measure_value(folding, folding.value_in(deformation)),
                      f"{_e(jmin.short)} {_measure_value(jmin, jmin.value_in(deformation))}"))
    if not tiles:
        return ""
    return '<div class="tiles">' + "".join(
        f'<div class="tile"><div class="k">{k}</div><div class="v">{v}</div><div class="d">{d}</div></div>'
        for k, v, d in tiles) + "</div>"


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
    p = (report.get("options") or {}).get("percentile")
    shown = measures.of("segment", shown=True)
    header = ["Segment"] + [f'<span title="{_e(m.title_for(p))}">{_e(m.short_for(p))}</span>' +
                            (f"<br><small>{_e(m.unit)}</small>" if m.unit else "") for m in shown] + [
        "Volume (cc)<br><small>fixed / moving</small>", "Status"]
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
        for m in shown:
            cells.append(_measure_change(m, m.value_in(before), m.value_in(after)))
        volumes = (f"{_fmt(after.get('reference_volume_cc'), '', 2)} / "
                   f"{_fmt(after.get('compared_volume_cc'), '', 2)}")
        statuses = []
        for stage, values in (("before", before), ("after", after)):
            status = values.get("status")
            if status not in (None, "ok"):
                statuses.append(f'<span class="reason">{stage}: {_e(status)}</span>')
        cells += [volumes, "<br>".join(statuses) or "ok"]
        rows.append(cells)
    numeric = set(range(1, len(shown) + 2))
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
    count = None
    for m in measures.of("landmarks"):
        if m.value_in(before) is None and m.value_in(after) is None and m.field not in before and m.field not in after:
            continue
        if m.unit == "mm":
            rows.append((_e(_capital(m.title)), _measure_change(m, m.value_in(before), m.value_in(after))))
        else:  # counts: one value (after), not a change
            value = m.value_in(after) if m.value_in(after) is not None else m.value_in(before)
            if m.key == "tre_count":
                count = value
            else:
                rows.append((_e(_capital(m.title)), _measure_value(m, value)))
    if count is not None:
        rows.append((_e(measures.get("tre_count").title), _e(count)))
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
    rows = []
    for m in measures.of("deformation"):
        group, _, key = m.field.rpartition(".")
        if key not in ((deformation.get(group) or {}) if group else deformation):
            continue
        value = m.value_in(deformation)
        # the shown measures; a count of bad voxels (folding, non-finite J) only when it is not zero
        if m.shown or (m.unit == "voxels" and m.better == "lower" and value):
            rows.append((_e(m.title), _measure_value(m, value)))
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
    shown = [measures.find("deformation", f"jacobian.{key}") for key in (
        "voxels", "min", "max", "mean", "folding_voxels", "folding_percent", "folding_volume_cc", "sdlogj")]
    rows = [(_e(m.title), *(_measure_value(m, m.value_in({"jacobian": r})) for r in regions)) for m in shown if m]
    header = ("Jacobian by region", *(_e(r.get("region") or "") for r in regions))
    return "<h3>Jacobian in each region</h3>" + _table(header, rows, set(range(1, len(regions) + 1)))


def _similarity_section(report: Mapping) -> str:
    similarity = report.get("similarity")
    if not isinstance(similarity, Mapping):
        return ""
    before, after = similarity.get("before") or {}, similarity.get("after") or {}
    same_modality = bool((report.get("options") or {}).get("same_modality"))
    rows = []
    for m in measures.of("similarity", shown=True):
        if m.field not in before and m.field not in after:
            continue
        if m.key in SAME_MODALITY_ONLY and not same_modality:
            rows.append((f"{_e(m.title)} ({_e(m.short)})",
                         '<span class="info" title="the images are not declared to share intensity units">'
                         "information only (not judged without --same-modality)</span>",
                         _measure_change(m, m.value_in(before), m.value_in(after), judged=False)))
        else:
            rows.append((f"{_e(m.title)} ({_e(m.short)})", _e(m.better or "—"),
                         _measure_change(m, m.value_in(before), m.value_in(after))))
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
    p = (report.get("options") or {}).get("percentile")
    for c in checks:
        title, subject, value, required, _spec = _check_parts(c, p)
        state = c.get("status") or ("pass" if c.get("passed") else "fail")
        badge = {"pass": '<span class="badge pass">✔ pass</span>',
                 "review": '<span class="badge review">⚠ review</span>'}.get(state, '<span class="badge fail">✘ fail</span>')
        if c.get("review_limit") is not None:
            required += f"<br><small>review {_e(COMPARISON_SYMBOLS.get(c.get('comparison'), ''))} " \
                        f"{_fmt(c['review_limit'], c.get('unit') or '', None)}</small>"
        what = _e(title)
        if c.get("basis"):  # in the (wrapping) check column: the limit columns stay narrow
            what += f"<br><small>{_e(c['basis'])}</small>"
        if c.get("source"):
            what += f"<br><small>source: {_e(c['source'])}</small>"
        rows.append((what, _e(subject or "—"), value, required, badge))
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
    p = options.get("percentile")
    titles = {"percentile": "Hausdorff percentile (p of HDp)"}
    for c in checks.CHECKS:
        titles[c.name] = f"Limit: {c.title_for(p)} {c.symbol}" + (f" ({c.unit})" if c.unit else "")
    rows = [(_e(titles.get(k, k.replace("_", " "))), "not requested" if v is None else _fmt(v))
            for k, v in options.items()]
    if not rows:
        return ""
    return "<h3>Options</h3>" + _table(("Option", "Value"), rows, {1})


DEFINITION_TITLES = {"boundary": "Boundary", "tre": "TRE (target registration error)", "jacobian": "Jacobian",
                     "similarity": "Similarity", "before_after": "Before / after"}


def _definition_title(key: str, percentile=None) -> str:
    """A definition's title: its measure's title (:mod:`..measures`), or the concept's."""
    if key in DEFINITION_TITLES:
        return DEFINITION_TITLES[key]
    try:
        return _capital(measures.get(key).title_for(percentile))
    except KeyError:
        return _capital(key.replace("_", " "))


def _definitions_section(report: Mapping) -> str:
    definitions = report.get("definitions") or {}
    if not definitions:
        return ""
    p = (report.get("options") or {}).get("percentile")
    items = "".join(f"<dt>{_e(_definition_title(k, p))}</dt><dd>{_e(v)}</dd>" for k, v in definitions.items())
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
