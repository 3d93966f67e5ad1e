"""The markets' stage bodies: load from the catalog, call the core, save.

market_data -> market_train -> market_evaluate, per market (`markets.regimes`)
or per (market, variant) cell; then market_compare, every market's comparison
(metrics/markets/, reports/markets.md, plots/market/), keyed on the
markets' and costs' params only. Every fold retrains every variant's S seeds; seed s of every
variant with the same architecture starts from the same weights and sees the
same data on every fold, so variants pair by seed on the same days.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neural_trader import plots
from neural_trader.data import Windows, make_generator
from neural_trader.evaluate import CURVE_GRID, position_curve, replica_positions
from neural_trader.markets import report as mr
from neural_trader.markets.data import MarketData, fold_groups, oos_rows
from neural_trader.markets.publish import market_markdown, markets_headline
from neural_trader.memory import TrainShape, batch_budget, replica_blocks, trainer_bytes
from neural_trader.models import LinearTrader, TraderNet
from neural_trader.seeding import seed_from
from neural_trader.markets.sources import make_source
from neural_trader.streams import Streams
from neural_trader.params import StudyConfig
from neural_trader.trader import train_trader
from neural_trader.train import resolve_device

from .catalog import Workspace, atomic_write_bytes, load_tensors, read_json, save_tensors, write_json
from .params import prepared_market
from .progress import bar_label, epoch_bar
from .registry import cell_name

log = logging.getLogger("neural_trader")


def _load(ws: Workspace, market: str) -> MarketData:
    return MarketData.from_arrays({k: v.numpy() for k, v in load_tensors(ws.market_series(market)).items()})


def market_data(cfg: StudyConfig, ws: Workspace, market: str) -> dict[str, Any]:
    """Read the market's closes, and cut its scaled windows and walk-forward folds."""
    source = make_source(cfg.markets.regimes[market])
    series, data = prepared_market(cfg.markets.regimes[market], ws.root, cfg.markets)  # read once a process
    save_tensors(ws.market_series(market), {k: torch.from_numpy(v) for k, v in data.arrays().items()})
    oos = data.t[oos_rows(data)]
    day = lambda i: str(np.datetime64(int(data.dates[i]), "D"))  # noqa: E731  the end day of return i
    summary = {"market": market, "source": source.label(), "prices": len(series), "dropped": series.dropped,
               "first": str(series.dates[0]), "last": str(series.dates[-1]), "folds": len(data.folds),
               "oos_days": int(oos.size), "oos_first": day(oos[0] + 1), "oos_last": day(oos[-1] + 1)}
    write_json(ws.market_summary(market), summary)
    return summary


def _net(cfg: StudyConfig, model: str, generators: list[torch.Generator]) -> torch.nn.Module:
    m, lag = cfg.markets.models[model], cfg.markets.lag
    if m.hidden == 0:
        return LinearTrader(generators, lag=lag)
    return TraderNet(generators, lag=lag, hidden=m.hidden, dropout=m.dropout)


def _replica_keys(cfg: StudyConfig, market: str, purpose: str, folds: tuple[int, ...]) -> list[tuple]:
    """One key per replica (fold-major, seed-minor); it leaves out the variant, so variants pair by seed."""
    return [(cfg.seeds.base, "market", market, purpose, f, s) for f in folds for s in range(cfg.seeds.count)]


def market_train(cfg: StudyConfig, ws: Workspace, market: str, model: str) -> dict[str, Any]:
    """Train S seeds of one variant on every fold; keep each replica's best-validation-epoch weights."""
    mk, cell = cfg.markets, cell_name(market, model)
    dev = resolve_device(cfg.runtime.device)
    torch.set_num_threads(cfg.runtime.torch_threads)
    best, history, start = {}, {}, time.perf_counter()
    groups = fold_groups(_load(ws, market), cfg.seeds.count)
    for i, g in enumerate(groups):
        keys = {purpose: _replica_keys(cfg, market, purpose, g.folds) for purpose in ("init", "train")}
        m = cfg.markets.models[model]
        shape = TrainShape(g.train_x.shape[1], g.valid_x.shape[1], cfg.markets.lag, max(m.hidden, 1), mk.batch_size,
                           m.dropout)
        parts = []
        for lo, hi in replica_blocks(len(keys["init"]), trainer_bytes(shape), batch_budget(cfg.runtime, dev)):
            net = _net(cfg, model, [make_generator(*key) for key in keys["init"][lo:hi]]).to(dev)
            train, valid = (Windows(torch.from_numpy(a[lo:hi]), torch.from_numpy(b[lo:hi])).to(dev)
                            for a, b in ((g.train_x, g.train_y), (g.valid_x, g.valid_y)))
            hist, state = train_trader(net, train, valid, Streams([seed_from(*key) for key in keys["train"][lo:hi]]),
                                       lr=mk.lr, epochs=mk.epochs, batch_size=mk.batch_size,
                                       on_epoch=epoch_bar(cfg.runtime.progress, bar_label(ws, cell)))
            parts.append(({k: v.cpu() for k, v in state.items()}, hist.values))
        best.update({f"{i}.{k}": torch.cat([p[0][k] for p in parts]) for k in parts[0][0]})
        history[f"{i}"] = torch.cat([p[1] for p in parts])
    folds = [list(g.folds) for g in groups]
    meta = {"folds": json.dumps(folds), "seeds": str(cfg.seeds.count)}
    save_tensors(ws.market_model(cell, "best"), best, metadata=meta)
    save_tensors(ws.market_model(cell, "history"), history, metadata=meta)
    seconds = time.perf_counter() - start
    best_epoch = float(np.mean([h[:, :, -1].argmax(dim=1).double().mean() + 1 for h in history.values()]))
    log.info("trained %s: %d folds x %d seeds x %d epochs in %.1f s", cell, sum(map(len, folds)),
             cfg.seeds.count, cfg.markets.epochs, seconds)
    return {"cell": cell, "device": str(dev), "replicas": sum(map(len, folds)) * cfg.seeds.count,
            "epochs": cfg.markets.epochs, "best_epoch_mean": round(best_epoch, 1), "seconds": round(seconds, 2)}


