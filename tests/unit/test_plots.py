"""Figures drawn from threads (stage tasks run in a thread pool) are the figures drawn alone."""

from concurrent.futures import ThreadPoolExecutor

from neural_trader.plots import ForestRow, forest_png


def _contrasts(shift: float) -> bytes:
    """A forest plot at the scale of 1e-4, so its tick labels go through matplotlib's mathtext parser."""
    rows = [ForestRow("on random", -2e-4 + shift, -5e-4 + shift, 1e-4 + shift, "undecided", "undecided, p 0.48"),
            ForestRow("on momentum", 1e-4, -2e-4, 4e-4, "significant", "significant, p 0.01")]
    return forest_png({"dropout - base": rows}, title="contrasts", margins={"dropout - base": 1e-4})


def test_figures_drawn_in_threads_equal_figures_drawn_alone():
    shifts = [k * 1e-5 for k in range(4)]
    alone = {s: _contrasts(s) for s in shifts}
    with ThreadPoolExecutor(max_workers=8) as pool:
        drawn = list(pool.map(_contrasts, shifts * 6))
    assert drawn == [alone[s] for s in shifts * 6]
