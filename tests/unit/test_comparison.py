"""The core's per-cell evaluation, the family of contrasts and cross-cell comparison, on tiny hand-made inputs."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from neural_trader.inference import STATES, adjust, format_number, format_p, min_detectable_effect, seeds_needed
from neural_trader.synthetic import comparison as cmp
from neural_trader.synthetic.config import AR1Regime, CompareConfig, IIDRegime
from neural_trader.synthetic.contrasts import contrasts
from neural_trader.synthetic.metrics import evaluate_cell
from neural_trader.evaluate import CURVE_GRID, policy_metrics
from neural_trader.synthetic.sources import make_source


class _Const(torch.nn.Module):
    """A stand-in trader: replica s always holds position p[s]."""

    def __init__(self, p: list[float]):
        super().__init__()
        self.p = torch.tensor(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (S, n, lag) -> (S, n)
        return self.p[:, None].expand(x.shape[0], x.shape[1]).clone()


def _windows(replicas: int, n: int, lag: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(replicas, n, lag, generator=g), torch.randn(replicas, n, generator=g)


@pytest.mark.parametrize("regime", [AR1Regime(rho=0.3), IIDRegime(), None])
def test_evaluate_cell_numbers(regime):
    S, E = 2, 5
    train_x, train_y = _windows(S, 40, 4, 1)
    test_x, test_y = _windows(S, 60, 4, 2)
    valid = np.array([[0.1, 0.3, 0.2, 0.0, 0.1], [0.5, 0.1, 0.1, 0.2, 0.6]])
    train_return = np.arange(S * E, dtype=float).reshape(S, E)
    oracle = None if regime is None else make_source(regime).oracle
    nets = {"last": _Const([1.0, 0.25]), "best": _Const([0.0, 1.0])}
    out = evaluate_cell(nets, train_x, train_y, test_x, test_y, valid, train_return, oracle)
    ps = out["per_seed"]
    # the core computes in float64 what the net gives in float32
    expected_test = (torch.tensor([1.0, 0.25])[:, None] * test_y).double().mean(dim=1).numpy()
    assert ps["test_mean_return"] == pytest.approx(expected_test.tolist())
    assert ps["test_mean_return_best"] == pytest.approx([0.0, float(test_y[1].double().mean())])
    in_sample = (torch.tensor([1.0, 0.25])[:, None] * train_y).mean(dim=1).numpy()
    assert ps["gap"] == pytest.approx((in_sample - expected_test).tolist(), rel=1e-5)
    assert ps["best_epoch"] == [2.0, 5.0] and ps["valid_return_best"] == [0.3, 0.6]
    assert ps["train_return_train_mode"] == [4.0, 9.0]
    assert ps["buy_and_hold_return"] == pytest.approx(test_y.double().mean(dim=1).tolist())
    assert np.asarray(out["curve"]["position"]).shape == (S, len(CURVE_GRID))
    assert out["curve"]["position"][1] == pytest.approx([0.25] * len(CURVE_GRID))
    if oracle is None:  # a law nobody knows: no oracle baseline, no fraction
        assert "oracle" not in out["baselines"] and out["oracle_fraction"] is None
        assert out["oracle_expected_return"] is None
    else:
        realised = policy_metrics(oracle.position(test_x), test_y)["mean_return"].mean()
        assert out["baselines"]["oracle"]["mean_return"] == pytest.approx(realised)
        assert out["oracle_expected_return"] == pytest.approx(oracle.expected_return())


def _evaluation(regime: str, model: str, test: list[float], gap: list[float], oracle: float | None) -> dict:
    n = len(test)
    per_seed = {"test_mean_return": test, "test_mean_return_best": test, "gap": gap,
                "train_return": [t + g for t, g in zip(test, gap)], "test_sharpe": [0.1] * n,
                "test_hit_rate": [0.5] * n, "test_mean_position": [0.5] * n, "best_epoch": [3.0] * n,
                "buy_and_hold_return": [0.0] * n, "cash_return": [0.0] * n}
    baselines = {"cash": {"mean_return": 0.0}, "buy_and_hold": {"mean_return": 0.0}}
    if oracle is not None:
        per_seed["oracle_return"] = [oracle] * n
        baselines["oracle"] = {"mean_return": oracle}
    return {"regime": regime, "model": model, "replicas": n, "per_seed": per_seed, "baselines": baselines,
            "oracle_expected_return": oracle, "oracle_fraction": None if not oracle else float(np.mean(test)) / oracle,
            "curve": {"last_return": [0.0], "position": [[0.5]] * n}, "valid_return_curve": [[0.0, 0.1]] * n}


def test_compare_cells_pairs_by_seed_against_the_null_regime():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.001, 8)
    evals = {
        ("random", "base"): _evaluation("random", "base", list(noise), list(noise + 0.01), 0.0),
        ("momentum", "base"): _evaluation("momentum", "base", list(noise + 0.05), list(noise + 0.01), 0.06),
    }
    oracles = {"momentum": make_source(AR1Regime(rho=0.2)).oracle, "random": make_source(IIDRegime()).oracle}
    assert cmp.null_regime(oracles) == "random"  # not the first listed: the one with nothing to learn
    result = cmp.compare_cells(evals, ["momentum", "random"], ["base"], oracles,
                               {"confidence": 0.95, "alpha": 0.05, "power": 0.8})
    (contrast,) = result["contrasts"]
    assert contrast["name"] == "momentum - random / base"
    assert contrast["diff"] == pytest.approx(0.05) and contrast["significant"]  # paired: the noise cancels
    assert result["replicas"] == 8 and result["runs"] == 1
    head = cmp.headline(result)
    assert head["test_return"]["momentum-base"] == pytest.approx(float(np.mean(noise + 0.05)))
    assert head["diff"] == {"test_return:momentum-random@base": contrast["diff"]}


def test_pooling_concatenates_seeds_in_order():
    a = _evaluation("momentum", "base", [0.01, 0.02], [0.0, 0.0], 0.04)
    b = _evaluation("momentum", "base", [0.03, 0.04], [0.0, 0.0], 0.04)
    pooled = cmp.pool_evaluations([a, b])
    assert pooled["per_seed"]["test_mean_return"] == [0.01, 0.02, 0.03, 0.04]
    assert pooled["replicas"] == 4 and len(pooled["valid_return_curve"]) == 4
    assert pooled["oracle_fraction"] == pytest.approx(0.025 / 0.04)
    assert cmp.pool_evaluations([a]) is a


def test_valid_return_table_is_long_format():
    table = cmp.valid_return_table({"x-base": np.array([[1.0, 2.0], [3.0, 4.0]])}, np.arange(1, 3))
    assert table == "epoch\tcell\tvalid_return\n1\tx-base\t2\n2\tx-base\t3\n"


# -------------------------------------------------------------------- the family of contrasts
def _family(rng, s=16, effect=0.0, dropout_gap=0.0, regimes=("random", "momentum"), variants=("base", "dropout")):
    """Per-seed results; `effect` is added to every non-first regime's test return."""
    out = {}
    shared = rng.normal(0.0, 0.01, size=s)  # seed-level noise shared by all cells: pairing helps
    for i, regime in enumerate(regimes):
        for j, variant in enumerate(variants):
            out[(regime, variant)] = {
                "test_return": shared + rng.normal(0.0, 0.01, s) + (effect if i else 0.0),
                "gap": rng.normal(0.01, 0.005, s) + (dropout_gap if j else 0.0),
            }
    return out


