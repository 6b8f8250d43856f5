"""The page's inline style and its one small script (click a strip to enlarge it). System
fonts only: nothing is loaded from anywhere."""

from __future__ import annotations

__all__ = ["CSS", "SCRIPT"]

CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#222;
background:#fafafa}
header{background:#1f2a36;color:#fff;padding:10px 20px;position:sticky;top:0;z-index:2}
header h1{margin:0;font-size:18px}header small{font-weight:normal;color:#bcc6d0;font-size:12px}
nav a{color:#cfe0f5;margin-right:14px;text-decoration:none;font-size:13px}
main{padding:0 20px 30px}h2{border-bottom:1px solid #ccc;padding-top:14px}
h3 small,h2 small{font-weight:normal;color:#666;font-size:12px}
.cards{display:flex;flex-wrap:wrap;gap:8px}
.card{background:#fff;border:1px solid #ddd;border-radius:4px;padding:6px 12px;min-width:90px;
color:#555;font-size:12px}.card b{display:block;font-size:20px;color:#222}
table{border-collapse:collapse;background:#fff;margin:6px 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top;font-size:13px}
th{background:#eef1f4}
.gallery{display:flex;flex-wrap:wrap;gap:10px}
.clip{margin:0;background:#fff;border:1px solid #ddd;border-radius:4px;padding:6px;
width:496px;max-width:100%}
.clip img.strip{display:block;max-width:100%;cursor:zoom-in}
.clip img.strip.big{max-width:none;width:980px;cursor:zoom-out}
.clip figcaption{font-size:12px;color:#444;margin-top:4px;word-break:break-all}
.clip .src{font-weight:600}.clip .scores{color:#666}.clip .tag{color:#a33;font-weight:600}
.clip .caption{font-style:italic;color:#555}
.placeholder{height:90px;display:flex;align-items:center;justify-content:center;
background:repeating-linear-gradient(45deg,#eee,#eee 8px,#e4e4e4 8px,#e4e4e4 16px);
color:#666;border:1px dashed #bbb;font-size:13px;text-align:center;padding:0 8px}
.group{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start;border-left:4px solid
#2f6db5;padding:8px;margin:10px 0;background:#f3f6fa}
.group .clip{width:360px}.group .keeper{border-color:#2f6db5}.group .arrow{align-self:center;color:#555}
.charts{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}.plot{background:#fff;border:1px solid #ddd;
padding:6px}.plot svg{display:block}
.plot h4{margin:0 0 4px;font-size:12px;font-weight:600;color:#333}
.chart text{font:10px system-ui,sans-serif;fill:#333}.chart .axis{stroke:#888}
.chart text.legend{font-size:11px}
footer{color:#666;font-size:12px;padding:10px 20px 30px}
"""

SCRIPT = """
document.addEventListener("click", function (e) {
  var t = e.target;
  if (t && t.classList && t.classList.contains("strip")) { t.classList.toggle("big"); }
});
"""
