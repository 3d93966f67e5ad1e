"""The warm-up stages through run_stage (tests/flows/test_warmup_flows.py runs their tasks and flows, and
tests/integration/test_dvc_warmups.py `dvc repro`).

Tolerances, checked on the stages' own outputs with the params.yaml defaults (the
seed's values) and seeds.base = 0:
- regression: |recovered - true| < 0.05 for beta0, beta1 and sigma (sigma backed
  out from the residuals). Measured at seeds.base = 0: errors 0.0089, 0.0060,
  0.0016; over seeds.base = 0..9 the largest was 0.010. Constant-lr RMSprop
  keeps jittering around the optimum by about lr, hence the room.
- classifier: gap = Bayes rate - test accuracy < 0.02, with the Bayes rate
  simulated from the generating model (10^6 draws, se 0.0002). Measured at
  seeds.base = 0: accuracy 0.9374 against 0.9453, gap 0.0079; over seeds.base =
  0..9 the gap was -0.0004..0.0080. Against the Bayes rule scored on the same
  test rows (gap_test, free of the test set's sampling noise, std ~0.002) the
  largest was 0.0058, held to 0.01.
"""

from __future__ import annotations

import pytest
import torch

from flows.cli import main
from neural_trader.models import Classifier, LinearRegression1D
from neural_trader.warmups import classifier as C
from neural_trader.warmups import regression as R
from stages.catalog import Workspace, load_params, load_tensors, read_json
from stages.registry import STAGES, WARMUPS, code_files
from stages.run import run_stage
from tasks import stages as stage_tasks
from tests.conftest import ROOT, SHRUNK_WARMUPS as SHRUNK, warmup_dvc_stages

PARAMS = ROOT / "params.yaml"
STEPS = ("generate", "train", "evaluate", "plot")
NAMES = [f"{exp}_{step}" for exp in WARMUPS for step in STEPS]

TOL_REG = 0.05
TOL_BAYES_GAP = 0.02
TOL_BAYES_GAP_TEST = 0.01


@pytest.fixture(scope="module", autouse=True)
def _one_thread():  # module scope: set before the module-scoped runs; 1 thread keeps numbers identical
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _run_all(cfg, ws: Workspace) -> dict[str, dict]:
    return {name: run_stage(name, cfg, ws) for name in NAMES}


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """Every warm-up stage once, on the params.yaml defaults (about 3 s)."""
    cfg = load_params(PARAMS)
    ws = Workspace(tmp_path_factory.mktemp("warmups-full"))
    return cfg, ws, _run_all(cfg, ws)


@pytest.fixture
def shrunk():
    return load_params(PARAMS, SHRUNK)