def test_contrasts_family_structure():
    rng = np.random.default_rng(0)
    fam = contrasts(_family(rng), ["random", "momentum"], ["base", "dropout"], **CompareConfig().model_dump())
    names = [r["name"] for r in fam]
    assert names == [
        "momentum - random / base",
        "momentum - random / dropout",
        "dropout - base / random / test_return",
        "dropout - base / random / gap",
        "dropout - base / momentum / test_return",
        "dropout - base / momentum / gap",
    ]
    keys = {"name", "metric", "diff", "ci_lo", "ci_hi", "t", "p", "p_adj", "significant", "mde", "n", "verdict"}
    for rec in fam:
        assert keys <= rec.keys()
        assert rec["n"] == 16
        assert rec["p_adj"] >= rec["p"]
        assert rec["ci_lo"] <= rec["diff"] <= rec["ci_hi"]
    assert [r["p_adj"] for r in fam] == pytest.approx(list(adjust([r["p"] for r in fam], "holm")))


def test_contrasts_pair_by_seed_index():
    results = {
        ("random", "base"): {"test_return": np.array([0.0, 1.0, 2.0]), "gap": np.zeros(3)},
        ("momentum", "base"): {"test_return": np.array([0.5, 1.5, 2.5]), "gap": np.zeros(3)},
    }
    (rec,) = contrasts(results, ["random", "momentum"], ["base"])
    assert rec["diff"] == 0.5 and rec["p"] == 0.0 and rec["significant"]  # paired: constant shift


