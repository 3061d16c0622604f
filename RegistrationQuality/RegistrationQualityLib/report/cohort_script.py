"""The scripts and styles of the cohort pages (``summary.html`` and ``review.html``), inlined into each page.

Plain JavaScript (ES2017, no libraries, no network) and CSS. Both pages embed their data once as JSON in
``<script type="application/json" id="rq-data">`` (built by :mod:`review`); :data:`COMMON_JS` reads it and draws
the strip plots on ``<canvas>`` (one base layer with every dot, drawn once, and an overlay layer for the
highlighted case, so highlighting 5,000-case plots costs one small redraw); :data:`SUMMARY_JS` pages the cases
table and searches; :data:`REVIEW_JS` is the one-case-at-a-time reviewer with keyboard rating, flicker and the
ratings kept in ``localStorage``. When a page has drawn itself it sets ``document.documentElement.dataset.ready``
and ``window.rqReadyMs`` (milliseconds since navigation start), and ``window.rqPaintedMs`` after the next frame
(the benchmark reads both).
"""

from __future__ import annotations

COMMON_CSS = r"""
.plots canvas { display: block; width: 100%; }
.plotbox { position: relative; }
.plotbox canvas.overlay { position: absolute; left: 0; top: 0; pointer-events: none; }
.tip { position: fixed; z-index: 20; pointer-events: none; background: #1b1b1b; color: #fff; font-size: 13px;
       padding: 3px 7px; border-radius: 4px; display: none; white-space: nowrap; }
.badge.review { background: #E69F00; color: #1b1b1b; }
.badge.rating { background: #fff; color: #1b1b1b; border: 2px solid #1b1b1b; }
.badge.rating.pass { border-color: var(--pass); color: #00684c; background: #fff; }
.badge.rating.review { border-color: #E69F00; color: #7a5200; background: #fff; }
.badge.rating.fail { border-color: var(--fail); color: #a84a00; background: #fff; }
.outl { color: #6b3fa0; font-size: 13px; }
.toolbar { display: flex; flex-wrap: wrap; gap: 10px; align-items: center; margin: 8px 0; font-size: 14px; }
.toolbar input[type=search] { font-size: 15px; padding: 4px 8px; min-width: 220px; }
.toolbar button { font-size: 14px; padding: 4px 10px; cursor: pointer; }
img.thumb { width: 150px; height: auto; background: #000; display: block; }
tr.hit td { outline: 2px solid #CC79A7; }
.toolbar .grow { flex: 1 1 auto; }
"""

