"""Fabricated cohort folders for the review-page tests and benchmark: summary rows without any evaluation, tiny
solid-colour PNG snapshots (pure Python), placeholder per-case report pages."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np

SNAPSHOTS = ("worst_before_after_axial.png", "before_after_axial.png", "fixed_axial.png", "registered_axial.png")
# distinct colours per snapshot: a screenshot tells which one is on screen
COLOURS = {"worst_before_after_axial.png": (200, 200, 40), "before_after_axial.png": (40, 200, 200),
           "fixed_axial.png": (220, 30, 30), "registered_axial.png": (30, 30, 220)}


def png_bytes(rgb, width: int = 96, height: int = 64) -> bytes:
    """A solid-colour RGB PNG (zlib + struct only)."""
    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def fabricated_rows(n: int, seed: int = 0, methods=("",), failing_every: int = 7, broken_every: int = 0) -> list:
    """Summary rows (cohort.SUMMARY_COLUMNS) of ``n`` cases x ``methods``: plausible numbers, every
    ``failing_every``-th case failing, every ``broken_every``-th not evaluated."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        case_id = f"case{i:05d}"
        for k, method in enumerate(methods):
            folder = f"cases/{case_id}/{method}" if method else f"cases/{case_id}"
            if broken_every and i % broken_every == broken_every - 1:
                rows.append({"case_id": case_id, "method": method, "status": "failed", "verdict": None,
                             "error": f"bad input: {case_id}/moving.nrrd: file not found"})
                continue
            dice = float(np.clip(rng.normal(0.86 - 0.03 * k, 0.03), 0, 1))
            tre = float(abs(rng.normal(1.5 + 0.4 * k, 0.3)))
            fail = failing_every and i % failing_every == failing_every - 1
            if fail:
                dice -= 0.25
            rows.append({
                "case_id": case_id, "method": method, "status": "ok", "verdict": "fail" if fail else "pass",
                "error": "", "segments": 3, "min_dice_before": dice - 0.3, "min_dice_after": dice,
                "max_hausdorff_percentile_after_mm": float(abs(rng.normal(3.0, 0.5))),
                "mean_tre_before_mm": tre + 5.0, "mean_tre_after_mm": tre, "max_tre_after_mm": tre * 1.8,
                "folding_percent": 0.0, "sdlogj": float(abs(rng.normal(0.1, 0.02))), "ncc_before": 0.5,
                "ncc_after": float(np.clip(rng.normal(0.9, 0.02), 0, 1)),
                "failed_checks": "min_dice[lesion]" if fail else "", "worst_segment": "lesion",
                "report": f"{folder}/report.html"})
    return rows


def write_case_files(folder, rows, snapshots=SNAPSHOTS, link: bool = True) -> None:
    """Per evaluated row a placeholder ``report.html`` and the snapshot PNGs (hard links to one file per colour
    when ``link``: 5,000 cases in a moment)."""
    folder = Path(folder)
    sources = {}
    for name in snapshots:
        source = folder / ".png" / name
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_bytes(png_bytes(COLOURS[name]))
        sources[name] = source
    for row in rows:
        if not row.get("report"):
            continue
        case = folder / Path(row["report"]).parent
        (case / "snapshots").mkdir(parents=True, exist_ok=True)
        (case / "report.html").write_text(f"<!DOCTYPE html><title>{row['case_id']}</title><h1 id='case'>"
                                          f"{row['case_id']} {row.get('method', '')}</h1>", encoding="utf-8")
        for name, source in sources.items():
            target = case / "snapshots" / name
            if link:
                try:
                    os.link(source, target)
                    continue
                except OSError:
                    pass
            target.write_bytes(source.read_bytes())


def page_data(path) -> dict:
    """The JSON a cohort page embeds (``<script type="application/json" id="rq-data">``)."""
    import json
    import re

    text = Path(path).read_text(encoding="utf-8")
    match = re.search(r'<script type="application/json" id="rq-data">(.*?)</script>', text, flags=re.S)
    assert match, f"{path}: no embedded data"
    return json.loads(match.group(1))