def test_contrasts_any_number_of_regimes_and_variants():
    rng = np.random.default_rng(1)
    regimes, variants = ("random", "mild", "strong"), ("base", "dropout", "wide")
    res = _family(rng, regimes=regimes, variants=variants)
    fam = contrasts(res, regimes, variants, null_regime="random")
    assert len(fam) == 2 * 3 + 3 * 2 * 2
    assert {r["name"] for r in fam if r["kind"] == "regime"} == {
        f"{r} - random / {v}" for r in ("mild", "strong") for v in variants
    }
    # a designated null regime that is not first becomes the reference
    fam = contrasts(res, ["mild", "random", "strong"], variants, null_regime="random")
    assert all(r["b"] == "random" for r in fam if r["kind"] == "regime")
    assert contrasts(res, ["random"], ["base"]) == []
    with pytest.raises(ValueError, match="null_regime"):
        contrasts(res, regimes, variants, null_regime="nope")
    with pytest.raises(ValueError, match="no cell"):
        contrasts(res, ["random", "other"], ["base"])


def test_contrasts_null_rarely_significant():
    rng = np.random.default_rng(2)
    trials = 300
    any_sig = sum(
        any(r["significant"] for r in contrasts(_family(rng), ["random", "momentum"], ["base", "dropout"]))
        for _ in range(trials)
    )
    # Holm keeps the family-wise error rate at 5%; allow simulation noise
    assert any_sig / trials <= 0.09


def test_contrasts_detect_strong_effect_with_verdicts():
    rng = np.random.default_rng(4)
    fam = contrasts(_family(rng, effect=0.07, dropout_gap=-0.01), ["random", "momentum"], ["base", "dropout"])
    by = {r["name"]: r for r in fam}
    mom = by["momentum - random / base"]
    assert mom["significant"] and mom["diff"] == pytest.approx(0.07, abs=0.01)
    assert mom["verdict"].startswith("with base: momentum beats random by ")
    assert "per step (unadjusted 95% CI " in mom["verdict"]  # the interval is unadjusted, the p is not
    assert "; Holm-adjusted p < 1e-6)" in mom["verdict"]
    for text in (mom["diff"], mom["ci_lo"], mom["ci_hi"]):
        assert format_number(text) in mom["verdict"]
    gap = by["dropout - base / momentum / gap"]
    assert gap["significant"] and gap["diff"] < 0
    assert gap["verdict"].startswith("on momentum: dropout has a smaller overfitting gap than base by ")
    # the interval in the verdict is that of the effect's size, positive here
    numbers = [float(x) for x in re.findall(r"-?\d+\.?\d*(?:e-?\d+)?", gap["verdict"].split("CI ")[1])[:2]]
    assert numbers == pytest.approx([-gap["ci_hi"], -gap["ci_lo"]], rel=0.01)


def test_contrasts_non_significant_verdict_is_undecided_with_the_seeds_it_needs():
    results = _family(np.random.default_rng(5))
    fam = contrasts(results, ["random", "momentum"], ["base", "dropout"], confidence=0.9, power=0.9)
    rec = next(r for r in fam if not r["significant"] and r["metric"] == "gap")
    v = rec["verdict"]
    assert rec["state"] == "undecided" and rec["effect_of_interest"] is None
    assert v.startswith("on random: undecided between dropout and base on overfitting gap: about ")
    assert "no significant difference" not in v and "no difference" not in v
    assert (f"diff {format_number(rec['diff'])}, unadjusted 90% CI {format_number(rec['ci_lo'])} to "
            f"{format_number(rec['ci_hi'])}; Holm-adjusted p {format_p(rec['p_adj'])})") in v
    # without an effect of interest, the seeds that would detect the observed difference
    assert f"about {rec['seeds_needed']:,} seeds would detect an effect of {format_number(abs(rec['diff']))}" in v
    # the MDE and the seeds needed are taken at the family's Bonferroni level alpha / m, from the sd of the differences
    d = results[(rec["within"], "dropout")]["gap"] - results[(rec["within"], "base")]["gap"]
    sd, m = float(np.std(d, ddof=1)), len(fam)
    assert rec["mde"] == pytest.approx(min_detectable_effect(sd, 16, 0.05 / m, 0.9))
    assert rec["mde"] > min_detectable_effect(sd, 16, 0.05, 0.9)
    assert rec["seeds_needed"] == seeds_needed(sd, rec["diff"], 0.05 / m, 0.9) > 16  # not significant: more needed