COMMON_JS = r"""
"use strict";
const RQ = JSON.parse(document.getElementById("rq-data").textContent);
const VERDICT_COLOURS = {"pass": "#009E73", "review": "#E69F00", "fail": "#D55E00"};
function esc(s) {
  return String(s == null ? "" : s).replace(/[&<>"']/g,
    c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}
function fmt(v, digits) {
  if (v == null) return "\u2014";
  if (digits == null) return Math.abs(v) >= 1000 ? v.toFixed(0) : String(+v.toPrecision(4));
  if (v !== 0 && Math.abs(v) < 0.5 * Math.pow(10, -digits)) return (v < 0 ? "-" : "") + "<" + Math.pow(10, -digits).toFixed(digits);
  return v.toFixed(digits);
}
function colIndex(key) { return RQ.columns.findIndex(c => c.key === key); }
function verdictBadge(row) {
  if (!row.ev) return '<span class="badge fail">not evaluated</span>';
  const v = row.v || "no checks";
  const cls = {"pass": "pass", "fail": "fail", "review": "review"}[v] || "none";
  const mark = {"pass": "\u2714 ", "fail": "\u2718 ", "review": "? "}[v] || "";
  return '<span class="badge ' + cls + '">' + mark + esc(v) + "</span>";
}
function quantile(sorted, q) {
  const pos = q * (sorted.length - 1), i = Math.floor(pos), j = Math.min(i + 1, sorted.length - 1);
  return sorted[i] + (sorted[j] - sorted[i]) * (pos - i);
}
function niceTicks(lo, hi, count) {
  if (!(hi > lo)) hi = lo + 1;
  const raw = (hi - lo) / count, p = Math.pow(10, Math.floor(Math.log10(raw)));
  let step = p;
  for (const m of [1, 2, 2.5, 5, 10]) { step = m * p; if ((hi - lo) / step <= count + 1) break; }
  const first = Math.floor(lo / step + 1e-9) * step, out = [];  // the ticks cover the data
  for (let k = 0; k < 30; k++) {
    const t = +(first + k * step).toPrecision(12);
    out.push(t);
    if (t >= hi - step * 1e-6) break;
  }
  return out;
}
// One strip plot: a box (quartiles, median) and one dot per row; the "before" column, when given, as a row of
// hollow grey dots above. plot.highlight(set of row indices) rings those dots on the overlay layer.
function StripPlot(box, col, beforeCol, opts) {
  opts = opts || {};
  const width = opts.width || 560, rowH = opts.rowH || 34, top = opts.title === false ? 6 : 24;
  const series = [];
  for (const [name, c] of [["before", beforeCol], [beforeCol ? "after" : "", col]]) {
    if (!c) continue;
    const ci = colIndex(c.key), pts = [];
    RQ.rows.forEach((r, i) => { const v = r.x[ci]; if (v != null) pts.push([v, i]); });
    if (pts.length) series.push({name: name, pts: pts});
  }
  this.empty = !series.length;
  if (this.empty) return;
  let lo = Infinity, hi = -Infinity;
  for (const s of series) for (const [v] of s.pts) { if (v < lo) lo = v; if (v > hi) hi = v; }
  if (hi - lo < 1e-12) { const pad = 0.05 * Math.max(Math.abs(lo), 1); lo -= pad; hi += pad; }
  const ticks = niceTicks(lo, hi, 5);
  lo = Math.min(lo, ticks[0]); hi = Math.max(hi, ticks[ticks.length - 1]);
  const labelled = series.length > 1, left = labelled ? 52 : 12, right = 14;
  const plotW = width - left - right, axisY = top + rowH * series.length + 2, height = axisY + 22;
  const X = v => left + plotW * (v - lo) / (hi - lo);
  const dpr = window.devicePixelRatio || 1;
  const make = cls => {
    const c = document.createElement("canvas");
    c.width = width * dpr; c.height = height * dpr; c.style.width = "100%"; c.style.maxWidth = width + "px";
    c.style.aspectRatio = width + " / " + height;
    if (cls) c.className = cls;
    box.appendChild(c);
    const g = c.getContext("2d"); g.scale(dpr, dpr); return [c, g];
  };
  box.classList.add("plotbox");
  const [base, g] = make(""), [over, go] = make("overlay");
  if (opts.title !== false) {
    g.font = "bold 13px system-ui, sans-serif"; g.fillStyle = "#1b1b1b";
    const dir = c => c.higher == null ? "" : (c.higher ? " (higher is better)" : " (lower is better)");
    g.fillText(col.title + (col.unit ? " (" + col.unit + ")" : ""), 4, 15);
    const w = g.measureText(col.title + (col.unit ? " (" + col.unit + ")" : "")).width;
    g.font = "13px system-ui, sans-serif"; g.fillStyle = "#555"; g.fillText(dir(col), 4 + w, 15);
  }
  g.font = "11px system-ui, sans-serif"; g.textAlign = "center";
  for (const t of ticks) {
    g.strokeStyle = "#e6e6e6"; g.beginPath(); g.moveTo(X(t), top); g.lineTo(X(t), axisY + 4); g.stroke();
    g.fillStyle = "#1b1b1b"; g.fillText(Math.abs(t) < 1e5 ? String(t) : t.toExponential(0), X(t), axisY + 16);
  }
  g.strokeStyle = "#333"; g.beginPath(); g.moveTo(left, axisY); g.lineTo(left + plotW, axisY); g.stroke();
  this.pos = [];  // [x, y, row index, value, series name]
  series.forEach((s, k) => {
    const yc = top + rowH * k + rowH / 2, nums = s.pts.map(p => p[0]).sort((a, b) => a - b);
    const q1 = quantile(nums, 0.25), med = quantile(nums, 0.5), q3 = quantile(nums, 0.75);
    if (labelled) { g.textAlign = "right"; g.fillStyle = "#555"; g.font = "12px system-ui, sans-serif";
                    g.fillText(s.name, left - 6, yc + 4); }
    g.fillStyle = "#eef0f2"; g.strokeStyle = "#777";
    g.fillRect(X(q1), yc - 11, Math.max(X(q3) - X(q1), 1), 22); g.strokeRect(X(q1), yc - 11, Math.max(X(q3) - X(q1), 1), 22);
    g.strokeStyle = "#333"; g.lineWidth = 2; g.beginPath(); g.moveTo(X(med), yc - 11); g.lineTo(X(med), yc + 11); g.stroke();
    g.lineWidth = 1;
    const hollow = labelled && k === 0, r = s.pts.length > 500 ? 3 : 4.5;
    for (const [v, i] of s.pts) {
      const y = yc + (((i * 2654435761) >>> 0) % 1000 / 1000 - 0.5) * 16, x = X(v);
      g.beginPath(); g.arc(x, y, r, 0, 6.2832);
      if (hollow) { g.fillStyle = "#fff"; g.fill(); g.strokeStyle = "#6E6E6E"; g.stroke(); }
      else { const row = RQ.rows[i]; g.fillStyle = VERDICT_COLOURS[row.ev ? row.v : ""] || "#6E6E6E"; g.fill(); }
      this.pos.push([x, y, i, v, s.name]);
    }
  });
  this.canvas = base; this.over = over; this.go = go; this.width = width; this.height = height;
  this.highlight = function (rows) {
    go.clearRect(0, 0, width, height);
    if (!rows || !rows.size) return;
    for (const [x, y, i] of this.pos) {
      if (!rows.has(i)) continue;
      go.beginPath(); go.arc(x, y, 8, 0, 6.2832); go.lineWidth = 3; go.strokeStyle = "#CC79A7"; go.stroke();
      go.beginPath(); go.arc(x, y, 11, 0, 6.2832); go.lineWidth = 1.5; go.strokeStyle = "#1b1b1b"; go.stroke();
    }
  };
  this.nearest = function (ev) {
    const rect = base.getBoundingClientRect(), sx = width / rect.width;
    const mx = (ev.clientX - rect.left) * sx, my = (ev.clientY - rect.top) * sx;
    let best = null, bd = 64;
    for (const p of this.pos) { const d = (p[0] - mx) ** 2 + (p[1] - my) ** 2; if (d < bd) { bd = d; best = p; } }
    return best;
  };
  const tip = document.getElementById("tip"), self = this;
  if (tip) {
    base.addEventListener("mousemove", ev => {
      const p = self.nearest(ev);
      if (!p) { tip.style.display = "none"; base.style.cursor = ""; return; }
      const row = RQ.rows[p[2]];
      tip.textContent = row.id + (row.m ? " \u00b7 " + row.m : "") + (p[4] === "before" ? " before" : "") + ": " + (+p[3].toPrecision(4));
      tip.style.left = (ev.clientX + 12) + "px"; tip.style.top = (ev.clientY + 12) + "px"; tip.style.display = "block";
      base.style.cursor = "pointer";
    });
    base.addEventListener("mouseleave", () => { tip.style.display = "none"; });
  }
  if (opts.onClick) base.addEventListener("click", ev => { const p = self.nearest(ev); if (p) opts.onClick(p[2]); });
}
function makePlots(container, opts) {
  const plots = [];
  for (const c of RQ.columns) {
    if (!c.plot) continue;
    const before = c.before ? RQ.columns.find(b => b.key === c.before) : null;
    const div = document.createElement("div");
    container.appendChild(div);
    const p = new StripPlot(div, c, before, opts);
    if (p.empty) div.remove(); else { p.key = c.key; plots.push(p); }
  }
  return plots;
}
function findRows(query) {
  const q = query.trim().toLowerCase();
  if (!q) return [];
  const exact = [], part = [];
  RQ.rows.forEach((r, i) => { const id = r.id.toLowerCase();
    if (id === q) exact.push(i); else if (id.indexOf(q) >= 0) part.push(i); });
  return exact.length ? exact : part;
}
function markReady() {
  window.rqReadyMs = performance.now();
  document.documentElement.dataset.ready = "1";
  requestAnimationFrame(() => setTimeout(() => { window.rqPaintedMs = performance.now(); }, 0));
}
"""

