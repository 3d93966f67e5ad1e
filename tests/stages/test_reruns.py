"""`neural-trader reruns list | compare | pool` on a workspace holding two reruns, and its refusals.

The reruns are built through the stage layer the nightly flow runs (each
slot's seeds from `slot_base_seed`, its study in reruns/<slot>/, its entry in
the ledger), on shrunk params without the markets, so the module takes seconds;
tests/integration/test_deployments.py makes reruns through the real deployment and worker.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from flows.cli import main
from stages.catalog import load_params, read_json
from stages.reruns import record_rerun, rerun_root, slot_base_seed
from tests.conftest import ROOT, SHRUNK, _merge, run_study_stages

SLOTS = ("20261101T0200Z", "20261102T0200Z")


@pytest.fixture(scope="module")
def reruns(tmp_path_factory) -> Path:
    """A workspace with two recorded reruns (and params.yaml, the design they share)."""
    root = tmp_path_factory.mktemp("reruns")
    raw = _merge(yaml.safe_load((ROOT / "params.yaml").read_text()), SHRUNK)
    raw["markets"]["regimes"] = {}
    raw["train"]["epochs"] = 3
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = load_params(root / "params.yaml")
    for slot in SLOTS:
        slot_cfg = cfg.model_copy(update={"seeds": cfg.seeds.model_copy(update={"base": slot_base_seed(slot)})})
        run_study_stages(slot_cfg, rerun_root(root, slot))
        record_rerun(root, slot, slot_cfg, None)
    return root


def _cli(capsys, root: Path, *args: str) -> tuple[int, str, str]:
    rc = main(["reruns", *args, "--params", str(root / "params.yaml"), "--workspace", str(root)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_list_shows_every_rerun_with_its_seeds(reruns, capsys):
    rc, out, _ = _cli(capsys, reruns, "list")
    lines = out.splitlines()
    assert rc == 0 and [ln.split()[0] for ln in lines] == list(SLOTS)
    for slot, line in zip(SLOTS, lines):
        comparison = read_json(rerun_root(reruns, slot) / "metrics" / "comparison.json")
        assert f"seeds.base={slot_base_seed(slot)}  {comparison['replicas']} seeds" in line
        cell = next(c for c in comparison["cells"] if (c["regime"], c["model"]) == ("momentum", "base"))
        assert f"momentum-base {cell['test_return']['mean']:+.4f}" in line


def test_compare_prints_both_values_and_the_change(reruns, capsys):
    rc, out, _ = _cli(capsys, reruns, "compare", *SLOTS)
    header, *rows = out.splitlines()
    assert rc == 0 and header.split() == ["metric", *SLOTS, "change"]
    entries = {e["slot"]: e for e in json.loads((reruns / "reruns" / "ledger.json").read_text())["reruns"]}
    a, b = (entries[s]["test_return"]["momentum-base"] for s in SLOTS)
    (row,) = [r for r in rows if r.startswith("test_return[momentum-base]")]
    assert [float(v) for v in row.split()[1:]] == pytest.approx([a, b, b - a], abs=1e-5)
    assert len(rows) == 2 * 4 + 6  # test_return and gap of 4 cells, the diff of 6 contrasts


def test_pool_concatenates_the_seeds_of_every_rerun(reruns, capsys):
    rc, out, _ = _cli(capsys, reruns, "pool")
    seeds = SHRUNK["seeds"]["count"]
    assert rc == 0 and out.startswith(f"pooled 2 reruns ({', '.join(SLOTS)}), {2 * seeds} seeds per cell")
    pooled = read_json(reruns / "reruns" / "pooled" / "metrics" / "comparison.json")
    assert (pooled["runs"], pooled["replicas"]) == (2, 2 * seeds)
    assert (reruns / "reruns" / "pooled" / "reports" / "comparison.md").is_file()


@pytest.mark.parametrize("args, expected", [
    (("compare", SLOTS[0]), "reruns compare needs two slots"),
    (("compare", SLOTS[0], "20991231T0200Z"), "no rerun 20991231T0200Z in "),
    (("pool", "--set", "train.epochs=4"), "no rerun of this design in "),  # another design pools nothing
])
def test_refusals_exit_2_with_one_line(reruns, capsys, args, expected):
    rc, out, err = _cli(capsys, reruns, *args)
    assert rc == 2 and out == "" and err.count("\n") == 1 and err.startswith(f"neural-trader: error: {expected}"), err


def test_an_empty_workspace_has_nothing_to_list_or_pool(tmp_path, capsys):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    assert _cli(capsys, tmp_path, "list")[:2] == (0, f"no reruns recorded in {tmp_path / 'reruns' / 'ledger.json'}\n")
    rc, _, err = _cli(capsys, tmp_path, "pool")
    assert rc == 2 and "no rerun of this design" in err
