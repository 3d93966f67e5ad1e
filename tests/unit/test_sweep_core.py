"""The sweep's core: grid expansion, validation at the door, the pairing design, grid-wide FDR, verdicts, figures.

`inference.adjust` itself is tested in tests/unit/test_inference.py."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs
from statsmodels.stats.multitest import multipletests

from neural_trader.artifacts import COLUMN_PX, inline_figures, table_widths
from neural_trader.config import ConfigError
from neural_trader.inference import format_fixed
from neural_trader.params import parse_config
from neural_trader.sweep.points import SweepConfig, expand, model_name, parse_sweep, validate_sweep
from neural_trader.sweep.plots import heatmaps_png, oracle_fraction_png, sweep_figures
from neural_trader.sweep.report import (point_summary, sweep_artifact, sweep_contrasts, sweep_markdown, sweep_summary,
                                        verdicts)
from neural_trader.sweep.verdicts import _value_text

ROOT = Path(__file__).resolve().parents[2]
STUDY = yaml.safe_load((ROOT / "params.yaml").read_text())
PNG = b"\x89PNG\r\n\x1a\n"
SAFE = re.compile(r"[A-Za-z0-9_-]+")
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _sweep(**axes) -> SweepConfig:
    return parse_sweep({"dropout": [0.0, 0.1, 0.5], "axes": {k.replace("__", "."): v for k, v in axes.items()}})


# ------------------------------------------------------------------ expansion
_VALUES = {
    "hidden": hs.lists(hs.integers(1, 4096), min_size=1, max_size=4, unique=True),
    "data.n_train": hs.lists(hs.integers(1, 10**5), min_size=1, max_size=4, unique=True),
    "rho": hs.lists(hs.floats(-0.99, 0.99).map(lambda x: round(x, 3) + 0.0), min_size=1, max_size=4,
                    unique_by=lambda x: round(x, 3) + 0.0),
    "train.epochs": hs.lists(hs.integers(1, 1000), min_size=1, max_size=3, unique=True),
}


@hs.composite
def _axes(draw) -> dict[str, list]:
    keys = draw(hs.lists(hs.sampled_from(list(_VALUES)), max_size=4, unique=True))
    return {k: draw(_VALUES[k]) for k in keys}


@FAST
@given(_axes())
def test_grid_is_the_product_with_unique_safe_names_in_a_fixed_order(axes):
    sweep = parse_sweep({"dropout": [0.0, 0.5], "axes": axes})
    points = expand(STUDY, sweep, parse_config)
    assert len(points) == math.prod(len(v) for v in axes.values())
    names = [p.name for p in points]
    assert len(set(names)) == len(names)
    assert all(SAFE.fullmatch(n) for n in names)
    assert [p.name for p in expand(STUDY, sweep, parse_config)] == names  # deterministic
    if axes:  # first axis slowest
        first = next(iter(axes))
        assert [p.values[first] for p in points][:: len(points) // len(axes[first])] == axes[first]


@FAST
@given(_axes().filter(bool), hs.data())
def test_appending_a_value_only_adds_points(axes, data):
    key = data.draw(hs.sampled_from(list(axes)))
    new = data.draw(_VALUES[key].filter(lambda vs: vs[0] not in axes[key]))[0]
    before = {p.name: p.patch for p in expand(STUDY, parse_sweep({"dropout": [0.0, 0.5], "axes": axes}), parse_config)}
    grown = {**axes, key: [*axes[key], new]}
    after = {p.name: p.patch for p in expand(STUDY, parse_sweep({"dropout": [0.0, 0.5], "axes": grown}), parse_config)}
    assert {n: after[n] for n in before} == before
    assert len(after) == len(before) * (len(axes[key]) + 1) // len(axes[key])


def test_appending_a_dropout_value_renames_nothing_and_adds_one_model():
    small = validate_sweep(STUDY, parse_sweep({"dropout": [0.0, 0.5], "axes": {"hidden": [5, 32]}}), parse_config)
    big = validate_sweep(STUDY, parse_sweep({"dropout": [0.0, 0.5, 0.3], "axes": {"hidden": [5, 32]}}), parse_config)
    assert [p.name for p, _ in small] == [p.name for p, _ in big]
    for (_, a), (_, b) in zip(small, big):
        models_a, models_b = a.models, b.models
        assert list(models_b) == ["d0", "d0_5", "d0_3"]
        assert all(models_b[m] == cfg for m, cfg in models_a.items())


def test_a_new_axis_renames_every_point():
    old = {p.name for p in expand(STUDY, _sweep(hidden=[5, 32]), parse_config)}
    new = {p.name for p in expand(STUDY, _sweep(hidden=[5, 32], rho=[0.1]), parse_config)}
    assert old == {"hidden5", "hidden32"} and new == {"hidden5-rho0p1", "hidden32-rho0p1"}


def test_names_spell_values_safely():
    sweep = parse_sweep({"dropout": [0.0, 0.25], "axes": {"rho": [-0.1, 0.0], "data.n_train": [100],
                                                           "runtime.device": ["cpu"], "train.lr": [1e-5]}})
    assert [p.name for p in expand(STUDY, sweep, parse_config)] == ["rhom0p1-n_train100-devicecpu-lr0p00001",
                                                       "rho0-n_train100-devicecpu-lr0p00001"]
    assert [p.name for p in expand(STUDY, parse_sweep({"dropout": [0, 0.5]}), parse_config)] == ["base"]
    assert [model_name(d) for d in (0.0, 0.1, 0.25, 0.5)] == ["d0", "d0_1", "d0_25", "d0_5"]
    # two axes ending alike are told apart by their parent key
    both = parse_sweep({"dropout": [0, 0.5], "axes": {"train.epochs": [5], "warmups.regression.epochs": [6]}})
    assert expand(STUDY, both, parse_config)[0].name == "train_epochs5-regression_epochs6"


# ------------------------------------------------------------------ the design
def test_each_point_trains_one_model_per_dropout_on_one_regime_paired_by_seed():
    sweep = parse_sweep({"dropout": [0.5, 0.0, 0.1], "axes": {"hidden": [5, 128], "data.n_train": [100],
                                                              "rho": [0.0, 0.2], "data.regimes.momentum.vol": [2.0]}})
    points = validate_sweep({**STUDY, "sweep": {"ignored": True}}, sweep, parse_config)
    assert len(points) == 4
    for p, cfg in points:
        assert list(cfg.models) == ["d0", "d0_5", "d0_1"]  # reference first
        assert {m.hidden for m in cfg.models.values()} == {p.values["hidden"]}
        assert [m.dropout for m in cfg.models.values()] == [0.0, 0.5, 0.1]
        assert p.models == {"d0": 0.0, "d0_5": 0.5, "d0_1": 0.1}
        (regime,) = cfg.data.regimes.values()
        assert (regime.kind, regime.rho, regime.vol) == ("ar1", p.values["rho"], 2.0)
        assert cfg.data.n_train == 100 and cfg.seeds == points[0][1].seeds
        assert p.settings == {"hidden": p.values["hidden"], "n_train": 100, "rho": p.values["rho"]}


def test_unswept_settings_come_from_the_study():
    ((p, cfg),) = validate_sweep(STUDY, parse_sweep({"dropout": [0, 0.5]}), parse_config)
    assert p.settings == {"hidden": 5, "n_train": 1000, "rho": 0.2}
    assert list(cfg.data.regimes) == ["momentum"] and cfg.data.regimes["momentum"].rho == 0.2


# ------------------------------------------------------------------ errors at the door
@pytest.mark.parametrize("sweep, message", [
    ({"axes": {"data.n_trian": [1]}}, "sweep.axes.data.n_trian: not a key of the study (did you mean data.n_train?)"),
    ({"axes": {"hiden": [1]}}, "sweep.axes.hiden: not a key of the study (did you mean hidden?)"),
    ({"axes": {"data.n_train": [100, 0]}}, ("sweep.axes.data.n_train: value 0 is invalid (point n_train0): "
                                            "data.n_train: Input should be greater than or equal to 1")),
    ({"axes": {"hidden": [5], "rho": [0.1, 1.5]}}, "sweep.axes.rho: value 1.5 is invalid"),
    ({"axes": {"hidden": ["many"]}}, "sweep.axes.hidden: value 'many' is invalid"),
    ({"axes": {"data.length": [20, 4]}}, "sweep.axes.data.length: value 4 is invalid"),
    ({"axes": {"models.base.hidden": [5]}}, "sweep.axes.models.base.hidden: each point trains one model"),
    ({"axes": {"data.regimes.momentum.rho": [0.1]}}, "sweep the regime's rho with the `rho` axis"),
    ({"axes": {"data.regimes.random.vol": [2.0]}}, "single regime 'momentum'"),
    ({"axes": {"data.regimes.momentum.kind": ["iid"]}}, "each point's regime is AR(1)"),
    ({"axes": {"data.regimes.momentum.rh": [0.1]}}, "(did you mean data.regimes.momentum.vol?)"),
    ({"axes": {"data": [1]}}, "sweep.axes.data: a section, not a key"),
    ({"axes": {"dropout": [0.1]}}, "sweep.axes.dropout: dropout is the contrast axis"),
    ({"axes": {"hidden": [5, 5.0]}}, "sweep.axes.hidden: values 5 and 5.0 give the same point name"),
    ({"axes": {"hidden": [[5]]}}, "sweep.axes.hidden: axis values must be numbers"),
    ({"axes": {"hidden": []}}, "sweep.axes.hidden: needs at least one value"),
    ({"dropout": [0.1, 0.5]}, "sweep.dropout: must hold 0.0"),
    ({"dropout": [0.0]}, "sweep.dropout: needs at least one value besides the reference"),
    ({"dropout": [0.0, 1.0]}, "sweep.dropout: 1.0 is not allowed"),
    ({"dropout": [0.0, 0.5, 0.5]}, "sweep.dropout: duplicate values"),
    ({"fdr": "bonferroni"}, "sweep.fdr: Input should be 'bh' or 'holm'"),
    ({"alpha": 0.9}, "sweep.alpha: Input should be less than 0.5"),
    ({"axis": {}}, "sweep.axis: unknown key"),
])
def test_a_bad_sweep_fails_before_any_work_naming_the_key(sweep, message):
    with pytest.raises(ConfigError) as exc:
        validate_sweep(STUDY, parse_sweep({"dropout": [0.0, 0.5], **sweep}), parse_config)
    assert message in str(exc.value)


@pytest.mark.parametrize("axes, message", [
    # the error names data.lag first, but lag 4 is the study's own: the value that fails alone is the length
    ({"data.lag": [4], "data.length": [20, 4]},
     "sweep.axes.data.length: value 4 is invalid (point lag4-length4): data.lag: must be < data.length (4), got 4"),
    ({"data.length": [8], "data.lag": [8]},  # each fine alone: the point is named, no axis
     "sweep point length8-lag8: data.lag: must be < data.length (8), got 8"),
])
def test_a_bad_value_is_pinned_on_the_axis_that_fails_alone(axes, message):
    with pytest.raises(ConfigError) as exc:
        validate_sweep(STUDY, parse_sweep({"dropout": [0.0, 0.5], "axes": axes}), parse_config)
    assert str(exc.value) == message


def test_a_bad_study_names_its_own_key():
    with pytest.raises(ConfigError, match=r"^train\.lr"):
        expand({**STUDY, "train": {"lr": -1}}, _sweep(hidden=[5]), parse_config)


def test_a_study_without_ar1_regime_needs_a_rho_axis():
    iid = {**STUDY, "data": {**STUDY["data"], "regimes": {"random": {"kind": "iid"}}}}
    with pytest.raises(ConfigError, match="sweep.axes.rho: the study has no ar1 regime"):
        expand(iid, _sweep(hidden=[5]), parse_config)
    ((_, cfg),) = validate_sweep(iid, _sweep(rho=[0.1]), parse_config)
    assert cfg.data.regimes["momentum"].rho == 0.1


# ------------------------------------------------------------------ fake evaluations
def _eval(test, gap, oracle) -> dict:
    """An evaluation with the keys `comparison.summarise_cell` reads; returns per step."""
    test, gap, oracle = (np.asarray(x, dtype=float) for x in (test, gap, oracle))
    s = len(test)
    ps = {"test_mean_return": test.tolist(), "test_mean_return_best": test.tolist(), "gap": gap.tolist(),
          "train_return": (test + gap).tolist(), "test_sharpe": [0.1] * s, "test_hit_rate": [0.5] * s,
          "test_mean_position": [0.5] * s, "best_epoch": [10.0] * s, "oracle_return": oracle.tolist(),
          "buy_and_hold_return": [0.0] * s}
    realised = float(oracle.mean())
    return {"regime": "momentum", "model": "d0", "replicas": s, "per_seed": ps,
            "baselines": {"buy_and_hold": {"mean_return": 0.0}, "oracle": {"mean_return": realised}},
            "oracle_expected_return": realised,
            "oracle_fraction": None if realised == 0 else float(test.mean()) / realised}


def _grid(axes: dict, effect: dict | None = None, seeds: int = 16, seed: int = 0) -> list:
    """(point, {dropout: evaluation}) for a sweep; `effect` {(point name, dropout): shift of test return}."""
    sweep = parse_sweep({"dropout": [0.0, 0.1, 0.5], "axes": axes})
    rng = np.random.default_rng(seed)
    out = []
    for p in expand(STUDY, sweep, parse_config):
        rho = p.settings["rho"]
        oracle = np.full(seeds, 0.4 * rho)  # 0 at rho 0: nothing to learn
        common = rng.normal(0.2 * rho, 0.01, seeds)  # shared by the dropout values of a replica
        evals = {}
        for d in p.models.values():
            shift = (effect or {}).get((p.name, d), 0.0)
            evals[d] = _eval(common + shift + rng.normal(0, 0.002, seeds), 0.05 + rng.normal(0, 0.002, seeds), oracle)
        out.append((p, evals))
    return out


def test_point_summary_gives_cis_over_seeds_and_no_oracle_fraction_without_signal():
    (_, evals0), (_, evals1) = _grid({"rho": [0.0, 0.2]}, seeds=8)
    rows0, rows1 = point_summary(evals0, 0.95), point_summary(evals1, 0.95)
    assert [r["dropout"] for r in rows1] == [0.0, 0.1, 0.5]
    assert all(r["oracle_fraction"] is None for r in rows0)
    frac = rows1[0]["oracle_fraction"]
    per_seed = np.asarray(evals1[0.0]["per_seed"]["test_mean_return"]) / (0.4 * 0.2)
    assert frac["mean"] == pytest.approx(per_seed.mean()) and frac["ci_lo"] < frac["mean"] < frac["ci_hi"]
    assert rows1[0]["test_return"]["ci_lo"] < rows1[0]["test_return"]["mean"] < rows1[0]["test_return"]["ci_hi"]
    assert rows1[0]["oracle_fraction_pooled"] == pytest.approx(per_seed.mean())


# ------------------------------------------------------------------ multiplicity
def test_contrasts_pair_by_seed_and_adjust_over_the_whole_grid():
    axes = {"hidden": [5, 128], "data.n_train": [100, 1000], "rho": [0.1]}
    grid = _grid(axes, effect={("hidden128-n_train100-rho0p1", 0.5): 0.012})
    for method in ("bh", "holm"):
        recs = sweep_contrasts(grid, confidence=0.95, power=0.8, alpha=0.05, method=method)
        assert len(recs) == 4 * 2 * 2  # points x non-zero dropouts x metrics
        expected = multipletests([r["p"] for r in recs], method={"bh": "fdr_bh", "holm": "holm"}[method])[1]
        np.testing.assert_allclose([r["q"] for r in recs], expected)
        hits = {(r["point"], r["dropout"], r["metric"]) for r in recs if r["significant"]}
        assert hits == {("hidden128-n_train100-rho0p1", 0.5, "test_return")}
    point, evals = grid[2]
    rec = next(r for r in recs if r["point"] == point.name and r["dropout"] == 0.5 and r["metric"] == "test_return")
    diffs = np.subtract(evals[0.5]["per_seed"]["test_mean_return"], evals[0.0]["per_seed"]["test_mean_return"])
    assert rec["diff"] == pytest.approx(diffs.mean()) and rec["n"] == 16
    assert rec["ci_lo"] < 0.012 < rec["ci_hi"] and 0 < rec["mde"] < rec["mde_adjusted"]


def test_unpaired_seeds_are_refused():
    (p, evals), = _grid({"hidden": [5]}, seeds=4)
    evals[0.5]["per_seed"]["test_mean_return"].pop()
    with pytest.raises(ValueError, match="cannot pair 3 seeds with 4"):
        sweep_contrasts([(p, evals)])


# ------------------------------------------------------------------ verdicts
def _record(**kw) -> dict:
    base = {"point": "hidden128-n_train100-rho0p1", "values": {"hidden": 128, "data.n_train": 100, "rho": 0.1},
            "dropout": 0.5, "metric": "test_return", "diff": 0.012, "ci_lo": 0.004, "ci_hi": 0.020, "p": 1e-4,
            "q": 0.003, "significant": True}
    return {**base, **kw}


def test_verdicts_say_what_the_data_say():
    recs = [_record(), _record(dropout=0.1, diff=0.001, p=0.5, q=0.9, significant=False, state="undecided",
                               seeds_needed_interest=900),
            _record(metric="gap", diff=-0.02, ci_lo=-0.03, ci_hi=-0.01, q=0.01),
            _record(metric="gap", dropout=0.1, p=0.7, q=0.8, significant=False, state="equivalent",
                    effect_of_interest=0.001)]
    assert verdicts(recs, 0.05) == [
        ("dropout 0.5 raises test return at 128 hidden units with 100 training series and rho 0.1 "
         "(+0.0120 per step, unadjusted 95% CI 0.00400 to 0.0200; q = 0.003)"),
        ("on test return, 1 of 2 contrasts significant at q < 0.05; not significant anywhere else: 1 undecided "
         "(up to about 900 seeds would detect the effect of interest)"),
        ("dropout 0.5 narrows the overfitting gap at 128 hidden units with 100 training series and rho 0.1 "
         "(-0.0200 per step, unadjusted 95% CI -0.0300 to -0.0100; q = 0.01)"),
        "on the overfitting gap, 1 of 2 contrasts significant at q < 0.05; not significant anywhere else: "
        "1 equivalent within ±0.00100",
    ]
    quiet = [_record(significant=False, q=0.4, state="undecided", seeds_needed_interest=None, seeds_needed=None),
             _record(metric="gap", significant=False, q=0.4, p=math.nan)]
    assert verdicts(quiet, 0.05, method="holm") == [
        "on test return, no contrast significant anywhere in the grid at Holm-adjusted p < 0.05 (1 contrast): "
        "1 undecided",
        ("on the overfitting gap, no contrast significant anywhere in the grid at Holm-adjusted p < 0.05 "
         "(1 contrast); 1 not testable (fewer than 2 seeds)"),
    ]
    assert verdicts([_record(values={})])[0].startswith("dropout 0.5 raises test return (+0.0120 per step")
    assert not any("no difference" in line or "no effect" in line for line in verdicts(recs + quiet, 0.05))


# ------------------------------------------------------------------ summary, report, figures
@pytest.mark.parametrize("axes", [
    {"hidden": [5, 32, 128]},
    {"hidden": [5, 128], "data.n_train": [100, 1000, 10000]},
    {"hidden": [5, 128], "data.n_train": [100, 1000], "rho": [0.0, 0.1]},
    {"data.n_train": [100, 1000], "train.epochs": [5, 10]},
])
def test_summary_report_and_figures_render_for_any_grid(axes):
    sweep = parse_sweep({"dropout": [0.0, 0.1, 0.5], "axes": axes, "fdr": "bh", "alpha": 0.05})
    grid = _grid(axes, seeds=6)
    (lost, _), done = grid[-1], grid[:-1]  # a failed point is reported, not fatal
    summary = sweep_summary(sweep, done, [(lost, "RuntimeError: out of memory")], confidence=0.95, power=0.8)
    assert summary["schema"] == 1 and [a["key"] for a in summary["axes"]] == list(axes)
    assert summary["failed"] == [{"point": lost.name, "values": lost.values, "error": "RuntimeError: out of memory"}]
    assert summary["family_size"] == len(summary["contrasts"]) == len(done) * 2 * 2
    assert json.loads(json.dumps(summary, sort_keys=True)) == json.loads(json.dumps(summary))  # JSON-ready
    figures = sweep_figures(summary)
    assert set(figures) == {"effect_test_return", "effect_gap", "oracle_fraction"}
    assert all(png.startswith(PNG) for png in figures.values())
    if len(axes) == 1:
        assert heatmaps_png(summary["contrasts"], "gap") == figures["effect_gap"]  # deterministic bytes
    md = sweep_markdown(summary)
    assert md.startswith("# Dropout sweep") and all(v in md for v in summary["verdicts"])
    assert f"- {lost.name}: RuntimeError" in md and "![oracle_fraction](../plots/sweep/oracle_fraction.png)" in md
    # the Prefect UI's: the same words, tables split to fit its column, figures inlined
    artifact = sweep_artifact(summary, inline_figures(figures))
    assert artifact.startswith(md.split("## Points")[0]) and "../plots" not in artifact
    assert max(table_widths(artifact.splitlines())) <= COLUMN_PX < max(table_widths(md.splitlines()))
    assert artifact.count("](data:image/png;base64,") == len(figures)
    for r in summary["contrasts"]:
        assert f"| {r['point']} | {_value_text(r['dropout'])} | {format_fixed(r['diff'])} (" in artifact


def test_figures_of_an_empty_grid_still_render():
    assert heatmaps_png([], "test_return").startswith(PNG)
    assert oracle_fraction_png([]).startswith(PNG)
