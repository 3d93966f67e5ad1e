"""Build the offline HTML template for `dvc plots show / diff`: vega, vega-lite and vega-embed inlined.

DVC's default page loads the three libraries from a CDN, so it renders nothing
without internet. `.dvc/config` points `plots.html_template` at the
`index.html` this script writes beside itself: the same page with the
libraries' UMD builds inlined, so the output `dvc_plots/index.html` is one
self-contained file that opens anywhere, offline.

The libraries come from the npm registry as pinned, integrity-checked tarballs
(`npm pack`), the only step that needs the network. `index.html` is committed,
so users and CI never run this; run it to move to other versions:

    python dvc_plots_template/build.py      # needs npm; rewrites dvc_plots_template/index.html
    python dvc_plots_template/build.py --restyle   # only the page's own style and section script: no npm

The page adds to DVC's one thing: a heading per folder of plots (the comparison, training, markets,
warm-ups), placed by a short script, since DVC fills one flat {plot_divs} and allows nothing else.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

# (package, version, file in the tarball, sha512 integrity the registry publishes): the
# majors DVC's own page uses (vega 5, vega-lite 5, vega-embed 6), latest releases of each.
LIBRARIES = (
    ("vega", "5.33.1", "package/build/vega.min.js",
     "sha512-1fArfVDUqVbb5z8n+/nVQb+VNBzx8svY6CrsyTK4Ujm4yrd9I1auoKxBAPXLCavY1LcrbHUskQbGUP8gXOzyQw=="),
    ("vega-lite", "5.23.0", "package/build/vega-lite.min.js",
     "sha512-l4J6+AWE3DIjvovEoHl2LdtCUkfm4zs8Xxx7INwZEAv+XVb6kR6vIN1gt3t2gN2gs/y4DYTs/RPoTeYAuEg6mA=="),
    ("vega-embed", "6.29.0", "package/build/vega-embed.min.js",
     "sha512-PmlshTLtLFLgWtF/b23T1OwX53AugJ9RZ3qPE2c01VFAbgt3/GSNI/etzA/GzdrkceXFma+FDHNXUppKuM0U6Q=="),
)

# The page's own style and script, between markers so that `--restyle` can rewrite them in place.
STYLE_MARK, SCRIPT_MARK = ("<!-- style: dvc_plots_template/build.py -->", "<!-- /style -->"), \
    ("<!-- sections: dvc_plots_template/build.py -->", "<!-- /sections -->")

STYLE = """    <style>
        body { font-family: sans-serif; margin: 12px 20px; }
        table { border-spacing: 15px; }
        nav a { margin-right: 1.2em; }
        h2 { margin: 28px 0 8px; padding-bottom: 4px; border-bottom: 1px solid #ccc; }
        .section { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
        .section > div { max-width: 100%; }
        .section img { max-width: 100%; }
        .path { color: #777; font-size: 0.85em; margin-left: 0.6em; }
    </style>"""

# DVC lists every plot as one flat column, vega charts first, then images by path, each titled by its path.
# This groups them under a heading per folder, the comparison's contrasts first, side by side where the
# window is wide enough, and names each image above its path. Without JavaScript the page is DVC's own.
SECTIONS = """    <script>
    (function () {
        var SECTIONS = [
            ["The comparison: each contrast, each cell", ["metrics_comparison", "plots_comparison"]],
            ["Training, per cell", ["metrics_train", "plots_history"]],
            ["Markets, out of sample", ["metrics_market", "plots_market"]],
            ["The warm-ups", ["metrics_warmups", "plots_warmups"]],
            ["Other plots", [""]]
        ];
        var body = document.body, nav = document.createElement("nav");
        var plots = Array.prototype.filter.call(body.children, function (el) {
            return el.tagName === "DIV" && el.id;
        });
        function first(el) { return el.id.indexOf("contrasts") >= 0 ? 0 : 1; }
        body.insertBefore(nav, body.firstChild);
        SECTIONS.forEach(function (section, i) {
            var mine = plots.filter(function (el) {
                return el.parentNode === body && section[1].some(function (p) { return el.id.indexOf(p) === 0; });
            });
            if (!mine.length) { return; }
            mine.sort(function (a, b) { return first(a) - first(b); });
            var heading = document.createElement("h2"), box = document.createElement("div"),
                link = document.createElement("a");
            heading.id = "section-" + i;
            heading.textContent = section[0];
            link.href = "#" + heading.id;
            link.textContent = section[0];
            nav.appendChild(link);
            box.className = "section";
            body.appendChild(heading);
            body.appendChild(box);
            mine.forEach(function (el) {
                box.appendChild(el);
                var caption = el.querySelector("p"), path = caption && caption.textContent.trim();
                if (!el.querySelector("img") || !path) { return; }
                var name = document.createElement("strong"), where = document.createElement("span");
                name.textContent = path.split("/").pop().replace(/[.][a-z]+$/, "").replace(/_/g, " ");
                where.className = "path";
                where.textContent = path;
                caption.textContent = "";
                caption.appendChild(name);
                caption.appendChild(where);
            });
        });
    })();
    </script>"""

# DVC fills {refresh_tag} and {plot_divs}; {scripts} (its CDN tags) is left out on purpose.
PAGE = """<!DOCTYPE html>
<html>
<head>
    {{refresh_tag}}
    <meta charset="utf-8">
    <title>DVC plots</title>
    <!-- {versions}: inlined by dvc_plots_template/build.py, so this page needs no network.
         BSD-3-Clause; the licences are at the end of this file. -->
{scripts}
    {style}
</head>
<body>
    {{plot_divs}}
    {sections}
</body>
<!--
{licences}
-->
</html>
"""


def _marked(mark: tuple[str, str], text: str) -> str:
    return f"{mark[0]}\n{text}\n    {mark[1]}"


def restyle(page: str) -> str:
    """`page` with its style and section script replaced by this file's (no network needed)."""
    for mark, text in ((STYLE_MARK, STYLE), (SCRIPT_MARK, SECTIONS)):
        head, found, rest = page.partition(mark[0])
        if not found or mark[1] not in rest:
            raise SystemExit(f"the page has no {mark[0]} ... {mark[1]} block: rebuild it without --restyle")
        page = head + _marked(mark, text) + rest.split(mark[1], 1)[1]
    return page


def _pack(spec: str, integrity: str, into: Path) -> Path:
    """`npm pack` one pinned package into `into`; refuse a tarball whose integrity differs."""
    out = subprocess.run(["npm", "pack", spec, "--json", "--pack-destination", str(into)],
                         check=True, capture_output=True, text=True, timeout=300).stdout
    info = json.loads(out)[0]
    if info["integrity"] != integrity:
        raise SystemExit(f"{spec}: integrity {info['integrity']} is not the pinned {integrity}")
    return into / info["filename"]


def _member(tarball: Path, name: str) -> str | None:
    with tarfile.open(tarball) as tar:
        try:
            fh = tar.extractfile(name)
        except KeyError:
            return None
        return None if fh is None else fh.read().decode("utf-8")


def _licence(tarball: Path) -> str:
    """The LICENSE file, or the package.json licence field where the tarball ships none (vega)."""
    text = _member(tarball, "package/LICENSE")
    if text is None:
        text = f"License: {json.loads(_member(tarball, 'package/package.json') or '{}').get('license', 'see npm')}"
    return text.strip().replace("--", "- -")  # "--" may not appear inside an HTML comment


def build_page(workdir: Path) -> str:
    scripts, licences, versions = [], [], []
    for package, version, member, integrity in LIBRARIES:
        tarball = _pack(f"{package}@{version}", integrity, workdir)
        code = _member(tarball, member)
        if code is None:
            raise SystemExit(f"{tarball.name}: no {member}")
        code = re.sub(r"\n//# sourceMappingURL=\S+\s*$", "\n", code)
        for placeholder in ("{plot_divs}", "{scripts}", "{refresh_tag}", "</script"):
            if placeholder in code:  # DVC substitutes the first three; the last would end the tag
                raise SystemExit(f"{package}@{version}: contains {placeholder!r}, cannot be inlined")
        scripts.append(f"    <script>/* {package}@{version} */\n{code.strip()}\n    </script>")
        licences.append(f"{package}@{version}\n\n{_licence(tarball)}")
        versions.append(f"{package} {version}")
    return PAGE.format(versions=", ".join(versions), scripts="\n".join(scripts), licences="\n\n".join(licences),
                       style=_marked(STYLE_MARK, STYLE), sections=_marked(SCRIPT_MARK, SECTIONS))


def main() -> int:
    target = Path(__file__).with_name("index.html")
    if sys.argv[1:] == ["--restyle"]:
        target.write_text(restyle(target.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            target.write_text(build_page(Path(tmp)), encoding="utf-8")
    print(f"wrote {target} ({target.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
