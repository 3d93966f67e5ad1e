"""Seed shards: a cell trained as N shards of its seeds, joined, is byte for byte the cell trained in one batch.

Stage level, no Prefect: the flow's shard tasks call these same functions
(tests/flows/test_sweep_flow.py runs them on a real Dask cluster).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from neural_trader.config import ConfigError
from neural_trader.seeding import SHARD_ALIGN, max_shards, shard_names, shard_range
from stages.catalog import Workspace, load_params, read_json
from stages.registry import FLOW_STAGES, STAGES, stage_key
from stages.run import run_stage

#: three shards of 16, 16 and 8 replicas, and dropout (masks drawn per replica)
SHARDED = ["seeds.count=40", "runtime.seed_shards=3", "data.n_train=120", "data.n_valid=30", "data.n_test=40",
           "train.epochs=4", "models.dropout.dropout=0.3"]


@given(count=st.integers(1, 1000), data=st.data())
def test_shards_cover_every_replica_once_in_order_on_aligned_boundaries(count, data):
    shards = data.draw(st.integers(1, max_shards(count)))
    ranges = [shard_range(count, name) for name in shard_names(shards)]
    assert ranges[0][0] == 0 and ranges[-1][1] == count
    assert all(a[1] == b[0] and a[1] % SHARD_ALIGN == 0 for a, b in zip(ranges, ranges[1:]))
    blocks = [-(-(hi - lo) // SHARD_ALIGN) for lo, hi in ranges]  # started blocks of 16 per shard
    assert min(blocks) >= 1 and max(blocks) - min(blocks) <= 1


@pytest.mark.parametrize("bad", ["0of2", "3of2", "2of9", "2-of-3", "of", "1of0", "1of3"])
def test_a_bad_shard_name_is_refused(bad):
    with pytest.raises(ValueError, match="KofN"):
        shard_range(32, bad)  # at most two shards of 16


def test_more_shards_than_blocks_of_seeds_fails_naming_the_key(shrunk_params):
    load_params(shrunk_params, ["seeds.count=17", "runtime.seed_shards=2"])
    with pytest.raises(ConfigError, match=r"runtime.seed_shards: must be <= 2 \(seeds.count 32 in shards of 16 "):
        load_params(shrunk_params, ["seeds.count=32", "runtime.seed_shards=3"])


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".nt" not in p.parts}


def test_three_uneven_shards_joined_are_one_batchs_bytes(shrunk_params, tmp_path):
    cfg = load_params(shrunk_params, SHARDED)
    one, sharded = tmp_path / "one", tmp_path / "sharded"
    for ws in (one, sharded):
        for name in ("generate", "window"):
            for item in STAGES[name].grid(cfg):
                run_stage(name, cfg, ws, **item)
    cells = [{"regime": r, "model": m} for r, m in cfg.cells]
    for cell in cells:
        run_stage("train", cfg, one, **cell)
    assert FLOW_STAGES["train_shard"].grid(cfg) == [{**c, "shard": k} for c in cells for k in ("1of3", "2of3", "3of3")]
    for item in FLOW_STAGES["train_shard"].grid(cfg):
        shard = run_stage("train_shard", cfg, sharded, **item)
        assert shard["replicas"] == list(shard_range(40, item["shard"])) and not shard["reused"]
    for cell in cells:
        joined = run_stage("train", cfg, sharded, from_shards=True, **cell)
        assert joined["shards"] == 3 and joined["replicas"] == 40
    assert _files(one) == _files(sharded) and any(k.startswith("models/") for k in _files(one))
    for cell in cells:  # train's own stamp, whichever way the cell was trained
        stamps = [read_json(ws / ".nt" / "stamps" / f"train@{cell['regime']}-{cell['model']}.json") for ws in (one, sharded)]
        assert [s["key"] for s in stamps] == [stage_key("train", cfg, Workspace(ws), cell) for ws in (one, sharded)]
        assert stamps[0]["outputs"] == stamps[1]["outputs"]
        # up to date now: a shard of a trained cell does not train, nor does the join
        again = run_stage("train_shard", cfg, one, **cell, shard="2of3")
        assert again == {**cell, "shard": "2of3", "part_of": f"train@{cell['regime']}-{cell['model']}", "reused": True}
        assert run_stage("train", cfg, sharded, from_shards=True, **cell)["reused"]


def test_a_shard_that_finished_is_kept_when_another_is_missing(shrunk_params, tmp_path):
    cfg = load_params(shrunk_params, SHARDED)
    for name in ("generate", "window"):
        for item in STAGES[name].grid(cfg):
            run_stage(name, cfg, tmp_path, **item)
    cell = {"regime": "momentum", "model": "dropout"}
    first = run_stage("train_shard", cfg, tmp_path, **cell, shard="1of3")
    with pytest.raises(FileNotFoundError, match=r"missing .nt/shards/momentum-dropout/2of3, .*3of3"):  # never ran
        run_stage("train", cfg, tmp_path, from_shards=True, **cell)
    assert not (tmp_path / ".nt" / "stamps" / "train@momentum-dropout.json").exists()
    assert run_stage("train_shard", cfg, tmp_path, **cell, shard="1of3") == {**first, "reused": True}
    for shard in ("2of3", "3of3"):
        assert not run_stage("train_shard", cfg, tmp_path, **cell, shard=shard)["reused"]
    assert not run_stage("train", cfg, tmp_path, from_shards=True, **cell)["reused"]


def test_replica_blocks_within_a_memory_budget_are_one_batchs_bytes(shrunk_params, tmp_path):
    """runtime.max_batch_bytes small enough for 16 replicas a block: 40 replicas train and evaluate as 16 + 16 + 8."""
    from neural_trader.memory import evaluation_bytes, trainer_bytes

    cfg = load_params(shrunk_params, SHARDED[:1] + SHARDED[2:])
    d = cfg.data
    per_replica = max(max(trainer_bytes(shape), evaluation_bytes(d.n_test * (d.length - d.lag), shape.rows, d.lag,
                                                                  shape.hidden)) for shape in cfg.train_shapes())
    blocked = load_params(shrunk_params, SHARDED[:1] + SHARDED[2:] + [f"runtime.max_batch_bytes={16 * per_replica}"])
    one, blocks = tmp_path / "one", tmp_path / "blocks"
    for ws, c in ((one, cfg), (blocks, blocked)):
        for name in ("generate", "window"):
            for item in STAGES[name].grid(c):
                run_stage(name, c, ws, **item)
        for r, m in c.cells:
            trained = run_stage("train", c, ws, regime=r, model=m)
            evaluated = run_stage("evaluate", c, ws, regime=r, model=m)
            if c is blocked:  # at least 16 a block, less than 40, on 16-replica boundaries
                assert trained["blocks"] in (2, 3) and evaluated["blocks"] in (2, 3), (trained, evaluated)
            else:
                assert trained["blocks"] == evaluated["blocks"] == 1
    files = _files(one)
    assert files == _files(blocks) and any(k.startswith("models/") for k in files)
    assert sum(k.startswith("metrics/eval") for k in files) == 4, sorted(files)


def test_a_budget_too_small_for_one_block_fails_before_any_work_naming_the_key(shrunk_params, tmp_path):
    from neural_trader.memory import evaluation_bytes, trainer_bytes

    cfg = load_params(shrunk_params, ["seeds.count=40"])
    d = cfg.data
    needed = 16 * max(max(trainer_bytes(shape), evaluation_bytes(d.n_test * (d.length - d.lag), shape.rows, d.lag,
                                                                  shape.hidden)) for shape in cfg.train_shapes())
    load_params(shrunk_params, ["seeds.count=40", f"runtime.max_batch_bytes={needed}"])  # just fits
    with pytest.raises(ConfigError, match=rf"runtime.max_batch_bytes: a block of 16 replicas needs .* at least {needed} "):
        load_params(shrunk_params, ["seeds.count=40", f"runtime.max_batch_bytes={needed - 1}"])
    with pytest.raises(ConfigError, match=r"runtime.max_batch_bytes: expected a byte count .* got '2 parsecs'"):
        load_params(shrunk_params, ["runtime.max_batch_bytes=2 parsecs"])
    assert load_params(shrunk_params, ["runtime.max_batch_bytes=1.5GiB"]).runtime.max_batch_bytes == 3 * 2**29


def test_more_seeds_train_only_the_new_replicas_and_keep_the_old_bytes(shrunk_params, tmp_path):
    """32 seeds, then 48 in the same workspace: the train stage reruns (its key holds the count) but trains only
    replicas 32-47, reading 0-31 back from .nt/blocks; those 32 rows are the 32-seed run's bytes."""
    from stages.catalog import load_tensors

    def run(count: int) -> tuple:
        cfg = load_params(shrunk_params, [f"seeds.count={count}", "train.epochs=4", "models.dropout.dropout=0.3"])
        for name in ("generate", "window"):
            for item in STAGES[name].grid(cfg):
                run_stage(name, cfg, tmp_path, **item)
        ws = Workspace(tmp_path)
        trained = run_stage("train", cfg, tmp_path, regime="momentum", model="dropout")
        weights = {which: load_tensors(ws.weights("momentum-dropout", which)) for which in ("last", "best")}
        history = load_tensors(ws.model_dir("momentum-dropout") / "history.safetensors")["values"]
        return trained, weights, history

    small, small_weights, small_history = run(32)
    assert (small["trained_replicas"], small["reused_replicas"], small["reused"]) == (32, 0, False)
    large, large_weights, large_history = run(48)
    assert (large["trained_replicas"], large["reused_replicas"], large["reused"]) == (16, 32, False)
    assert large_history.shape[0] == 48 and torch.equal(large_history[:32], small_history)
    for which, tensors in small_weights.items():
        for k, v in tensors.items():
            assert torch.equal(large_weights[which][k][:32], v), (which, k)
    # and the 48 are what a fresh 48-seed run trains
    fresh = tmp_path / "fresh"
    cfg = load_params(shrunk_params, ["seeds.count=48", "train.epochs=4", "models.dropout.dropout=0.3"])
    for name in ("generate", "window"):
        for item in STAGES[name].grid(cfg):
            run_stage(name, cfg, fresh, **item)
    assert run_stage("train", cfg, fresh, regime="momentum", model="dropout")["trained_replicas"] == 48
    assert torch.equal(load_tensors(Workspace(fresh).model_dir("momentum-dropout") / "history.safetensors")["values"],
                       large_history)
