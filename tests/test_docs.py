"""The docs are run or marked, not just read: README.md and docs/*.md against the code.

The convention for fenced blocks:

- ```bash (also sh, shell) and ```python blocks hold commands. Each one is either run by a test, and
  RUN_BY below names the block and the tests that run it, or its first line starts with
  `# example: not run by the tests` (a reason may follow), for what no test runs here: a cloud remote,
  a command whose effect the tests reach through another API.
- ```console and ```text blocks, and blocks with no language (docs/benchmark.md's transcript), show
  output or a layout. They hold no command, except after a `$ ` prompt in a transcript.
- ```yaml blocks are params.yaml fragments: merged into params.yaml, they must validate.

Heavy blocks (the whole study, dvc repro, deployments) are run by the slow tests RUN_BY names. This module
checks that those tests exist, and that their module runs each command's subcommand (for `dvc exp run`,
"exp" and "run" are quoted in it) unless the module reads the block from the doc itself. Quick blocks
really run here: the error lines of `neural-trader check`, `--help` and `make help`.

Also checked: relative links (and their anchors), the code paths and modules the docs name, the README's
layout naming every module, one `make run` time with its machine, the stage counts of docs/dvc.md against
the registry, and the warm-ups table against what the warm-up stages produce.
"""

from __future__ import annotations

import functools
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLE = "# example: not run by the tests"
CODE, SHOWN, PARAMS = {"bash", "sh", "shell", "python"}, {"console", "text", ""}, {"yaml"}

#: (doc, a string only that block of the doc holds) -> the tests that run it
RUN_BY: dict[tuple[str, str], tuple[str, ...]] = {
    ("README.md", "make run"): (
        "tests/test_readme.py::test_first_two_commands_run_the_study_and_the_tests",),
    ("README.md", "--workspace /tmp/nt-demo"): (
        "tests/test_readme.py::test_try_it_small_runs",),
    ("README.md", "check --set train.lr=-1"): (
        "tests/test_readme.py::test_documented_error_is_the_real_one",
        "tests/test_docs.py::test_documented_errors_are_the_real_ones"),
    ("docs/extending.md", "check --set data.regimes.x.kind=csv"): (
        "tests/test_docs.py::test_documented_errors_are_the_real_ones",
        "tests/test_layout.py::test_malformed_params_fail_before_any_work"),
    ("docs/dvc.md", "neural-trader dvc-yaml --check"): (
        "tests/test_dvc_wiring.py::test_dvc_yaml_is_the_one_the_registry_generates",),
    ("docs/commands.md", "neural-trader --help"): (
        "tests/test_docs.py::test_help_blocks_list_every_command",),
    ("docs/dvc.md", "dvc exp run -S models.dropout.dropout=0.3"): (
        "tests/test_dvc.py::test_repro_builds_every_stage_then_runs_nothing",
        "tests/test_dvc.py::test_exp_run_with_a_set_param_is_listed_with_its_metric",
        "tests/test_dvc.py::test_queued_experiment_runs_under_queue_start",
        "tests/test_dvc.py::test_metrics_diff_and_offline_plots"),
    ("docs/dvc.md", "run_study("): (
        "tests/test_dvc.py::test_flow_with_dvc_record_leaves_repro_nothing_to_do",),
    ("docs/dvc.md", "dvc remote add -d local"): (
        "tests/test_dvc.py::test_push_then_clone_and_pull_gives_a_clean_workspace",),
    ("docs/deployments.md", "neural-trader serve"): (
        "tests/test_deployments.py::test_serve_registers_both_and_status_sees_it_die",
        "tests/test_deployments.py::test_status_reports_a_healthy_schedule_while_a_worker_polls"),
    ("docs/deployments.md", "prefect work-pool create"): (
        "tests/test_deployments.py::test_prefect_yaml_deploys_the_same_deployments",
        "tests/test_deployments.py::test_triggered_reruns_complete_are_recorded_and_pooled"),
    ("docs/speed.md", "runtime.max_batch_bytes=1MiB"): (
        "tests/test_docs.py::test_documented_errors_are_the_real_ones",),
    ("docs/warmups.md", "neural-trader run warmups"): (
        "tests/test_warmup_flows.py::test_flows_end_to_end",
        "tests/test_warmup_flows.py::test_cli_stage_runs_warmup_stages"),
}


