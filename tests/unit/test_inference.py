"""The inference module, checked against known answers, statsmodels and scipy, and by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs
from scipy import stats as st

from scipy.stats import false_discovery_control
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower

from neural_trader.inference import (STATES, adjust, adjust_family, format_evidence, format_fixed, format_number,
                                     format_p, format_percent, mean_ci, min_detectable_effect, paired_contrast,
                                     seeds_needed)


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


# -------------------------------------------------------------- paired_contrast
def test_paired_contrast_hand_computed():
    # differences 1, 2, 3, 4: t = 2.5 / (sqrt(5/3) / 2) = sqrt(15)
    res = paired_contrast([2.0, 4.0, 6.0, 8.0], [1.0, 2.0, 3.0, 4.0])
    assert res["n"] == 4
    assert res["diff"] == pytest.approx(2.5)
    assert res["t"] == pytest.approx(math.sqrt(15), rel=1e-12)
    assert res["p"] == pytest.approx(2 * st.t.sf(math.sqrt(15), 3), rel=1e-12)
    assert res["p"] == pytest.approx(0.0304663, abs=1e-6)
    assert res["ci_lo"] == pytest.approx(0.4457397, abs=1e-6)
    assert res["ci_hi"] == pytest.approx(4.5542603, abs=1e-6)


def test_paired_contrast_matches_scipy():
    rng = np.random.default_rng(3)
    a = rng.normal(0.1, 1.0, 16)
    b = a + rng.normal(-0.2, 0.5, 16)
    res = paired_contrast(a, b, 0.9)
    ref = st.ttest_rel(a, b)
    assert res["t"] == pytest.approx(ref.statistic, rel=1e-12)
    assert res["p"] == pytest.approx(ref.pvalue, rel=1e-12)
    ci = ref.confidence_interval(0.9)
    assert res["ci_lo"] == pytest.approx(ci.low, rel=1e-10)
    assert res["ci_hi"] == pytest.approx(ci.high, rel=1e-10)
    # antisymmetric
    rev = paired_contrast(b, a, 0.9)
    assert rev["t"] == pytest.approx(-res["t"]) and rev["p"] == pytest.approx(res["p"])


def test_paired_contrast_zero_variance():
    same = paired_contrast([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert same["p"] == 1.0 and same["t"] == 0.0 and same["ci_lo"] == same["ci_hi"] == 0.0
    shifted = paired_contrast([1.5, 2.5, 3.5], [1.0, 2.0, 3.0])
    assert shifted["p"] == 0.0 and shifted["t"] == math.inf
    assert shifted["diff"] == shifted["ci_lo"] == shifted["ci_hi"] == 0.5
    down = paired_contrast([0.0, 0.0], [1.0, 1.0])
    assert down["p"] == 0.0 and down["t"] == -math.inf


def test_paired_contrast_bad_input():
    res = paired_contrast([1.0], [0.0])
    assert res["diff"] == 1.0 and res["n"] == 1 and math.isnan(res["p"])
    with pytest.raises(ValueError, match="equal lengths"):
        paired_contrast([1.0, 2.0], [1.0, 2.0, 3.0])


# ------------------------------------------------------------------- adjust
def test_holm_hand_made():
    assert adjust([0.01, 0.04, 0.03, 0.005], "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_caps_and_nan():
    assert adjust([0.5, 0.6, 0.001], "holm") == pytest.approx([1.0, 1.0, 0.003])
    out = adjust([0.01, math.nan, 0.02], "holm")
    assert math.isnan(out[1]) and out[[0, 2]] == pytest.approx([0.02, 0.02])
    assert adjust([], "holm").shape == (0,)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        adjust([0.1, 1.2], "holm")


@settings(max_examples=200, deadline=None)
@given(hs.lists(hs.floats(0.0, 1.0), min_size=1, max_size=12))
def test_holm_properties(pvalues):
    p = np.array(pvalues)
    adj = adjust(p, "holm")
    assert np.all(adj >= p - 1e-15) and np.all(adj <= 1.0)
    assert np.all(adj <= np.minimum(1.0, p * len(p)) + 1e-12)  # never worse than Bonferroni
    order = np.argsort(p, kind="stable")
    assert np.all(np.diff(adj[order]) >= -1e-15)  # monotone in the sorted order


@settings(max_examples=200, deadline=None)
@given(hs.lists(hs.one_of(hs.floats(0.0, 1.0), hs.floats(0.0, 1e-4), hs.just(math.nan), hs.sampled_from([0.01, 0.05])),
                max_size=30), hs.sampled_from(["holm", "bh"]))
def test_adjust_is_statsmodels_bit_for_bit(pvalues, method):
    """The same floats as statsmodels' multipletests over the p-values that are not NaN, in input order."""
    p = np.array(pvalues, dtype=float)
    valid = ~np.isnan(p)
    out = adjust(p, method)
    assert np.array_equal(np.isnan(out), ~valid)
    if valid.any():
        expected = multipletests(p[valid], method={"holm": "holm", "bh": "fdr_bh"}[method])[1]
        np.testing.assert_array_equal(out[valid], expected)


def _known_p() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.permutation(np.concatenate([np.full(10, 1e-5) * np.arange(1, 11), rng.uniform(size=90)]))


