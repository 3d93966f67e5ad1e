"""The house rules of the layout: one stage list, light registry, a DVC door without Prefect, strict params."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from neural_trader.synthetic import comparison
from neural_trader.markets.config import MARKET_KINDS
from neural_trader.markets.sources import SOURCES as MARKET_SOURCES
from neural_trader.synthetic.config import REGIME_KINDS
from neural_trader.synthetic.sources import SOURCES
from stages import registry

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _python(code: str) -> str:
    """Run `code` in a fresh interpreter in the checkout; its stdout."""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_every_stage_has_exactly_one_body():
    from stages.run import body_of

    bodies = {name: body_of(spec.body) for name, spec in registry.ALL_STAGES.items()}
    assert all(callable(b) for b in bodies.values()) and len(set(bodies.values())) == len(bodies)
    assert all(callable(body_of(spec.join)) for spec in registry.ALL_STAGES.values() if spec.join)


def test_registry_is_not_changed_by_importing_the_prefect_tasks():
    before = dict(registry.STAGES)
    import flows.study  # noqa: F401  (every task module)
    import flows.warmups  # noqa: F401

    assert registry.STAGES == before


def test_each_source_kind_has_a_config_tag_and_the_reverse():
    assert set(SOURCES) == set(REGIME_KINDS) and set(MARKET_SOURCES) == set(MARKET_KINDS)


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
    loaded = _python("import sys, flows.cli, flows.study, flows.sweep, flows.warmups, stages.reruns; "
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


WINGS = ("synthetic", "markets", "sweep", "warmups")


def _floor(module: str) -> str:
    """'base', a wing's name, or 'params' (the assembly of every wing's sections) for a neural_trader module."""
    parts = module.split(".")
    if parts[1:2] == ["params"]:
        return "params"
    return parts[1] if len(parts) > 1 and parts[1] in WINGS else "base"


def _imports() -> dict[str, set[str]]:
    """Every neural_trader module -> the neural_trader (and stages, flows, tasks) modules it imports, anywhere."""
    out = {}
    for path in (ROOT / "neural_trader").rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        package = module if rel.name == "__init__" else module.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                found |= {f"{base}.{a.name}" if base in ("neural_trader", *(f"neural_trader.{w}" for w in WINGS))
                          else base for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        out[module] = {m for m in found if m.split(".")[0] in ("neural_trader", "stages", "flows", "tasks")}
    return out


def test_no_wing_imports_another_and_the_base_imports_no_wing():
    imports = _imports()
    assert {_floor(m) for m in imports} == {"base", "params", *WINGS}
    for module, names in imports.items():
        floor = _floor(module)
        for name in names:
            assert name.startswith("neural_trader"), f"{module} imports {name}: the core knows no orchestration"
            if floor == "params":
                continue
            allowed = {"base"} if floor == "base" else {"base", floor}
            assert _floor(name) in allowed, f"{module} ({floor}) imports {name} ({_floor(name)})"


def test_the_synthetic_study_pulls_in_no_market_library():
    loaded = _python("import sys, neural_trader.synthetic.comparison, neural_trader.synthetic.metrics, "
                     "neural_trader.synthetic.report, neural_trader.params; "
                     "print(' '.join(m for m in ('pandas', 'arch') if m in sys.modules))")
    assert loaded == ""


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
