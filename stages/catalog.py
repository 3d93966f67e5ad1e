"""The catalog: where every file of the study lives, and how it is read and written.

This is the only place that builds a path or reads `params.yaml` (parsed once
per run: the validated config then travels with the run). Writes are
atomic (a temporary file in the same folder, then `os.replace`), so a failed or
interrupted run never leaves a half-written file behind; the file gets the mode a
plain `open()` would give it (0666 less the umask). Tensors are stored as
safetensors and everything else as JSON/TSV/PNG: nothing here unpickles.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .params import check_inputs, load_params, load_sweep, read_params  # the catalog reads params.yaml

log = logging.getLogger("neural_trader")

__all__ = [
    "Workspace",
    "check_inputs",
    "load_sweep",
    "WorkspaceBusy",
    "load_params",
    "read_params",
    "atomic_write_bytes",
    "write_json",
    "read_json",
    "save_tensors",
    "load_tensors",
    "file_digest",
]


class WorkspaceBusy(RuntimeError):
    """Another run holds the workspace."""


# ---------------------------------------------------------------------- atomic io
def _read_umask() -> int:
    """The process umask: from /proc on Linux, else by setting it and back (os.umask only reads by setting)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# read once, at import, before any task thread writes: the umask is process-wide, so setting it in a thread races
