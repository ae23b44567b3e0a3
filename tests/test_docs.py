"""The documentation site builds in strict mode (broken references fail), and the public API is
documented."""

from __future__ import annotations

import functools
import html
import http.server
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import smetool

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site, built once in strict mode (broken references fail)."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_docs_build_in_strict_mode(site):
    api = (site / "api" / "index.html").read_text()
    assert "Euler" in api and "Parameters" in api
    assert "smetool.convergence" in api
    # the mathematics is typeset from the vendored KaTeX: no page asks the network for anything
    concepts = (site / "concepts" / "index.html").read_text()
    assert 'class="arithmatex"' in concepts and "assets/katex/katex.min.js" in concepts
    for page in site.rglob("*.html"):
        text = page.read_text()
        assert "cdn.jsdelivr" not in text and "unpkg.com" not in text and "mathjax" not in \
            text.lower(), page
    css = (site / "assets" / "katex" / "katex.min.css").read_text()
    fonts = {m.group(1) for m in re.finditer(r"url\((fonts/[^)]+\.woff2)\)", css)}
    assert fonts and all((site / "assets" / "katex" / f).exists() for f in fonts)


def _math(site: Path) -> list[tuple[str, str, bool]]:
    """(page, TeX, display) of every formula arithmatex left for KaTeX in the built site."""
    out = []
    for page in sorted(site.rglob("*.html")):
        for m in re.finditer(r'<(span|div) class="arithmatex">(.*?)</\1>', page.read_text(), re.S):
            tex = html.unescape(m.group(2)).strip()
            display = m.group(1) == "div"
            tex = tex[2:-2] if tex[:2] in ("\\(", "\\[") else tex
            out.append((str(page.relative_to(site)), tex, display))
    return out


def test_every_formula_is_valid_tex_for_katex(site):
    """Each formula of the site through the vendored KaTeX with throwOnError (needs Node.js;
    the browser test below sees the same in the page)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed")
    formulas = _math(site)
    assert len(formulas) >= 50, len(formulas)
    script = site / "check_math.js"
    script.write_text(
        "const katex = require(process.argv[2]);\n"
        "const items = JSON.parse(require('fs').readFileSync(process.argv[3], 'utf8'));\n"
        "const bad = [];\n"
        "for (const [page, tex, display] of items) {\n"
        "  try { katex.renderToString(tex, {displayMode: display, throwOnError: true}); }\n"
        "  catch (e) { bad.push(page + ': ' + tex + ' -- ' + e.message); }\n"
        "}\n"
        "console.log(JSON.stringify(bad));\n")
    data = site / "math.json"
    data.write_text(json.dumps(formulas))
    done = subprocess.run([node, str(script), str(site / "assets" / "katex" / "katex.min.js"),
                           str(data)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == []


MEASURE = """<!doctype html><html><body>
<iframe id="f" width="1280" height="900"></iframe><pre id="out">pending</pre>
<script>
var f = document.getElementById("f");
f.onload = function () {
  setTimeout(function () {
    var d = f.contentDocument, w = f.contentWindow, res = {
      katex: d.querySelectorAll(".katex").length,
      errors: d.querySelectorAll(".katex-error").length,
      untypeset: d.querySelectorAll(".arithmatex:not([data-typeset])").length,
      tables: [], images: []};
    d.querySelectorAll("article table").forEach(function (t) {
      var box = t.parentElement, scrolls = false;
      for (var e = t.parentElement; e && e.tagName !== "ARTICLE"; e = e.parentElement) {
        var o = w.getComputedStyle(e).overflowX;
        if ((o === "auto" || o === "scroll") && e.clientWidth < t.scrollWidth + 2) {
          scrolls = true; box = e; break;
        }
      }
      res.tables.push({width: t.scrollWidth, box: box.clientWidth, scrolls: scrolls,
                       right: t.getBoundingClientRect().right});
    });
    d.querySelectorAll("article img").forEach(function (i) {
      res.images.push([i.getAttribute("src"), i.naturalWidth]);
    });
    document.getElementById("out").textContent = JSON.stringify(res);
  }, 1500);
};
f.src = new URLSearchParams(location.search).get("page");
</script></body></html>
"""


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_pages_in_a_real_browser(site, tmp_path):
    """Headless Chromium at 1280 px on the site served on localhost: every formula typeset without
    a KaTeX error, every table wider than the column inside a box that scrolls sideways (none cut
    off), every image of a page loaded (the validation page's convergence figures among them);
    screenshots are left in the test's folder. Skips where Chromium is not installed (CI has
    none: the check is run on a machine with Debian's `chromium` package)."""
    browser = _chromium()
    if browser is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    (site / "measure.html").write_text(MEASURE)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--window-size=1300,1000", "--virtual-time-budget=15000"]
    try:
        for page in ("", "concepts/", "solvers/", "numerics/", "tutorial-plugin/",
                     "tutorial-own-network/", "validation/"):
            profile = tmp_path / f"profile-{len(page)}"
            done = subprocess.run([browser, *flags, f"--user-data-dir={profile}", "--dump-dom",
                                   f"{base}/measure.html?page=/{page}"],
                                  capture_output=True, text=True, timeout=120)
            found = re.search(r'<pre id="out">(.*?)</pre>', done.stdout, re.S)
            assert found and found.group(1) != "pending", (page, done.stderr[-1000:])
            res = json.loads(html.unescape(found.group(1)))
            assert res["errors"] == 0 and res["untypeset"] == 0, (page, res)
            for table in res["tables"]:
                assert table["width"] <= table["box"] + 2 or table["scrolls"], (page, table)
            for src, width in res["images"]:
                assert width > 0, (page, src)
            if page in ("concepts/", "solvers/", "numerics/"):
                assert res["katex"] >= 5, (page, res)
            subprocess.run([browser, *flags, f"--user-data-dir={profile}",
                            "--window-size=1280,2000", "--hide-scrollbars",
                            f"--screenshot={tmp_path / ((page.strip('/') or 'index') + '.png')}",
                            f"{base}/{page}"], capture_output=True, timeout=120)
    finally:
        server.shutdown()


def test_every_public_name_has_a_docstring():
    missing = [name for name in smetool.__all__ if name != "__version__"
               and not (inspect.getdoc(getattr(smetool, name)) or "").strip()]
    assert not missing, missing


def test_nav_pages_exist():
    text = (ROOT / "mkdocs.yml").read_text()
    for line in text.splitlines():
        if line.strip().startswith("- ") and line.strip().endswith(".md"):
            page = line.split(":")[-1].strip()
            assert (ROOT / "docs" / page).exists(), page


def test_the_readme_numbers_are_the_rendering_of_the_validation_record():
    """The README's measured table is generated from docs/validation.json (the commit it names):
    a number typed by hand, or a record regenerated without re-rendering, fails here."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "readme_numbers.py"
    done = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_analysis_page_shows_the_committed_run():
    # docs/analysis.md quotes the table of the run in docs/figures/analysis/ verbatim; the record
    # is strict JSON and its findings are those of the table
    import json

    run = ROOT / "docs" / "figures" / "analysis"
    assert (run / "table.md").read_text() in (ROOT / "docs" / "analysis.md").read_text()
    record = json.loads((run / "report.json").read_text(),
                        parse_constant=lambda c: pytest.fail(f"non-strict JSON: {c}"))
    assert record["config"]["plugin"] == "dropout" and record["config"]["n_seeds"] == 8
    from smetool.analysis.report import markdown_table

    assert markdown_table(record) == (run / "table.md").read_text()
