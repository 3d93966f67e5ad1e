"""Flow-run names: what tells two runs apart in the UI's runs list."""

from __future__ import annotations

from flows.names import run_name


def test_a_run_is_named_after_its_flow_workspace_and_overrides(tmp_path):
    ws = tmp_path / "default"
    assert run_name("study", str(ws)) == "study ws=default"
    assert run_name("study", str(ws), ["seeds.count=8"], "rerun=20261101T0200Z") == \
        "study ws=default seeds.count=8 rerun=20261101T0200Z"
    assert run_name("sweep", str(ws), ['sweep.axes={"hidden":  [5,\n 32]}']) == \
        'sweep ws=default sweep.axes={"hidden": [5, 32]}'  # one line, single spaces
    long = run_name("study", str(ws), ["x=" + "y" * 300])
    assert len(long) == 120 and long.endswith("...")
