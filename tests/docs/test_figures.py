"""The numbers the docs state are what the code gives: one `make run` time with its machine, the stage counts
of docs/dvc.md against what DVC expands dvc.yaml to, and the warm-ups table against the warm-up stages' reports.
"""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT
from tests.docs.markdown import DOCS, parse, prose, rel

_TIME = r"(\d+(?:\.\d+)?)(?:-\d+(?:\.\d+)?)? s\b"


def _make_run_times() -> list[tuple[str, str, str]]:
    """(doc, figure, statement) for every time the docs give for `make run`."""
    found = []
    for doc in DOCS:
        text = re.sub(r"\s+", " ", re.sub(r"^\|.*$", "", parse(doc)[1], flags=re.M))  # rows: below
        for m in re.finditer(r"`make run`", text):
            sentence = re.split(r"(?<=[.!?])\s", text[m.start():], maxsplit=1)[0]
            if t := re.search(rf"\b(?:takes|took|ran in|runs in)\s+(?:about\s+)?{_TIME}", sentence):
                found.append((rel(doc), t[1], sentence))
        for row in re.findall(r"^\|(.*)\|\s*$", parse(doc)[1], flags=re.M):
            cells = [c.strip() for c in row.split("|")]
            if "`make run`" in cells[0] and (t := re.search(_TIME, " ".join(cells[1:]))):
                found.append((rel(doc), t[1], row))
    return found


def test_make_run_time_is_stated_once_with_its_machine():
    """Every figure for `make run` is the same measurement, and says on what machine."""
    found = _make_run_times()
    assert "docs/speed.md" in {doc for doc, _, _ in found}, found
    assert len({figure for _, figure, _ in found}) == 1, f"`make run` times disagree: {found}"
    for doc, _, statement in found:
        assert re.search(r"\d+-core", statement), f"{doc}: a `make run` time without its machine: {statement!r}"


def _dvc_stages() -> list[tuple[str, set[str], set[str], set[str]]]:
    """(name, params keys, file deps, outs) of every stage of dvc.yaml as DVC expands it on params.yaml."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        return [(s.name, {k for d in s.deps if isinstance(d, ParamsDependency) for k in d.params},
                 {d.def_path for d in s.deps if not isinstance(d, ParamsDependency)}, {o.def_path for o in s.outs})
                for s in repo.index.stages]


def _reruns_after(key: str) -> list[str]:
    """The stages `dvc repro` reruns after a change of `key`: those reading it, and all downstream of them."""
    stages = _dvc_stages()
    dirty = {name for name, params, _, _ in stages if any(key == k or key.startswith(k + ".") for k in params)}
    while True:
        outs = {o for name, _, _, produced in stages if name in dirty for o in produced}
        more = {name for name, _, deps, _ in stages
                if any(o == d or o.startswith(d.rstrip("/") + "/") for d in deps for o in outs)} - dirty
        if not more:
            return sorted(dirty)
        dirty |= more


def _count(text: str, pattern: str) -> list[int]:
    found = [int(x) for x in re.findall(pattern, text)]
    assert found, f"docs/dvc.md no longer says {pattern!r}: update tests/docs/test_figures.py with it"
    return found


def test_dvc_stage_counts_are_what_dvc_yaml_expands_to():
    """The counts in docs/dvc.md are those of the stages `dvc repro` runs (DVC resolves dvc.yaml in-process).

    Its measured table predates the market stages: its counts are held to the synthetic study and the warm-ups.
    """
    from stages.registry import WARMUPS

    text = prose(ROOT / "docs" / "dvc.md")
    stages = [name for name, *_ in _dvc_stages()]
    warmups = sum(1 for name in stages if name.split("_")[0] in WARMUPS)
    markets = sum(1 for name in stages if name.startswith("market_"))
    study = len(stages) - warmups - markets
    rho, dropout = _reruns_after("data.regimes.momentum.rho"), _reruns_after("models.dropout.dropout")
    assert all("momentum" in name for name in rho if name != "compare"), rho
    # what the page says of dvc.yaml as it is
    assert set(_count(text, r"dvc\.yaml expands to (\d+) stages")) == {len(stages)}
    assert set(_count(text, r"(\d+) for the synthetic study")) == {study}
    assert set(_count(text, r"(\d+) for the real-prices markets")) == {markets}
    assert set(_count(text, r"the (\d+) warm-up stages")) == {warmups}
    assert set(_count(text, r"momentum\.rho` reruns (\d+)")) == {len(rho)}
    assert set(_count(text, r"\((\d+) momentum stages and compare\)")) == {len(rho) - 1}
    assert set(_count(text, r"dropout=0\.3` reruns (\d+)")) == {len(dropout)}
    assert set(_count(text, r"dropout=0\.3`: (\d+) stages")) == {len(dropout)}
    assert set(_count(text, r"0\.2 → 0\.3: (\d+) stages")) == {len(rho)}
    # the measured table: the synthetic study and the warm-ups
    assert set(_count(text, r"when dvc\.yaml had (\d+) stages")) == {study + warmups}
    assert set(_count(text, r"default params, (\d+) stages \(cold\)")) == {study + warmups}
    assert set(_count(text, r"then `dvc repro`: (\d+) stages")) == {study + warmups}
    assert set(_count(text, r"(\d+) tasks, all stamp hits")) == {study}
    assert set(_count(text, r"\((\d+) tasks computed")) == {study}
    assert set(_count(text, r"all (\d+) study stages")) == {study}


@pytest.fixture(scope="module")
def warmup_reports(tmp_path_factory):
    """The eight warm-up stages on the params.yaml defaults (a few seconds), in a temporary workspace."""
    import torch

    from stages.catalog import Workspace, load_params, read_json
    from stages.registry import WARMUPS
    from stages.run import run_stage

    threads = torch.get_num_threads()
    cfg, ws = load_params(ROOT / "params.yaml"), Workspace(tmp_path_factory.mktemp("warmups"))
    try:
        for exp in WARMUPS:
            for step in ("generate", "train", "evaluate"):
                run_stage(f"{exp}_{step}", cfg, ws)
    finally:
        torch.set_num_threads(threads)  # the stages set runtime.torch_threads process-wide
    return ws, {exp: read_json(ws.warmup_report(exp)) for exp in WARMUPS}


def test_warmups_table_holds_the_measured_numbers(warmup_reports):
    ws, reports = warmup_reports
    text = (ROOT / "docs" / "warmups.md").read_text()
    reg, cls = reports["regression"], reports["classifier"]
    for name in ("beta0", "beta1", "sigma"):
        assert f"| {name} | {reg[name]:.4f} | {reg[name + '_true']:g} |" in text, name
    assert (f"| test accuracy | {cls['accuracy']:.4f} | {cls['bayes']:.4f} (simulated, se {cls['bayes_se']:.4f}; "
            f"quadrature {cls['bayes_exact']:.4f}) |") in text
    header, *rows = ws.warmup_history("classifier").read_text().splitlines()
    last = dict(zip(header.split("\t"), rows[-1].split("\t")))
    assert f"training batches ({float(last['accuracy']):.2f})" in re.sub(r"\s+", " ", text)


def test_documented_numbers_are_the_measured_ones(warmup_reports):
    _, reports = warmup_reports
    text = (ROOT / "docs" / "warmups.md").read_text()
    reg, cls = reports["regression"], reports["classifier"]
    for name in ("beta0", "beta1", "sigma"):
        assert f"| {name} | {reg[name]:.4f} |" in text
    assert f"| test accuracy | {cls['accuracy']:.4f} | {cls['bayes']:.4f} " in text