FILE_MODE = 0o666 & ~_read_umask()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` through a temporary sibling and a rename."""
    return atomic_write_with(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_with(path: str | Path, write: Callable[[str], object]) -> Path:
    """`write(tmp)` writes a temporary sibling of `path`, which is synced to disk and renamed to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fchmod(fh.fileno(), FILE_MODE)  # mkstemp made it 0600
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, obj: Any) -> Path:
    """Deterministic JSON (sorted keys, fixed float repr) written atomically."""
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, allow_nan=True) + "\n").encode())


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def save_tensors(path: str | Path, tensors: dict[str, Any], metadata: dict[str, Any] | None = None) -> Path:
    """Save CPU tensors as safetensors, atomically; equal inputs give equal bytes.

    The metadata goes in as one JSON string: safetensors writes a map of several
    metadata keys in hash order, which changes from call to call.
    """
    from safetensors.torch import save_file

    data = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = {"meta": json.dumps(metadata, sort_keys=True)} if metadata else None
    # straight to the file: serialising to bytes first would hold a second copy of every tensor in memory
    return atomic_write_with(path, lambda tmp: save_file(data, tmp, metadata=meta))


def load_tensors(path: str | Path, device: str = "cpu") -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path), device=device)


def load_rows(path: str | Path, keys: tuple[str, ...], rows: slice) -> dict[str, Any]:
    """Rows `rows` (along the first axis) of the named tensors of a safetensors file, read alone, on the CPU.

    A block of replicas reads its own rows, not the whole file: a study larger
    than memory keeps one block's data in memory at a time.
    """
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_slice(k)[rows].clone() for k in keys}


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes, or of a folder's files (names and bytes, in order), or 'missing'."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.endswith(".tmp"))
        listing = "".join(f"{p.relative_to(path).as_posix()}\0{file_digest(p)}\n" for p in files)
        return hashlib.sha256(listing.encode()).hexdigest() if files else "missing"
    if not path.is_file():
        return "missing"
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------ layout
@dataclass(frozen=True)
class Workspace:
    """The study's file layout under one root folder (the DVC/git workspace).

    data/generate/<regime>/returns.safetensors     generate
    data/window/<regime>/windows.safetensors       window
    data/market/, models/market/, metrics/market/, plots/market/   the markets (see below)
    models/<regime>-<model>/{last,best}.safetensors   train
    metrics/train/<regime>-<model>/{summary.json,history.tsv}   train
    metrics/evaluate/<regime>-<model>.json         evaluate
    plots/history/<regime>-<model>.png             plot
    metrics/comparison.json, reports/comparison.md, plots/comparison/*.png, metrics/comparison/*.tsv   compare
    .nt/                                           private: stamps, locks, result store,
    .nt/shards/<regime>-<model>/<KofN>/            and seed shards of train (the flow's runtime.seed_shards)
    """

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).resolve())

    def returns(self, regime: str) -> Path:
        return self.root / "data" / "generate" / regime / "returns.safetensors"

    def windows(self, regime: str) -> Path:
        return self.root / "data" / "window" / regime / "windows.safetensors"

    def model_dir(self, cell: str) -> Path:
        return self.root / "models" / cell

    def weights(self, cell: str, which: str = "last") -> Path:
        return self.model_dir(cell) / f"{which}.safetensors"

    def train_metrics(self, cell: str) -> Path:
        return self.root / "metrics" / "train" / cell

    def eval_metrics(self, cell: str) -> Path:
        return self.root / "metrics" / "evaluate" / f"{cell}.json"

    def history_plot(self, cell: str) -> Path:
        return self.root / "plots" / "history" / f"{cell}.png"

    @property
    def comparison_json(self) -> Path:
        return self.root / "metrics" / "comparison.json"

    @property
    def comparison_tables(self) -> Path:
        return self.root / "metrics" / "comparison"

    @property
    def comparison_report(self) -> Path:
        return self.root / "reports" / "comparison.md"

    @property
    def comparison_plots(self) -> Path:
        return self.root / "plots" / "comparison"

    @property
    def private(self) -> Path:
        return self.root / ".nt"

    def seed_shard(self, cell: str, shard: str) -> Path:
        return self.private / "shards" / cell / shard

    def seed_block(self, cell: str, lo: int, hi: int, key: str) -> Path:
        """A trained block of replicas lo..hi-1 of a cell, kept for reuse when seeds.count grows."""
        return self.private / "blocks" / cell / f"{lo:05d}-{hi:05d}-{key}.safetensors"

    def stamp(self, stage: str, item: str) -> Path:
        return self.private / "stamps" / f"{stage}@{item}.json" if item else self.private / "stamps" / f"{stage}.json"

    @contextlib.contextmanager
    def lock(self, what: str = "run", wait: bool = True) -> Iterator[None]:
        """Hold the workspace's lock: runs on one workspace are serialised, never interleaved.

        The lock is an flock on .nt/lock, so the OS frees it when a holder dies:
        a crash never leaves a stale lock behind.
        """
        path = self.private / "lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "another process"
                if not wait:
                    raise WorkspaceBusy(f"{self.root} is busy: {holder}") from None
                log.warning("%s is busy (%s); waiting for it to finish", self.root, holder)
                fcntl.flock(fh, fcntl.LOCK_EX)
            fh.seek(0)
            fh.truncate()
            fh.write(f"{what} pid {os.getpid()}\n")
            fh.flush()
            try:
                yield
            finally:
                fh.seek(0)
                fh.truncate()
                fcntl.flock(fh, fcntl.LOCK_UN)

    def sweep_temporaries(self) -> list[Path]:
        """Delete temporary files a killed writer left behind; call while holding the lock."""
        stale = [p for top in ("data", "models", "metrics", "plots", "reports", "reruns", "sweeps")
                 for p in (self.root / top).rglob(".*.tmp") if p.is_file()]
        for p in stale:
            p.unlink(missing_ok=True)
        if stale:
            log.info("removed %d temporary file(s) left by an interrupted run", len(stale))
        return stale

    def rel(self, path: Path) -> str:
        return Path(path).relative_to(self.root).as_posix()

    # the markets (stages.market), <m> = a market of markets.regimes, <model> = a market variant:
    #   data/market/<m>/series.safetensors                    market_data (returns, windows, folds)
    #   metrics/market/<m>/data.json                          market_data (rows, dropped, dates, folds)
    #   models/market/<m>-<model>/{best,history}.safetensors  market_train (every fold x seed)
    #   metrics/market/evaluate/<m>-<model>.safetensors       market_evaluate (out-of-sample positions)
    #   metrics/markets/{comparison,headline}.json            market_compare (every market's comparison)
    #   reports/markets.md                                    market_compare
    #   plots/market/<m>/<figure>.png                         market_compare
    def market_series(self, market: str) -> Path:
        return self.root / "data" / "market" / market / "series.safetensors"

    def market_summary(self, market: str) -> Path:
        return self.root / "metrics" / "market" / market / "data.json"

    def market_model(self, cell: str, which: str = "best") -> Path:
        return self.root / "models" / "market" / cell / f"{which}.safetensors"

    def market_eval(self, cell: str) -> Path:
        return self.root / "metrics" / "market" / "evaluate" / f"{cell}.safetensors"

    @property
    def markets_json(self) -> Path:
        return self.root / "metrics" / "markets" / "comparison.json"

    @property
    def markets_headline(self) -> Path:
        return self.root / "metrics" / "markets" / "headline.json"

    @property
    def markets_report(self) -> Path:
        return self.root / "reports" / "markets.md"

    def market_plots(self, market: str) -> Path:
        return self.root / "plots" / "market" / market

    def market_plot(self, market: str, figure: str) -> Path:
        return self.market_plots(market) / f"{figure}.png"

    # the sweep (stages.sweep): sweeps/<point>/ a whole study workspace per grid point, and
    #   sweeps/ledger.json, metrics/sweep.json, reports/sweep.md, plots/sweep/<figure>.png;
    #   sweeps/failures.json (the flow's record of failed points) and sweeps/dvc.yaml (with --dvc-record)
    def sweep_point(self, point: str) -> Path:
        return self.root / "sweeps" / point

    @property
    def point(self) -> str | None:
        """The sweep point this workspace is (`sweep_point`'s folder), or None."""
        return self.root.name if self.root.parent.name == "sweeps" else None

    @property
    def sweep_ledger(self) -> Path:
        return self.root / "sweeps" / "ledger.json"

    @property
    def sweep_failures(self) -> Path:
        return self.root / "sweeps" / "failures.json"

    @property
    def sweep_dvc_yaml(self) -> Path:
        return self.root / "sweeps" / "dvc.yaml"

    @property
    def sweep_json(self) -> Path:
        return self.root / "metrics" / "sweep.json"

    @property
    def sweep_report(self) -> Path:
        return self.root / "reports" / "sweep.md"

    @property
    def sweep_plots(self) -> Path:
        return self.root / "plots" / "sweep"

    # the warm-ups (stages.warmups), <exp> = regression | classifier:
    #   data/warmups/<exp>/data.safetensors       <exp>_generate
    #   models/warmups/<exp>.safetensors          <exp>_train
    #   metrics/warmups/<exp>/history.tsv         <exp>_train (per-epoch curves)
    #   metrics/warmups/<exp>/report.json         <exp>_evaluate
    #   plots/warmups/<exp>.png                   <exp>_plot
    def warmup_data(self, exp: str) -> Path:
        return self.root / "data" / "warmups" / exp / "data.safetensors"

    def warmup_model(self, exp: str) -> Path:
        return self.root / "models" / "warmups" / f"{exp}.safetensors"

    def warmup_history(self, exp: str) -> Path:
        return self.root / "metrics" / "warmups" / exp / "history.tsv"

    def warmup_report(self, exp: str) -> Path:
        return self.root / "metrics" / "warmups" / exp / "report.json"

    def warmup_plot(self, exp: str) -> Path:
        return self.root / "plots" / "warmups" / f"{exp}.png"