# ------------------------------------------------------------------ parsing
@dataclass(frozen=True)
class Block:
    doc: str  # relative to ROOT
    line: int  # of the opening fence, 1-based
    lang: str
    text: str

    @property
    def example(self) -> bool:
        return next((ln.strip() for ln in self.text.splitlines() if ln.strip()), "").startswith(EXAMPLE)

    def __str__(self) -> str:
        return f"{self.doc}:{self.line} ({self.lang or 'no language'})"


_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _parse(path: Path) -> tuple[list[Block], str]:
    """The fenced blocks of a markdown file, and its text outside them."""
    blocks, prose, lines, i = [], [], path.read_text().splitlines(), 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            prose.append(lines[i])
            i += 1
            continue
        indent, fence = m["indent"], m["fence"]
        close = re.compile(rf"[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*")
        j = i + 1
        while j < len(lines) and not close.fullmatch(lines[j]):
            j += 1
        assert j < len(lines), f"{_rel(path)}:{i + 1}: the fence is never closed"
        body = [ln[len(indent):] if ln.startswith(indent) else ln.lstrip() for ln in lines[i + 1:j]]
        lang = (m["info"].split() or [""])[0].lower()
        blocks.append(Block(_rel(path), i + 1, lang, "\n".join(body) + "\n"))
        i = j + 1
    return blocks, "\n".join(prose)


@functools.cache
def _all_blocks() -> tuple[Block, ...]:
    return tuple(b for doc in DOCS for b in _parse(doc)[0])


def _prose(doc: Path) -> str:
    """The text outside fences, with line breaks folded into spaces."""
    return re.sub(r"\s+", " ", _parse(doc)[1])


def _commands(block: Block) -> list[list[str]]:
    """Each command of a shell block as argv: comments dropped, `a && b` split."""
    out = []
    for line in block.text.splitlines():
        cmd: list[str] = []
        for word in [*shlex.split(line, comments=True), "&&"]:
            if word in ("&&", "||", ";", "|"):
                if cmd:
                    out.append(cmd)
                cmd = []
            else:
                cmd.append(word)
    return out


_SHELL = {"cd", "export", "rm", "ps", "echo", "time", "source"}


def _subcommand(argv: list[str]) -> list[str]:
    """The subcommand words of a command (`dvc exp run -S x` -> exp, run); none for shell built-ins."""
    if Path(argv[0]).name in _SHELL:
        return []
    words: list[str] = []
    for word in argv[1:]:
        if word.startswith("-"):
            if words:
                break
            continue
        if not re.fullmatch(r"[a-z][a-z_-]*", word):
            break
        words.append(word)
        if len(words) == 2:
            break
    return words


def _picked(doc: str, pick: str) -> list[Block]:
    return [b for b in _all_blocks() if b.doc == doc and pick in b.text]


def _runs(block: Block) -> tuple[str, ...] | None:
    return next((tests for (doc, pick), tests in RUN_BY.items() if block.doc == doc and pick in block.text), None)


def _test_source(test_id: str) -> str:
    return (ROOT / test_id.split("::")[0]).read_text()


# ------------------------------------------------------------------ the convention
def test_every_block_has_a_known_language():
    unknown = [str(b) for b in _all_blocks() if b.lang not in CODE | SHOWN | PARAMS]
    assert not unknown, f"add the language to the convention in tests/test_docs.py, or use another: {unknown}"


