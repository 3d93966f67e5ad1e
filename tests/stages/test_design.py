"""The design the contrasts rest on, checked on what the stages really draw and train.

- Each replica's test draw is its own: no row of it appears in that replica's
  train or validation draw, nor in another replica's test draw (a generator
  key that missed the split or the replica would repeat rows).
- Replica r of every variant of a regime (a market) starts from the same
  weights, sees the same data and starts its shuffles from the same generator
  state: contrasts pair by replica. The trainer is observed, not replaced: a
  spy records what the stage hands to `train_trader`, then calls it.
- The same scheduled slot gives the same seeds, in any process; two slots never share them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
import torch

from stages import market as market_stages
from stages import study as study_stages
from stages.catalog import Workspace, file_digest, load_params, load_tensors
from stages.reruns import slot_base_seed, slot_id
from stages.run import run_stage
from tests.conftest import ROOT

SPLITS = ("train", "valid", "test")


def _rows(t: torch.Tensor) -> set[bytes]:
    """The rows of a (n, T) tensor, as bytes."""
    return {row.numpy().tobytes() for row in t}


@pytest.mark.parametrize("regime", ["random", "momentum"])
def test_each_replica_draws_its_own_test_set(shrunk_cfg, tmp_path, regime):
    run_stage("generate", shrunk_cfg, tmp_path, regime=regime)
    draws = load_tensors(Workspace(tmp_path).returns(regime))  # {split: (S, n, T)}
    rows = {(split, r): _rows(draws[split][r]) for split in SPLITS for r in range(shrunk_cfg.seeds.count)}
    assert all(len(v) == len(draws[split][0]) for (split, _), v in rows.items())  # no row twice within a draw
    for r in range(shrunk_cfg.seeds.count):
        test = rows[("test", r)]
        assert test.isdisjoint(rows[("train", r)]) and test.isdisjoint(rows[("valid", r)]), r
        for other in range(shrunk_cfg.seeds.count):
            if other != r:
                assert test.isdisjoint(rows[("test", other)]), (r, other)
                assert rows[("train", r)].isdisjoint(rows[("train", other)]), (r, other)


class _Spy:
    """Records what a stage hands to `train_trader` (initial weights, data, stream seeds), then trains."""

    def __init__(self, real):
        self.real, self.calls = real, []

    def __call__(self, net, train, valid, streams, **kwargs):
        self.calls.append({
            "init": {k: v.detach().clone() for k, v in net.state_dict().items()},
            "data": [t.clone() for t in (train.x, train.y, valid.x, valid.y)],
            "seeds": list(streams.seeds.unbind()),
        })
        return self.real(net, train, valid, streams, **kwargs)


def _same(a: list[torch.Tensor] | dict, b) -> bool:
    pairs = zip(a.values(), b.values()) if isinstance(a, dict) else zip(a, b)
    return all(torch.equal(x, y) for x, y in pairs)


def _paired(first: dict, second: dict, replicas: int, weights: bool = True) -> None:
    """Replica r of `first` and `second` share data, weights and stream seed; distinct replicas do not."""
    assert _same(first["data"], second["data"])
    assert _same(first["seeds"], second["seeds"])
    if weights:
        assert first["init"].keys() == second["init"].keys() and _same(first["init"], second["init"])
    for r in range(replicas):
        for other in range(r + 1, replicas):
            assert not torch.equal(first["seeds"][r], first["seeds"][other]), (r, other)
            for name, w in first["init"].items():
                assert not torch.equal(w[r], w[other]), (name, r, other)


def test_replica_r_of_every_variant_starts_from_the_same_weights_on_the_same_data(shrunk_params, tmp_path,
                                                                                    monkeypatch):
    cfg = load_params(shrunk_params, ["train.epochs=1"])
    spy = _Spy(study_stages.train_trader)
    monkeypatch.setattr(study_stages, "train_trader", spy)
    for stage in ("generate", "window"):
        run_stage(stage, cfg, tmp_path, regime="momentum")
    for model in ("base", "dropout"):
        run_stage("train", cfg, tmp_path, regime="momentum", model=model)
    base, dropout = spy.calls
    _paired(base, dropout, cfg.seeds.count)


def test_market_seeds_pair_the_variants_on_every_fold(shrunk_params, tmp_path, monkeypatch):
    cfg = load_params(shrunk_params, ["train.epochs=1"])
    spy = _Spy(market_stages.train_trader)
    monkeypatch.setattr(market_stages, "train_trader", spy)
    run_stage("market_data", cfg, tmp_path, market="sp500")
    for model in ("base", "dropout", "linear"):
        run_stage("market_train", cfg, tmp_path, market="sp500", model=model)
    calls = dict(zip(("base", "dropout", "linear"), spy.calls))  # one group of folds: a rolling scheme
    replicas = len(calls["base"]["seeds"])  # folds x seeds
    assert replicas > cfg.seeds.count
    _paired(calls["base"], calls["dropout"], replicas)
    _paired(calls["base"], calls["linear"], replicas, weights=False)  # another architecture, same seeds and data


# ------------------------------------------------------------------ scheduled slots
SLOT = "20261128T0200Z"


def test_the_same_slot_gives_the_same_seeds_in_any_process():
    code = f"from stages.reruns import slot_base_seed; print(slot_base_seed({SLOT!r}))"
    fresh = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                           env={**os.environ, "PYTHONHASHSEED": "random"})
    assert fresh.returncode == 0, fresh.stderr
    assert int(fresh.stdout) == slot_base_seed(SLOT)
    paris = datetime(2026, 11, 28, 3, 0, tzinfo=ZoneInfo("Europe/Paris"))  # the same instant, another zone
    assert slot_id(paris) == slot_id(datetime(2026, 11, 28, 2, 0, tzinfo=UTC)) == SLOT
    slots = [f"202611{d:02d}T0200Z" for d in range(1, 29)] + ["20261128T0201Z", "20261128T1400Z", "20251128T0200Z"]
    assert len({slot_base_seed(s) for s in slots}) == len(slots)  # another day, minute, hour or year: other seeds


def test_a_slot_reproduces_its_draws_and_another_slot_does_not(shrunk_params, tmp_path):
    def drawn(slot: str, folder: str) -> str:
        cfg = load_params(shrunk_params, [f"seeds.base={slot_base_seed(slot)}"])
        run_stage("generate", cfg, tmp_path / folder, regime="momentum")
        return file_digest(Workspace(tmp_path / folder).returns("momentum"))

    assert drawn(SLOT, "a") == drawn(SLOT, "b") != drawn("20261129T0200Z", "c")
