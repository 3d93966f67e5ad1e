"""The house rules of the layout: one stage list, light registry, a DVC door without Prefect, strict params."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from neural_trader import comparison
from neural_trader.config import MARKET_KINDS, REGIME_KINDS
from neural_trader.sources import SOURCES
from stages import registry

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _python(code: str) -> str:
    """Run `code` in a fresh interpreter in the checkout; its stdout."""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_every_stage_has_exactly_one_body():
    from stages.run import BODIES

    assert set(BODIES) == set(registry.ALL_STAGES)


def test_registry_is_not_changed_by_importing_the_prefect_tasks():
    before = dict(registry.STAGES)
    import flows.experiment  # noqa: F401  (every task module)
    import flows.warmups  # noqa: F401

    assert registry.STAGES == before


def test_each_source_kind_has_a_config_tag_and_the_reverse():
    assert set(SOURCES) == {*REGIME_KINDS, *MARKET_KINDS}


def test_registry_and_core_agree_on_the_comparison_figures():
    assert registry.COMPARISON_FIGURES == comparison.FIGURES


def test_the_registry_stays_light():
    """The cache policy keys every task through the registry: a cached rerun must not pay for torch."""
    loaded = _python("import sys, stages.registry, tasks.caching; "
                     "[stages.registry.code_files(s) for s in stages.registry.STAGES.values()]; "
                     "print(' '.join(m for m in ('torch', 'scipy', 'matplotlib') if m in sys.modules))")
    assert loaded == ""


def test_the_flows_import_no_torch():
    """A fully cached rerun runs no stage body, so nothing it imports may pull in torch (about 2.5 s)."""
    loaded = _python("import sys, flows.cli, flows.experiment, flows.sweep, flows.warmups, stages.reruns; "
                     "print('torch' in sys.modules)")
    assert loaded == "False"


def test_the_dvc_door_never_imports_prefect(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text())
    loaded = _python(
        "import sys; from flows.cli import main; "
        f"rc = main(['stage', 'regression_generate', '--params', {str(params)!r}, '--workspace', {str(tmp_path)!r}, "
        "'--set', 'warmups.regression.n=100']); "
        "print(rc, 'prefect' in sys.modules)")
    assert loaded == "0 False"
    assert (tmp_path / "data/warmups/regression/data.safetensors").is_file()


@pytest.mark.parametrize("limit", [320])
def test_no_source_file_passes_the_size_limit(limit):
    long = {p.relative_to(ROOT).as_posix(): n for d in ("neural_trader", "stages", "tasks", "flows")
            for p in (ROOT / d).rglob("*.py") if (n := len(p.read_text().splitlines())) > limit}
    assert not long, f"split these files (lines): {long}"


# --------------------------------------------------------------- params at the door
def _check(params: Path) -> subprocess.CompletedProcess:
    return subprocess.run([BIN / "neural-trader", "check", "--params", str(params)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("text, expected", [
    ("", "the file is empty"),
    ("# only a comment\n", "the file is empty"),
    ("seeds:\n  count: 4\n  count: 5\n", "duplicate key 'count' at line 3 (first at line 2)"),
    ("seeds:\n  count: [4\n", "not valid YAML at line 3"),
    ("- seeds\n", "expected a mapping of sections"),
    ("data:\n  regimes:\n    real: {kind: csv}\n", "data.regimes.real.kind: unknown source kind 'csv' (allowed: iid, ar1)"),
    ("train:\n  optimizer: rmsprop\n", "train.optimizer: unknown key"),
])
def test_malformed_params_fail_before_any_work(tmp_path, text, expected):
    params = tmp_path / "params.yaml"
    params.write_text(text)
    proc = _check(params)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(params) in lines[0] and expected in lines[0], proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # nothing written