def market_evaluate(cfg: StudyConfig, ws: Workspace, market: str, model: str) -> dict[str, Any]:
    """Every seed's out-of-sample positions, each test segment traded by its own fold's weights."""
    cell, S = cell_name(market, model), cfg.seeds.count
    torch.set_num_threads(cfg.runtime.torch_threads)
    data, weights = _load(ws, market), load_tensors(ws.market_model(cell, "best"))
    positions = torch.empty(S, len(oos_rows(data)))  # (S, n_oos)
    curves = torch.empty(len(data.folds), S, len(CURVE_GRID))  # (F, S, grid)
    offsets = np.cumsum([0, *(data.folds[:, 5] - data.folds[:, 4])])
    for i, g in enumerate(fold_groups(data, S)):
        net = _net(cfg, model, [torch.Generator() for _ in range(len(g.folds) * S)])
        net.load_state_dict({k.split(".", 1)[1]: v for k, v in weights.items() if k.split(".", 1)[0] == str(i)})
        net.eval()
        pos = replica_positions(net, torch.from_numpy(g.test_x)).view(len(g.folds), S, -1)  # (G, S, n_test)
        curve = torch.from_numpy(position_curve(net, cfg.markets.lag, CURVE_GRID, replicas=len(g.folds) * S))
        for j, f in enumerate(g.folds):
            positions[:, offsets[f]:offsets[f + 1]] = pos[j]
            curves[f] = curve.view(len(g.folds), S, -1)[j].float()
    save_tensors(ws.market_eval(cell), {"positions": positions, "curve": curves})
    return {"cell": cell, "oos_days": positions.shape[1], "mean_position": float(positions.mean())}


def market_compare(cfg: StudyConfig, ws: Workspace) -> dict[str, Any]:
    """Every market's out-of-sample comparison: metrics/markets/, reports/markets.md and its figures."""
    result = {m: _compare_market(cfg, ws, m) for m in cfg.markets.regimes}
    report = "".join(market_markdown(m, r, (Path("..") / ws.rel(ws.market_plots(m))).as_posix())
                     for m, r in result.items())
    write_json(ws.markets_json, result)
    write_json(ws.markets_headline, markets_headline(result))
    atomic_write_bytes(ws.markets_report, report.encode())
    return {"market": {m: r["verdicts"] for m, r in result.items()}}


def _compare_market(cfg: StudyConfig, ws: Workspace, market: str) -> dict[str, Any]:
    """One market's section: the out-of-sample comparison, its verdicts and figures."""
    data = _load(ws, market)
    evals = {m: load_tensors(ws.market_eval(cell_name(market, m))) for m in cfg.markets.models}
    positions = {m: e["positions"].double().numpy() for m, e in evals.items()}
    mk = cfg.markets
    net = mr.net_pnl(data, positions, cfg.costs.bps)  # once: the comparison and the figures share it
    result = mr.compare_market(data, positions, net, bps=cfg.costs.bps, reps=mk.reps, seed=mk.bootstrap_seed,
                               confidence=cfg.compare.confidence, alpha=cfg.compare.alpha)
    summary = read_json(ws.market_summary(market))
    result.update(oos_first=summary["oos_first"], oos_last=summary["oos_last"], source=summary["source"],
                  dropped=summary["dropped"])
    result["verdicts"] = mr.market_verdicts(market, result, summary["oos_first"], summary["oos_last"])
    dates, wealth = mr.oos_dates(data), mr.equity(net)
    title = f"{market}, out of sample, net of {cfg.costs.bps:g} bp"
    figures = {
        "equity": plots.equity_png(dates, wealth, title=title, fold_starts=mr.fold_starts(data)),
        "drawdown": plots.drawdown_png(dates, wealth, title=f"{market}: drawdown, net"),
        "learned_position": plots.fold_curves_png(CURVE_GRID, {m: e["curve"].numpy() for m, e in evals.items()},
                                                  title=f"{market}: learned position", folds=mr.fold_periods(data)),
    }
    for name, png in figures.items():
        atomic_write_bytes(ws.market_plot(market, name), png)
    return result