# ------------------------------------------------------------------ the numbers
def test_params_defaults_are_the_seeds():
    w = load_params(PARAMS).warmups
    assert (w.regression.n, w.regression.beta0, w.regression.beta1, w.regression.sigma) == (10000, 1.0, 2.0, 0.5)
    assert (w.regression.lr, w.regression.epochs * w.regression.n // w.regression.batch_size) == (0.01, 500)
    assert (w.classifier.n, w.classifier.dim, w.classifier.hidden) == (10000, 100, 2)
    assert (w.classifier.lr, w.classifier.epochs, w.classifier.batch_size) == (0.01, 10, 1000)


def test_regression_recovers_truth(full_run):
    _, ws, runs = full_run
    report = read_json(ws.warmup_report("regression"))
    assert report == {k: v for k, v in runs["regression_evaluate"].items() if k != "reused"}
    for name, true in (("beta0", 1.0), ("beta1", 2.0), ("sigma", 0.5)):
        assert report[f"{name}_true"] == true
        assert abs(report[name] - true) < TOL_REG, report


def test_classifier_near_bayes_rate(full_run):
    _, ws, _ = full_run
    report = read_json(ws.warmup_report("classifier"))
    assert report["bayes_draws"] == 1_000_000
    # the simulated Bayes rate agrees with quadrature within 4 standard errors
    assert abs(report["bayes"] - report["bayes_exact"]) < 4 * report["bayes_se"]
    assert report["gap"] == pytest.approx(report["bayes"] - report["accuracy"])
    assert report["accuracy"] > 0.9
    assert report["gap"] < TOL_BAYES_GAP, report
    assert report["gap_test"] < TOL_BAYES_GAP_TEST, report


# ------------------------------------------------------------------ the files
def test_outputs_and_formats(full_run):
    cfg, ws, _ = full_run
    for exp, columns in (("regression", R.REGRESSION_COLUMNS), ("classifier", C.CLASSIFIER_COLUMNS + C.TEST_COLUMNS)):
        header, *rows = ws.warmup_history(exp).read_text().splitlines()
        assert header.split("\t") == ["epoch", *columns]
        assert len(rows) == getattr(cfg.warmups, exp).epochs
        assert [r.split("\t")[0] for r in rows] == [str(e + 1) for e in range(len(rows))]
        assert ws.warmup_plot(exp).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the weights load back into the core's models and reproduce the report
    reg = LinearRegression1D()
    reg.load_state_dict(load_tensors(ws.warmup_model("regression")))
    assert reg.beta1[0, 0].item() == read_json(ws.warmup_report("regression"))["beta1"]
    cc = cfg.warmups.classifier
    net = Classifier([torch.Generator()], dim=cc.dim, hidden=cc.hidden)
    net.load_state_dict(load_tensors(ws.warmup_model("classifier")))
    data = load_tensors(ws.warmup_data("classifier"))
    again = C.classifier_report(net, data["test_x"], data["test_label"], cc, bayes=0.0)
    assert again["accuracy"] == read_json(ws.warmup_report("classifier"))["accuracy"]


def test_rerun_is_reused_and_changes_rerun_only_downstream(shrunk, tmp_path):
    ws = Workspace(tmp_path)
    assert not any(r["reused"] for r in _run_all(shrunk, ws).values())
    assert all(r["reused"] for r in _run_all(shrunk, ws).values())
    # a classifier training key: its generate and every regression stage stay put
    longer = load_params(PARAMS, [*SHRUNK, "warmups.classifier.epochs=4"])
    reused = {name: r["reused"] for name, r in _run_all(longer, ws).items()}
    assert reused == {name: not name.startswith("classifier_") or name == "classifier_generate" for name in NAMES}
    # a damaged output is redone
    ws.warmup_plot("regression").write_bytes(b"not a png")
    assert run_stage("regression_plot", longer, ws)["reused"] is False
    assert ws.warmup_plot("regression").read_bytes()[:4] == b"\x89PNG"


def test_stage_needs_its_inputs(shrunk, tmp_path):
    with pytest.raises(FileNotFoundError, match="data/warmups/classifier/data.safetensors"):
        run_stage("classifier_train", shrunk, tmp_path)


# ------------------------------------------------------------------ the wiring
def test_stages_registered_with_their_own_params(shrunk):
    assert [s.name for s in [STAGES[n] for n in NAMES]] == NAMES
    for stage in [STAGES[n] for n in NAMES]:
        assert STAGES[stage.name] is stage and stage.items == ()
        exp = stage.name.split("_")[0]
        for key in stage.params(shrunk, {}):
            assert key in ("seeds.base", "runtime.torch_threads") or key.startswith(f"warmups.{exp}."), (stage.name, key)
            shrunk.section(key)  # exists
        task = stage_tasks.stage_task(stage.name)
        assert task.name == stage.name  # task name = stage name = DVC stage name


def _history_columns(stage: str) -> tuple[str, ...]:
    return R.REGRESSION_COLUMNS if stage.startswith("regression") else C.CLASSIFIER_COLUMNS + C.TEST_COLUMNS


def _paths(entries: list) -> list[str]:
    return [e if isinstance(e, str) else next(iter(e)) for e in entries]


def test_dvc_yaml_agrees_with_the_registry(shrunk, tmp_path):
    stages, ws = warmup_dvc_stages(), Workspace(tmp_path)
    assert list(stages) == NAMES
    for stage in [STAGES[n] for n in NAMES]:
        spec = stages[stage.name]
        assert spec["cmd"] == f"python -m flows.cli stage {stage.name}"
        assert spec.get("params", []) == stage.params(shrunk, {})
        outs = _paths(spec.get("outs", []) + spec.get("metrics", []) + spec.get("plots", []))
        assert sorted(outs) == sorted(ws.rel(p) for p in stage.outputs(shrunk, ws, {}))
        code = {p.relative_to(ROOT).as_posix() for p in code_files(stage)}  # what the stamp key hashes
        assert set(spec["deps"]) == {ws.rel(p) for p in stage.inputs(shrunk, ws, {})} | code
        for entry in spec.get("metrics", []) + spec.get("plots", []):
            (props,) = entry.values()
            assert props["cache"] is False  # metrics, curves and figures: git tracks them
            if "x" in props:
                assert props["x"] == "epoch" and props["y"] in _history_columns(stage.name)


def test_cli_stage_runs_warmup_stages(tmp_path, capsys):
    common = ["--params", str(PARAMS), "--workspace", str(tmp_path), *[a for s in SHRUNK for a in ("--set", s)]]
    assert main(["stage", "regression_generate", *common]) == 0
    assert main(["stage", "regression_train", *common]) == 0
    assert Workspace(tmp_path).warmup_history("regression").is_file()
    assert main(["stage", "regression_nope", *common]) == 2
    assert "unknown stage 'regression_nope'" in capsys.readouterr().err
