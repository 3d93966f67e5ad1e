"""Every validator at the door: the params model, `--set` overrides, and the `stage` front door.

Each bad input is refused with exit status 2 and one line naming its source
(the params file, or the `--set` item) and the key, before any work (nothing is written). Names of regimes,
models and markets become folder names and DVC stage names (`train@random-base`,
split back on '-' and '@'), so only letters, digits and '_' pass.
tests/stages/test_layout.py holds the file-level checks through `neural-trader check`
(an empty file, a duplicate key, a YAML syntax error, an unknown key, an
unknown kind of regime); they are not repeated here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.cli import main
from neural_trader.config import ConfigError
from stages.catalog import load_params, load_sweep
from tests.conftest import ROOT

PARAMS = ROOT / "params.yaml"
NAME = "must be letters, digits and '_' only"

BAD_OVERRIDES = [
    # lag < length, from either side
    ("data.lag=20", "data.lag: must be < data.length (20), got 20"),
    ("data.lag=25", "data.lag: must be < data.length (20), got 25"),
    ("data.length=4", "data.lag: must be < data.length (4), got 4"),
    # names that would break a path or a DVC stage name
    ('data.regimes={"mo-mentum": {"kind": "ar1"}}', f"data.regimes: regime name 'mo-mentum' {NAME}"),
    ('data.regimes={"../up": {"kind": "iid"}}', f"data.regimes: regime name '../up' {NAME}"),
    ('data.regimes={"a/b": {"kind": "iid"}}', f"data.regimes: regime name 'a/b' {NAME}"),
    ('data.regimes={"x@y": {"kind": "iid"}}', f"data.regimes: regime name 'x@y' {NAME}"),
    ('data.regimes={"": {"kind": "iid"}}', f"data.regimes: regime name '' {NAME}"),
    ("data.regimes={}", "data.regimes: at least one regime is required"),
    ('models.big-net={"hidden": 8}', f"models: model name 'big-net' {NAME}"),
    ('models={"two words": {"hidden": 8}}', f"models: model name 'two words' {NAME}"),
    ('models={"a.b": {"hidden": 8}}', f"models: model name 'a.b' {NAME}"),
    ("models={}", "models: at least one model is required"),
    ('markets.regimes={"s&p": {"kind": "dataset"}}', f"markets.regimes: market name 's&p' {NAME}"),
    ('markets.models={"lin-ear": {"hidden": 0}}', f"markets.models: model name 'lin-ear' {NAME}"),
    # kinds of source: a missing one, and an unknown market kind (an unknown regime kind: test_layout.py)
    ('data.regimes.x={"vol": 2.0}', "data.regimes.x.kind: missing source kind (allowed: iid, ar1)"),
    ("markets.regimes.x.kind=yahoo", "markets.regimes.x.kind: unknown source kind 'yahoo' (allowed: csv, dataset)"),
    # malformed --set
    ("train.epochs", "expected key.path=value"),
    ("train..epochs=3", "empty key in 'train..epochs'"),
    (".epochs=3", "empty key in '.epochs'"),
    ("=3", "empty key in ''"),
    ("train.epochs.max=3", "'epochs' is not a section"),
    ("train.epochs=ten", ("train.epochs: Input should be a valid integer, unable to parse string as an integer, "
                          "got 'ten' (allowed: >= 1 and <= 100000)")),
]


@pytest.mark.parametrize("override, expected", BAD_OVERRIDES, ids=[o for o, _ in BAD_OVERRIDES])
def test_bad_override_names_itself_and_the_key(override, expected):
    with pytest.raises(ConfigError) as bad:
        load_params(PARAMS, [override])
    assert str(bad.value) == f"--set {override}: {expected}"


@pytest.mark.parametrize("override, expected", BAD_OVERRIDES[::4], ids=[o for o, _ in BAD_OVERRIDES[::4]])
def test_check_exits_2_with_one_line(override, expected, capsys):
    assert main(["check", "--params", str(PARAMS), "--set", override]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == f"neural-trader: error: --set {override}: {expected}\n"


UNKNOWN_KEYS = [  # a typo at every level and in every section that shares the plumbing, with the closest known key
    ("train.epoch", "train.epochs"),
    ("seeds.cont", "seeds.count"),
    ("trian", "train"),
    ("data.regimes.momentum.rhoo", "data.regimes.momentum.rho"),
    ("warmups.regression.epoch", "warmups.regression.epochs"),
    ("markets.epoch", "markets.epochs"),
]


@pytest.mark.parametrize("key, close", UNKNOWN_KEYS, ids=[k for k, _ in UNKNOWN_KEYS])
def test_an_unknown_key_suggests_the_closest_one(tmp_path, key, close):
    with pytest.raises(ConfigError) as bad:
        load_params(PARAMS, ["train.epochs=3", f"{key}=5"])  # only the override at fault is named
    assert str(bad.value) == f"--set {key}=5: {key}: unknown key (did you mean {close}?)"
    params = tmp_path / "params.yaml"  # the same typo in the file names the file
    params.write_text(f"extends: {PARAMS}\n" + "".join(f"{'  ' * i}{p}:\n" for i, p in enumerate(key.split(".")))[:-1]
                      + " 5\n")
    with pytest.raises(ConfigError) as bad:
        load_params(params, ["train.epochs=3"])
    assert str(bad.value) == f"{params}: {key}: unknown key (did you mean {close}?)"


def test_the_sweep_names_a_bad_override_too():
    typo = r"^--set train.epoch=3: train.epoch: unknown key \(did you mean train.epochs\?\)$"
    with pytest.raises(ConfigError, match=typo):
        load_sweep(PARAMS, ["train.epoch=3"])
    axis = r"^--set sweep.axes.hiden=\[3\]: sweep.axes.hiden: not a key .*did you mean hidden"
    with pytest.raises(ConfigError, match=axis):
        load_sweep(PARAMS, ["sweep.axes.hiden=[3]"])


def test_a_far_fetched_key_suggests_nothing():
    with pytest.raises(ConfigError, match=r"^--set train.zzzzzz=1: train.zzzzzz: unknown key$"):
        load_params(PARAMS, ["train.zzzzzz=1"])


def test_an_error_in_the_file_names_the_file_not_the_overrides(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(f"extends: {PARAMS}\ntrain:\n  lr: -1\n")
    with pytest.raises(ConfigError, match=rf"^{params}: train.lr: Input should be greater than 0"):
        load_params(params, ["train.epochs=3"])
    assert load_params(params, ["train.lr=0.1"]).train.lr == 0.1  # an override may mend the file


def test_names_that_fit_paths_and_stage_names_pass():
    cfg = load_params(PARAMS, ['data.regimes.momentum_2={"kind": "ar1", "rho": 0.4}', 'models.Wide2={"hidden": 9}'])
    assert ("momentum_2", "Wide2") in cfg.cells


# ------------------------------------------------------------------ the `stage` front door (what dvc.yaml runs)
def _stage(tmp_path: Path, capsys, *args: str, params: Path = PARAMS) -> tuple[int, str]:
    ws = tmp_path / "ws"
    rc = main(["stage", *args, "--params", str(params), "--workspace", str(ws)])
    captured = capsys.readouterr()
    assert not ws.exists(), "the stage touched its workspace before refusing"
    assert captured.out == "" and captured.err.count("\n") == 1, captured.err
    return rc, captured.err.removeprefix("neural-trader: error: ").rstrip("\n")


@pytest.mark.parametrize("override, expected", [
    ("train.lr=-1", "train.lr: Input should be greater than 0, got -1 (allowed: > 0 and <= 10)"),
    ("data.lag=20", "data.lag: must be < data.length (20), got 20"),
    ("train.epochs", "expected key.path=value"),
    ("train.epoch=5", "train.epoch: unknown key (did you mean train.epochs?)"),
])
def test_stage_refuses_a_bad_parameter_before_any_work(tmp_path, capsys, override, expected):
    rc, line = _stage(tmp_path, capsys, "train", "--regime", "random", "--model", "base", "--set", override)
    assert (rc, line) == (2, f"--set {override}: {expected}")


def test_stage_refuses_a_broken_params_file(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS.read_text().replace("  lag: 4 ", "  lag: [4 ", 1))
    rc, line = _stage(tmp_path, capsys, "window", "--regime", "random", params=params)
    assert rc == 2 and line.startswith(f"{params}: not valid YAML at line "), line


@pytest.mark.parametrize("args, expected", [
    (("trian",), "unknown stage 'trian'; one of generate, window, train"),
    (("train", "--regime", "random"), "stage train needs --model, one of base, dropout; got None"),
    (("train", "--regime", "momentum_x", "--model", "base"),
     "stage train needs --regime, one of random, momentum; got 'momentum_x'"),
    (("market_train", "--market", "sp500", "--model", "nope"),
     "stage market_train needs --model, one of base, dropout, linear; got 'nope'"),
])
def test_stage_refuses_an_unknown_stage_or_item(tmp_path, capsys, args, expected):
    rc, line = _stage(tmp_path, capsys, *args)
    assert rc == 2 and line.startswith(expected), line


def test_an_overlay_extends_a_params_file_key_by_key(tmp_path):
    """`extends:` reads the named file (relative to the overlay), then merges the overlay's keys over it."""
    powered = load_params(ROOT / "params" / "powered.yaml")
    default = load_params(ROOT / "params.yaml")
    assert powered.seeds.count == 1152 and powered.seeds.count % 16 == 0
    assert powered.markets.regimes == {}  # an empty mapping clears
    assert powered.model_dump(exclude={"seeds", "markets"}) == default.model_dump(exclude={"seeds", "markets"})
    assert powered.seeds.base == default.seeds.base
    (tmp_path / "deep").mkdir()
    (tmp_path / "deep" / "o.yaml").write_text(f"extends: {ROOT / 'params.yaml'}\ntrain:\n  lr: 0.02\n")
    over = load_params(tmp_path / "deep" / "o.yaml", ["train.epochs=3"])
    assert (over.train.lr, over.train.epochs, over.train.batch_size) == (0.02, 3, default.train.batch_size)


@pytest.mark.parametrize("text,expected", [
    ("extends: 3\n", "extends: expected the path of a params file, got 3"),
    ("extends: o.yaml\n", "extends: a params file cannot extend itself"),
    ("extends: missing.yaml\n", "missing.yaml: params file not found"),
    ("extends: base.yaml\ntrain:\n  lr: -1\n", "train.lr: Input should be greater than 0"),
])
def test_a_bad_overlay_names_the_file_and_the_key(tmp_path, text, expected):
    (tmp_path / "base.yaml").write_text((ROOT / "params.yaml").read_text())
    (tmp_path / "o.yaml").write_text(text)
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(")):
        load_params(tmp_path / "o.yaml")