SUMMARY_JS = r"""
(function () {
  const plotsDiv = document.getElementById("plots"), tbody = document.getElementById("case-rows");
  const open = i => { const h = RQ.rows[i].href; if (h) window.location.href = h; };
  const plots = plotsDiv ? makePlots(plotsDiv, {onClick: open}) : [];
  const numeric = RQ.columns.filter(c => c.table);
  const head = document.getElementById("case-head");
  head.innerHTML = "<tr><th>Snapshot</th><th>Case</th>" + (RQ.methods ? "<th>Method</th>" : "") +
    "<th>Result</th>" + (RQ.rated ? "<th>Human rating</th>" : "") + "<th>Outliers</th>" +
    numeric.map(c => '<th class="num" title="' + esc(c.key) + '">' + esc(c.short) + (c.unit ? "<br><small>" + esc(c.unit) + "</small>" : "") + "</th>").join("") + "</tr>";
  const idx = numeric.map(c => colIndex(c.key));
  let shown = RQ.rows.map((_, i) => i), page = 0, hits = new Set();
  const size = 50, info = document.getElementById("page-info");
  function rowHtml(i) {
    const r = RQ.rows[i];
    const thumb = r.thumb ? '<img class="thumb" loading="lazy" alt="" src="' + esc(r.thumb) + '">' : "";
    const link = r.href ? '<a href="' + esc(r.href) + '">' + esc(r.id) + "</a>" : esc(r.id);
    let result = verdictBadge(r);
    if (!r.ev && r.err) result += ' <span class="reason">' + esc(r.err) + "</span>";
    if (r.fc) result += ' <span class="reason">' + esc(r.fc) + "</span>";
    let cells = "<td>" + (r.thumb && r.href ? '<a href="' + esc(r.href) + '">' + thumb + "</a>" : thumb) + "</td><td>" + link + "</td>";
    if (RQ.methods) cells += "<td>" + esc(r.m) + (r.rk != null ? ' <small title="rank of this method within the case">#' + r.rk + "</small>" : "") + "</td>";
    cells += "<td>" + result + "</td>";
    if (RQ.rated) cells += "<td>" + (r.hr ? '<span class="badge rating ' + esc(r.hr) + '">' + esc(r.hr) + "</span>" : "") +
      (r.dis ? ' <b class="reason">disagrees</b>' : "") + (r.hn ? ' <span class="reason">' + esc(r.hn) + "</span>" : "") + "</td>";
    cells += '<td class="outl">' + esc(r.out || "") + "</td>";
    cells += idx.map((ci, k) => '<td class="num">' + fmt(r.x[ci], numeric[k].digits) + "</td>").join("");
    return '<tr data-row="' + i + '"' + (hits.has(i) ? ' class="hit"' : "") + ">" + cells + "</tr>";
  }
  function render() {
    const pages = Math.max(1, Math.ceil(shown.length / size));
    page = Math.min(Math.max(page, 0), pages - 1);
    tbody.innerHTML = shown.slice(page * size, page * size + size).map(rowHtml).join("");
    info.textContent = "cases " + (shown.length ? page * size + 1 : 0) + "\u2013" + Math.min(shown.length, page * size + size) +
      " of " + shown.length + " (page " + (page + 1) + " / " + pages + ")";
  }
  document.getElementById("prev-page").onclick = () => { page--; render(); };
  document.getElementById("next-page").onclick = () => { page++; render(); };
  const search = document.getElementById("search");
  search.addEventListener("input", () => {
    const found = findRows(search.value);
    hits = new Set(found);
    shown = search.value.trim() ? found : RQ.rows.map((_, i) => i);
    page = 0; render();
    for (const p of plots) p.highlight(hits);
    document.getElementById("search-info").textContent = search.value.trim() ?
      (found.length ? found.length + " match" + (found.length > 1 ? "es" : "") + ", highlighted in every plot" : "no case id matches") : "";
  });
  document.addEventListener("keydown", ev => {
    if (ev.key === "/" && document.activeElement !== search) { ev.preventDefault(); search.focus(); }
  });
  render();
  markReady();
})();
"""

