"""The two warm-ups: regression recovers its parameters, the classifier gets near the Bayes rate.

Tolerances (measured with the config defaults, seeds below, torch 2.13 CPU):
- regression: |error| <= 0.05 on beta0, beta1 and sigma. RMSprop at a constant
  lr=0.01 keeps jittering by about lr around the optimum, so the end-of-epoch
  betas land within ~0.02 of the truth over seeds; 0.05 leaves room.
- classifier: test accuracy > 0.90 and within 0.02 of the Bayes rate (~0.9454
  for dim=100). Ten epochs of 10 batches give 0.936-0.946 over 20 seeds (gap to
  the population Bayes rate at most 0.0095, mean 0.0036); the test set's own
  sampling noise is ~0.002. Against the Bayes rule scored on the same test rows
  (gap_test) the gap was at most 0.006, so that one is held to 0.01.
- Bayes rate: Monte Carlo vs quadrature within 0.003 (standard error ~5e-4 at 2e5 draws).
"""

from __future__ import annotations

import math

import pytest
import torch

from neural_trader.warmups import classifier as C
from neural_trader.warmups import regression as R
from neural_trader.warmups.config import ClassifierConfig, RegressionConfig
from neural_trader.data import make_generator
from neural_trader.seeding import seed_from

TOL_REG = 0.05
TOL_BAYES_GAP = 0.02
TOL_BAYES_MC = 0.003


@pytest.fixture(scope="module", autouse=True)
def _one_thread():  # module scope: set before the module-scoped training fixtures run
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# ---------------------------------------------------------------------- regression
@pytest.fixture(scope="module")
def regression_run():
    cfg = RegressionConfig()
    x, y = R.regression_data(cfg, make_generator("test", "reg-data"))
    model, hist = R.fit_regression(x, y, cfg, seed_from("test", "reg-fit"))
    return cfg, x, y, model, hist


def test_regression_data_shapes_and_law():
    cfg = RegressionConfig()
    x, y = R.regression_data(cfg, make_generator("test", "reg-law"))
    assert x.shape == y.shape == (cfg.n,)
    assert x.dtype == y.dtype == torch.float32
    # sample moments of x and of the exact residual
    eps = (y - cfg.beta0 - cfg.beta1 * x) / cfg.sigma
    for t in (x, eps):
        assert abs(float(t.mean())) < 0.05 and abs(float(t.std()) - 1) < 0.05
    assert abs(float(torch.corrcoef(torch.stack([x, eps]))[0, 1])) < 0.05


def test_regression_recovers_parameters(regression_run):
    cfg, x, y, model, _ = regression_run
    rep = R.regression_report(model, x, y, cfg)
    for name in ("beta0", "beta1", "sigma"):
        assert rep[f"{name}_true"] == getattr(cfg, name)
        assert rep[f"{name}_error"] == pytest.approx(abs(rep[name] - rep[f"{name}_true"]))
        assert rep[f"{name}_error"] < TOL_REG, rep


def test_regression_sigma_ddof(regression_run):
    cfg, x, y, model, _ = regression_run
    s0 = R.regression_report(model, x, y, cfg)["sigma"]
    s2 = R.regression_report(model, x, y, cfg, ddof=2)["sigma"]
    assert s2 == pytest.approx(s0 * math.sqrt(cfg.n / (cfg.n - 2)), rel=1e-9)
    with pytest.raises(ValueError, match="ddof"):
        R.regression_report(model, x, y, cfg, ddof=cfg.n)


def test_regression_history(regression_run):
    cfg, _, _, model, hist = regression_run
    assert hist.columns == R.REGRESSION_COLUMNS == ("beta0", "beta1", "loss")
    assert hist.values.shape == (1, cfg.epochs, 3)
    # betas are the end-of-epoch parameters
    assert float(hist.column("beta0")[0, -1]) == pytest.approx(model.beta0[0, 0].detach().item())
    assert float(hist.column("beta1")[0, -1]) == pytest.approx(model.beta1[0, 0].detach().item())
    loss = hist.column("loss")[0]
    # starts near E[y^2] = beta0^2 + beta1^2 + sigma^2 minus early progress; ends near sigma^2
    assert float(loss[0]) > 1.0
    assert float(loss[-5:].mean()) == pytest.approx(cfg.sigma**2, rel=0.05)


