"""The HTML report of ``heads predict --scans ... --html report.html``: every scan with its
entities drawn on it in their type's colour, an index of the entities across the book
(people, places ... with the pages they are on), a table of every entity, sortable and
searchable, and the scans that could not be read, each with its reason.

One HTML file with its scans beside it (``report_files/``: a JPEG copy of each, so TIFF
scans, which browsers do not show, show too). The page needs no network and no server: the
boxes are SVG over each picture, in the scan's own pixel coordinates, and sorting and
searching are a few lines of plain JavaScript over the table the file already holds.
"""

from __future__ import annotations

import html
import shutil
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from featurize.atomic import atomic_write_text
from heads.scan_pages import ScanResult

COLOURS = {  # by type name, upper-cased; others take the palette in order
    "PER": "#d62728", "PERS": "#d62728", "LOC": "#1f77b4", "ORG": "#2ca02c", "BUI": "#ff7f0e",
    "MIS": "#9467bd", "MISC": "#9467bd", "PROD": "#8c564b", "TIME": "#7f7f7f", "DATE": "#7f7f7f",
}  # fmt: skip
PALETTE = ["#e377c2", "#17becf", "#bcbd22", "#8c564b", "#7f7f7f", "#393b79"]
MAX_WIDTH = 1400  # pixels of a scan's copy in the report


def colours(types: list[str]) -> dict[str, str]:
    out, spare = {}, iter(PALETTE * 4)
    for kind in sorted(set(types)):
        out[kind] = COLOURS.get(kind.upper()) or next(spare)
    return out


def _copy_image(result: ScanResult, folder: Path, n: int) -> str:
    from PIL import Image

    name = f"{n:05d}.jpg"
    with Image.open(result.path) as img:
        img = img.convert("RGB")
        if img.width > MAX_WIDTH:
            img = img.resize((MAX_WIDTH, round(img.height * MAX_WIDTH / img.width)))
        img.save(folder / name, quality=85)
    return name


def _scan_section(result: ScanResult, n: int, image: str, palette: dict[str, str], files: str) -> str:
    esc = html.escape
    rects = []
    for e, entity in enumerate(result.entities):
        colour = palette[str(entity["type"])]
        tip = esc(f"{entity['text']} ({entity['type']}, {float(entity['score']):.2f})")
        for x0, y0, x1, y1 in entity["boxes"]:
            pad = 2
            rects.append(
                f'<rect class="ent" data-type="{esc(str(entity["type"]))}" id="e{n}-{e}" '
                f'x="{x0 - pad}" y="{y0 - pad}" width="{x1 - x0 + 2 * pad}" height="{y1 - y0 + 2 * pad}" '
                f'stroke="{colour}" fill="{colour}"><title>{tip}</title></rect>'
            )
    listed = "".join(
        f'<li><span class="tag" style="background:{palette[str(e["type"])]}">{esc(str(e["type"]))}</span> '
        f"{esc(str(e['text']))} <small>{float(e['score']):.2f}</small></li>"
        for e in result.entities
    )
    return (
        f'<section class="scan" id="scan-{n}"><h3>{esc(result.scan)} '
        f"<small>{len(result.entities)} entities, {len(result.tokens)} words"
        f"{' (OCR cached)' if result.ocr.get('cached') else ''}</small></h3>"
        f'<div class="page"><div class="frame"><img src="{esc(files)}/{image}" alt="{esc(result.scan)}" '
        f'width="{result.width}" height="{result.height}">'
        f'<svg viewBox="0 0 {result.width} {result.height}" preserveAspectRatio="none">{"".join(rects)}</svg>'
        f'</div><ul class="found">{listed or "<li>no entities</li>"}</ul></div></section>'
    )


def write_report(results: list[ScanResult], out: Path, model: str, command: str) -> Path:
    """Write ``out`` and its ``<stem>_files/`` folder of scan copies; returns ``out``."""
    esc = html.escape
    out = Path(out)
    good = [r for r in results if r.error is None]
    bad = [r for r in results if r.error is not None]
    palette = colours([str(e["type"]) for r in good for e in r.entities])
    files = out.parent / f"{out.stem}_files"
    staging = out.parent / f".{out.stem}_files.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    sections, rows = [], []
    index: dict[tuple[str, str], list[int]] = defaultdict(list)
    for n, result in enumerate(results):
        if result.error is not None:
            continue
        sections.append(_scan_section(result, n, _copy_image(result, staging, n), palette, files.name))
        for e, entity in enumerate(result.entities):
            kind, text = str(entity["type"]), str(entity["text"])
            index[(kind, text)].append(n)
            rows.append(
                f'<tr data-type="{esc(kind)}"><td><a href="#scan-{n}" data-box="e{n}-{e}">{esc(text)}</a></td>'
                f'<td><span class="tag" style="background:{palette[kind]}">{esc(kind)}</span></td>'
                f'<td data-sort="{float(entity["score"]):.4f}">{float(entity["score"]):.2f}</td>'
                f"<td>{esc(result.scan)}</td></tr>"
            )
    index_rows = [
        f'<tr data-type="{esc(kind)}"><td>{esc(text)}</td>'
        f'<td><span class="tag" style="background:{palette[kind]}">{esc(kind)}</span></td>'
        f'<td data-sort="{len(pages)}">{len(pages)}</td><td data-sort="{len(set(pages))}">{len(set(pages))}</td><td>'
        + ", ".join(f'<a href="#scan-{p}">{esc(results[p].scan)}</a>' for p in sorted(set(pages)))
        + "</td></tr>"
        for (kind, text), pages in sorted(index.items(), key=lambda kv: (kv[0][0], kv[0][1].lower()))
    ]
    bad_rows = "".join(f"<li><b>{esc(r.scan)}</b>: {esc(str(r.error))}</li>" for r in bad)
    legend = "".join(
        f'<label><input type="checkbox" class="typefilter" value="{esc(k)}" checked> '
        f'<span class="tag" style="background:{c}">{esc(k)}</span></label> '
        for k, c in palette.items()
    )
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = PAGE.format(
        title=esc(f"Entities in {len(results)} scans"),
        model=esc(model),
        command=esc(command),
        stamp=stamp,
        n_scans=len(results),
        n_good=len(good),
        n_entities=len(rows),
        n_bad=len(bad),
        legend=legend,
        index_rows="".join(index_rows),
        rows="".join(rows),
        bad=f"<ul>{bad_rows}</ul>" if bad else "<p>none</p>",
        sections="".join(sections),
        style=STYLE,
        script=SCRIPT,
    )
    if files.exists():
        shutil.rmtree(files)
    staging.rename(files)
    atomic_write_text(out, body)
    return out


STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left}
th{cursor:pointer;background:#f4f4f4;user-select:none}th.asc::after{content:" \\25B2"}th.desc::after{content:" \\25BC"}
.tag{color:#fff;border-radius:3px;padding:0 4px;font-size:.85em}
.scan{margin:2em 0;border-top:2px solid #eee}.page{display:flex;gap:1.5em;align-items:flex-start}
.frame{position:relative;max-width:70vw}.frame img{display:block;max-width:100%;height:auto}
.frame svg{position:absolute;left:0;top:0;width:100%;height:100%}
rect.ent{fill-opacity:.18;stroke-width:3;vector-effect:non-scaling-stroke}rect.ent.hl{fill-opacity:.5}
rect.hidden{display:none}.found{list-style:none;padding:0}#search{font-size:1em;padding:4px;width:20em}
small{color:#666}
"""

SCRIPT = """
function sortable(table){
  table.querySelectorAll('th').forEach(function(th,col){
    th.addEventListener('click',function(){
      var body=table.tBodies[0], rows=Array.from(body.rows), asc=!th.classList.contains('asc');
      table.querySelectorAll('th').forEach(function(h){h.classList.remove('asc','desc')});
      th.classList.add(asc?'asc':'desc');
      function key(r){var c=r.cells[col];return c.dataset.sort!==undefined?parseFloat(c.dataset.sort):c.textContent.toLowerCase()}
      rows.sort(function(a,b){var x=key(a),y=key(b);return (x<y?-1:x>y?1:0)*(asc?1:-1)});
      rows.forEach(function(r){body.appendChild(r)});
    });
  });
}
function applyFilters(){
  var q=document.getElementById('search').value.toLowerCase();
  var on=new Set(Array.from(document.querySelectorAll('.typefilter:checked')).map(function(c){return c.value}));
  document.querySelectorAll('table.filter tbody tr').forEach(function(r){
    r.style.display=(on.has(r.dataset.type)&&r.textContent.toLowerCase().indexOf(q)>=0)?'':'none';
  });
  document.querySelectorAll('rect.ent').forEach(function(r){r.classList.toggle('hidden',!on.has(r.dataset.type))});
  var shown=document.querySelectorAll('#entities tbody tr:not([style*="none"])').length;
  document.getElementById('shown').textContent=shown;
}
document.querySelectorAll('table.sortable').forEach(sortable);
document.getElementById('search').addEventListener('input',applyFilters);
document.querySelectorAll('.typefilter').forEach(function(c){c.addEventListener('change',applyFilters)});
document.querySelectorAll('a[data-box]').forEach(function(a){
  a.addEventListener('mouseenter',function(){var r=document.getElementById(a.dataset.box);if(r)r.classList.add('hl')});
  a.addEventListener('mouseleave',function(){var r=document.getElementById(a.dataset.box);if(r)r.classList.remove('hl')});
});
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width,initial-scale=1"><style>{style}</style></head>
<body>
<h1>{title}</h1>
<p>Model <code>{model}</code>; {n_good} of {n_scans} scans read, {n_entities} entities, {n_bad} bad scans.
Made {stamp} by <code>{command}</code>.</p>
<p><input id="search" type="search" placeholder="Search entities, scans ..."> {legend}
<small><span id="shown">{n_entities}</span> shown</small></p>
<h2 id="index">Index</h2>
<table id="index-table" class="sortable filter"><thead><tr><th>entity</th><th>type</th><th>mentions</th><th>scans</th><th>where</th></tr></thead>
<tbody>{index_rows}</tbody></table>
<h2>All entities</h2>
<table id="entities" class="sortable filter"><thead><tr><th>entity</th><th>type</th><th>score</th><th>scan</th></tr></thead>
<tbody>{rows}</tbody></table>
<h2 id="bad">Scans that could not be read</h2>
{bad}
<h2>Scans</h2>
{sections}
<script>{script}</script>
</body></html>
"""


def summary(results: list[ScanResult]) -> dict[str, Any]:
    """Counts for the command's last line."""
    kinds: dict[str, int] = defaultdict(int)
    for r in results:
        for e in r.entities:
            kinds[str(e["type"])] += 1
    return {
        "scans": len(results),
        "bad": sum(r.error is not None for r in results),
        "entities": sum(kinds.values()),
        "types": dict(sorted(kinds.items())),
        "cached": sum(bool(r.ocr.get("cached")) for r in results),
    }
