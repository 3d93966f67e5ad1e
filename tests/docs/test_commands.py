"""The command blocks of README.md and docs/*.md are run or marked, and the quick ones run here.

The convention for fenced blocks:

- ```bash (also sh, shell) and ```python blocks hold commands. Each one is either run by a test, and
  RUN_BY below names the block and the tests that run it, or its first line starts with
  `# example: not run by the tests` (a reason may follow), for what no test runs here: a cloud remote,
  a command whose effect the tests reach through another API.
- ```console and ```text blocks, and blocks with no language (docs/benchmark.md's transcript), show
  output or a layout. They hold no command, except after a `$ ` prompt in a transcript.
- ```yaml blocks are params.yaml fragments: merged into params.yaml, they must validate.

Heavy blocks (the whole study, dvc repro, deployments) are run by the slow tests RUN_BY names; this module
checks that each entry picks one command block and that the tests it names exist. Quick blocks really
run here: the error lines of `neural-trader check`, `--help` and `make help`.
"""

from __future__ import annotations

import importlib
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, _merge
from tests.docs.markdown import CODE, EXAMPLE, PARAMS, SHOWN, Block, all_blocks

BIN = Path(sys.executable).parent

#: (doc, a string only that block of the doc holds) -> the tests that run it
RUN_BY: dict[tuple[str, str], tuple[str, ...]] = {
    ("README.md", "make run"): (
        "tests/docs/test_readme.py::test_first_two_commands_run_the_study_and_the_tests",),
    ("README.md", "--workspace /tmp/nt-demo"): (
        "tests/docs/test_readme.py::test_try_it_small_runs",),
    ("README.md", "check --set train.lr=-1"): (
        "tests/docs/test_readme.py::test_documented_error_is_the_real_one",
        "tests/docs/test_commands.py::test_documented_errors_are_the_real_ones"),
    ("docs/extending.md", "check --set data.regimes.x.kind=csv"): (
        "tests/docs/test_commands.py::test_documented_errors_are_the_real_ones",
        "tests/stages/test_layout.py::test_malformed_params_fail_before_any_work"),
    ("docs/dvc.md", "neural-trader dvc-yaml --check"): (
        "tests/stages/test_dvc_wiring.py::test_dvc_yaml_is_the_one_the_registry_generates",),
    ("docs/commands.md", "neural-trader --help"): (
        "tests/docs/test_commands.py::test_help_blocks_list_every_command",),
    ("docs/dvc.md", "dvc exp run -S models.dropout.dropout=0.3"): (
        "tests/integration/test_dvc.py::test_repro_builds_every_stage_then_runs_nothing",
        "tests/integration/test_dvc.py::test_exp_run_with_a_set_param_is_listed_with_its_metric",
        "tests/integration/test_dvc.py::test_queued_experiment_runs_under_queue_start",
        "tests/integration/test_dvc.py::test_metrics_diff_and_offline_plots"),
    ("docs/dvc.md", "run_study("): (
        "tests/integration/test_dvc.py::test_flow_with_dvc_record_leaves_repro_nothing_to_do",),
    ("docs/sweep.md", "dvc repro sweeps/dvc.yaml"): (
        "tests/flows/test_sweep_flow.py::test_sweep_results_are_versioned_in_dvc",),
    ("docs/dvc.md", "dvc remote add -d local"): (
        "tests/integration/test_dvc.py::test_push_then_clone_and_pull_gives_a_clean_workspace",),
    ("docs/deployments.md", "neural-trader serve"): (
        "tests/integration/test_deployments.py::test_serve_registers_both_and_status_sees_it_die",
        "tests/integration/test_deployments.py::test_status_reports_a_healthy_schedule_while_a_worker_polls"),
    ("docs/deployments.md", "prefect work-pool create"): (
        "tests/integration/test_deployments.py::test_prefect_yaml_deploys_the_same_deployments",
        "tests/integration/test_deployments.py::test_triggered_reruns_complete_are_recorded_and_pooled"),
    ("docs/speed.md", "neural-trader server --stop"): (
        "tests/integration/test_server.py::test_server_runs_in_the_background_and_run_reuses_it",),
    ("docs/speed.md", "runtime.max_batch_bytes=1MiB"): (
        "tests/docs/test_commands.py::test_documented_errors_are_the_real_ones",),
    ("docs/warmups.md", "neural-trader run warmups"): (
        "tests/flows/test_warmup_flows.py::test_flows_end_to_end",
        "tests/stages/test_warmup_stages.py::test_cli_stage_runs_warmup_stages"),
}


def _picked(doc: str, pick: str) -> list[Block]:
    return [b for b in all_blocks() if b.doc == doc and pick in b.text]


def _runs(block: Block) -> tuple[str, ...] | None:
    return next((tests for (doc, pick), tests in RUN_BY.items() if block.doc == doc and pick in block.text), None)


def _is_test(test_id: str) -> bool:
    """`tests/tier/test_x.py::test_y` is a test function of a test module that imports."""
    path, _, name = test_id.partition("::")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return name.startswith("test_") and callable(getattr(module, name, None))


# ------------------------------------------------------------------ the convention
def test_every_block_has_a_known_language():
    unknown = [str(b) for b in all_blocks() if b.lang not in CODE | SHOWN | PARAMS]
    assert not unknown, f"add the language to the convention in tests/docs/markdown.py, or use another: {unknown}"


def test_every_command_block_is_run_by_a_test_or_marked_an_example():
    loose = [str(b) for b in all_blocks() if b.lang in CODE and not b.example and _runs(b) is None]
    assert not loose, (f"command blocks that no test runs: add them to RUN_BY in tests/docs/test_commands.py, "
                       f"or start them with {EXAMPLE!r}: {loose}")


def test_run_by_names_one_block_each_and_tests_that_exist():
    for (doc, pick), tests in RUN_BY.items():
        found = _picked(doc, pick)
        assert len(found) == 1, f"RUN_BY {doc!r} {pick!r} picks {[str(b) for b in found]}, not one block"
        assert found[0].lang in CODE and not found[0].example, f"{found[0]} is not a command block to run"
        for test_id in tests:
            assert _is_test(test_id), f"{test_id} does not exist: RUN_BY names it for {found[0]}"


_COMMAND_WORDS = {"make", "neural-trader", "dvc", "prefect", "python", "python3", "pip", "git"}


def test_shown_blocks_hold_no_bare_commands():
    for block in all_blocks():
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
    for block in all_blocks():
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
    for block in all_blocks():
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


def test_params_fragments_validate():
    from neural_trader.params import parse_config

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    fragments = [b for b in all_blocks() if b.lang in PARAMS]
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
