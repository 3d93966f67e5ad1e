"""The docs' commands work as printed, pasted into a fresh shell of a fresh clone after `make run`.

A fresh shell has no activated environment: `neural-trader`, `dvc` and `prefect` are not on its PATH
until `. .venv/bin/activate`. So every page must show that line before its first bare command, and the
quick command blocks must run in `bash` with PATH=/usr/bin:/bin after the page's own activation line,
in a `git clone` of this repository's HEAD (what is committed, nothing else) whose `.venv` is a real
virtual environment: `python -m venv --without-pip`, its site-packages pointing (a .pth file) at the
clone and at the installed dependencies, and the console scripts written as pip writes them.

Run here: the `neural-trader check` error lines, the `--help` blocks and `make help`, and `dvc-yaml`.
Left to the tests RUN_BY (tests/docs/test_commands.py) names for them, being minutes long: `make run` and
`make test`, the small study (README), the server-and-run block (docs/speed.md), `dvc repro` and the
experiments, the remote, the deployments, the sweep and the warm-ups.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.docs.markdown import CODE, DOCS, Block, parse, rel
from tests.docs.test_commands import RUN_BY

ACTIVATE = re.compile(r"(?:^|[\s`])(?:\.|source) \.venv/bin/activate\b")
BARE = re.compile(r"(?:^|&&|;|\|)\s*(neural-trader|dvc|prefect)\b", re.M)
SCRIPTS = ("neural-trader", "dvc", "prefect")  # the console scripts the docs call bare
#: the RUN_BY blocks run here, as (doc, the string RUN_BY picks it by); every other one takes minutes
QUICK = {("README.md", "check --set train.lr=-1"), ("docs/extending.md", "check --set data.regimes.x.kind=csv"),
         ("docs/speed.md", "runtime.max_batch_bytes=1MiB"), ("docs/commands.md", "neural-trader --help"),
         ("docs/dvc.md", "neural-trader dvc-yaml --check")}
PATH = "/usr/bin:/bin"


def _first_bare(doc: Path) -> tuple[int, str] | None:
    """(line, command) of the first bare `neural-trader`, `dvc` or `prefect` command in a command block of `doc`."""
    for block in parse(doc)[0]:
        if block.lang in CODE - {"python"} and (m := BARE.search(block.text)):
            return block.line + 1 + block.text[:m.start(1)].count("\n"), m[1]
    return None


def _activation_line(doc: Path) -> int | None:
    for number, line in enumerate(doc.read_text().splitlines(), 1):
        if ACTIVATE.search(line):
            return number
    return None


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_each_page_shows_the_activation_line_before_its_first_bare_command(doc):
    bare = _first_bare(doc)
    if bare is None:
        return
    shown = _activation_line(doc)
    assert shown is not None and shown < bare[0], (
        f"{rel(doc)}:{bare[0]} runs `{bare[1]}`, which a fresh shell does not find: show "
        f"`. .venv/bin/activate` before it" + (f" (it is shown at line {shown})" if shown else ""))


def test_the_quick_blocks_are_blocks_run_by():
    assert QUICK <= set(RUN_BY), f"not in RUN_BY: {QUICK - set(RUN_BY)}"


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """A clone of HEAD with a real `.venv`: the clone and the installed dependencies on its path."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    root = tmp_path_factory.mktemp("fresh") / "neural-trader"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(root)], check=True, capture_output=True, timeout=120)
    venv = root / ".venv"
    subprocess.run([Path(sys.base_prefix) / "bin" / "python3", "-m", "venv", "--without-pip", str(venv)],
                   check=True, capture_output=True, timeout=120)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    (site / "neural_trader_clone.pth").write_text(f"{root}\n{sysconfig.get_path('purelib')}\n")
    for name in SCRIPTS:  # what pip writes: this venv's python, the entry point of the installed one
        installed = (Path(sys.executable).parent / name).read_text().splitlines()
        script = venv / "bin" / name
        script.write_text("\n".join([f"#!{venv / 'bin' / 'python'}", *installed[1:]]) + "\n")
        script.chmod(0o755)
    return root


def _commands(block: Block) -> list[tuple[str, str | None]]:
    """(command line, the `# neural-trader: error: ...` line that follows it, if any) of a block."""
    lines = block.text.replace("\\\n", " ").splitlines()
    out = []
    for i, line in enumerate(lines):
        if not shlex.split(line, comments=True):
            continue
        following = lines[i + 1].strip() if i + 1 < len(lines) else ""
        out.append((line, following[2:] if following.startswith("# neural-trader: error:") else None))
    return out


def _activation(doc: str) -> str:
    line = next(ln for ln in (ROOT / doc).read_text().splitlines() if ACTIVATE.search(ln))
    return ACTIVATE.search(line)[0].strip(" `")


@pytest.mark.parametrize("pick", sorted(QUICK), ids=lambda p: f"{p[0]}:{p[1]}")
def test_quick_blocks_run_in_a_fresh_shell_of_a_fresh_clone(clone, pick):
    doc, text = pick
    (block,) = [b for b in parse(ROOT / doc)[0] if text in b.text]
    for line, error in _commands(block):
        proc = subprocess.run(["bash", "-c", f"{_activation(doc)}\n{line}"], cwd=clone, capture_output=True,
                              text=True, timeout=120, env={"PATH": PATH, "HOME": str(clone.parent)})
        assert proc.returncode != 127 and "No module named" not in proc.stderr, f"{block}: {line}\n{proc.stderr}"
        if error:
            assert (proc.returncode, proc.stderr.strip()) == (2, error), f"{block}: {line}"
        else:
            assert proc.returncode == 0, f"{block}: {line}\n{proc.stderr}"


def test_without_the_activation_line_the_commands_are_not_found(clone):
    """What the pages guard against: the same shell without the line finds no `neural-trader`."""
    if shutil.which("neural-trader", path=PATH):
        pytest.skip(f"a neural-trader is installed on {PATH}")
    proc = subprocess.run(["bash", "-c", "neural-trader --help"], cwd=clone, capture_output=True, text=True,
                          timeout=60, env={"PATH": PATH, "HOME": str(clone.parent)})
    assert proc.returncode == 127, proc.stderr
