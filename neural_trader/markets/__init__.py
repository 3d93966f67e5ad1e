"""The markets study: real closes, walk-forward folds, costs, the stationary bootstrap and SPA.

Modules: `config` (sections markets and costs), `prices` (reading and checking closes), `sources`
(kinds of market), `folds` (walk-forward), `data` (a market's series and folds), `backtest`, `stats`, `report`.
"""