def test_every_command_block_is_run_by_a_test_or_marked_an_example():
    loose = [str(b) for b in _all_blocks() if b.lang in CODE and not b.example and _runs(b) is None]
    assert not loose, (f"command blocks that no test runs: add them to RUN_BY in tests/test_docs.py, "
                       f"or start them with {EXAMPLE!r}: {loose}")


def test_run_by_names_one_block_each_and_tests_that_exist():
    for (doc, pick), tests in RUN_BY.items():
        found = _picked(doc, pick)
        assert len(found) == 1, f"RUN_BY {doc!r} {pick!r} picks {[str(b) for b in found]}, not one block"
        assert found[0].lang in CODE and not found[0].example, f"{found[0]} is not a command block to run"
        for test_id in tests:
            path, name = test_id.split("::")
            assert (ROOT / path).is_file(), test_id
            assert re.search(rf"^(?:async )?def {name}\(", _test_source(test_id), flags=re.M), \
                f"{test_id} does not exist: RUN_BY names it for {found[0]}"


def test_the_named_tests_run_what_the_blocks_say():
    """Each subcommand (or Python name) of a block is quoted in a module of the tests that run it."""
    for (doc, pick), tests in RUN_BY.items():
        (block,) = _picked(doc, pick)
        sources = [_test_source(t) for t in tests]
        if any(t.startswith("tests/test_docs.py::") for t in tests) or \
                any(Path(doc).name in s for s in sources):
            continue  # the test reads the block from the doc itself
        text = "\n".join(sources)
        if block.lang == "python":
            code = re.sub(r"#.*", "", block.text)
            names = set(re.findall(r"\b([A-Za-z_]\w*)\s*(?:\(|=(?!=))", code))
            for module, imported in re.findall(r"^\s*(?:from\s+([\w.]+)\s+)?import\s+([\w., ]+)$", code, flags=re.M):
                names |= {n.strip() for n in [module, *imported.split(",")] if n.strip()}
            missing = sorted(n for n in names if not re.search(rf"\b{re.escape(n)}\b", text))
        else:
            missing = [" ".join([Path(argv[0]).name, *_subcommand(argv)]) for argv in _commands(block)
                       if not all(re.search(rf"""["']{re.escape(w)}["']""", text) for w in _subcommand(argv))]
        assert not missing, f"{block}: {tests} do not run {missing}"


_COMMAND_WORDS = {"make", "neural-trader", "dvc", "prefect", "python", "python3", "pip", "git"}


def test_shown_blocks_hold_no_bare_commands():
    for block in _all_blocks():
        if block.lang not in SHOWN:
            continue
        for line in block.text.splitlines():
            words = line.split()
            if not words or line.lstrip().startswith("$ "):
                continue
            first = words[0]
            assert first not in _COMMAND_WORDS and not first.startswith(".venv/bin/"), \
                f"{block} shows a command without a `$ ` prompt, {line!r}: label the block bash"


