"""The report in a real browser with the network cut off: headless Chromium opens a real run's
``report.html`` from ``file://``; a checker script injected into a copy of the page writes into
the DOM whether every image loaded, which script errors happened and which resources were
fetched, and ``--dump-dom`` hands that back. Skipped when no Chromium is installed
(``.ci/run`` installs it)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.slow

CHECKER = """<script>
window.__errors = [];
window.addEventListener("error", function (e) {
  var t = e.target || {};
  window.__errors.push(String(e.message || ("failed to load " + (t.src || t.href || t.tagName))));
}, true);
window.addEventListener("unhandledrejection", function (e) {
  window.__errors.push("unhandled rejection: " + String(e.reason));
});
(function () {
  var orig = console.error;
  console.error = function () {
    window.__errors.push("console.error: " + Array.prototype.join.call(arguments, " "));
    return orig.apply(console, arguments);
  };
})();
window.addEventListener("load", function () {
  setTimeout(function () {
    var imgs = Array.prototype.slice.call(document.images);
    var res = {
      images: imgs.length,
      broken: imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                  .map(function (i) { return i.getAttribute("src"); }),
      reasons: Array.prototype.map.call(
        document.querySelectorAll("section.reason[data-reason]"),
        function (s) { return s.getAttribute("data-kind") + ":" + s.getAttribute("data-reason"); }),
      placeholders: document.querySelectorAll(".placeholder").length,
      charts: document.querySelectorAll("svg.chart").length,
      resources: performance.getEntriesByType("resource").map(function (r) { return r.name; }),
      urls: Array.prototype.map.call(document.querySelectorAll("[src],[href]"),
        function (e) { return e.src || e.href; }),
      errors: window.__errors
    };
    var pre = document.createElement("pre");
    pre.id = "checker-result";
    pre.textContent = JSON.stringify(res);
    document.body.appendChild(pre);
  }, 0);
});
</script>"""


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _offline_prefix() -> list[str]:
    """``unshare -n`` (a network namespace with nothing in it) where this user may make one."""
    unshare = shutil.which("unshare")
    if unshare:
        for flags in (["-n"], ["-r", "-n"]):
            ok = subprocess.run([unshare, *flags, "true"], capture_output=True, timeout=30)
            if ok.returncode == 0:
                return [unshare, *flags]
    return []


def _check(page: Path, browser: str, profile: Path) -> dict:
    """Load ``page`` (a copy of the report with the checker) and return the checker's findings."""
    cmd = [*_offline_prefix(), browser, "--headless", "--no-sandbox", "--disable-gpu",
           "--no-first-run", "--disable-extensions", "--disable-background-networking",
           "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
           "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
           "--virtual-time-budget=10000", "--dump-dom", page.as_uri()]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    m = re.search(r'<pre id="checker-result">(.*?)</pre>', p.stdout, re.S)
    assert m, f"no checker result; rc {p.returncode}; stderr: {p.stderr[-2000:]}"
    raw = m.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
    return json.loads(raw.replace("&amp;", "&"))


def _with_checker(report: Path, name: str, extra: str = "") -> Path:
    html = report.read_text(encoding="utf-8")
    page = report.with_name(name)  # beside the report: its relative image paths still work
    page.write_text(html.replace("<head>", "<head>" + CHECKER, 1).replace(
        "</body>", extra + "</body>", 1), encoding="utf-8")
    return page


@pytest.fixture(scope="module")
def browser() -> str:
    path = _chromium()
    if path is None:
        pytest.skip("no chromium binary (apt-get install chromium)")
    return path


@pytest.fixture(scope="module")
def cli_run(report_corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("browser_out")
    p = subprocess.run([sys.executable, "-m", "clipfactory.cli", "run", "--input",
                        str(report_corpus), "--output", str(out), "--workers", "2", "--quiet"],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert "report: " in p.stdout
    return out


def test_report_loads_offline_with_every_image_and_no_error(browser, cli_run, tmp_path):
    found = _check(_with_checker(cli_run / "report.html", "report-check.html"), browser,
                   tmp_path / "profile")
    rej = pq.read_table(cli_run / "rejected.parquet").to_pylist()
    want = {f"{r['kind']}:{r['stage']}/{r['reason']}" for r in rej}
    assert {"clip:filter/too_dark", "clip:filter/static", "clip:dedup/near_duplicate",
            "video:probe/not_a_media_file"} <= want
    assert Counter(found["reasons"]) == Counter(want)  # one section per reason
    assert found["images"] > 0 and found["broken"] == []
    assert found["placeholders"] == 0  # every source and shard is there
    assert found["errors"] == []
    assert found["charts"] >= 5
    # every URL the page refers to, resolved by the browser, and anything it fetched, is a file
    assert found["urls"] and all(u.startswith("file://") for u in found["urls"]), found["urls"]
    assert all(u.startswith("file://") for u in found["resources"]), found["resources"]


def test_the_checker_sees_a_broken_image_and_a_script_error(browser, cli_run, tmp_path):
    bad = '<img src="report_files/thumbs/missing.jpg"><script>notDefined();</script>'
    found = _check(_with_checker(cli_run / "report.html", "report-bad.html", bad), browser,
                   tmp_path / "profile")
    assert found["broken"] == ["report_files/thumbs/missing.jpg"]
    assert any("notDefined" in e for e in found["errors"])
