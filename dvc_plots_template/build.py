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
    <style>
        table {{
            border-spacing: 15px;
        }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
<!--
{licences}
-->
</html>
"""


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
    return PAGE.format(versions=", ".join(versions), scripts="\n".join(scripts), licences="\n\n".join(licences))


def main() -> int:
    target = Path(__file__).with_name("index.html")
    with tempfile.TemporaryDirectory() as tmp:
        target.write_text(build_page(Path(tmp)), encoding="utf-8")
    print(f"wrote {target} ({target.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
