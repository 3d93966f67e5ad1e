"""The comparison study on shrunk params, through the stage functions (no Prefect).

Checks that the statistics find the effect that is there (momentum is
learnable) and invent none where there is none (two i.i.d. regimes); that a
stage refuses to run without its inputs, redoes an altered output, and that
the same params give the same bytes.
"""

from __future__ import annotations

import json

import pytest

from stages.catalog import Workspace, load_params
from stages.run import run_stage
from tests.conftest import run_study_stages


def _study(params, root, overrides):
    cfg = load_params(params, overrides)
    ws = Workspace(root)
    run_study_stages(cfg, ws.root)
    return cfg, json.loads(ws.comparison_json.read_text())


def test_momentum_beats_random_for_every_variant(shrunk_params, tmp_path):
    cfg, result = _study(shrunk_params, tmp_path, ["seeds.count=6"])
    regime_contrasts = [c for c in result["contrasts"] if c["kind"] == "regime"]
    assert {c["within"] for c in regime_contrasts} == set(cfg.models)
    for c in regime_contrasts:
        assert c["significant"] and c["diff"] > 0.03, c["verdict"]
        assert c["verdict"].startswith(f"with {c['within']}: momentum beats random by ")
    cells = {(c["regime"], c["model"]): c for c in result["cells"]}
    for model in cfg.models:
        momentum = cells[("momentum", model)]
        assert momentum["test_return"]["ci_lo"] > 0
        assert 0.3 < momentum["oracle_fraction"] <= 1.05
        assert cells[("random", model)]["oracle_fraction"] is None  # the oracle earns 0 under i.i.d.


def test_no_effect_is_invented_between_two_iid_regimes(shrunk_params, tmp_path):
    """Both regimes i.i.d. (the second as AR(1) with rho 0): no regime or return contrast is significant.

    The overfitting-gap contrast is left out on purpose: dropout does shrink the
    gap on pure noise (a real effect of dropout, not of the regime).
    """
    regimes = '{"random": {"kind": "iid"}, "momentum": {"kind": "ar1", "rho": 0.0}}'
    _, result = _study(shrunk_params, tmp_path, [f"data.regimes={regimes}", "seeds.count=8"])
    tested = [c for c in result["contrasts"] if c["metric"] == "test_return"]
    assert len(tested) == 4
    for c in tested:
        assert not c["significant"], c["verdict"]
        assert abs(c["diff"]) < 0.01


@pytest.mark.slow
def test_two_iid_regimes_stay_null_at_512_seeds(shrunk_params, tmp_path):
    """At 512 seeds no test-return contrast between two i.i.d. regimes, or dropout on them, is significant, and
    a contrast is called equivalent only where its CI lies inside +- the effect of interest."""
    regimes = '{"random": {"kind": "iid"}, "momentum": {"kind": "ar1", "rho": 0.0}}'
    overrides = [f"data.regimes={regimes}", "seeds.count=512", "data.n_test=100", "train.epochs=5",
                 "markets.regimes={}"]
    cfg, result = _study(shrunk_params, tmp_path, overrides)
    tested = [c for c in result["contrasts"] if c["metric"] == "test_return"]
    assert len(tested) == 4 and all(c["n"] == 512 for c in tested)
    for c in tested:
        assert not c["significant"] and c["state"] != "significant", c["verdict"]
    for c in result["contrasts"]:
        margin = cfg.compare.effect_of_interest[c["metric"]]
        inside = -margin < c["ci_lo"] and c["ci_hi"] < margin
        assert (c["state"] == "equivalent") == (inside and not c["significant"]), c["verdict"]
        assert "no difference" not in c["verdict"] and "no significant difference" not in c["verdict"]


def test_comparison_json_schema(shrunk_params, tmp_path):
    cfg, result = _study(shrunk_params, tmp_path, [])
    assert result["schema"] == 1 and result["replicas"] == cfg.seeds.count
    assert len(result["cells"]) == len(cfg.cells)
    cell_keys = {"regime", "model", "test_return", "test_return_best", "gap", "train_return", "sharpe",
                 "hit_rate", "mean_position", "best_epoch", "oracle_return", "buy_and_hold_return",
                 "oracle_expected_return", "oracle_fraction"}
    for cell in result["cells"]:
        assert set(cell) == cell_keys
        assert set(cell["test_return"]) == {"mean", "ci_lo", "ci_hi"}
    contrast_keys = {"name", "kind", "a", "b", "within", "metric", "mean_a", "mean_b", "diff", "ci_lo", "ci_hi",
                     "t", "p", "p_adj", "significant", "mde", "n", "verdict", "effect_of_interest", "seeds_needed",
                     "seeds_needed_interest", "state"}
    assert len(result["contrasts"]) == 6
    for c in result["contrasts"]:
        assert set(c) == contrast_keys
    report = (tmp_path / "reports" / "comparison.md").read_text()
    for c in result["contrasts"]:
        assert c["verdict"] in report


@pytest.mark.parametrize("added", ["momentum_strong", "wide"])
def test_added_regime_or_model_joins_the_contrasts(shrunk_params, tmp_path, added):
    extra = ('data.regimes.momentum_strong={"kind": "ar1", "rho": 0.5}' if added == "momentum_strong"
             else 'models.wide={"hidden": 16, "dropout": 0.0}')
    cfg, result = _study(shrunk_params, tmp_path, [extra, "seeds.count=3", "train.epochs=5"])
    names = {c["name"] for c in result["contrasts"]}
    if added == "momentum_strong":
        assert {"momentum_strong - random / base", "momentum_strong - random / dropout"} <= names
    else:
        assert {"wide - base / momentum / test_return", "wide - base / random / gap"} <= names


def test_stage_refuses_to_run_without_its_inputs(shrunk_cfg, tmp_path):
    with pytest.raises(FileNotFoundError, match="data/window/random/windows.safetensors"):
        run_stage("train", shrunk_cfg, tmp_path, regime="random", model="base")


def test_altered_output_is_recomputed(shrunk_cfg, tmp_path):
    ws = Workspace(tmp_path)
    run_stage("generate", shrunk_cfg, ws, regime="random")
    path = ws.returns("random")
    original = path.read_bytes()
    path.write_bytes(b"corrupt")
    assert run_stage("generate", shrunk_cfg, ws, regime="random")["reused"] is False
    assert path.read_bytes() == original


def test_same_params_give_byte_identical_metrics(shrunk_params, tmp_path):
    """Two fresh workspaces, same params: every metrics file is byte-identical (CPU)."""
    cfg = load_params(shrunk_params, ["data.regimes={\"momentum\": {\"kind\": \"ar1\", \"rho\": 0.2}}"])
    roots = [tmp_path / "a", tmp_path / "b"]
    for root in roots:
        run_study_stages(cfg, root, compare=False)
    files = sorted(p.relative_to(roots[0]) for p in (roots[0] / "metrics").rglob("*") if p.is_file())
    assert len(files) == 3 * len(cfg.cells) + len(cfg.markets.cells) + len(cfg.markets.regimes)
    for rel in files:
        assert (roots[0] / rel).read_bytes() == (roots[1] / rel).read_bytes(), rel