def test_regression_deterministic_and_replicas():
    cfg = RegressionConfig(epochs=5)
    x, y = R.regression_data(cfg, make_generator("test", "reg-det"))
    x2, y2 = R.regression_data(cfg, make_generator("test", "reg-det"))
    assert torch.equal(x, x2) and torch.equal(y, y2)
    _, h1 = R.fit_regression(x, y, cfg, seed_from("test", "r", 0))
    _, h2 = R.fit_regression(x, y, cfg, seed_from("test", "r", 0))
    assert torch.equal(h1.values, h2.values)
    # two replicas in one run equal two single runs with the same seeds
    _, hb = R.fit_regression(x, y, cfg, [seed_from("test", "r", 0), seed_from("test", "r", 1)])
    _, h3 = R.fit_regression(x, y, cfg, seed_from("test", "r", 1))
    assert hb.values.shape == (2, cfg.epochs, 3)
    torch.testing.assert_close(hb.values[0], h1.values[0])
    torch.testing.assert_close(hb.values[1], h3.values[0])


def test_regression_rejects_bad_input():
    cfg = RegressionConfig(epochs=1)
    x = torch.zeros(10)
    with pytest.raises(ValueError, match="equal length"):
        R.fit_regression(x, torch.zeros(11), cfg, seed_from("x"))
    with pytest.raises(ValueError, match="seeds"):
        R.fit_regression(x, x, cfg, [])
    with pytest.raises(ValueError, match="distinct"):
        R.fit_regression(x, x, cfg, [3, 3])


# ---------------------------------------------------------------------- classifier
@pytest.fixture(scope="module")
def classifier_run():
    cfg = ClassifierConfig()
    x, label = C.classifier_data(cfg, cfg.n, make_generator("test", "cls-train"))
    xt, lt = C.classifier_data(cfg, cfg.n_test, make_generator("test", "cls-test"))
    model, hist = C.fit_classifier(x, label, cfg, seed_from("test", "cls-fit"), valid=(xt, lt))
    return cfg, x, label, xt, lt, model, hist


def test_classifier_data_shapes_and_balance():
    cfg = ClassifierConfig()
    x, label = C.classifier_data(cfg, 5000, make_generator("test", "cls-shape"))
    assert x.shape == (5000, cfg.dim) and x.dtype == torch.float32
    assert label.shape == (5000,) and label.dtype == torch.int64
    assert set(label.unique().tolist()) <= {0, 1}
    assert abs(float(label.double().mean()) - 0.5) < 0.03  # beta0 = 0: symmetric
    # labels mostly follow the hyperplane's side
    agree = ((x.sum(dim=1) > 0).long() == label).double().mean()
    assert float(agree) > 0.9


def test_logistic_noise_law():
    e = C._logistic(200_000, make_generator("test", "logistic"))
    assert torch.isfinite(e).all()
    assert abs(float(e.mean())) < 0.02
    assert float(e.var()) == pytest.approx(math.pi**2 / 3, rel=0.02)
    for q in (-2.0, 0.0, 1.0):  # CDF is the sigmoid
        assert float((e <= q).double().mean()) == pytest.approx(1 / (1 + math.exp(-q)), abs=0.005)