# ------------------------------------------------------------------ quick blocks, run
def _neural_trader(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([BIN / "neural-trader", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_documented_errors_are_the_real_ones():
    """`neural-trader check ...` followed by `# neural-trader: error: ...`: that exact line, exit 2."""
    checked = 0
    for block in _all_blocks():
        if block.lang not in CODE or block.example:
            continue
        lines = block.text.splitlines()
        for i, line in enumerate(lines):
            argv = shlex.split(line, comments=True)
            if argv[:2] not in (["neural-trader", "check"], [".venv/bin/neural-trader", "check"]):
                continue
            proc = _neural_trader(*argv[1:])
            following = lines[i + 1].strip() if i + 1 < len(lines) else ""
            if following.startswith("# neural-trader: error:"):
                assert (proc.returncode, proc.stderr.strip()) == (2, following[2:]), f"{block}: {line}"
            else:
                assert proc.returncode == 0, f"{block}: {line}\n{proc.stderr}"
            checked += 1
    assert checked >= 2


def _listed(output: str, argv: list[str]) -> set[str]:
    if argv[0] == "make":
        return {ln.split()[0] for ln in output.splitlines() if ln.strip()}
    return set(re.search(r"\{([\w,-]+)\}", output)[1].split(","))


def test_help_blocks_list_every_command():
    """`X --help  # a | b | c` and `make help  # ...`: exactly those subcommands, flows or targets."""
    checked = 0
    for block in _all_blocks():
        if block.lang not in CODE or block.example:
            continue
        for line in block.text.splitlines():
            command, _, comment = line.partition(" #")
            argv = shlex.split(command)
            if not argv or not (argv[-1] == "--help" or argv == ["make", "help"]):
                continue
            if argv[0] == "make":
                if shutil.which("make") is None:
                    pytest.skip("make is not installed")
                proc = subprocess.run(["make", "--no-print-directory", "help"], cwd=ROOT, capture_output=True,
                                      text=True, timeout=60)
            else:
                proc = _neural_trader(*argv[1:])
            assert proc.returncode == 0, f"{block}: {line}\n{proc.stderr}"
            documented = {w.strip() for w in comment.split("|")}
            assert documented == _listed(proc.stdout, argv), f"{block}: {line}"
            checked += 1
    assert checked >= 2


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def test_params_fragments_validate():
    from neural_trader.params import parse_config

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    fragments = [b for b in _all_blocks() if b.lang in PARAMS]
    assert fragments, "the README shows how to add a regime and a model as a params fragment"
    for block in fragments:
        fragment = yaml.safe_load(block.text)
        assert isinstance(fragment, dict) and set(fragment) <= set(raw), f"{block}: not a params.yaml fragment"
        merged = _merge(raw, fragment)
        if "sweep" in merged:  # the grid over the study: its own parser, every point validated
            from neural_trader.sweep.points import parse_sweep, validate_sweep

            validate_sweep({k: v for k, v in merged.items() if k != "sweep"}, parse_sweep(merged["sweep"]), parse_config)
        cfg = parse_config({k: v for k, v in merged.items() if k != "sweep"})  # ConfigError names the key
        for regime in (fragment.get("data") or {}).get("regimes") or {}:
            assert any(r == regime for r, _ in cfg.cells), block
        for model in fragment.get("models") or {}:
            assert any(m == model for _, m in cfg.cells), block


# ------------------------------------------------------------------ links and names
def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    return {_slug(m[1]) for m in re.finditer(r"^#{1,6}\s+(.*)$", _parse(doc)[1], flags=re.M)}


def test_relative_links_point_to_files_that_exist():
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", _parse(doc)[1]):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto
            path, _, anchor = target.partition("#")
            dest = (doc.parent / path).resolve() if path else doc
            assert dest.exists(), f"{_rel(doc)}: the link {target!r} points to nothing"
            if anchor:
                assert dest.suffix == ".md" and anchor in _anchors(dest), \
                    f"{_rel(doc)}: no heading for the anchor in {target!r}"


_PATH = re.compile(r"(?<![\w./-])((?:neural_trader|stages|tasks|flows|tests|benchmarks|docs|dvc_plots_template|"
                   r"\.ci|\.dvc)/[\w./-]*)")
_MODULE = re.compile(r"(?<![\w./-])((?:neural_trader|stages|tasks|flows)(?:\.[A-Za-z_]\w*)+)")


def _module_file(parts: list[str]) -> Path | None:
    for end in (ROOT.joinpath(*parts).with_suffix(".py"), ROOT.joinpath(*parts, "__init__.py")):
        if end.is_file():
            return end
    return None


def test_code_paths_and_modules_named_in_the_docs_exist():
    for doc in DOCS:
        text = doc.read_text()
        for path in _PATH.findall(text):
            path = path.rstrip(".,;:")
            if path.startswith(".dvc/tmp/"):
                continue  # DVC's run-time locks
            assert (ROOT / path).exists(), f"{_rel(doc)} names {path}, which does not exist"
        for dotted in _MODULE.findall(text):
            parts = dotted.split(".")
            if parts[-1] in ("py", "md", "yaml", "json"):
                continue
            found = next(((n, f) for n in range(len(parts), 1, -1) if (f := _module_file(parts[:n]))), None)
            assert found, f"{_rel(doc)} names the module {dotted}, which does not exist"
            n, file = found
            if n < len(parts):
                attr = parts[n]
                assert re.search(rf"^(?:async def|def|class)\s+{attr}\b|^{attr}\s*[:=]", file.read_text(), flags=re.M), \
                    f"{_rel(doc)} names {dotted}: {_rel(file)} defines no {attr}"


def _layout() -> dict[str, str]:
    """The README's layout block: {first column: the rest of its row and continuation lines}."""
    block = next(b for b in _parse(ROOT / "README.md")[0] if b.lang == "text" and b.text.startswith("neural_trader/"))
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


# ------------------------------------------------------------------ figures
_TIME = r"(\d+(?:\.\d+)?)(?:-\d+(?:\.\d+)?)? s\b"


def _make_run_times() -> list[tuple[str, str, str]]:
    """(doc, figure, statement) for every time the docs give for `make run`."""
    found = []
    for doc in DOCS:
        prose = re.sub(r"\s+", " ", re.sub(r"^\|.*$", "", _parse(doc)[1], flags=re.M))  # rows: below
        for m in re.finditer(r"`make run`", prose):
            sentence = re.split(r"(?<=[.!?])\s", prose[m.start():], maxsplit=1)[0]
            if t := re.search(rf"\b(?:takes|took|ran in|runs in)\s+(?:about\s+)?{_TIME}", sentence):
                found.append((_rel(doc), t[1], sentence))
        for row in re.findall(r"^\|(.*)\|\s*$", _parse(doc)[1], flags=re.M):
            cells = [c.strip() for c in row.split("|")]
            if "`make run`" in cells[0] and (t := re.search(_TIME, " ".join(cells[1:]))):
                found.append((_rel(doc), t[1], row))
    return found


def test_make_run_time_is_stated_once_with_its_machine():
    """Every figure for `make run` is the same measurement, and says on what machine."""
    found = _make_run_times()
    assert "docs/speed.md" in {doc for doc, _, _ in found}, found
    assert len({figure for _, figure, _ in found}) == 1, f"`make run` times disagree: {found}"
    for doc, _, statement in found:
        assert re.search(r"\d+-core", statement), f"{doc}: a `make run` time without its machine: {statement!r}"


def _dvc_stages() -> list[tuple[str, set[str], set[str], set[str]]]:
    """(name, params keys, file deps, outs) of every stage of dvc.yaml as DVC expands it on params.yaml."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        return [(s.name, {k for d in s.deps if isinstance(d, ParamsDependency) for k in d.params},
                 {d.def_path for d in s.deps if not isinstance(d, ParamsDependency)}, {o.def_path for o in s.outs})
                for s in repo.index.stages]


def _reruns_after(key: str) -> list[str]:
    """The stages `dvc repro` reruns after a change of `key`: those reading it, and all downstream of them."""
    stages = _dvc_stages()
    dirty = {name for name, params, _, _ in stages if any(key == k or key.startswith(k + ".") for k in params)}
    while True:
        outs = {o for name, _, _, produced in stages if name in dirty for o in produced}
        more = {name for name, _, deps, _ in stages
                if any(o == d or o.startswith(d.rstrip("/") + "/") for d in deps for o in outs)} - dirty
        if not more:
            return sorted(dirty)
        dirty |= more


def _count(text: str, pattern: str) -> list[int]:
    found = [int(x) for x in re.findall(pattern, text)]
    assert found, f"docs/dvc.md no longer says {pattern!r}: update tests/test_docs.py with it"
    return found


def test_dvc_stage_counts_are_what_dvc_yaml_expands_to():
    """The counts in docs/dvc.md are those of the stages `dvc repro` runs (DVC resolves dvc.yaml in-process).

    Its measured table predates the market stages: its counts are held to the synthetic study and the warm-ups.
    """
    from stages.registry import WARMUPS

    text = _prose(ROOT / "docs" / "dvc.md")
    stages = [name for name, *_ in _dvc_stages()]
    warmups = sum(1 for name in stages if name.split("_")[0] in WARMUPS)
    markets = sum(1 for name in stages if name.startswith("market_"))
    study = len(stages) - warmups - markets
    rho, dropout = _reruns_after("data.regimes.momentum.rho"), _reruns_after("models.dropout.dropout")
    assert all("momentum" in name for name in rho if name != "compare"), rho
    # what the page says of dvc.yaml as it is
    assert set(_count(text, r"dvc\.yaml expands to (\d+) stages")) == {len(stages)}
    assert set(_count(text, r"(\d+) for the synthetic study")) == {study}
    assert set(_count(text, r"(\d+) for the real-prices markets")) == {markets}
    assert set(_count(text, r"the (\d+) warm-up stages")) == {warmups}
    assert set(_count(text, r"momentum\.rho` reruns (\d+)")) == {len(rho)}
    assert set(_count(text, r"\((\d+) momentum stages and compare\)")) == {len(rho) - 1}
    assert set(_count(text, r"dropout=0\.3` reruns (\d+)")) == {len(dropout)}
    assert set(_count(text, r"dropout=0\.3`: (\d+) stages")) == {len(dropout)}
    assert set(_count(text, r"0\.2 → 0\.3: (\d+) stages")) == {len(rho)}
    # the measured table: the synthetic study and the warm-ups
    assert set(_count(text, r"when dvc\.yaml had (\d+) stages")) == {study + warmups}
    assert set(_count(text, r"default params, (\d+) stages \(cold\)")) == {study + warmups}
    assert set(_count(text, r"then `dvc repro`: (\d+) stages")) == {study + warmups}
    assert set(_count(text, r"(\d+) tasks, all stamp hits")) == {study}
    assert set(_count(text, r"\((\d+) tasks computed")) == {study}
    assert set(_count(text, r"all (\d+) study stages")) == {study}


@pytest.fixture(scope="module")
def warmup_reports(tmp_path_factory):
    """The eight warm-up stages on the params.yaml defaults (a few seconds), in a temporary workspace."""
    import torch

    from stages.catalog import Workspace, load_params, read_json
    from stages.registry import WARMUPS
    from stages.run import run_stage

    threads = torch.get_num_threads()
    cfg, ws = load_params(ROOT / "params.yaml"), Workspace(tmp_path_factory.mktemp("warmups"))
    try:
        for exp in WARMUPS:
            for step in ("generate", "train", "evaluate"):
                run_stage(f"{exp}_{step}", cfg, ws)
    finally:
        torch.set_num_threads(threads)  # the stages set runtime.torch_threads process-wide
    return ws, {exp: read_json(ws.warmup_report(exp)) for exp in WARMUPS}


def test_warmups_table_holds_the_measured_numbers(warmup_reports):
    ws, reports = warmup_reports
    text = (ROOT / "docs" / "warmups.md").read_text()
    reg, cls = reports["regression"], reports["classifier"]
    for name in ("beta0", "beta1", "sigma"):
        assert f"| {name} | {reg[name]:.4f} | {reg[name + '_true']:g} |" in text, name
    assert (f"| test accuracy | {cls['accuracy']:.4f} | {cls['bayes']:.4f} (simulated, se {cls['bayes_se']:.4f}; "
            f"quadrature {cls['bayes_exact']:.4f}) |") in text
    header, *rows = ws.warmup_history("classifier").read_text().splitlines()
    last = dict(zip(header.split("\t"), rows[-1].split("\t")))
    assert f"training batches ({float(last['accuracy']):.2f})" in re.sub(r"\s+", " ", text)
