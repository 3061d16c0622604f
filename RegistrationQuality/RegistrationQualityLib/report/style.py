"""The pages' look: the Okabe-Ito palette and the one stylesheet both pages embed.

Colours are the Okabe & Ito colour-blind-safe palette (Okabe M, Ito K. "Color Universal Design", 2002;
https://jfly.uni-koeln.de/color/); meaning is never carried by colour alone (symbols and words go with it).
"""

from __future__ import annotations

# Okabe-Ito palette
BLACK = "#000000"
ORANGE = "#E69F00"
SKY_BLUE = "#56B4E9"
GREEN = "#009E73"  # bluish green: pass, improvement
YELLOW = "#F0E442"
BLUE = "#0072B2"  # "after"
VERMILLION = "#D55E00"  # fail, worse, folding
PURPLE = "#CC79A7"
GREY = "#6E6E6E"  # "no checks", "before" (not an Okabe-Ito colour; neutral)
LIGHT_GREY = "#B8B8B8"

VERDICT_COLOURS = {"pass": GREEN, "fail": VERMILLION, "no checks": GREY}


CSS = """
:root { --pass: #009E73; --fail: #D55E00; --none: #6E6E6E; --before: #8C8C8C; --after: #0072B2;
        --ink: #1b1b1b; --muted: #555; --rule: #d6d6d6; --zebra: #f5f6f7; }
* { box-sizing: border-box; }
html { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body { margin: 0; color: var(--ink); background: #fff; font: 16px/1.45 system-ui, -apple-system, "Segoe UI",
       Roboto, "Noto Sans", "DejaVu Sans", "Liberation Sans", Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 20px 28px 40px; }
h1 { font-size: 26px; margin: 0 0 2px; }
h2 { font-size: 20px; margin: 30px 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--rule); }
h3 { font-size: 16px; margin: 16px 0 6px; }
.sub { color: var(--muted); font-size: 14px; margin: 0 0 14px; }
.banner { display: flex; align-items: center; gap: 22px; padding: 16px 22px; border-radius: 8px; color: #fff; }
.banner .word { font-size: 34px; font-weight: 800; letter-spacing: 0.06em; white-space: nowrap; }
.banner .what { font-size: 18px; font-weight: 600; }
.banner.pass { background: var(--pass); } .banner.fail { background: var(--fail); }
.banner.none { background: var(--none); }
.banner.review { background: #E69F00; color: #1b1b1b; }
.profile { margin: 6px 0 0; font-size: 14px; color: var(--muted); }
.failing { margin: 0; padding: 10px 22px 12px 40px; background: #fbeee5; border: 2px solid var(--fail);
           border-top: 0; border-radius: 0 0 8px 8px; }
.failing li { margin: 2px 0; }
.banner.has-list { border-radius: 8px 8px 0 0; }
.tiles { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0 4px; }
.tile { flex: 1 1 200px; border: 1px solid var(--rule); border-radius: 8px; padding: 10px 14px; }
.tile .k { font-size: 13px; color: var(--muted); }
.tile .v { font-size: 24px; font-weight: 700; font-variant-numeric: tabular-nums; }
.tile .d { font-size: 14px; color: var(--muted); }
nav { margin: 14px 0 0; font-size: 14px; }
nav a { margin-right: 14px; color: var(--after); }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 15px; }
.scroll { max-width: 100%; overflow-x: auto; }
th, td { padding: 5px 10px; border-bottom: 1px solid var(--rule); text-align: left; vertical-align: top; }
th { background: #eef0f2; font-weight: 600; }
tbody tr:nth-child(even) td { background: var(--zebra); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.better { color: #00684c; font-weight: 700; } .worse { color: #a84a00; font-weight: 700; }
.same { color: var(--muted); }
.info { color: var(--muted); font-style: italic; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff; font-size: 13px;
         font-weight: 700; white-space: nowrap; }
.badge.pass { background: var(--pass); } .badge.fail { background: var(--fail); }
.badge.none { background: var(--none); }
.badge.review { background: #E69F00; color: #1b1b1b; }
.null { color: var(--muted); }
.reason { color: #8a3c00; font-size: 14px; }
.path { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 13px;
        word-break: break-all; }
.snaps { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 18px 22px; }
figure { margin: 0; min-width: 0; }
figure.lead { grid-column: 1 / -1; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--rule); background: #000; image-rendering: auto; }
figcaption { font-size: 14px; color: var(--muted); }
figcaption b { color: var(--ink); }
.missing { padding: 30px; border: 2px dashed var(--rule); color: var(--muted); text-align: center; }
.legend { font-size: 14px; color: var(--muted); }
.key { display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 10px; vertical-align: -1px;
       border-radius: 2px; }
svg { max-width: 100%; height: auto; font-family: inherit; }
svg text { fill: #1b1b1b; }
.warnings li { margin: 3px 0; }
dl.defs dt { font-weight: 700; margin-top: 8px; }
dl.defs dd { margin: 2px 0 0 18px; }
.two { display: flex; flex-wrap: wrap; gap: 28px; align-items: flex-start; }
.two > div:first-child { flex: 0 0 auto; } .two > div + div { flex: 1 1 480px; min-width: 0; }
svg.chart { width: 100%; max-width: 900px; height: auto; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(460px, 1fr)); gap: 10px 36px; }
.cases td:first-child { white-space: nowrap; } .cases td:nth-child(2) { min-width: 190px; }
.cases table { font-size: 14px; } .cases th, .cases td { padding: 4px 7px; }
.cases th.num { white-space: normal; }
footer { margin-top: 30px; font-size: 13px; color: var(--muted); }
@media print {
  main { max-width: none; padding: 0; }
  nav { display: none; }
  section, figure, table, svg { break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
  .scroll { overflow: visible; }
}
"""
