"""What the Prefect UI is given of a shrunk study's reports: figures inlined and small, tables that fit its column.

The artifacts are built from the files the stages wrote, as the publishing
tasks build them (`tasks.stages`); the flow test reads them back from a real
server. The report files themselves keep their relative figure links.
"""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
import yaml
from PIL import Image

from neural_trader.artifacts import COLUMN_PX, data_uri, inline_figures, shrink_png, table_widths
from neural_trader.markets.publish import FIGURES as MARKET_FIGURES
from neural_trader.markets.publish import market_artifact
from neural_trader.synthetic.comparison import FIGURES
from neural_trader.synthetic.report import comparison_artifact, verdicts_artifact
from stages.catalog import Workspace, load_params, read_json
from tests.conftest import ROOT, SHRUNK, _merge, run_study_stages

_URI = re.compile(r"!\[(\w+)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """(cfg, workspace) after the shrunk study's stages, markets included."""
    root = tmp_path_factory.mktemp("artifacts")
    (root / "params.yaml").write_text(yaml.safe_dump(_merge(yaml.safe_load((ROOT / "params.yaml").read_text()),
                                                            SHRUNK)))
    cfg = load_params(root / "params.yaml")
    ws = Workspace(root / "ws")
    run_study_stages(cfg, ws.root)
    return cfg, ws


def _images(markdown: str) -> dict[str, Image.Image]:
    return {name: Image.open(io.BytesIO(base64.b64decode(data))) for name, data in _URI.findall(markdown)}


def test_shrink_png_keeps_the_picture_in_a_palette_and_fewer_bytes(study):
    _, ws = study
    png = (ws.comparison_plots / "learned_position.png").read_bytes()
    small = shrink_png(png)
    assert small == shrink_png(png) and len(small) < len(png) / 2  # deterministic, and worth it
    with Image.open(io.BytesIO(png)) as before, Image.open(io.BytesIO(small)) as after:
        assert after.format == "PNG" and after.mode == "P" and after.size == before.size
        error = np.abs(np.asarray(before.convert("RGB"), dtype=int) - np.asarray(after.convert("RGB"), dtype=int))
    assert error.mean() < 0.5 and np.quantile(error, 0.999) <= 16, (error.mean(), np.quantile(error, 0.999))
    assert data_uri(small) == "data:image/png;base64," + base64.b64encode(small).decode()


def test_the_comparison_artifact_is_the_report_whole_and_narrow(study):
    cfg, ws = study
    comparison = read_json(ws.comparison_json)
    report = ws.comparison_report.read_text()
    artifact = comparison_artifact(cfg, comparison, inline_figures(
        {f: (ws.comparison_plots / f"{f}.png").read_bytes() for f in FIGURES}))
    images = _images(artifact)
    assert list(images) == list(FIGURES) and "../plots" not in artifact
    for name, image in images.items():  # the figure itself, at its own size
        with Image.open(ws.comparison_plots / f"{name}.png") as original:
            assert image.size == original.size
    assert all(f"](../plots/comparison/{f}.png)" in report for f in FIGURES)  # the file keeps its links
    assert max(table_widths(report.splitlines())) > COLUMN_PX  # the report's tables would not fit the UI ...
    assert max(table_widths(artifact.splitlines())) <= COLUMN_PX  # ... the artifact's do
    for c in comparison["contrasts"]:
        assert c["verdict"] in artifact and f"| {c['name']} |" in artifact and f"| {c['name']} |" in report
    for x in comparison["cells"]:  # the headline row: test return and gap with their CIs, as the report writes them
        t, g = (f"{x[m]['mean']:.4f} ({x[m]['ci_lo']:.4f} to {x[m]['ci_hi']:.4f})" for m in ("test_return", "gap"))
        assert re.search(rf"\| {x['regime']}-{x['model']} \| {re.escape(t)} \| [^|]+ \| {re.escape(g)} \|", artifact)
        assert t in report and g in report
    assert len(artifact.encode()) < 400_000


def test_the_verdicts_artifact_is_rounded_with_its_sentences_below(study):
    _, ws = study
    comparison = read_json(ws.comparison_json)
    text = verdicts_artifact(comparison)
    table, _, below = text.partition("\n\n")
    rows = table.splitlines()[2:]
    assert len(rows) == len(comparison["contrasts"]) and max(table_widths(text.splitlines())) <= COLUMN_PX
    assert not re.search(r"\d\.\d{5,}", table)  # rounded as the report rounds: no 0.07726566361976565
    for row, c in zip(rows, comparison["contrasts"]):
        cells = [x.strip() for x in row.strip("|").split("|")]
        assert cells[0] == c["name"] and " / " in c["name"] and "|" not in c["name"]
        assert cells[-1] == c["state"]  # a word in the table ...
    assert [f"- {c['verdict']}" for c in comparison["contrasts"]] == \
        [ln for ln in below.splitlines() if ln.startswith("- ")]  # ... the sentences below it


def test_the_markets_artifact_splits_its_table_and_inlines_its_figures(study):
    _, ws = study
    markets = read_json(ws.markets_json)
    report = ws.markets_report.read_text()
    for market, result in markets.items():
        artifact = market_artifact(market, result, inline_figures(
            {f: ws.market_plot(market, f).read_bytes() for f in MARKET_FIGURES}))
        assert list(_images(artifact)) == list(MARKET_FIGURES) and "../plots" not in artifact
        assert max(table_widths(artifact.splitlines())) <= COLUMN_PX < max(table_widths(report.splitlines()))
        assert all(v in artifact for v in result["verdicts"])
        for strategy, row in {**result["variants"], **result["baselines"]}.items():
            lo, hi = row["sharpe_net_ci"]
            sharpe = f"{row['sharpe_net']:.2f} ({lo:.2f} to {hi:.2f})"
            assert f"| {strategy} | {row['net']['ann_return']:+.1%} | {sharpe} |" in artifact
            if row["break_even_bps"] is None:  # the note under the table, not in a cell
                assert f"- {strategy}: {row['break_even_note']}" in artifact


def test_table_widths_add_the_widest_cells_and_their_padding():
    lines = ["text", "| cell | test return |", "|---|---|", "| momentum-base | 0.1 |", "", "| a |", "|---|"]
    assert table_widths(lines) == pytest.approx([4.8 * (13 + 11) + 2 * 60, 4.8 + 60])
