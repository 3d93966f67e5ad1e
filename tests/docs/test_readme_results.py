"""The README's results table and verdicts, held to the default study's metrics/comparison.json.

The default study (params.yaml as shipped, on the CPU) runs stage by stage in a
temporary workspace; every number the README's "What the default study finds"
states must be what that run writes, at the README's rounding.
"""

from __future__ import annotations

import re

import pytest

from stages.catalog import load_params, read_json

from tests.conftest import ROOT, run_study_stages


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start:end if end > 0 else None]


def _number(text: str) -> float | None:
    text = text.strip().replace("−", "-")
    return None if text == "n/a" else float(text)


def _interval(text: str) -> tuple[float, float, float]:
    m = re.fullmatch(r"\s*(\S+) \((\S+) to (\S+)\)\s*", text.replace("−", "-"))
    assert m, f"not 'mean (lo to hi)': {text!r}"
    return tuple(float(g) for g in m.groups())


def _close(stated: float | None, value: float | None, digits: int) -> bool:
    if stated is None or value is None:
        return stated is None and value is None
    return abs(stated - value) <= 0.51 * 10 ** -digits


def _rows(section: str) -> dict[str, list[str]]:
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 5 and re.fullmatch(r"\w+-\w+", cells[0]):
            rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.slow
def test_readme_states_what_the_default_study_finds(tmp_path):
    cfg = load_params(ROOT / "params.yaml", ["runtime.device=cpu"])
    run_study_stages(cfg, tmp_path)
    result = read_json(tmp_path / "metrics" / "comparison.json")
    section = _section((ROOT / "README.md").read_text(), "## What the default study finds")
    rows = _rows(section)
    cells = {f"{c['regime']}-{c['model']}": c for c in result["cells"]}
    assert set(rows) == set(cells), "the README's table lists other cells than the study has"
    for name, (test, oracle, fraction, gap) in rows.items():
        c = cells[name]
        for stated, value in zip(_interval(test), (c["test_return"][k] for k in ("mean", "ci_lo", "ci_hi"))):
            assert _close(stated, value, 4), (name, "test return", stated, value)
        for stated, value in zip(_interval(gap), (c["gap"][k] for k in ("mean", "ci_lo", "ci_hi"))):
            assert _close(stated, value, 4), (name, "gap", stated, value)
        assert _close(_number(oracle), c["oracle_return"], 4), (name, "oracle", oracle, c["oracle_return"])
        assert _close(_number(fraction), c["oracle_fraction"], 2), (name, "fraction", fraction, c["oracle_fraction"])
    synthetic, market = section.split("### Real prices", 1)
    stated_verdicts = [line[2:].strip() for line in synthetic.splitlines() if line.startswith("- ")]
    verdicts = [r["verdict"] for r in result["contrasts"]]
    assert stated_verdicts == verdicts, "the README's verdicts are not the study's (copy reports/comparison.md)"
    assert f"{result['replicas']} seeds per cell" in section
    _check_market(market, read_json(tmp_path / "metrics" / "markets" / "comparison.json")["sp500"])


def _check_market(section: str, m: dict) -> None:
    """The real-prices table (Sharpe, CI, return, drawdown, break-even) and verdicts, at the README's rounding."""
    strategies = {**m["variants"], **m["baselines"]}
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 5 and cells[0] in strategies:
            rows[cells[0]] = cells[1:]
    assert set(rows) == set(strategies)
    for name, (sharpe, ret, dd, be) in rows.items():
        v = strategies[name]
        stated = _interval(sharpe)
        for got, want in zip(stated, (v["sharpe_net"], *v["sharpe_net_ci"])):
            assert _close(got, want, 2), (name, "Sharpe", got, want)
        assert _close(float(ret.replace("−", "-").rstrip("%")) / 100, v["net"]["ann_return"], 3), (name, ret)
        assert _close(float(dd.rstrip("%")) / 100, abs(v["net"]["max_drawdown"]), 2), (name, dd)
        assert (be == "—") == (v["break_even_bps"] is None), (name, be)
        if v["break_even_bps"] is not None:
            assert _close(float(be.replace("−", "-")), v["break_even_bps"], 1), (name, be)
    stated = [line[2:].strip() for line in section.splitlines() if line.startswith("- ")]
    assert stated and all(line in m["verdicts"] for line in stated), "copy the market verdicts from the report"
    assert f"out of sample {m['oos_first']} to {m['oos_last']}" in " ".join(section.split())


def test_readme_states_what_the_powered_study_found():
    """The README's "With the seeds it needs" section against the powered run's comparison.json, kept in docs/results.

    That run (params/powered.yaml, 1,152 seeds a cell) takes a quarter of an hour on two cores, too long for
    CI: its metrics are committed with the command and machine that produced them, and the README is held to
    them here; the overlay is held to the seeds the default study says it needs.
    """
    from stages.catalog import load_params

    result = read_json(ROOT / "docs" / "results" / "powered" / "comparison.json")
    run = read_json(ROOT / "docs" / "results" / "powered" / "run.json")
    cfg = load_params(ROOT / "params" / "powered.yaml")
    assert result["replicas"] == cfg.seeds.count and run["params"] == "params/powered.yaml"
    section = _section((ROOT / "README.md").read_text(), "## With the seeds it needs")
    stated = [line[2:].strip() for line in section.splitlines() if line.startswith("- ")]
    assert stated == [c["verdict"] for c in result["contrasts"]], "copy the verdicts from the powered run"
    assert f"{result['replicas']:,} seeds per cell" in section
    assert run["wall"] in section and run["machine"] in " ".join(section.split())
    rows = _rows(section)
    cells = {f"{c['regime']}-{c['model']}": c for c in result["cells"]}
    assert set(rows) == set(cells)
    for name, (test, _, _, gap) in rows.items():
        for stated_value, value in zip(_interval(test), (cells[name]["test_return"][k] for k in ("mean", "ci_lo", "ci_hi"))):
            assert _close(stated_value, value, 5), (name, "test return", stated_value, value)
        for stated_value, value in zip(_interval(gap), (cells[name]["gap"][k] for k in ("mean", "ci_lo", "ci_hi"))):
            assert _close(stated_value, value, 4), (name, "gap", stated_value, value)
