"""``mfd map --html``: the pageblock map as one self-contained page.  A
canvas per zone, drawn by a small script from the map's data; hovering a
cell shows its pfn range, zone, class counts and the zone's pageblocks per
migratetype (/proc/pagetypeinfo counts them per zone: no /proc file gives
one block's type).

Every string from the kernel reaches the page as JSON inside a
``<script type="application/json">`` with ``<``, ``>`` and ``&`` escaped, so
it cannot end the script element, and the script writes it with
textContent, never as markup.
"""
from __future__ import annotations

import html
import json
import time

import numpy as np

from .. import pageblocks as pb
from ..model.physmap import PhysMap
from .mapimage import COLORS, POLLUTED

COLS = 256                # cells per canvas row
MAX_CELLS = 1 << 18       # per page: a cell stands for more blocks beyond

SCRIPT = r"""
(function () {
  var D = JSON.parse(document.getElementById('mfd-map').textContent);
  var S = D.cell, tip = document.getElementById('tip');
  function hex(n) { return '0x' + n.toString(16); }
  function gib(pfn) { return (pfn * D.page_size / 1073741824).toFixed(3); }
  function describe(z, i) {
    var first = (z.first_block + i * D.per_cell) * D.pages_per_block;
    var last = Math.min(first + D.per_cell * D.pages_per_block, z.end_block * D.pages_per_block) - 1;
    var c = z.cells[i], counts = [];
    for (var k = 0; k < D.classes.length; k++) {
      var n = z.counts ? z.counts[i * D.classes.length + k] : (k === c ? 1 : 0);
      if (n) counts.push(D.classes[k] + ' ' + n);
    }
    var mt = [];
    for (var t in (z.migratetypes || {})) mt.push(t + ' ' + z.migratetypes[t]);
    return 'node ' + z.node + ' ' + z.zone + '\n' +
      'pfn ' + hex(first) + '-' + hex(last) + ' (' + gib(first) + '-' + gib(last + 1) + ' GiB)\n' +
      'class: ' + D.classes[c] + (z.polluted && z.polluted[i] ? ', polluted by extfrag' : '') + '\n' +
      'pageblocks: ' + counts.join(', ') + '\n' +
      'zone migratetypes: ' + (mt.length ? mt.join(', ') : 'unknown (pagetypeinfo unread)');
  }
  function hover(canvas, z, x, y) {
    var col = Math.floor(x / S), row = Math.floor(y / S), i = row * D.cols + col;
    if (col < 0 || col >= D.cols || i < 0 || i >= z.cells.length) { tip.style.display = 'none'; return; }
    tip.textContent = describe(z, i);
    tip.style.display = 'block';
    var r = canvas.getBoundingClientRect();
    tip.style.left = (window.scrollX + r.left + x + 14) + 'px';
    tip.style.top = (window.scrollY + r.top + y + 14) + 'px';
  }
  var canvases = [];
  D.zones.forEach(function (z, zi) {
    var h = document.createElement('h2');
    h.textContent = 'node ' + z.node + ' ' + z.zone + ': ' + z.summary;
    var canvas = document.createElement('canvas');
    var rows = Math.max(1, Math.ceil(z.cells.length / D.cols));
    canvas.width = D.cols * S; canvas.height = rows * S; canvas.id = 'zone' + zi;
    var g = canvas.getContext('2d');
    for (var i = 0; i < z.cells.length; i++) {
      g.fillStyle = z.polluted && z.polluted[i] ? D.polluted_color : D.colors[z.cells[i]];
      g.fillRect((i % D.cols) * S, Math.floor(i / D.cols) * S, S, S);
    }
    canvas.addEventListener('mousemove', function (e) {
      var r = canvas.getBoundingClientRect();
      hover(canvas, z, e.clientX - r.left, e.clientY - r.top);
    });
    canvas.addEventListener('mouseleave', function () { tip.style.display = 'none'; });
    document.getElementById('zones').appendChild(h);
    document.getElementById('zones').appendChild(canvas);
    canvases.push(canvas);
  });
  // #hover=ZONE,CELL: hover that cell on load (for a screenshot, or a link)
  var m = /^#hover=(\d+),(\d+)$/.exec(location.hash);
  if (m && canvases[+m[1]]) {
    var c = canvases[+m[1]], i = +m[2], r = c.getBoundingClientRect();
    c.dispatchEvent(new MouseEvent('mousemove', {
      clientX: r.left + (i % D.cols) * S + S / 2, clientY: r.top + Math.floor(i / D.cols) * S + S / 2}));
  }
})();
"""


def _json_for_script(doc) -> str:
    return (json.dumps(doc, separators=(",", ":"))
            .replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e"))


def page_data(pm: PhysMap) -> dict:
    total = sum(z.blocks for z in pm.zones)
    per = max(1, -(-total // MAX_CELLS))
    zones = []
    for z in pm.zones:
        cells = pb.worst_per_cell(z.classes, per)
        zd = {"node": z.node, "zone": z.zone, "first_block": z.first_block,
              "end_block": z.first_block + z.blocks, "cells": cells.tolist(),
              "migratetypes": z.migratetype_blocks,
              "summary": ", ".join(f"{name} {int(n)}" for name, n in
                                   zip(pb.CLASSES, np.bincount(z.classes,
                                                               minlength=len(pb.CLASSES)))
                                   if n)}
        if per > 1:
            padded = np.full(len(cells) * per, 255, np.int64)
            padded[:z.blocks] = z.classes
            grid = padded.reshape(len(cells), per)
            zd["counts"] = np.stack([(grid == c).sum(axis=1) for c in range(len(pb.CLASSES))],
                                    axis=1).reshape(-1).tolist()
        if z.polluted:
            marks = np.zeros(len(cells) * per, bool)
            marks[sorted(z.polluted)] = True
            zd["polluted"] = marks.reshape(len(cells), per).any(axis=1).astype(int).tolist()
        zones.append(zd)
    return {"classes": list(pb.CLASSES), "colors": [COLORS[c] for c in range(len(pb.CLASSES))],
            "polluted_color": POLLUTED, "per_cell": per, "cols": COLS, "cell": 4,
            "pages_per_block": pm.block_pages, "page_size": pm.page_size, "zones": zones}


def map_page(pm: PhysMap) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(pm.time))
    title = html.escape(f"mfd map: {pm.host}, kernel {pm.kernel}, {when}")
    legend = "".join(f"<span><i style='background:{COLORS[c]}'></i>{html.escape(name)}</span>"
                     for c, name in enumerate(pb.CLASSES))
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>{title}</title><style>"
            "body{font-family:sans-serif;margin:1.5em;color:#222}"
            "h2{font-size:100%;margin:1em 0 .3em}canvas{display:block;cursor:crosshair}"
            "#legend span{margin-right:1.2em}#legend i{display:inline-block;width:1em;"
            "height:1em;margin-right:.3em;vertical-align:middle;border:1px solid #555}"
            "#tip{position:absolute;display:none;white-space:pre;background:#fffff0;"
            "border:1px solid #888;padding:4px 6px;font-size:85%;pointer-events:none}"
            f"</style></head><body><h1>{title}</h1><div id='legend'>{legend}</div>"
            "<div id='zones'></div><div id='tip'></div>"
            f"<script type='application/json' id='mfd-map'>{_json_for_script(page_data(pm))}"
            f"</script><script>{SCRIPT}</script></body></html>")