def test_bayes_rate_monte_carlo_matches_integral():
    cfg = ClassifierConfig()
    exact = C.bayes_rate_integral(cfg)
    # closed-form-ish check: 1 - E[sigmoid(-|z|)] ~= 1 - 2 phi(0) ln2 / sqrt(dim) for large dim
    assert exact == pytest.approx(1 - 2 * math.log(2) / math.sqrt(2 * math.pi * cfg.dim), abs=2e-3)
    mc = C.bayes_rate(cfg, 200_000, make_generator("test", "bayes"))
    assert abs(mc - exact) < TOL_BAYES_MC
    # dim = 1: z ~ N(0, 1), still a proper integral
    one = ClassifierConfig(dim=1)
    assert abs(C.bayes_rate(one, 200_000, make_generator("test", "bayes1")) - C.bayes_rate_integral(one)) < TOL_BAYES_MC


def test_classifier_beats_90_and_nears_bayes(classifier_run):
    cfg, _, _, xt, lt, model, hist = classifier_run
    bayes = C.bayes_rate_integral(cfg)
    rep = C.classifier_report(model, xt, lt, cfg, bayes)
    assert rep["accuracy"] > 0.90, rep
    assert rep["gap"] < TOL_BAYES_GAP, rep
    assert rep["gap_test"] < 0.01, rep
    assert abs(rep["bayes_test"] - bayes) < 0.01  # 10^4 test rows: std ~0.002
    assert rep["accuracy"] + rep["false_pos"] + rep["false_neg"] == pytest.approx(1.0, abs=1e-6)
    # the last epoch's test columns are the final model's test stats
    assert float(hist.column("test_accuracy")[0, -1]) == pytest.approx(rep["accuracy"], abs=1e-6)


def test_classifier_history(classifier_run):
    cfg, x, label, *_, hist = classifier_run
    assert hist.columns == C.CLASSIFIER_COLUMNS + C.TEST_COLUMNS
    assert hist.values.shape == (1, cfg.epochs, 6)
    train = hist.values[0, :, :3]
    test = hist.values[0, :, 3:]
    torch.testing.assert_close(train.sum(dim=1), torch.ones(cfg.epochs), atol=1e-5, rtol=0)
    torch.testing.assert_close(test.sum(dim=1), torch.ones(cfg.epochs), atol=1e-5, rtol=0)
    assert float(train[-1, 0]) > float(train[0, 0])  # learns
    assert float(train[-1, 0]) > 0.9


def test_classifier_without_valid_and_deterministic():
    cfg = ClassifierConfig(n=2000, dim=10, epochs=3, batch_size=500)
    x, label = C.classifier_data(cfg, cfg.n, make_generator("test", "det-data"))
    x2, label2 = C.classifier_data(cfg, cfg.n, make_generator("test", "det-data"))
    assert torch.equal(x, x2) and torch.equal(label, label2)
    m1, h1 = C.fit_classifier(x, label, cfg, seed_from("test", "det", 0))
    m2, h2 = C.fit_classifier(x, label, cfg, seed_from("test", "det", 0))
    assert h1.columns == C.CLASSIFIER_COLUMNS and h1.values.shape == (1, 3, 3)
    assert torch.equal(h1.values, h2.values)
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    _, h3 = C.fit_classifier(x, label, cfg, seed_from("test", "det", 1))
    assert not torch.equal(h1.values, h3.values)
    # replicas: batched run equals single runs
    _, hb = C.fit_classifier(x, label, cfg, [seed_from("test", "det", 0), seed_from("test", "det", 1)])
    torch.testing.assert_close(hb.values[0], h1.values[0])
    torch.testing.assert_close(hb.values[1], h3.values[0])


def test_classifier_rejects_bad_shapes():
    cfg = ClassifierConfig(dim=4, epochs=1)
    with pytest.raises(ValueError, match=r"\(n, 4\)"):
        C.fit_classifier(torch.zeros(10, 3), torch.zeros(10, dtype=torch.long), cfg, seed_from("x"))
    with pytest.raises(ValueError, match="n must be"):
        C.classifier_data(cfg, 0, make_generator("x"))
    with pytest.raises(ValueError, match="draws"):
        C.bayes_rate(cfg, 0, make_generator("x"))