def test_contrasts_in_three_states_with_an_effect_of_interest():
    """Significant after Holm; equivalent when the CI lies inside +- the margin; else undecided, with seeds."""
    rng = np.random.default_rng(11)
    noise = rng.normal(0, 1e-4, 64)
    results = {(r, v): {"test_return": base + shift + rng.normal(0, 1e-5, 64) + noise, "gap": noise}
               for r, base in (("random", 0.0), ("momentum", 0.08)) for v, shift in (("base", 0.0), ("dropout", 0.0))}
    results[("momentum", "dropout")]["gap"] = noise + rng.normal(0, 0.01, 64)  # noisy: undecided at a 0.001 margin
    fam = contrasts(results, ["random", "momentum"], ["base", "dropout"],
                    effect_of_interest={"test_return": 1e-4, "gap": 0.001})
    by = {r["name"]: r for r in fam}
    assert by["momentum - random / base"]["state"] == "significant"
    eq = by["dropout - base / random / test_return"]
    assert eq["state"] == "equivalent" and -1e-4 < eq["ci_lo"] and eq["ci_hi"] < 1e-4
    assert eq["verdict"] == (f"on random: dropout and base are equivalent on test return within ±{format_number(1e-4)} "
                             f"(diff {format_number(eq['diff'])}, unadjusted 95% CI {format_number(eq['ci_lo'])} to "
                             f"{format_number(eq['ci_hi'])}; inside the margin)")
    und = by["dropout - base / momentum / gap"]
    assert und["state"] == "undecided" and not (-0.001 < und["ci_lo"] and und["ci_hi"] < 0.001)
    sd = float(np.std(results[("momentum", "dropout")]["gap"] - results[("momentum", "base")]["gap"], ddof=1))
    assert und["seeds_needed_interest"] == seeds_needed(sd, 0.001, 0.05 / len(fam), 0.8) > 64
    assert (f"about {und['seeds_needed_interest']:,} seeds would detect an effect of {format_number(0.001)} at 80% power, "
            "64 do now") in und["verdict"]
    assert all(r["state"] in STATES for r in fam)


def test_contrasts_unequal_seed_counts():
    res = {
        ("random", "base"): {"test_return": np.zeros(4), "gap": np.zeros(4)},
        ("momentum", "base"): {"test_return": np.ones(5), "gap": np.zeros(5)},
    }
    with pytest.raises(ValueError, match="cannot pair"):
        contrasts(res, ["random", "momentum"], ["base"])


def test_contrasts_figure_draws_each_contrast_with_its_ci_against_zero_and_the_margin():
    """The headline figure: a panel per (a - b, metric), a row per contrast at its diff and CI, the zero line,
    +- the effect of interest shaded, and each row's state and adjusted p written beside it."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from neural_trader import plots

    rng = np.random.default_rng(11)
    fam = contrasts(_family(rng, effect=0.05, dropout_gap=-0.01), ["random", "momentum"], ["base", "dropout"],
                    effect_of_interest={"test_return": 1e-4, "gap": 0.001})
    kw = cmp.contrast_panels(fam)
    fig = plots.forest_figure(**kw, title="contrasts")
    try:
        assert [ax.get_title(loc="left") for ax in fig.axes] == [
            "momentum - random: test return (effect of interest \u00b10.0001)",
            "dropout - base: test return (effect of interest \u00b10.0001)",
            "dropout - base: overfitting gap (effect of interest \u00b10.001)"]
        drawn = []
        for ax, (panel, rows) in zip(fig.axes, kw["panels"].items()):
            labels = [t.get_text() for t in ax.get_yticklabels()][::-1]  # first row on top
            notes = [t.get_text() for t in ax.texts]
            assert len(labels) == len(rows) == len(ax.containers) == len(notes)  # one row, one CI bar per contrast
            for bar, note in zip(ax.containers, notes):
                (x,), (y,) = bar.lines[0].get_data()
                (lo, _), (hi, _) = bar.lines[2][0].get_segments()[0]  # the CI: (lo, y) to (hi, y)
                drawn.append((labels[int(y)], x, lo, hi, note))
            assert any(tuple(line.get_xdata()) == (0, 0) for line in ax.lines), f"{panel}: no zero line"
            lo, hi = ax.get_xlim()
            assert lo < 0 < hi and lo <= min(r.lo for r in rows) and max(r.hi for r in rows) <= hi
            margin = kw["margins"][panel]
            spans = [(p.get_x(), p.get_x() + p.get_width()) for p in ax.patches if isinstance(p, Rectangle)]
            assert spans == [pytest.approx((-margin, margin))]  # axvspan: x in data units, y the whole axis
        expected = [(("with " if r["kind"] == "regime" else "on ") + r["within"], r["diff"], r["ci_lo"], r["ci_hi"],
                     f"{r['state']}, adjusted p {format_p(r['p_adj'], relation=False)}") for r in fam]
        assert sorted(drawn, key=lambda d: d[1]) == sorted(expected, key=lambda e: e[1])
        assert {r["state"] for r in fam} >= {"significant", "undecided"}
    finally:
        plt.close(fig)


def test_contrasts_figure_comes_first_in_the_report():
    assert cmp.FIGURES[0] == "contrasts"
