"""Inference across seeds, checked against known answers and by simulation."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs
from scipy import stats as st

from neural_trader.synthetic.config import CompareConfig
from neural_trader.synthetic.contrasts import STATES, contrasts
from neural_trader.stats import (format_number, format_p, holm, mean_ci, min_detectable_effect, paired_test, seeds_needed)


# ---------------------------------------------------------------------- mean_ci
def test_mean_ci_hand_computed():
    # mean 2.5, sd sqrt(5/3), se sd/2, t_{0.975,3} = 3.182446305
    mean, lo, hi = mean_ci([1.0, 2.0, 3.0, 4.0], 0.95)
    half = 3.182446305284263 * math.sqrt(5 / 3) / 2
    assert mean == 2.5
    assert lo == pytest.approx(2.5 - half, rel=1e-9)
    assert hi == pytest.approx(2.5 + half, rel=1e-9)


def test_mean_ci_coverage_by_simulation():
    rng = np.random.default_rng(7)
    draws = rng.normal(loc=3.0, scale=2.0, size=(2000, 10))
    covered = 0
    for row in draws:
        _, lo, hi = mean_ci(row, 0.95)
        covered += lo <= 3.0 <= hi
    assert 0.93 <= covered / len(draws) <= 0.97


def test_mean_ci_wider_at_higher_confidence():
    x = np.arange(8.0)
    _, lo90, hi90 = mean_ci(x, 0.90)
    _, lo99, hi99 = mean_ci(x, 0.99)
    assert lo99 < lo90 < hi90 < hi99


def test_mean_ci_degenerate():
    assert mean_ci([5.0, 5.0, 5.0]) == (5.0, 5.0, 5.0)
    mean, lo, hi = mean_ci([1.5])
    assert mean == 1.5 and math.isnan(lo) and math.isnan(hi)
    with pytest.raises(ValueError, match="at least one"):
        mean_ci([])
    with pytest.raises(ValueError, match="1-D"):
        mean_ci(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="confidence"):
        mean_ci([1.0, 2.0], 1.5)


def test_mean_ci_accepts_tensors():
    torch = pytest.importorskip("torch")
    assert mean_ci(torch.tensor([1.0, 2.0, 3.0, 4.0]))[0] == pytest.approx(2.5)


# ------------------------------------------------------------------ paired_test
def test_paired_test_hand_computed():
    # differences 1, 2, 3, 4: t = 2.5 / (sqrt(5/3) / 2) = sqrt(15)
    res = paired_test([2.0, 4.0, 6.0, 8.0], [1.0, 2.0, 3.0, 4.0])
    assert res["n"] == 4
    assert res["diff"] == pytest.approx(2.5)
    assert res["t"] == pytest.approx(math.sqrt(15), rel=1e-12)
    assert res["p"] == pytest.approx(2 * st.t.sf(math.sqrt(15), 3), rel=1e-12)
    assert res["p"] == pytest.approx(0.0304663, abs=1e-6)
    assert res["lo"] == pytest.approx(0.4457397, abs=1e-6)
    assert res["hi"] == pytest.approx(4.5542603, abs=1e-6)


def test_paired_test_matches_scipy():
    rng = np.random.default_rng(3)
    a = rng.normal(0.1, 1.0, 16)
    b = a + rng.normal(-0.2, 0.5, 16)
    res = paired_test(a, b, 0.9)
    ref = st.ttest_rel(a, b)
    assert res["t"] == pytest.approx(ref.statistic, rel=1e-12)
    assert res["p"] == pytest.approx(ref.pvalue, rel=1e-12)
    ci = ref.confidence_interval(0.9)
    assert res["lo"] == pytest.approx(ci.low, rel=1e-10)
    assert res["hi"] == pytest.approx(ci.high, rel=1e-10)
    # antisymmetric
    rev = paired_test(b, a, 0.9)
    assert rev["t"] == pytest.approx(-res["t"]) and rev["p"] == pytest.approx(res["p"])


def test_paired_test_zero_variance():
    same = paired_test([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert same["p"] == 1.0 and same["t"] == 0.0 and same["lo"] == same["hi"] == 0.0
    shifted = paired_test([1.5, 2.5, 3.5], [1.0, 2.0, 3.0])
    assert shifted["p"] == 0.0 and shifted["t"] == math.inf
    assert shifted["diff"] == shifted["lo"] == shifted["hi"] == 0.5
    down = paired_test([0.0, 0.0], [1.0, 1.0])
    assert down["p"] == 0.0 and down["t"] == -math.inf


def test_paired_test_bad_input():
    res = paired_test([1.0], [0.0])
    assert res["diff"] == 1.0 and res["n"] == 1 and math.isnan(res["p"])
    with pytest.raises(ValueError, match="equal lengths"):
        paired_test([1.0, 2.0], [1.0, 2.0, 3.0])


# ------------------------------------------------------------------------- holm
def test_holm_hand_made():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_caps_and_nan():
    assert holm([0.5, 0.6, 0.001]) == pytest.approx([1.0, 1.0, 0.003])
    out = holm([0.01, math.nan, 0.02])
    assert math.isnan(out[1]) and out[[0, 2]] == pytest.approx([0.02, 0.02])
    assert holm([]).shape == (0,)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([0.1, 1.2])


@settings(max_examples=200, deadline=None)
@given(hs.lists(hs.floats(0.0, 1.0), min_size=1, max_size=12))
def test_holm_properties(pvalues):
    p = np.array(pvalues)
    adj = holm(p)
    assert np.all(adj >= p - 1e-15) and np.all(adj <= 1.0)
    assert np.all(adj <= np.minimum(1.0, p * len(p)) + 1e-12)  # never worse than Bonferroni
    order = np.argsort(p, kind="stable")
    assert np.all(np.diff(adj[order]) >= -1e-15)  # monotone in the sorted order


# -------------------------------------------------------------------------- MDE
def test_mde_scales_like_one_over_sqrt_n():
    m = [min_detectable_effect(1.0, n) for n in (4, 16, 64, 256, 1024)]
    assert all(a > b for a, b in zip(m, m[1:]))
    assert m[-2] / m[-1] == pytest.approx(2.0, rel=0.01)  # df barely matters at large n
    assert min_detectable_effect(2.0, 100) == pytest.approx(2 * min_detectable_effect(1.0, 100))
    # large n: the normal approximation (z_{0.975} + z_{0.8}) / sqrt(n)
    z = st.norm.ppf(0.975) + st.norm.ppf(0.8)
    assert min_detectable_effect(1.0, 10_000) == pytest.approx(z / 100, rel=0.002)


def test_mde_known_value_and_approx():
    # G*Power, paired t, two-sided alpha 0.05, power 0.8, n = 10: dz = 0.9957
    assert min_detectable_effect(1.0, 10) == pytest.approx(0.9957, abs=5e-4)
    approx = min_detectable_effect(1.0, 10, method="approx")
    assert approx == pytest.approx((st.t.ppf(0.975, 9) + st.t.ppf(0.8, 9)) / math.sqrt(10))
    assert min_detectable_effect(1.0, 2) > min_detectable_effect(1.0, 2, method="approx")


def test_mde_has_the_stated_power_by_simulation():
    n, sd = 10, 1.0
    mde = min_detectable_effect(sd, n, alpha=0.05, power=0.8)
    rng = np.random.default_rng(11)
    d = rng.normal(mde, sd, size=(8000, n))
    t = d.mean(axis=1) / (d.std(axis=1, ddof=1) / math.sqrt(n))
    power = np.mean(np.abs(t) > st.t.ppf(0.975, n - 1))
    assert power == pytest.approx(0.8, abs=0.02)


def test_mde_edge_cases():
    assert min_detectable_effect(0.0, 10) == 0.0
    assert math.isnan(min_detectable_effect(1.0, 1))
    assert math.isnan(min_detectable_effect(math.nan, 10))
    with pytest.raises(ValueError):
        min_detectable_effect(-1.0, 10)
    with pytest.raises(ValueError, match="method"):
        min_detectable_effect(1.0, 10, method="bogus")


# -------------------------------------------------------------------- formatting
def test_formatting():
    assert format_number(0.0721) == "0.0721"
    assert format_number(0.072) == "0.0720"
    assert format_number(1.0) == "1.00"
    assert format_number(100.0) == "100"
    assert format_number(12345.0) == "12345"
    assert format_number(-0.00312) == "-0.00312"
    assert format_number(0.0) == "0"
    assert format_number(1.5e-5) == "1.50e-05"
    assert format_p(1e-9) == "< 1e-6"
    assert format_p(0.41) == "= 0.41"
    assert format_p(3.2e-5) == "= 3.2e-05"
    assert format_p(1.0) == "= 1"


# -------------------------------------------------------------------- contrasts
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
        "momentum - random | base",
        "momentum - random | dropout",
        "dropout - base | random | test_return",
        "dropout - base | random | gap",
        "dropout - base | momentum | test_return",
        "dropout - base | momentum | gap",
    ]
    keys = {"name", "metric", "diff", "ci_lo", "ci_hi", "t", "p", "p_adj", "significant", "mde", "n", "verdict"}
    for rec in fam:
        assert keys <= rec.keys()
        assert rec["n"] == 16
        assert rec["p_adj"] >= rec["p"]
        assert rec["ci_lo"] <= rec["diff"] <= rec["ci_hi"]
    assert [r["p_adj"] for r in fam] == pytest.approx(list(holm([r["p"] for r in fam])))


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
        f"{r} - random | {v}" for r in ("mild", "strong") for v in variants
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
    mom = by["momentum - random | base"]
    assert mom["significant"] and mom["diff"] == pytest.approx(0.07, abs=0.01)
    assert mom["verdict"].startswith("with base: momentum beats random by ")
    assert "per step (95% CI " in mom["verdict"]
    assert "adjusted p < 1e-6" in mom["verdict"]
    for text in (mom["diff"], mom["ci_lo"], mom["ci_hi"]):
        assert format_number(text) in mom["verdict"]
    gap = by["dropout - base | momentum | gap"]
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
    assert f"diff {format_number(rec['diff'])}, 90% CI {format_number(rec['ci_lo'])} to {format_number(rec['ci_hi'])}" in v
    assert f"adjusted p {format_p(rec['p_adj'])}" in v
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
    assert by["momentum - random | base"]["state"] == "significant"
    eq = by["dropout - base | random | test_return"]
    assert eq["state"] == "equivalent" and -1e-4 < eq["ci_lo"] and eq["ci_hi"] < 1e-4
    assert eq["verdict"] == (f"on random: dropout and base are equivalent on test return within +-{format_number(1e-4)} "
                             f"(diff {format_number(eq['diff'])}, 95% CI {format_number(eq['ci_lo'])} to "
                             f"{format_number(eq['ci_hi'])}, inside the margin)")
    und = by["dropout - base | momentum | gap"]
    assert und["state"] == "undecided" and not (-0.001 < und["ci_lo"] and und["ci_hi"] < 0.001)
    sd = float(np.std(results[("momentum", "dropout")]["gap"] - results[("momentum", "base")]["gap"], ddof=1))
    assert und["seeds_needed_interest"] == seeds_needed(sd, 0.001, 0.05 / len(fam), 0.8) > 64
    assert (f"about {und['seeds_needed_interest']:,} seeds would detect an effect of {format_number(0.001)} at 80% power, "
            "64 do now") in und["verdict"]
    assert all(r["state"] in STATES for r in fam)


@pytest.mark.parametrize("sd,n", [(1.0, 5), (0.002, 32), (3.0, 100), (1e-4, 512)])
def test_seeds_needed_inverts_the_minimum_detectable_effect(sd, n):
    """statsmodels' sample size against the hand-written MDE: n seeds detect the MDE at n, and n - 1 do not."""
    effect = min_detectable_effect(sd, n, 0.05 / 6, 0.8)
    assert seeds_needed(sd, effect, 0.05 / 6, 0.8) == n
    assert seeds_needed(sd, effect * 1.001, 0.05 / 6, 0.8) <= n
    assert seeds_needed(sd, effect * 0.999, 0.05 / 6, 0.8) >= n
    assert seeds_needed(sd, 0.0) is None and seeds_needed(0.0, effect) == 2


