"""What the docs point at exists: relative links and their anchors, the code paths and modules they name, and
every row of the README's layout (which names every module)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from tests.conftest import ROOT
from tests.docs.markdown import DOCS, parse, rel


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    return {_slug(m[1]) for m in re.finditer(r"^#{1,6}\s+(.*)$", parse(doc)[1], flags=re.M)}


def test_relative_links_point_to_files_that_exist():
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", parse(doc)[1]):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto
            path, _, anchor = target.partition("#")
            dest = (doc.parent / path).resolve() if path else doc
            assert dest.exists(), f"{rel(doc)}: the link {target!r} points to nothing"
            if anchor:
                assert dest.suffix == ".md" and anchor in _anchors(dest), \
                    f"{rel(doc)}: no heading for the anchor in {target!r}"


_PATH = re.compile(r"(?<![\w./-])((?:neural_trader|stages|tasks|flows|tests|benchmarks|docs|dvc_plots_template|"
                   r"\.ci|\.dvc)/[\w./-]*)")
_MODULE = re.compile(r"(?<![\w./-])((?:neural_trader|stages|tasks|flows)(?:\.[A-Za-z_]\w*)+)")


def _resolves(dotted: str) -> bool:
    """`a.b.c` imports as a module, or names an attribute of the longest prefix that does."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:n]))
        except ModuleNotFoundError:
            continue
        for attr in parts[n:]:
            if not hasattr(found, attr):
                return False
            found = getattr(found, attr)
        return True
    return False


def test_code_paths_and_modules_named_in_the_docs_exist():
    for doc in DOCS:
        text = doc.read_text()
        for path in _PATH.findall(text):
            path = path.rstrip(".,;:")
            if path.startswith(".dvc/tmp/"):
                continue  # DVC's run-time locks
            assert (ROOT / path).exists(), f"{rel(doc)} names {path}, which does not exist"
        for dotted in _MODULE.findall(text):
            if dotted.split(".")[-1] in ("py", "md", "yaml", "json"):
                continue
            assert _resolves(dotted), f"{rel(doc)} names {dotted}, which does not import"


def _layout() -> dict[str, str]:
    """The README's layout block: {first column: the rest of its row and continuation lines}."""
    block = next(b for b in parse(ROOT / "README.md")[0] if b.lang == "text" and b.text.startswith("neural_trader/"))
    rows: dict[str, str] = {}
    name = ""
    for line in block.text.splitlines():
        if line[:1].strip():
            name, _, rest = line.partition(" ")
            rows[name] = rest
        elif line.strip():
            rows[name] += " " + line.strip()
    return rows


def test_readme_layout_names_every_module():
    rows = _layout()
    for name in rows:
        assert (ROOT / name).exists(), f"the README's layout names {name}, which does not exist"
    for package in ("neural_trader", "stages", "tasks", "flows"):
        folder = ROOT / package
        modules = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
        modules |= {p.name for p in folder.iterdir() if (p / "__init__.py").is_file()}
        missing = sorted(m for m in modules if not re.search(rf"\b{m}\b", rows[f"{package}/"]))
        assert not missing, f"the README's layout row for {package}/ does not name {missing}"