REVIEW_CSS = r"""
main { max-width: none; padding: 10px 18px 30px; }
header.bar { display: flex; flex-wrap: wrap; gap: 14px; align-items: center; border-bottom: 2px solid var(--rule);
             padding-bottom: 8px; }
header.bar h1 { font-size: 20px; margin: 0; }
header.bar .grow { flex: 1 1 auto; }
#progress { font-size: 14px; color: var(--muted); font-variant-numeric: tabular-nums; }
.casehead { display: flex; flex-wrap: wrap; gap: 12px; align-items: baseline; margin: 10px 0 6px; }
.casehead h2 { margin: 0; border: 0; padding: 0; font-size: 24px; }
.methods { display: grid; gap: 14px; }
.method { border: 3px solid transparent; border-radius: 8px; padding: 6px 8px; min-width: 0; }
.methods.many .method { border-color: var(--rule); }
.methods.many .method.focus { border-color: #0072B2; }
.method .mhead { display: flex; gap: 10px; align-items: baseline; flex-wrap: wrap; font-size: 15px; margin-bottom: 4px; }
.method .mhead b { font-size: 18px; }
.cols { display: grid; grid-template-columns: minmax(0, 1fr) 360px; gap: 16px; align-items: start; }
.view { margin: 0 0 10px; }
.view img { display: block; max-width: 100%; height: auto; background: #000; border: 1px solid var(--rule); }
.view figcaption { font-size: 14px; }
.flick { position: relative; display: inline-block; max-width: 100%; }
.flick img { display: block; max-width: 100%; height: auto; background: #000; }
.flick img.top { position: absolute; left: 0; top: 0; }
.fade { display: flex; gap: 8px; align-items: center; font-size: 14px; margin: 4px 0; }
.fade input { width: 220px; }
.side table { font-size: 14px; width: 100%; }
.side td, .side th { padding: 3px 6px; }
.side .mini { margin: 2px 0 6px; }
.checks li { margin: 2px 0; color: #8a3c00; font-size: 14px; }
.ratebar { display: flex; gap: 8px; margin: 8px 0; flex-wrap: wrap; }
.ratebar button { font-size: 15px; padding: 6px 12px; border-radius: 6px; border: 2px solid #999; background: #fff; cursor: pointer; }
.ratebar button.on.pass { background: var(--pass); color: #fff; border-color: var(--pass); }
.ratebar button.on.review { background: #E69F00; border-color: #E69F00; }
.ratebar button.on.fail { background: var(--fail); color: #fff; border-color: var(--fail); }
.note { font-size: 14px; white-space: pre-wrap; background: #f5f6f7; padding: 4px 8px; border-radius: 4px; min-height: 2.1em; }
.placeholder { padding: 24px; border: 2px dashed var(--rule); color: var(--muted); text-align: center; font-size: 14px; }
.overlay { position: fixed; inset: 0; background: rgba(0,0,0,0.45); display: none; align-items: center;
           justify-content: center; z-index: 30; }
.overlay.open { display: flex; }
.dialog { background: #fff; border-radius: 8px; padding: 18px 22px; min-width: 380px; max-width: 640px; }
.dialog h3 { margin-top: 0; }
.dialog input, .dialog textarea { width: 100%; font-size: 16px; padding: 6px; }
.dialog textarea { height: 110px; }
.keys td:first-child { font-family: ui-monospace, monospace; font-weight: 700; white-space: nowrap; }
.hint { font-size: 13px; color: var(--muted); }
.plots.mini { grid-template-columns: repeat(auto-fill, minmax(330px, 1fr)); gap: 4px 24px; }
"""