@pytest.mark.parametrize("effect_size", [0.05, 0.2, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("alpha,power", [(0.05, 0.8), (0.05 / 6, 0.9)])
def test_seeds_needed_is_statsmodels_sample_size(effect_size, alpha, power):
    """The hand-written search against statsmodels' TTestPower (paired = one-sample t on the differences)."""
    from statsmodels.stats.power import TTestPower

    n = TTestPower().solve_power(effect_size=effect_size, alpha=alpha, power=power, alternative="two-sided")
    assert seeds_needed(1.0, effect_size, alpha, power) == max(2, math.ceil(float(n) - 1e-6))


def test_contrasts_unequal_seed_counts():
    res = {
        ("random", "base"): {"test_return": np.zeros(4), "gap": np.zeros(4)},
        ("momentum", "base"): {"test_return": np.ones(5), "gap": np.zeros(5)},
    }
    with pytest.raises(ValueError, match="cannot pair"):
        contrasts(res, ["random", "momentum"], ["base"])


# ------------------------------------------------------- held to statsmodels
def test_holm_agrees_with_statsmodels_and_keeps_todays_values():
    from statsmodels.stats.multitest import multipletests

    p = np.array([0.01, 0.04, 0.03, 0.005, 0.5, np.nan])
    expected = [0.04, 0.09, 0.09, 0.025, 0.5]  # sorted .005 .01 .03 .04 .5 times 5 4 3 2 1, running max
    assert holm(p)[:5] == pytest.approx(expected) and np.isnan(holm(p)[5])
    assert holm(p)[:5] == pytest.approx(multipletests(p[:5], method="holm")[1], abs=1e-15)
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.uniform(size=rng.integers(1, 30)) ** 3
        assert holm(q) == pytest.approx(multipletests(q, method="holm")[1], abs=1e-15)


@pytest.mark.parametrize("n", [8, 32, 200])
@pytest.mark.parametrize("alpha, power", [(0.05, 0.8), (0.05 / 6, 0.8), (0.01, 0.9)])
def test_min_detectable_effect_agrees_with_statsmodels(n, alpha, power):
    """The power curve is statsmodels' TTestPower wherever statsmodels is finite."""
    from statsmodels.stats.power import TTestPower

    mde = min_detectable_effect(1.0, n, alpha, power)
    assert TTestPower().power(effect_size=mde, nobs=n, alpha=alpha, alternative="two-sided") == pytest.approx(power)
    if n >= 8:  # below that, solve_power stops at its search bound for strict alpha (see stats._power_exact)
        assert TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power,
                                        alternative="two-sided") == pytest.approx(mde, rel=1e-5)


def test_min_detectable_effect_keeps_todays_values():
    assert min_detectable_effect(1.0, 32, 0.05 / 6, 0.8) == pytest.approx(0.6521142084216548, rel=1e-12)
    assert min_detectable_effect(1.0, 2, 0.01, 0.9) == pytest.approx(74.04747294443334, rel=1e-9)
