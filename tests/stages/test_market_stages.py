"""The market stages on real closes: no look-ahead, a bad price file stops at the door, costs rerun compare only.

Shrunk: 2 seeds, 4 epochs, short folds, on a CSV made from the S&P 500 closes
shipped with arch, so the whole path (CSV source, walk-forward, training,
out-of-sample positions, the report) runs in seconds.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from neural_trader.markets.data import MarketData, oos_rows
from neural_trader.markets.prices import load_dataset
from stages.catalog import Workspace, load_params, load_tensors, read_json
from stages.registry import STAGES
from stages.run import run_stage
from tests.conftest import ROOT, SHRUNK, _merge

BIN = Path(sys.executable).parent
MARKET = {"markets": {"regimes": {"spx": {"kind": "csv", "path": "prices/spx.csv"}},
                      "walk_forward": {"train": 300, "valid": 60, "test": 200}, "reps": 200},
          "seeds": {"count": 2}, "train": {"epochs": 4}}


def _workspace(root: Path, prices: np.ndarray | None = None, rows: int = 2000) -> Path:
    """A workspace with shrunk params and prices/spx.csv (the shipped closes, or `prices`)."""
    series = load_dataset("sp500")
    values = series.prices[:rows] if prices is None else prices
    lines = ["Date,Close"] + [f"{d},{p!r}" for d, p in zip(series.dates[:rows].astype(str), values.tolist())]
    (root / "prices").mkdir(parents=True)
    (root / "prices" / "spx.csv").write_text("\n".join(lines) + "\n")
    raw = _merge(_merge(yaml.safe_load((ROOT / "params.yaml").read_text()), SHRUNK), MARKET)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return root / "params.yaml"


def _run_market(root: Path, params: Path, overrides: tuple[str, ...] = ()) -> dict[str, bool]:
    """The market stages in order; {stage@item: reused}."""
    cfg = load_params(params, ["data.regimes={\"momentum\": {\"kind\": \"ar1\"}}", *overrides])
    reused = {}
    for name in ("market_data", "market_train", "market_evaluate"):
        for item in STAGES[name].grid(cfg):
            reused[f"{name}@{'-'.join(item.values())}"] = run_stage(name, cfg, root, **item)["reused"]
    return reused


def _positions(root: Path) -> tuple[MarketData, dict[str, np.ndarray]]:
    ws = Workspace(root)
    data = MarketData.from_arrays({k: v.numpy() for k, v in load_tensors(ws.market_series("spx")).items()})
    evals = {m: load_tensors(ws.market_eval(f"spx-{m}"))["positions"].numpy() for m in ("base", "dropout", "linear")}
    return data, evals


def test_positions_decided_before_a_date_ignore_every_later_price(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _run_market(a, _workspace(a))
    prices = load_dataset("sp500").prices[:2000].copy()
    cut = 1500  # every price from row `cut` on is changed
    prices[cut:] *= np.exp(np.random.default_rng(0).normal(0, 0.05, prices.size - cut)).cumprod()
    _run_market(b, _workspace(b, prices))
    (da, pa), (db, pb) = _positions(a), _positions(b)
    assert np.array_equal(da.folds, db.folds)
    rows = oos_rows(da)
    before = da.t[rows] + 1 < cut  # decided at day t from returns up to t, i.e. prices up to row t + 1
    assert before.sum() > 100 and (~before).sum() > 100
    for model in pa:
        assert np.array_equal(pa[model][:, before], pb[model][:, before]), model  # every seed, bit for bit
        assert not np.array_equal(pa[model][:, ~before], pb[model][:, ~before]), model  # the change did arrive
    assert np.array_equal(da.x[rows][before], db.x[rows][before])  # the sign rule's inputs: the baselines too


def test_costs_rerun_only_the_comparison(tmp_path):
    params = _workspace(tmp_path)
    cfg = load_params(params, ["data.regimes={\"momentum\": {\"kind\": \"ar1\"}}"])
    for name in ("generate", "window", "train", "evaluate"):
        for item in STAGES[name].grid(cfg):
            run_stage(name, cfg, tmp_path, **item)
    assert not any(_run_market(tmp_path, params).values())
    run_stage("compare", cfg, tmp_path)
    run_stage("market_compare", cfg, tmp_path)
    gross = read_json(tmp_path / "metrics" / "markets" / "comparison.json")["spx"]
    assert all(_run_market(tmp_path, params, ("costs.bps=25",)).values())  # every market stage reused
    dearer = load_params(params, ["data.regimes={\"momentum\": {\"kind\": \"ar1\"}}", "costs.bps=25"])
    assert run_stage("market_compare", dearer, tmp_path)["reused"] is False
    assert run_stage("compare", dearer, tmp_path)["reused"] is True  # the synthetic contrasts: untouched
    net = read_json(tmp_path / "metrics" / "markets" / "comparison.json")["spx"]
    for v in gross["variants"]:
        assert net["variants"][v]["gross"] == gross["variants"][v]["gross"]
        assert net["variants"][v]["net"]["ann_return"] < gross["variants"][v]["net"]["ann_return"]
    assert net["cost_bps"] == 25 and "net of 25 bp" in net["verdicts"][0]
    report = (tmp_path / "reports" / "markets.md").read_text()
    assert "# Market: spx" in report and "SPA" in report


@pytest.mark.parametrize("body, problem", [
    ("Date,Close\n2020-01-02,10\n2020-01-03,abc\n", "line 3"),
    ("Date,Close\n2020-01-03,10\n2020-01-02,11\n", "line 3"),
    ("Date,Close\n2020-01-02,10\n2020-01-03,-1\n", "line 3"),
    ("Day,Close\n2020-01-02,10\n", "Date"),
    ("Date,Close\n2020-01-02,10\n2020-01-03,11\n", "fold"),  # far too short for one fold
])
def test_a_bad_price_file_stops_at_the_door(tmp_path, body, problem):
    params = _workspace(tmp_path)
    csv = tmp_path / "prices" / "spx.csv"
    csv.write_text(body)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    proc = subprocess.run([BIN / "neural-trader", "run", "--params", str(params), "--workspace", str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    message = proc.stderr.strip().splitlines()[-1]
    assert "markets.regimes.spx" in message and "spx.csv" in message and problem in message, message
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written


def test_a_missing_price_file_is_named(tmp_path):
    params = _workspace(tmp_path)
    (tmp_path / "prices" / "spx.csv").unlink()
    proc = subprocess.run([BIN / "neural-trader", "check", "--params", str(params), "--workspace", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "spx.csv" in proc.stderr, proc.stderr


def test_a_price_file_is_read_once_a_process(shrunk_params, tmp_path, monkeypatch):
    """The checks before a run (the CLI's and the flow's) and the market_data stage share one read and one cut;
    a file changed on disk is read again."""
    import neural_trader.markets.sources as market_module
    from stages import params as params_module
    from stages.catalog import load_params
    from stages.run import run_stage

    reads = []
    real = market_module.read_market
    monkeypatch.setattr(market_module, "read_market", lambda spec, root: reads.append(spec) or real(spec, root))
    monkeypatch.setattr(params_module, "_PREPARED", {})
    cfg = load_params(shrunk_params, ["markets.walk_forward.test=500"])
    params_module.check_inputs(cfg, tmp_path)
    params_module.check_inputs(cfg, tmp_path)
    run_stage("market_data", cfg, tmp_path, market="sp500")
    assert len(reads) == 1
    changed = load_params(shrunk_params, ["markets.walk_forward.test=400"])  # another cut: read and cut again
    params_module.check_inputs(changed, tmp_path)
    assert len(reads) == 2