REVIEW_JS = r"""
(function () {
  const rows = RQ.rows;
  const folderKey = decodeURIComponent(location.pathname.replace(/[^/]*$/, ""));
  const KEY = "rq-review:" + folderKey;
  let store;
  try { store = JSON.parse(localStorage.getItem(KEY) || "null"); } catch (e) { store = null; }
  if (!store || typeof store !== "object") store = {};
  store.reviewer = store.reviewer || ""; store.items = store.items || {}; store.pos = store.pos || null;
  const save = () => { try { localStorage.setItem(KEY, JSON.stringify(store)); } catch (e) { /* private mode */ } };
  const itemKey = r => r.id + "|" + (r.m || "");
  const item = r => store.items[itemKey(r)] || (store.items[itemKey(r)] = {r: "", n: "", s: 0, t: ""});
  const rated = i => { const it = store.items[itemKey(rows[i])]; return !!(it && it.r); };
  const $ = id => document.getElementById(id);
  let cur = 0, shownAt = performance.now(), flickTimer = null, pending = null;
  if (store.pos) { const j = rows.findIndex(r => itemKey(r) === store.pos); if (j >= 0) cur = j; }
  const unratedOnly = $("unrated-only"), advance = $("advance");
  unratedOnly.checked = !!store.unratedOnly; advance.checked = !!store.advance;
  unratedOnly.onchange = () => { store.unratedOnly = unratedOnly.checked; save(); if (unratedOnly.checked && rated(cur)) step(1); else show(); };
  advance.onchange = () => { store.advance = advance.checked; save(); };
  const plots = makePlots($("cohort-plots"), {width: 340, rowH: 26, onClick: i => go(i)});

  function account() {
    const now = performance.now(), dt = Math.min((now - shownAt) / 1000, 600);
    shownAt = now;
    if (document.visibilityState === "visible" && rows.length) { const it = item(rows[cur]); it.s = Math.round((it.s + dt) * 10) / 10; }
  }
  function caseRows(i) { const id = rows[i].id, out = []; rows.forEach((r, j) => { if (r.id === id) out.push(j); }); return out; }
  function img(r, bit, name) { return (r.img & bit) ? r.dir + "/snapshots/" + name : null; }
  function viewHtml(src, caption) {
    return src ? '<figure class="view"><img alt="' + esc(caption) + '" src="' + esc(src) + '"><figcaption>' + esc(caption) + "</figcaption></figure>"
               : '<div class="placeholder view">' + esc(caption) + ": no snapshot</div>";
  }
  function figuresHtml(r) {
    let out = "<table><tbody>";
    for (const c of RQ.columns) {
      if (!c.figure) continue;
      const ci = colIndex(c.key), v = r.x[ci];
      const b = c.before ? r.x[colIndex(c.before)] : undefined;
      const flag = (r.outcols || []).indexOf(c.key) >= 0 ? ' <span class="outl" title="robust z-score beyond the cohort limit">outlier</span>' : "";
      out += "<tr><td>" + esc(c.title) + (c.unit ? " (" + esc(c.unit) + ")" : "") + '</td><td class="num">' +
        (b !== undefined ? fmt(b, c.digits) + " \u2192 " : "") + "<b>" + fmt(v, c.digits) + "</b>" + flag + "</td></tr>";
    }
    return out + "</tbody></table>";
  }
  function methodHtml(i, many) {
    const r = rows[i], it = store.items[itemKey(r)] || {r: "", n: ""};
    const worst = img(r, 1, "worst_before_after_axial.png"), whole = img(r, 2, "before_after_axial.png");
    const fixed = img(r, 4, "fixed_axial.png"), reg = img(r, 8, "registered_axial.png");
    let views = "";
    if (worst) views += viewHtml(worst, "worst structure" + (r.w ? " '" + r.w + "'" : "") + ": before | after registration (axial)");
    views += viewHtml(whole, "whole image: before | after registration (axial)");
    if (fixed && reg) {
      views += '<figure class="view"><div class="fade"><label>fixed <input type="range" min="0" max="100" value="' + (store.fade == null ? 100 : store.fade) +
        '" class="fader" aria-label="fade between fixed and registered image"> registered</label>' +
        '<button class="flickbtn" title="f">flicker (f)</button></div><div class="flick" data-showing="registered">' +
        '<img class="bottom" alt="fixed image" src="' + esc(fixed) + '"><img class="top" alt="registered image" src="' + esc(reg) + '"></div>' +
        '<figcaption>fixed and registered image on the same slice: fade with the slider, flicker with f</figcaption></figure>';
    } else views += '<div class="placeholder view">no fixed / registered snapshots for flicker</div>';
    let rate = '<div class="ratebar">' + ["pass", "review", "fail"].map((v, k) =>
      '<button data-rate="' + v + '" class="' + v + (it.r === v ? " on" : "") + '">' + (k + 1) + " " + v + "</button>").join("") + "</div>";
    rate += '<div class="hint">note (n):</div><div class="note">' + esc(it.n || "") + "</div>";
    let side = "";
    if (r.hr) side += '<p class="hint">rating in summary.csv: <span class="badge rating ' + esc(r.hr) + '">' + esc(r.hr) + "</span></p>";
    side += "<h3>Key figures</h3>" + figuresHtml(r);
    const fc = r.fc ? r.fc.split("; ") : [];
    side += "<h3>Failing checks</h3>" + (fc.length ? '<ul class="checks">' + fc.map(c => "<li>" + esc(c) + "</li>").join("") + "</ul>" : '<p class="hint">none</p>');
    if (!r.ev) side += '<p class="reason">' + esc(r.err || "could not be evaluated") + "</p>";
    if (r.out) side += '<p class="outl">outlier in this cohort: ' + esc(r.out) + "</p>";
    side += r.href ? '<p><a class="full" href="' + esc(r.href) + '">full report \u2192</a></p>' : "";
    const head = '<div class="mhead">' + (many ? "<b>" + esc(r.m) + "</b>" : "") + verdictBadge(r) +
      (it.r ? ' <span class="badge rating ' + esc(it.r) + '">rated ' + esc(it.r) + "</span>" : "") + "</div>";
    // several methods: rating on top, the pictures aligned across the columns, the figures below
    const body = many ? rate + '<div class="views">' + views + '</div><div class="side">' + side + "</div>"
      : '<div class="cols"><div class="views">' + views + '</div><div class="side">' + rate + side + "</div></div>";
    return '<section class="method' + (i === cur ? " focus" : "") + '" data-row="' + i + '">' + head + body + "</section>";
  }
  function show() {
    stopFlicker();
    if (!rows.length) { $("case").innerHTML = "<p>No cases.</p>"; return; }
    const r = rows[cur], members = caseRows(cur), many = members.length > 1;
    $("case-id").textContent = r.id;
    $("case-meta").innerHTML = (many ? members.length + " registrations side by side; focused: <b>" + esc(r.m) + "</b>" : (r.m ? "method <b>" + esc(r.m) + "</b>" : ""));
    const box = $("case");
    box.className = "methods" + (many ? " many" : "");
    box.style.gridTemplateColumns = "repeat(" + members.length + ", minmax(0, 1fr))";
    box.innerHTML = members.map(i => methodHtml(i, many)).join("");
    box.querySelectorAll("button[data-rate]").forEach(b => b.onclick = ev => {
      cur = +b.closest(".method").dataset.row; rate(b.dataset.rate); });
    box.querySelectorAll(".fader").forEach(f => f.oninput = () => { store.fade = +f.value; save(); applyFade(); });
    box.querySelectorAll(".flickbtn").forEach(b => b.onclick = () => toggleFlicker());
    box.querySelectorAll(".method").forEach(m => m.onclick = ev => {
      if (ev.target.closest("button, a, input")) return;
      const j = +m.dataset.row; if (j !== cur) { account(); cur = j; show(); } });
    applyFade();
    const nRated = rows.reduce((a, _, i) => a + rated(i), 0);
    $("progress").textContent = "registration " + (cur + 1) + " / " + rows.length + " \u00b7 rated " + nRated +
      " \u00b7 reviewer: " + (store.reviewer || "(not set)");
    const set = new Set(members);
    for (const p of plots) p.highlight(set);
    store.pos = itemKey(r); save();
    document.body.dataset.case = r.id; document.body.dataset.method = r.m || "";
    // fetch the next case's pictures while this one is looked at
    const nxt = next(cur, 1);
    if (nxt !== cur) for (const [bit, name] of [[1, "worst_before_after_axial.png"], [2, "before_after_axial.png"], [4, "fixed_axial.png"], [8, "registered_axial.png"]]) {
      const src = img(rows[nxt], bit, name); if (src) (new Image()).src = src; }
  }
  function applyFade() {
    const v = store.fade == null ? 100 : store.fade;
    document.querySelectorAll(".flick").forEach(f => { f.querySelector("img.top").style.opacity = v / 100;
      f.dataset.showing = v >= 50 ? "registered" : "fixed"; });
  }
  function setShowing(which) {
    document.querySelectorAll(".flick").forEach(f => { f.querySelector("img.top").style.opacity = which === "registered" ? 1 : 0;
      f.dataset.showing = which; });
  }
  function stopFlicker() { if (flickTimer) { clearInterval(flickTimer); flickTimer = null; document.body.dataset.flicker = "off"; applyFade(); } }
  function toggleFlicker() {
    if (flickTimer) { stopFlicker(); return; }
    let which = (document.querySelector(".flick") || {dataset: {}}).dataset.showing === "fixed" ? "registered" : "fixed";
    setShowing(which);
    document.body.dataset.flicker = "on";
    flickTimer = setInterval(() => { which = which === "fixed" ? "registered" : "fixed"; setShowing(which); }, 600);
  }
  function next(from, dir) {
    for (let i = from + dir; i >= 0 && i < rows.length; i += dir) if (!unratedOnly.checked || !rated(i)) return i;
    return from;
  }
  function step(dir) { const j = next(cur, dir); if (j !== cur) { account(); cur = j; save(); show(); } else show(); }
  function go(i) { if (i >= 0 && i < rows.length && i !== cur) { account(); cur = i; show(); } }
  function needReviewer(then) {
    if (store.reviewer) { then(); return; }
    pending = then; openDialog("who");
  }
  function rate(v) {
    needReviewer(() => {
      const it = item(rows[cur]);
      account();
      it.r = v; it.t = new Date().toISOString(); save();
      if (v && advance.checked) step(1); else show();
    });
  }
  function openDialog(id) {
    document.querySelectorAll(".overlay").forEach(o => o.classList.remove("open"));
    const o = $(id); o.classList.add("open");
    const field = o.querySelector("input, textarea");
    if (id === "note-dialog") field.value = item(rows[cur]).n || "";
    if (id === "who") field.value = store.reviewer || "";
    if (id === "search-dialog") { field.value = ""; $("search-info").textContent = ""; }
    if (field) field.focus();
  }
  function closeDialogs() {
    if (document.activeElement && document.activeElement.closest(".overlay")) document.activeElement.blur();
    document.querySelectorAll(".overlay").forEach(o => o.classList.remove("open")); pending = null;
  }
  function dialogOpen() { return !!document.querySelector(".overlay.open"); }
  $("who-input").addEventListener("keydown", ev => {
    if (ev.key === "Enter") { ev.preventDefault(); const name = ev.target.value.trim(); if (!name) return;
      store.reviewer = name; save(); const then = pending; closeDialogs(); if (then) then(); else show(); }
  });
  $("note-input").addEventListener("keydown", ev => {
    if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); const text = ev.target.value;
      closeDialogs(); needReviewer(() => { const it = item(rows[cur]); it.n = text; it.t = it.t || new Date().toISOString(); save(); show(); }); }
  });
  $("search-input").addEventListener("keydown", ev => {
    if (ev.key === "Enter") { ev.preventDefault(); const found = findRows(ev.target.value);
      if (!found.length) { $("search-info").textContent = "no case id matches"; return; }
      closeDialogs(); go(found[0]); }
  });
  document.addEventListener("keydown", ev => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (dialogOpen()) { if (ev.key === "Escape") { ev.preventDefault(); closeDialogs(); } return; }
    if (ev.target.closest && ev.target.closest("input, textarea, select")) return;
    const k = ev.key;
    if (k === "ArrowRight" || k === "j") step(1);
    else if (k === "ArrowLeft" || k === "k") step(-1);
    else if (k === "1") rate("pass");
    else if (k === "2") rate("review");
    else if (k === "3") rate("fail");
    else if (k === "0") rate("");
    else if (k === "n") openDialog("note-dialog");
    else if (k === "f") toggleFlicker();
    else if (k === "/") openDialog("search-dialog");
    else if (k === "?") openDialog("help");
    else if (k === "u") { unratedOnly.checked = !unratedOnly.checked; unratedOnly.onchange(); }
    else return;
    ev.preventDefault();
  });
  document.querySelectorAll(".overlay").forEach(o => o.addEventListener("click", ev => { if (ev.target === o) closeDialogs(); }));
  $("help-btn").onclick = () => openDialog("help");
  $("who-btn").onclick = () => openDialog("who");
  function csvCell(v) { const s = String(v == null ? "" : v); return /[",\n\r]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s; }
  function ratingsCsv() {
    account(); save();
    const lines = ["case_id,method,rating,note,reviewer,seconds,rated_at"];
    for (const r of rows) {
      const it = store.items[itemKey(r)];
      if (!it || !(it.r || it.n)) continue;
      lines.push([r.id, r.m || "", it.r, it.n, store.reviewer, it.s.toFixed(1), it.t].map(csvCell).join(","));
    }
    return lines.join("\r\n") + "\r\n";
  }
  window.rqRatingsCsv = ratingsCsv;
  $("export").onclick = () => {
    const url = URL.createObjectURL(new Blob([ratingsCsv()], {type: "text/csv"}));
    const a = document.createElement("a"); a.href = url; a.download = "ratings.csv";
    document.body.appendChild(a); a.click(); a.remove(); setTimeout(() => URL.revokeObjectURL(url), 1000);
  };
  document.addEventListener("visibilitychange", () => { if (document.visibilityState === "hidden") { account(); save(); } else shownAt = performance.now(); });
  window.addEventListener("pagehide", () => { account(); save(); });
  if (unratedOnly.checked && rows.length && rated(cur)) { const j = next(cur, 1); if (j !== cur) cur = j; }
  show();
  markReady();
})();
"""
