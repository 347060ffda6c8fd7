"""mfd map --png and --html: pixels of the PNG, and the HTML page rendered
and hovered by a real headless browser (Debian's chromium)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from mfd import pageblocks as pb
from mfd.model.physmap import PhysMap, ZoneMap

from conftest import needs_root, run_mfd

P = 512
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium (scripts/setup.sh --test)")


def synthetic(polluted=None):
    # DMA32: 1024 blocks, a quarter each free, pinned, compactable, hole;
    # Normal: 2048 blocks, 3/4 free and 1/4 huge; every row of 512 blocks
    # holds its zone's mix (rows get whole pixels: some one more than others)
    dma32 = np.tile(np.repeat(np.array([pb.FREE, pb.PINNED, pb.COMPACTABLE, pb.HOLE], np.uint8),
                              128), 2)
    normal = np.tile(np.concatenate([np.full(384, pb.FREE, np.uint8),
                                     np.full(128, pb.HUGE, np.uint8)]), 4)
    zones = [ZoneMap(0, "DMA32", 4096, 1 << 19, 8, dma32, np.zeros(1024, np.uint32),
                     {"slab": 256}, {"slab": 300}, [("/a<b>&c", 4)],
                     migratetype_blocks={"Movable": 900, "Unmovable": 124}),
             ZoneMap(0, "Normal", 1 << 20, 1 << 21, 2048, normal, np.zeros(2048, np.uint32),
                     polluted=polluted)]
    return PhysMap("host</script><b>", "6.18.0", 0.0, 4096, 9, P, zones, 0.5, 0.01)


def pixels(png: bytes) -> np.ndarray:
    import io
    from matplotlib import image
    return (image.imread(io.BytesIO(png), format="png")[:, :, :3] * 255).round().astype(np.uint8)


def count(img: np.ndarray, color: str) -> int:
    from mfd.report.mapimage import rgb
    return int((img == np.array(rgb(color), np.uint8)).all(axis=2).sum())


def test_png_pixels_are_the_classes_in_their_proportions():
    pytest.importorskip("matplotlib")
    from mfd.report.mapimage import COLORS, ROW_BLOCKS, raster, render_map_png
    pm = synthetic()
    png = render_map_png(pm)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    img = pixels(png)
    assert img.shape[1] == 1200
    got = {c: count(img, COLORS[c]) for c in COLORS}
    # 256 blocks of pinned, compactable and hole, 512 of huge, 1792 of free
    unit = got[pb.PINNED]
    assert unit > 1000
    for c, blocks in ((pb.COMPACTABLE, 256), (pb.HOLE, 256), (pb.HUGE, 512), (pb.FREE, 1792)):
        assert abs(got[c] / unit / (blocks / 256) - 1) < 0.06, (pb.CLASSES[c], got)
    # the raster itself is exact: one pixel per block, zones in bands
    image, bands, per = raster(pm)
    assert per == 1 and [b[1] for b in bands] == [1024 // ROW_BLOCKS, 2048 // ROW_BLOCKS]
    assert bands[1][3] == pytest.approx(4.0)          # Normal starts at 4 GiB


def test_png_marks_polluted_blocks():
    pytest.importorskip("matplotlib")
    from mfd.report.mapimage import POLLUTED, render_map_png
    assert count(pixels(render_map_png(synthetic())), POLLUTED) == 0
    img = pixels(render_map_png(synthetic(polluted=set(range(0, 2048, 8)))))
    assert count(img, POLLUTED) > 500


def test_html_escapes_every_string_from_the_kernel():
    from mfd.report.maphtml import map_page
    page = map_page(synthetic())
    data = re.search(r"<script type='application/json' id='mfd-map'>(.*?)</script>", page, re.S)
    assert "</script><b>" not in page.split("<script")[0]
    assert "<b>" not in data.group(1) and "</" not in data.group(1)
    doc = json.loads(data.group(1))
    assert [len(z["cells"]) for z in doc["zones"]] == [1024, 2048]


def _chromium(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                           "--no-first-run", "--user-data-dir=" + os.environ.get("TMPDIR", "/tmp")
                           + f"/mfd-chromium-{os.getpid()}", *args, url],
                          capture_output=True, text=True, timeout=120)


@needs_chromium
def test_a_browser_draws_the_map_and_hovering_shows_the_cell(tmp_path):
    from mfd.report.maphtml import map_page
    from mfd.report.mapimage import COLORS
    page = tmp_path / "map.html"
    page.write_text(map_page(synthetic()))
    # DMA32 cell 200 is pinned (blocks 128..255), pfn (8 + 200) * 512
    r = _chromium(f"file://{page}#hover=0,200", "--dump-dom")
    assert r.returncode == 0, r.stderr[-2000:]
    tip = re.search(r'<div id="tip"[^>]*>(.*?)</div>', r.stdout, re.S)
    assert tip, r.stdout[-2000:]
    text = tip.group(1)
    first = (8 + 200) * P
    assert "node 0 DMA32" in text and f"pfn {first:#x}-{first + P - 1:#x}" in text
    assert "class: pinned" in text and "Movable 900" in text
    shot = tmp_path / "shot.png"
    r = _chromium(f"file://{page}", f"--screenshot={shot}", "--window-size=1200,900")
    assert r.returncode == 0 and shot.exists(), r.stderr[-2000:]
    img = pixels(shot.read_bytes())
    # 4x4 px cells: DMA32's 256 pinned blocks are 4096 red pixels, and so on
    assert count(img, COLORS[pb.PINNED]) >= 256 * 16 * 0.95
    assert count(img, COLORS[pb.HUGE]) >= 512 * 16 * 0.95


@needs_root
@needs_chromium
def test_live_html_and_png(tmp_path):
    pytest.importorskip("matplotlib")
    r = run_mfd("map", "--png", str(tmp_path / "m.png"), "--html", str(tmp_path / "m.html"),
                timeout=120)
    assert r.returncode == 0 and r.stdout == "", r.stderr
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"
    r = _chromium(f"file://{tmp_path / 'm.html'}#hover=0,0", "--dump-dom")
    assert re.search(r'<div id="tip"[^>]*>node 0 ', r.stdout), r.stdout[-1000:]