def test_bh_q_values_are_statsmodels_and_scipy_and_holm_is_stricter():
    p = _known_p()
    bh, holm = adjust(p, "bh"), adjust(p, "holm")
    np.testing.assert_allclose(bh, multipletests(p, method="fdr_bh")[1])
    np.testing.assert_allclose(bh, false_discovery_control(p, method="bh"))
    np.testing.assert_allclose(holm, multipletests(p, method="holm")[1])
    assert np.all(holm >= bh - 1e-15) and (holm < 0.05).sum() <= (bh < 0.05).sum()
    assert (bh < 0.05).sum() >= 10
    np.testing.assert_allclose(adjust([0.01, 0.02, 0.03, 0.04, 0.05], "bh"), [0.05] * 5)  # by hand
    q = adjust([0.01, math.nan, 0.04], "bh")  # NaN: not testable, not counted
    assert math.isnan(q[1]) and q[[0, 2]] == pytest.approx([0.02, 0.04])
    with pytest.raises(ValueError, match="method"):
        adjust(p, "bonferroni")


def test_adjust_family_decides_at_alpha_over_the_contrasts_with_a_p_value():
    rng = np.random.default_rng(8)
    base = rng.normal(0, 1e-3, 32)
    family = [dict(metric="test_return", **paired_contrast(base + 0.01 + rng.normal(0, 1e-4, 32), base)),
              dict(metric="test_return", **paired_contrast(base + rng.normal(0, 1e-6, 32), base)),
              dict(metric="gap", **paired_contrast(base + rng.normal(0, 1e-2, 32), base)),
              dict(metric="gap", **paired_contrast([0.5], [0.0]))]  # one seed: no test
    assert adjust_family(family, "holm", alpha=0.05, power=0.8, margins={"test_return": 1e-4}) == 3
    assert [r["state"] for r in family] == ["significant", "equivalent", "undecided", "undecided"]
    assert [r["p_adj"] for r in family[:3]] == list(adjust([r["p"] for r in family[:3]], "holm"))
    assert math.isnan(family[3]["p_adj"]) and not family[3]["significant"] and family[3]["seeds_needed"] is None
    for r in family[:3]:
        assert r["mde_adjusted"] == min_detectable_effect(r["sd_diff"], 32, 0.05 / 3, 0.8) > r["mde"]
        assert r["seeds_needed"] == seeds_needed(r["sd_diff"], r["diff"], 0.05 / 3, 0.8)
    assert family[1]["effect_of_interest"] == 1e-4 and family[2]["effect_of_interest"] is None
    assert family[2]["seeds_needed_interest"] is None and all(r["state"] in STATES for r in family)


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
    assert format_p(3.2e-5, relation=False) == "3.2e-05" and format_p(1e-9, relation=False) == "< 1e-6"
    assert format_p(math.nan) == "= n/a" and format_p(math.nan, relation=False) == "n/a"
    assert format_percent(0.95) == "95%" and format_percent(0.975) == "97.5%" and format_percent(0.9) == "90%"
    assert format_fixed(0.012345) == "0.0123" and format_fixed(0.5, 2) == "0.50"
    assert format_fixed(None) == format_fixed(math.nan) == format_fixed(math.inf) == "n/a"
    assert format_evidence(0.004, 0.02, 0.95) == "(unadjusted 95% CI 0.00400 to 0.0200)"
    assert format_evidence(-1, 2, 0.9, lead="diff 0.5", tail="q = 0.01", fmt=str) == \
        "(diff 0.5, unadjusted 90% CI -1 to 2; q = 0.01)"
    assert format_evidence(-1, 2, 0.9, fmt=str, interval="bootstrap CI") == "(unadjusted 90% bootstrap CI -1 to 2)"


# ------------------------------------------------------------------ seeds needed
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
    n = TTestPower().solve_power(effect_size=effect_size, alpha=alpha, power=power, alternative="two-sided")
    assert seeds_needed(1.0, effect_size, alpha, power) == max(2, math.ceil(float(n) - 1e-6))


# ------------------------------------------------------- held to statsmodels
def test_holm_agrees_with_statsmodels_and_keeps_todays_values():
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.5, np.nan])
    expected = [0.04, 0.09, 0.09, 0.025, 0.5]  # sorted .005 .01 .03 .04 .5 times 5 4 3 2 1, running max
    holm = adjust(p, "holm")
    assert holm[:5] == pytest.approx(expected) and np.isnan(holm[5])
    assert holm[:5] == pytest.approx(multipletests(p[:5], method="holm")[1], abs=1e-15)
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.uniform(size=rng.integers(1, 30)) ** 3
        assert adjust(q, "holm") == pytest.approx(multipletests(q, method="holm")[1], abs=1e-15)


@pytest.mark.parametrize("n", [8, 32, 200])
@pytest.mark.parametrize("alpha, power", [(0.05, 0.8), (0.05 / 6, 0.8), (0.01, 0.9)])
def test_min_detectable_effect_agrees_with_statsmodels(n, alpha, power):
    """The power curve is statsmodels' TTestPower wherever statsmodels is finite."""
    mde = min_detectable_effect(1.0, n, alpha, power)
    assert TTestPower().power(effect_size=mde, nobs=n, alpha=alpha, alternative="two-sided") == pytest.approx(power)
    if n >= 8:  # below that, solve_power stops at its search bound for strict alpha (see inference._power_exact)
        assert TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power,
                                        alternative="two-sided") == pytest.approx(mde, rel=1e-5)


def test_min_detectable_effect_keeps_todays_values():
    assert min_detectable_effect(1.0, 32, 0.05 / 6, 0.8) == pytest.approx(0.6521142084216548, rel=1e-12)
    assert min_detectable_effect(1.0, 2, 0.01, 0.9) == pytest.approx(74.04747294443334, rel=1e-9)
